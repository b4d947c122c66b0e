r"""Laws of the logarithm :math:`L = \log X` of a positive per-network statistic :math:`X`.

Two kinds, with one interface (``cdf``, ``quantile``, ``moment``, ``log_mean``, ``log_variance``,
``zero_probability``):

:class:`LogChiSquareSum`
    The exact law of a sum of independent terms, each a finite mixture of
    :math:`\log(c\,\chi^2_k)` (weights :math:`p`, scales :math:`c`, degrees of freedom :math:`k`;
    :math:`k = 0` is the atom :math:`X = 0`, :math:`L = -\infty`), plus a constant.  This is the
    law of a linear or ReLU network's statistics with Gaussian weights (Hanin 2018; Hanin & Nica
    2019): :mod:`varprop.theory.finite.exact`.  Its characteristic function is closed form,

    .. math:: E\,e^{it\log(c\chi^2_k)} = c^{it}\,2^{it}\,\frac{\Gamma(k/2 + it)}{\Gamma(k/2)},

    and so are its moments :math:`E X^s` (put :math:`s = it`).  The CDF is the Gil-Pelaez
    inversion evaluated with the midpoint rule of Davies (1980),

    .. math:: F(x) = \tfrac12 - \sum_{j \ge 0} \frac{\operatorname{Im}[\varphi(t_j) e^{-i t_j x}]}
              {\pi (j + 1/2)}, \qquad t_j = (j + \tfrac12) h,

    whose only errors are aliasing -- the mass farther than :math:`2\pi/h` from :math:`x`, made
    negligible by :math:`2\pi/h = 2|x - \mu| + 60\,\mathrm{sd} + 40` (the heaviest left tail,
    :math:`\log\chi^2_1`, decays like :math:`e^{u/2}`) -- and truncation, stopped where
    :math:`|\varphi| < 10^{-17}`.  Quantiles are the root of the CDF to :math:`10^{-12}` in
    :math:`L`.  Identical terms (equal widths and scales) are evaluated once and raised to their
    multiplicity, so the cost does not grow with depth.

:class:`LogNormal`
    :math:`L \sim N(\mu, s^2)`: the declared approximation where only the mean and variance of
    :math:`X` (or of :math:`L`) are known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import optimize, special, stats

__all__ = ["ChiSquareMixture", "LogChiSquareSum", "LogNormal", "lognormal_matching", "gamma_product"]

_CF_FLOOR = 1e-17
_MAX_TERMS_T = 1 << 16
_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class ChiSquareMixture:
    r"""One term: :math:`\log(c_j \chi^2_{k_j})` with probability :math:`p_j` (``k = 0``: the atom
    at :math:`-\infty`)."""

    weights: tuple[float, ...]
    scales: tuple[float, ...]
    dofs: tuple[float, ...]

    @staticmethod
    def single(scale: float, dof: float) -> ChiSquareMixture:
        return ChiSquareMixture((1.0,), (float(scale),), (dof,))

    @staticmethod
    def binomial(scale: float, n: int) -> ChiSquareMixture:
        r""":math:`c\,\chi^2_K`, :math:`K \sim \mathrm{Binomial}(n, 1/2)` (components of
        probability below :math:`10^{-20}` dropped, except the atom :math:`K = 0`)."""
        ks = np.arange(n + 1)
        logp = stats.binom.logpmf(ks, n, 0.5)
        keep = (logp > math.log(1e-20)) | (ks == 0)
        return ChiSquareMixture(tuple(np.exp(logp[keep]).tolist()), (float(scale),) * int(keep.sum()),
                                tuple(int(k) for k in ks[keep]))

    @property
    def zero_probability(self) -> float:
        return float(sum(p for p, k in zip(self.weights, self.dofs) if k == 0))

    def _finite(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights (renormalised to the finite part), log scales, dofs of the components k > 0."""
        p = np.array(self.weights)
        c = np.array(self.scales)
        k = np.array(self.dofs, dtype=float)
        on = k > 0
        return p[on] / p[on].sum(), np.log(c[on]), k[on]

    def log_mgf(self, s: float) -> float:
        r""":math:`\log E[(c\chi^2_k)^s]` for real :math:`s > 0` (the atom contributes 0)."""
        p = np.array(self.weights)
        c = np.array(self.scales)
        k = np.array(self.dofs, dtype=float)
        on = k > 0
        terms = (np.log(p[on]) + s * (np.log(c[on]) + _LOG2) + special.gammaln(k[on] / 2 + s)
                 - special.gammaln(k[on] / 2))
        return float(special.logsumexp(terms))

    def log_cumulants(self) -> tuple[float, float]:
        """Mean and variance of the term, conditional on being finite."""
        p, logc, k = self._finite()
        means = logc + _LOG2 + special.digamma(k / 2)
        mean = float(p @ means)
        var = float(p @ (special.polygamma(1, k / 2) + (means - mean) ** 2))
        return mean, var

    def log_cf(self, t: np.ndarray) -> np.ndarray:
        """Log of the characteristic function of the finite part at real ``t`` (complex array)."""
        p, logc, k = self._finite()
        it = 1j * t[:, None]
        terms = (np.log(p) + it * (logc + _LOG2) + special.loggamma(k / 2 + it)
                 - special.gammaln(k / 2))
        return special.logsumexp(terms, axis=1)


