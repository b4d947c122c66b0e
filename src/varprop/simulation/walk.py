r"""The layer walk: simulate one chunk of replicates of a :class:`~varprop.Network`, forward and backward.

For a block of replicates the walk draws the input, then visits ``network.layers`` in order; each
layer's sampling section draws its parameters and applies itself (``Dense``: weights with the
scheme's sampler, then biases; ``Nonlinearity``: :math:`\phi`), except that the Gaussian engine
replaces a ``Dense`` layer's weights by the exact conditional law of
:mod:`varprop.simulation.gaussian`.  It records, per layer position :math:`p`, the unit (and
batch) averages of the output :math:`y_p` and :math:`y_p^2`, the spread over units of the first
sample, and whether :math:`y_p` flushed to zero.

The backward pass is seeded with i.i.d. :math:`N(0, 1)` entries :math:`u` (independent of the
forward pass) as the loss gradient at the last output, and runs each layer's backward rule top
down, recording :math:`\overline{(\partial L/\partial y_p)^2}` per position (and for the network
input).  For an MLP-shaped network (``Dense, phi, ..., Dense, phi``) a first backward pass keeps
the MLP statistics' convention -- the seed :math:`u` is :math:`\delta_L = \partial L/\partial z_L`,
the gradient at the last ``Dense`` output -- and records per ``Dense`` layer the per-example
weight gradient; a second pass over the same forward pass starts from the same :math:`u` at the
last output.  The two passes run together layer by layer and share the random numbers (the
Gaussian engine's :math:`F`) and the activation derivatives, so each pass alone is exact in law
(the joint law of the two passes is not that of one network, and nothing combines them).

Random numbers are drawn per block in this order: the input; per layer the weights (dense) or
:math:`E` (Gaussian), then the biases; the backward seed; per ``Dense`` layer, top down,
:math:`F` (Gaussian).  Every forward draw comes before every backward draw of the block's own
stream, so a forward-only walk (``Plan.backward`` false: ``simulate(..., backward=False)``)
gives bit-identical forward statistics and skips the backward pass and its draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from varprop.network.layers.base import Layer
from varprop.network.layers.dense import Dense
from varprop.simulation import gaussian
from varprop.simulation.statistics import (
    Draws,
    flushed,
    row_sum,
    row_sumsq,
    rows,
    spread,
)

__all__ = ["Plan", "run_chunk"]


@dataclass(frozen=True)
class Plan:
    """What one chunk's walk needs: the expanded ``layers``, the vector width entering each
    position and leaving the last (``widths[p]`` enters position ``p``), ``batch``, ``dtype``,
    whether the Gaussian shortcut is used (with each ``Dense`` position's ``(loc, scale)`` in
    ``laws``), the input's standard deviation, and whether the network is MLP-shaped (then the
    first backward pass is seeded at position ``len(layers) - 2``)."""

    layers: tuple[Layer, ...]
    widths: tuple[int, ...]
    batch: int
    dtype: np.dtype
    gaussian: bool
    laws: tuple[tuple[float, float] | None, ...]
    input_std: float
    mlp: bool
    identity_top: bool  # MLP whose last phi' is exactly 1: the two backward passes coincide
    output_gradient: bool = True  # also the pass seeded at the last output (an MLP's second pass)
    backward: bool = True  # False: the forward pass only (no backward seed is drawn)

    @property
    def vector(self) -> bool:
        """The Gaussian shortcut's batch-1 path works on ``(C, n)`` arrays."""
        return self.gaussian and self.batch == 1

    def shape(self, p: int) -> tuple[int, ...]:
        """Per-replicate shape of the signal entering position ``p`` (``p = len(layers)``: the
        output)."""
        return (self.widths[p],) if self.vector else (self.widths[p], self.batch)


