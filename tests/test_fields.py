"""The general mean-field engine: bivariate expectations, the Dense/Nonlinearity field rules, the
general walk (against the MLP walk and hand derivations) and predict_variance's routing.

Independent references: nested scipy quad (bivariate expectations), NumPy Monte Carlo written here
from scratch (seeded; tolerances of 6 standard errors), the MLP walk of varprop.theory.meanfield
(a separate implementation), and hand derivations for a test-only layer ``Scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import integrate, special

from varprop import (
    InvalidArgument,
    InvalidArgumentType,
    Network,
    VarpropError,
    init_scheme,
    layers,
    predict_fields,
    predict_variance,
)
from varprop._math import bivariate
from varprop.components.activations import resolve_activation
from varprop.network.field import Field, FieldNeeds, GradField, input_field
from varprop.network.layers.base import Layer
from varprop.network.layers.elementwise import pair_moments
from varprop.network.layout import MAX_POSITIONS, channel_axes
from varprop.network.model import LayerSequence
from varprop.theory import fields as tf


@dataclass(frozen=True)
class Scale(Layer):
    """Test-only layer y = c x (exact: second moments times c^2, forward and backward)."""

    c: float = 2.0
    kind = "scale"

    def output_shape(self, input_shape):
        return input_shape

    def field_forward(self, f):
        c2 = self.c ** 2
        return f.with_(mean=self.c * f.mean, second=c2 * f.second,
                       cov=None if f.cov is None else c2 * f.cov,
                       batch_cross=None if f.batch_cross is None else c2 * f.batch_cross)

    def field_backward(self, g, field_in, field_out):
        return g.with_(second=self.c ** 2 * g.second,
                       cov=None if g.cov is None else self.c ** 2 * g.cov)

    def field_exact(self, field_in):
        return True

    def mc_draw(self, rng, input_shape, replicates, dtype):
        return None

    def mc_forward(self, params, x):
        return self.c * x, None

    def mc_backward(self, params, cache, grad):
        return self.c * grad


@dataclass(frozen=True)
class NeedsCov(Scale):
    """Scale that asks for position covariances (as a pooling layer would)."""

    def field_needs(self):
        return FieldNeeds(cov=True)


# ---------------------------------------------------------------------------------------------
# bivariate expectations against nested scipy quadrature
# ---------------------------------------------------------------------------------------------

def _nested_quad(f, df, m1, m2, a, b, c):
    """E f(x)f(y), E f'(x)f'(y) by nested scipy quad in standardised coordinates
    (x = m1 + sqrt(a) u, y = m2 + l21 u + l22 v), split at the kinks at 0 of both factors."""
    sa = math.sqrt(a)
    l21, l22 = c / sa, math.sqrt(max(b - c * c / a, 0.0))
    pdf = lambda t: math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)

    out = []
    for g in (f, df):
        def inner(u, g=g):
            mu = m2 + l21 * u
            if l22 == 0.0:
                return g(mu)
            v0 = min(max(-mu / l22, -9.0), 9.0)
            return integrate.quad(lambda v: g(mu + l22 * v) * pdf(v), -9, 9, points=[v0],
                                  epsabs=1e-12, epsrel=1e-11, limit=200)[0]

        u0 = min(max(-m1 / sa, -9.0), 9.0)
        val = integrate.quad(lambda u, g=g: g(m1 + sa * u) * inner(u) * pdf(u), -9, 9,
                             points=[u0], epsabs=1e-12, epsrel=1e-11, limit=200)[0]
        out.append(val)
    return out


def _relu(x):
    return max(x, 0.0)


def _step(x):
    return 1.0 if x > 0 else 0.0


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (1.0, 0.1), (1.0, -1.0), (2.0, 2.0)])
def test_relu_class_closed_form_matches_nested_quad(alpha, beta):
    def f(x):
        return alpha * x if x > 0 else beta * x

    def df(x):
        return alpha if x > 0 else beta

    a, b, c = 1.3, 0.6, 0.5
    ff, dd = bivariate.relu_class(alpha, beta, np.array([a]), np.array([b]), np.array([c]))
    ref = _nested_quad(f, df, 0.0, 0.0, a, b, c)
    assert ff[0] == pytest.approx(ref[0], rel=1e-6, abs=1e-9)
    assert dd[0] == pytest.approx(ref[1], rel=1e-6, abs=1e-9)


def test_erf_closed_form_matches_nested_quad():
    a, b, c = 0.8, 2.0, -0.9
    ff, dd = bivariate.erf_pair(np.array([a]), np.array([b]), np.array([c]))
    ref = _nested_quad(special.erf, lambda x: 2 / math.sqrt(math.pi) * math.exp(-x * x),
                   0.0, 0.0, a, b, c)
    assert ff[0] == pytest.approx(ref[0], rel=1e-7)
    assert dd[0] == pytest.approx(ref[1], rel=1e-7)


def test_quadrature_with_means_and_unequal_variances_matches_nested_quad():
    act = resolve_activation("tanh")
    m1, m2, a, b, c = 0.3, -0.7, 1.5, 0.4, 0.6
    ff, dd = pair_moments(act, np.array([m1]), np.array([m2]), np.array([a]), np.array([b]),
                          np.array([c]))
    ref = _nested_quad(math.tanh, lambda x: 1 - math.tanh(x) ** 2, m1, m2, a, b, c)
    assert ff[0] == pytest.approx(ref[0], rel=1e-7)
    assert dd[0] == pytest.approx(ref[1], rel=1e-7)
    # ReLU with a mean: no closed form here, the kink is handled by the outer rule
    ff, dd = pair_moments(resolve_activation("relu"), np.array([m1]), np.array([m2]),
                          np.array([a]), np.array([b]), np.array([c]))
    ref = _nested_quad(_relu, _step, m1, m2, a, b, c)
    assert ff[0] == pytest.approx(ref[0], rel=1e-5)
    assert dd[0] == pytest.approx(ref[1], rel=1e-5)


def test_bivariate_deduplicates_identical_rows():
    rows, inverse = bivariate.unique_rows(np.array([1.0, 1.0, 2.0]), np.array([0.0, 0.0, 0.0]))
    assert rows.shape == (2, 2)
    assert inverse.tolist() == [0, 0, 1]


# ---------------------------------------------------------------------------------------------
# Dense and Nonlinearity field rules against from-scratch Monte Carlo
# ---------------------------------------------------------------------------------------------

def _sigma(x, n_sigma=6.0):
    return n_sigma * x.std(ddof=1) / math.sqrt(x.size)


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_nonlinearity_cov_and_batch_cross_against_monte_carlo(name):
    rng = np.random.default_rng(11)
    mean = np.array([0.0, 0.4, -0.2])
    A = np.array([[1.0, 0.3, 0.1], [0.2, 0.8, 0.0], [0.0, 0.4, 1.2]])
    cov = A @ A.T
    second = np.diag(cov) + mean ** 2
    raw = cov + np.outer(mean, mean)  # E z_t z_t'
    bc = 0.3 * np.diag(cov) + mean ** 2  # E z_b z_b' (corr 0.3 between samples)
    field = Field((4, 3), 0, mean, second, raw, bc, gaussian=True)
    out = layers.Nonlinearity(name).field_forward(field)
    act = resolve_activation(name)
    N = 150_000
    z = rng.multivariate_normal(mean, cov, size=N)
    y = act.function(z)
    for t in range(3):
        for s in range(3):
            prod = y[:, t] * y[:, s]
            assert abs(out.cov[t, s] - prod.mean()) < _sigma(prod)
    assert np.allclose(np.diag(out.cov), out.second)
    # two samples at one position: correlation 0.3 of the centred parts
    for t in range(3):
        v = cov[t, t]
        pair = rng.multivariate_normal([mean[t]] * 2, [[v, 0.3 * v], [0.3 * v, v]], size=N)
        prod = act.function(pair[:, 0]) * act.function(pair[:, 1])
        assert abs(out.batch_cross[t] - prod.mean()) < _sigma(prod)
    assert not out.gaussian


def test_nonlinearity_backward_cov_against_monte_carlo():
    rng = np.random.default_rng(5)
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    field = Field((3, 2), 0, 0.0, np.diag(cov), cov, None, gaussian=True)
    gcov = np.array([[1.5, 0.5], [0.5, 1.0]])
    grad = GradField((3, 2), 0, np.diag(gcov), gcov)
    nl = layers.Nonlinearity("tanh")
    out = nl.field_backward(grad, field, nl.field_forward(field))
    N = 150_000
    z = rng.multivariate_normal([0, 0], cov, size=N)
    g = rng.multivariate_normal([0, 0], gcov, size=N)  # independent of z: gradient independence
    d = (1 - np.tanh(z) ** 2) * g
    for t in range(2):
        for s in range(2):
            prod = d[:, t] * d[:, s]
            assert abs(out.cov[t, s] - prod.mean()) < _sigma(prod)


def test_dense_field_rules_against_monte_carlo_with_shared_bias():
    """E z^2 and E z_b z_b' of z = W a + b with a batch of two correlated inputs (numpy MC)."""
    rng = np.random.default_rng(3)
    n, width, b2 = 6, 5, 0.3
    d = layers.Dense(width, "lecun_normal", bias_variance=b2)
    a_second, a_cross = 1.7, 0.4
    field = Field((n,), -1, 0.0, a_second, None, a_cross, gaussian=False)
    out = d.field_forward(field)
    R = 60_000
    W = rng.standard_normal((R, width, n)) / math.sqrt(n)
    b = rng.standard_normal((R, width)) * math.sqrt(b2)
    c = np.array([[a_second, a_cross], [a_cross, a_second]])
    x = rng.multivariate_normal([0, 0], c, size=(R, n))  # (R, n, 2): two samples
    z = np.einsum("rwn,rnb->rwb", W, x) + b[:, :, None]
    sq = (z[:, :, 0] ** 2).mean(axis=1)
    cross = (z[:, :, 0] * z[:, :, 1]).mean(axis=1)
    assert abs(float(out.second) - sq.mean()) < _sigma(sq)
    assert abs(float(out.batch_cross) - cross.mean()) < _sigma(cross)
    # hand derivation: sigma_w^2 n E a^2 + sigma_b^2 with sigma_w^2 = 1/n
    assert float(out.second) == pytest.approx(a_second + b2, rel=1e-14)
    assert float(out.batch_cross) == pytest.approx(a_cross + b2, rel=1e-14)


