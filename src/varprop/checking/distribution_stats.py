r"""Intervals for the distributional targets of the checker: a quantile of the per-network
statistic (distribution-free, from order statistics) and its :math:`\mathrm{CV}^2` (delta method
on the log scale with the fourth moment).

Both return objects with the interface the sequential plan uses (``estimate``, ``lo``, ``hi``,
``p_greater(theta)``, ``p_less(theta)``, ``heavy_tailed``, ``skewness``, ``bootstrap``), like
:class:`varprop.checking.stats.MeanInterval`.

Quantile
--------
For :math:`R` i.i.d. values with continuous CDF :math:`F` and :math:`p`-quantile :math:`Q_p`, the
count :math:`B = \#\{x_i \le Q_p\}` is Binomial(:math:`R, p`).  With
:math:`j = F_B^{-1}(a/2)` and :math:`k = F_B^{-1}(1 - a/2) + 1` the order statistics give
:math:`P(x_{(j)} > Q_p) = P(B \le j - 1) < a/2` and :math:`P(x_{(k)} < Q_p) = P(B \ge k) \le a/2`:
:math:`[x_{(j)}, x_{(k)}]` covers :math:`Q_p` with probability at least :math:`1 - a` at every
:math:`R` (no normal approximation; e.g. Conover 1999, *Practical Nonparametric Statistics*,
sec. 3.2).  The one-sided p-values are the binomial tails: :math:`H_0: Q_p \le \theta` has
:math:`p = P(B \le \#\{x_i \le \theta\})`, :math:`H_0: Q_p \ge \theta` has
:math:`p = P(B \ge \#\{x_i < \theta\})`.

CV^2
----
:math:`\widehat{\mathrm{CV}^2} = s^2/\bar x^2`; its logarithm is, to first order, the mean of the
influence values :math:`\psi_i = ((x_i - \bar x)^2 - \hat\sigma^2)/\hat\sigma^2 - 2(x_i - \bar x)/
\bar x` (delta method, fourth moment through :math:`\operatorname{Var}\psi`), so
:func:`~varprop.checking.stats.mean_interval` on :math:`\log\widehat{\mathrm{CV}^2} + \psi_i`
(Hall's skewness correction, heavy-tail guard and bootstrap cross-check included) gives an
interval for :math:`\log\mathrm{CV}^2`, exponentiated.  The log scale makes the interval
asymmetric like the sampling law of a variance ratio.

Calibration (seeded :func:`varprop.verify` runs of true claims, ``tol=0``, ``alpha=0.1``, one
look): the median of one network's :math:`\overline{z_3^2}` (ReLU, He normal, width 16, exact
law), 300 runs of 200 networks: 21 refuted (7%; the order-statistic interval is conservative);
100 runs of 500 networks: 16 refuted at :math:`p = 0.5` (1.9 standard errors above 10%) and 11 at
:math:`p = 0.9`.  The :math:`\mathrm{CV}^2` of a linear LeCun net's :math:`\overline{z_3^2}`
(width 32, exact :math:`\mathrm{CV}^2 = 0.274`), 200 runs of 10000 networks: 22 refuted (11%), 69
inconclusive (the heavy-tail guard: under the claimed law the influence values have skewness 18,
Cochran's rule asks for 8110 replicates, and the sample skewness or the bootstrap flags some
runs); with 2000 networks every run is inconclusive up front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _sst

from varprop.checking import stats as _stats

__all__ = ["QuantileInterval", "quantile_interval", "LogScaleInterval", "cv2_interval",
           "lognormal_influence_skewness"]


@dataclass(frozen=True)
class QuantileInterval:
    r"""Distribution-free :math:`1 - a` interval for the :math:`p`-quantile (module docstring)."""

    estimate: float
    lo: float
    hi: float
    n: int
    p: float
    alpha: float
    values: np.ndarray = field(repr=False, compare=False)
    skewness: float = 0.0
    heavy_tailed: bool = False
    bootstrap: tuple[float, float] | None = None

    def p_greater(self, theta: float) -> float:
        r"""p-value of :math:`H_0: Q_p \le \theta` (small when the data put :math:`Q_p` above)."""
        count = int(np.searchsorted(self.values, theta, side="right"))
        return float(_sst.binom.cdf(count, self.n, self.p))

    def p_less(self, theta: float) -> float:
        r"""p-value of :math:`H_0: Q_p \ge \theta`."""
        count = int(np.searchsorted(self.values, theta, side="left"))
        return float(_sst.binom.sf(count - 1, self.n, self.p))


def quantile_interval(x: np.ndarray, p: float, alpha: float) -> QuantileInterval:
    """Order-statistic interval for the ``p``-quantile of ``x`` at level ``1 - alpha``; an end
    beyond the sample is infinite (too few values for that level)."""
    values = np.sort(np.asarray(x, dtype=float))
    n = int(values.size)
    if n < 2:
        raise ValueError(f"need at least 2 replicates for an interval, got {n}")
    j = int(_sst.binom.ppf(alpha / 2.0, n, p))
    k = int(_sst.binom.ppf(1.0 - alpha / 2.0, n, p)) + 1
    lo = float(values[j - 1]) if j >= 1 else -math.inf
    hi = float(values[k - 1]) if k <= n else math.inf
    est = float(np.quantile(values, p))
    return QuantileInterval(est, min(lo, est), max(hi, est), n, float(p), float(alpha), values)


@dataclass(frozen=True)
class LogScaleInterval:
    """An interval computed for :math:`\\log\\theta` (``inner``), reported for :math:`\\theta`."""

    inner: _stats.MeanInterval

    @property
    def estimate(self) -> float:
        return math.exp(self.inner.estimate)

    @property
    def lo(self) -> float:
        return math.exp(self.inner.lo)

    @property
    def hi(self) -> float:
        return math.exp(min(self.inner.hi, 709.0))

    @property
    def heavy_tailed(self) -> bool:
        return self.inner.heavy_tailed

    @property
    def skewness(self) -> float:
        return self.inner.skewness

    @property
    def bootstrap(self) -> tuple[float, float] | None:
        b = self.inner.bootstrap
        return None if b is None else (math.exp(b[0]), math.exp(min(b[1], 709.0)))

    def p_greater(self, theta: float) -> float:
        return 0.0 if theta <= 0 else self.inner.p_greater(math.log(theta))

    def p_less(self, theta: float) -> float:
        return 1.0 if theta <= 0 else self.inner.p_less(math.log(theta))


def lognormal_influence_skewness(cv2: float) -> float:
    r"""Skewness of the influence values :math:`\psi` of :math:`\log\widehat{\mathrm{CV}^2}`
    when the data are log-normal with :math:`\mathrm{CV}^2 = c`: :math:`\psi` is a quadratic in
    :math:`X` and :math:`E X^k = (1 + c)^{k(k-1)/2}` (mean 1), so its first three moments are
    polynomial sums.  The heavy-tail guard of the :math:`\mathrm{CV}^2` interval uses it as a floor:
    the sample skewness of :math:`\psi` (sixth moments of the data) is badly biased low for
    spread statistics (e.g. a deep narrow ReLU net's mean square: :math:`c = 13.6` gives
    :math:`10^{11}`, no affordable sample estimates that :math:`\mathrm{CV}^2`).  ``inf`` beyond
    the float range."""
    c = float(cv2)
    if not (c > 0 and math.isfinite(c)):
        return 0.0
    psi = np.polynomial.Polynomial([(1.0 - c) / c + 2.0, -2.0 / c - 2.0, 1.0 / c])
    with np.errstate(over="ignore", invalid="ignore"):
        moments = [float(sum(coef * (1.0 + c) ** (k * (k - 1) / 2.0)
                             for k, coef in enumerate((psi ** j).coef))) for j in (1, 2, 3)]
        m1, m2, m3 = moments
        var = m2 - m1 * m1
        third = m3 - 3.0 * m1 * m2 + 2.0 * m1 ** 3
        gamma = third / var ** 1.5 if var > 0 else 0.0
    return abs(gamma) if math.isfinite(gamma) else math.inf


def cv2_interval(x: np.ndarray, alpha: float, *, rng: np.random.Generator | None = None,
                 guard_skewness: float = 0.0) -> LogScaleInterval:
    r""":math:`1 - a` interval for :math:`\mathrm{CV}^2 = \operatorname{Var} x/(E x)^2` of positive
    data (module docstring); ``guard_skewness`` floors the heavy-tail guard's skewness of the
    influence values (:func:`lognormal_influence_skewness` of the claimed
    :math:`\mathrm{CV}^2`)."""
    x = np.asarray(x, dtype=float)
    if x.size < 3:
        raise ValueError(f"need at least 3 replicates for a CV^2 interval, got {x.size}")
    m = float(np.mean(x))
    d = x - m
    v = float(np.mean(d * d))
    if not (m > 0 and v > 0):
        raise ValueError("the CV^2 needs positive data that are not all equal")
    cv2 = float(np.var(x, ddof=1)) / (m * m)
    psi = (d * d - v) / v - 2.0 * d / m
    return LogScaleInterval(_stats.mean_interval(math.log(cv2) + psi, alpha, rng=rng,
                                                 guard_skewness=guard_skewness))
