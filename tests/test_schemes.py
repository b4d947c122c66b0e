"""Init schemes: symbolic moments against hand formulas, samplers against their moments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import sympy as sp

import varprop
from varprop.schemes import FAN_IN, FAN_OUT, init_scheme, scheme_names

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
