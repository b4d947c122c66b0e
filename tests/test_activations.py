"""Activations: closed forms and quadrature against mpmath high-precision integrals."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp

from varprop.components.activations import MU, Q, X, activation, activation_names

mpmath.mp.dps = 30

# Independent mpmath versions of each activation and its derivative.
MP = {
    "linear": (lambda x: x, lambda x: mpmath.mpf(1)),
    "relu": (lambda x: max(x, 0), lambda x: mpmath.mpf(1) if x > 0 else mpmath.mpf(0)),
    "leaky_relu": (lambda x: x if x > 0 else x / 100, lambda x: mpmath.mpf(1) if x > 0 else mpmath.mpf(1) / 100),
    "tanh": (mpmath.tanh, lambda x: mpmath.sech(x) ** 2),
    "sigmoid": (lambda x: 1 / (1 + mpmath.exp(-x)), lambda x: mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2),
    "erf": (mpmath.erf, lambda x: 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-x * x)),
}
# the framework activations (varprop.components.activations_extra) at their default parameters,
# written from PyTorch's documentation; tests/test_activations_extra.py covers other parameters
_SELU_A = mpmath.mpf("1.6732632423543772848170429916717")
_SELU_L = mpmath.mpf("1.0507009873554804934193349852946")
_K, _B = mpmath.sqrt(2 / mpmath.pi), mpmath.mpf("0.044715")


def _gelu_tanh_d(x):  # d/dx of x/2 (1 + tanh(u)), u = k (x + b x^3)
    u = _K * (x + _B * x**3)
    return (1 + mpmath.tanh(u)) / 2 + x / 2 * mpmath.sech(u) ** 2 * _K * (1 + 3 * _B * x**2)


def _mish_d(x):  # d/dx of x tanh(s), s = log(1 + e^x), s' = sigmoid(x)
    s = mpmath.log(1 + mpmath.exp(x))
    return mpmath.tanh(s) + x * mpmath.sech(s) ** 2 / (1 + mpmath.exp(-x))


MP.update({
    "elu": (lambda x: x if x > 0 else mpmath.expm1(x), lambda x: mpmath.mpf(1) if x > 0 else mpmath.exp(x)),
    "celu": (lambda x: x if x > 0 else mpmath.expm1(x), lambda x: mpmath.mpf(1) if x > 0 else mpmath.exp(x)),
    "selu": (lambda x: _SELU_L * (x if x > 0 else _SELU_A * mpmath.expm1(x)),
             lambda x: _SELU_L * (1 if x > 0 else _SELU_A * mpmath.exp(x))),
    "hardtanh": (lambda x: min(max(x, -1), 1), lambda x: mpmath.mpf(1 if -1 < x < 1 else 0)),
    "relu6": (lambda x: min(max(x, 0), 6), lambda x: mpmath.mpf(1 if 0 < x < 6 else 0)),
    "gelu": (lambda x: x * mpmath.ncdf(x), lambda x: mpmath.ncdf(x) + x * mpmath.npdf(x)),
    "gelu_tanh": (lambda x: x / 2 * (1 + mpmath.tanh(_K * (x + _B * x**3))), _gelu_tanh_d),
    "silu": (lambda x: x / (1 + mpmath.exp(-x)),
             lambda x: 1 / (1 + mpmath.exp(-x)) + x * mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2),
    "mish": (lambda x: x * mpmath.tanh(mpmath.log(1 + mpmath.exp(x))), _mish_d),
    "softplus": (lambda x: mpmath.log(1 + mpmath.exp(x)), lambda x: 1 / (1 + mpmath.exp(-x))),
    "softsign": (lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2),
})
#: Kinks of phi or phi' other than 0 (quadrature breakpoints of the references).
MP_KINKS = {"hardtanh": (-1, 1), "relu6": (6,)}


def mp_moments(name, mu, q):
    f, d = MP[name]
    s = mpmath.sqrt(q)

    def expect(g):
        dens = lambda x: mpmath.exp(-((x - mu) ** 2) / (2 * q)) / (s * mpmath.sqrt(2 * mpmath.pi))
        pts = sorted({mu - 40 * s, mpmath.mpf(0) if abs(mu) < 40 * s else mu, mu, mu + 40 * s}
                     | {mpmath.mpf(k) for k in MP_KINKS.get(name, ()) if abs(k - mu) < 40 * s})
        return mpmath.quad(lambda x: g(x) * dens(x), pts)

    return [float(expect(lambda x: f(x))), float(expect(lambda x: f(x) ** 2)),
            float(expect(lambda x: d(x))), float(expect(lambda x: d(x) ** 2))]


CASES = [(0.0, 0.01), (0.0, 1.0), (0.0, 7.3), (0.0, 400.0), (0.7, 0.5), (-1.3, 3.0)]


#: Registered activations whose closed forms are exact / approximations with declared bounds.
EXACT_NAMES = ("linear", "relu", "leaky_relu", "erf", "elu", "celu", "selu", "hardtanh", "relu6",
               "gelu")
APPROXIMATE_NAMES = ("tanh", "sigmoid")


def test_registry_is_covered():
    """Every registered activation has its reference tests: an mpmath phi and phi' (MP, used
    for quadrature, closed forms and derivatives), and its closed form in the exact or the
    approximate list (tests/test_traits.py requires its traits row)."""
    names = set(activation_names())
    assert names == set(MP), "add the activation's mpmath reference to MP"
    exact = {n for n in names if activation(n).closed_form_is_exact}
    approximate = {n for n in names if activation(n).closed_form is not None} - exact
    assert exact == set(EXACT_NAMES) and approximate == set(APPROXIMATE_NAMES)


#: The six original activations at every case; the framework activations (their closed forms
#: are checked at 30 digits and more points in tests/test_activations_extra.py) at three.
_ORIGINAL = ("linear", "relu", "leaky_relu", "tanh", "sigmoid", "erf")
_CASES_BY_NAME = [(name, mu, q) for name in sorted(MP) for mu, q in
                  (CASES if name in _ORIGINAL else [CASES[1], CASES[4], CASES[5]])]


@pytest.mark.parametrize("name, mu, q", _CASES_BY_NAME)
def test_quadrature_matches_mpmath(name, mu, q):
    act = activation(name)
    got = act.gaussian_moments(mu, q, method="quadrature")
    ref = mp_moments(name, mu, q)
    for g, r in zip(got, ref):
        assert abs(g - r) <= 1e-10 * max(1.0, abs(r)), (g, r)


EXACT_CASES = [(name, mu, q) for name, mu, q in _CASES_BY_NAME if name in EXACT_NAMES
               and (mu == 0.0 or not activation(name).closed_form.zero_mean_only)]


@pytest.mark.parametrize("name, mu, q", EXACT_CASES)
def test_exact_closed_forms_match_mpmath(name, mu, q):
    act = activation(name)
    got = act.gaussian_moments(mu, q, method="closed_form")
    for g, r in zip(got, mp_moments(name, mu, q)):
        assert abs(g - r) <= 1e-12 * max(1.0, abs(r)), (g, r)


def test_symbolic_closed_forms_against_hand_derivations():
    relu, leaky, erf = activation("relu"), activation("leaky_relu", negative_slope=0.2), activation("erf")
    assert sp.simplify(relu.closed_form.second.subs(MU, 0) - Q / 2) == 0
    assert sp.simplify(relu.closed_form.deriv_second.subs(MU, 0) - sp.Rational(1, 2)) == 0
    assert sp.simplify(relu.closed_form.mean.subs(MU, 0) - sp.sqrt(Q / (2 * sp.pi))) == 0
    a = sp.Rational(1, 5)
    assert sp.simplify(leaky.closed_form.second.subs(MU, 0) - (1 + a**2) * Q / 2) == 0
    assert sp.simplify(erf.closed_form.second - 2 / sp.pi * sp.asin(2 * Q / (1 + 2 * Q))) == 0


def test_symbolic_derivatives_match_numpy_derivatives():
    xs = np.array([-2.5, -0.3, 0.4, 1.7])
    for name in activation_names():
        act = activation(name)
        d = sp.lambdify(X, act.derivative.rewrite(sp.Piecewise), modules=["scipy", "numpy"])
        expected = np.array([float(d(x)) for x in xs])
        assert np.allclose(act.derivative_function(xs), expected, rtol=1e-12), name


@pytest.mark.parametrize("name", APPROXIMATE_NAMES)
def test_approximation_errors_within_declared_bounds(name):
    act = activation(name)
    bounds = act.closed_form.max_relative_error
    worst = dict.fromkeys(bounds, 0.0)
    for q in np.logspace(-4, 4, 161):
        approx = act.gaussian_moments(0.0, q, method="closed_form")
        exact = act.gaussian_moments(0.0, q, method="quadrature")
        for key, a, e in zip(("mean", "second", "deriv_mean", "deriv_second"), approx, exact):
            if abs(e) > 1e-300:
                worst[key] = max(worst[key], abs(a / e - 1) if abs(e) > 1e-12 else abs(a - e))
    for key, bound in bounds.items():
        assert worst[key] <= bound + 1e-12, (key, worst[key], bound)
    # the declared bounds are not loose: each is within 0.5 percentage points of the worst case
    for key in ("second", "deriv_second"):
        assert worst[key] > bounds[key] - 0.005


def test_tanh_derivative_error_asymptote():
    # E sech^4 z ~ 4/(3 sqrt(2 pi q)) while the erf approximation gives 1/sqrt(pi q)
    act = activation("tanh")
    q = 1e6
    approx = act.gaussian_moments(0.0, q, method="closed_form")[3]
    exact = act.gaussian_moments(0.0, q, method="quadrature")[3]
    assert math.isclose(approx / exact - 1, 0.75 * math.sqrt(2) - 1, rel_tol=1e-3)


def test_series_is_accurate_for_small_signals():
    act = activation("tanh")
    rules = act.series_rules(7)
    f = sp.lambdify((MU, Q), rules.second)
    for q in (1e-3, 1e-2):
        exact = act.gaussian_moments(0.0, q, method="quadrature")[1]
        # the first neglected term is O(q^5)
        assert abs(f(0.0, q) / exact - 1) < 50 * q**4
    # tanh's series: E tanh(z)^2 = q - 2 q^2 + 17/3 q^3 + ...  (hand expansion)
    assert sp.expand(rules.second.subs(MU, 0)).coeff(Q, 2) == -2
    assert sp.expand(rules.second.subs(MU, 0)).coeff(Q, 3) == sp.Rational(17, 3)


def test_sigmoid_mean_is_one_half_so_second_moment_is_not_variance():
    m, second, _, _ = activation("sigmoid").gaussian_moments(0.0, 2.0, method="quadrature")
    assert abs(m - 0.5) < 1e-13
    assert second - (second - m**2) == pytest.approx(0.25, abs=1e-13)


def test_numpy_scalar_variances_are_accepted():
    tanh = activation("tanh")
    assert tanh.gaussian_moments(0.0, np.float32(0.5)) == tanh.gaussian_moments(0.0, 0.5)


def test_infinite_variance_limits():
    assert activation("tanh").gaussian_moments(0.0, math.inf)[1] == 1.0
    assert activation("sigmoid").gaussian_moments(0.0, math.inf)[1] == 0.5
    assert activation("relu").gaussian_moments(0.0, math.inf)[1] == math.inf


def test_correlated_moments_reduce_to_known_cases():
    relu = activation("relu")
    # perfectly correlated: E[phi(z)^2]
    full = relu.correlated_moments(0.3, 2.0, 2.0)[0]
    assert math.isclose(full, relu.gaussian_moments(0.3, 2.0)[1], rel_tol=1e-10)
    # uncorrelated: (E phi)^2
    none = relu.correlated_moments(0.3, 2.0, 0.0)[0]
    assert math.isclose(none, relu.gaussian_moments(0.3, 2.0)[0] ** 2, rel_tol=1e-10)
    # arc-cosine kernel (Cho & Saul 2009) at mu = 0, correlation rho
    q, rho = 1.5, 0.4
    theta = math.acos(rho)
    expected = q / (2 * math.pi) * (math.sin(theta) + (math.pi - theta) * math.cos(theta))
    assert math.isclose(relu.correlated_moments(0.0, q, rho * q)[0], expected, rel_tol=1e-9)


BAD = [
    (lambda: activation("rleu"), ValueError, "did you mean 'relu'"),
    (lambda: activation("leaky_relu", slope=0.1), TypeError, "negative_slope"),
    (lambda: activation("leaky_relu", negative_slope=float("inf")), ValueError, "negative_slope"),
    (lambda: activation(None), TypeError, "activation"),
    (lambda: activation("relu").gaussian_moments(0.0, -1.0), ValueError, "q"),
    (lambda: activation("relu").gaussian_moments(0.0, float("nan")), ValueError, "q"),
    (lambda: activation("relu").gaussian_moments(0.0, True), TypeError, "q"),
    (lambda: activation("relu").series_rules(0), ValueError, "order"),
]


@pytest.mark.parametrize("call, exc, text", BAD)
def test_bad_arguments(call, exc, text):
    with pytest.raises(exc, match=text):
        call()


@pytest.mark.parametrize("name", activation_names() + ["x*sigmoid(x)"])
def test_activations_pickle_by_name_and_parameters(name):
    import pickle

    phi = activation(name)
    clone = pickle.loads(pickle.dumps(phi))
    assert clone.name == phi.name and sp.simplify(clone.expr - phi.expr) == 0
    z = np.linspace(-3, 3, 13)
    np.testing.assert_array_equal(clone.function(z), phi.function(z))
    leaky = pickle.loads(pickle.dumps(activation("leaky_relu", negative_slope=0.3)))
    assert leaky.params == {"negative_slope": 0.3}


def _activation_parameters():
    import inspect

    from varprop.components.activations import ACTIVATIONS

    return [(name, param) for name in ACTIVATIONS
            for param in inspect.signature(ACTIVATIONS._factories[name]).parameters]


def test_some_activation_has_parameters():
    assert ("leaky_relu", "negative_slope") in _activation_parameters()


@pytest.mark.parametrize("name, param", _activation_parameters())
def test_bool_activation_parameters_refused_after_a_cached_equal_number(name, param):
    from varprop.errors import InvalidArgument, InvalidArgumentType

    for number, flag in [(1.0, True), (0.0, False), (1, True), (0, False)]:
        try:
            activation(name, **{param: number})  # cached when valid
        except (InvalidArgument, InvalidArgumentType):
            pass
        with pytest.raises(InvalidArgumentType, match=param):
            activation(name, **{param: flag})


def test_leaky_relu_with_a_huge_slope_gives_numbers_not_overflow_errors():
    a = 1e300
    phi = activation("leaky_relu", negative_slope=a)
    for q in (1.0, 4.0):
        mean, second, dmean, dsecond = phi.gaussian_moments(0.0, q)
        # hand formulas at mu = 0: E phi = (1 - a) sqrt(q / (2 pi)), E phi' = (1 + a) / 2;
        # E phi^2 = (1 + a^2) q / 2 and E phi'^2 = (1 + a^2) / 2 exceed the float range
        assert mean == pytest.approx((1 - a) * math.sqrt(q / (2 * math.pi)), rel=1e-14)
        assert dmean == pytest.approx((1 + a) / 2, rel=1e-14)
        assert second == math.inf and dsecond == math.inf
    import varprop

    with pytest.warns(varprop.VarpropWarning):
        assert varprop.predict_variance(phi, "he_normal", fan_in=8) == math.inf