def test_nonlinearity_on_non_gaussian_input_declares_the_closure():
    field = Field((4,), -1, 0.5, 1.0, gaussian=False)
    out = layers.Nonlinearity("tanh").field_forward(field)
    assert any("Gaussian closure" in s for s in out.approximations)
    linear = layers.Nonlinearity("linear").field_forward(field)
    assert linear.approximations == ()


# ---------------------------------------------------------------------------------------------
# the general walk
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("act,init,b2", [("relu", "he_normal", 0.0), ("tanh", "lecun_normal", 0.1),
                                         ("erf", "xavier_uniform", 0.05)])
def test_general_walk_agrees_with_mlp_walk(act, init, b2):
    net = Network.mlp(act, init, widths=[7, 9, 5, 6], bias_variance=b2, input_variance=1.3)
    fp = tf.walk_fields(net)  # forced through the general walk
    for quantity, mine in (("output", fp.output_second()),
                           ("output_gradient", fp.output_gradient_second())):
        ref = predict_variance(net, quantity=quantity, per_layer=True, method="quadrature")
        np.testing.assert_allclose(mine, ref, rtol=1e-12, atol=0)


def test_scale_layer_by_hand():
    net = Network([Scale(3.0), "relu", Scale(0.5)], input_shape=(2, 3, 4), input_variance=2.0)
    fwd = predict_variance(net, quantity="output", per_layer=True)
    np.testing.assert_allclose(fwd, [18.0, 9.0, 2.25], rtol=1e-14)  # 9*2, /2, /4
    bwd = predict_variance(net, quantity="output_gradient", per_layer=True)
    np.testing.assert_allclose(bwd, [0.125, 0.25, 1.0], rtol=1e-14)  # 1, *0.25, *1/2
    assert predict_variance(net) == pytest.approx(2.25)
    assert predict_variance(net, quantity="output_gradient") == pytest.approx(0.125)
    fp = predict_fields(net)
    assert fp.exact and fp.approximations == ()
    assert fp.input.channel_axis == 0 and fp.forward[0].positions == (3, 4)
    assert fp.input_gradient.average_second() == pytest.approx(9 * 0.125)


