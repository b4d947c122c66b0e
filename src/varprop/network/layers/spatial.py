r"""Sliding-window index maps shared by :class:`~varprop.layers.Conv` and the pooling layers.

A sliding window over a grid of input positions (``in_spatial``, one or two dimensions) with
kernel :math:`k`, stride :math:`s`, dilation :math:`d` and a left padding :math:`p_l` reads, for
output position :math:`t` and tap :math:`j` (per dimension),

.. math::

    \mathrm{in}(t, j) = t s + j d - p_l,

which is a real input position when :math:`0 \le \mathrm{in}(t, j) < L`, a zero of the padding
otherwise, or, with circular padding, the position :math:`\mathrm{in}(t, j) \bmod L`.  The output
size is PyTorch's :math:`\lfloor (L + p_l + p_r - d(k-1) - 1)/s \rfloor + 1`.

:class:`Windows` holds, for one input grid, the flattened map ``taps`` (``(P_out, K)``, row-major
positions and taps, ``-1`` for a padding zero) and the per-tap selection matrices :math:`A_j`
(sparse, ``(P_in, P_out)``, :math:`(A_j)_{s t} = 1` iff :math:`\mathrm{in}(t, j) = s`), with which
every rule of the spatial layers is a congruence: a per-position second moment maps as
:math:`A_j^\top q`, a covariance :math:`K` between positions as :math:`A_j^\top K A_j` (forward) and
a gradient covariance :math:`G` as :math:`A_j G A_j^\top` (backward).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.validation import (
    check_nonnegative_int,
    check_positive_int,
    fail,
    fail_type,
)

#: scipy.sparse, imported at first use (:mod:`varprop._util.lazy`)
sps = lazy_module("scipy.sparse")

__all__ = ["Windows", "check_size_tuple", "expand", "output_size", "sliding_windows"]


def check_size_tuple(name: str, value: object, *, zero: bool = False) -> int | tuple[int, ...]:
    """An int or a tuple of one or two ints (positive, or non-negative with ``zero``)."""
    check = check_nonnegative_int if zero else check_positive_int
    if isinstance(value, (tuple, list)):
        if not 1 <= len(value) <= 2:
            raise fail(name, value, "an int or a tuple of one int per spatial dimension (1 or 2)")
        return tuple(check(name, v) for v in value)
    if isinstance(value, (str, bytes)):
        raise fail_type(name, value, "an int or a tuple of ints")
    return check(name, value)


def expand(name: str, value: int | tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """``value`` as one int per spatial dimension (an int is repeated)."""
    if isinstance(value, tuple):
        if len(value) != ndim:
            raise fail(name, value, f"an int or a tuple of {ndim} int{'s' if ndim > 1 else ''} "
                       f"(one per spatial dimension of the input)")
        return value
    return (value,) * ndim


def _taps_1d(length: int, kernel: int, stride: int, dilation: int, left: int, right: int,
             circular: bool) -> np.ndarray:
    """``(out, kernel)`` input indices of one dimension (``-1``: padding zero)."""
    out = (length + left + right - dilation * (kernel - 1) - 1) // stride + 1
    pos = (np.arange(out)[:, None] * stride + np.arange(kernel)[None, :] * dilation - left)
    if circular:
        return pos % length
    return np.where((pos >= 0) & (pos < length), pos, -1)


@dataclass(frozen=True, eq=False)
class Windows:
    """The windows of one layer on one input grid (see the module docstring)."""

    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    taps: np.ndarray  # (P_out, K) int, -1 for a padding zero

    @property
    def p_in(self) -> int:
        return math.prod(self.in_spatial)

    @property
    def p_out(self) -> int:
        return math.prod(self.out_spatial)

    @property
    def kernel(self) -> int:
        return self.taps.shape[1]

    @cached_property
    def padded_taps(self) -> np.ndarray:
        """``taps`` with the padding zero at index ``P_in`` (an appended zero entry)."""
        return np.where(self.taps < 0, self.p_in, self.taps)

    @cached_property
    def selections(self) -> tuple[sps.csr_matrix, ...]:
        r"""The sparse :math:`A_j` (``(P_in, P_out)``), one per tap :math:`j`."""
        cols = np.arange(self.p_out)
        out = []
        for j in range(self.kernel):
            rows = self.taps[:, j]
            ok = rows >= 0
            out.append(sps.csr_matrix((np.ones(int(ok.sum())), (rows[ok], cols[ok])),
                                      shape=(self.p_in, self.p_out)))
        return tuple(out)

    @cached_property
    def average(self) -> sps.csr_matrix:
        r""":math:`A = \frac1K \sum_j A_j`: the window average (pooling)."""
        return sum(self.selections[1:], self.selections[0]) / self.kernel

    @cached_property
    def overlapping(self) -> bool:
        """True if some input position is read by two different (output, tap) pairs."""
        used = self.taps[self.taps >= 0]
        return len(np.unique(used)) < len(used)

    # --- the congruences of the rules (arrays over flattened positions) -----------------------
    def forward_diag(self, q: np.ndarray) -> np.ndarray:
        r""":math:`\sum_j A_j^\top q`: per output position, the sum of ``q`` over its taps."""
        qp = np.append(np.ravel(q), 0.0)
        return qp[self.padded_taps].sum(axis=1)

    def forward_cov(self, cov: np.ndarray) -> np.ndarray:
        r""":math:`\sum_j A_j^\top K A_j` (pairs of positions read by the same tap)."""
        padded = np.zeros((self.p_in + 1, self.p_in + 1))
        padded[:-1, :-1] = cov
        out = np.zeros((self.p_out, self.p_out))
        for j in range(self.kernel):
            idx = self.padded_taps[:, j]
            out += padded[np.ix_(idx, idx)]
        return out

    def backward_diag(self, g: np.ndarray) -> np.ndarray:
        r""":math:`\sum_j A_j g`: per input position, the sum of ``g`` over the (output, tap)
        pairs that read it."""
        out = np.zeros(self.p_in + 1)
        flat = np.ravel(g)
        for j in range(self.kernel):
            np.add.at(out, self.padded_taps[:, j], flat)
        return out[:-1]

    def backward_cov(self, cov: np.ndarray) -> np.ndarray:
        r""":math:`\sum_j A_j G A_j^\top` (each tap's map :math:`t \mapsto \mathrm{in}(t, j)` is
        injective, so a fancy-indexed ``+=`` adds every term once; padding terms land in the
        discarded last row and column)."""
        out = np.zeros((self.p_in + 1, self.p_in + 1))
        cov = np.asarray(cov)
        for j in range(self.kernel):
            idx = self.padded_taps[:, j]
            out[np.ix_(idx, idx)] += cov
        return out[:-1, :-1]


#: Largest (output position, kernel tap) table a sliding window builds (8 bytes an entry).
MAX_TAPS = 2**26


def sliding_windows(in_spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                    dilation: Sequence[int], pads: Sequence[tuple[int, int]], circular: bool
                    ) -> Windows:
    """The :class:`Windows` of a sliding window (per-dimension parameters; ``pads`` are
    ``(left, right)`` per dimension).  The caller checks that every output size is >= 1; a table
    of more than :data:`MAX_TAPS` (output position, tap) pairs is refused before it is built."""
    sizes = [(n + lo + hi - d * (k - 1) - 1) // s + 1
             for n, k, s, d, (lo, hi) in zip(in_spatial, kernel, stride, dilation, pads)]
    entries = math.prod(max(o, 1) for o in sizes) * math.prod(kernel)
    if entries > MAX_TAPS:
        raise fail("input_shape", tuple(in_spatial), f"spatial sizes whose sliding-window table "
                   f"(output positions x kernel taps = {entries:,}) has at most {MAX_TAPS:,} "
                   "entries: use a smaller input or padding")
    per_dim = [_taps_1d(n, k, s, d, lo, hi, circular)
               for n, k, s, d, (lo, hi) in zip(in_spatial, kernel, stride, dilation, pads)]
    out_spatial = tuple(t.shape[0] for t in per_dim)
    taps = per_dim[0]
    for n, t in zip(in_spatial[1:], per_dim[1:]):
        a = taps[:, None, :, None]
        b = t[None, :, None, :]
        comb = np.where((a < 0) | (b < 0), -1, a * n + b)
        taps = comb.reshape(taps.shape[0] * t.shape[0], taps.shape[1] * t.shape[1])
    taps = np.ascontiguousarray(taps)
    taps.flags.writeable = False
    return Windows(tuple(in_spatial), out_spatial, taps)


def output_size(length: int, kernel: int, stride: int, dilation: int, pad_total: int) -> int:
    """PyTorch's output size :math:`\\lfloor (L + p - d(k-1) - 1)/s \\rfloor + 1` (may be < 1)."""
    return (length + pad_total - dilation * (kernel - 1) - 1) // stride + 1
