r"""Bivariate Gaussian expectations :math:`E[f(x) f(y)]` and :math:`E[f'(x) f'(y)]`, vectorised over
many pairs, for

.. math:: (x, y) \sim N\!\left(\begin{pmatrix} m_1 \\ m_2 \end{pmatrix},
          \begin{pmatrix} a & c \\ c & b \end{pmatrix}\right).

The general engine needs them for the covariance between two positions of a tensor after an
elementwise nonlinearity (unequal variances occur next to zero padding) and between two samples
of a batch.  Identical ``(m1, m2, a, b, c)`` rows are evaluated once (:func:`unique_rows`).

Three evaluators:

- :func:`relu_class`: closed form for :math:`\phi(x) = \alpha x` (:math:`x > 0`),
  :math:`\beta x` (:math:`x < 0`) at zero means -- ReLU (:math:`\alpha = 1, \beta = 0`), leaky
  ReLU, ``abs`` (:math:`\beta = -1`), linear (:math:`\alpha = \beta`).  With
  :math:`\rho = c/\sqrt{ab}`, :math:`\theta = \arccos\rho` and the degree-1 arc-cosine kernel
  (Cho & Saul 2009, "Kernel methods for deep learning")
  :math:`J(\theta) = \sin\theta + (\pi - \theta)\cos\theta`,

  .. math::

      E[x^+ y^+] = E[x^- y^-] = \frac{\sqrt{ab}}{2\pi} J(\theta), \qquad
      E[x^+ y^-] = -\frac{\sqrt{ab}}{2\pi} J(\pi - \theta)

  (:math:`x^- = \min(x, 0)`), so :math:`E\phi(x)\phi(y) = \frac{\sqrt{ab}}{2\pi}[(\alpha^2 +
  \beta^2) J(\theta) - 2\alpha\beta J(\pi - \theta)]`, and with :math:`P(x>0, y>0) = (\pi -
  \theta)/(2\pi)`, :math:`E\phi'(x)\phi'(y) = [(\alpha^2 + \beta^2)(\pi - \theta) +
  2\alpha\beta\,\theta]/(2\pi)`.
- :func:`erf_pair`: :math:`\phi = \operatorname{erf}` at zero means (Williams 1998, "Computation
  with infinite neural networks"): :math:`E\,\mathrm{erf}(x)\mathrm{erf}(y) = \frac{2}{\pi}
  \arcsin\frac{2c}{\sqrt{(1 + 2a)(1 + 2b)}}` and, from :math:`\mathrm{erf}'(x) =
  \frac{2}{\sqrt\pi} e^{-x^2}`, :math:`E\,\mathrm{erf}'(x)\mathrm{erf}'(y) = \frac{4}{\pi}
  [(1 + 2a)(1 + 2b) - 4c^2]^{-1/2}`.
- :func:`by_quadrature`: any :math:`\phi` and means: conditioning on :math:`x = m_1 + \sqrt a\, t`,
  :math:`y \mid x \sim N(m_2 + \frac{c}{a}(x - m_1), b - c^2/a)`, so
  :math:`E\phi(x)\phi(y) = E_t[\phi(x)\,\bar\phi(E[y \mid x])]` with :math:`\bar\phi` the
  Gaussian smoothing of :math:`\phi` by the conditional variance (:func:`smoothed`, split at
  the kinks); the outer expectation is the composite
  Gauss--Legendre rule split at the kinks (:func:`varprop._math.quadrature.gaussian_expectations`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from varprop._math.quadrature import gaussian_expectations

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)
_NODES, _WEIGHTS = (_NODES + 1.0) / 2.0, _WEIGHTS / 2.0
_BASE = np.arange(-10.0, 10.5, 1.0)  # standardised window; the mass beyond is below 1e-22

__all__ = ["by_quadrature", "erf_pair", "relu_class", "smoothed", "unique_rows"]

ArrayFn = Callable[[np.ndarray], np.ndarray]


def unique_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, inverse)``: the distinct rows of the stacked 1-D ``columns`` and, per input row,
    the index of its distinct row (so that ``rows[inverse]`` rebuilds the input).  Sorted with
    ``lexsort`` on the numeric columns (much faster than ``np.unique(axis=0)`` on many rows)."""
    stacked = np.stack([np.asarray(c, dtype=float).ravel() for c in columns], axis=1)
    if stacked.shape[0] == 0:
        return stacked, np.zeros(0, dtype=np.intp)
    order = np.lexsort(stacked.T[::-1])
    ordered = stacked[order]
    new = np.ones(ordered.shape[0], dtype=bool)
    new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    ids = np.cumsum(new) - 1
    inverse = np.empty(ordered.shape[0], dtype=np.intp)
    inverse[order] = ids
    return ordered[new], inverse


