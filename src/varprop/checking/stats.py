r"""Pure statistical machinery of the checker, on NumPy arrays (no simulation, no SymPy).

Everything here works on the *replicate statistics* :math:`x_1, \dots, x_R` (one number per
independent network) or, for ratio-type estimands, on the rows of an ``(R, k)`` array that a
smooth function of the column means is applied to (delta method).

Intervals
---------
:func:`mean_interval` gives a two-sided :math:`1-a` interval for :math:`E x` with

* the Student-t interval corrected for skewness by Hall's (1992) monotone transformation of the
  studentised mean :math:`T = \sqrt R(\bar x - \theta)/s`,

  .. math::

      g(T) = T + \frac{\hat\gamma}{3\sqrt R} T^2 + \frac{\hat\gamma^2}{27 R} T^3
             + \frac{\hat\gamma}{6\sqrt R},

  where :math:`\hat\gamma` is the sample skewness.  :math:`g(T)` is :math:`N(0, 1)` up to
  :math:`O(R^{-1})` (the plain t is only :math:`O(R^{-1/2})`: for right-skewed statistics it
  misses almost always on the same side).  The interval is
  :math:`\{\theta : |g(T(\theta))| \le t_{1-a/2, R-1}\}`, and the matching one-sided p-values are
  :math:`P(t_{R-1} \ge g(T))` and :math:`P(t_{R-1} \le g(T))`.
* a heavy-tail guard: the interval is flagged ``heavy_tailed`` unless
  :math:`R \ge 25\,\gamma^2` (Cochran's rule for the normal approximation of a mean), with
  :math:`\gamma` the larger of the sample skewness and, for positive data whose logarithms are
  roughly symmetric (products of many factors, such as deep ReLU stacks), the skewness of the
  log-normal with the same log-scale variance :math:`s_{\log}^2`,
  :math:`(e^{s_{\log}^2} + 2)\sqrt{e^{s_{\log}^2} - 1}` (the sample skewness of heavy-tailed data
  is itself badly biased downwards; the log-scale estimate is not) -- unless, with at least
  :data:`TAIL_TEST_MIN` values, the upper tail of the logs is six standard errors shorter than
  the normal's at the 0.999 quantile (:func:`_log_tail_shorter_than_normal`): the log-normal
  then does not describe the tail that carries the mean.
* a bootstrap-t cross-check (seeded) where affordable: if the bootstrap-t interval reaches more
  than 50% of a half-width beyond the Hall interval on either side, the interval is flagged too.

Multiple testing: :func:`holm` (Holm 1979 step-down) and :func:`bonferroni`.

References: P. Hall (1992), "On the removal of skewness by transformation", JRSS B 54, 221-228;
W. G. Cochran (1977), *Sampling Techniques*, 3rd ed., sec. 2.15; S. Holm (1979), "A simple
sequentially rejective multiple test procedure", Scand. J. Statist. 6, 65-70; D. J. Schuirmann
(1987), two one-sided tests (TOST) for equivalence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sst

__all__ = [
    "MeanInterval",
    "mean_interval",
    "variance_interval",
    "holm_adjusted",
    "lognormal_skewness",
    "sample_skewness",
    "holm",
    "bonferroni",
    "decide",
    "COCHRAN_FACTOR",
    "replicates_needed",
    "BOOTSTRAP_MAX_WORK",
]

#: Replicates required per unit of squared skewness before the interval is trusted.
COCHRAN_FACTOR = 25.0
#: The bootstrap cross-check runs when ``replicates * resamples`` stays below this.
BOOTSTRAP_MAX_WORK = 4.0e6
_BOOTSTRAP_RESAMPLES = 499


def replicates_needed(skewness: float) -> float:
    r"""Replicates the heavy-tail guard asks for: :math:`\lceil 25\,\gamma^2 \rceil`.

    ``math.inf`` when :math:`\gamma` is infinite (log-scale variance beyond ~700: no finite
    budget makes a mean interval trustworthy), never an ``OverflowError``."""
    gamma = abs(float(skewness))
    if not gamma < 1e150:  # gamma^2 would overflow (and NaN asks for everything)
        return math.inf
    return float(math.ceil(COCHRAN_FACTOR * gamma * gamma))
_BOOTSTRAP_SLACK = 0.5


@dataclass(frozen=True)
class MeanInterval:
    """A two-sided interval for a mean (or a smooth function of means).

    Attributes
    ----------
    estimate : float
        Point estimate.
    lo, hi : float
        Interval ends (``lo <= estimate <= hi``).
    se : float
        Standard error (0 for a zero-variance statistic).
    n : int
        Replicates used.
    alpha : float
        The interval's error level (two-sided).
    skewness_hat : float
        The sample skewness used by the Hall correction.
    skewness : float
        The skewness used by the guard (0 when undefined).
    heavy_tailed : bool
        True if the guard says the interval cannot be trusted yet (too few replicates for the
        skewness, or the bootstrap disagrees).
    method : str
        ``"hall-t"``, or ``"exact"`` for a zero-variance statistic.
    bootstrap : tuple of float or None
        The bootstrap-t interval when it was computed.
    """

    estimate: float
    lo: float
    hi: float
    se: float
    n: int
    alpha: float
    skewness: float
    heavy_tailed: bool
    method: str
    bootstrap: tuple[float, float] | None
    skewness_hat: float = 0.0
    _mean: float = 0.0
    _shift: float = 0.0

    def p_greater(self, theta: float) -> float:
        r"""One-sided p-value of :math:`H_0: \theta_{true} \le` ``theta`` (small when the data say
        the estimand exceeds ``theta``)."""
        return _p_value(self, theta, upper=True)

    def p_less(self, theta: float) -> float:
        r"""One-sided p-value of :math:`H_0: \theta_{true} \ge` ``theta``."""
        return _p_value(self, theta, upper=False)


def sample_skewness(x: np.ndarray) -> float:
    """Adjusted Fisher-Pearson sample skewness (0 for fewer than 3 points or zero spread)."""
    x = np.asarray(x, dtype=float)
    if x.size < 3:
        return 0.0
    s = float(np.std(x))
    if s == 0.0 or not math.isfinite(s):
        return 0.0
    return float(_sst.skew(x, bias=False))


def lognormal_skewness(x: np.ndarray) -> float:
    r"""Skewness of the log-normal law with the log-scale variance of positive data ``x``:
    :math:`(e^{s^2} + 2)\sqrt{e^{s^2} - 1}` with :math:`s^2` the sample variance of
    :math:`\log x`.  Returns 0 if some value is not positive, or if the log data are themselves
    clearly skewed (:math:`|\text{skew}(\log x)| > 1/2`, e.g. a chi-square with few degrees of
    freedom, whose long *left* log tail would inflate :math:`s^2`): a log-normal description is
    then inappropriate and the guard relies on the sample skewness."""
    x = np.asarray(x, dtype=float)
    if x.size < 3 or not np.all(x > 0):
        return 0.0
    logs = np.log(x)
    if abs(sample_skewness(logs)) > 0.5:
        return 0.0  # the log data are not log-normal-like (e.g. chi-square-like statistics)
    if _log_tail_shorter_than_normal(logs):
        return 0.0  # the upper tail, which carries the mean, is not log-normal: it is shorter
    s2 = float(np.var(logs, ddof=1))
    if s2 > 700:
        return math.inf
    e = math.exp(s2)
    return (e + 2.0) * math.sqrt(max(e - 1.0, 0.0))


#: Replicates from which the upper tail of the log data is tested against the normal's.
TAIL_TEST_MIN = 10_000
_TAIL_P = 0.999
_TAIL_Z = 3.090232306167813  # the standard normal's 0.999 quantile


def _log_tail_shorter_than_normal(logs: np.ndarray) -> bool:
    r"""Whether the upper tail of the log data is clearly shorter than a normal's.

    With :math:`n \ge` :data:`TAIL_TEST_MIN` values, the sample 0.999 quantile :math:`\hat q` of
    :math:`\log x` is compared with :math:`\bar y + z_{0.999} s` (the normal with the same mean
    and standard deviation): log-normal data have :math:`\hat q \approx \bar y + 3.09 s` with
    standard error :math:`se = \sqrt{p(1-p)/n}/\varphi(z_p)` (in units of :math:`s`; 0.094 at
    :math:`n = 10^4`).  The test says "shorter" when :math:`\hat q < \bar y + (z_p - 6\,se)\, s`,
    a six-standard-error shortfall (probability below :math:`10^{-8}` for log-normal data).  Then
    the log-normal bound on the skewness does not describe the tail that carries the mean (e.g.
    a statistic whose log spreads over 40 decades below a ceiling), and the guard relies on the
    sample skewness, which for such a bounded-looking tail is not biased low the same way.
    """
    n = logs.size
    if n < TAIL_TEST_MIN:
        return False
    m, s = float(np.mean(logs)), float(np.std(logs, ddof=1))
    if not (s > 0 and math.isfinite(s)):
        return False
    se = math.sqrt(_TAIL_P * (1 - _TAIL_P) / n) / float(_sst.norm.pdf(_TAIL_Z))
    return float(np.quantile(logs, _TAIL_P)) < m + (_TAIL_Z - 6.0 * se) * s


def _hall_inverse(y: float, A: float, B: float) -> float:
    """Inverse of :math:`g(t) = ((1 + A t)^3 - 1)/(3A) + B`."""
    if abs(A) < 1e-14:
        return y - B
    return (np.cbrt(1.0 + 3.0 * A * (y - B)) - 1.0) / A


def _hall_forward(t: float, A: float, B: float) -> float:
    r""":math:`g(t) = t + A t^2 + A^2 t^3/3 + B = ((1 + At)^3 - 1)/(3A) + B`, increasing in
    :math:`t`; beyond :math:`|t| = 10^{100}` (e.g. a claim of :math:`10^{200}` against data of
    order 1) it is :math:`\pm\infty` in double precision: returned as such, not an
    ``OverflowError``."""
    if not abs(t) <= 1e100:
        return math.copysign(math.inf, t)
    return t + A * t * t + A * A * t**3 / 3.0 + B


def _studentized_interval(mean: float, se: float, gamma: float, n: int, a: float
                          ) -> tuple[float, float]:
    q = float(_sst.t.ppf(1.0 - a / 2.0, n - 1))
    A, B = gamma / (3.0 * math.sqrt(n)), gamma / (6.0 * math.sqrt(n))
    return mean - se * _hall_inverse(q, A, B), mean - se * _hall_inverse(-q, A, B)


def mean_interval(
    x: np.ndarray,
    alpha: float,
    *,
    rng: np.random.Generator | None = None,
    shift: float = 0.0,
    guard_skewness: float | None = None,
    bootstrap: bool = True,
) -> MeanInterval:
    """Two-sided ``1 - alpha`` interval for the mean of ``x`` (plus ``shift``).

    Parameters
    ----------
    x : array of shape (R,)
        Replicate statistics (finite).
    alpha : float
        Two-sided error level.
    rng : numpy.random.Generator, optional
        For the bootstrap cross-check (skipped when ``None``).
    shift : float
        Added to the mean and the interval (used by :func:`delta_interval`).
    guard_skewness : float, optional
        A floor for the skewness used by the heavy-tail guard (which otherwise takes the larger
        of the sample and log-normal skewness of ``x``): pass the skewness the statistic is known
        to have, since the sample skewness of a small sample is biased low exactly in the runs
        whose interval misses.
    bootstrap : bool
        Run the bootstrap cross-check when affordable.
    """
    x = np.asarray(x, dtype=float)
    n = int(x.size)
    if n < 2:
        raise ValueError(f"need at least 2 replicates for an interval, got {n}")
    top = float(np.max(np.abs(x)))
    if not math.isfinite(top):
        raise ValueError("replicate statistics must be finite")
    # work in units of a power of two near max|x| (exact): the interval depends on the shape of
    # the data, not on their size (1e-200 or 1e300 would under/overflow the moment sums)
    scale = math.ldexp(1.0, math.frexp(top)[1]) if top > 0.0 else 1.0
    x = x / scale
    mean = float(np.mean(x))
    sd = float(np.std(x, ddof=1))
    spread = float(np.max(x) - np.min(x))
    if spread == 0.0 or sd == 0.0 or sd <= 1e-15 * abs(mean):
        # zero-variance statistic (e.g. orthogonal linear nets): compare directly
        est = mean * scale + shift
        return MeanInterval(est, est, est, 0.0, n, alpha, 0.0, False, "exact", None, 0.0,
                            mean * scale, shift)
    se = sd / math.sqrt(n)
    g_hat = sample_skewness(x)
    gamma_guard = max(abs(g_hat), lognormal_skewness(x), abs(guard_skewness or 0.0))
    lo, hi = _studentized_interval(mean, se, g_hat, n, alpha)
    heavy = n < replicates_needed(gamma_guard)
    boot: tuple[float, float] | None = None
    if bootstrap and rng is not None and n * _BOOTSTRAP_RESAMPLES <= BOOTSTRAP_MAX_WORK and n >= 10:
        boot = _bootstrap_t(x, alpha, rng)
        half = 0.5 * (hi - lo)
        if boot[0] < lo - _BOOTSTRAP_SLACK * half or boot[1] > hi + _BOOTSTRAP_SLACK * half:
            heavy = True
        boot = (boot[0] * scale + shift, boot[1] * scale + shift)
    return MeanInterval(mean * scale + shift, lo * scale + shift, hi * scale + shift, se * scale, n,
                        alpha, float(gamma_guard), bool(heavy), "hall-t", boot, g_hat,
                        mean * scale, shift)


def _bootstrap_t(x: np.ndarray, alpha: float, rng: np.random.Generator) -> tuple[float, float]:
    """Bootstrap-t (studentised) interval for the mean, ``499`` resamples in blocks."""
    n = x.size
    mean = x.mean()
    se = x.std(ddof=1) / math.sqrt(n)
    ts = np.empty(_BOOTSTRAP_RESAMPLES)
    block = max(1, int(4e6 // n))
    for start in range(0, _BOOTSTRAP_RESAMPLES, block):
        stop = min(start + block, _BOOTSTRAP_RESAMPLES)
        idx = rng.integers(0, n, size=(stop - start, n))
        xb = x[idx]
        mb = xb.mean(axis=1)
        sb = xb.std(axis=1, ddof=1) / math.sqrt(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            ts[start:stop] = np.where(sb > 0, (mb - mean) / sb, 0.0)
    lo_q, hi_q = np.quantile(ts, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(mean - hi_q * se), float(mean - lo_q * se)


def _p_value(iv: MeanInterval, theta: float, *, upper: bool) -> float:
    """One-sided p-value consistent with the interval (Hall-transformed t statistic)."""
    if iv.method == "exact":
        if upper:
            return 0.0 if iv.estimate > theta else 1.0
        return 0.0 if iv.estimate < theta else 1.0
    n = iv.n
    A, B = iv.skewness_hat / (3.0 * math.sqrt(n)), iv.skewness_hat / (6.0 * math.sqrt(n))
    with np.errstate(over="ignore", invalid="ignore"):
        t = float((np.float64(iv._mean) + iv._shift - theta) / iv.se)
    if math.isnan(t):  # theta = +-inf against a finite estimate
        t = math.copysign(math.inf, -theta)
    g = _hall_forward(t, A, B)
    return float(_sst.t.sf(g, n - 1) if upper else _sst.t.cdf(g, n - 1))


def variance_interval(
    first: np.ndarray, second: np.ndarray, alpha: float, *, rng: np.random.Generator | None = None,
    bootstrap: bool = True,
) -> MeanInterval:
    r"""Interval for :math:`\theta = E[s_2] - (E[s_1])^2` from replicate pairs ``(first, second)``
    (the replicate averages of :math:`x` and :math:`x^2`) by the delta method.

    The estimator :math:`\bar s_2 - \bar s_1^2 + \widehat{\operatorname{Var}}(s_1)/R` is unbiased
    (the last term removes the bias of :math:`\bar s_1^2`); its fluctuation is that of the mean of
    the linearised statistic :math:`y_r = s_{2,r} - 2\bar s_1 s_{1,r}`, to which
    :func:`mean_interval` is applied (skewness correction and guard included).
    """
    first = np.asarray(first, dtype=float)
    second = np.asarray(second, dtype=float)
    n = first.size
    m1 = float(first.mean())
    y = second - 2.0 * m1 * first
    bias = float(first.var(ddof=1)) / n if n > 1 else 0.0
    shift = m1 * m1 + bias  # estimate = mean(y) + m1^2 + bias = mean(s2) - m1^2 + bias
    return mean_interval(y, alpha, rng=rng, shift=shift, bootstrap=bootstrap)


def holm(p_values: Sequence[float], alpha: float) -> np.ndarray:
    """Holm's step-down procedure: a boolean array, True where the hypothesis is rejected.

    Controls the family-wise error rate at ``alpha`` under any dependence (Holm 1979).
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError("p_values must be one-dimensional")
    m = p.size
    order = np.argsort(p, kind="stable")
    reject = np.zeros(m, dtype=bool)
    for rank, i in enumerate(order):
        if p[i] <= alpha / (m - rank):
            reject[i] = True
        else:
            break
    return reject


def holm_adjusted(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (reject at level ``alpha`` iff adjusted <= ``alpha``)."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def bonferroni(p_values: Sequence[float], alpha: float) -> np.ndarray:
    """Bonferroni: True where ``p <= alpha / m``."""
    p = np.asarray(p_values, dtype=float)
    return p <= alpha / max(p.size, 1)


def decide(lo: float, hi: float, *, tol: float, rtol: float) -> str:
    r"""``"refuted"`` if :math:`[lo, hi]` lies wholly outside :math:`[-tol, tol]`, else
    ``"confirmed"`` if it lies inside :math:`[-rtol, rtol]` (TOST), else ``"inconclusive"``."""
    if lo > tol or hi < -tol:
        return "refuted"
    if lo >= -rtol and hi <= rtol:
        return "confirmed"
    return "inconclusive"
