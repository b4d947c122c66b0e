r"""Checks of any :class:`~varprop.Network` layer by layer: the quantities ``"output"`` (the second
moment of a layer's output) and ``"output_gradient"`` (that of the loss gradient with respect to
it), at a layer *position* :math:`p = 1, \dots, P` (``net.layers`` order; every ``Dense`` and
every ``Nonlinearity`` counts once).

The estimand of ``"output"`` at :math:`p` is :math:`E[\overline{y_p^2}]`, :math:`y_p` the output
of layer :math:`p` (the replicate mean of the simulated ``output_second``); ``"output_gradient"``
is :math:`E[\overline{(\partial L/\partial y_p)^2}]` with :math:`\partial L/\partial y_P` i.i.d.
:math:`N(0, 1)` (``output_gradient_second``).  The prediction is
:func:`varprop.predict_variance` ``(net, quantity=..., per_layer=True)`` at :math:`p`; the
allowance is :func:`~varprop.checking.allowance.network_allowance` (0 where every layer the
statistic passes through keeps the second-moment identity exact, see
:func:`~varprop.checking.allowance.network_exact`).  The sequential plan, intervals and
decision are those of :func:`varprop.checking.verify.verify`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from varprop._util.validation import (
    MAX_LAYERS,
    check_nonnegative_real,
    fail,
)
from varprop.checking.allowance import network_allowance, network_exact
from varprop.checking.plan import (
    _check_layer,
    _check_size,
    _claim,
    _look_seed,
    _look_sizes,
    _margins,
    _sequential,
    _verdict_from,
    network_budget,
)
from varprop.checking.verdict import Verdict
from varprop.network.layers.base import Layer
from varprop.network.model import Network
from varprop.network.quantities import NETWORK_QUANTITIES, spec
from varprop.simulation.montecarlo import simulate
from varprop.theory.predict import predict_variance

__all__ = ["OUTPUT_QUANTITIES", "verify_outputs"]

#: The quantities every network has, per layer position (:data:`varprop.network.quantities.NETWORK_QUANTITIES`).
OUTPUT_QUANTITIES: tuple[str, ...] = NETWORK_QUANTITIES
_STATISTIC = {q: spec(q).second for q in OUTPUT_QUANTITIES}


def default_position(net: Network, quantity: str) -> int:
    """The position ``layer=None`` means: the last layer's output (``"output"``), the first
    layer's output gradient (``"output_gradient"``: the last one's is the seeded unit-variance
    gradient itself)."""
    return 1 if quantity == "output_gradient" else net.depth


def check_positions(net: Network) -> int:
    """The number of layer positions, refused beyond the simulation's layer limit."""
    if net.depth > MAX_LAYERS:
        raise fail("activation", net, f"a network of at most {MAX_LAYERS:,} layers for a check "
                   f"(it has {net.depth:,}; every layer position is simulated)")
    return net.depth


def _output_columns(res: Any, quantity: str, position: int) -> tuple[list[np.ndarray], str | None]:
    """The per-replicate statistic of ``quantity`` at ``position``; a reason instead when some
    replicate's value there is not a measurement (it left the float range, or flushed to an
    exact zero that is an underflow: ``SimulationResult.output_valid`` /
    ``output_gradient_valid``)."""
    stat = _STATISTIC[quantity]
    valid = np.asarray(res.valid_mask(stat))[:, position - 1]
    if not np.all(valid):
        bad = ~valid
        where = f"in the forward pass by layer position {position}"
        if quantity == "output_gradient":
            # a replicate whose forward pass left the range has no backward pass at all
            fwd_ok = np.asarray(res.output_valid)[bad]            # (bad replicates, positions)
            forward = ~fwd_ok.all(axis=1)
            n_fwd, n_bwd = int(forward.sum()), int((~forward).sum())
            first = int(np.argmin(fwd_ok[forward], axis=1).min()) + 1 if n_fwd else 0
            fwd_text = (f"in the forward pass ({n_fwd} of them, first at layer position {first}), "
                        f"so their backward pass is not a measurement")
            bwd_text = f"in the backward pass by layer position {position}"
            where = (bwd_text if n_fwd == 0 else fwd_text if n_bwd == 0 else
                     f"{fwd_text}, or {bwd_text} (the other {n_bwd})")
        return [], (f"{int(bad.sum())} of {valid.size} replicates left the float range "
                    f"(overflow, or an underflow whose exact zeros would be artefacts) {where}: "
                    f"no estimate")
    return [np.asarray(res.per_replicate(stat, position), dtype=float)], None