def _angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`(\sqrt{ab}, \theta = \arccos(c/\sqrt{ab}))` (:math:`\theta = \pi/2` where a
    variance is 0: the pair is then uncorrelated)."""
    s = np.sqrt(np.maximum(a, 0.0) * np.maximum(b, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(s > 0, c / np.where(s > 0, s, 1.0), 0.0)
    return s, np.arccos(np.clip(rho, -1.0, 1.0))


def relu_class(alpha: float, beta: float, a: np.ndarray, b: np.ndarray, c: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    r"""``(E phi(x)phi(y), E phi'(x)phi'(y))`` for the piecewise-linear :math:`\phi` of slopes
    ``alpha`` (positive side) and ``beta`` (negative side), zero means (module docstring)."""
    s, theta = _angle(a, b, c)

    def J(t: np.ndarray) -> np.ndarray:
        return np.sin(t) + (math.pi - t) * np.cos(t)

    same, mixed = alpha * alpha + beta * beta, 2.0 * alpha * beta
    ff = s / (2.0 * math.pi) * (same * J(theta) - mixed * J(math.pi - theta))
    dd = (same * (math.pi - theta) + mixed * theta) / (2.0 * math.pi)
    return ff, dd


def erf_pair(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``(E erf(x)erf(y), E erf'(x)erf'(y))`` at zero means (module docstring)."""
    prod = (1.0 + 2.0 * a) * (1.0 + 2.0 * b)
    ff = 2.0 / math.pi * np.arcsin(np.clip(2.0 * c / np.sqrt(prod), -1.0, 1.0))
    dd = 4.0 / math.pi / np.sqrt(np.maximum(prod - 4.0 * c * c, 0.0))
    return ff, dd


def smoothed(f: ArrayFn, mu: np.ndarray, var: float, kinks: Sequence[float]) -> np.ndarray:
    r""":math:`E f(\mu_k + \sqrt{v}\, e)`, :math:`e \sim N(0, 1)`, for every mean :math:`\mu_k`:
    composite 16-point Gauss--Legendre on :math:`|e| \le 10` in panels of width at most 1, split
    at each mean's kinks :math:`(\kappa - \mu_k)/\sqrt v` (so that kinks cost no accuracy)."""
    mu = np.asarray(mu, dtype=float)
    if var <= 0.0:
        return np.asarray(f(mu), dtype=float)
    s = math.sqrt(var)
    extra = np.clip((np.asarray(kinks, float)[None, :] - mu[:, None]) / s, _BASE[0], _BASE[-1])
    edges = np.sort(np.concatenate([np.broadcast_to(_BASE, (mu.size, _BASE.size)), extra], axis=1),
                    axis=1)
    lo, hi = edges[:, :-1, None], edges[:, 1:, None]
    t = (lo + (hi - lo) * _NODES).reshape(mu.size, -1)
    w = ((hi - lo) * _WEIGHTS).reshape(mu.size, -1) * np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    return np.sum(f(mu[:, None] + s * t) * w, axis=1)


def by_quadrature(f: ArrayFn, df: ArrayFn, kinks: Sequence[float], m1: np.ndarray,
                  m2: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    r"""``(E f(x)f(y), E f'(x)f'(y))`` per row by conditional quadrature (module docstring);
    identical rows are evaluated once."""
    rows, inverse = unique_rows(m1, m2, a, b, c)
    out = np.empty((rows.shape[0], 2))
    for k, (mk1, mk2, ak, bk, ck) in enumerate(rows):
        ak, bk = max(ak, 0.0), max(bk, 0.0)
        if ak == 0.0:  # x is the constant m1
            y = np.array([mk2])
            out[k] = (f(np.array([mk1]))[0] * smoothed(f, y, bk, kinks)[0],
                      df(np.array([mk1]))[0] * smoothed(df, y, bk, kinks)[0])
            continue
        slope = ck / ak
        resid = max(bk - ck * slope, 0.0)

        def both(x: np.ndarray, mk1: float = mk1, mk2: float = mk2, slope: float = slope,
                 resid: float = resid) -> np.ndarray:
            cond = mk2 + slope * (x - mk1)
            return np.stack([f(x) * smoothed(f, cond, resid, kinks),
                             df(x) * smoothed(df, cond, resid, kinks)])

        out[k] = gaussian_expectations([both], float(mk1), float(ak), kinks)[0]
    return out[inverse, 0], out[inverse, 1]
