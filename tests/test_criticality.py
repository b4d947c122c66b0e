"""Tests for varprop.theory.criticality: critical gains, mean-field fixed points, the edge of chaos.

Every expected value is computed independently here: SymPy integrals for the piecewise-linear
activations, mpmath quadrature (30 digits) and mpmath root finding for tanh/sigmoid/erf, and
the recursion of ``varprop.theory.predict`` (a different code path) for what the gains do over depth.
"""

from __future__ import annotations

import math
import warnings

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

import varprop as vp
from varprop.errors import VarpropError, VarpropWarning
from varprop.theory.criticality import (
    MeanFieldPoint,
    critical_gain,
    edge_of_chaos,
    mean_field,
)

mp.mp.dps = 30


def _gauss(f, q):
    """E f(z), z ~ N(0, q), by mpmath quadrature split at 0."""
    s = mp.sqrt(q)
    g = lambda t: f(s * t) * mp.exp(-t * t / 2) / mp.sqrt(2 * mp.pi)  # noqa: E731
    return mp.quad(g, [-mp.inf, 0, mp.inf])


def _sech2(x):
    return 1 / mp.cosh(x) ** 2


# ---------------------------------------------------------------------------------------------
# critical gain
# ---------------------------------------------------------------------------------------------

def test_relu_and_leaky_relu_gains_symbolic() -> None:
    x, a = sp.symbols("x a", real=True)
    pdf = sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)
    relu2 = sp.integrate(x**2 * pdf, (x, 0, sp.oo))  # E relu(z)^2 at q = 1
    assert sp.simplify(relu2 - sp.Rational(1, 2)) == 0
    assert critical_gain("relu") == pytest.approx(float(sp.sqrt(1 / relu2)), rel=1e-15)
    leaky2 = relu2 + a**2 * sp.integrate(x**2 * pdf, (x, -sp.oo, 0))
    g = sp.sqrt(1 / leaky2)
    assert sp.simplify(g**2 - 2 / (1 + a**2)) == 0
    for slope in (0.01, 0.2, 0.5):
        act = vp.activation("leaky_relu", negative_slope=slope)
        assert critical_gain(act) == pytest.approx(float(g.subs(a, slope)), rel=1e-14)
        # the gain does not depend on the target for positively homogeneous activations
        assert critical_gain(act, target_variance=7.5) == pytest.approx(critical_gain(act), rel=1e-12)
    assert critical_gain("linear") == pytest.approx(1.0, rel=1e-15)
    # with a bias: g^2 = (q - sb^2) / (q / 2)
    assert critical_gain("relu", target_variance=2.0, bias_variance=0.5) == pytest.approx(
        math.sqrt(2 * 1.5 / 2.0), rel=1e-14)


@pytest.mark.parametrize("name, f", [
    ("tanh", mp.tanh),
    ("sigmoid", lambda x: 1 / (1 + mp.exp(-x))),
    ("erf", mp.erf),
])
@pytest.mark.parametrize("target, bias", [(1.0, 0.0), (0.3, 0.1), (4.0, 1.0)])
def test_saturating_gains_against_mpmath(name: str, f, target: float, bias: float) -> None:
    expected = mp.sqrt((target - bias) / _gauss(lambda x: f(x) ** 2, target))
    assert critical_gain(name, target_variance=target, bias_variance=bias) == pytest.approx(
        float(expected), rel=1e-10)


def test_tanh_and_sigmoid_gain_values_vs_pytorch() -> None:
    """PyTorch's calculate_gain: tanh 5/3, sigmoid 1, relu sqrt 2.  The exact target-1 gains."""
    assert critical_gain("tanh") == pytest.approx(1.5925374197, abs=1e-9)
    assert critical_gain("sigmoid") == pytest.approx(1.8462285453, abs=1e-9)
    assert abs(critical_gain("tanh") - 5 / 3) > 0.07  # 5/3 is a heuristic, 4.7 % too large
    assert critical_gain("relu") == pytest.approx(math.sqrt(2), rel=1e-15)


