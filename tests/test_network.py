"""predict_variance / propagate on a Network: the per-position quantities ``output`` and
``output_gradient``, the MLP quantities on MLP-shaped networks, the layers' mean-field rules and
the quantity vocabulary, each against an independent computation (closed forms, mpmath
quadrature, a seeded NumPy Monte Carlo, the keyword form)."""

from __future__ import annotations

import math
import warnings

import mpmath as mp
import numpy as np
import pytest

import varprop
from varprop import Network, layers, predict_variance, propagate
from varprop.checking.check import is_exact
from varprop.errors import InvalidArgument
from varprop.network.quantities import (
    MLP_QUANTITIES,
    NETWORK_QUANTITIES,
    QUANTITIES,
    QUANTITY_SPECS,
    spec,
)
from varprop.network.state import GradientState, MomentState, input_state
from varprop.theory.moments import Moments

EXACT = Moments("exact")


# ----------------------------------------------------------------------------------------------
# the keyword form is Network.mlp
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("act, init, kw", [
    ("relu", "he_normal", {"fan_in": 16, "depth": 6, "bias_variance": 0.1}),
    ("tanh", "lecun_normal", {"widths": [8, 20, 12, 12]}),
    ("tanh", "uniform", {"fan_in": 16, "depth": 4}),
    ("linear", "uniform", {"fan_in": 6, "fan_out": 9, "depth": 5}),
])
@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("per_layer", [False, True])
def test_network_mlp_gives_the_keyword_form_bit_for_bit(act, init, kw, quantity, per_layer):
    net = Network.mlp(act, init, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", varprop.VarpropWarning)
        a = predict_variance(act, init, quantity=quantity, per_layer=per_layer, **kw)
        b = predict_variance(net, quantity=quantity, per_layer=per_layer)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_propagate_accepts_an_mlp_shaped_network():
    net = Network.mlp("erf", "lecun_normal", fan_in=12, depth=4, bias_variance=0.2)
    p, q = propagate(net), propagate("erf", "lecun_normal", fan_in=12, depth=4, bias_variance=0.2)
    for name in ("preact_second", "act_second", "grad_second", "delta_second", "weight_grad_second"):
        assert np.array_equal(getattr(p, name), getattr(q, name))


def test_output_of_an_mlp_interleaves_its_preactivations_and_activations():
    net = Network.mlp("tanh", "xavier_normal", fan_in=20, depth=5, bias_variance=0.05)
    out = predict_variance(net, quantity="output", per_layer=True)
    p = propagate(net)
    assert np.array_equal(out[0::2], p.preact_second) and np.array_equal(out[1::2], p.act_second)
    assert predict_variance(net, quantity="output") == out[-1]


# ----------------------------------------------------------------------------------------------
# output / output_gradient against closed forms and Monte Carlo
# ----------------------------------------------------------------------------------------------

def test_output_and_its_gradient_closed_forms_for_a_relu_network():
    # x in R^32, E x^2 = 1.5; Dense(64, he): E z^2 = 2 * 1.5; relu: E a^2 = 1.5, E relu'^2 = 1/2;
    # Dense(10, lecun, bias 0.25): E y^2 = 1.5 + 0.25.  Backward from unit gradients at y:
    # at a: (1/64) * 10; at z: (10/64)/2
    net = Network([layers.Dense(64, "he_normal"), "relu", layers.Dense(10, "lecun_normal", 0.25)],
                  input_shape=(32,), input_variance=1.5)
    assert predict_variance(net, quantity="output", per_layer=True).tolist() == [3.0, 1.5, 1.75]
    g = predict_variance(net, quantity="output_gradient", per_layer=True)
    assert g.tolist() == [10 / 64 / 2, 10 / 64, 1.0]
    assert predict_variance(net, quantity="output_gradient") == 10 / 64 / 2  # first layer's
    assert predict_variance(net, quantity="output") == 1.75  # last layer's


def _simulate(net_layers, n0, reps, rng):
    """Monte Carlo second moments of every layer's output and of the gradient there (unit
    Gaussian gradients at the last output, independent of the forward pass)."""
    outs, grads = [], []
    for _ in range(reps):
        x = rng.standard_normal(n0)
        ys, jac = [], []
        for kind, arg in net_layers:
            if kind == "dense":
                W = rng.standard_normal((arg, x.size)) / math.sqrt(x.size)
                x = W @ x
                jac.append(("W", W))
            else:
                jac.append(("d", 1.0 - np.tanh(x) ** 2))
                x = np.tanh(x)
            ys.append(np.mean(x * x))
        g = rng.standard_normal(x.size)
        gs = [np.mean(g * g)]
        for kind, J in reversed(jac[1:]):
            g = J.T @ g if kind == "W" else J * g
            gs.append(np.mean(g * g))
        outs.append(ys)
        grads.append(gs[::-1])
    return np.mean(outs, axis=0), np.mean(grads, axis=0)


def test_a_network_that_is_not_an_mlp_against_monte_carlo():
    # two dense layers in a row and a tanh after each pair: not MLP-shaped
    spec_ = [("dense", 256), ("tanh", None), ("dense", 256), ("dense", 256), ("tanh", None)]
    net = Network([layers.Dense(256, "lecun_normal"), "tanh", layers.Dense(256, "lecun_normal"),
                   layers.Dense(256, "lecun_normal"), "tanh"], input_shape=(128,))
    assert net.as_mlp() is None
    out = predict_variance(net, quantity="output", per_layer=True)
    grad = predict_variance(net, quantity="output_gradient", per_layer=True)
    sim_out, sim_grad = _simulate(spec_, 128, 300, np.random.default_rng(20261204))
    # O(1/n) finite-width bias plus Monte Carlo noise (about 1% per estimate here)
    np.testing.assert_allclose(out, sim_out, rtol=0.04)
    np.testing.assert_allclose(grad, sim_grad, rtol=0.06)


def test_huge_depth_network_output_needs_no_memory():
    net = Network.mlp("relu", "he_normal", fan_in=64, depth=10**9)
    assert predict_variance(net, quantity="output") == 1.0
    # backward: relu' halves, the he_normal layer doubles: 0.5 at every dense output
    assert predict_variance(net, quantity="output_gradient") == 0.5


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------

def test_mlp_quantities_refuse_a_network_that_is_not_an_mlp():
    net = Network([layers.Dense(8), layers.Dense(8), "relu"], input_shape=(4,))
    for q in MLP_QUANTITIES:
        with pytest.raises(InvalidArgument, match="not MLP-shaped"):
            predict_variance(net, quantity=q)
    with pytest.raises(InvalidArgument, match="MLP-shaped"):
        propagate(net)


def test_shape_arguments_are_refused_with_a_network():
    net = Network.mlp("relu", "he_normal", fan_in=8)
    for kw in ({"fan_in": 8}, {"depth": 3}, {"input_variance": 2.0}, {"bias_variance": 0.1}):
        with pytest.raises(InvalidArgument, match="left unset when the first argument is a Network"):
            predict_variance(net, **kw)
    with pytest.raises(InvalidArgument, match="left unset"):
        predict_variance(net, "he_normal")


def test_a_nonlinearity_after_a_nonlinearity_is_refused():
    net = Network([layers.Dense(8), "tanh", "relu"], input_shape=(4,))
    with pytest.raises(InvalidArgument, match=r"layers\[2\]=Nonlinearity\(relu\(\)\).*output of Nonlinearity\(tanh"):
        predict_variance(net, quantity="output")
    with pytest.raises(InvalidArgument, match=r"layers\[2\]"):
        varprop.derive(net)
    # a repeated block whose last layer is an activation and whose first is too: the boundary
    from varprop.network.model import LayerSequence
    blk = tuple(Network(["tanh", layers.Dense(8)], input_shape=(4,)).layers)
    wrapped = Network(LayerSequence([(blk + (blk[0],), 1), (blk, 3)]), input_shape=(4,))
    with pytest.raises(InvalidArgument, match=r"layers\[3\]"):
        predict_variance(wrapped, quantity="output")


def test_keyword_form_still_needs_init():
    with pytest.raises(TypeError, match="init"):
        predict_variance("relu", fan_in=8)


# ----------------------------------------------------------------------------------------------
# the layers' rules against independent computations
# ----------------------------------------------------------------------------------------------

def _gauss(f, q):
    return mp.quad(lambda z: f(z) * mp.npdf(z, 0, mp.sqrt(q)), [-mp.inf, 0, mp.inf])


@pytest.mark.parametrize("name", ["tanh", "erf", "sigmoid", "relu"])
def test_nonlinearity_rule_on_a_centred_state_against_mpmath(name):
    act = varprop.activation(name)
    f = {"tanh": mp.tanh, "erf": mp.erf, "sigmoid": lambda z: 1 / (1 + mp.exp(-z)),
         "relu": lambda z: max(z, 0)}[name]
    q = 0.7
    out = layers.Nonlinearity(act).mean_field(MomentState(0.0, q, 0.0, centred=True), EXACT)
    assert out.second == pytest.approx(float(_gauss(lambda z: f(z) ** 2, q)), rel=1e-9)
    assert out.mean == pytest.approx(float(_gauss(f, q)), rel=1e-9, abs=1e-15)
    assert out.cross == out.mean * out.mean and not out.gaussian


def test_dense_rule_with_non_zero_mean_weights_against_monte_carlo():
    # exact second moments of a linear map with i.i.d. U[0, 1) weights
    rng = np.random.default_rng(7)
    n_in, width = 5, 4
    state = MomentState(0.3, 1.1, 0.2)  # inputs: E a = 0.3, E a^2 = 1.1, E a_i a_k = 0.2
    dense = layers.Dense(width, "uniform")
    out = dense.mean_field(state, n_in)
    # inputs a = 0.3 + c + e with a shared c (Var 0.2 - 0.09) and i.i.d. e (Var 1.1 - 0.2)
    reps = 400_000
    c = rng.standard_normal((reps, 1)) * math.sqrt(0.2 - 0.09)
    a = 0.3 + c + rng.standard_normal((reps, n_in)) * math.sqrt(1.1 - 0.2)
    W = rng.random((reps, width, n_in))
    z = np.einsum("rij,rj->ri", W, a)
    assert out.mean == pytest.approx(z.mean(), rel=0.01)
    assert out.second == pytest.approx(np.mean(z * z), rel=0.01)
    assert out.cross == pytest.approx(np.mean(z[:, 0] * z[:, 1]), rel=0.01)


def test_dense_backward_rule_shift_term():
    # E g_j^2 = s^2 n G_D + mu^2 (n G_D + n(n-1) G_C): with U[0, 1) weights mu = 1/2, s^2 = 1/12
    g = layers.Dense(3, "uniform").mean_field_backward(GradientState(2.0, 0.5), 7)
    s_shift = 3 * 2.0 + 3 * 2 * 0.5
    assert g.cross == 0.25 * s_shift and g.second == pytest.approx(3 * 2.0 / 12 + 0.25 * s_shift)


def test_input_state_conditional_on_the_shift():
    u = np.array([-1.0, 0.0, 2.0])
    s = input_state(4, 2.0, u)
    assert np.allclose(s.second, 2.0 * (3.0 + u * u) / 4)  # E[x_j^2 | u]
    assert s.shift_scale == math.sqrt(8.0) and s.conditional


# ----------------------------------------------------------------------------------------------
# the quantity vocabulary
# ----------------------------------------------------------------------------------------------

def test_one_vocabulary_with_the_new_quantities():
    assert set(MLP_QUANTITIES) | set(NETWORK_QUANTITIES) == set(QUANTITIES)
    assert spec("output").second == "output_second" and spec("output").direction == "forward"
    g = spec("output_gradient")
    assert g.second == "output_gradient_second" and g.backward
    assert varprop.theory.predict.QUANTITIES is QUANTITIES


@pytest.mark.parametrize("act", ["linear", "relu", "leaky_relu", "tanh", "x**3"])
@pytest.mark.parametrize("init", ["he_normal", "orthogonal", "uniform", "truncated_normal"])
def test_exactness_agrees_with_the_checker(act, init):
    a, s = varprop.activation(act), varprop.init_scheme(init)
    for q in QUANTITY_SPECS:
        if q.mlp_only:
            assert q.exact(a, s) == is_exact(a, s, q.name), (act, init, q.name)


def test_exactness_is_decided_by_traits_not_names():
    # abs is positively homogeneous of degree 1 like ReLU: exact second moments at finite width
    a, s = varprop.activation("abs(x)"), varprop.init_scheme("he_normal")
    assert a.traits.exact_at_finite_width
    assert spec("preactivation").exact(a, s) and spec("output").exact(a, s)
    assert not spec("activation").exact(a, s)  # a variance: E|z| is not exact at finite width
    # 2x is linear (any slope): every second moment of the net is exact, as for x
    two = varprop.activation("2*x")
    assert all(q.exact(two, s) for q in QUANTITY_SPECS)
