"""The framework activations (varprop.components.activations_extra): every closed form against
mpmath quadrature at 30 digits of the function written here from its definition (PyTorch's
documentation), at several (mu, q) and parameters; SELU's self-normalising fixed point; the
names and the refusals."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import varprop as vp
from varprop.errors import InvalidArgument, InvalidArgumentType

DPS = 30
with mpmath.workdps(50):  # torch.nn.SELU's documented constants, all 32 digits kept
    SELU_ALPHA = mpmath.mpf("1.6732632423543772848170429916717")
    SELU_SCALE = mpmath.mpf("1.0507009873554804934193349852946")


def _elu(alpha, gamma=1, scale=1):
    """scale * x (x > 0), scale * alpha (e^{x/gamma} - 1) below, and its derivative."""
    f = lambda x: scale * (x if x > 0 else alpha * mpmath.expm1(x / gamma))  # noqa: E731
    d = lambda x: scale * (1 if x > 0 else alpha / gamma * mpmath.exp(x / gamma))  # noqa: E731
    return f, d, (0,)


def _clip(lo, hi):
    return (lambda x: min(max(x, lo), hi), lambda x: mpmath.mpf(1 if lo < x < hi else 0), (lo, hi))


def _gelu():
    return (lambda x: x * mpmath.ncdf(x), lambda x: mpmath.ncdf(x) + x * mpmath.npdf(x), ())


# (name, parameters) -> (phi, phi', breakpoints) written from the definitions, with mpmath
REFERENCES = {
    ("elu", ()): _elu(1),
    ("elu", (("alpha", 0.5),)): _elu(mpmath.mpf("0.5")),
    ("celu", (("alpha", 0.5),)): _elu(mpmath.mpf("0.5"), mpmath.mpf("0.5")),
    ("celu", (("alpha", 2.0),)): _elu(2, 2),
    ("selu", ()): _elu(SELU_ALPHA, 1, SELU_SCALE),
    ("hardtanh", ()): _clip(-1, 1),
    ("hardtanh", (("min_val", -2.0), ("max_val", 0.5))): _clip(-2, mpmath.mpf("0.5")),
    ("relu6", ()): _clip(0, 6),
    ("gelu", ()): _gelu(),
}
#: (mu, q): moderate, small and large variances, means of both signs beyond the kinks
POINTS = [(0.0, 1.0), (0.0, 0.02), (0.0, 30.0), (0.8, 0.5), (-1.7, 2.5), (7.0, 0.3)]


def _mp_moments(f, d, kinks, mu, q, dps=DPS):
    """The four moments by mpmath.quad over mu +- 14 sd (the Gaussian tail beyond is below
    1e-43), split at mu and at the kinks."""
    with mpmath.workdps(dps):
        mu, q = mpmath.mpf(mu), mpmath.mpf(q)
        s = mpmath.sqrt(q)
        pts = sorted({mu - 14 * s, mu + 14 * s, mu} | {mpmath.mpf(k) for k in kinks
                                                        if abs(k - mu) < 14 * s})

        def expect(g):
            return mpmath.quad(lambda x: g(x) * mpmath.npdf(x, mu, s), pts)

        return [expect(f), expect(lambda x: f(x) ** 2), expect(d), expect(lambda x: d(x) ** 2)]


CASES = [(key, mu, q) for key in REFERENCES for mu, q in POINTS
         if (mu == 0.0 or key[0] != "gelu")  # gelu's closed form is stated at mu = 0
         and (key[1] == () or (mu, q) in POINTS[3:5])]  # other parameters: two points


@pytest.mark.parametrize("key, mu, q", CASES, ids=lambda v: str(v))
def test_closed_forms_match_mpmath_at_30_digits(key, mu, q):
    name, params = key
    act = vp.activation(name, **dict(params))
    assert act.closed_form is not None and act.closed_form.exact
    got = act.gaussian_moments(mu, q, method="closed_form")
    for g, r in zip(got, _mp_moments(*REFERENCES[key], mu, q)):
        assert abs(g - float(r)) <= 1e-13 * max(1.0, abs(float(r))), (key, mu, q, g, r)


@pytest.mark.parametrize("key", [("elu", ()), ("selu", ()), ("celu", (("alpha", 0.5),))])
def test_exponential_closed_forms_stay_finite_where_exp_overflows(key):
    """e^{2 mu + 2 q} Phi(-(mu + 2q)/sqrt q) at q = 900: exp overflows, the product does not."""
    act = vp.activation(key[0], **dict(key[1]))
    f, d, kinks = REFERENCES[key]
    for mu, q in [(30.0, 900.0), (-400.0, 1.0)]:
        got = act.gaussian_moments(mu, q, method="closed_form")
        ref = _mp_moments(f, d, kinks, mu, q)
        for g, r in zip(got, ref):
            assert math.isfinite(g)
            assert abs(g - float(r)) <= 1e-10 * max(1.0, abs(float(r))), (mu, q, g, r)
    smooth = act.smoothed("function")(np.array([-1e4, -50.0, 0.0, 50.0, 1e4]), 900.0)
    assert np.all(np.isfinite(smooth))


@pytest.mark.parametrize("key", [("elu", ()), ("selu", ()), ("celu", (("alpha", 0.5),))])
def test_exponential_closed_forms_keep_their_digits_as_q_goes_to_zero(key):
    """E phi^2 = O(q) comes from terms O(1): the evaluation forms avoid the cancellation
    (before, q = 1e-19 gave 0 and q = 1e-8 only 8 digits)."""
    act = vp.activation(key[0], **dict(key[1]))
    f, d, kinks = REFERENCES[key]
    for q, rel in [(1e-4, 1e-12), (1e-8, 1e-9), (1e-16, 1e-5)]:
        got = act.gaussian_moments(0.0, q, method="closed_form")
        ref = _mp_moments(f, d, kinks, 0.0, q)
        for g, r in zip(got, ref):
            assert abs(g / float(r) - 1) < rel, (key, q, g, r)


def test_gelu_closed_forms_against_hand_values_at_q_one():
    """At q = 1 the forms reduce to hand values: E phi = 1/(2 sqrt(pi)),
    E phi^2 = 1/4 + (pi/6 + 1/sqrt 3) / (2 pi), E phi' = 1/2 (arcsin(1/2) = pi/6)."""
    mean, second, dmean, _ = vp.activation("gelu").gaussian_moments(0.0, 1.0, method="closed_form")
    assert mean == pytest.approx(1 / (2 * math.sqrt(math.pi)), rel=1e-15)
    assert second == pytest.approx(0.25 + (math.pi / 6 + 1 / math.sqrt(3)) / (2 * math.pi),
                                   rel=1e-15)
    assert dmean == 0.5