def test_critical_gain_keeps_the_variance_over_100_layers() -> None:
    """Independent code path: predict_variance's recursion with N(0, g^2/n) weights.  Starting
    the input at E[phi^2](q*) puts layer 1 at q*, and the variance stays there."""
    n = 100
    for name in ("tanh", "sigmoid", "relu", "erf", "atan"):
        g = critical_gain(name)
        act = vp.activation(name)
        start = act.gaussian_moments(0.0, 1.0, method="quadrature")[1]
        q = vp.predict_variance(name, vp.init_scheme("normal", std=g / math.sqrt(n)), fan_in=n,
                                depth=100, input_variance=start, quantity="preactivation",
                                per_layer=True, method="quadrature")
        assert np.allclose(q, 1.0, rtol=1e-9), name


def test_pytorch_tanh_gain_converges_to_its_own_fixed_point() -> None:
    """With g = 5/3 the tanh variance converges to q* with q* = (25/9) E tanh^2, not to 1."""
    n = 100
    g = 5 / 3
    q_star = mp.findroot(lambda q: g**2 * _gauss(lambda x: mp.tanh(x) ** 2, q) - q, 2.0)
    q100 = vp.predict_variance("tanh", vp.init_scheme("normal", std=g / math.sqrt(n)), fan_in=n,
                               depth=100, quantity="preactivation")
    assert q100 == pytest.approx(float(q_star), rel=1e-8)
    assert mean_field("tanh", g**2).q_star == pytest.approx(float(q_star), rel=1e-10)
    # chi > 1 there (sigma_b^2 = 0 and sigma_w^2 > 1: the chaotic phase): gradients grow
    chi = g**2 * _gauss(lambda x: _sech2(x) ** 2, q_star)
    assert mean_field("tanh", g**2).chi == pytest.approx(float(chi), rel=1e-9)
    assert mean_field("tanh", g**2).phase == "chaotic" and float(chi) > 1
    grad = vp.predict_variance("tanh", vp.init_scheme("normal", std=g / math.sqrt(n)), fan_in=n,
                               depth=100, quantity="gradient", per_layer=True)
    # far from the input the per-layer gradient factor is chi
    assert grad[50] / grad[51] == pytest.approx(float(chi), rel=1e-8)


def test_unstable_fixed_point_warns() -> None:
    # E[(x^2)^2] = 3 q^2: the map q -> g^2 3 q^2 has slope 2 at its fixed point
    with pytest.warns(VarpropWarning, match="unstable"):
        g = critical_gain("x**2", target_variance=1.0)
    assert g == pytest.approx(1 / math.sqrt(3), rel=1e-12)
    # swish/SiLU at q* = 1: E swish^2 grows faster than q there (from q/4 near 0 to q/2)
    with pytest.warns(VarpropWarning, match="unstable"):
        critical_gain("x*sigmoid(x)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        critical_gain("tanh")  # stable: no warning


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"target_variance": 0.5, "bias_variance": 0.5}, ValueError, "target_variance"),
    ({"target_variance": 0.1, "bias_variance": 1.0}, ValueError, "target_variance"),
    ({"target_variance": -1.0}, ValueError, "target_variance"),
    ({"target_variance": "1"}, TypeError, "target_variance"),
    ({"bias_variance": -0.1}, ValueError, "bias_variance"),
    ({"bias_variance": float("nan")}, ValueError, "bias_variance"),
])
def test_critical_gain_bad_arguments(kwargs: dict, exc: type, name: str) -> None:
    with pytest.raises(exc, match=name):
        critical_gain("tanh", **kwargs)


