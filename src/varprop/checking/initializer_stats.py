"""The statistics of :func:`varprop.check_initializer` (see its module,
:mod:`varprop.checking.initializers`, for the tests and their assumptions) and its verdict type."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp
from scipy import stats

from varprop._util.rounding import FORMATS, FloatFormat
from varprop.checking.check import Verdict
from varprop.checking.stats import holm_adjusted
from varprop.components.laws import WeightLaw
from varprop.components.schemes import InitScheme
from varprop.errors import VarpropWarning


@dataclass(frozen=True)
class InitializerVerdict(Verdict):
    r"""A :class:`~varprop.checking.check.Verdict` for :func:`check_initializer`, with the per-test
    p-values.

    The inherited fields read: ``predicted`` the claimed entry variance :math:`\sigma_w^2`,
    ``estimate`` the sample variance, ``interval`` / ``relative_interval`` the simultaneous
    interval for :math:`\sigma^2` / :math:`\sigma^2/\sigma_w^2 - 1`, ``p_refute`` the smallest
    Holm-adjusted p-value (refuted iff ``<= alpha``), ``p_tost_lower`` / ``p_tost_upper`` the
    Bonferroni-adjusted one-sided p-values of :math:`r \le -` ``rtol`` / :math:`r \ge` ``rtol``,
    ``replicates`` the number of matrices, ``target`` ``"initializer"``, ``quantity``
    ``"weight_variance"``, ``exact`` True and ``tol`` 0 (a scheme claims its variance exactly),
    ``seed`` 0 (nothing is random: the weights are given).

    Attributes
    ----------
    p_values : dict
        Raw p-value per test: ``mean``, ``variance``, ``shape``, ``support`` (i.i.d. schemes) or
        ``orthogonality``, ``sum``, ``delocalization`` (orthogonal).
    p_adjusted : dict
        Holm-adjusted p-values (same keys): refuted iff one is ``<= alpha``.
    """

    p_values: Mapping[str, float] = field(default_factory=dict)
    p_adjusted: Mapping[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        """The :class:`~varprop.checking.check.Verdict` text, headed by what was checked: the weights (as
        recognised), their dtype, the scheme and the fans (there is no activation or width)."""
        cfg = self.config
        head = (f"{self.status.upper()}: {self.statistic} of the weights "
                f"({cfg.get('weights', 'array')}, {cfg.get('dtype')}) against {cfg.get('init')} "
                f"at fan_in={cfg.get('fan_in')}, fan_out={cfg.get('fan_out')}")
        return head + "\n" + super().__str__().split("\n", 1)[1]


#: Upper bound on calls of a callable ``weights`` when ``replicates=None``.


def _n_tests(law: WeightLaw, stack_shape: tuple[int, ...] | None = None) -> int:
    """Number of tests in the family: mean, variance, shape (+ support for bounded laws)
    (+ the row test of independence when the matrices are large enough for it)."""
    m = 4 if law.bounded else 3
    return m + (stack_shape is not None and _rows_testable(stack_shape))


#: Upper bound on calls of a callable ``weights`` when ``replicates=None``.
MAX_AUTO_REPLICATES = 1000

#: The row test needs rows long enough for their mean squares to be nearly normal, and enough rows.
ROW_TEST_MIN_FAN_IN, ROW_TEST_MIN_ROWS = 32, 16


def _rows_testable(shape: tuple[int, ...]) -> bool:
    k, n_out, n_in = shape
    return n_in >= ROW_TEST_MIN_FAN_IN and k * n_out >= ROW_TEST_MIN_ROWS


def _row_dispersion_p(stack: np.ndarray, kappa: float) -> float:
    r"""Two-sided p-value of independence across each row, from the spread of the row mean squares.

    For i.i.d. entries with variance :math:`v` and excess kurtosis :math:`\kappa`, the mean
    square :math:`r_i` of a row of :math:`n` centred entries has variance
    :math:`v^2(\kappa + 2)/n`; the sample variance of the :math:`R` values is compared with it by
    a scaled chi-square (Satterthwaite degrees of freedom for the rows' own kurtosis).  Rows of
    an orthogonal matrix all have the same norm (spread 0); rows sharing a random scale spread
    too much: both are refuted, which the entry-wise tests cannot see.
    """
    k, n_out, n_in = stack.shape
    rows = stack.reshape(k * n_out, n_in)
    dev = rows - rows.mean()
    r = np.mean(dev * dev, axis=1)
    R, v = r.size, float(r.mean())
    if v == 0.0:
        return 1.0
    expected = v * v * (kappa + 2.0) / n_in
    s2 = float(r.var(ddof=1))
    kurt_r = max(float(stats.kurtosis(r)), 0.0) if s2 > 0 else 0.0
    nu = 2.0 / (2.0 / (R - 1) + kurt_r / R)
    stat = nu * s2 / expected
    return float(min(1.0, 2.0 * min(stats.chi2.cdf(stat, nu), stats.chi2.sf(stat, nu))))


def _auto_replicates(law: WeightLaw, per_call: int, alpha: float, rtol: float) -> int:
    """Calls needed so that the variance interval is expected to have half-width rtol/2."""
    kappa = law.kurtosis()
    z = stats.norm.isf(alpha / (2 * _n_tests(law)))
    target = 4.0 * z * z * (2.0 + kappa) / (rtol * rtol)
    return int(min(MAX_AUTO_REPLICATES, max(1, math.ceil(target / per_call))))


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------

#: The weights are taken to be computed to within this many units in the last place of float32
#: (of float64 for float64 weights) before they are rounded to their storage format.
SUPPORT_ULPS = 4.0


def _exponent(x: float) -> int:
    r""":math:`e` with :math:`2^{e-1} \le |x| < 2^e` (0 for 0): dividing by :math:`2^e` with
    ``np.ldexp`` is exact and brings ``x`` to :math:`[1/2, 1)`."""
    return int(np.frexp(x)[1]) if x != 0 else 0


def _claim_in_units(init: InitScheme, n_in: int, n_out: int, e: int) -> tuple[float, float]:
    r"""The claimed :math:`(\mu_w / 2^e, \sigma_w^2 / 4^e)`: from the float moments when they are
    normal numbers, else from the exact SymPy moments (:math:`\sigma_w^2` may lie beyond the
    float range, e.g. std :math:`10^{\pm 200}`, while the scaled value does not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VarpropWarning)
        mu0, var0 = init.moments(n_in, n_out)
    tiny = float(np.finfo(np.float64).tiny)
    normal_var = math.isfinite(var0) and var0 >= tiny
    normal_mean = math.isfinite(mu0) and (abs(mu0) >= tiny or (mu0 == 0 and init.is_zero_mean))
    if normal_var and normal_mean:
        return float(np.ldexp(mu0, -e)), float(np.ldexp(var0, -2 * e))
    unit = sp.Integer(2) ** (-e)
    return (float(sp.N(init.weight_mean(n_in, n_out) * unit, 20)),
            float(sp.N(init.weight_variance(n_in, n_out) * unit**2, 20)))


def _ks_pvalue(x: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray], fmt: FloatFormat,
               e: int) -> float:
    r"""Two-sided one-sample Kolmogorov-Smirnov p-value of ``x`` (absolute units) against the
    claimed CDF ``cdf`` (in units of :math:`2^e`), rounded to the storage format ``fmt``.

    For the rounded law :math:`G` (see :mod:`varprop._util.rounding`),
    :math:`D = \max_i \max(i/N - G(x_{(i)}),\ G(x_{(i)}^-) - (i-1)/N)` is the exact
    :math:`\sup|F_N - G|`; the p-value is ``scipy.stats.kstwo.sf(D, N)``, exact for a continuous
    law and conservative for a discrete one (Noether 1963).  For float64 weights
    :math:`G = F` and this is ``scipy.stats.kstest``.
    """
    xs = np.sort(x)
    n = xs.size
    lower, upper = fmt.midpoints(xs)
    g_hi = cdf(np.ldexp(upper, -e))
    g_lo = g_hi if fmt.exact_in_float64 else cdf(np.ldexp(lower, -e))
    i = np.arange(1, n + 1) / n
    d = max(float(np.max(i - g_hi)), float(np.max(g_lo - (i - 1.0 / n))))
    return float(stats.kstwo.sf(d, n))


