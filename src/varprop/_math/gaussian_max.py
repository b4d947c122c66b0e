r"""Moments of window maxima of a Gaussian field, by randomized quasi-Monte Carlo (RQMC).

A Gaussian field :math:`z \sim N(\mu, K)` over :math:`P` positions and windows :math:`w(u, j)`
(``taps``, ``(U, J)``) define the pooled outputs :math:`y_u = \max_j \phi(z_{w(u, j)})` for an
elementwise map :math:`\phi` (the identity for max pooling of a Gaussian field; an activation
applied before the pool otherwise: for a non-decreasing :math:`\phi`, :math:`\max_j \phi(z_j) =
\phi(\max_j z_j)`).  The forward moments :math:`E y_u`, :math:`E y_u y_{u'}` and the argmax
routing :math:`a_u = w(u, \arg\max_j \phi(z_{w(u,j)}))` of the gradient have no closed form beyond
two entries (Clark 1961), and the joint law of two overlapping windows' maxima is needed for the
covariance between pooled outputs.  Declared method: joint RQMC of the whole field,

.. math::

    z^{(n)} = \mu + L\, \Phi^{-1}(v^{(n)}), \qquad L L^\top = K,

with :math:`v^{(n)}` the points of ``scrambles`` independently scrambled Sobol' sequences
(Owen scrambling, :class:`scipy.stats.qmc.Sobol`) of ``points`` points each in dimension
:math:`P`.  Every estimate is the mean of the per-scramble estimates; their standard deviation
over :math:`\sqrt{\text{scrambles}}` is its standard error (independent randomizations: an
unbiased error estimate, L'Ecuyer & Lemieux 2002).  A fixed ``seed`` makes the result
deterministic.  Why not tensor-product Gauss-Hermite for small windows: the maximum has kinks
where two entries tie, so Gauss-Hermite loses its spectral accuracy there, and it would not
give the joint law of overlapping windows nor the argmax routing; the RQMC points give all of
them at once, with an error estimate.

Backward (gradient independence: the output gradient :math:`\delta`, covariance :math:`G`, is
independent of :math:`z`): :math:`\partial z_t = \sum_u 1\{a_u = t\} \delta_u`, so

.. math::

    E (\partial z)_t (\partial z)_{t'} = \sum_{u, u'} P(a_u = t, a_{u'} = t')\, G_{u u'}.

with the joint argmax probabilities of every pair of windows estimated from the same points
(the rule is exact given them; for windows that do not overlap each position lies in one
window and only :math:`P(a_{u(t)} = t, a_{u(t')} = t')` enters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from varprop._util.lazy import lazy_module

#: SciPy's quasi-Monte Carlo module, imported at first use (:mod:`varprop._util.lazy`)
qmc = lazy_module("scipy.stats.qmc")
#: scipy.special, imported at first use (:mod:`varprop._util.lazy`)
special = lazy_module("scipy.special")

__all__ = ["MaxSamples", "WindowMoments", "factor", "sample_window_max", "window_max_moments"]

#: Uniform points are clipped to [EPS, 1 - EPS] before the inverse normal CDF.
EPS = 1e-13


def factor(cov: np.ndarray) -> np.ndarray:
    r"""A factor :math:`L` with :math:`L L^\top = K` for a positive semi-definite :math:`K`:
    Cholesky when it succeeds, else the eigendecomposition with negative rounding noise in the
    eigenvalues set to 0."""
    cov = np.asarray(cov, dtype=float)
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        lam, vec = np.linalg.eigh(cov)
        return vec * np.sqrt(np.maximum(lam, 0.0))


def _batched_factor(cov: np.ndarray) -> np.ndarray:
    """:func:`factor` for a stack ``(..., J, J)`` of covariance matrices."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        lam, vec = np.linalg.eigh(cov)
        return vec * np.sqrt(np.maximum(lam, 0.0))[..., None, :]


def _sobol_normals(dim: int, points: int, scrambles: int, seed: int) -> np.ndarray:
    """``(scrambles, points, dim)`` standard normals from independently scrambled Sobol' sets."""
    m = max(int(np.ceil(np.log2(points))), 1)
    seqs = np.random.SeedSequence(seed).spawn(scrambles)
    out = np.empty((scrambles, 2**m, dim))
    for i, ss in enumerate(seqs):
        v = qmc.Sobol(d=dim, scramble=True, seed=np.random.default_rng(ss)).random_base2(m)
        out[i] = special.ndtri(np.clip(v, EPS, 1.0 - EPS))
    return out