def test_cov_tracked_only_when_needed_and_guarded():
    plain = predict_fields(Network([Scale(2.0), "relu"], input_shape=(2, 5)))
    assert plain.forward[-1].cov is None and plain.backward[0].cov is None
    net = Network([NeedsCov(2.0), "relu"], input_shape=(2, 5))
    fp = predict_fields(net)
    cov = fp.forward[-1].cov
    assert cov.shape == (5, 5)
    # relu of independent N(0, 4) positions: E relu(x) relu(y) = (E relu)^2 = 4 / (2 pi)
    off = cov[~np.eye(5, dtype=bool)]
    np.testing.assert_allclose(off, 4.0 / (2 * math.pi), rtol=1e-12)
    np.testing.assert_allclose(np.diag(cov), 2.0, rtol=1e-12)
    big = Network([NeedsCov(2.0)], input_shape=(1, 65, 65))
    with pytest.raises(VarpropError, match="MiB"):
        predict_fields(big)


def test_general_errors():
    with pytest.raises(InvalidArgument, match="input_shape"):
        Network([Scale()], input_shape=(1, 2, 3, 4))
    net = Network([Scale(), layers.Dense(4, "lecun_uniform"), "relu",
                   layers.Dense(3, init_scheme("normal", mean=0.1, std=0.1))],
                  input_shape=(5,))
    with pytest.raises(InvalidArgument, match="init"):
        predict_variance(net)
    with pytest.raises(InvalidArgument, match="quantity"):
        predict_variance(Network([Scale()], input_shape=(3,)), quantity="preactivation")


