"""Tests for custom activations (varprop.components.expressions): safe parsing, suggestions, numerics, moments.

References: mpmath quadrature at 30 digits of the hand-written function (not the parsed one),
hand-written derivatives, and SymPy integration of polynomials times the Gaussian density.
"""

from __future__ import annotations

import math
import os

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

import varprop as vp
from varprop.components.activations import MU, Q, X, parse_activation
from varprop.components.expressions import FUNCTIONS, parse_expression

mp.mp.dps = 20


def _sig(x):
    return 1 / (1 + mp.exp(-x))


# name -> (expression text, phi, phi') written independently with mpmath
CASES = {
    "swish": ("x*sigmoid(x)", lambda x: x * _sig(x),
              lambda x: _sig(x) + x * _sig(x) * (1 - _sig(x))),
    "softplus": ("log(1 + exp(x))", lambda x: mp.log(1 + mp.exp(x)), _sig),
    "xerf": ("x*erf(x)", lambda x: x * mp.erf(x),
             lambda x: mp.erf(x) + x * 2 / mp.sqrt(mp.pi) * mp.exp(-x * x)),
    "gelu": ("gelu", lambda x: x * mp.ncdf(x), lambda x: mp.ncdf(x) + x * mp.npdf(x)),
    "elu": ("elu(x)", lambda x: x if x > 0 else mp.exp(x) - 1, lambda x: 1 if x > 0 else mp.exp(x)),
    "shifted_abs": ("abs(x - 1) / 2", lambda x: abs(x - 1) / 2, lambda x: mp.sign(x - 1) / 2),
}


def _expect(f, mu, q):
    s = mp.sqrt(q)
    g = lambda t: f(mu + s * t) * mp.npdf(t)  # noqa: E731
    points = sorted({-mp.inf, mp.inf, 0, (1 - mu) / s, -mu / s})
    return mp.quad(g, points)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mu, q", [(0.0, 0.3), (0.5, 4.0), (-1.0, 0.05)])
def test_moments_against_mpmath(case: str, mu: float, q: float) -> None:
    text, f, d = CASES[case]
    act = vp.activation(text)
    got = act.gaussian_moments(mu, q)
    want = [_expect(f, mu, q), _expect(lambda x: f(x) ** 2, mu, q),
            _expect(d, mu, q), _expect(lambda x: d(x) ** 2, mu, q)]
    for g, w in zip(got, want):
        assert g == pytest.approx(float(w), rel=2e-9, abs=1e-12), case


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_function_and_derivative(case: str) -> None:
    text, f, d = CASES[case]
    act = vp.activation(text)
    xs = np.array([-7.3, -2.0, -0.4, 0.3, 1.7, 5.5])
    assert np.allclose(act.function(xs), [float(f(mp.mpf(x))) for x in xs], rtol=1e-12, atol=1e-15)
    assert np.allclose(act.derivative_function(xs), [float(d(mp.mpf(x))) for x in xs],
                       rtol=1e-11, atol=1e-15)
    # float32 in -> float32 out, finite far out (no exp overflow artefacts)
    big = np.array([-1e4, -100.0, 100.0, 1e4], dtype=np.float32)
    assert act.function(big).dtype == np.float32
    assert np.all(np.isfinite(act.function(big))) and np.all(np.isfinite(act.derivative_function(big)))


def test_symbolic_derivative() -> None:
    act = vp.activation("x*sigmoid(x)")
    s = 1 / (1 + sp.exp(-X))
    assert sp.simplify(act.derivative - (s + X * s * (1 - s))) == 0
    assert sp.simplify(vp.activation("log(1 + exp(x))").derivative - s) == 0


_U = sp.Symbol("u", real=True)
_MONOMIAL = {k: sp.integrate(_U**k * sp.exp(-(_U**2) / 2), (_U, -sp.oo, sp.oo)) / sp.sqrt(2 * sp.pi)
             for k in range(7)}


