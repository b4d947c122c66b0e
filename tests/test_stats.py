"""Tests of the checker's pure statistics (varprop.checking.stats) on synthetic arrays.

The heavy-tailed synthetic statistic is the exact law of ``||a_L||^2 / n`` for a ReLU net with He
Gaussian weights and batch 1, written independently of the engine: given the previous layer,
``||a_l||^2/n = q_{l-1} * (2/n) * chi2_K`` with ``K ~ Binomial(n, 1/2)`` active units, so its
replicate CV^2 is ``(1 + 5/n)^L - 1`` (issue 3).  Every statistical assertion is seeded
(deterministic) and uses a binomial bound whose false-failure probability is stated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from varprop.checking import stats as _stats
from varprop.checking.check import _sequential


def relu_statistic(rng: np.random.Generator, n: int, L: int, R: int) -> np.ndarray:
    out = np.ones(R)
    for _ in range(L):
        K = rng.binomial(n, 0.5, size=R)
        out *= (2.0 / n) * rng.gamma(np.maximum(K, 1e-300) / 2.0, 2.0) * (K > 0)
    return out


def test_relu_statistic_has_the_issue_cv2() -> None:
    x = relu_statistic(np.random.default_rng(0), 32, 4, 400_000)
    cv2 = x.var() / x.mean() ** 2
    assert abs(x.mean() - 1) < 0.01
    assert cv2 == pytest.approx((1 + 5 / 32) ** 4 - 1, rel=0.05)


# ----- intervals -------------------------------------------------------------------------------

def test_interval_of_normal_data_matches_student_t() -> None:
    x = np.random.default_rng(1).normal(3.0, 2.0, size=40)
    iv = _stats.mean_interval(x, 0.05)
    # with (near) zero skewness Hall's interval is the t interval, computed independently here
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    g = stats.skew(x, bias=False)
    assert abs(g) < 1
    assert iv.lo == pytest.approx(lo, abs=abs(g) * 0.5 * stats.sem(x) + 1e-12)
    assert iv.hi == pytest.approx(hi, abs=abs(g) * 0.5 * stats.sem(x) + 1e-12)
    assert iv.lo < x.mean() < iv.hi
    assert iv.method == "hall-t" and not iv.heavy_tailed


def test_p_values_are_consistent_with_the_interval() -> None:
    x = np.random.default_rng(2).exponential(size=500)
    iv = _stats.mean_interval(x, 0.02)
    # the interval ends are exactly where the one-sided p-values equal alpha/2
    assert iv.p_greater(iv.lo) == pytest.approx(0.01, rel=1e-6)
    assert iv.p_less(iv.hi) == pytest.approx(0.01, rel=1e-6)
    assert iv.p_greater(iv.estimate - 10 * iv.se) < 1e-6
    assert iv.p_less(iv.estimate + 10 * iv.se) < 1e-6


def test_coverage_for_normal_data() -> None:
    rng = np.random.default_rng(3)
    runs, misses = 2000, 0
    for _ in range(runs):
        iv = _stats.mean_interval(rng.normal(1.0, 1.0, size=30), 0.05)
        misses += not (iv.lo <= 1.0 <= iv.hi)
    # Binomial(2000, 0.05) lies in [70, 135] with probability > 1 - 1e-6
    assert 60 <= misses <= 140


@pytest.mark.slow
def test_hall_correction_calibrates_heavy_tails_where_plain_t_fails() -> None:
    """ReLU/He n=32 L=10 (CV^2 = 3.3), R = 4096: plain t misses far more than alpha on one side."""
    rng = np.random.default_rng(4)
    runs, alpha, R = 300, 0.01, 4096
    hall_miss = t_miss_high = 0
    for _ in range(runs):
        x = relu_statistic(rng, 32, 10, R)
        iv = _stats.mean_interval(x, alpha)
        hall_miss += not (iv.lo <= 1.0 <= iv.hi)
        t_hi = x.mean() + stats.t.ppf(1 - alpha / 2, R - 1) * stats.sem(x)
        t_miss_high += t_hi < 1.0
    # true miss rate <= alpha: P(Binomial(300, 0.01) >= 13) < 1e-6
    assert hall_miss <= 12, hall_miss
    # the uncorrected t misses on the upper side well above alpha/2 (documents why the guard exists)
    assert t_miss_high >= hall_miss / 2


def test_heavy_tail_guard() -> None:
    rng = np.random.default_rng(5)
    few = _stats.mean_interval(relu_statistic(rng, 32, 10, 300), 0.01, rng=rng)
    assert few.heavy_tailed  # skewness ~ 11 needs ~ 3000 replicates
    assert few.skewness > 5
    light = _stats.mean_interval(rng.normal(5, 1, size=200), 0.01, rng=rng)
    assert not light.heavy_tailed
    # chi-square-like data: the log-normal estimate is not used (log data are left-skewed)
    chi = rng.chisquare(1, size=5000) * rng.chisquare(1, size=5000)
    assert _stats.lognormal_skewness(chi) == 0.0
    assert not _stats.mean_interval(chi, 0.01).heavy_tailed


def test_lognormal_skewness_formula() -> None:
    x = np.random.default_rng(6).lognormal(0.0, 0.5, size=200_000)
    s2 = 0.25
    expected = (math.exp(s2) + 2) * math.sqrt(math.exp(s2) - 1)  # log-normal skewness
    assert _stats.lognormal_skewness(x) == pytest.approx(expected, rel=0.02)
    assert _stats.lognormal_skewness(np.array([1.0, 0.0, 2.0])) == 0.0


def test_bootstrap_cross_check_is_seeded_and_close_for_light_tails() -> None:
    x = np.random.default_rng(7).normal(size=400)
    a = _stats.mean_interval(x, 0.05, rng=np.random.default_rng(1))
    b = _stats.mean_interval(x, 0.05, rng=np.random.default_rng(1))
    assert a == b and a.bootstrap is not None
    half = (a.hi - a.lo) / 2
    assert abs(a.bootstrap[0] - a.lo) < 0.3 * half and abs(a.bootstrap[1] - a.hi) < 0.3 * half


def test_zero_variance_statistic_is_compared_directly() -> None:
    iv = _stats.mean_interval(np.full(10, 2.5), 0.01)
    assert (iv.lo, iv.estimate, iv.hi, iv.se, iv.method) == (2.5, 2.5, 2.5, 0.0, "exact")
    assert iv.p_greater(2.0) == 0.0 and iv.p_greater(3.0) == 1.0
    assert iv.p_less(3.0) == 0.0 and iv.p_less(2.0) == 1.0
    with pytest.raises(ValueError):
        _stats.mean_interval(np.array([1.0]), 0.05)


def test_variance_interval_estimate_and_coverage() -> None:
    rng = np.random.default_rng(8)
    # s1 = mean of 4 draws of N(mu_r, 1) with a random per-replicate shift, s2 = mean of squares
    def draw(R: int) -> tuple[np.ndarray, np.ndarray]:
        shift = rng.normal(0.5, 0.3, size=(R, 1))
        v = shift + rng.normal(0, 1, size=(R, 4))
        return v.mean(axis=1), (v * v).mean(axis=1)
    s1, s2 = draw(50)
    iv = _stats.variance_interval(s1, s2, 0.05)
    assert iv.estimate == pytest.approx(s2.mean() - s1.mean() ** 2 + s1.var(ddof=1) / 50)
    theta = 1.0 + 0.3**2  # Var of one unit: E v^2 - (E v)^2 = 1 + Var(shift)
    misses = 0
    for _ in range(1000):
        s1, s2 = draw(200)
        iv = _stats.variance_interval(s1, s2, 0.05)
        misses += not (iv.lo <= theta <= iv.hi)
    # Binomial(1000, 0.05): P(X > 85) < 1e-6
    assert misses <= 85


# ----- decisions and multiple testing ----------------------------------------------------------

@pytest.mark.parametrize(("lo", "hi", "tol", "rtol", "status"), [
    (0.02, 0.04, 0.0, 0.05, "refuted"),     # exact claim, off by 3%: refuted even inside rtol
    (-0.03, 0.04, 0.0, 0.05, "confirmed"),
    (-0.03, 0.06, 0.0, 0.05, "inconclusive"),
    (0.1, 0.2, 0.15, 0.05, "inconclusive"),  # approximation: inside its declared bound
    (0.16, 0.2, 0.15, 0.05, "refuted"),
    (-0.2, -0.16, 0.15, 0.05, "refuted"),
])
def test_decide(lo: float, hi: float, tol: float, rtol: float, status: str) -> None:
    assert _stats.decide(lo, hi, tol=tol, rtol=rtol) == status


def test_holm_textbook_example() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005 <= .05/4, 0.01 <= .05/3, 0.03 > .05/2: stop
    assert _stats.holm(p, 0.05).tolist() == [True, False, False, True]
    assert _stats.bonferroni(p, 0.05).tolist() == [True, False, False, True]
    assert _stats.holm([0.001, 0.02, 0.04], 0.05).tolist() == [True, True, True]
    assert _stats.bonferroni([0.001, 0.02, 0.04], 0.05).tolist() == [True, False, False]
    adj = _stats.holm_adjusted([0.01, 0.04, 0.03, 0.005])
    assert adj.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


# ----- the sequential procedure on synthetic draws ---------------------------------------------

def _synthetic(n: int, L: int, seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)

    def draw(k: int, look: int):
        return [scale * relu_statistic(rng, n, L, k)], None
    return draw


def _sizes(budget: int) -> list[int]:
    sizes = [64]
    while sizes[-1] < budget:
        sizes.append(min(2 * sizes[-1], budget))
    return sizes


@pytest.mark.slow
def test_sequential_calibration_true_prediction() -> None:
    """200 runs, ReLU/He law n=64 L=5 (CV^2 0.46), alpha=0.01: refutation rate <= alpha."""
    refuted = confirmed = 0
    for s in range(200):
        out = _sequential(_synthetic(64, 5, s), "mean", 1.0, 1.0, 0.0, 0.05, 0.01,
                          _sizes(2**16), s)
        refuted += out.status == "refuted"
        confirmed += out.status == "confirmed"
    # binomial test of H0: rate <= 0.01 (p > 1e-3 keeps the false-failure chance tiny)
    assert stats.binomtest(refuted, 200, 0.01, alternative="greater").pvalue > 1e-3, refuted
    assert confirmed >= 190


@pytest.mark.slow
def test_sequential_power_heavy_tailed_ten_percent_off() -> None:
    """A prediction 10% too high for CV^2 = 3.3 (n=32, L=10) is refuted in >= 99% of runs."""
    refuted = 0
    for s in range(100):
        out = _sequential(_synthetic(32, 10, 1000 + s), "mean", 1.1, 1.1, 0.0, 0.05, 0.01,
                          _sizes(2**18), s)
        refuted += out.status == "refuted"
    assert refuted >= 99


@pytest.mark.parametrize("size", [1e-200, 1e-310, 1e300])
def test_interval_depends_on_the_shape_of_the_data_not_their_size(size: float) -> None:
    # moment sums of 1e-200 underflow and of 1e300 overflow: before scaling, the first looked like
    # a zero-variance statistic (and refuted true predictions), the second gave (-inf, inf)
    x = np.random.default_rng(5).lognormal(size=200)
    ref = _stats.mean_interval(x, 0.01)
    got = _stats.mean_interval(x * size, 0.01)
    assert got.method == "hall-t" and got.heavy_tailed == ref.heavy_tailed
    assert got.lo / size == pytest.approx(ref.lo, rel=1e-12)
    assert got.hi / size == pytest.approx(ref.hi, rel=1e-12)
    assert got.p_greater(ref.estimate * size * 0.9) == pytest.approx(ref.p_greater(ref.estimate * 0.9))


def test_replicates_needed_never_overflows() -> None:
    assert _stats.replicates_needed(2.0) == 100.0
    assert _stats.replicates_needed(1e200) == math.inf == _stats.replicates_needed(math.inf)


def test_a_known_skewness_floors_the_guard() -> None:
    x = np.random.default_rng(1).normal(size=64)  # sample skewness ~ 0
    assert not _stats.mean_interval(x, 0.01).heavy_tailed
    assert _stats.mean_interval(x, 0.01, guard_skewness=4.0).heavy_tailed  # needs 400 replicates


def test_log_normal_skewness_bound_is_dropped_only_for_a_clearly_short_upper_tail() -> None:
    # The sigmoid/uniform gradient statistic spreads over ~40 decades below a ceiling: its log
    # has a normal-looking body but an upper tail far shorter than a normal's, so the log-normal
    # bound (infinite there) does not describe the tail that carries the mean.  Data like it
    # (log ~ N(0, 20^2) cut at +1.5 sd) used to get that bound; log-normal data keep it.
    rng = np.random.default_rng(7)
    logs = rng.normal(0.0, 20.0, size=60_000)
    logs = logs[logs < 30.0][:20_000]
    assert np.all(np.exp(logs) > 0) and _stats.lognormal_skewness(np.exp(logs)) == 0.0
    for seed in range(5):  # log-normal data, n = 10^4 (the smallest tested size): bound kept
        x = np.exp(np.random.default_rng(seed).normal(0.0, 1.0, size=10_000))
        e = math.exp(float(np.var(np.log(x), ddof=1)))
        assert _stats.lognormal_skewness(x) == pytest.approx((e + 2) * math.sqrt(e - 1))
    # below TAIL_TEST_MIN the tail is not tested (too few values above the 0.999 quantile)
    assert _stats.lognormal_skewness(np.exp(logs[:5000] / 10.0)) > 0
