"""Symbolic derivations (varprop.theory.symbolic): every formula against a hand derivation written here.

Expected values are typed in from the textbook derivations (Glorot & Bengio 2010, He et al. 2015,
Williams 1997, Poole et al. 2016), never read back from the code under test; numeric cross-checks
use mpmath quadrature, the activations' own quadrature and ``varprop.theory.predict``.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from varprop import activation, init_scheme
from varprop.components.activations import Q, activation_names
from varprop.components.schemes import scheme_names
from varprop.errors import InvalidArgument, InvalidArgumentType
from varprop.theory.symbolic import SECTIONS, SYMBOL_TABLE, Derivation, derive
from varprop.theory.symbolic.symbols import (
    C_PREV,
    D_PREV,
    DEPTH,
    N_IN,
    N_OUT,
    Q0,
    Q_PREV,
    Q_SEQ,
    SIGMA_B2,
    WIDTH,
)

n_in, n_out, L, q0, sb = N_IN, N_OUT, DEPTH, Q0, SIGMA_B2


def same(a, b) -> bool:
    """Symbolic identity, checked with ``simplify(a - b) == 0``."""
    return sp.simplify(sp.sympify(a) - sp.sympify(b)) == 0


# ------------------------------------------------------------------------------------------------
# the issue's hand-derived closed forms
# ------------------------------------------------------------------------------------------------

def test_he_relu_preserves_variance_after_first_layer():
    d = derive("relu", "he_normal", bias=False)
    # q_1 = n_in * (2/n_in) * q_0 ; q_l = n_out * (2/n_out) * q_{l-1}/2 = q_{l-1}
    assert same(d.first_layer, 2 * q0)
    assert same(d.hidden_factor, 1)
    assert same(d.forward_factor, 1)
    assert same(d.closed_form_depth, 2 * q0)
    assert same(d.step("recursion").equation.rhs, Q_PREV)
    # backward: chi = n_out (2/n_in) (1/2) for a generic layer, 1 for hidden layers
    assert same(d.backward_factor, n_out / n_in)
    assert same(d.gradient_depth, 2 * n_out / n_in)
    assert d.fixed_point == 0 and d.is_stable is True
    assert d.exact and d.exact_at_finite_width and d.homogeneous


def test_he_relu_with_bias_grows_linearly():
    d = derive("relu", "he_normal")
    assert same(d.closed_form_depth, 2 * q0 + sb + (L - 1) * sb)
    assert d.fixed_point is None  # q_l = q_{l-1} + sigma_b^2 has no fixed point


def test_lecun_linear_factor_one():
    d = derive("linear", "lecun_normal", bias=False)
    assert same(d.forward_factor, 1)
    assert same(d.backward_factor, n_out / n_in)  # n_out * (1/n_in) * 1
    assert same(d.closed_form_depth, q0)
    assert same(derive("linear", "lecun_uniform").forward_factor, 1)


@pytest.mark.parametrize("name", ["xavier_normal", "xavier_uniform", "glorot_uniform"])
def test_xavier_forward_and_backward_factors(name):
    d = derive("linear", name)
    assert same(d.forward_factor, 2 * n_in / (n_in + n_out))
    assert same(d.backward_factor, 2 * n_out / (n_in + n_out))
    assert same(d.hidden_factor, 1)  # square hidden layers are preserved


def test_xavier_gain():
    d = derive("linear", init_scheme("xavier_normal", gain=2.0))
    assert same(d.forward_factor, 8 * n_in / (n_in + n_out))


def test_torch_linear_default_one_third():
    assert same(derive("linear", "torch_linear_default").forward_factor, sp.Rational(1, 3))
    # ReLU loses a factor 6 per layer
    d = derive("relu", "torch_linear_default", bias=False)
    assert same(d.hidden_factor, sp.Rational(1, 6))
    assert same(d.closed_form_depth, q0 / 3 * sp.Rational(1, 6) ** (L - 1))


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.5])
@pytest.mark.parametrize("scheme", ["he_normal", "lecun_normal", "xavier_uniform", "standard_normal"])
def test_leaky_relu_factor(slope, scheme):
    a = sp.Rational(repr(slope))
    s = init_scheme(scheme)
    d = derive(activation("leaky_relu", negative_slope=slope), s)
    sigma_w2 = s.weight_variance(n_in, n_out)
    assert same(d.forward_factor, (1 + a**2) / 2 * n_in * sigma_w2)
    assert same(d.backward_factor, (1 + a**2) / 2 * n_out * sigma_w2)
    assert not d.forward_factor.atoms(sp.Float), "exact numbers must stay exact"


def test_he_with_matching_slope_preserves_leaky_relu():
    d = derive(activation("leaky_relu", negative_slope=0.2), init_scheme("he_normal", negative_slope=0.2))
    assert same(d.forward_factor, 1) and same(d.backward_factor, n_out / n_in)


def test_orthogonal_uses_max_of_fans():
    d = derive("linear", "orthogonal")
    assert same(d.forward_factor, n_in / sp.Max(n_in, n_out))
    assert d.forward_factor.subs({n_in: 3, n_out: 5}) == sp.Rational(3, 5)
    assert d.forward_factor.subs({n_in: 5, n_out: 3}) == 1
    assert same(derive("linear", init_scheme("orthogonal", gain=2.0)).hidden_factor, 4)


def test_truncated_normal_erf_factor():
    d = derive("linear", "truncated_normal")
    # Var of N(0,1) truncated to [-2, 2]: 1 - 2*2*pdf(2)/(2*Phi(2)-1), by mpmath
    b = mpmath.mpf(2)
    factor = 1 - 2 * b * mpmath.npdf(b) / (2 * mpmath.ncdf(b) - 1)
    value = d.forward_factor.subs(n_in, 7)
    assert abs(float(value) - 7 * float(factor)) < 1e-13
    assert d.forward_factor.has(sp.erf)  # exact, not a float


def test_closed_form_depth_is_product_of_factors():
    # q_L = q_1 * c^(L-1) with q_1 = n_in sigma_w^2(n_in, n_out) q_0, c = n_out sigma_w^2(n_out, n_out) k
    ks = {"linear": 1, "relu": sp.Rational(1, 2),
          "leaky_relu": (1 + sp.Rational(1, 100) ** 2) / 2}
    for act, k in ks.items():
        for scheme in ("lecun_normal", "he_uniform", "xavier_normal", "standard_normal", "orthogonal"):
            s = init_scheme(scheme)
            d = derive(act, s, bias=False)
            c = n_out * s.weight_variance(n_out, n_out) * k
            q1 = n_in * s.weight_variance(n_in, n_out) * q0
            assert same(d.closed_form_depth, q1 * c ** (L - 1)), (act, scheme)
            # and the recursion itself, iterated three layers by hand
            q = q1
            for depth in (1, 2, 3):
                assert same(d.closed_form_depth.subs(L, depth), q), (act, scheme, depth)
                q = c * q


def test_closed_form_with_bias_solves_the_recursion():
    d = derive("relu", "lecun_normal")
    qf = sp.Function("q")
    l = sp.Symbol("l", integer=True, positive=True)
    c = sp.Rational(1, 2)  # n_out * (1/n_out) * 1/2
    sol = sp.rsolve(qf(l) - c * qf(l - 1) - sb, qf(l), {qf(1): n_in * q0 / n_in + sb})
    assert same(d.closed_form_depth, sol.subs(l, L))
    assert same(d.fixed_point, 2 * sb)  # sigma_b^2 / (1 - 1/2)
    assert d.is_stable is True


def test_closed_form_with_bias_symbolic_factor_is_piecewise():
    d = derive("linear", "standard_normal")  # c = n_out, which could be 1
    expr = d.closed_form_depth
    assert isinstance(expr, sp.Piecewise)
    for depth in (1, 2, 3):
        q = n_in * q0 + sb
        for _ in range(depth - 1):
            q = n_out * q + sb
        assert same(expr.subs(L, depth).subs(n_out, 4), q.subs(n_out, 4))
        assert same(expr.subs(n_out, 1).subs(L, depth), q.subs(n_out, 1))


def test_general_widths_products():
    d = derive("relu", "he_normal", widths="general", bias=False)
    three = d.closed_form_depth.subs(L, 3).doit()
    ws = {WIDTH[0]: 4, WIDTH[1]: 7, WIDTH[2]: 5, WIDTH[3]: 9}
    # He + ReLU: q_1 = 2 q_0, and every later layer keeps it
    assert same(three.subs(ws), 2 * q0)
    d = derive("linear", "xavier_normal", widths="general")
    three = d.closed_form_depth.subs(L, 3).doit().subs(ws)
    c = lambda a, b: sp.Rational(2 * a, a + b)  # noqa: E731
    q1 = c(4, 7) * q0 + sb
    expected = c(5, 9) * (c(7, 5) * q1 + sb) + sb  # q_3 = c_3 (c_2 q_1 + sb) + sb
    assert same(three, expected)


# ------------------------------------------------------------------------------------------------
# non-zero weight mean: the D / C recursion of the issue
# ------------------------------------------------------------------------------------------------

def test_uniform01_linear_dc_recursion_matches_issue():
    d = derive("linear", "uniform")
    v, mu, n = sp.Rational(1, 12), sp.Rational(1, 2), n_out
    rhs = d.step("recursion").equation.rhs.doit()
    assert same(rhs[0], n * (v + mu**2) * D_PREV + n * (n - 1) * mu**2 * C_PREV + sb)
    assert same(rhs[1], mu**2 * (n * D_PREV + n * (n - 1) * C_PREV))
    first = d.first_layer
    assert same(first[0], n_in * (v + mu**2) * q0 + sb) and same(first[1], mu**2 * n_in * q0)
    assert d.zero_mean is False and d.exact_at_finite_width


@pytest.mark.parametrize("bias", [False, True])
def test_uniform01_linear_closed_form_over_depth(bias):
    d = derive("linear", "uniform", bias=bias)
    vals = {n_in: 3, n_out: 5, q0: sp.Rational(7, 5), sb: sp.Rational(1, 10) if bias else 0}
    v, mu = sp.Rational(1, 12), sp.Rational(1, 2)
    D, C = 3 * (v + mu**2) * vals[q0] + vals[sb], mu**2 * 3 * vals[q0]
    for depth in range(1, 6):
        got = d.closed_form_depth.subs(vals).subs(L, depth)
        assert abs(float(got) / float(D) - 1) < 1e-12, depth
        n = 5
        D, C = n * (v + mu**2) * D + n * (n - 1) * mu**2 * C + vals[sb], mu**2 * (n * D + n * (n - 1) * C)


def test_uniform01_growth_rate_is_largest_eigenvalue():
    d = derive("linear", "uniform")
    v, mu, n = 1 / 12, 0.5, 512
    M = np.array([[n * (v + mu**2), n * (n - 1) * mu**2], [n * mu**2, n * (n - 1) * mu**2]])
    assert abs(float(d.forward_factor.subs(n_in, 512)) / max(np.linalg.eigvals(M).real) - 1) < 1e-12


def test_nonzero_mean_nonlinear_dc_recursion_matches_issue():
    d = derive("relu", "uniform")
    A_D, A_C, A_m = (sp.Symbol(n, **kw) for n, kw in (("A_D", {"nonnegative": True}),
                                                     ("A_C", {"real": True}), ("A_m", {"real": True})))
    v, mu, n = sp.Rational(1, 12), sp.Rational(1, 2), n_out
    m_new, D_new, C_new = d.step("recursion").equation.rhs
    assert same(D_new, v * n * A_D + mu**2 * (n * A_D + n * (n - 1) * A_C) + sb)
    assert same(C_new, mu**2 * (n * A_D + n * (n - 1) * A_C))
    assert same(m_new, mu * n * A_m)
    # the moments are conditional on the layer-1 shift u and averaged over it (not a jointly
    # Gaussian closure, which is wrong from layer 3 on)
    u, xi = sp.Symbol("u", real=True), sp.Symbol("xi", real=True)
    second = d.step("moment.second").equation.rhs
    assert {tuple(i.variables) for i in second.atoms(sp.Integral)} == {(u,), (xi,)}
    first = d.step("shift.first_within").equation.rhs  # q_0 (n_in - 1 + u^2) / 12 + sigma_b^2
    assert same(first, q0 * (n_in - 1 + u**2) / 12 + sb)
    s_next, r_next = d.step("shift.recursion").equation.rhs
    (inner,) = s_next.atoms(sp.Integral)
    assert same(s_next / inner, n_out / 2) and tuple(inner.variables) == (xi,)  # mu_w n_out E_xi[relu]
    assert same((r_next - sb) / r_next.atoms(sp.Integral).pop(), n_out / 12)  # sigma_w^2 n_out E_xi[relu^2]


def test_he_fan_out_preserves_the_backward_pass():
    d = derive("relu", init_scheme("he_normal", mode="fan_out"))
    assert same(d.backward_factor, 1) and same(d.forward_factor, n_in / n_out)


def test_nonzero_mean_relu_states_quadrature():
    d = derive("relu", "uniform")
    step = d.step("moment.cross")
    assert "quadrature" in step.statement and isinstance(step.equation.rhs, sp.Integral)
    assert d.numeric_plan["kind"] == "shifted"
    assert d.closed_form_depth is None and not d.exact
    assert d.step("second_moment").equation.rhs.has(sp.Symbol("A_C", real=True))


# ------------------------------------------------------------------------------------------------
# activation moments
# ------------------------------------------------------------------------------------------------

def test_erf_second_moment_is_arcsine_kernel():
    d = derive("erf", "lecun_normal")
    assert same(d.step("moment.second").equation.rhs, 2 / sp.pi * sp.asin(2 * Q / (1 + 2 * Q)))
    assert same(d.step("moment.deriv_second").equation.rhs, 4 / (sp.pi * sp.sqrt(1 + 4 * Q)))
    for q in (0.05, 0.7, 9.0):  # against mpmath quadrature
        ref = mpmath.quad(lambda t: mpmath.erf(mpmath.sqrt(q) * t) ** 2 * mpmath.npdf(t), [-mpmath.inf, 0, mpmath.inf])
        got = d.step("moment.second").equation.rhs.subs(Q, q)
        assert abs(float(got) - float(ref)) < 1e-13


def test_tanh_states_the_approximation():
    d = derive("tanh", "xavier_normal")
    step = d.step("moment.second")
    assert "APPROXIMATION" in step.justification and "erf(sqrt(pi) x / 2)" in step.justification
    assert not d.exact
    assert any("approximation" in a for a in d.assumptions)
    assert "APPROXIMATION" in d.to_markdown() and "APPROXIMATION" in d.to_latex()
    # small-signal series: E tanh(z)^2 = q - 2 q^2 + O(q^3) (tanh x = x - x^3/3 + ...)
    series = d.step("moment.series").equation.rhs
    assert same(series.removeO(), Q - 2 * Q**2)


def test_sigmoid_uses_second_moment_not_variance():
    d = derive("sigmoid", "lecun_normal")
    second = d.step("moment.second").equation.rhs
    assert same(second.subs(Q, 0), sp.Rational(1, 4))  # E sigma(0)^2 = 1/4
    var = d.step("activation_variance").equation.rhs
    assert same(second - var, sp.Rational(1, 4))  # (E sigma)^2 = 1/4
    assert d.fixed_point is None and d.fixed_point_equation is not None


@pytest.mark.parametrize("name,q", [("relu", 0.3), ("relu", 4.0), ("leaky_relu", 2.5), ("erf", 1.7), ("linear", 2.0)])
def test_exact_moments_against_quadrature(name, q):
    act = activation(name)
    d = derive(act, "lecun_normal")
    ref = act.gaussian_moments(0.0, q, method="quadrature")
    got = [float(d.step(k).equation.rhs.subs(Q, q)) for k in ("moment.mean", "moment.second", "moment.deriv_second")]
    np.testing.assert_allclose(got, [ref[0], ref[1], ref[3]], rtol=1e-9, atol=1e-12)


def test_tanh_closed_form_within_declared_error():
    act = activation("tanh")
    d = derive(act, "lecun_normal")
    for q in (0.01, 0.5, 0.8, 3.0, 50.0):
        ref = act.gaussian_moments(0.0, q, method="quadrature")[1]
        got = float(d.step("moment.second").equation.rhs.subs(Q, q))
        assert abs(got / ref - 1) <= 0.062


# ------------------------------------------------------------------------------------------------
# fixed points and stability
# ------------------------------------------------------------------------------------------------

def test_tanh_fixed_point_and_critical_condition():
    d = derive("tanh", "lecun_normal", bias=False)
    assert d.fixed_point == 0
    # chi(0) = n_out * (1/n_out) * tanh'(0)^2 = 1: critical
    assert same(d.step("stability").equation.rhs, 1) and d.is_stable is True
    d = derive("tanh", "standard_normal", bias=False)
    assert same(d.step("stability").equation.rhs, n_out)
    d = derive("erf", "lecun_normal", bias=False)
    assert same(d.step("stability").equation.rhs, 4 / sp.pi) and d.is_stable is False


def test_fixed_point_satisfies_its_equation():
    for act, scheme in (("relu", "lecun_normal"), ("linear", "torch_linear_default"),
                        ("leaky_relu", "xavier_normal")):
        d = derive(act, scheme)
        eq = d.fixed_point_equation
        star = eq.lhs
        assert same(eq.rhs.subs(star, d.fixed_point), d.fixed_point)


def test_relu_factor_one_every_q_fixed():
    d = derive("relu", "he_uniform", bias=False)
    assert "every q is a fixed point" in d.step("fixed_point").statement


# ------------------------------------------------------------------------------------------------
# agreement with varprop.theory.predict
# ------------------------------------------------------------------------------------------------

predict = pytest.importorskip("varprop.theory.predict")

CONFIGS = [
    ("relu", "he_normal", 40, 70, 5, 1.3, 0.0),
    ("relu", "lecun_uniform", 40, 70, 5, 0.7, 0.2),
    ("leaky_relu", "xavier_normal", 10, 30, 4, 1.0, 0.1),
    ("linear", "torch_linear_default", 16, 16, 6, 2.0, 0.05),
    ("linear", "xavier_uniform", 20, 60, 3, 1.0, 0.0),
    ("tanh", "xavier_normal", 30, 50, 6, 1.3, 0.1),
    ("sigmoid", "lecun_normal", 30, 50, 4, 1.0, 0.0),
    ("erf", "orthogonal", 30, 20, 4, 1.0, 0.3),
    ("tanh", "truncated_normal", 4, 3, 3, 0.5, 0.0),
]


def _lambdified(d: Derivation):
    return sp.lambdify((Q, n_in, n_out, sb), d.forward_map, modules="mpmath")


@pytest.mark.parametrize("act,scheme,fan_in,fan_out,depth,q_in,b", CONFIGS)
def test_recursion_agrees_with_predict(act, scheme, fan_in, fan_out, depth, q_in, b):
    d = derive(act, scheme)
    first = sp.lambdify((q0, n_in, n_out, sb), d.first_layer)
    f = _lambdified(d)
    qs = [float(first(q_in, fan_in, fan_out, b))]
    for _ in range(depth - 1):
        qs.append(float(f(qs[-1], fan_out, fan_out, b)))
    pred = predict.predict_variance(act, scheme, fan_in=fan_in, fan_out=fan_out, depth=depth,
                                    input_variance=q_in, bias_variance=b, quantity="preactivation",
                                    method="closed_form", per_layer=True)
    np.testing.assert_allclose(qs, pred, rtol=1e-12)
    if d.closed_form_depth is not None:
        closed = sp.lambdify((q0, n_in, n_out, sb, L), d.closed_form_depth)
        assert abs(closed(q_in, fan_in, fan_out, b, depth) / pred[-1] - 1) < 1e-12
    grad = predict.predict_variance(act, scheme, fan_in=fan_in, fan_out=fan_out, depth=depth,
                                    input_variance=q_in, bias_variance=b, quantity="gradient",
                                    method="closed_form")
    if d.homogeneous:
        g = sp.lambdify((n_in, n_out, L), d.gradient_depth)(fan_in, fan_out, depth)
    else:  # the product over layers of chi_l, each at its layer's q_{l-1}
        expr = d.gradient_depth.subs({L: depth, n_in: fan_in, n_out: fan_out}).doit()
        g = float(expr.subs({Q_SEQ[i]: qs[i - 1] for i in range(1, depth)}))
        # and by hand: n_out sigma_w^2(n_in, n_out) times chi of the hidden layers
        chi = sp.lambdify((Q, n_in, n_out), d.backward_factor)
        s = init_scheme(scheme)
        hand = fan_out * float(s.weight_variance(fan_in, fan_out))
        for q in qs[:-1]:
            hand *= float(chi(q, fan_out, fan_out))
        assert abs(hand / g - 1) < 1e-12
    assert abs(g / grad - 1) < 1e-12


@pytest.mark.parametrize("act,scheme,bias", [("linear", "uniform", 0.1), ("linear", init_scheme("normal", std=0.3, mean=0.05), 0.0)])
def test_dc_closed_form_agrees_with_predict(act, scheme, bias):
    d = derive(act, scheme)
    closed = sp.lambdify((q0, n_in, n_out, sb, L), d.closed_form_depth)
    grad = sp.lambdify((n_in, n_out, L), d.gradient_depth)
    for depth in (1, 3, 6):
        pred = predict.predict_variance(act, scheme, fan_in=7, fan_out=9, depth=depth,
                                        bias_variance=bias, quantity="preactivation")
        assert abs(closed(1.0, 7, 9, bias, depth) / pred - 1) < 1e-10
        g = predict.predict_variance(act, scheme, fan_in=7, fan_out=9, depth=depth, quantity="gradient")
        assert abs(grad(7, 9, depth) / g - 1) < 1e-10


@given(act=st.sampled_from(["linear", "relu", "leaky_relu"]),
       scheme=st.sampled_from(["he_normal", "lecun_uniform", "xavier_normal", "orthogonal", "torch_linear_default"]),
       fan_in=st.integers(1, 500), fan_out=st.integers(1, 500), depth=st.integers(1, 40),
       q_in=st.floats(0.01, 100.0), b=st.sampled_from([0.0, 0.05, 1.0]))
def test_closed_form_depth_property(act, scheme, fan_in, fan_out, depth, q_in, b):
    d = derive(act, scheme)
    closed = _closed_fn(d)
    pred = predict.predict_variance(act, scheme, fan_in=fan_in, fan_out=fan_out, depth=depth,
                                    input_variance=q_in, bias_variance=b, quantity="preactivation")
    assert math.isclose(closed(q_in, fan_in, fan_out, b, depth), pred, rel_tol=1e-9)


_CLOSED: dict = {}


def _closed_fn(d: Derivation):
    if id(d) not in _CLOSED:
        _CLOSED[id(d)] = sp.lambdify((q0, n_in, n_out, sb, L), d.closed_form_depth,
                                     modules=[{"Max": max}, "math"])
    return _CLOSED[id(d)]


def test_evaluate_agrees_with_propagate():
    for act, scheme, kw in (("tanh", "he_normal", dict(widths=[5, 9, 4, 7], bias_variance=0.1)),
                            ("relu", "uniform", dict(fan_in=5, fan_out=6, depth=3))):
        d = derive(act, scheme)
        got = d.evaluate(**kw)
        prop = predict.propagate(act, scheme, method="closed_form" if d.zero_mean else "exact", **kw)
        for key in ("preact_second", "act_second", "grad_second", "delta_second"):
            np.testing.assert_allclose(got[key], getattr(prop, key), rtol=1e-10)


# ------------------------------------------------------------------------------------------------
# every activation x every scheme; rendering
# ------------------------------------------------------------------------------------------------

def _balanced(text: str) -> bool:
    depth = 0
    for i, ch in enumerate(text):
        if ch in "{}" and i > 0 and text[i - 1] == "\\":
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


@pytest.mark.parametrize("act", activation_names())
def test_every_scheme_derives_and_renders(act):
    for scheme in scheme_names():
        d = derive(act, scheme)
        assert d.steps and d.assumptions and d.symbols
        md, tex = d.to_markdown(), d.to_latex()
        assert md.count("$$") == 2 * len(d.steps)
        assert sp.latex(d.forward_factor, symbol_names={i.symbol: i.latex for i in SYMBOL_TABLE}) in md
        assert d.step("weight_variance").latex in md and d.step("weight_variance").latex in tex
        assert "$$" not in tex and "**" not in tex and "#" not in tex.replace(r"\#", "")
        assert "`" not in tex and _balanced(tex), (act, scheme)
        for key in ("forward_factor", "backward_factor"):
            value = getattr(d, key)
            assert not value.atoms(sp.Float), (act, scheme, key)


def test_markdown_layout():
    d = derive("tanh", "xavier_normal")
    md = d.to_markdown()
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings[0] == "# Variance propagation: tanh() with xavier_normal(gain=1.0)"
    assert "## Model and assumptions" in headings and "## Symbols" in headings and "## Summary" in headings
    for heading in ("Weights", "Forward pass", "Activation moments", "Layer recursion", "Backward pass"):
        assert f"## {heading}" in headings
    steps = [h for h in headings if h.startswith("### Step")]
    assert len(steps) == len(d.steps) and steps[0].startswith("### Step 1: ")
    assert d.to_markdown(level=2).startswith("## ")
    doc = d.to_latex(document=True)
    assert doc.startswith("\\documentclass") and doc.rstrip().endswith("\\end{document}")
    assert set(SECTIONS) >= {s.section for s in d.steps}


def test_symbols_documented():
    import pathlib

    text = (pathlib.Path(__file__).parent.parent / "docs" / "symbols.md").read_text()
    for info in SYMBOL_TABLE:
        assert info.latex in text and info.meaning in text
    d = derive("relu", "he_normal")
    assert {i.symbol for i in d.symbols} >= {N_IN, N_OUT, Q0}
    assert all(i.meaning and i.code for i in SYMBOL_TABLE)


def test_names_and_objects_and_cache():
    a = derive("relu", "kaiming_normal")
    b = derive(activation("relu"), init_scheme("he_normal"))
    assert a is b
    assert derive("relu", "he_normal", bias=False) is not a
    assert "he_normal" in repr(a)
    with pytest.raises(KeyError, match="recursion"):
        a.step("nope")


def test_no_sympy_stats_at_run_time():
    import pathlib

    import varprop.theory.symbolic

    for path in pathlib.Path(varprop.theory.symbolic.__file__).parent.glob("*.py"):
        assert "sympy.stats" not in path.read_text() and "integrate(" not in path.read_text(), path


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,name", [
    (dict(activation=3, init="he_normal"), InvalidArgumentType, "activation"),
    (dict(activation="relu", init=2.0), InvalidArgumentType, "init"),
    (dict(activation="relu", init="he_norml"), InvalidArgument, "did you mean"),
    (dict(activation="relu", init="he_normal", bias=1), InvalidArgumentType, "bias"),
    (dict(activation="relu", init="he_normal", widths="varying"), InvalidArgument, "widths"),
])
def test_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        derive(**kwargs)


def test_bad_render_and_evaluate_arguments():
    d = derive("relu", "he_normal", bias=False)
    with pytest.raises(InvalidArgument, match="level"):
        d.to_markdown(level=0)
    with pytest.raises(InvalidArgument, match="bias_variance"):
        d.evaluate(fan_in=3, bias_variance=0.5)
    with pytest.raises(InvalidArgument, match="input_variance"):
        derive("relu", "he_normal").evaluate(fan_in=3, input_variance=-1.0)
    with pytest.raises((InvalidArgument, InvalidArgumentType), match="fan_in"):
        d.evaluate(fan_in=0)