def test_input_field_helper_consistent():
    f = input_field((3, 4), 0, 2.0, FieldNeeds(cov=True, batch_cross=True))
    assert f.cov.shape == (4, 4) and float(f.batch_cross.sum()) == 0.0


def test_gradient_batch_cross_through_dense_and_nonlinearity():
    """E delta_b delta_b' between two samples: Dense (one W for both samples) by hand, the
    activation against a from-scratch Monte Carlo (gradient independence)."""
    d = layers.Dense(5, "lecun_normal")
    f_in = Field((7,), -1, 0.0, 1.0, None, 0.2)
    grad = GradField((5,), -1, 1.5, None, 0.4)
    out = d.field_backward(grad, f_in, d.field_forward(f_in))
    assert float(out.batch_cross) == pytest.approx((1 / 7) * 5 * 0.4, rel=1e-14)
    rng = np.random.default_rng(9)
    v, c = 1.2, 0.5  # pre-activation variance and between-sample covariance
    z_field = Field((4,), -1, 0.0, v, None, c)
    nl = layers.Nonlinearity("tanh")
    g = GradField((4,), -1, 1.0, None, 0.3)
    res = nl.field_backward(g, z_field, nl.field_forward(z_field))
    N = 150_000
    z = rng.multivariate_normal([0, 0], [[v, c], [c, v]], size=N)
    delta = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 1.0]], size=N)
    prod = (1 - np.tanh(z[:, 0]) ** 2) * delta[:, 0] * (1 - np.tanh(z[:, 1]) ** 2) * delta[:, 1]
    assert abs(float(res.batch_cross) - prod.mean()) < _sigma(prod)


@dataclass(frozen=True)
class SequenceScale(Scale):
    """Scale that reads (T, n) sequences with channels last."""

    def channel_axis_for(self, input_shape):
        return -1


def test_layout_follows_the_first_layer_that_asks():
    net = Network(["tanh", SequenceScale(2.0)], input_shape=(5, 3))
    fp = predict_fields(net)
    assert fp.input.channel_axis == -1 and fp.input.positions == (5,)
    assert channel_axes(net)[0] == ((5, 3), (5, 3), -1)
    default = predict_fields(Network([Scale(2.0)], input_shape=(5, 3)))
    assert default.input.channel_axis == 0 and default.input.positions == (3,)


def test_walk_limits_and_argument_errors():
    with pytest.raises(InvalidArgumentType, match="Network"):
        predict_fields("relu")
    deep = Network(LayerSequence([((Scale(1.0),), MAX_POSITIONS + 1)]), input_shape=(3,))
    with pytest.raises(InvalidArgument, match="layer positions"):
        predict_fields(deep)
