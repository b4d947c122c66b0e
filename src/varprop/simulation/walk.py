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
weight gradient; a second pass over the same forward pass then starts from the same :math:`u` at
the last output.  It reuses the first pass's random numbers (the Gaussian engine's :math:`F`), so
each pass alone is exact in law (the joint law of the two passes is not that of one network, and
nothing combines them).

Random numbers are drawn per block in this order: the input; per layer the weights (dense) or
:math:`E` (Gaussian), then the biases; the backward seed; per ``Dense`` layer, top down,
:math:`F` (Gaussian).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from varprop.network.layers.base import Layer
from varprop.network.layers.dense import Dense
from varprop.simulation import gaussian
from varprop.simulation.statistics import Draws, flushed, row_sum, row_sumsq, rows, spread

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
        saved.append((cache, a))
        a = z
    seed = draws.normal(plan.shape(P), dt)
    f_draws: list[np.ndarray] = []

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        f_draws.append(draws.normal(shape, dt))
        return f_draws[-1]

    if plan.mlp:
        _backward(plan, saved, draw, P - 2, seed, st, "_m", weight_gradient=True)
        if plan.identity_top:  # phi' = 1: the second pass is the first one, seeded one level up
            for k in ("_second", "_flush", "_nonzero"):
                st["_g" + k] = st["_m" + k].copy()
            s = row_sumsq(rows(seed))
            st["_g_second"][:, P] = s / (plan.widths[P] * (1 if plan.vector else plan.batch))
            st["_g_nonzero"][:, P] = s > 0
            st["_g_flush"][:, P - 1] = flushed(rows(seed), s)
            return st
        replay = iter(f_draws)
        _backward(plan, saved, lambda shape: next(replay), P - 1, seed, st, "_g",
                  weight_gradient=False)
    else:
        _backward(plan, saved, draw, P - 1, seed, st, "_g", weight_gradient=False)
    return st


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


def _backward(plan: Plan, saved: list[tuple], draw: object, top: int, grad: np.ndarray,
              st: dict[str, np.ndarray], key: str, *, weight_gradient: bool) -> None:
    """One backward pass from the gradient ``grad`` with respect to position ``top``'s output."""
    P = len(plan.layers)
    C = grad.shape[0]
    second = st[key + "_second"] = np.zeros((C, P + 1))
    flush = st[key + "_flush"] = np.zeros((C, P + 1), dtype=bool)
    nonzero = st[key + "_nonzero"] = np.zeros((C, P + 1), dtype=bool)
    if weight_gradient:
        n_dense = sum(isinstance(layer, Dense) for layer in plan.layers)
        st["weight_gradient_second"] = np.zeros((C, n_dense))
        d = sum(isinstance(layer, Dense) for layer in plan.layers[: top + 1])
    sq = row_sumsq(rows(grad))
    second[:, top + 1] = sq / rows(grad).shape[1]
    nonzero[:, top + 1] = sq > 0
    for p in range(top, -1, -1):
        layer = plan.layers[p]
        cache, a_in = saved[p]
        if weight_gradient and isinstance(layer, Dense):
            d -= 1
            in_second = st["_input_second"] if p == 0 else st["output_second"][:, p - 1]
            st["weight_gradient_second"][:, d] = _weight_gradient(
                plan, grad, a_in, second[:, p + 1], in_second)
        law = plan.laws[p]
        if law is not None:
            loc, scale = law
            if plan.vector:
                g = gaussian.backward_vector(draw, cache, grad, sq, scale, loc)  # type: ignore[arg-type]
            else:
                g = gaussian.backward_batch(draw, cache, grad, scale, loc)  # type: ignore[arg-type]
        else:
            g = layer.sample_backward(cache, grad)  # type: ignore[attr-defined]
        gr = rows(g)
        sq = row_sumsq(gr)
        second[:, p] = sq / gr.shape[1]
        flush[:, p] = flushed(gr, sq)
        nonzero[:, p] = sq > 0
        grad = g


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