def test_polynomial_closed_forms_against_sympy_integration() -> None:
    act = vp.activation("x**3 - 2*x + 1")
    assert act.closed_form is not None and act.closed_form.exact
    t, u = sp.symbols("t u", real=True)
    mu, q = sp.Rational(1, 3), sp.Rational(5, 2)
    # z = mu + sqrt(q) u, u ~ N(0, 1)
    phi = t**3 - 2 * t + 1
    for name, integrand in (("mean", phi), ("second", phi**2), ("deriv_mean", sp.diff(phi, t)),
                            ("deriv_second", sp.diff(phi, t) ** 2)):
        shifted = sp.Poly(sp.expand(integrand.subs(t, mu + sp.sqrt(q) * u)), u)
        # integrate monomial by monomial (SymPy's integrate of u^k e^{-u^2/2})
        exact = sum(c * _MONOMIAL[k] for (k,), c in shifted.terms())
        rule = getattr(act.closed_form, name).subs({MU: mu, Q: q})
        assert sp.simplify(rule - exact) == 0, name
    # the closed form is what method="exact" uses, and quadrature agrees with it
    assert act.gaussian_moments(0.2, 0.7, method="exact") == pytest.approx(
        act.gaussian_moments(0.2, 0.7, method="quadrature"), rel=1e-11)


def test_registered_expressions_return_registered_activations() -> None:
    assert vp.activation("tanh(x)") is vp.activation("tanh")
    assert vp.activation("max(x, 0)") == vp.activation("relu")
    assert vp.activation("relu(x)").closed_form.exact
    assert vp.activation("sigmoid(x)") == vp.activation("sigmoid")
    assert vp.activation("erf(x)") == vp.activation("erf")


def test_names_cache_and_bare_functions() -> None:
    a = vp.activation("x*tanh( x )")
    assert a.name == "x * tanh(x)" and a.params == {}
    assert vp.activation("x*tanh( x )") is a  # cached on the text
    # an expression equal to a registered activation's is that activation
    assert vp.activation("x*sigmoid( x )") == vp.activation("silu")
    assert vp.activation("softplus").name == "softplus"
    assert vp.activation("log(1 + exp(x))") == vp.activation("softplus")
    assert repr(vp.activation("x*erf(x)")) == "x * erf(x)"
    # works wherever an activation is taken
    q = vp.predict_variance("x*erf(x)", "lecun_normal", fan_in=50, depth=2,
                            quantity="preactivation", per_layer=True)
    e2 = _expect(lambda x: (x * mp.erf(x)) ** 2, 0, 1)
    assert q[1] == pytest.approx(float(e2), rel=1e-9)


def test_kinks_are_detected() -> None:
    assert vp.activation("abs(x - 1)").kinks == (1.0,)
    assert vp.activation("max(x, 2*x - 3)").kinks == (3.0,)
    assert vp.activation("relu(x**2 - 4) + x").kinks == (-2.0, 2.0)
    assert vp.activation("x*tanh(x)").kinks == ()


# ---------------------------------------------------------------------------------------------
# safety
# ---------------------------------------------------------------------------------------------

INJECTIONS = [
    "__import__('os').system('touch /tmp/varprop_pwned')",
    "__import__('os')",
    "x.__class__",
    "x.__class__.__mro__[-1].__subclasses__()",
    "lambda x: x",
    "x[0]",
    "os.system('ls')",
    "exec('import os')",
    "eval('1')",
    "open('/etc/passwd')",
    "getattr(x, 'real')",
    "[x for x in ()]",
    "x if x > 0 else 0",
    "(x := 1)",
    "'x'",
    "b'x'",
    "x == 1",
    "x and 1",
    "exp(x=1)",
    "exp(*x)",
    "f'{x}'",
    "x; import os",
    "x**10**10**10",
    "1e400*x",
    "True*x",
    "(1j)*x",
    "tanh.__call__(x)",
    "sympy.exp(x)",
    "E.__class__",
    "x @ x",
    "x // 2",
    "x % 2",
    "~x",
    "not x",
    "x" * 600,
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_strings_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="activation"):
        vp.activation(text)
    assert not os.path.exists("/tmp/varprop_pwned")