@dataclass(frozen=True, eq=False)
class LogChiSquareSum:
    r""":math:`L = \text{shift} + \sum_j m_j \cdot T_j` (``m_j`` independent copies of the term
    :math:`T_j`); see the module docstring."""

    terms: tuple[tuple[ChiSquareMixture, int], ...]
    shift: float
    _cum: tuple[float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mean, var = self.shift, 0.0
        for term, count in self.terms:
            m, v = term.log_cumulants()
            mean += count * m
            var += count * v
        object.__setattr__(self, "_cum", (mean, var))

    @property
    def zero_probability(self) -> float:
        r""":math:`P(X = 0) = P(L = -\infty)`."""
        log_finite = sum(count * math.log1p(-term.zero_probability) for term, count in self.terms)
        return -math.expm1(log_finite)

    @property
    def log_mean(self) -> float:
        """E L given L finite."""
        return self._cum[0]

    @property
    def log_variance(self) -> float:
        """Var L given L finite."""
        return self._cum[1]

    def log_moment(self, s: float) -> float:
        r""":math:`\log E X^s`, :math:`s > 0` (the atom at 0 included)."""
        return s * self.shift + sum(count * term.log_mgf(s) for term, count in self.terms)

    def moment(self, s: float) -> float:
        return math.exp(self.log_moment(s))

    def _cf_centered(self, t: np.ndarray) -> np.ndarray:
        mu = self.log_mean
        out = 1j * t * (self.shift - mu)
        for term, count in self.terms:
            out = out + count * term.log_cf(t)
        return np.exp(out)

    def _grid(self, reach: float) -> tuple[np.ndarray, np.ndarray]:
        """The midpoint grid and centred CF valid for ``|x - mean| <= reach``."""
        sd = math.sqrt(self.log_variance)
        h = 2 * math.pi / (2 * reach + 60 * sd + 40)
        n = 256
        while True:
            t = (np.arange(n) + 0.5) * h
            cf = self._cf_centered(t)
            if np.abs(cf[-max(8, n // 16):]).max() < _CF_FLOOR or n >= _MAX_TERMS_T:
                return t, cf
            n *= 2

    @cached_property
    def _near(self) -> tuple[float, np.ndarray, np.ndarray]:
        """The grid for ``|x - mean| <= 40 sd`` (every quantile of interest), computed once."""
        reach = 40 * math.sqrt(self.log_variance)
        return (reach, *self._grid(reach))

    def _conditional_cdf(self, x: float) -> float:
        y = x - self.log_mean
        reach, t, cf = self._near
        if abs(y) > reach:
            t, cf = self._grid(abs(y))
        series = np.imag(cf * np.exp(-1j * t * y)) / (np.arange(t.size) + 0.5)
        return float(min(1.0, max(0.0, 0.5 - series.sum() / math.pi)))

    def cdf(self, x: float) -> float:
        """P(L <= x)."""
        p0 = self.zero_probability
        if x == -math.inf:
            return p0
        if x == math.inf:
            return 1.0
        return p0 + (1 - p0) * self._conditional_cdf(x)

    def quantile(self, p: float) -> float:
        """The ``p``-quantile of L (``-inf`` within the atom)."""
        p0 = self.zero_probability
        if p <= p0:
            return -math.inf
        target = (p - p0) / (1 - p0)
        sd = math.sqrt(self.log_variance)
        lo, hi = self.log_mean - 4 * sd, self.log_mean + 4 * sd
        while self._conditional_cdf(lo) > target:
            lo -= 4 * sd
        while self._conditional_cdf(hi) < target:
            hi += 4 * sd
        return optimize.brentq(lambda x: self._conditional_cdf(x) - target, lo, hi, xtol=1e-12,
                               rtol=1e-14)


@dataclass(frozen=True)
class LogNormal:
    r""":math:`L \sim N(\mu, s^2)` (``sd = s``)."""

    mu: float
    sd: float

    zero_probability = 0.0

    @property
    def log_mean(self) -> float:
        return self.mu

    @property
    def log_variance(self) -> float:
        return self.sd ** 2

    def log_moment(self, s: float) -> float:
        return s * self.mu + 0.5 * (s * self.sd) ** 2

    def moment(self, s: float) -> float:
        return math.exp(self.log_moment(s))

    def cdf(self, x: float) -> float:
        return float(stats.norm.cdf(x, self.mu, self.sd)) if self.sd > 0 else float(x >= self.mu)

    def quantile(self, p: float) -> float:
        return float(stats.norm.ppf(p, self.mu, self.sd)) if self.sd > 0 else self.mu


def lognormal_matching(mean: float, variance: float) -> LogNormal:
    r"""The log-normal law of :math:`X` with the given mean and variance:
    :math:`s^2 = \log(1 + \operatorname{Var}X / (EX)^2)`, :math:`\mu = \log EX - s^2/2`."""
    s2 = math.log1p(variance / mean ** 2)
    return LogNormal(math.log(mean) - s2 / 2, math.sqrt(s2))


def gamma_product(mean: float, variance: float, factors: int) -> LogChiSquareSum:
    r"""The law of :math:`X = EX\prod_{k=1}^{F}\chi^2_{\nu,k}/\nu` (``F = factors`` i.i.d.
    factors) with the given mean and variance: :math:`(1 + 2/\nu)^F = 1 + \operatorname{Var}X/(EX)^2`.
    The shape of a linear/ReLU network's exact law (a product of chi-square factors), used where
    only its exact moments are known (non-Gaussian weights, biases)."""
    nu = 2.0 / math.expm1(math.log1p(variance / mean ** 2) / factors)
    return LogChiSquareSum(((ChiSquareMixture.single(1.0, nu), factors),),
                           math.log(mean) - factors * math.log(nu))