def test_selu_fixed_point():
    """E selu(z) = 0 and E selu(z)^2 = 1 for z ~ N(0, 1): with the 32-digit constants mpmath
    gives |E phi| = 1.2e-32 and |E phi^2 - 1| = 1.4e-32; the float closed form is within 1e-15.
    Under lecun_normal (sigma_w^2 = 1/n) q = 1 is then the fixed point of the variance map."""
    f, d, kinks = REFERENCES[("selu", ())]
    with mpmath.workdps(40):
        ref = _mp_moments(f, d, kinks, 0.0, 1.0)
        assert abs(ref[0]) < mpmath.mpf(10) ** -30 and abs(ref[1] - 1) < mpmath.mpf(10) ** -30
    mean, second, _, _ = vp.activation("selu").gaussian_moments(0.0, 1.0)
    assert abs(mean) < 1e-15 and abs(second - 1) < 1e-15
    # a from-scratch Monte Carlo of E selu(z)^2, 6 standard errors
    z = np.random.default_rng(7).standard_normal(400_000)
    y = float(SELU_SCALE) * np.where(z > 0, z, float(SELU_ALPHA) * np.expm1(np.minimum(z, 0)))
    assert abs(np.mean(y**2) - 1) < 6 * np.std(y**2) / math.sqrt(z.size)
    assert abs(np.mean(y)) < 6 * np.std(y) / math.sqrt(z.size)
    # and the engine's layer-by-layer prediction stays at 1
    per_layer = vp.predict_variance("selu", "lecun_normal", fan_in=100, depth=6,
                                    quantity="preactivation", per_layer=True)
    assert np.allclose(np.asarray(per_layer, dtype=float), 1.0, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name, mp_f", [
    ("silu", lambda x: x / (1 + mpmath.exp(-x))),
    ("swish", lambda x: x / (1 + mpmath.exp(-x))),
    ("mish", lambda x: x * mpmath.tanh(mpmath.log1p(mpmath.exp(x)))),
    ("softsign", lambda x: x / (1 + abs(x))),
    ("gelu_tanh", lambda x: x / 2 * (1 + mpmath.tanh(mpmath.sqrt(2 / mpmath.pi)
                                                     * (x + mpmath.mpf("0.044715") * x**3)))),
])
def test_quadrature_activations_against_mpmath(name, mp_f):
    act = vp.activation(name)
    assert act.closed_form is None  # no closed form: the declared method is quadrature
    for mu, q in [(0.6, 3.0)]:
        got = act.gaussian_moments(mu, q)
        mp_d = lambda x: mpmath.diff(mp_f, x)  # noqa: E731
        ref = _mp_moments(mp_f, mp_d, (0,), mu, q, dps=20)
        for g, r in zip(got, ref):
            assert abs(g - float(r)) <= 1e-10 * max(1.0, abs(float(r))), (name, mu, q)