def test_parser_never_calls_sympify(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("sympify/parse_expr must not be used on user text")

    monkeypatch.setattr(sp, "sympify", forbidden)
    monkeypatch.setattr(sp.parsing.sympy_parser, "parse_expr", forbidden)
    expr, text = parse_expression("cosh(x)/2 + pi*x - e")
    assert sp.simplify(expr - (sp.cosh(X) / 2 + sp.pi * X - sp.E)) == 0
    assert text == "cosh(x) / 2 + pi * x - e"


@pytest.mark.parametrize("typo, suggestion", [("rleu", "relu"), ("tanhh", "tanh"),
                                              ("sigmod", "sigmoid"), ("tanhh(x)", "tanh"),
                                              ("softpluss", "softplus"), ("x*sigmoud(x)", "sigmoid"),
                                              ("lienar", "linear")])
def test_typos_get_suggestions(typo: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match=f"did you mean '{suggestion}'"):
        vp.activation(typo)


@pytest.mark.parametrize("text, why", [
    ("y*x", "unknown name"),
    ("2", "depends on x"),
    ("pi", "depends on x"),
    ("log(x)", "finite"),
    ("1/x", "finite"),
    ("sqrt(x)", "finite"),
    ("sqrt(abs(x))", "derivative"),
    ("x/0", "division by zero"),
    ("max(x)", "takes 2"),
    ("", "non-empty"),
    ("x +", "parse"),
    ("-" * 490 + "x", "less deeply nested"),  # used to escape as RecursionError from ast.unparse
])
def test_invalid_expressions(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        vp.activation(text)


def test_non_string_and_params() -> None:
    with pytest.raises(TypeError, match="activation"):
        parse_activation(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="activation"):
        vp.activation("x*sigmoid(x)", negative_slope=0.1)


def test_whitelist_functions_all_work() -> None:
    for name, (nargs, _, _) in FUNCTIONS.items():
        text = f"{name}(x)" if nargs == 1 else f"{name}(x, 0)"
        if name in ("log", "sqrt"):
            text = f"{name}(1 + x**2)"
        act = vp.activation(text)
        m = act.gaussian_moments(0.0, 1.0)
        assert all(math.isfinite(v) for v in m), name


@pytest.mark.parametrize("a, q", [(1.0, 1.0), (1.0, 9.0), (1.0, 36.0), (6.0, 1.0), (1.0, 100.0)])
def test_fast_growing_activations_integrate_their_whole_mass(a: float, q: float) -> None:
    # E[exp(a z)] = exp(a^2 q / 2), E[exp(a z)^2] = exp(2 a^2 q) (lognormal moments, by hand): the
    # integrand peaks at t = 2 a sqrt(q), beyond the default |t| <= 12 window from a^2 q = 36 on
    m = vp.activation(f"exp({a}*x)").gaussian_moments(0.0, q)
    assert m[0] == pytest.approx(math.exp(a * a * q / 2), rel=1e-12)
    assert m[1] == pytest.approx(math.exp(2 * a * a * q), rel=1e-12)
    assert m[3] == pytest.approx(a * a * math.exp(2 * a * a * q), rel=1e-12)


def test_divergent_gaussian_moments_are_errors_or_inf_never_truncated() -> None:
    # E[exp(z^2)] is finite iff q < 1/2: 1/sqrt(1 - 2q); at q = 0.2 that is sqrt(5/3)
    assert vp.activation("exp(x**2)").gaussian_moments(0.0, 0.2)[0] == pytest.approx(
        math.sqrt(5 / 3), rel=1e-10)
    with pytest.raises(vp.VarpropError, match="does not converge"):
        vp.activation("exp(x**2)").gaussian_moments(0.0, 1.0)
    # a one-signed divergent integrand is +inf: E[exp(z^2/2)^2] at q = 1 diverges
    m = vp.activation("exp(x**2/8)").gaussian_moments(0.0, 2.0)  # E phi^2 = E exp(z^2/4): q/2 = 1 -> inf
    assert m[0] == pytest.approx(1 / math.sqrt(1 - 2 * 2.0 / 8), rel=1e-10) and m[1] == math.inf