def _decide(
    init: InitScheme,
    *,
    p_values: dict[str, float],
    alpha: float,
    rtol: float,
    units: int,
    predicted: float,
    estimate: float,
    rel_interval: tuple[float, float],
    p_tost: tuple[float, float],
    replicates: int,
    description: str,
    assumptions: tuple[str, ...],
    details: str,
    config: dict[str, Any],
    t0: float,
) -> InitializerVerdict:
    """The verdict; ``predicted`` and ``estimate`` are in units of :math:`4^{units}` (converted
    to absolute values at the end, where they may over- or underflow: the relative values and
    the decision never do)."""
    keys = list(p_values)
    adjusted = dict(zip(keys, map(float, holm_adjusted([p_values[k] for k in keys]))))
    rel = estimate / predicted - 1.0
    rejected = sorted((k for k, p in adjusted.items() if p <= alpha), key=lambda k: adjusted[k])
    lo, hi = rel_interval
    if rejected:
        status = "refuted"
        reason = ("rejected at family-wise alpha={:g} (Holm): ".format(alpha)
                  + ", ".join(f"{k} (p={p_values[k]:.3g}, adjusted {adjusted[k]:.3g})"
                              for k in rejected))
    elif -rtol <= lo and hi <= rtol:
        status = "confirmed"
        reason = (f"variance within +-{rtol:g} of the claim (interval [{lo:+.4f}, {hi:+.4f}]) "
                  "and no mean/shape test rejects")
    else:
        status = "inconclusive"
        reason = (f"no test rejects, but the variance interval [{lo:+.4f}, {hi:+.4f}] is not "
                  f"within +-{rtol:g}: more entries (replicates) needed")

    def absolute(v: float) -> float:
        return float(np.ldexp(v, 2 * units))

    predicted_abs = absolute(predicted)
    if not (math.isfinite(predicted_abs) and predicted_abs >= np.finfo(np.float64).tiny):
        details += (f"; the claimed variance {predicted:.6g} * 2^{2 * units} lies beyond the "
                    "float range: the absolute values are rounded to 0/inf, the relative ones "
                    "are exact")
    return InitializerVerdict(
        status=status,  # type: ignore[arg-type]
        reason=f"{reason}; {details}",
        predicted=predicted_abs,
        estimate=absolute(estimate),
        interval=(absolute(predicted * (1.0 + lo)), absolute(predicted * (1.0 + hi))),
        relative_interval=(float(lo), float(hi)),
        relative_error=float(rel),
        p_refute=float(min(adjusted.values())),
        p_tost_lower=float(p_tost[0]),
        p_tost_upper=float(p_tost[1]),
        replicates=int(replicates),
        looks=1,
        target="initializer",
        statistic="Var(W_ij)",
        description=description,
        assumptions="; ".join(assumptions),
        exact=True,
        tol=0.0,
        rtol=float(rtol),
        atol=None,
        alpha=float(alpha),
        seed=0,
        quantity="weight_variance",
        layer=1,
        config=config,
        elapsed=time.perf_counter() - t0,
        p_values=dict(p_values),
        p_adjusted=adjusted,
    )


