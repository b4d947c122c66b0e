r"""The general Monte Carlo engine: any network whose layers implement the sampling protocol
(``mc_draw``, ``mc_forward``, ``mc_backward`` of :class:`~varprop.network.layers.base.Layer`).

A **block** of ``block`` replicates (a function of the configuration only) draws everything from
its own stream ``SeedSequence(seed).spawn(n_blocks)[j]`` in this order: the input
:math:`x \sim N(0, \sigma_x^2)` of shape ``(R, B, *input_shape)``; per layer position its
parameters (``mc_draw``, ``R`` independent networks); the backward seed, i.i.d. :math:`N(0, 1)`
gradients at the last output.  Blocks are simulated one after the other and each replicate's
statistics are reduced within the replicate, so the same seed gives the same numbers for every
chunk size.

Per replicate and layer position :math:`p` it records the averages over every entry and batch
sample of :math:`y_p` and :math:`y_p^2` (``output_mean``, ``output_second``), the spread over the
entries of the first sample (``output_unit_std``), :math:`\overline{(\partial L/\partial
y_p)^2}` (``output_gradient_second``) and, per *position* of the tensor (the channel axis and the
batch averaged out), :math:`\overline{y_p^2}` and :math:`\overline{(\partial L/\partial y_p)^2}`
(:meth:`varprop.SimulationResult.per_position`).  A replicate whose forward values stop being
finite is invalid from that position on (and its whole backward pass); a backward value that is
not finite invalidates the backward statistics from there down.  Underflows follow the rules of
:mod:`varprop.simulation.montecarlo`, judged by each layer's ``sample_flush_is_underflow`` and
``sample_gradient_flush_is_underflow`` (layers without them are not judged).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from varprop.network.layout import channel_axes
from varprop.network.model import Network
from varprop.simulation.statistics import flushed, forward_only, validity

__all__ = ["position_axes", "run_general"]


def position_axes(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """Axes of an array ``(R, B, *shape)`` averaged for the per-position statistics: the batch
    and the channel axis."""
    return (1, 2 + axis % len(shape))


def _block(network: Network, layout: tuple, R: int, batch: int, dt: np.dtype,
           rng: np.random.Generator, backward: bool = True) -> dict[str, object]:
    """Simulate one block of ``R`` replicates (module docstring); ``backward=False``: the forward
    pass only (its draws come first, so its statistics are the same), the backward statistics
    NaN."""
    layers = list(network.layers)
    P = len(layers)
    st = {k: np.zeros((R, P)) for k in ("output_mean", "output_second", "output_unit_std",
                                         "output_gradient_second")}
    flush = {k: np.zeros((R, P), dtype=bool) for k in ("fwd", "bwd")}
    fwd_pos: list[np.ndarray] = []
    bwd_pos: list[np.ndarray] = []
    x = rng.standard_normal((R, batch) + network.input_shape).astype(dt)
    if network.input_variance != 1.0:
        x *= dt.type(math.sqrt(network.input_variance))
    input_second = np.mean(np.square(x, dtype=np.float64).reshape(R, -1), axis=1)
    saved = []
    with np.errstate(all="ignore"):
        for p, layer in enumerate(layers):
            shape_in = layout[p][0]
            params = layer.mc_draw(rng, shape_in, R, dt)
            y, cache = layer.mc_forward(params, x)
            if backward:
                saved.append((params, cache))
            flat = y.reshape(R, -1).astype(np.float64)
            st["output_mean"][:, p] = flat.mean(axis=1)
            sq = flat * flat
            st["output_second"][:, p] = sq.mean(axis=1)
            flush["fwd"][:, p] = flushed(np.ascontiguousarray(y.reshape(R, -1)), sq.sum(axis=1))
            st["output_unit_std"][:, p] = y[:, 0].reshape(R, -1).astype(np.float64).std(axis=1)
            _, shape, axis = layout[p + 1]
            fwd_pos.append(np.mean(sq.reshape((R, batch) + shape), axis=position_axes(shape, axis)))
            x = y
        if not backward:
            st["output_gradient_second"][:] = np.nan
            return {"stats": st, "fwd": fwd_pos, "bwd": [np.zeros_like(f) for f in fwd_pos],
                    "input_second": input_second, "flush": flush["fwd"], "g_flush": flush["bwd"]}
        g = rng.standard_normal(x.shape).astype(dt)
        grads: list[np.ndarray] = [np.empty(0)] * P
        for p in range(P - 1, -1, -1):
            _, shape, axis = layout[p + 1]
            g2 = np.square(g, dtype=np.float64).reshape((R, batch) + shape)
            st["output_gradient_second"][:, p] = g2.reshape(R, -1).mean(axis=1)
            grads[p] = np.mean(g2, axis=position_axes(shape, axis))
            params, cache = saved[p]
            g = layers[p].mc_backward(params, cache, g)
            if p > 0:  # the gradient at position p's input is position p - 1's output gradient
                gr = np.ascontiguousarray(g.reshape(R, -1))
                flush["bwd"][:, p - 1] = flushed(gr, np.square(gr, dtype=np.float64).sum(axis=1))
        bwd_pos = grads
    return {"stats": st, "fwd": fwd_pos, "bwd": bwd_pos, "input_second": input_second,
            "flush": flush["fwd"], "g_flush": flush["bwd"]}


def run_general(network: Network, replicates: int, batch: int, seed: int, dt: np.dtype,
                block: int, progress: Callable[[int], object] | None = None,
                backward: bool = True) -> dict[str, object]:
    """The fields of :class:`~varprop.SimulationResult` for the general engine (module
    docstring): per-replicate statistics, masks, and per-position arrays (``backward=False``:
    the forward pass only, the backward statistics invalid and not assessed)."""
    layout = channel_axes(network)
    n_blocks = -(-replicates // block)
    children = np.random.SeedSequence(seed).spawn(n_blocks)
    parts = []
    for j in range(n_blocks):
        R = min(block, replicates - j * block)
        parts.append(_block(network, layout, R, batch, dt, np.random.default_rng(children[j]),
                            backward))
        if progress is not None:
            progress(R)
    st = {k: np.concatenate([q["stats"][k] for q in parts]) for k in parts[0]["stats"]}
    P = st["output_second"].shape[1]
    fwd = [np.concatenate([q["fwd"][p] for q in parts]) for p in range(P)]
    bwd = [np.concatenate([q["bwd"][p] for q in parts]) for p in range(P)]
    fwd_bad = np.zeros(st["output_second"].shape, dtype=bool)
    for k in ("output_mean", "output_second", "output_unit_std"):
        fwd_bad |= ~np.isfinite(st[k])
    bwd_bad = ~np.isfinite(st["output_gradient_second"])
    fwd_flush, bwd_flush = _underflows(network, parts, st)
    masks = validity(fwd_bad, fwd_flush, bwd_bad, bwd_flush)
    if not backward:
        masks = forward_only(masks)
    valid, gvalid = masks[4], masks[5]
    public = {k: np.where(gvalid if k == "output_gradient_second" else valid, v, 0.0)
              for k, v in st.items()}
    positions = {
        "output_second": tuple(_masked(a, valid[:, p]) for p, a in enumerate(fwd)),
        "output_gradient_second": tuple(_masked(a, gvalid[:, p]) for p, a in enumerate(bwd)),
    }
    out: dict[str, object] = {
        "_stats": public, "nonfinite_layer_per_replicate": masks[0],
        "underflow_layer_per_replicate": masks[1],
        "gradient_nonfinite_layer_per_replicate": masks[2],
        "gradient_underflow_layer_per_replicate": masks[3], "valid": valid,
        "gradient_valid": gvalid,
        "input_second": np.concatenate([q["input_second"] for q in parts]),
        "output_valid": valid, "output_gradient_valid": gvalid, "_positions": positions}
    for arr in list(public.values()) + [v for k, v in out.items()
                                        if isinstance(v, np.ndarray)]:
        arr.setflags(write=False)
    return out


def _underflows(network: Network, parts: list[dict], st: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward underflows (the rules of :mod:`varprop.simulation.montecarlo`): an
    output flushed to zero from a non-zero input by a layer whose ``sample_flush_is_underflow``
    is true (a zero of ``Dense`` has probability 0; a ReLU's zero is genuine; layers that do not
    say are not judged), an input gradient flushed to zero from a non-zero output gradient by a
    layer whose ``sample_gradient_flush_is_underflow`` is true."""
    layers = list(network.layers)
    fwd_counts = np.array([bool(getattr(la, "sample_flush_is_underflow", False)) for la in layers])
    bwd_counts = np.array([bool(getattr(la, "sample_gradient_flush_is_underflow", False))
                           for la in layers])
    flush = np.concatenate([q["flush"] for q in parts])
    g_flush = np.concatenate([q["g_flush"] for q in parts])
    in_second = np.column_stack([np.concatenate([q["input_second"] for q in parts]),
                                 st["output_second"][:, :-1]])
    fwd = flush & (in_second > 0) & fwd_counts[None, :]
    bwd = np.zeros_like(fwd)
    # position p - 1's gradient is produced by layer p from position p's output gradient
    bwd[:, :-1] = g_flush[:, :-1] & (st["output_gradient_second"][:, 1:] > 0) & bwd_counts[None, 1:]
    return fwd, bwd


def _masked(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-position values with invalid replicates set to 0 (never NaN), read-only."""
    out = np.where(valid.reshape((-1,) + (1,) * (values.ndim - 1)), values, 0.0)
    out.setflags(write=False)
    return out
