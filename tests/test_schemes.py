"""Init schemes: symbolic moments against hand formulas, samplers against their moments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import sympy as sp

import varprop
from varprop.components.schemes import FAN_IN, FAN_OUT, init_scheme, scheme_names

N_IN, N_OUT = FAN_IN, FAN_OUT

# Hand-written reference variances (independent of the registry's variance_scaling helper).
HAND_VARIANCE = {
    "standard_normal": sp.Integer(1),
    "lecun_normal": 1 / N_IN,
    "lecun_uniform": (2 * sp.sqrt(3 / N_IN)) ** 2 / 12,
    "xavier_normal": 2 / (N_IN + N_OUT),
    "xavier_uniform": (2 * sp.sqrt(6 / (N_IN + N_OUT))) ** 2 / 12,
    "he_normal": 2 / N_IN,
    "he_uniform": (2 * sp.sqrt(6 / N_IN)) ** 2 / 12,
    "torch_linear_default": (2 / sp.sqrt(N_IN)) ** 2 / 12,  # U(-1/sqrt(n), 1/sqrt(n))
    "variance_scaling": 1 / N_IN,
    "normal": sp.Integer(1),
    "uniform": sp.Rational(1, 12),
    "orthogonal": 1 / sp.Max(N_IN, N_OUT),
}


@pytest.mark.parametrize("name", sorted(HAND_VARIANCE))
def test_symbolic_variance_matches_hand_formula(name):
    got = init_scheme(name).weight_variance()
    assert sp.simplify(got - HAND_VARIANCE[name]) == 0


def test_every_registered_scheme_has_a_hand_reference_or_is_truncated():
    assert set(scheme_names()) - set(HAND_VARIANCE) == {"truncated_normal"}


def test_truncated_normal_variance_matches_scipy():
    for std, bound in [(1.0, 2.0), (0.3, 1.5), (2.0, 3.0)]:
        s = init_scheme("truncated_normal", std=std, bound=bound)
        expected = std**2 * scipy.stats.truncnorm(-bound, bound).var()
        assert math.isclose(float(s.weight_variance()), expected, rel_tol=1e-12)


@pytest.mark.parametrize("bound", [1e-3, 0.3, 0.99, 1.5])
def test_truncated_sampler_matches_scipy_truncnorm(bound):
    # narrow bounds use the inverse CDF (rejection accepted ~0.08% of draws at 1e-3 and took
    # minutes), wide ones rejection: both must be the truncated normal law (seeded KS test)
    scheme = init_scheme("truncated_normal", std=2.0, bound=bound)
    w = scheme.sample(np.random.default_rng(7), 100, 50).ravel()
    assert np.abs(w).max() <= 2.0 * bound
    law = scipy.stats.truncnorm(-bound, bound, scale=2.0)
    assert scipy.stats.kstest(w, law.cdf).pvalue > 1e-3


def test_keras_truncated_variance_scaling_has_exact_variance():
    s = init_scheme("variance_scaling", scale=2.0, mode="fan_avg", distribution="truncated_normal")
    assert sp.simplify(s.weight_variance() - 4 / (N_IN + N_OUT)) == 0
    # Keras' constant: the std of N(0,1) truncated at +-2 is 0.87962566103423978
    assert math.isclose(math.sqrt(float(s.weight_variance(1, 1))) / s.parameters(1, 1)["scale"],
                        0.87962566103423978, rel_tol=1e-12)


def test_he_parameters_and_modes():
    s = init_scheme("kaiming_normal", mode="fan_out", negative_slope=0.2)
    assert sp.simplify(s.weight_variance() - 2 / (1 + sp.Rational(1, 25)) / N_OUT) == 0
    assert init_scheme("kaiming_uniform") == init_scheme("he_uniform")
    assert init_scheme("glorot_normal") == init_scheme("xavier_normal")


def test_torch_linear_default_bound_is_one_over_sqrt_fan_in():
    # PyTorch: kaiming_uniform_(a=sqrt(5)): gain = sqrt(2/(1+5)), bound = gain*sqrt(3/fan_in)
    p = init_scheme("torch_linear_default").parameters(64, 10)
    assert math.isclose(p["high"], math.sqrt(2 / 6) * math.sqrt(3 / 64), rel_tol=1e-14)
    assert math.isclose(p["low"], -p["high"], rel_tol=1e-14)


def test_exact_numbers_stay_exact():
    assert init_scheme("normal", std=0.05).weight_variance() == sp.Rational(1, 400)
    assert init_scheme("uniform").weight_mean() == sp.Rational(1, 2)


@pytest.mark.parametrize("name", [n for n in scheme_names() if n != "orthogonal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sampler_moments(name, dtype):
    s = init_scheme(name)
    rng = np.random.default_rng(12345)
    w = s.sample(rng, 40, 25, size=(400,), dtype=dtype).astype(np.float64)
    assert w.shape == (400, 25, 40) and s.sample(rng, 40, 25, dtype=dtype).dtype == dtype
    mean, var = s.moments(40, 25)
    n = w.size
    # fixed seed: deterministic; bounds are 6 standard errors (kurtosis <= 3 for these laws)
    assert abs(w.mean() - mean) < 6 * math.sqrt(var / n)
    assert abs(w.var() / var - 1) < 6 * math.sqrt(2 / n)


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (6, 6)])
def test_orthogonal_sampler_is_orthogonal_and_haar(shape):
    n_out, n_in = shape
    s = init_scheme("orthogonal", gain=1.5)
    w = s.sample(np.random.default_rng(0), n_in, n_out, size=(300,))
    gram = w @ np.swapaxes(w, -1, -2) if n_out <= n_in else np.swapaxes(w, -1, -2) @ w
    assert np.allclose(gram, 1.5**2 * np.eye(min(shape)), atol=1e-12)
    assert math.isclose(w.var(), float(s.weight_variance(n_in, n_out)), rel_tol=0.05)
    # Haar: the sign of each entry is symmetric (the sign correction matters)
    assert abs(np.mean(w[:, 0, 0] > 0) - 0.5) < 0.15


BAD = [
    (lambda: init_scheme("he_nromal"), ValueError, "he_normal"),
    (lambda: init_scheme("xavier"), ValueError, "did you mean"),
    (lambda: init_scheme("normal", std=-1.0), ValueError, "std"),
    (lambda: init_scheme("normal", std=float("nan")), ValueError, "std"),
    (lambda: init_scheme("normal", std="1"), TypeError, "std"),
    (lambda: init_scheme("uniform", low=1.0, high=0.0), ValueError, "high"),
    (lambda: init_scheme("he_normal", mode="fan_avg"), ValueError, "mode"),
    (lambda: init_scheme("he_normal", slope=0.1), TypeError, "negative_slope"),
    (lambda: init_scheme("variance_scaling", distribution="gaussian"), ValueError, "distribution"),
    (lambda: init_scheme("orthogonal", gain=0), ValueError, "gain"),
    (lambda: init_scheme(3), TypeError, "init"),
    (lambda: init_scheme("he_normal").moments(0, 3), ValueError, "fan_in"),
    (lambda: init_scheme("he_normal").moments(3, True), TypeError, "fan_out"),
]


@pytest.mark.parametrize("call, exc, text", BAD)
def test_bad_arguments(call, exc, text):
    with pytest.raises(exc, match=text):
        call()


def test_errors_are_varprop_errors():
    with pytest.raises(varprop.VarpropError):
        init_scheme("nope")


@pytest.mark.parametrize("name", scheme_names())
def test_schemes_pickle_by_name_and_parameters(name):
    import pickle

    scheme = init_scheme(name)
    clone = pickle.loads(pickle.dumps(scheme))
    assert clone == scheme and clone.weight_variance(7, 5) == scheme.weight_variance(7, 5)
    tuned = init_scheme("he_uniform", mode="fan_out", negative_slope=0.2)
    assert pickle.loads(pickle.dumps(tuned)).params == tuned.params


# ----------------------------------------------------------------------------------------------
# truncated normal at tiny bounds (the erf closed form cancels in floats below bound ~ 1e-7)
# ----------------------------------------------------------------------------------------------

def _mp_truncated_variance(bound: float) -> float:
    """Variance of N(0, 1) truncated to [-b, b], at 80 digits (independent of varprop)."""
    import mpmath

    with mpmath.workdps(80):
        b = mpmath.mpf(bound)
        return float(1 - 2 * b * mpmath.npdf(b) / mpmath.erf(b / mpmath.sqrt(2)))


def _mp_truncated_kurtosis(bound: float) -> float:
    """Excess kurtosis of N(0, 1) truncated to [-b, b] (m4 = 3 m2 - 2 b^3 phi(b) / Z), 80 digits."""
    import mpmath

    with mpmath.workdps(80):
        b = mpmath.mpf(bound)
        z = mpmath.erf(b / mpmath.sqrt(2))
        m2 = 1 - 2 * b * mpmath.npdf(b) / z
        m4 = 3 * m2 - 2 * b**3 * mpmath.npdf(b) / z
        return float(m4 / m2**2 - 3)


TINY_BOUNDS = sorted({*np.logspace(-12, 1, 27).tolist(), 1e-7, 3e-8, 1e-8, 1.0, 2.0})


@pytest.mark.parametrize("bound", TINY_BOUNDS)
def test_truncated_variance_matches_mpmath_at_every_bound(bound):
    # old code: -3.4% at 1e-7, +11% at 3e-8, -2.2e-16 (negative) at 1e-8
    std = 0.7
    ref = std**2 * _mp_truncated_variance(bound)
    scheme = init_scheme("truncated_normal", std=std, bound=bound)
    assert scheme.moments(4, 4)[1] == pytest.approx(ref, rel=1e-13, abs=0)
    assert float(scheme.weight_variance()) == pytest.approx(ref, rel=1e-13, abs=0)
    factor = varprop.components.schemes.truncated_variance_factor(bound)
    assert float(factor) == pytest.approx(ref / std**2, rel=1e-13, abs=0)
    from varprop.checking.initializers import truncated_normal_kurtosis

    assert truncated_normal_kurtosis(bound) == pytest.approx(_mp_truncated_kurtosis(bound),
                                                             rel=1e-12, abs=1e-13)


@pytest.mark.parametrize("bound", [1e-15, 1e-12, 1e-8])
def test_truncated_sampler_is_exact_at_tiny_bounds(bound):
    # the old inverse-CDF sampler resolved only ~1e-16 / bound of [-b, b]: at 1e-12 about 7000
    # distinct values, at 1e-15 a handful
    std = 3.0
    w = init_scheme("truncated_normal", std=std, bound=bound).sample(
        np.random.default_rng(5), 200, 100).ravel()
    t = w / (std * bound)  # in [-1, 1], density prop. to exp(-b^2 t^2 / 2): uniform to 1e-24
    assert np.abs(t).max() <= 1.0
    assert np.unique(w).size >= 0.99 * w.size
    assert scipy.stats.kstest(t, scipy.stats.uniform(-1, 2).cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------------------------
# extreme but valid values: numbers or varprop errors, never raw exceptions
# ----------------------------------------------------------------------------------------------

def test_fans_of_the_symbolic_moments_are_validated():
    he = init_scheme("he_normal")
    for fans, name in [((0, 0), "fan_in"), ((-1, 2), "fan_in"), ((3, 0), "fan_out"),
                       ((2.5, 3), "fan_in")]:
        with pytest.raises((varprop.InvalidArgument, varprop.InvalidArgumentType), match=name):
            he.weight_variance(*fans)
        with pytest.raises((varprop.InvalidArgument, varprop.InvalidArgumentType), match=name):
            he.weight_mean(*fans)
    assert he.weight_variance(4, 9) == sp.Rational(1, 2)
    n = sp.Symbol("n", positive=True)
    assert he.weight_variance(n, 3) == 2 / n  # symbolic fans still work


def test_sample_validates_rng_size_and_dtype():
    he = init_scheme("he_normal")
    with pytest.raises(varprop.InvalidArgumentType, match="rng"):
        he.sample(None, 4, 4)
    with pytest.raises(varprop.InvalidArgumentType, match="rng"):
        he.sample(0, 4, 4)
    with pytest.raises(varprop.InvalidArgument, match="dtype"):
        he.sample(np.random.default_rng(0), 4, 4, dtype=np.int32)
    with pytest.raises(varprop.InvalidArgument, match="size"):
        he.sample(np.random.default_rng(0), 4, 4, size=(-1,))


def test_uniform_beyond_the_float_range():
    s = init_scheme("uniform", low=-1e200, high=1e200)
    assert s.weight_variance() == sp.Integer(10) ** 400 / 3  # (2e200)^2 / 12, exact
    with pytest.warns(varprop.VarpropWarning, match="float range"):
        assert s.moments(4, 4) == (0.0, math.inf)
    w = s.sample(np.random.default_rng(0), 50, 40)
    assert np.all(np.abs(w) <= 1e200)
    assert np.std(w / 1e200) == pytest.approx(2 / math.sqrt(12), rel=0.05)
    huge = init_scheme("uniform", low=-1.7e308, high=1.7e308)  # high - low overflows
    w = huge.sample(np.random.default_rng(0), 50, 40)
    assert np.all(np.isfinite(w)) and np.abs(w).max() <= 1.7e308
    assert np.mean(w > 0) == pytest.approx(0.5, abs=0.05)


# ----------------------------------------------------------------------------------------------
# the bool check is not bypassed by the build cache (True == 1.0, hash(True) == hash(1.0))
# ----------------------------------------------------------------------------------------------

def _numeric_parameters(registry):
    import inspect

    for name in registry:
        for param in inspect.signature(registry._factories[name]).parameters:
            yield name, param


@pytest.mark.parametrize("name, param", list(_numeric_parameters(varprop.components.schemes.SCHEMES)))
def test_bool_scheme_parameters_refused_after_a_cached_equal_number(name, param):
    for number, flag in [(1.0, True), (0.0, False), (1, True), (0, False)]:
        try:
            init_scheme(name, **{param: number})  # cached when valid
        except (varprop.InvalidArgument, varprop.InvalidArgumentType):
            pass
        with pytest.raises(varprop.InvalidArgumentType, match=param):
            init_scheme(name, **{param: flag})


def test_predict_with_a_tiny_truncation_bound():
    # old code: "math domain error" (the claimed variance was -2.2e-16 at bound 1e-8)
    s = init_scheme("truncated_normal", bound=1e-8)
    q = 64 * _mp_truncated_variance(1e-8)
    got = varprop.predict_variance("linear", s, fan_in=64, quantity="preactivation")
    assert got == pytest.approx(q, rel=1e-12, abs=0)
    # ReLU at mu = 0: Var relu(z) = q (1/2 - 1/(2 pi))
    got = varprop.predict_variance("relu", s, fan_in=64)
    assert got == pytest.approx(q * (0.5 - 0.5 / math.pi), rel=1e-12, abs=0)


def test_sample_too_large_is_refused_before_allocating() -> None:
    from varprop.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="8,000,000,000,000 bytes"):
        init_scheme("he_normal").sample(np.random.default_rng(0), 10**6, 10**6)