def _sample_moments(x: np.ndarray) -> tuple[float, float, float, int]:
    r"""``(mean, variance (ddof 1), excess kurtosis, e)`` of ``x`` in units of :math:`2^e`,
    :math:`e` the exponent of :math:`\max|x|` (no overflow for any finite ``x``)."""
    e = _exponent(float(np.max(np.abs(x))))
    y = np.ldexp(x, -e)
    n = y.size
    mean = float(y.mean())
    dev = y - mean
    m2 = float(np.mean(dev * dev))
    var = m2 * n / (n - 1) if n > 1 else 0.0
    kurt = float(np.mean(dev**4) / (m2 * m2) - 3.0) if m2 > 0 else math.nan
    return mean, var, kurt, e


def _check_iid(stack: np.ndarray, fmt: FloatFormat, init: InitScheme, n_in: int, n_out: int,
               alpha: float, rtol: float, config: dict[str, Any], t0: float
               ) -> InitializerVerdict:
    law = init.law(n_in, n_out)
    e = _exponent(law.scale)  # everything below is in units of 2^e (variances 4^e)
    mu0, var0 = _claim_in_units(init, n_in, n_out, e)
    x = stack.ravel()
    n = x.size
    m = _n_tests(law, stack.shape)
    mean_d, var_d, kappa_hat, ed = _sample_moments(x)  # in units of 2^ed
    mean = float(np.ldexp(mean_d, ed - e))
    var = float(np.ldexp(var_d, 2 * (ed - e)))  # 0 or inf only when hopelessly off the claim
    kappa_claim = law.kurtosis()
    if math.isnan(kappa_hat):
        kappa_hat = kappa_claim

    p_values: dict[str, float] = {}
    # mean: t-test against the claimed mean, with the sample variance (in the data's units)
    if n < 2:
        p_values["mean"] = 1.0
    elif var_d == 0.0:
        p_values["mean"] = 1.0 if mean == mu0 else 0.0
    else:
        t = (mean_d - float(np.ldexp(mu0, e - ed))) / math.sqrt(var_d / n)
        p_values["mean"] = float(2.0 * stats.t.sf(abs(t), n - 1))

    # variance: scaled chi-square with Satterthwaite degrees of freedom
    a = alpha / m
    if n < 2:
        p_values["variance"] = 1.0
        lo, hi = -1.0, math.inf
        p_tost = (1.0, 1.0)
    else:
        kappa = max(kappa_claim, kappa_hat)
        nu = 2.0 / (2.0 / (n - 1) + kappa / n)
        ratio = var / var0
        stat = nu * ratio
        p_values["variance"] = float(min(1.0, 2.0 * min(stats.chi2.cdf(stat, nu),
                                                         stats.chi2.sf(stat, nu))))
        lo = nu * ratio / stats.chi2.isf(a / 2, nu) - 1.0
        hi = nu * ratio / stats.chi2.ppf(a / 2, nu) - 1.0
        # TOST: H0 r <= -rtol (small stat is evidence against it) and H0 r >= rtol, one-sided,
        # Bonferroni-adjusted like the interval (each side at a/2): confirmed iff both <= alpha
        p_lo = stats.chi2.sf(nu * ratio / (1.0 - rtol), nu) if rtol < 1 else 0.0
        p_hi = stats.chi2.cdf(nu * ratio / (1.0 + rtol), nu)
        p_tost = (float(min(1.0, 2 * m * p_lo)), float(min(1.0, 2 * m * p_hi)))

    # shape: KS against the fully specified claimed law, rounded to the storage format
    shape = law.describe()
    support = law.support() if law.bounded else None
    p_values["shape"] = _ks_pvalue(x, law.rescaled(e).cdf, fmt, e)
    outside = 0
    if support is not None:
        # computed to within SUPPORT_ULPS ulps of float32 (float64 weights: of float64), then
        # rounded to the storage format: the support of the stored law
        ulp = FORMATS["float64" if fmt.exact_in_float64 else "float32"].eps
        slack = SUPPORT_ULPS * ulp * max(abs(support[0]), abs(support[1]))
        low, high = fmt.round(support[0] - slack), fmt.round(support[1] + slack)
        outside = int(np.count_nonzero((x < low) | (x > high)))
        p_values["support"] = 0.0 if outside else 1.0

    if _rows_testable(stack.shape):
        p_values["rows"] = _row_dispersion_p(np.ldexp(stack, -ed), kappa_claim)
    k = stack.shape[0]
    rounding = "" if fmt.exact_in_float64 else f", rounded to {fmt.name}"
    details = (f"{n} entries of {config.get('weights', 'the weights')}, claimed {shape}"
               f"{rounding}; sample mean {float(np.ldexp(mean_d, ed)):.4g} (claim "
               f"{float(np.ldexp(mu0, e)):.4g}), excess kurtosis {kappa_hat:.3g} "
               f"(claim {kappa_claim:.3g})")
    if outside:
        details += f"; {outside} entries outside the claimed support"
    return _decide(
        init, p_values=p_values, alpha=alpha, rtol=rtol, units=e, predicted=var0, estimate=var,
        rel_interval=(lo, hi), p_tost=p_tost, replicates=k,
        description=f"entry variance Var(W_ij) of the weights ({config.get('weights')}, "
                    f"{fmt.name}) against {init!r} at fan_in={n_in}, fan_out={n_out}, with the "
                    f"entry mean and the {law.family} shape",
        config=config, t0=t0,
        assumptions=(
            "entries i.i.d. under the claim: the unit of evidence is the entry",
            f"variance interval: scaled chi-square, nu = 2/(2/(N-1) + kappa/N), "
            f"kappa = max(claimed, sample) excess kurtosis, level 1 - alpha/{m} (Bonferroni)",
            "shape: one-sample Kolmogorov-Smirnov at the claimed parameters"
            + ("" if fmt.exact_in_float64 else
               f", against the claimed law rounded to {fmt.name} (discrete: conservative)"),
            "rows (fan_in >= 32, >= 16 rows): independence within rows, from the spread of the "
            "row mean squares against v^2 (kappa + 2) / fan_in",
            f"refutation: Holm over {m} tests at family-wise alpha",
        ),
        details=details,
    )


