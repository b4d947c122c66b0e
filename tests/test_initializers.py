"""Tests of varprop.checking.initializers.check_initializer (NumPy only; PyTorch lives in tests/interop).

Every statistical test is seeded (deterministic).  The calibration tests bound the refutation rate
of true claims with a one-sided binomial test whose false-failure probability is <= 1e-6 when the
procedure's size is at most alpha.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import varprop
from varprop import init_scheme
from varprop.checking.check import Verdict
from varprop.checking.initializers import check_initializer

IID = ["he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "lecun_normal",
       "lecun_uniform", "truncated_normal", "torch_linear_default", "uniform", "standard_normal"]


def _sample(name: str, seed: int, fan_in: int, fan_out: int, size: tuple[int, ...] = (),
            **params: object) -> np.ndarray:
    return init_scheme(name, **params).sample(np.random.default_rng(seed), fan_in, fan_out,
                                              size=size)


# ----------------------------------------------------------------------------------------------
# true claims are confirmed, wrong ones refuted
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", IID + ["orthogonal"])
def test_own_sampler_is_confirmed(name: str) -> None:
    w = _sample(name, 1, 256, 128)
    v = check_initializer(w, name, fan_in=256, fan_out=128)
    assert v.status == "confirmed", v.reason
    assert isinstance(v, Verdict) and v.target == "initializer"
    assert v.p_equivalence <= 0.01 < v.p_refute      # TOST p-values agree with the decision
    assert -0.05 <= v.relative_interval[0] <= v.relative_error <= v.relative_interval[1] <= 0.05
    assert v.replicates == 1
    assert v.predicted == pytest.approx(init_scheme(name).moments(256, 128)[1], rel=1e-12)


def test_public_export_and_transposed_layout() -> None:
    w = _sample("xavier_uniform", 2, 300, 100)          # (fan_out, fan_in) = (100, 300)
    a = varprop.check_initializer(w, "xavier_uniform", fan_in=300, fan_out=100)
    b = check_initializer(w.T, "xavier_uniform", fan_in=300, fan_out=100)  # Keras kernel layout
    assert a.status == b.status == "confirmed"
    assert a.estimate == pytest.approx(b.estimate, rel=1e-12)


def test_torch_linear_default_is_not_he_uniform() -> None:
    # nn.Linear's default: U[+-1/sqrt(n_in)], variance 1/(3 n_in); He uniform: 2/n_in (6x larger)
    w = _sample("torch_linear_default", 3, 256, 256)
    v = check_initializer(w, "he_uniform", fan_in=256, fan_out=256)
    assert v.status == "refuted" and v.p_refute <= 0.01
    assert v.relative_error == pytest.approx(1 / 6 - 1, abs=0.02)
    assert v.relative_interval[1] < 0
    same = check_initializer(w, "torch_linear_default", fan_in=256, fan_out=256)
    assert same.status == "confirmed"


def test_wrong_variance_refuted_fan_mode() -> None:
    # He with mode="fan_out" on a (64, 512) layer claims 2/64 instead of 2/512
    w = _sample("he_normal", 4, 512, 64, mode="fan_out")
    v = check_initializer(w, init_scheme("he_normal"), fan_in=512, fan_out=64)
    assert v.status == "refuted"
    assert v.relative_error == pytest.approx(512 / 64 - 1, rel=0.05)


@pytest.mark.parametrize(("truth", "claim", "test"), [
    ("he_uniform", "he_normal", "shape"),      # same variance, wrong shape: KS rejects
    ("he_normal", "he_uniform", "support"),    # normal entries beyond the uniform's bound
    ("he_normal", "variance_scaling", "support"),
])
def test_shape_confusion_refuted(truth: str, claim: str, test: str) -> None:
    w = _sample(truth, 5, 512, 256)
    scheme = (init_scheme(claim, scale=2.0) if claim == "variance_scaling" else init_scheme(claim))
    v = check_initializer(w, scheme, fan_in=512, fan_out=256)
    assert v.status == "refuted"
    assert abs(v.relative_error) < 0.05  # the variance is right: only the shape is wrong
    assert v.p_values[test] < 1e-10
    assert test in v.reason


def test_mean_shift_refuted_by_mean_test() -> None:
    w = _sample("normal", 6, 256, 256, std=1.0, mean=0.05)
    v = check_initializer(w, init_scheme("normal", std=1.0), fan_in=256, fan_out=256)
    assert v.status == "refuted"
    assert v.p_values["mean"] < 1e-20  # z = 0.05 * 256 = 12.8
    assert check_initializer(w, init_scheme("normal", std=1.0, mean=0.05), fan_in=256,
                             fan_out=256).status == "confirmed"


def test_small_matrix_is_inconclusive_and_callable_pools_replicates() -> None:
    # 256 entries: the interval is about +-25% wide, so a true claim cannot be confirmed
    # (seeded; a true claim is refuted in about 1% of seeds, e.g. 7 and 10)
    w = _sample("he_normal", 8, 16, 16)
    v = check_initializer(w, "he_normal", fan_in=16, fan_out=16)
    assert v.relative_interval[1] - v.relative_interval[0] > 0.4
    assert v.status == "inconclusive"
    rng = np.random.default_rng(8)
    draw = lambda: init_scheme("he_normal").sample(rng, 16, 16)  # noqa: E731
    v3 = check_initializer(draw, "he_normal", fan_in=16, fan_out=16, replicates=3)
    assert v3.replicates == 3
    auto = check_initializer(draw, "he_normal", fan_in=16, fan_out=16)
    # planned size N = 4 z^2 (2 + kappa) / rtol^2 with z = z_{alpha/(2*3)}, kappa = 0
    z = stats.norm.isf(0.01 / 6)
    assert auto.replicates == math.ceil(4 * z * z * 2 / 0.05**2 / 256)
    assert auto.status == "confirmed"


def test_stack_of_matrices() -> None:
    w = _sample("xavier_normal", 9, 32, 48, size=(20,))   # (20, 48, 32)
    v = check_initializer(w, "xavier_normal", fan_in=32, fan_out=48)
    assert v.replicates == 20
    assert v.status == "confirmed"


# ----------------------------------------------------------------------------------------------
# the statistics, against independent computations
# ----------------------------------------------------------------------------------------------

def test_pvalues_match_scipy_directly() -> None:
    # a normal sample whose excess kurtosis is <= 0, so nu = N - 1: the exact chi-square test
    for seed in range(100):
        w = _sample("he_normal", seed, 40, 50)
        x = w.ravel()
        if stats.kurtosis(x) <= 0:
            break
    n, var0 = x.size, 2 / 40
    v = check_initializer(w, "he_normal", fan_in=40, fan_out=50, alpha=0.03)
    assert v.p_values["mean"] == pytest.approx(stats.ttest_1samp(x, 0.0).pvalue, rel=1e-9)
    assert v.p_values["shape"] == pytest.approx(
        stats.kstest(x, "norm", args=(0, math.sqrt(var0))).pvalue, rel=1e-9)
    s2 = np.var(x, ddof=1)
    t = (n - 1) * s2 / var0
    p = 2 * min(stats.chi2.cdf(t, n - 1), stats.chi2.sf(t, n - 1))
    assert v.p_values["variance"] == pytest.approx(p, rel=1e-9)
    # rows: the spread of the 50 row mean squares against v^2 (0 + 2) / 40 (normal claim)
    rows = w.reshape(50, 40)
    r = ((rows - x.mean()) ** 2).mean(axis=1)
    nu_r = 2 / (2 / 49 + max(stats.kurtosis(r), 0) / 50)
    stat_r = nu_r * np.var(r, ddof=1) / (r.mean() ** 2 * 2 / 40)
    assert v.p_values["rows"] == pytest.approx(
        2 * min(stats.chi2.cdf(stat_r, nu_r), stats.chi2.sf(stat_r, nu_r)), rel=1e-9)
    # interval at level 1 - alpha/4 (Bonferroni over mean, variance, shape, rows)
    a = 0.03 / 4
    lo = (n - 1) * s2 / stats.chi2.ppf(1 - a / 2, n - 1) / var0 - 1
    hi = (n - 1) * s2 / stats.chi2.ppf(a / 2, n - 1) / var0 - 1
    assert v.relative_interval == pytest.approx((lo, hi), rel=1e-9)
    assert v.interval == pytest.approx((var0 * (1 + lo), var0 * (1 + hi)), rel=1e-9)
    # TOST p-values: P(chi2_nu >= stat at the margin), Bonferroni-adjusted (2 sides x 4 tests)
    p_lo = stats.chi2.sf((n - 1) * s2 / (var0 * 0.95), n - 1)
    p_hi = stats.chi2.cdf((n - 1) * s2 / (var0 * 1.05), n - 1)
    assert (v.p_tost_lower, v.p_tost_upper) == pytest.approx((min(1, 8 * p_lo), min(1, 8 * p_hi)),
                                                             rel=1e-9)
    assert v.estimate == pytest.approx(s2, rel=1e-12)


def test_dependent_entries_are_refuted_by_the_row_test() -> None:
    # an orthogonal matrix has lecun_normal's entry variance and a near-normal entry law, but
    # every row has norm 1: only the row test sees it
    rng = np.random.default_rng(4)
    q = init_scheme("orthogonal").sample(rng, 256, 256)
    v = check_initializer(q, "lecun_normal", fan_in=256, fan_out=256)
    assert v.refuted and v.p_adjusted["rows"] <= 0.01 and v.p_adjusted["shape"] > 0.01
    # a callable that returns the same matrix every time is not a sample of the scheme
    w = init_scheme("lecun_normal").sample(rng, 64, 64)
    with pytest.raises(ValueError, match="same matrix"):
        check_initializer(lambda: w, "lecun_normal", fan_in=64, fan_out=64, replicates=4)


def test_uniform_kurtosis_corrected_interval_is_narrower() -> None:
    # Var(s^2) = sigma^4 (2/(N-1) + kappa/N), kappa = -6/5 for the uniform law: the interval is
    # about sqrt(2 / 0.8) = 1.58 times narrower than the normal-theory one
    w = _sample("he_uniform", 10, 256, 256)
    v = check_initializer(w, "he_uniform", fan_in=256, fan_out=256)
    x = w.ravel()
    n = x.size
    width_normal = 2 * stats.norm.isf(0.01 / 8) * math.sqrt(2 / n)
    width = v.relative_interval[1] - v.relative_interval[0]
    assert width_normal / width == pytest.approx(math.sqrt(2 / 0.8), rel=0.03)


@pytest.mark.parametrize("name", ["he_normal", "he_uniform", "truncated_normal"])
def test_calibration_refutation_rate_at_most_alpha(name: str) -> None:
    # 400 seeded true claims on small matrices (N = 512 entries: the large-sample approximations
    # are stressed); with size <= alpha = 0.05 the count exceeds the binomial 1e-6 quantile with
    # probability <= 1e-6.
    runs, alpha = 400, 0.05
    rng = np.random.default_rng(11)
    scheme = init_scheme(name)
    stack = scheme.sample(rng, 32, 16, size=(runs,))
    refuted = covered = 0
    for w in stack:
        v = check_initializer(w, scheme, fan_in=32, fan_out=16, alpha=alpha)
        refuted += v.status == "refuted"
        covered += v.relative_interval[0] <= 0 <= v.relative_interval[1]
    assert stats.binomtest(refuted, runs, alpha, alternative="greater").pvalue > 1e-6
    # the variance interval alone has level 1 - alpha/m (m = 3 or 4): it misses at most that often
    assert stats.binomtest(runs - covered, runs, alpha / 3, alternative="greater").pvalue > 1e-6


def test_power_against_ten_percent_variance_error() -> None:
    # normal entries with 10% too much variance at N = 65536: refuted in every seeded run
    for seed in range(10):
        w = _sample("normal", 100 + seed, 256, 256, std=math.sqrt(1.1))
        v = check_initializer(w, init_scheme("normal", std=1.0), fan_in=256, fan_out=256)
        assert v.status == "refuted"


# ----------------------------------------------------------------------------------------------
# orthogonal
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fan_in", "fan_out", "gain"), [(64, 64, 1.0), (200, 50, 2.0),
                                                          (50, 200, 0.5)])
def test_orthogonal_confirmed(fan_in: int, fan_out: int, gain: float) -> None:
    scheme = init_scheme("orthogonal", gain=gain)
    w = scheme.sample(np.random.default_rng(12), fan_in, fan_out)
    v = check_initializer(w, scheme, fan_in=fan_in, fan_out=fan_out)
    assert v.status == "confirmed", v.reason
    assert v.predicted == pytest.approx(gain**2 / max(fan_in, fan_out))
    assert v.p_values["orthogonality"] == 1.0
    # float32 copies pass with the float32 tolerance
    v32 = check_initializer(w.astype(np.float32), scheme, fan_in=fan_in, fan_out=fan_out)
    assert v32.status == "confirmed"


def test_orthogonal_refutations() -> None:
    n = 64
    scheme = init_scheme("orthogonal")
    haar = scheme.sample(np.random.default_rng(13), n, n)
    wrong_gain = check_initializer(1.01 * haar, scheme, fan_in=n, fan_out=n)
    assert wrong_gain.status == "refuted" and wrong_gain.p_values["orthogonality"] == 0.0
    gauss = _sample("lecun_normal", 14, n, n)   # right entry variance 1/n, not orthogonal
    assert check_initializer(gauss, scheme, fan_in=n, fan_out=n).status == "refuted"
    # orthogonal but not Haar: identity and a permutation fail the delocalization test
    for w in (np.eye(n), np.eye(n)[np.random.default_rng(15).permutation(n)]):
        v = check_initializer(w, scheme, fan_in=n, fan_out=n)
        assert v.status == "refuted"
        assert v.p_values["orthogonality"] == 1.0 and v.p_values["delocalization"] == 0.0


def test_orthogonal_sum_statistic_is_exact_beta() -> None:
    # c^2 = (sum W)^2 / (g^2 n_in n_out) ~ Beta(1/2, (m-1)/2): p-values uniform over Haar draws
    scheme = init_scheme("orthogonal", gain=3.0)
    stack = scheme.sample(np.random.default_rng(16), 12, 5, size=(300,))
    ps = [check_initializer(w, scheme, fan_in=12, fan_out=5).p_values["sum"] for w in stack]
    assert stats.kstest(ps, "uniform").pvalue > 1e-6
    # and with the independent moment E c^2 = 1/m
    c2 = stack.sum(axis=(1, 2)) ** 2 / (9.0 * 60)
    assert abs(c2.mean() - 1 / 12) < 6 * c2.std() / math.sqrt(300)


def test_orthogonal_callable_replicates() -> None:
    rng = np.random.default_rng(17)
    scheme = init_scheme("orthogonal")
    v = check_initializer(lambda: scheme.sample(rng, 30, 30), scheme, fan_in=30, fan_out=30,
                          replicates=5)
    assert v.replicates == 5 and v.status == "confirmed"


# ----------------------------------------------------------------------------------------------
# bad arguments
# ----------------------------------------------------------------------------------------------

class _Tensorish:
    """Duck-typed tensor: detach() and cpu() are called, then __array__."""

    def __init__(self, a: np.ndarray) -> None:
        self.a, self.calls = a, []

    def detach(self) -> "_Tensorish":
        self.calls.append("detach")
        return self

    def cpu(self) -> "_Tensorish":
        self.calls.append("cpu")
        return self

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # noqa: ANN001
        return self.a


def test_duck_typed_tensor() -> None:
    t = _Tensorish(_sample("he_normal", 18, 128, 128).astype(np.float32))
    v = check_initializer(t, "he_normal", fan_in=128, fan_out=128)
    assert t.calls == ["detach", "cpu"]
    assert v.status == "confirmed"


GOOD = _sample("he_normal", 19, 8, 4)


@pytest.mark.parametrize(("kwargs", "exc", "name"), [
    ({"weights": np.full((4, 8), np.nan)}, ValueError, "weights"),
    ({"weights": np.where(np.eye(4, 8) > 0, np.inf, GOOD)}, ValueError, "weights"),
    ({"weights": GOOD[:, :7]}, ValueError, "weights"),
    ({"weights": GOOD.ravel()}, ValueError, "weights"),
    ({"weights": np.zeros((0, 4, 8))}, ValueError, "weights"),
    ({"weights": GOOD.astype(int)}, TypeError, "weights"),
    ({"weights": GOOD.astype(complex)}, TypeError, "weights"),
    ({"weights": "he_normal"}, TypeError, "weights"),
    ({"weights": 1.0}, TypeError, "weights"),
    ({"scheme": "he_norml"}, ValueError, "he_normal"),
    ({"scheme": 3}, TypeError, "scheme"),
    ({"fan_in": 0}, ValueError, "fan_in"),
    ({"fan_out": 2.5}, TypeError, "fan_out"),
    ({"alpha": 1.5}, ValueError, "alpha"),
    ({"rtol": -0.1}, ValueError, "rtol"),
    ({"replicates": 3}, ValueError, "replicates"),       # only for a callable
    ({"weights": lambda: GOOD, "replicates": 0}, ValueError, "replicates"),
    ({"weights": lambda: np.ones(3), "replicates": 2}, ValueError, "weights()"),
    ({"orthogonality_tol": 0.0}, ValueError, "orthogonality_tol"),
    ({"weights": lambda x: GOOD}, TypeError, "weights"),     # e.g. an nn.Module, not its weight
])
def test_bad_arguments(kwargs: dict, exc: type, name: str) -> None:
    args = {"weights": GOOD, "scheme": "he_normal", "fan_in": 8, "fan_out": 4} | kwargs
    weights, scheme = args.pop("weights"), args.pop("scheme")
    with pytest.raises(exc, match=name.replace("(", r"\(").replace(")", r"\)")):
        check_initializer(weights, scheme, **args)


@pytest.mark.parametrize("bound", [0.3, 1.0, 2.0, 3.5])
def test_truncated_kurtosis_and_cdf_match_scipy(bound: float) -> None:
    from varprop.checking.initializers import truncated_normal_kurtosis
    assert truncated_normal_kurtosis(bound) == pytest.approx(
        float(stats.truncnorm(-bound, bound).stats(moments="k")), rel=1e-7, abs=1e-10)
    scheme = init_scheme("truncated_normal", std=0.3, bound=bound)
    x = np.linspace(-2, 2, 41)
    cdf = scheme.law(4, 4).cdf
    assert cdf(x) == pytest.approx(stats.truncnorm(-bound, bound, scale=0.3).cdf(x), abs=1e-12)
    for name, law in [("uniform", stats.uniform(-1, 3)), ("normal", stats.norm(0.5, 2))]:
        sch = (init_scheme("uniform", low=-1, high=2) if name == "uniform"
               else init_scheme("normal", std=2, mean=0.5))
        assert sch.law(4, 4).cdf(x * 3) == pytest.approx(law.cdf(x * 3), abs=1e-12)


# ----------------------------------------------------------------------------------------------
# extreme scales, tiny truncation bounds, reduced precision, the verdict's text
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("std", [1e-200, 1e200, 1e-300, 1e300])
def test_extreme_scales_are_checked_like_unit_scale(std: float) -> None:
    # old code: ZeroDivisionError at 1e-200 (the claimed variance underflows), NaN interval at
    # 1e200 (the squares overflow).  The statistics are scale-free: the same draws at std 1 give
    # the same relative interval and p-values (up to the rounding of x * std).
    z = np.random.default_rng(21).standard_normal((256, 256))
    unit = check_initializer(z, init_scheme("normal", std=1.0), fan_in=256, fan_out=256)
    v = check_initializer(z * std, init_scheme("normal", std=std), fan_in=256, fan_out=256)
    assert unit.status == v.status == "confirmed", v.reason
    np.testing.assert_allclose(v.relative_interval, unit.relative_interval, rtol=1e-9)
    for key in unit.p_values:
        assert v.p_values[key] == pytest.approx(unit.p_values[key], rel=1e-6, abs=1e-12)
    assert v.predicted == (0.0 if std < 1 else math.inf)  # 1e+-400: beyond the float range
    assert "beyond the float range" in v.reason


def test_hugely_wrong_scale_is_refuted_without_nan() -> None:
    z = np.random.default_rng(22).standard_normal((64, 64))
    for w in (z * 1e300, z * 1e-300):
        v = check_initializer(w, "he_normal", fan_in=64, fan_out=64)
        assert v.status == "refuted" and v.p_values["variance"] == 0.0
        assert not any(map(math.isnan, v.relative_interval))


@pytest.mark.parametrize("bound", [1e-8, 1e-12])
def test_tiny_truncation_bound_is_confirmed(bound: float) -> None:
    # old code: claimed variance -2.2e-16 at 1e-8 (refuted its own sampler), kurtosis -1.6e16
    scheme = init_scheme("truncated_normal", std=0.5, bound=bound)
    w = scheme.sample(np.random.default_rng(23), 256, 256)
    v = check_initializer(w, scheme, fan_in=256, fan_out=256)
    assert v.status == "confirmed", v.reason
    assert v.predicted == pytest.approx(0.25 * bound**2 / 3, rel=1e-9, abs=0)


def test_float16_weights_are_checked_against_the_rounded_law() -> None:
    # float16 keeps 11 bits: he_uniform's bound rounds up or down, so entries of a correct
    # float16 draw can lie past the float64 bound; the rounded support and the rounded law's
    # KS test must accept them (30 seeded true claims: none refuted) and still refute a wrong one
    he_u = init_scheme("he_uniform")
    rng = np.random.default_rng(24)
    refuted = 0
    for _ in range(30):
        w = he_u.sample(rng, 300, 200).astype(np.float16)
        refuted += check_initializer(w, he_u, fan_in=300, fan_out=200).status == "refuted"
    assert refuted == 0
    wrong = init_scheme("he_normal").sample(rng, 300, 200).astype(np.float16)
    assert check_initializer(wrong, he_u, fan_in=300, fan_out=200).status == "refuted"
    # the support of the rounded law ends at the bound rounded to float16: one float16 step
    # beyond it is impossible (the old slack of 4 float16 eps accepted it)
    bound = math.sqrt(6 / 300)
    w = he_u.sample(rng, 300, 200).astype(np.float16)
    w[0, 0] = np.nextafter(np.float16(bound), np.float16(np.inf))
    v = check_initializer(w, he_u, fan_in=300, fan_out=200)
    assert v.status == "refuted" and v.p_values["support"] == 0.0


def test_rounded_law_midpoints_match_nextafter() -> None:
    from varprop._util.rounding import FORMATS

    rng = np.random.default_rng(25)
    y = (rng.standard_normal(4000) * 10.0 ** rng.integers(-6, 4, 4000)).astype(np.float16)
    y[:5] = [0.0, 1.0, 2.0, -4.0, 6.1e-5]
    lower, upper = FORMATS["float16"].midpoints(y.astype(np.float64))
    inf16 = np.float16(np.inf)
    np.testing.assert_array_equal(upper, (y.astype(float) + np.nextafter(y, inf16)) / 2)
    np.testing.assert_array_equal(lower, (y.astype(float) + np.nextafter(y, -inf16)) / 2)
    x = rng.standard_normal(4000) * 1e3
    np.testing.assert_array_equal(FORMATS["float16"].round(x),
                                  x.astype(np.float16).astype(np.float64))


def test_conv_kernel_with_fans_from_the_shape() -> None:
    # (out, in, kh, kw): fan_in = in * kh * kw, fan_out = out * kh * kw (PyTorch's fans)
    he_out = init_scheme("he_normal", mode="fan_out")
    w = init_scheme("normal", std=math.sqrt(2 / (64 * 9))).sample(
        np.random.default_rng(26), 32 * 9, 64).reshape(64, 32, 3, 3)
    v = check_initializer(w, he_out)
    assert v.status == "confirmed" and (v.config["fan_in"], v.config["fan_out"]) == (288, 576)
    assert check_initializer(w, he_out, fan_in=288, fan_out=576).status == "confirmed"
    assert check_initializer(w, "he_normal").status == "refuted"  # fan_in mode: 2x the variance
    with pytest.raises(ValueError, match="convolution kernel"):
        check_initializer(w, he_out, fan_in=32, fan_out=64)


def test_verdict_text_names_the_weights_and_the_scheme() -> None:
    # old text: "CONFIRMED: Var(W_ij) for None / he_normal(...), widths None, layer 1"
    w = _sample("he_normal", 27, 64, 32)
    text = str(check_initializer(w, "he_normal", fan_in=64, fan_out=32))
    head = text.splitlines()[0]
    assert "None" not in head and "widths" not in head
    assert "he_normal(mode='fan_in'" in head and "(32, 64)" in head and "float64" in head
    assert "fan_in=64, fan_out=32" in head


def test_empty_and_non_float_arrays_are_usage_errors() -> None:
    from varprop.errors import InvalidArgument, InvalidArgumentType

    with pytest.raises(InvalidArgument, match="at least one entry"):
        check_initializer(np.zeros((0, 64)), "he_normal")
    for dtype in (bool, np.int64, np.complex128):
        with pytest.raises(InvalidArgumentType, match=f"dtype {np.dtype(dtype).name}"):
            check_initializer(np.ones((64, 64), dtype=dtype), "he_normal")
