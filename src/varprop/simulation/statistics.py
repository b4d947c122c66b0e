r"""Per-replicate statistics of the Monte Carlo engines: reductions, underflow tests, validity masks,
and the assembly of a walk's statistics into a result's arrays (:func:`finish`).

Every reduction runs along the last axis of a contiguous per-replicate row (``(C, m)``), in
float64, so a replicate's statistics do not depend on how many replicates are processed together
(bit-identical results for every chunk size).  Random numbers come from :class:`Draws`: block
``j`` of a chunk draws from its own stream.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from varprop.network.layers.base import Layer
from varprop.simulation.result import (
    BACKWARD_QUANTITIES,
    OUTPUT_FORWARD,
    OUTPUT_QUANTITIES,
)

__all__ = ["finish", "Draws", "rows", "row_sum", "row_sumsq", "row_dot", "spread", "norm64", "flushed",
           "first_true", "last_true", "validity", "forward_only"]

_TINY64 = float(np.finfo(np.float64).tiny)


class Draws:
    """The random streams of one chunk: ``gens`` is a list of ``(generator, slice)``, block ``j``'s
    replicates being rows ``slice`` of every array drawn."""

    def __init__(self, gens: list[tuple[np.random.Generator, slice]]) -> None:
        self.gens = gens
        self.total = gens[-1][1].stop

    def normal(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Standard normals of shape ``(C,) + shape``, each block from its own stream."""
        out = np.empty((self.total,) + shape, dtype=dtype)
        for g, sl in self.gens:
            g.standard_normal(dtype=dtype, out=out[sl])
        return out

    def per_block(self, shape: tuple[int, ...], dtype: np.dtype,
                  fn: Callable[[np.random.Generator, int], np.ndarray]) -> np.ndarray:
        """``(C,) + shape`` filled block by block with ``fn(generator, block_replicates)``.  A
        chunk of one block returns ``fn``'s array itself when it already has that shape, dtype
        and C order (no copy: the dense engine's weights are the largest arrays it makes)."""
        if len(self.gens) == 1:
            g, sl = self.gens[0]
            one = fn(g, sl.stop - sl.start)
            if (one.shape == (self.total,) + shape and one.dtype == dtype
                    and one.flags.c_contiguous and one.flags.writeable):
                return one
            out = np.empty((self.total,) + shape, dtype=dtype)
            out[...] = one
            return out
        out = np.empty((self.total,) + shape, dtype=dtype)
        for g, sl in self.gens:
            out[sl] = fn(g, sl.stop - sl.start)
        return out


def rows(x: np.ndarray) -> np.ndarray:
    """Contiguous ``(C, m)`` view/copy: one row per replicate."""
    return np.ascontiguousarray(x).reshape(x.shape[0], -1)


def row_sum(x: np.ndarray) -> np.ndarray:
    """Per-row float64 sum of a contiguous ``(C, m)`` array (reduction along the last axis only,
    so every row is summed the same way whatever ``C`` is)."""
    return np.add.reduce(x, axis=-1, dtype=np.float64)


def row_sumsq(x: np.ndarray) -> np.ndarray:
    """Per-row float64 sum of squares of a contiguous ``(C, m)`` array."""
    return np.einsum("ij,ij->i", x, x, dtype=np.float64)


def row_dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row float64 dot product of two ``(C, m)`` arrays."""
    return np.einsum("ij,ij->i", x, y, dtype=np.float64)


def spread(total: np.ndarray, total_sq: np.ndarray, m: int) -> np.ndarray:
    """Std over ``m`` values (``ddof=0``) from their float64 sum and sum of squares."""
    mean = total / m
    return np.sqrt(np.maximum(total_sq / m - mean * mean, 0.0))


def norm64(a: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of a ``(C, m)`` array in float64, safe against overflow."""
    nrm = np.sqrt(row_sumsq(a))
    big = ~np.isfinite(nrm)
    if big.any():
        sub = a[big].astype(np.float64)
        m = np.max(np.abs(sub), axis=-1)
        nrm[big] = np.sqrt(np.sum((sub / m[:, None]) ** 2, axis=-1)) * m
    return nrm