def _check_orthogonal(stack: np.ndarray, fmt: FloatFormat, init: InitScheme, n_in: int,
                      n_out: int, alpha: float, rtol: float, tol: float | None,
                      config: dict[str, Any], t0: float) -> InitializerVerdict:
    g = init.law(n_in, n_out).scale
    e = _exponent(g)
    _, var0 = _claim_in_units(init, n_in, n_out, e)
    rows, cols = stack.shape[-2:]
    big, small = max(rows, cols), min(rows, cols)
    if tol is None:
        tol = 8.0 * math.sqrt(big) * fmt.eps
    k = stack.shape[0]
    q = np.ldexp(stack, -e) / np.ldexp(g, -e)
    gram = q @ np.swapaxes(q, -1, -2) if rows <= cols else np.swapaxes(q, -1, -2) @ q
    deviation = float(np.max(np.abs(gram - np.eye(small))))
    p_values = {"orthogonality": 0.0 if deviation > tol else 1.0}
    if big >= 2:
        c2 = (q.sum(axis=(-2, -1)) ** 2) / (rows * cols)
        beta = stats.beta(0.5, (big - 1) / 2.0)
        per = beta.sf(np.minimum(c2, 1.0))
        p_values["sum"] = float(stats.combine_pvalues(per, method="fisher").pvalue) if k > 1 \
            else float(per[0])
        q2max = float(min(1.0, np.max(q * q)))
        p_values["delocalization"] = float(min(1.0, k * rows * cols * beta.sf(q2max)))
    rel = float(np.mean(q * q)) * big - 1.0  # mean(W^2) / (g^2 / m) - 1
    estimate = var0 * (1.0 + rel)
    details = (f"{config.get('weights', 'the weights')}; max |G/g^2 - I| = {deviation:.3g} "
               f"(tolerance {tol:.3g}) with G the {small}x{small} Gram matrix, gain {g:g}")
    return _decide(
        init, p_values=p_values, alpha=alpha, rtol=rtol, units=e, predicted=var0,
        estimate=estimate, rel_interval=(rel - tol, rel + tol), replicates=k,
        p_tost=(0.0, 0.0) if abs(rel) + tol <= rtol else (1.0, 1.0),
        description=f"orthogonality W W^T = g^2 I (or W^T W) and entry variance "
                    f"g^2/max(fan_in, fan_out) of the weights ({config.get('weights')}, "
                    f"{fmt.name}) against {init!r} at fan_in={n_in}, fan_out={n_out}",
        config=config, t0=t0,
        assumptions=(
            "entries are dependent: the evidence is the Gram matrix (deterministic, to "
            "numerical tolerance) plus exact Haar statistics per matrix",
            "sum test: c^2 ~ Beta(1/2, (m-1)/2) under Haar, Fisher over matrices; "
            "delocalization: union bound over entries",
            "interval: realised relative error +- the orthogonality tolerance",
            "refutation: Holm at family-wise alpha",
        ),
        details=details,
    )
