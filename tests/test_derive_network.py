"""derive(net): plain MLPs keep their derivation; any other Network is derived by walking its layers.

Every rule of the walk is checked against an independent computation: the mean-field recursion of
``varprop.theory.predict`` (its own implementation) on MLP-shaped networks, and seeded Monte Carlo
written here in plain NumPy (weights drawn from the schemes' textbook definitions) on mixed
networks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from scipy.special import erf

from varprop import Network, activation, init_scheme, layers
from varprop.errors import InvalidArgument
from varprop.network.layers.base import Layer
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.symbolic import Derivation, NetworkDerivation, derive, derive_layers
from varprop.theory import predict
from varprop.theory.symbolic.symbols import (
    A_C,
    A_D,
    A_M,
    MU_W,
    N_IN,
    SIGMA_B2,
    SIGMA_W2,
)
from varprop.theory.symbolic.walk import MAX_WALK_LAYERS

# ------------------------------------------------------------------------------------------------
# dispatch: a plain MLP is the keyword derivation
# ------------------------------------------------------------------------------------------------

def test_mlp_network_gets_the_keyword_derivation():
    assert derive(Network.mlp("relu", "he_normal", fan_in=8, depth=3)) is derive("relu", "he_normal", bias=False)
    assert derive(Network.mlp("tanh", "xavier_normal", fan_in=3, fan_out=5, depth=4, bias_variance=0.1)) \
        is derive("tanh", "xavier_normal")
    assert derive(Network.mlp("tanh", "he_normal", widths=[3, 5, 7], bias_variance=0.1)) \
        is derive("tanh", "he_normal", widths="general")
    assert derive(Network.mlp("erf", "he_normal", widths=[3, 5, 5])) is derive("erf", "he_normal", bias=False)


def test_other_networks_are_walked():
    net = Network([layers.Dense(8, "he_normal"), "relu", layers.Dense(8, "lecun_normal"), "tanh"],
                  input_shape=(4,))
    d = derive(net)
    assert isinstance(d, NetworkDerivation)
    assert d.network == net
    assert not isinstance(d, Derivation)


def test_derive_argument_errors():
    net = Network([layers.Dense(8, "he_normal"), "relu"], input_shape=(4,))
    with pytest.raises(InvalidArgument, match="init"):
        derive(net, "he_normal")
    with pytest.raises(InvalidArgument, match="init"):
        derive("relu")
    with pytest.raises(InvalidArgument, match="bias"):
        derive(net, bias=False)
    with pytest.raises(InvalidArgument, match="widths"):
        derive(net, widths="general")
    with pytest.raises(InvalidArgument, match="net"):
        derive_layers("relu")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# the MLP derivation's layer steps are the layers' own rules
# ------------------------------------------------------------------------------------------------

def test_mlp_steps_come_from_the_dense_rule():
    zero = derive("relu", "he_normal")
    assert zero.step("variance").equation.rhs == \
        Dense.forward_moments(0, SIGMA_W2, N_IN, A_M, A_D, A_C, SIGMA_B2)[1]
    shifted = derive("tanh", "uniform")
    m, d, c = Dense.forward_moments(MU_W, SIGMA_W2, N_IN, A_M, A_D, A_C, SIGMA_B2)
    assert (shifted.step("mean").equation.rhs, shifted.step("second_moment").equation.rhs,
            shifted.step("cross_moment").equation.rhs) == (m, d, c)


# ------------------------------------------------------------------------------------------------
# walk vs the mean-field recursion of varprop.theory.predict (independent implementation)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("act,scheme,method", [("relu", "he_normal", "exact"),
                                               ("erf", "xavier_uniform", "exact"),
                                               ("tanh", "lecun_normal", "closed_form"),
                                               ("linear", "orthogonal", "exact")])
def test_walk_of_an_mlp_matches_predict(act, scheme, method):
    widths, b2, q0 = [7, 11, 5, 9], 0.1, 0.7
    net = Network.mlp(act, scheme, widths=widths, bias_variance=b2, input_variance=q0)
    walk = derive_layers(net)
    got = walk.evaluate()
    p = predict.propagate(act, scheme, widths=widths, bias_variance=b2, input_variance=q0, method=method)
    np.testing.assert_allclose(got["output_second"][0::2], p.preact_second, rtol=1e-12)
    np.testing.assert_allclose(got["output_second"][1::2], p.act_second, rtol=1e-12)
    # backward: the walk starts at the last layer's output (G_K = 1), predict at the last
    # pre-activation (delta_L = 1): ratios between layers agree
    g = got["output_gradient"]
    np.testing.assert_allclose(g[0::2] / g[-2], p.delta_second / p.delta_second[-1], rtol=1e-12)
    np.testing.assert_allclose(got["input_gradient"] / g[-2], p.grad_second[0] / p.delta_second[-1], rtol=1e-12)


def test_exact_numbers_stay_exact():
    net = Network([layers.Dense(64, "he_normal", bias_variance=0.05), "relu",
                   layers.Dense(10, "xavier_normal")], input_shape=(32,), input_variance=0.5)
    d = derive_layers(net)
    assert d.output_second == (sp.Rational(21, 20), sp.Rational(21, 40), sp.Rational(64 * 21, 37 * 40))
    assert all(isinstance(x, sp.Rational) for x in d.output_gradient_second + (d.input_gradient_second,))
    assert d.exact and d.exact_at_finite_width


# ------------------------------------------------------------------------------------------------
# seeded Monte Carlo in NumPy
# ------------------------------------------------------------------------------------------------

def _weights(rng, scheme, n_in, n_out, nets):
    """Textbook definitions of the schemes (independent of varprop's samplers)."""
    shape = (nets, n_out, n_in)
    if scheme == "he_normal":
        return rng.normal(0.0, math.sqrt(2.0 / n_in), shape)
    if scheme == "lecun_normal":
        return rng.normal(0.0, math.sqrt(1.0 / n_in), shape)
    if scheme == "xavier_normal":
        return rng.normal(0.0, math.sqrt(2.0 / (n_in + n_out)), shape)
    if scheme == "xavier_uniform":
        a = math.sqrt(6.0 / (n_in + n_out))
        return rng.uniform(-a, a, shape)
    if scheme == "he_uniform":
        a = math.sqrt(6.0 / n_in)
        return rng.uniform(-a, a, shape)
    low, high = scheme  # uniform(low, high)
    return rng.uniform(low, high, shape)


def _monte_carlo(spec, n0, q0, nets, batch, seed):
    """Per-layer E[y_k^2] and E[(dL/dy_k)^2] (dL/dy_K i.i.d. N(0, 1)), and per-net estimates."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0.0, math.sqrt(q0), (nets, n0, batch))
    cache, fwd = [], []
    for kind, *args in spec:
        if kind == "dense":
            width, scheme, b2 = args
            w = _weights(rng, scheme, y.shape[1], width, nets)
            b = rng.normal(0.0, math.sqrt(b2), (nets, width, 1)) if b2 else 0.0
            cache.append(("dense", w))
            y = w @ y + b
        else:
            f, df = args
            cache.append(("phi", df(y)))
            y = f(y)
        fwd.append((y**2).mean(axis=(1, 2)))
    g = rng.normal(0.0, 1.0, y.shape)
    bwd = [None] * len(spec)
    for k in range(len(spec) - 1, -1, -1):
        bwd[k] = (g**2).mean(axis=(1, 2))
        kind, data = cache[k]
        g = np.swapaxes(data, 1, 2) @ g if kind == "dense" else data * g
    return np.array(fwd), np.array(bwd), (g**2).mean(axis=(1, 2))


RELU = (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float))
ERF = (erf, lambda z: 2.0 / math.sqrt(math.pi) * np.exp(-z * z))
XTANH = (lambda z: z * np.tanh(z), lambda z: np.tanh(z) + z / np.cosh(z) ** 2)


def test_mixed_network_matches_monte_carlo():
    """Different schemes and activations per layer, one without a closed form (x tanh x: named
    expectations evaluated by quadrature).  Widths 128: the O(1/n) finite-width corrections are
    up to 1.6% (erf and later layers, measured over three seeds with 400 networks); the Monte
    Carlo standard error of 300 networks is below 0.8%, so the tolerance is 1.6% + 3 SE."""
    n0, q0 = 64, 0.8
    net = Network([layers.Dense(128, "he_normal"), "relu",
                   layers.Dense(128, "xavier_uniform", bias_variance=0.05), "erf",
                   layers.Dense(128, "lecun_normal"), "x*tanh(x)",
                   layers.Dense(64, "he_uniform")], input_shape=(n0,), input_variance=q0)
    spec = [("dense", 128, "he_normal", 0.0), ("phi", *RELU), ("dense", 128, "xavier_uniform", 0.05),
            ("phi", *ERF), ("dense", 128, "lecun_normal", 0.0), ("phi", *XTANH),
            ("dense", 64, "he_uniform", 0.0)]
    d = derive(net)
    assert not d.exact  # x tanh x has no closed form: named expectations
    assert any(k.startswith("layer6.") and k != "layer6.forward" for k in d.keys)
    got = d.evaluate()
    fwd, bwd, g_in = _monte_carlo(spec, n0, q0, nets=300, batch=64, seed=20261204)
    for est, derived in ((fwd, got["output_second"]), (bwd, got["output_gradient"])):
        mean, se = est.mean(axis=1), est.std(axis=1) / math.sqrt(est.shape[1])
        assert np.all(se / mean < 0.008)
        np.testing.assert_allclose(derived, mean, rtol=0.016 + 3 * 0.008)
    # gradient at the input: gradient independence, exact for the dense layers
    np.testing.assert_allclose(got["input_gradient"], g_in.mean(), rtol=0.04)


def test_non_zero_mean_linear_network_is_exact_at_finite_width():
    """Weights with a non-zero mean correlate the units; linear layers (any slope) keep the
    (m, D, C) map exact at every width: small widths, many networks, a 4-standard-error test."""
    n0, q0 = 6, 1.0
    u1, u2 = (-0.1, 0.3), (-0.05, 0.15)
    net = Network([layers.Dense(12, _uniform(*u1)), "2*x",
                   layers.Dense(8, _uniform(*u2), bias_variance=0.25), layers.Dense(5, "he_normal")],
                  input_shape=(n0,), input_variance=q0)
    d = derive(net)
    assert isinstance(d, NetworkDerivation) and d.exact_at_finite_width
    assert all(isinstance(x, sp.Rational) for x in d.output_second)
    spec = [("dense", 12, u1, 0.0), ("phi", lambda z: 2 * z, lambda z: 2 + 0 * z),
            ("dense", 8, u2, 0.25), ("dense", 5, "he_normal", 0.0)]
    fwd, bwd, _ = _monte_carlo(spec, n0, q0, nets=40000, batch=1, seed=7)
    mean, se = fwd.mean(axis=1), fwd.std(axis=1) / math.sqrt(fwd.shape[1])
    got = d.evaluate()["output_second"]
    assert np.all(np.abs(got - mean) < 4 * se), (got, mean, se)
    gmean, gse = bwd.mean(axis=1), bwd.std(axis=1) / math.sqrt(bwd.shape[1])
    ggot = d.evaluate()["output_gradient"]
    assert np.all(np.abs(ggot - gmean) < 4 * gse), (ggot, gmean, gse)


def _uniform(low, high):
    return init_scheme("uniform", low=low, high=high)


# ------------------------------------------------------------------------------------------------
# refusals, limits, rendering
# ------------------------------------------------------------------------------------------------

def test_nonlinearity_after_a_shared_shift_is_refused():
    shift = _uniform(0.0, 1.0)
    with pytest.raises(InvalidArgument, match="shared"):
        derive(Network([layers.Dense(8, shift), "tanh", layers.Dense(4, "he_normal")], input_shape=(4,)))
    with pytest.raises(InvalidArgument, match="shared"):  # mean != 0 at the relu
        derive(Network([layers.Dense(8, shift), "relu", layers.Dense(4, "he_normal")], input_shape=(4,)))
    with pytest.raises(InvalidArgument, match="shared"):  # scale mixture at the tanh
        derive(Network([layers.Dense(8, shift), layers.Dense(8, "he_normal"), "tanh"], input_shape=(4,)))
    # positively homogeneous of degree 1 after zero-mean symmetric weights: allowed
    d = derive(Network([layers.Dense(8, shift), layers.Dense(8, "he_normal"), "relu"], input_shape=(4,)))
    assert d.exact_at_finite_width


def test_unknown_layer_and_too_many_layers():
    class Odd(Layer):
        def output_shape(self, input_shape):
            return input_shape

    with pytest.raises(InvalidArgument, match="layers"):
        derive(Network([layers.Dense(4, "he_normal"), Odd(), "relu"], input_shape=(4,)))
    deep = Network([layers.Dense(4, "he_normal"), "relu", layers.Dense(4, "lecun_normal"), "tanh"]
                   * (MAX_WALK_LAYERS // 4 + 1), input_shape=(4,))
    with pytest.raises(InvalidArgument, match="at most"):
        derive(deep)


def test_rendering():
    net = Network([layers.Dense(16, "he_normal", bias_variance=0.1), "relu",
                   layers.Dense(8, "xavier_normal"), "x*tanh(x)"], input_shape=(4,))
    d = derive(net)
    md = d.to_markdown(level=2)
    assert md.startswith("## Variance propagation through Network(")
    assert "### Forward pass" in md and "### Backward pass" in md and "| 4 |" in md
    tex = d.to_latex(document=True)
    assert tex.startswith("\\documentclass") and tex.count("{") == tex.count("}")
    assert d.step("layer1.weights").equation.rhs[2] == sp.Rational(1, 10)
    with pytest.raises(KeyError):
        d.step("nope")
    with pytest.raises(InvalidArgument):
        d.to_markdown(level=0)


def test_linear_slope_is_exact_from_the_traits():
    piecewise_identity = activation("leaky_relu", negative_slope=1.0)
    assert [Nonlinearity(a).linear_slope() for a in ("linear", "2*x", "1.0*x", "sqrt(2)*x", "-x",
                                                     piecewise_identity)] == [1, 2, 1, sp.sqrt(2), -1, 1]
    assert Nonlinearity("relu").linear_slope() is None
    # a piecewise identity is the identity for the walk (exact, even after a shared shift)
    shift = _uniform(-0.1, 0.3)
    nets = [Network([layers.Dense(6, shift), a, layers.Dense(5, shift)], input_shape=(3,))
            for a in ("linear", piecewise_identity)]
    assert derive(nets[0]).output_second == derive(nets[1]).output_second
