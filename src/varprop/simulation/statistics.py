r"""Per-replicate statistics of the Monte Carlo engines: reductions, underflow tests, validity masks.

Every reduction runs along the last axis of a contiguous per-replicate row (``(C, m)``), in
float64, so a replicate's statistics do not depend on how many replicates are processed together
(bit-identical results for every chunk size).  Random numbers come from :class:`Draws`: block
``j`` of a chunk draws from its own stream.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["Draws", "rows", "row_sum", "row_sumsq", "row_dot", "spread", "norm64", "flushed",
           "first_true", "last_true", "validity"]

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
        """``(C,) + shape`` filled block by block with ``fn(generator, block_replicates)``."""
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
