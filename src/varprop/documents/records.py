"""The Monte Carlo records of the activation documents: the verification rows (``verify``
at :data:`VERIFY_WIDTH` x :data:`VERIFY_DEPTH`) and the figure curves, each computed once through
the :class:`MonteCarloStore` under a stable key whose hash is its seed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.documents.common import (
    FIGURE_DEPTH,
    FIGURE_WIDTH,
    VERIFY_DEPTH,
    VERIFY_WIDTH,
    _key_seed,
    _label,
    _quiet,
)
from varprop.documents.store import Budget, MonteCarloStore, mc_per_layer, mc_verify
from varprop.errors import VarpropError


def _verify_key(act: Activation, scheme: InitScheme, quantity: str) -> str:
    return f"verify/{act.name}/{_label(scheme)}/{quantity}/n{VERIFY_WIDTH}/L{VERIFY_DEPTH}"


def _curve_key(act: Activation, scheme: InitScheme) -> str:
    return f"curve/{act.name}/{_label(scheme)}/n{FIGURE_WIDTH}/L{FIGURE_DEPTH}"


_VERIFY_QUANTITIES = ("preactivation", "gradient")


def _law_signature(scheme: InitScheme) -> tuple[object, ...]:
    """The weight law of ``scheme`` at the verification fans, exactly (family and parameters)."""
    law = scheme.law(VERIFY_WIDTH, VERIFY_WIDTH)
    return (law.family, tuple(sorted((k, str(v)) for k, v in law.exact.items())))


def shared_simulations(schemes: Sequence[InitScheme]) -> dict[str, str]:
    """``{label: label of the scheme simulated instead}`` for the schemes whose weights at the
    verification width have exactly the law of an earlier scheme in ``schemes`` (at
    ``fan_in = fan_out`` Xavier's variance is LeCun's): the same random networks, simulated once."""
    first: dict[tuple[object, ...], str] = {}
    out = {}
    for scheme in schemes:
        label = _label(scheme)
        twin = first.setdefault(_law_signature(scheme), label)
        if twin != label:
            out[label] = twin
    return out


def _verify_records(act: Activation, schemes: Sequence[InitScheme], store: MonteCarloStore,
                    b: Budget, tick: Callable[[], None]) -> dict[tuple[str, str], Any]:
    """The verification record of each scheme and quantity; schemes with the same weight law
    share one (:func:`shared_simulations`)."""
    by_label = {_label(s): s for s in schemes}
    twins = shared_simulations(schemes)
    out = {}
    for scheme in schemes:
        simulated = by_label[twins.get(_label(scheme), _label(scheme))]
        for quantity in _VERIFY_QUANTITIES:
            key = _verify_key(act, simulated, quantity)
            out[(_label(scheme), quantity)] = store.get(key, lambda s=simulated, qn=quantity, k=key: _quiet(
                lambda: _safe_verify(act, s, qn, b, k)))
            tick()
    return out


def _safe_verify(act: Activation, scheme: InitScheme, quantity: str, b: Budget, key: str
                 ) -> dict[str, Any]:
    """:func:`mc_verify`, or ``{"status": "error", "message": ...}`` if the checker refuses."""
    try:
        return mc_verify(act, scheme, fan_in=VERIFY_WIDTH, depth=VERIFY_DEPTH, quantity=quantity,
                         replicates=b.replicates, budget=b.verify_budget, seed=_key_seed(key))
    except (VarpropError, ArithmeticError) as exc:  # recorded and shown, never hidden
        text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return {"status": "error", "message": text[:160]}


def _curve_records(act: Activation, schemes: Sequence[InitScheme], store: MonteCarloStore,
                   b: Budget, tick: Callable[[], None]) -> dict[str, Any]:
    """The figure's Monte Carlo curves of ``schemes``, keyed by their labels."""
    out = {}
    for scheme in schemes:
        key = _curve_key(act, scheme)
        out[_label(scheme)] = store.get(key, lambda s=scheme, k=key: _quiet(lambda: mc_per_layer(
            act, s, fan_in=FIGURE_WIDTH, depth=FIGURE_DEPTH,
            statistics=("preactivation_second", "gradient_second"),
            replicates=b.curve_replicates, seed=_key_seed(k))))
        tick()
    return out
