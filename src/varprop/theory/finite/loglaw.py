r"""Laws of the logarithm :math:`L = \log X` of a positive per-network statistic :math:`X`.

Two kinds, with one interface (``cdf``, ``quantile``, ``moment``, ``log_mean``, ``log_variance``,
``zero_probability``):

:class:`LogChiSquareSum`
    The exact law of a sum of independent terms, each a finite mixture of
    :math:`\log(c\,\chi^2_k)` (weights :math:`p`, scales :math:`c`, degrees of freedom :math:`k`;
    :math:`k = 0` is the atom :math:`X = 0`, :math:`L = -\infty`), plus a constant and optionally
    an independent normal (characteristic function :math:`e^{-s^2t^2/2}`).  This is the
    law of a linear or ReLU network's statistics with Gaussian weights (Hanin 2018; Hanin & Nica
    2019): :mod:`varprop.theory.finite.exact`.  Its characteristic function is closed form,

    .. math:: E\,e^{it\log(c\chi^2_k)} = c^{it}\,2^{it}\,\frac{\Gamma(k/2 + it)}{\Gamma(k/2)},

    and so are its moments :math:`E X^s` (put :math:`s = it`).  The CDF is the Gil-Pelaez
    inversion evaluated with the midpoint rule of Davies (1980),

    .. math:: F(x) = \tfrac12 - \sum_{j \ge 0} \frac{\operatorname{Im}[\varphi(t_j) e^{-i t_j x}]}
              {\pi (j + 1/2)}, \qquad t_j = (j + \tfrac12) h,

    whose only errors are aliasing -- the mass farther than :math:`2\pi/h` from :math:`x`, made
    negligible by :math:`2\pi/h = 2|x - \mu| + 60\,\mathrm{sd} + 60/k_{\min}` (the heaviest left
    tail, that of :math:`\log\chi^2_{k_{\min}}`, decays like :math:`e^{k_{\min}u/2}`) -- and truncation, stopped where
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
from functools import cached_property, lru_cache

import numpy as np

from varprop._util.lazy import lazy_module
from varprop.errors import VarpropError

optimize = lazy_module("scipy.optimize")
special = lazy_module("scipy.special")
stats = lazy_module("scipy.stats")

__all__ = [
    "AffineBetaMixture",
    "ChiSquareMixture",
    "LogChiSquareSum",
    "LogNormal",
    "QUANTILE_REACH",
    "gamma_product",
    "lognormal_matching",
    "normal_chi_square",
]

_CF_FLOOR = 1e-17
_MAX_TERMS_T = 1 << 16
_LOG2 = math.log(2.0)
_SERIES_FROM = 1e6
#: The smallest tail probability for which :meth:`LogChiSquareSum.quantile` inverts the CDF.
QUANTILE_REACH = 1e-9


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
        r""":math:`c\,\chi^2_K`, :math:`K \sim \mathrm{Binomial}(n, 1/2)`: the atom :math:`K = 0`
        (probability :math:`2^{-n}`) and the components within 12 standard deviations of
        :math:`n/2` (the rest carries less than :math:`10^{-30}`), their log-probabilities
        accumulated from the mode by the exact ratios :math:`p_{k+1}/p_k = (n-k)/(k+1)` (no
        cancellation at huge :math:`n`) and normalised.  For :math:`n \ge 4096` only every
        :math:`s`-th component is kept, :math:`s = \lfloor\sqrt n/16\rfloor` (eight per binomial
        standard deviation :math:`\sqrt n/2`), renormalised: the summand is analytic in
        :math:`K` with a Gaussian envelope of width :math:`\sigma_K = \sqrt n/2`, so by Poisson
        summation the thinned sum differs from the full one by about
        :math:`e^{-2\pi^2(\sigma_K/s)^2} \approx e^{-1260}` (the phase :math:`t\log K` turns by
        :math:`t s/K \ll \pi` a step over the CF's range); this keeps one CF evaluation
        at about 400 components (24 000 at :math:`n = 10^6`)."""
        mode = n // 2
        half = math.ceil(12 * math.sqrt(n))
        lo, hi = max(0, mode - half), min(n, mode + half)
        up = np.arange(mode, hi)  # log p_{k+1} - log p_k for k = mode..hi-1
        down = np.arange(lo, mode)[::-1]  # log p_k - log p_{k+1} for k = mode-1..lo
        log_rel = np.concatenate([np.cumsum(-np.log((n - down) / (down + 1.0)))[::-1], [0.0],
                                  np.cumsum(np.log((n - up) / (up + 1.0)))])
        ks = np.arange(lo, hi + 1)
        keep = (ks > 0) & ((ks - mode) % _binomial_stride(n) == 0)
        log_rel, ks = log_rel[keep], ks[keep]
        p0 = 2.0 ** -n
        weights = np.exp(log_rel - special.logsumexp(log_rel)) * (1 - p0)
        return ChiSquareMixture((p0, *weights.tolist()), (float(scale),) * (ks.size + 1),
                                (0, *(int(k) for k in ks)))

    @property
    def zero_probability(self) -> float:
        return float(sum(p for p, k in zip(self.weights, self.dofs) if k == 0))

    @property
    def size(self) -> int:
        """Number of components (the cost of one CF evaluation)."""
        return len(self.dofs)

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
        terms = (np.log(p[on]) + s * (np.log(c[on]) + _LOG2)
                 + np.real(_log_gamma_ratio(k[on] / 2, np.full(k[on].shape, s, dtype=complex))))
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
        terms = np.log(p) + it * (logc + _LOG2) + _log_gamma_ratio(k / 2, it)
        return special.logsumexp(terms, axis=1)


def _binomial_stride(n: int) -> int:
    """The thinning of :meth:`ChiSquareMixture.binomial` (1 below ``n = 4096``)."""
    return max(1, math.isqrt(n) // 16) if n >= 4096 else 1


@lru_cache(maxsize=4096)
def _jacobi_rule(nodes: int, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss--Jacobi nodes mapped to :math:`[0, 1]` and normalised weights, computed once per
    ``(nodes, alpha, beta)``: every layer of a width and every leaky ReLU slope use the same rules
    (``roots_jacobi`` was most of the cost of a document's finite-width quantiles)."""
    t, w = special.roots_jacobi(nodes, alpha, beta)
    x, w = (1 + t) / 2, w / w.sum()
    x.flags.writeable = w.flags.writeable = False
    return x, w


@dataclass(frozen=True)
class AffineBetaMixture:
    r"""One term :math:`\log(\beta^2 + (\alpha^2 - \beta^2)B)`, :math:`B \sim
    \mathrm{Beta}(K/2, (n-K)/2)`, :math:`K \sim \mathrm{Binomial}(n, 1/2)` (:math:`B = 0` at
    :math:`K = 0`, 1 at :math:`K = n`): with an independent :math:`\log\chi^2_n` it is
    :math:`\log(\alpha^2\chi^2_K + \beta^2\chi^2_{n-K})`, the leaky ReLU's layer factor
    (:math:`\chi^2_K + \chi^2_{n-K}` is independent of the fraction :math:`B`).  Bounded between
    :math:`\log\beta^2` and :math:`\log\alpha^2`; its characteristic function and moments are
    Gauss--Jacobi quadratures over :math:`B` (``nodes`` per :math:`K`; the weight's nodes cluster
    where the Beta law has its mass)."""

    a2: float
    b2: float
    n: int
    nodes: int = 160

    dofs = ()
    zero_probability = 0.0

    @cached_property
    def _rule(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Binomial weights (K, 1), log values (K, nodes), quadrature weights (K, nodes)."""
        mix = ChiSquareMixture.binomial(1.0, self.n)
        p = np.array(mix.weights)
        values, weights = [], []
        for K in mix.dofs:
            if K in (0, self.n):
                x = np.full(self.nodes, 0.0 if K == 0 else 1.0)
                w = np.full(self.nodes, 1.0 / self.nodes)
            else:
                x, w = _jacobi_rule(self.nodes, (self.n - K) / 2 - 1, K / 2 - 1)
            values.append(np.log(self.b2 + (self.a2 - self.b2) * x))
            weights.append(w)
        return p[:, None], np.array(values), np.array(weights)

    @property
    def size(self) -> int:
        return self._rule[1].size

    def log_mgf(self, s: float) -> float:
        p, v, w = self._rule
        return float(np.log(np.sum(p * w * np.exp(s * v))))

    def log_cumulants(self) -> tuple[float, float]:
        p, v, w = self._rule
        mean = float(np.sum(p * w * v))
        return mean, float(np.sum(p * w * (v - mean) ** 2))

    def log_cf(self, t: np.ndarray) -> np.ndarray:
        p, v, w = self._rule
        pw, vv = (p * w).ravel(), v.ravel()
        return np.log(np.exp(1j * t[:, None] * vv[None, :]) @ pw)


def _log_gamma_ratio(a: np.ndarray, it: np.ndarray) -> np.ndarray:
    r""":math:`\log\Gamma(a + it) - \log\Gamma(a)`.  For :math:`a \ge 10^6` the difference of two
    numbers of size :math:`a\log a` would lose the digits that matter, so there it is the cumulant
    series :math:`\sum_{j=1}^{8} (it)^j\psi^{(j-1)}(a)/j!` (the CF is negligible beyond
    :math:`t \approx 9\sqrt a`, where the first omitted term is below :math:`10^{-9}`)."""
    big = a >= _SERIES_FROM
    out = special.loggamma(np.where(big, 1.0, a) + it) - special.gammaln(np.where(big, 1.0, a))
    if big.any():
        series = sum(it ** j * special.polygamma(j - 1, np.where(big, a, 1.0)) / math.factorial(j)
                     for j in range(1, 9))
        out = np.where(big, series, out)
    return out


@dataclass(frozen=True, eq=False)
class LogChiSquareSum:
    r""":math:`L = \text{shift} + \sum_j m_j \cdot T_j + N(0, \text{normal\_variance})`
    (``m_j`` independent copies of the term :math:`T_j`, an independent normal); see the module
    docstring."""

    terms: tuple[tuple[ChiSquareMixture | AffineBetaMixture, int], ...]
    shift: float
    normal_variance: float = 0.0
    _cum: tuple[float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mean, var = self.shift, self.normal_variance
        for term, count in self.terms:
            m, v = term.log_cumulants()
            mean += count * m
            var += count * v
        object.__setattr__(self, "_cum", (mean, var))

    @property
    def zero_probability(self) -> float:
        r""":math:`P(X = 0) = P(L = -\infty)`."""
        log_finite = sum(count * math.log1p(-term.zero_probability) for term, count in self.terms)
        return max(0.0, -math.expm1(log_finite))

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
        return (s * self.shift + 0.5 * s * s * self.normal_variance
                + sum(count * term.log_mgf(s) for term, count in self.terms))

    def moment(self, s: float) -> float:
        return math.exp(self.log_moment(s))

    def _cf_centered(self, t: np.ndarray) -> np.ndarray:
        mu = self.log_mean
        out = 1j * t * (self.shift - mu) - 0.5 * self.normal_variance * t * t
        for term, count in self.terms:
            out = out + count * term.log_cf(t)
        return np.exp(out)

    def _grid(self, reach: float) -> tuple[np.ndarray, np.ndarray]:
        """The midpoint grid and centred CF valid for ``|x - mean| <= reach``."""
        sd = math.sqrt(self.log_variance)
        h = 2 * math.pi / (2 * reach + 60 * sd + self._tail)
        n = 256
        while True:
            t = (np.arange(n) + 0.5) * h
            cf = self._cf_centered(t)
            if np.abs(cf[-max(8, n // 16):]).max() < _CF_FLOOR or n >= _MAX_TERMS_T:
                return t, cf
            n *= 2

    @cached_property
    def _tail(self) -> float:
        r"""The reach of the heaviest left tail: :math:`\log\chi^2_k` has density
        :math:`\propto e^{ku/2}` below its mode, mass :math:`10^{-13}` beyond :math:`60/k`."""
        k_min = min((k for term, _ in self.terms for k in term.dofs if k > 0), default=math.inf)
        return 60.0 / k_min if k_min < math.inf else 0.0

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

    def _log_mgf_finite(self, s: float) -> float:
        r""":math:`\log E[e^{sL} \mid L > -\infty]` for real ``s`` (``inf`` where it diverges:
        :math:`s \le -k_{\min}/2`)."""
        out = s * self.shift + 0.5 * s * s * self.normal_variance
        for term, count in self.terms:
            if isinstance(term, AffineBetaMixture):
                out += count * term.log_mgf(s)
                continue
            p, logc, k = term._finite()
            if s <= -k.min() / 2:
                return math.inf
            lg = np.real(_log_gamma_ratio(k / 2, np.full(k.shape, s, dtype=complex)))
            out += count * float(special.logsumexp(np.log(p) + s * (logc + _LOG2) + lg))
        return out

    def _tail_bound(self, x: float) -> float:
        r"""A Chernoff bound on the conditional tail beyond ``x``: :math:`P(L > x) \le
        \min_{s>0} E e^{s(L - x)}` right of the mean, :math:`P(L \le x) \le
        \min_{s<0} E e^{s(L - x)}` left of it (over a few ``s``; 1 where none is smaller)."""
        y = x - self.log_mean
        k_min = min((k for term, _ in self.terms for k in term.dofs if k > 0), default=math.inf)
        steps = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
        if y > 0:
            svals = [st / math.sqrt(max(self.log_variance, 1e-300)) for st in steps]
        else:
            scale = [-st / math.sqrt(max(self.log_variance, 1e-300)) for st in steps]
            cap = -0.49 * k_min if k_min < math.inf else -math.inf
            svals = [max(sv, cap) for sv in scale]
        logs = [self._log_mgf_finite(sv) - sv * x for sv in svals]
        return math.exp(min(0.0, min(logs)))

    def _bounded_cdf(self, x: float) -> float:
        """The conditional CDF, but 0 or 1 without inverting where a Chernoff bound puts less than
        :data:`_CF_FLOOR` beyond ``x`` (far tails: no CF grid on a scale of ``|x|``)."""
        y = x - self.log_mean
        if abs(y) > self._near[0] and self._tail_bound(x) < _CF_FLOOR:
            return 1.0 if y > 0 else 0.0
        return self._conditional_cdf(x)

    def cdf(self, x: float) -> float:
        """P(L <= x)."""
        p0 = self.zero_probability
        if x == -math.inf:
            return p0
        if x == math.inf:
            return 1.0
        return p0 + (1 - p0) * self._bounded_cdf(x)

    def quantile(self, p: float) -> float:
        """The ``p``-quantile of L (``-inf`` within the atom).  The numerical inversion has an
        absolute error of about :math:`10^{-14}` in the CDF, so quantiles are given for
        conditional probabilities within ``[QUANTILE_REACH, 1 - QUANTILE_REACH]`` only (beyond it
        a :class:`~varprop.VarpropError` states the range)."""
        p0 = self.zero_probability
        if p <= p0:
            return -math.inf
        target = (p - p0) / (1 - p0)
        if not QUANTILE_REACH <= target <= 1 - QUANTILE_REACH:
            lo = p0 + (1 - p0) * QUANTILE_REACH
            atom = f"p <= {p0:.6g} (the atom at X = 0) or " if p0 > 0 else ""
            raise VarpropError(
                f"p = {p!r}: this law's quantiles are computed for {atom}p in [{lo:.6g}, "
                f"{1 - (1 - p0) * QUANTILE_REACH:.15g}] (the numerical CDF inversion is "
                f"accurate to about 1e-14 in probability, so quantiles beyond "
                f"{QUANTILE_REACH:g} of either tail would be wrong)")
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


def normal_chi_square(mean: float, between: float, within: float) -> LogChiSquareSum:
    r"""The law of :math:`X = e^{N(\mu, s^2)}\,\chi^2_\nu/\nu` with :math:`EX` = ``mean``,
    :math:`\operatorname{Var}E[X\mid\hat q] =` ``between`` (log-normal: the network-to-network
    factor) and :math:`E\operatorname{Var}[X\mid\hat q] =` ``within`` (a scaled chi-square: the
    statistic of :math:`n` i.i.d. units given :math:`\hat q`, Satterthwaite):
    :math:`s^2 = \log(1 + \text{between}/\text{mean}^2)`, :math:`\nu = 2\,\text{mean}^2/\text{within}`."""
    s2 = math.log1p(between / mean ** 2)
    nu = 2 * mean * mean / within
    return LogChiSquareSum(((ChiSquareMixture.single(1.0, nu), 1),),
                           math.log(mean) - s2 / 2 - math.log(nu), s2)