@dataclass(frozen=True)
class MaxSamples:
    r"""The RQMC points' window maxima and argmaxima.

    ``y``: ``(S, N, U)`` pooled outputs per scramble; ``tap``: ``(S, N, U)`` the tap :math:`j` of
    each window's maximum; ``taps``: the windows ``(U, J)``; ``p_in``: input positions;
    ``slope``: :math:`\phi'` at the argmax, for the gradient at the Gaussian :math:`z`.
    """

    y: np.ndarray
    tap: np.ndarray
    taps: np.ndarray
    p_in: int
    #: ``(S, N, U)``: :math:`\phi'(z)` at each window's argmax (``None`` without a derivative).
    slope: np.ndarray | None = None

    @property
    def scrambles(self) -> int:
        return self.y.shape[0]

    def mean(self) -> tuple[np.ndarray, np.ndarray]:
        """``(E y_u, standard error)``."""
        per = self.y.mean(axis=1)
        return per.mean(axis=0), per.std(axis=0, ddof=1) / np.sqrt(self.scrambles)

    def second(self) -> tuple[np.ndarray, np.ndarray]:
        """``(E y_u y_{u'}, standard error)``, ``(U, U)`` each."""
        n = self.y.shape[1]
        per = np.einsum("snu,snv->suv", self.y, self.y) / n
        return per.mean(axis=0), per.std(axis=0, ddof=1) / np.sqrt(self.scrambles)

    def routed_cov(self, grad_cov: np.ndarray, through: bool = False,
                   own: np.ndarray | None = None) -> np.ndarray:
        r"""Backward covariance :math:`\sum_{u,u'} P(a_u = t, a_{u'} = t') G_{uu'}` (exact given
        the points' argmax frequencies; overlapping windows included).  With ``through``, the
        gradient at :math:`z` instead of :math:`\phi(z)`: :math:`\sum_{u,u'} E[\phi'(z_t)
        \phi'(z_{t'}) 1\{a_u = t, a_{u'} = t'\}] G_{uu'}` (the routing and :math:`\phi'`
        evaluated on the same points: they are dependent).

        Only the pairs of windows with :math:`G_{uu'} \ne 0` are counted (a banded or diagonal
        :math:`G`, as convolutions and dense layers give, costs little): per pair the
        :math:`J \times J` histogram of the two argmax taps, then scattered to the positions.
        ``own`` (``(U, J)``, optional): the pairs :math:`u = u'` from these more precise
        per-window values instead (:attr:`WindowMoments.route` or ``route_through``)."""
        u, j = self.taps.shape
        g = np.asarray(grad_cov, dtype=float)
        a, b = np.nonzero(g)
        if own is not None:
            same = a == b
            diag_pairs = a[same]
            a, b = a[~same], b[~same]
        s_count, n, _ = self.tap.shape
        weights = self.slope if through and self.slope is not None else None
        hist = np.zeros((len(a), j * j))
        block = max(1, 2**22 // max(n, 1))
        for lo in range(0, len(a), block):
            pa, pb = a[lo:lo + block], b[lo:lo + block]
            offset = (np.arange(len(pa)) * (j * j))[None, :]
            for s in range(s_count):
                code = self.tap[s][:, pa] * j + self.tap[s][:, pb] + offset
                w = None if weights is None else weights[s][:, pa] * weights[s][:, pb]
                hist[lo:lo + block] += np.bincount(
                    code.ravel(), None if w is None else w.ravel(),
                    minlength=len(pa) * j * j).reshape(len(pa), j * j)
        hist *= g[a, b][:, None] / (s_count * n)
        if own is not None:  # the same window twice: only j = j' (one argmax per window)
            own_hist = np.zeros((len(diag_pairs), j * j))
            own_hist[:, np.arange(j) * (j + 1)] = own[diag_pairs] * g[diag_pairs, diag_pairs][:, None]
            hist = np.concatenate([hist, own_hist])
            a, b = np.concatenate([a, diag_pairs]), np.concatenate([b, diag_pairs])
        rows = np.repeat(self.taps[a], j, axis=1)  # (pairs, J*J): tap j of u for code j*J + j'
        cols = np.tile(self.taps[b], (1, j))
        flat = np.bincount((rows * self.p_in + cols).ravel(), hist.ravel(),
                           minlength=self.p_in * self.p_in)
        return flat.reshape(self.p_in, self.p_in)


def sample_window_max(mean: np.ndarray, cov: np.ndarray, taps: np.ndarray, *,
                      transform: Callable[[np.ndarray], np.ndarray] | None = None,
                      derivative: Callable[[np.ndarray], np.ndarray] | None = None,
                      points: int = 1024, scrambles: int = 8, seed: int = 0) -> MaxSamples:
    r"""RQMC points of :math:`z \sim N(\text{mean}, \text{cov})` and the window maxima of
    :math:`\phi(z)` (``transform``; identity if ``None``) over ``taps`` (``(U, J)`` positions,
    all valid), with :math:`\phi'` (``derivative``) at the argmaxima if given.  ``points`` is
    rounded up to a power of two."""
    mean = np.ravel(np.asarray(mean, dtype=float))
    p = mean.size
    z = _sobol_normals(p, points, scrambles, seed) @ factor(cov).T + mean
    v = z if transform is None else np.asarray(transform(z), dtype=float)
    windows = v[..., taps]  # (S, N, U, J)
    j = np.argmax(windows, axis=-1)
    y = np.take_along_axis(windows, j[..., None], axis=-1)[..., 0]
    slope = None
    if derivative is not None:
        z_arg = np.take_along_axis(z[..., taps], j[..., None], axis=-1)[..., 0]
        slope = np.broadcast_to(np.asarray(derivative(z_arg), dtype=float), z_arg.shape)
    return MaxSamples(y, j, taps, p, slope)


@dataclass(frozen=True)
class WindowMoments:
    r"""Per-window results of :func:`window_max_moments` (arrays over the :math:`U` windows):
    ``mean`` :math:`E y_u`, ``second`` :math:`E y_u^2`, ``se_second`` its standard error,
    ``route`` ``(U, J)`` :math:`P(\arg\max_u = j)`, ``route_through`` ``(U, J)``
    :math:`E[\phi'(z_{w(u,j)})^2 1\{\arg\max_u = j\}]` (``None`` without a derivative),
    ``points`` the number of points per window law."""

    mean: np.ndarray
    second: np.ndarray
    se_second: np.ndarray
    route: np.ndarray
    route_through: np.ndarray | None
    points: int


def window_max_moments(mean: np.ndarray, cov: np.ndarray, taps: np.ndarray, *,
                       transform: Callable[[np.ndarray], np.ndarray] | None = None,
                       derivative: Callable[[np.ndarray], np.ndarray] | None = None,
                       points: int = 2**14, scrambles: int = 8, seed: int = 0) -> WindowMoments:
    r"""Per window only, the moments of :math:`y_u` and its argmax probabilities, from RQMC
    points of the :math:`J`-dimensional law of the window alone (its mean and covariance taken
    from the field's): many more points than the joint sampling affords, at a cost of
    :math:`U N J^2` (windows with the same law, e.g. the interior of a zero-padded convolution's
    output, are computed once)."""
    mean = np.ravel(np.asarray(mean, dtype=float))
    cov = np.asarray(cov, dtype=float)
    u, j = taps.shape
    law = np.concatenate([mean[taps], cov[taps[:, :, None], taps[:, None, :]].reshape(u, j * j)],
                         axis=1)
    uniq, inverse = np.unique(law, axis=0, return_inverse=True)
    inverse = np.ravel(inverse)
    mw, lw = uniq[:, :j], _batched_factor(uniq[:, j:].reshape(-1, j, j))
    xi = _sobol_normals(j, points, scrambles, seed)  # (S, N, J)
    s_count, n = xi.shape[:2]
    k = len(uniq)
    per_m, per_2 = np.empty((s_count, k)), np.empty((s_count, k))
    route, through = np.empty((k, j)), (None if derivative is None else np.empty((k, j)))
    block = max(1, 2**23 // (s_count * n * j))
    for lo in range(0, k, block):
        sl = slice(lo, lo + block)
        z = np.einsum("snj,ukj->snuk", xi, lw[sl]) + mw[sl]
        v = z if transform is None else np.asarray(transform(z), dtype=float)
        arg = np.argmax(v, axis=-1)  # (S, N, block)
        y = np.take_along_axis(v, arg[..., None], axis=-1)[..., 0]
        per_m[:, sl] = y.mean(axis=1)
        per_2[:, sl] = (y * y).mean(axis=1)
        hit = arg[..., None] == np.arange(j)  # (S, N, block, J)
        route[sl] = hit.mean(axis=(0, 1))
        if through is not None:
            d = np.broadcast_to(np.asarray(derivative(z), dtype=float), z.shape)
            through[sl] = (hit * d * d).mean(axis=(0, 1))
    se2 = per_2.std(axis=0, ddof=1) / np.sqrt(s_count)
    return WindowMoments(per_m.mean(axis=0)[inverse], per_2.mean(axis=0)[inverse], se2[inverse],
                         route[inverse], None if through is None else through[inverse],
                         s_count * n)