def verify_outputs(net: Network, *, quantity: str, layer: object, rtol_f: float, alpha_f: float,
                   predicted: object, reps: int | None, seed_i: int, target: str, method: str,
                   tol: object, atol: object, bud: int | None, dt: str, engine: str,
                   t0: float | None = None) -> Verdict:
    """:func:`varprop.checking.verify.verify` for ``quantity`` in :data:`OUTPUT_QUANTITIES`
    (arguments already validated by it, except ``layer``, ``predicted``, ``tol``, ``atol``)."""
    t0 = time.perf_counter() if t0 is None else t0
    P = check_positions(net)
    pos = _check_layer(layer, P)
    if pos is None:
        pos = default_position(net, quantity)
    if target != "ensemble":
        raise fail("target", target, f"'ensemble' for quantity {quantity!r} (the across-unit "
                   "spread is checked for the MLP quantities 'preactivation'/'activation')")
    backward = spec(quantity).backward

    def predict(how: str) -> float:
        return float(np.asarray(predict_variance(net, quantity=quantity, per_layer=True,
                                                 method=how))[pos - 1])

    theta0, reference, user = _claim(predicted, predict, method,
                                     f"{quantity} at layer position {pos}")
    exact = network_exact(net, pos, backward)
    if tol is None:
        tol_f, tol_reason = network_allowance(net, pos, backward, method=method,
                                              predicted_value=theta0, reference_value=reference,
                                              dtype=dt)
    else:
        tol_f, tol_reason = check_nonnegative_real("tol", tol), "tol given by the caller"
    zero_pred, atol_f, scale, margin = _margins(theta0, rtol_f, atol)
    stat = _STATISTIC[quantity]

    def draw(n_new: int, look: int) -> tuple[list[np.ndarray], str | None]:
        res = simulate(net, replicates=n_new, seed=_look_seed(seed_i, look), dtype=dt,
                       engine=engine, backward=backward)
        return _output_columns(res, quantity, pos)

    bud_eff = bud if bud is not None else network_budget(net, engine)
    sizes = _look_sizes(reps, bud_eff)
    _check_size(net, engine, sizes[-1], dt, "replicates" if reps is not None else "budget")
    out = _sequential(draw, "mean", theta0, scale, tol_f, margin,
                      alpha_f, sizes, seed_i, relative=not zero_pred)
    sym = "dL/dy" if backward else "y"
    name = f"E[({sym}_{pos})^2]"
    layer_obj = net.layers[pos - 1]
    description = (f"ensemble second moment of one entry of {'the loss gradient with respect to ' if backward else ''}"
                   f"the output of layer position {pos} ({layer_obj!r}; statistic {stat})")
    config = {"network": repr(net), "method": method, "dtype": dt, "engine": engine,
              "budget": bud_eff, "tol_reason": tol_reason}
    who = ("user-supplied prediction judged against" if user else
           f"library prediction (method={method!r}),")
    assumptions = (f"{who} infinite-width mean field walked layer by layer (Gaussian "
                   "pre-activations, gradient independence backward); inputs i.i.d. zero-mean, "
                   "dL/dy_P i.i.d. unit variance independent of the forward pass; "
                   + ("claims exactness at every finite width here" if exact else
                      "exact only as the widths grow here (finite-width allowance applies)"))
    verdict = _verdict_from(out, theta0=theta0, scale=scale, zero_pred=zero_pred, tol=tol_f,
                            rtol=rtol_f, atol=atol_f, alpha=alpha_f, seed=seed_i,
                            quantity=quantity, layer=pos, target="ensemble", name=name,
                            description=description, assumptions=assumptions, exact=exact,
                            config=config, t0=t0)
    return _with_tail_note(verdict, net, backward)


def _all_layers(layers: Iterable[Layer]) -> Iterator[Layer]:
    """The distinct layers of ``layers`` and, recursively, of their ``nested`` ones."""
    for layer in layers:
        yield layer
        yield from _all_layers(getattr(layer, "nested", ()))


def _with_tail_note(verdict: Verdict, net: Network, backward: bool) -> Verdict:
    """An inconclusive verdict whose replicate statistic a layer declares to have (practically)
    infinite variance says so, instead of promising that more replicates decide."""
    if verdict.status != "inconclusive":
        return verdict
    distinct = {layer: None for block, _ in net.layers.runs for layer in block}
    for layer in _all_layers(distinct):
        note = getattr(layer, "tail_note", lambda backward: None)(backward)
        if note:
            head = verdict.reason.split(";", 1)[0]
            return dataclasses.replace(verdict, reason=f"{head}; {note}")
    return verdict