def test_critical_gain_bad_activation() -> None:
    with pytest.raises(ValueError, match="did you mean 'tanh'"):
        critical_gain("tanhh")
    with pytest.raises(TypeError, match="activation"):
        critical_gain(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# edge of chaos and mean-field points
# ---------------------------------------------------------------------------------------------

def test_edge_of_chaos_tanh_without_bias() -> None:
    p = edge_of_chaos("tanh")
    assert isinstance(p, MeanFieldPoint)
    assert p.sigma_w2 == pytest.approx(1.0, abs=1e-12) and p.q_star == 0.0
    assert p.chi == pytest.approx(1.0, abs=1e-12) and p.phase == "critical"
    assert p.xi_c == math.inf and p.xi_q == math.inf and p.gain == pytest.approx(1.0)


def test_edge_of_chaos_tanh_with_bias_against_mpmath() -> None:
    """Solve q = s E tanh^2(z) + 0.05 and s E sech^4(z) = 1 jointly (z ~ N(0, q)) with mpmath."""
    sb2 = mp.mpf("0.05")

    def equations(q, s):
        return (s * _gauss(lambda x: mp.tanh(x) ** 2, q) + sb2 - q,
                s * _gauss(lambda x: _sech2(x) ** 2, q) - 1)

    q_ref, s_ref = mp.findroot(equations, (mp.mpf("0.57"), mp.mpf("1.76")))
    p = edge_of_chaos("tanh", 0.05)
    assert p.sigma_w2 == pytest.approx(float(s_ref), rel=1e-9)
    assert p.q_star == pytest.approx(float(q_ref), rel=1e-8)
    assert p.chi == pytest.approx(1.0, abs=1e-9) and p.xi_c == math.inf
    # xi_q from the slope of the length map, by a centred mpmath derivative
    slope = mp.diff(lambda q: s_ref * _gauss(lambda x: mp.tanh(x) ** 2, q), q_ref)
    assert p.slope_q == pytest.approx(float(slope), rel=1e-7)
    assert p.xi_q == pytest.approx(float(-1 / mp.log(slope)), rel=1e-6)


def test_edge_of_chaos_erf_and_homogeneous() -> None:
    # erf: phi'(0)^2 = 4/pi, so sigma_w^2 = pi/4 at sigma_b^2 = 0
    assert edge_of_chaos("erf").sigma_w2 == pytest.approx(math.pi / 4, rel=1e-12)
    # positively homogeneous: sigma_w^2 = 1 / E phi'^2, every q is a fixed point
    relu = edge_of_chaos("relu")
    assert relu.sigma_w2 == pytest.approx(2.0, rel=1e-14) and math.isnan(relu.q_star)
    leaky = edge_of_chaos(vp.activation("leaky_relu", negative_slope=0.1))
    assert leaky.sigma_w2 == pytest.approx(2 / 1.01, rel=1e-14)
    assert edge_of_chaos("linear").sigma_w2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="bias_variance"):
        edge_of_chaos("relu", 0.1)


def test_edge_of_chaos_sigmoid_is_consistent() -> None:
    """Sigmoid needs sigma_w^2 ~ 100 to reach chi = 1; check the point with mpmath."""
    p = edge_of_chaos("sigmoid")
    sig = lambda x: 1 / (1 + mp.exp(-x))  # noqa: E731
    q = p.q_star
    assert p.sigma_w2 * float(_gauss(lambda x: sig(x) ** 2, q)) == pytest.approx(q, rel=1e-9)
    dsig2 = _gauss(lambda x: (sig(x) * (1 - sig(x))) ** 2, q)
    assert p.sigma_w2 * float(dsig2) == pytest.approx(1.0, rel=1e-9)


def test_mean_field_chaotic_tanh_against_mpmath() -> None:
    """sigma_w^2 = 4, sigma_b^2 = 0: chaotic, c* = 0 (odd phi), chi_c = s (E sech^2)^2."""
    s = 4.0
    q = mp.findroot(lambda q: s * _gauss(lambda x: mp.tanh(x) ** 2, q) - q, 2.0)
    p = mean_field("tanh", s)
    assert p.q_star == pytest.approx(float(q), rel=1e-10)
    assert p.phase == "chaotic" and p.chi > 1 and p.c_star == pytest.approx(0.0, abs=1e-12)
    chi_c = s * _gauss(_sech2, q) ** 2
    assert p.chi_c == pytest.approx(float(chi_c), rel=1e-8)
    assert p.xi_c == pytest.approx(float(-1 / mp.log(chi_c)), rel=1e-7)


def test_mean_field_ordered_depth_scale_matches_iteration() -> None:
    """Iterate the length map numerically: deviations shrink by f'(q*) per layer."""
    s, b2 = 1.5, 0.05
    p = mean_field("tanh", s, bias_variance=b2)
    assert p.phase == "ordered" and p.c_star == 1.0 and p.chi_c == p.chi
    f = lambda q: s * _gauss(lambda x: mp.tanh(x) ** 2, q) + b2  # noqa: E731
    q0 = mp.mpf(p.q_star) + mp.mpf("1e-6")
    ratio = (f(q0) - p.q_star) / (q0 - p.q_star)
    assert p.slope_q == pytest.approx(float(ratio), rel=1e-4)
    assert p.xi_c == pytest.approx(-1 / math.log(p.chi), rel=1e-12)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: mean_field("tanh", 0.0), ValueError, "sigma_w2"),
    (lambda: mean_field("tanh", 1.0, bias_variance=-1.0), ValueError, "bias_variance"),
    (lambda: edge_of_chaos("tanh", -0.5), ValueError, "bias_variance"),
    (lambda: edge_of_chaos("tanh", sigma_w2_max=-1.0), ValueError, "sigma_w2_max"),
    (lambda: edge_of_chaos("x**2 + 1"), ValueError, "activation"),
])
def test_mean_field_bad_arguments(call, exc: type, name: str) -> None:
    with pytest.raises(exc, match=name):
        call()