def flushed(x: np.ndarray, sq: np.ndarray) -> np.ndarray:
    r"""Rows of the contiguous ``(C, m)`` array ``x`` (with float64 sums of squares ``sq``) whose
    every entry is below the smallest normal number of ``x.dtype``, or whose float64 mean square
    is below float64's smallest normal.  Only candidate rows (mean square below the larger of
    the two thresholds, as :math:`\max_i x_i^2 \ge \overline{x^2}`) are scanned."""
    tiny = float(np.finfo(x.dtype).tiny)
    m = x.shape[1]
    out = np.zeros(x.shape[0], dtype=bool)
    cand = sq / m < max(tiny * tiny, _TINY64)
    if cand.any():
        sub = x[cand]
        out[cand] = (np.max(np.abs(sub), axis=-1) < tiny) | (sq[cand] / m < _TINY64)
    return out


def first_true(bad: np.ndarray) -> np.ndarray:
    """1-based index of the first True per row, 0 if none."""
    anyb = bad.any(axis=1)
    return np.where(anyb, bad.argmax(axis=1) + 1, 0)


def last_true(bad: np.ndarray) -> np.ndarray:
    """1-based index of the last True per row, 0 if none."""
    L = bad.shape[1]
    anyb = bad.any(axis=1)
    return np.where(anyb, L - bad[:, ::-1].argmax(axis=1), 0)


def validity(fwd_bad: np.ndarray, fwd_flush: np.ndarray, bwd_bad: np.ndarray,
             bwd_flush: np.ndarray) -> tuple[np.ndarray, ...]:
    r"""Validity of per-replicate statistics laid out in columns ``1..K`` (forward order).

    ``fwd_bad``: a forward statistic of the column is not finite; ``fwd_flush``: its signal
    underflowed (already restricted to the cases that count).  The forward pass of a replicate is
    invalid from the first non-finite column on, and from the first underflow before it (after
    a non-finite value the engines zero the signal, which would look like a flush).  The backward
    pass runs from column ``K`` down: it is invalid from the first column (in that order) with a
    non-finite statistic or an underflow, and entirely if the forward pass was invalid anywhere.

    Returns
    -------
    nonfinite, underflow : ndarray of int, shape (C,)
        First forward column (1-based) that is non-finite / underflows; 0 = never.
    g_nonfinite, g_underflow : ndarray of int, shape (C,)
        The same in backward order (the largest column); -1 = not assessed (forward invalid).
    valid, gvalid : ndarray of bool, shape (C, K)
    """
    nonfinite = first_true(fwd_bad)
    after_overflow = np.cumsum(fwd_bad, axis=1) > 0
    underflow = first_true(fwd_flush & ~after_overflow)
    fwd_ok = (nonfinite == 0) & (underflow == 0)
    g_nonfinite = np.where(fwd_ok, last_true(bwd_bad), -1)
    g_underflow = np.where(fwd_ok, last_true(bwd_flush & ~bwd_bad), -1)
    col = np.arange(1, fwd_bad.shape[1] + 1)[None, :]

    def before(first: np.ndarray) -> np.ndarray:
        return (first[:, None] == 0) | (col < first[:, None])

    def after(first: np.ndarray) -> np.ndarray:
        return (first[:, None] == 0) | (col > first[:, None])

    valid = before(nonfinite) & before(underflow)
    gvalid = fwd_ok[:, None] & after(g_nonfinite) & after(g_underflow)
    return nonfinite, underflow, g_nonfinite, g_underflow, valid, gvalid


