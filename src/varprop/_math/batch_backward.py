r"""Batch normalisation of one channel's whole batch -- the second moments of its output and the
gradient through it --, by randomized quasi-Monte Carlo over a Gaussian law of the batch with
arbitrary covariance.

One channel's batch (all samples and positions) is :math:`h \in \mathbb R^N`,
:math:`h \sim N(\mu, \Sigma)`.  Batch normalisation :math:`y = Ch/s`, :math:`C = I -
\mathbf 1\mathbf 1^\top/N`, :math:`s^2 = \lVert Ch\rVert^2/N + \epsilon` (biased variance) has
the symmetric Jacobian

.. math::

    J = \frac1s\,(C - w w^\top), \qquad w = y/\sqrt N \perp \mathbf 1 .

The gradient arriving at :math:`y` is :math:`\delta = d \odot g` with :math:`d = \phi'(y)`
(an activation directly above; :math:`d = 1` without one) and :math:`g` independent of
:math:`h` with covariance :math:`\Gamma` (gradient independence).  With :math:`A = D\Gamma D`,
:math:`v = Aw`:

.. math::

    E\,\delta_h\delta_h^\top = E\Big[\frac1{s^2}\big(CAC - (Cv)w^\top - w(Cv)^\top
        + (w^\top v)\, w w^\top\big)\Big],

(:math:`Cw = w`), each term an average of outer products over the points, so the cost is a few
``(points, N) x (N, N)`` products.  Points: scrambled Sobol' normals mapped by a factor of
:math:`\Sigma`; the result is deterministic for a fixed seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from varprop._math.gaussian_max import factor
from varprop._util.lazy import lazy_module

#: SciPy's quasi-Monte Carlo module, imported at first use (:mod:`varprop._util.lazy`)
qmc = lazy_module("scipy.stats.qmc")
#: scipy.special, imported at first use (:mod:`varprop._util.lazy`)
special = lazy_module("scipy.special")

__all__ = ["normalised_batch_gradient", "normalised_batch_second"]


def _normalised_points(mean: np.ndarray, cov: np.ndarray, eps: float, points: int,
                       scrambles: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per scramble: the normalised batches ``y`` (``(points, N)``) and :math:`s^2`."""
    n = mean.size
    lower = factor(np.asarray(cov, dtype=float))
    for s in range(scrambles):
        u = qmc.Sobol(n, scramble=True, seed=seed + s).random(points)
        h = special.ndtri(np.clip(u, 1e-15, 1 - 1e-15)) @ lower.T + mean
        c = h - h.mean(axis=1, keepdims=True)
        sd2 = (c * c).mean(axis=1) + eps
        yield c / np.sqrt(sd2)[:, None], sd2


def normalised_batch_second(mean: np.ndarray, cov: np.ndarray, eps: float, *,
                            points: int = 4096, scrambles: int = 8, seed: int = 0) -> np.ndarray:
    r""":math:`E\,y y^\top` (``(N, N)``) of the normalised batch :math:`y = Ch/s` for
    :math:`h \sim N(` ``mean``, ``cov`` :math:`)` (module docstring)."""
    mean = np.ravel(np.asarray(mean, dtype=float))
    acc = np.zeros((mean.size, mean.size))
    total = 0
    for y, _ in _normalised_points(mean, cov, eps, points, scrambles, seed):
        acc += y.T @ y
        total += len(y)
    return acc / total


def normalised_batch_gradient(mean: np.ndarray, cov: np.ndarray, gamma: np.ndarray,
                              deriv: Callable[[np.ndarray], np.ndarray] | None, eps: float, *,
                              points: int = 4096, scrambles: int = 8, seed: int = 0
                              ) -> np.ndarray:
    r""":math:`E\,\delta_h\delta_h^\top` (``(N, N)``, module docstring) for :math:`h \sim
    N(` ``mean``, ``cov`` :math:`)`, gradient covariance ``gamma`` at :math:`\phi(y)` (before
    :math:`\phi'`), :math:`\phi'` = ``deriv`` (``None``: identity)."""
    mean = np.ravel(np.asarray(mean, dtype=float))
    n = mean.size
    gamma = np.asarray(gamma, dtype=float)
    centre = np.eye(n) - 1.0 / n
    dd = np.zeros((n, n))
    cross = np.zeros((n, n))
    total = 0
    for y, sd2 in _normalised_points(mean, cov, eps, points, scrambles, seed):
        d = np.ones_like(y) if deriv is None else np.asarray(deriv(y), dtype=float)
        w = y / np.sqrt(n)
        weight = 1.0 / sd2
        v = d * ((d * w) @ gamma)
        cv = v - v.mean(axis=1, keepdims=True)
        wv = np.einsum("pn,pn->p", w, v)
        dd += (d * weight[:, None]).T @ d
        cross += (cv * weight[:, None]).T @ w
        w_scaled = w * (wv * weight)[:, None]
        cross -= 0.5 * (w_scaled.T @ w)  # + (w'v) w w', split over the two transposed terms
        total += points
    dd /= total
    cross /= total
    return centre @ (dd * gamma) @ centre - cross - cross.T