def test_relu_like_smooth_activations_have_no_finite_edge() -> None:
    """GELU/swish/softplus: chi -> 1 only as q* -> inf (sigma_w^2 -> 2), like ReLU."""
    with pytest.raises(ValueError, match="grows without bound"):
        edge_of_chaos("gelu")
    # at the critical gain (q* = 1) GELU's fixed point is unstable: E gelu^2 grows from q/4
    # (small q) to q/2 (large q), faster than q at q = 1
    with pytest.warns(VarpropWarning, match="unstable"):
        critical_gain("gelu")
    # ReLU above sigma_w^2 = 2: the variance grows without bound
    assert mean_field("relu", 2.5, bias_variance=0.1).phase == "unbounded"


# ----------------------------------------------------------------------------------------------
# extreme but valid values: a correct number or a varprop error, never a raw exception
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("act, target, expected", [
    # small-q expansions (hand-derived): tanh^2 = x^2 - 2x^4/3 + ... -> g^2 = 1 + 2q + ...;
    # sigmoid^2 -> 1/4, so g^2 -> 4q; erf^2 -> 4x^2/pi, so g -> sqrt(pi)/2; relu: g^2 = 2 exactly
    ("tanh", 1e-200, 1.0), ("tanh", 1e-300, 1.0), ("tanh", 5e-324, 1.0),
    ("sigmoid", 1e-200, 2e-100), ("sigmoid", 1e-300, 2e-150),
    ("erf", 1e-200, math.sqrt(math.pi) / 2), ("erf", 5e-324, math.sqrt(math.pi) / 2),
    ("relu", 1e-200, math.sqrt(2.0)), ("relu", 5e-324, math.sqrt(2.0)),
])
def test_critical_gain_at_tiny_target_variance(act, target, expected):
    assert critical_gain(act, target_variance=target) == pytest.approx(expected, rel=1e-12)


def test_critical_gain_tiny_target_agrees_across_the_scaled_branch():
    # 1e-99 takes the ordinary path, 1e-101 the scaled one: g = 2 sqrt(q) for sigmoid on both
    for q in (1e-99, 1e-101):
        assert critical_gain("sigmoid", target_variance=q) == pytest.approx(2 * math.sqrt(q),
                                                                             rel=1e-10)


_EXTREMES = [0, 0.0, -1.0, 1e-200, 1e300, 1e308, math.nan, math.inf, -math.inf, True, 10**400,
             -(10**400), "1"]


@pytest.mark.parametrize("value", _EXTREMES, ids=repr)
def test_extreme_values_give_a_number_or_a_varprop_error(value):
    calls = [
        lambda: critical_gain("tanh", target_variance=value),
        lambda: critical_gain("tanh", bias_variance=value),
        lambda: edge_of_chaos("tanh", sigma_w2_max=value),
        lambda: edge_of_chaos("tanh", bias_variance=value),
        lambda: mean_field("tanh", value),
    ]
    for call in calls:
        try:
            result = call()
        except VarpropError:
            continue
        number = result if isinstance(result, float) else result.sigma_w2
        assert math.isfinite(number) and number > 0


def test_edge_of_chaos_below_the_old_search_start():
    # sigma_w2_max=1e-5 used to raise numpy's "Number of samples, -15, must be non-negative"
    with pytest.raises(VarpropError, match=r"\[1e-08, 1e-05\]"):
        edge_of_chaos("tanh", sigma_w2_max=1e-5)
    # a steep activation whose edge of chaos lies below 1e-3: sigma_w^2 = 1/100^2
    point = edge_of_chaos("100*x", sigma_w2_max=1e-2)
    assert point.sigma_w2 == pytest.approx(1e-4, rel=1e-9)
    # the top end near the float maximum (was OverflowError in the sample count)
    assert edge_of_chaos("tanh", sigma_w2_max=1e308).sigma_w2 == pytest.approx(1.0, rel=1e-9)