def finish(layers: tuple[Layer, ...], mlp: bool, st: dict[str, np.ndarray],
           backward: bool = True) -> dict[str, object]:
    """The result's arrays from a walk's statistics ``st`` over ``layers``: validity masks and
    first-invalid indices (:func:`validity`), per position for the output statistics and per ``Dense`` layer for the MLP statistics; invalid
    entries set to 0 behind the masks (never NaN).  ``backward=False`` (a forward-only walk):
    every backward statistic is invalid and its first-invalid indices are -1 (not assessed)."""
    P = len(layers)
    fwd_bad = np.zeros(st["output_second"].shape, dtype=bool)
    for k in OUTPUT_FORWARD:
        fwd_bad |= ~np.isfinite(st[k])
    in_second = np.column_stack([st["_input_second"], st["output_second"][:, :-1]])
    counts_fwd = np.array([layer.sample_flush_is_underflow for layer in layers])
    counts_bwd = np.array([layer.sample_gradient_flush_is_underflow for layer in layers])
    fwd_flush = st["_flush"] & (in_second > 0) & counts_fwd[None, :]
    g_second = st["_g_second"][:, 1:]
    # the gradient of position p's output is produced by layer p + 1 (none for the last one)
    bwd_flush = np.zeros_like(fwd_flush)
    bwd_flush[:, :-1] = (st["_g_flush"][:, 1:P] & st["_g_nonzero"][:, 2:]
                         & counts_bwd[None, 1:])
    out_masks = validity(fwd_bad, fwd_flush, ~np.isfinite(g_second), bwd_flush)
    public = {"output_mean": st["output_mean"], "output_second": st["output_second"],
              "output_unit_std": st["output_unit_std"], "output_gradient_second": g_second}
    if mlp:
        masks = _mlp_statistics(st, public, fwd_bad, fwd_flush, counts_bwd[1])
    else:
        masks = out_masks
    if not backward:
        masks = forward_only(masks)
        out_masks = forward_only(out_masks)
    for k, values in public.items():  # keep invalid entries NaN-free behind the masks
        if k in OUTPUT_QUANTITIES:
            mask = out_masks[5] if k == "output_gradient_second" else out_masks[4]
        else:
            mask = masks[5] if k in BACKWARD_QUANTITIES else masks[4]
        public[k] = np.where(mask, values, 0.0)
    input_second = np.array(st["_input_second"], dtype=float)
    out: dict[str, object] = {
        "_stats": public, "nonfinite_layer_per_replicate": masks[0],
        "underflow_layer_per_replicate": masks[1],
        "gradient_nonfinite_layer_per_replicate": masks[2],
        "gradient_underflow_layer_per_replicate": masks[3], "valid": masks[4],
        "gradient_valid": masks[5], "input_second": input_second, "output_valid": out_masks[4],
        "output_gradient_valid": out_masks[5]}
    for arr in list(public.values()) + [v for k, v in out.items() if k != "_stats"]:
        arr.setflags(write=False)  # type: ignore[union-attr]
    return out


def forward_only(masks: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """:func:`validity`'s masks with the backward pass not assessed (-1) and never valid."""
    nonfinite, underflow, g_nonfinite, _, valid, gvalid = masks
    none = np.full_like(g_nonfinite, -1)
    return nonfinite, underflow, none, none.copy(), valid, np.zeros_like(gvalid)


def _mlp_statistics(st: dict[str, np.ndarray], public: dict[str, np.ndarray], fwd_bad: np.ndarray,
                    fwd_flush: np.ndarray, derivative_nonvanishing: bool) -> tuple[np.ndarray, ...]:
    r"""The MLP statistics (position ``2l - 2`` is ``Dense`` layer ``l``'s :math:`z_l`, ``2l - 1``
    its activation :math:`a_l`) from the first backward pass (seeded at :math:`z_L`), and their
    masks: a layer is invalid where either of its positions is; a gradient underflow is
    :math:`g_l` flushed while :math:`\delta_l \ne 0`, or -- for an activation whose derivative
    vanishes only on a null set -- :math:`\delta_l` flushed while :math:`g_{l+1} \ne 0`."""
    L = st["output_second"].shape[1] // 2
    for name, column in (("mean", "output_mean"), ("second", "output_second"),
                         ("unit_std", "output_unit_std")):
        public[f"preactivation_{name}"] = st[column][:, 0::2]
        public[f"activation_{name}"] = st[column][:, 1::2]
    m_second = st["_m_second"]
    public["delta_second"] = m_second[:, 1:2 * L:2]
    public["gradient_second"] = m_second[:, 0:2 * L:2]
    public["weight_gradient_second"] = st["weight_gradient_second"]
    bwd_bad = np.zeros((m_second.shape[0], L), dtype=bool)
    for k in BACKWARD_QUANTITIES:
        bwd_bad |= ~np.isfinite(public[k])
    g_flush = st["_m_flush"][:, 0:2 * L:2] & (public["delta_second"] > 0)
    if derivative_nonvanishing:  # delta_l = phi'(z_l) g_{l+1} flushed although g_{l+1} did not
        g_flush |= st["_m_flush"][:, 1:2 * L:2] & st["_m_nonzero"][:, 2:2 * L + 1:2]
    return validity(fwd_bad[:, 0::2] | fwd_bad[:, 1::2], fwd_flush[:, 0::2], bwd_bad, g_flush)
