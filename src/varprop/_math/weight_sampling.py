r"""Samplers of weight matrices that NumPy does not have: Haar-orthogonal matrices and the
truncated standard normal (the samplers of :class:`varprop.components.laws.Orthogonal` and
:class:`~varprop.components.laws.TruncatedNormal`).  NumPy only."""

from __future__ import annotations

import numpy as np

__all__ = ["haar_orthogonal", "truncated_standard_normal"]


def haar_orthogonal(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    """Haar-distributed matrices with orthonormal rows or columns: QR of a Gaussian matrix with
    the sign correction of Mezzadri (2007)."""
    *batch, n_out, n_in = shape
    tall = n_out >= n_in
    g = rng.standard_normal(tuple(batch) + ((n_out, n_in) if tall else (n_in, n_out)))
    q, r = np.linalg.qr(g)  # one call: LAPACK runs matrix by matrix over the batch
    d = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    d[d == 0] = 1.0
    q *= d[..., None, :]  # in place: q is qr's fresh array
    if not tall:
        q = np.swapaxes(q, -1, -2)
    return q.astype(dt, copy=False)


def truncated_standard_normal(rng: np.random.Generator, shape: tuple[int, ...], bound: float,
                              dt: np.dtype) -> np.ndarray:
    """:math:`N(0, 1)` conditioned on :math:`|w| \\le` ``bound``: rejection from the normal when
    it accepts at least 68% of the draws (``bound >= 1``), else from the uniform on
    :math:`[-b, b]`, accepting :math:`w` with probability :math:`e^{-w^2/2}` (at least 86%; the
    inverse CDF on :math:`[\\Phi(-b), \\Phi(b)]` it replaces resolved only about
    :math:`10^{-16}/b` of the interval).

    Each round redraws the rejected entries, in C order, from the same stream; only the
    redrawn entries are tested again (the others are accepted and stay), so the draws are those
    of re-testing the whole array every round, for a fraction of its cost."""
    if bound >= 1.0:
        w = rng.standard_normal(shape, dtype=dt)
        flat = w.reshape(-1)  # a view: w is C-contiguous
        todo = np.flatnonzero(np.abs(flat) > bound)
        while todo.size:
            x = rng.standard_normal(todo.size, dtype=dt)
            flat[todo] = x
            todo = todo[np.abs(x) > bound]
        return w
    w = np.empty(int(np.prod(shape, dtype=np.int64)))
    todo = np.arange(w.size)
    while todo.size:
        x = bound * (2.0 * rng.random(todo.size) - 1.0)
        ok = rng.random(todo.size) < np.exp(-0.5 * x * x)
        w[todo[ok]] = x[ok]
        todo = todo[~ok]
    return w.reshape(shape).astype(dt, copy=False)
