r"""The Gaussian shortcut: a ``Dense`` layer with i.i.d. normal weights, sampled exactly in law in :math:`O(n)`.

``engine="gaussian"`` (chosen by ``"auto"`` for Gaussian schemes when the batch is small against
the widths) is exact in distribution and costs :math:`O((n_l + n_{l-1}) B)` random numbers per layer.
Write :math:`W = \mu_w \mathbf 1 \mathbf 1^\top + s W_0` with :math:`W_0` standard normal, and let
:math:`A = a_{l-1} \in \mathbb{R}^{n_{in} \times B}` (the batch as columns) have the thin QR
decomposition :math:`A = Q R`, :math:`Q \in \mathbb{R}^{n_{in} \times k}` with orthonormal columns,
:math:`k = \min(n_{in}, B)`.  Because :math:`W_0` is independent of :math:`A` and its rows are
isotropic,

.. math::

    W_0 = W_0 Q Q^\top + W_0 (I - Q Q^\top) \overset{d}{=} E Q^\top + G (I - Q Q^\top),

with :math:`E = W_0 Q \in \mathbb{R}^{n_{out}\times k}` and :math:`G \in \mathbb{R}^{n_{out}\times
n_{in}}` independent standard normal matrices (:math:`E` and :math:`W_0(I - QQ^\top)` are jointly
Gaussian and uncorrelated, hence independent, and :math:`W_0 (I-QQ^\top) \overset{d}{=} G(I -
QQ^\top)`).  Therefore, jointly for the forward and the backward pass,

.. math::

    Z = W A = s\, E R + \mu_w \mathbf 1 (\mathbf 1^\top A),

(for :math:`B = 1`: :math:`z = s \|a\| e`, i.e. :math:`z \sim N(0, s^2\|a\|^2 I)` given
:math:`a`), and, for the backward signal :math:`\Delta = \delta_l \in \mathbb{R}^{n_{out} \times
B}`,

.. math::

    W^\top \Delta = s \bigl[ Q (E^\top \Delta) + (I - Q Q^\top) G^\top \Delta \bigr]
    + \mu_w \mathbf 1 (\mathbf 1^\top \Delta).

:math:`G` appears only through :math:`G^\top \Delta`, whose rows are i.i.d.
:math:`N(0, \Delta^\top \Delta)` (a :math:`B \times B` covariance): with the thin QR
:math:`\Delta = P C`, :math:`C \in \mathbb{R}^{k' \times B}`, :math:`k' = \min(n_{out}, B)`,
:math:`G^\top \Delta = (G^\top P) C \overset{d}{=} F C` with :math:`F \in \mathbb{R}^{n_{in} \times
k'}` standard normal, independent of everything else (:math:`\Delta` depends on :math:`W` only
through the layers above and through :math:`Z`, i.e. through :math:`E`, never through :math:`G`).
For :math:`B = 1`: :math:`W_0^\top \delta = q (e^\top \delta) + \|\delta\| (I - q q^\top) f`
with :math:`q = a/\|a\|` and :math:`f \sim N(0, I)`.  The rank-deficient case (:math:`a = 0`,
dead ReLU layers, :math:`B > n_{in}`) is covered: any orthonormal :math:`Q` with
:math:`A = QR` works.  Biases are added independently in both engines.

:func:`forward_vector` / :func:`backward_vector` are the batch-1 case on ``(C, n)`` arrays;
:func:`forward_batch` / :func:`backward_batch` the general case on ``(C, n, B)`` arrays.  Norms
and coefficients are computed in float64; signals stay in the simulation's dtype.  The backward
functions take ``draw(shape)``, which hands out the standard normals :math:`F`; several backward
passes over the same forward pass share them (each pass alone is then exact in law).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from varprop.simulation.statistics import Draws, norm64, row_dot, row_sum

__all__ = ["forward_vector", "backward_vector", "forward_batch", "backward_batch"]

Draw = Callable[[tuple[int, ...]], np.ndarray]


def forward_vector(draws: Draws, a: np.ndarray, sq: np.ndarray, n_out: int, s: float, mu: float,
                   ) -> tuple[np.ndarray, tuple]:
    r""":math:`z = s\|a\| e + \mu_w (\mathbf 1^\top a)\mathbf 1` for ``a`` of shape ``(C, n_in)``
    with float64 sums of squares ``sq``; returns ``(z, cache)`` (biases not included)."""
    dt = a.dtype
    big = float(np.finfo(dt).max)
    nrm = np.sqrt(sq)
    redo = ~np.isfinite(nrm)
    if redo.any():
        nrm[redo] = norm64(a[redo])
    e = draws.normal((n_out,), dt)
    fac = s * nrm
    z = e * fac.astype(dt)[:, None]
    over = (fac > big) & np.isfinite(fac)  # beyond dtype: decide entry by entry
    if over.any():
        z[over] = (e[over].astype(np.float64) * fac[over, None]).astype(dt)
    if mu != 0.0:
        z += (mu * row_sum(a)).astype(dt)[:, None]
    return z, (a, nrm, e)


def backward_vector(draw: Draw, cache: tuple, deltas: list[np.ndarray], dqs: list[np.ndarray],
                    s: float, mu: float) -> list[np.ndarray]:
    r""":math:`W^\top\delta = s[q (e^\top\delta) + \|\delta\|(f - q (q^\top f))] + \mu_w(\mathbf
    1^\top\delta)\mathbf 1` with :math:`q = a/\|a\|` (:math:`e_1` if :math:`a = 0`) for each
    ``delta`` of ``deltas`` (backward passes over the same forward pass, sharing :math:`f`),
    given ``dqs`` their float64 sums of squares."""
    a_prev, nrm, e = cache
    dt = a_prev.dtype
    big, tiny = float(np.finfo(dt).max), float(np.finfo(dt).tiny)
    f = draw((a_prev.shape[1],))
    pos = nrm > 0
    safe = np.where(pos, nrm, 1.0)
    af = row_dot(a_prev, f)
    out = []
    for delta, dq in zip(deltas, dqs):
        t = row_dot(e, delta)
        dn = np.sqrt(dq)
        c = np.where(pos, s * (t - dn * af / safe), 0.0)  # g = s dn f + c q
        coef = c / safe
        g = f * (s * dn).astype(dt)[:, None]
        g += a_prev * coef.astype(dt)[:, None]
        mag = np.abs(coef)
        odd = (mag > big) | ((mag < tiny) & (mag > 0))  # c/|a| outside dtype's normal range
        if odd.any():  # form q = a/|a| first, in float64
            g[odd] = (f[odd] * (s * dn[odd])[:, None]
                      + a_prev[odd].astype(np.float64) / safe[odd, None] * c[odd, None]).astype(dt)
        if not pos.all():  # a = 0: q = e_1
            g[~pos, 0] = (s * t[~pos]).astype(dt)
        if mu != 0.0:
            g += (mu * row_sum(delta)).astype(dt)[:, None]
        out.append(g)
    return out


def forward_batch(draws: Draws, a: np.ndarray, dead: np.ndarray, n_out: int, s: float, mu: float,
                  ) -> tuple[np.ndarray, tuple]:
    """``Z = W A`` for Gaussian ``W`` and a batch ``A`` (C, n_in, B) via ``A = Q R`` (biases not
    included); ``dead`` marks replicates whose values stopped being finite."""
    dt = a.dtype
    a64 = a.astype(np.float64)
    if dead.any():  # values are garbage already; keep the linear algebra finite
        a64[dead] = 0.0
    qmat, r = np.linalg.qr(a64)  # (C, n_in, k), (C, k, B)
    k = qmat.shape[-1]
    e = draws.normal((n_out, k), dt)
    z64 = s * np.matmul(e.astype(np.float64), r)
    if mu != 0.0:
        z64 += mu * a64.sum(axis=1, keepdims=True)
    return z64.astype(dt), (qmat, e)


def backward_batch(draw: Draw, cache: tuple, delta: np.ndarray, s: float, mu: float) -> np.ndarray:
    r""":math:`W^\top \Delta` from the conditional law of ``W`` given the forward pass (batch)."""
    dt = delta.dtype
    qmat, e = cache
    d64 = delta.astype(np.float64)
    bad = ~np.isfinite(d64).reshape(d64.shape[0], -1).all(axis=-1)
    if bad.any():
        d64[bad] = 0.0
    _, cmat = np.linalg.qr(d64)                             # Delta = P C, C: (C, k', B)
    kp = cmat.shape[-2]
    f = draw((qmat.shape[1], kp)).astype(np.float64)
    y = np.matmul(f, cmat)                                  # G^T Delta in law, (C, n_in, B)
    y -= np.matmul(qmat, np.matmul(np.swapaxes(qmat, -1, -2), y))
    y += np.matmul(qmat, np.matmul(np.swapaxes(e.astype(np.float64), -1, -2), d64))
    g64 = s * y
    if mu != 0.0:
        g64 += mu * d64.sum(axis=1, keepdims=True)
    g = g64.astype(dt)
    if bad.any():
        g[bad] = np.nan  # keep the backward pass of those replicates marked non-finite
    return g