def test_softplus_beta_against_mpmath():
    beta = mpmath.mpf(2)
    f = lambda x: mpmath.log1p(mpmath.exp(beta * x)) / beta  # noqa: E731
    d = lambda x: 1 / (1 + mpmath.exp(-beta * x))  # noqa: E731
    got = vp.activation("softplus", beta=2.0).gaussian_moments(-0.3, 1.5)
    for g, r in zip(got, _mp_moments(f, d, (), -0.3, 1.5)):
        assert abs(g - float(r)) <= 1e-10 * max(1.0, abs(float(r)))


@pytest.mark.parametrize("name", ["elu", "celu", "selu", "gelu", "gelu_tanh", "silu", "mish",
                                  "softplus", "hardtanh", "softsign", "relu6"])
def test_numpy_functions_are_finite_and_match_mpmath(name):
    act = vp.activation(name)
    x = np.array([-800.0, -40.0, -3.0, -0.5, 0.0, 0.7, 2.0, 40.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, dy = act.function(x), act.derivative_function(x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dy))
    # the NumPy function is the SymPy expression (evaluated with mpmath at 30 digits)
    import sympy as sp

    exact = sp.lambdify(sorted(act.expr.free_symbols, key=str), act.expr, modules="mpmath")
    with mpmath.workdps(30):
        for xi, yi in zip(x[1:-1], y[1:-1]):
            assert yi == pytest.approx(float(exact(mpmath.mpf(xi))), rel=1e-13, abs=1e-300), (name, xi)


def test_names_parameters_and_aliases():
    assert vp.activation("selu").name == "selu"  # no longer "did you mean 'elu'?"
    assert vp.activation("swish") == vp.activation("silu")
    assert vp.activation("gelu_tanh") == vp.activation("gelu", approximate="tanh")
    assert repr(vp.activation("gelu")) == "gelu(approximate='none')"
    assert vp.activation("celu", alpha=1.0).gaussian_moments(0.3, 2.0) == pytest.approx(
        vp.activation("elu").gaussian_moments(0.3, 2.0), rel=1e-14)
    from varprop.components.named import build_named

    assert build_named("activation", "elu:alpha=0.5") == vp.activation("elu", alpha=0.5)
    assert build_named("activation", "hardtanh:min_val=-2,max_val=2").params == {
        "min_val": -2.0, "max_val": 2.0}


def test_documents_still_cover_the_six_activations():
    from varprop.documents import ACTIVATIONS

    assert ACTIVATIONS == ("linear", "relu", "leaky_relu", "tanh", "erf", "sigmoid")


@pytest.mark.parametrize("call, exc, text", [
    (lambda: vp.activation("elu", alpha=0.0), InvalidArgument, "alpha"),
    (lambda: vp.activation("elu", alpha=math.nan), InvalidArgument, "alpha"),
    (lambda: vp.activation("celu", alpha=True), InvalidArgumentType, "alpha"),
    (lambda: vp.activation("softplus", beta=-1.0), InvalidArgument, "beta"),
    (lambda: vp.activation("hardtanh", min_val=1.0, max_val=1.0), InvalidArgument, "max_val"),
    (lambda: vp.activation("gelu", approximate="tan"), InvalidArgument, "did you mean 'tanh'"),
    (lambda: vp.activation("gelu", approximate=True), InvalidArgumentType, "approximate"),
    (lambda: vp.activation("selu", alpha=1.0), InvalidArgumentType, "alpha"),
])
def test_bad_parameters(call, exc, text):
    with pytest.raises(exc, match=text):
        call()


def test_length_map_slope_at_zero_averages_the_one_sided_squares():
    """d/dq E[phi(z)^2] at q = 0 is (phi'(0+)^2 + phi'(0-)^2)/2 at a kink with phi(0) = 0:
    selu lambda^2 (1 + alpha^2)/2 = 2.0974, relu6 1/2 (not the square of the averaged slope);
    and the phases table finds SELU's q* = 1 under lecun_normal (a grid point of the search)."""
    from varprop.documents.phases import phase_facts
    from varprop.theory.lengthmap import dsecond_dq

    lam, alpha = float(SELU_SCALE), float(SELU_ALPHA)
    assert dsecond_dq(vp.activation("selu"), 0.0) == pytest.approx(lam**2 * (1 + alpha**2) / 2,
                                                                     rel=1e-15)
    assert dsecond_dq(vp.activation("relu6"), 0.0) == 0.5
    assert dsecond_dq(vp.activation("elu"), 0.0) == 1.0
    facts = phase_facts(vp.activation("selu"), 1.0)
    assert [round(p.q, 12) for p in facts.fixed_points] == [0.0, 1.0]