def run_chunk(plan: Plan, draws: Draws) -> dict[str, np.ndarray]:
    """Simulate one chunk (consecutive whole blocks) and return its per-replicate statistics:
    ``output_mean``, ``output_second``, ``output_unit_std``, ``_flush`` ``(C, P)``;
    ``_input_second`` ``(C,)``; for the backward pass seeded at the last output ``_g_second``,
    ``_g_flush``, ``_g_nonzero`` ``(C, P + 1)`` (column ``c``: the gradient with respect to the
    output of position ``c - 1``, column 0 the input); for MLP-shaped networks the same for the
    MLP pass (``_m_*``) and ``weight_gradient_second`` ``(C, n_dense)``."""
    dt, P = plan.dtype, len(plan.layers)
    C = draws.total
    st = {k: np.zeros((C, P)) for k in ("output_mean", "output_second", "output_unit_std")}
    st["_flush"] = np.zeros((C, P), dtype=bool)
    a = draws.normal(plan.shape(0), dt)
    if plan.input_std != 1.0:
        a *= dt.type(plan.input_std)
    sq = row_sumsq(rows(a))
    st["_input_second"] = sq / (plan.widths[0] * (1 if plan.vector else plan.batch))
    saved: list[tuple] = []
    dead = np.zeros(C, dtype=bool)  # replicates whose forward values stopped being finite
    for p, layer in enumerate(plan.layers):
        law = plan.laws[p]
        if law is not None:  # the Gaussian shortcut for a Dense layer
            assert isinstance(layer, Dense)
            loc, scale = law
            if plan.vector:
                z, cache = gaussian.forward_vector(draws, a, sq, layer.width, scale, loc)
            else:
                z, cache = gaussian.forward_batch(draws, a, dead, layer.width, scale, loc)
            b = layer.sample_bias(draws, dt)
            if b is not None:
                z += b[:, :, 0] if plan.vector else b
        else:
            z, cache = layer.sample_forward(draws, a)
        m = _record_forward(st, p, z)
        dead |= ~np.isfinite(st["output_second"][:, p])
        sq = st["output_second"][:, p] * m
        if plan.backward:
            saved.append((cache, a))
        a = z
    if not plan.backward:
        _not_recorded(plan, st)
        return st
    seed = draws.normal(plan.shape(P), dt)
    if not plan.mlp:
        _backward(plan, saved, draws, [("_g", P - 1, seed)], st)
    elif plan.identity_top:  # phi' = 1: the second pass is the first one, seeded one level up
        _backward(plan, saved, draws, [("_m", P - 2, seed)], st)
        for k in ("_second", "_flush", "_nonzero"):
            st["_g" + k] = st["_m" + k].copy()
        s = row_sumsq(rows(seed))
        st["_g_second"][:, P] = s / rows(seed).shape[1]
        st["_g_nonzero"][:, P] = s > 0
        st["_g_flush"][:, P - 1] = flushed(rows(seed), s)
    elif plan.output_gradient:
        _backward(plan, saved, draws, [("_m", P - 2, seed), ("_g", P - 1, seed)], st)
    else:  # the MLP statistics only: output_gradient_second is not recorded (NaN, never valid)
        _backward(plan, saved, draws, [("_m", P - 2, seed)], st)
        st["_g_second"] = np.full((C, P + 1), np.nan)
        st["_g_flush"] = np.zeros((C, P + 1), dtype=bool)
        st["_g_nonzero"] = np.zeros((C, P + 1), dtype=bool)
    return st


def _not_recorded(plan: Plan, st: dict[str, np.ndarray]) -> None:
    """The backward statistics of a forward-only walk: NaN, never flushed, never non-zero
    (:func:`~varprop.simulation.statistics.finish` then marks them not recorded)."""
    C, P = st["output_second"].shape
    for key in ("_g", "_m") if plan.mlp else ("_g",):
        st[key + "_second"] = np.full((C, P + 1), np.nan)
        st[key + "_flush"] = np.zeros((C, P + 1), dtype=bool)
        st[key + "_nonzero"] = np.zeros((C, P + 1), dtype=bool)
    if plan.mlp:
        n_dense = sum(isinstance(x, Dense) for x in plan.layers)
        st["weight_gradient_second"] = np.full((C, n_dense), np.nan)


def _record_forward(st: dict[str, np.ndarray], p: int, y: np.ndarray) -> int:
    """Record position ``p``'s forward statistics of ``y`` (``(C, n)`` or ``(C, n, B)``); returns
    the number of values per replicate."""
    yr = rows(y)
    m = yr.shape[1]
    ys, yq = row_sum(yr), row_sumsq(yr)
    st["_flush"][:, p] = flushed(yr, yq)
    st["output_mean"][:, p] = ys / m
    st["output_second"][:, p] = yq / m
    if y.ndim == 2 or y.shape[2] == 1:
        st["output_unit_std"][:, p] = spread(ys, yq, m)
    else:
        y0 = np.ascontiguousarray(y[:, :, 0])
        st["output_unit_std"][:, p] = spread(row_sum(y0), row_sumsq(y0), y.shape[1])
    return m


