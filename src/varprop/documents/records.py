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


def _verify_records(act: Activation, schemes: Sequence[InitScheme], store: MonteCarloStore,
                    b: Budget, tick: Callable[[], None]) -> dict[tuple[str, str], Any]:
    out = {}
    for scheme in schemes:
        for quantity in _VERIFY_QUANTITIES:
            key = _verify_key(act, scheme, quantity)
            out[(_label(scheme), quantity)] = store.get(key, lambda s=scheme, qn=quantity, k=key: _quiet(
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