def _backward(plan: Plan, saved: list[tuple], draws: Draws,
              passes: list[tuple[str, int, np.ndarray]], st: dict[str, np.ndarray]) -> None:
    """Backward passes over the same forward pass, run together layer by layer (sharing the
    random numbers and the activation derivatives).  Pass ``(key, top, grad)`` starts from the
    gradient ``grad`` with respect to position ``top``'s output and records ``key + "_second"``,
    ``"_flush"``, ``"_nonzero"``; the pass with key ``"_m"`` (the MLP pass) also records the
    per-example weight gradient of each ``Dense`` layer."""
    P = len(plan.layers)
    C = passes[0][2].shape[0]
    run = []
    for key, top, grad in passes:
        arrays = tuple(np.zeros((C, P + 1), dtype=t) for t in (float, bool, bool))
        for name, arr in zip(("_second", "_flush", "_nonzero"), arrays):
            st[key + name] = arr
        sq = row_sumsq(rows(grad))
        arrays[0][:, top + 1] = sq / rows(grad).shape[1]
        arrays[2][:, top + 1] = sq > 0
        run.append([key, top, grad, sq, arrays])
    if run[0][0] == "_m":
        st["weight_gradient_second"] = np.zeros((C, sum(isinstance(x, Dense) for x in plan.layers)))
        d = sum(isinstance(x, Dense) for x in plan.layers[: run[0][1] + 1])
    for p in range(max(r[1] for r in run), -1, -1):
        layer = plan.layers[p]
        cache, a_in = saved[p]
        active = [r for r in run if r[1] >= p]
        if active[0][0] == "_m" and isinstance(layer, Dense):
            d -= 1
            in_second = st["_input_second"] if p == 0 else st["output_second"][:, p - 1]
            st["weight_gradient_second"][:, d] = _weight_gradient(
                plan, active[0][2], a_in, active[0][4][0][:, p + 1], in_second)
        law = plan.laws[p]
        if law is not None:
            draw = _shared_draw(draws, plan.dtype)
            if plan.vector:
                grads = gaussian.backward_vector(draw, cache, [r[2] for r in active],
                                                 [r[3] for r in active], law[1], law[0])
            else:
                grads = [gaussian.backward_batch(draw, cache, r[2], law[1], law[0])
                         for r in active]
        else:
            grads = layer.sample_backward(cache, [r[2] for r in active])  # type: ignore[attr-defined]
        for r, g in zip(active, grads):
            gr = rows(g)
            sq = row_sumsq(gr)
            second, flush, nonzero = r[4]
            second[:, p] = sq / gr.shape[1]
            flush[:, p] = flushed(gr, sq)
            nonzero[:, p] = sq > 0
            r[2], r[3] = g, sq


def _shared_draw(draws: Draws, dtype: np.dtype) -> Callable[[tuple[int, ...]], np.ndarray]:
    """``draw(shape)`` that draws standard normals once and hands the same array to every later
    call (the backward passes of one layer share :math:`F`)."""
    box: list[np.ndarray] = []

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        if not box:
            box.append(draws.normal(shape, dtype))
        assert box[0].shape[1:] == shape
        return box[0]

    return draw


def _weight_gradient(plan: Plan, delta: np.ndarray, a_prev: np.ndarray, delta_second: np.ndarray,
                     in_second: np.ndarray) -> np.ndarray:
    r"""Per-replicate mean square of the per-example weight gradient :math:`\delta_b a_b^\top`:
    batch 1, :math:`\overline{\delta^2}\,\overline{a^2}`; else per example
    :math:`\overline{\delta_b^2}\,\overline{a_b^2}`, then the batch average."""
    if plan.batch == 1:
        return delta_second * in_second
    C, n_out, B = delta.shape
    n_in = a_prev.shape[1]
    dsq = row_sumsq(rows(np.swapaxes(delta, 1, 2)).reshape(C * B, n_out)) / n_out
    asq = row_sumsq(rows(np.swapaxes(a_prev, 1, 2)).reshape(C * B, n_in)) / n_in
    return row_sum(np.ascontiguousarray((dsq * asq).reshape(C, B))) / B
