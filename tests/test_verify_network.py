"""verify / verify_step on a Network; exactness from activation traits; the layers' one-step maps;
the checker's engine rule (the same as simulate's engine="auto")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

import varprop
from varprop import Network, layers
from varprop.checking import check
from varprop.checking.plan import network_budget, plan_network
from varprop.errors import InvalidArgument
from varprop.simulation.engines import DENSE, GAUSSIAN, select_engine


def _same(v, w) -> None:
    a, b = v.to_dict(), w.to_dict()
    a.pop("elapsed")
    b.pop("elapsed")
    assert a == b


# --- a Network as first argument: the keyword form is Network.mlp, bit-identical -----------------

@pytest.mark.parametrize("kw", [
    dict(activation="relu", init="he_normal", fan_in=8, depth=3, quantity="preactivation"),
    dict(activation="tanh", init="lecun_uniform", widths=[6, 5, 7], quantity="gradient",
         bias_variance=0.1, input_variance=2.0),
    dict(activation="gelu", init="xavier_normal", fan_in=8, depth=2, quantity="activation",
         target="unit_spread"),
])
def test_verify_network_equals_keyword_form(kw):
    kw = dict(kw)
    act, init = kw.pop("activation"), kw.pop("init")
    shape = {k: kw.pop(k) for k in ("fan_in", "widths", "depth", "bias_variance",
                                    "input_variance") if k in kw}
    net = Network.mlp(act, init, **shape)
    v = check.verify(act, init, **shape, **kw, replicates=96, seed=5)
    w = check.verify(net, **kw, replicates=96, seed=5)
    _same(v, w)


@pytest.mark.parametrize("quantity", ["preactivation", "activation_second_moment", "gradient"])
def test_verify_step_network_equals_keyword_form(quantity):
    shape = dict(widths=[5, 6, 4, 6], bias_variance=0.05)
    net = Network.mlp("tanh", "lecun_normal", **shape)
    v = check.verify_step("tanh", "lecun_normal", **shape, quantity=quantity, layer=2,
                          replicates=64, seed=2)
    w = check.verify_step(net, quantity=quantity, layer=2, replicates=64, seed=2)
    _same(v, w)
    # and through verify(local=True)
    _same(w, check.verify(net, quantity=quantity, layer=2, replicates=64, seed=2, local=True))


def test_hand_built_mlp_network_is_checked_as_the_mlp():
    net = Network([layers.Dense(8, init="he_normal"), "relu", layers.Dense(8, init="he_normal"),
                   "relu"], input_shape=(8,))
    _same(check.verify(net, quantity="preactivation", replicates=64, seed=1),
           check.verify("relu", "he_normal", fan_in=8, depth=2, quantity="preactivation",
                        replicates=64, seed=1))


@pytest.mark.parametrize("name,value", [("init", "he_normal"), ("fan_in", 8), ("widths", [8, 8]),
                                        ("depth", 3), ("input_variance", 2.0),
                                        ("bias_variance", 0.1), ("depth", True)])
def test_network_with_shape_arguments_is_refused(name, value):
    net = Network.mlp("relu", "he_normal", fan_in=8)
    kw = {name: value}
    with pytest.raises(InvalidArgument, match=name):
        if name == "init":
            check.verify(net, value)
        else:
            check.verify(net, **kw)
    with pytest.raises(InvalidArgument, match=name):
        if name == "init":
            check.verify_step(net, value)
        else:
            check.verify_step(net, **kw)


def test_keyword_form_needs_init():
    with pytest.raises(InvalidArgument, match="init"):
        check.verify("relu", fan_in=8)
    with pytest.raises(InvalidArgument, match="init"):
        check.verify_step("relu", fan_in=8)


# --- exactness from traits, with an independent computation ---------------------------------------

def _numpy_mc_z_last(phi, n: int, depth: int, replicates: int, seed: int) -> tuple[float, float]:
    """From scratch: E[mean_i z_{L,i}^2] for a width-n, depth-L He-normal net with N(0, 1)
    inputs, and its standard error (independent of varprop's engines)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((replicates, n))
    z = a
    for l in range(depth):
        W = rng.standard_normal((replicates, n, n)) * math.sqrt(2.0 / n)
        z = np.einsum("rij,rj->ri", W, a)
        a = phi(z)
    stat = np.mean(z * z, axis=1)
    return float(stat.mean()), float(stat.std(ddof=1) / math.sqrt(replicates))


@pytest.mark.parametrize("expr,phi,slope2", [
    ("abs(x)", np.abs, 1.0),
    ("2*relu(x) + 0.5*min(x, 0)", lambda z: 2 * np.maximum(z, 0) + 0.5 * np.minimum(z, 0), 2.125),
])
def test_degree_one_homogeneous_is_exact_at_width_two(expr, phi, slope2):
    """phi(z)^2 = z^2 (a^2 1_{z>0} + b^2 1_{z<0}): E z_L^2 = (2 * (a^2+b^2)/2)^(L-1) * 2 exactly at
    any width.  A seeded NumPy simulation at width 2 agrees within 4 standard errors, and the
    checker claims exactness (tol = float floor) and does not refute it."""
    act = varprop.activation(expr)
    assert act.traits.exact_at_finite_width and not act.traits.linear
    for q in ("preactivation", "activation_second_moment", "gradient", "weight_gradient"):
        assert check.is_exact(act, "he_normal", q)
    assert not check.is_exact(act, "he_normal", "activation")  # Var a needs (E a)^2: approximate
    L = 3
    predicted = float(varprop.predict_variance(act, "he_normal", fan_in=2, depth=L,
                                               quantity="preactivation"))
    assert predicted == pytest.approx(2.0 * (2.0 * slope2) ** (L - 1), rel=1e-12)
    est, se = _numpy_mc_z_last(phi, 2, L, 400_000, seed=11)
    assert abs(est - predicted) < 4 * se, (est, se, predicted)
    v = check.verify(act, "he_normal", fan_in=2, depth=L, quantity="preactivation", seed=3,
                     budget=4096)
    assert v.exact and v.tol == pytest.approx(1e-9) and v.status != "refuted"


def test_tanh_is_not_exact_and_the_gap_is_real_at_width_two():
    """The contrast: tanh at width 2 is not exact (the same NumPy simulation differs from the
    mean field by many standard errors), and the checker says so."""
    assert not check.is_exact("tanh", "he_normal", "preactivation")
    predicted = float(varprop.predict_variance("tanh", "he_normal", fan_in=2, depth=3,
                                               quantity="preactivation"))
    est, se = _numpy_mc_z_last(np.tanh, 2, 3, 400_000, seed=11)
    assert abs(est - predicted) > 8 * se


def test_any_slope_linear_is_exact_for_activation():
    assert check.is_exact("2*x", "lecun_normal", "activation")
    assert check.is_exact("2*x", "orthogonal", "preactivation")
    assert not check.is_exact("2*x+1", "lecun_normal", "preactivation")


# --- the layers' one-step maps ---------------------------------------------------------------------

def test_dense_one_step_maps():
    d = layers.Dense(7, init="he_uniform", bias_variance=0.3)
    s = np.array([0.5, 2.0])
    var_w = 2.0 / 5  # he: 2 / fan_in
    np.testing.assert_allclose(d.one_step(5, s), var_w * 5 * s + 0.3, rtol=1e-14)
    np.testing.assert_allclose(d.one_step_backward(5, s), var_w * 7 * s, rtol=1e-14)


@pytest.mark.parametrize("expr", ["tanh", "erf", "x*tanh(x)", "2*x", "relu", "sigmoid"])
def test_nonlinearity_one_step_against_quad(expr):
    phi = varprop.activation(expr).function
    f = layers.Nonlinearity(expr)
    v = np.array([0.04, 0.7, 3.0])
    got = f.one_step(4, v)
    for vi, gi in zip(v, got):
        ref = integrate.quad(lambda t, vi=vi: float(phi(np.array([math.sqrt(vi) * t]))[0]) ** 2
                             * math.exp(-t * t / 2) / math.sqrt(2 * math.pi), -40, 40,
                             points=[0.0], limit=200)[0]
        assert gi == pytest.approx(ref, rel=1e-6)


# --- one engine rule --------------------------------------------------------------------------------

def test_budget_uses_the_engine_simulate_would_use():
    """A Gaussian scheme whose shortcut does not pay (fan-in 1) is simulated by the dense engine,
    and the default budget is the dense engine's (it once assumed the shortcut)."""
    scheme = varprop.init_scheme("he_normal")
    net = plan_network(scheme, [1, 1000, 1000])
    assert select_engine(net) is DENSE
    assert check.default_budget(scheme, [1, 1000, 1000]) == network_budget(net) == 1024
    wide = plan_network(scheme, [64] * 6)
    assert select_engine(wide) is GAUSSIAN
    assert network_budget(wide) == int(1.2e8 / (3.0 * 64 * 6))


# --- exactness and allowance of any network, per layer position ------------------------------------

def _expanded_inverse_widths(net, depth):
    return sum(1.0 / layer.width for layer in list(net.layers)[:depth]
               if isinstance(layer, layers.Dense))


def test_network_allowance_matches_the_mlp_allowance():
    """At the l-th Dense layer (position 2l-1) of an MLP-shaped network, the allowance of
    'output' is the allowance of 'preactivation' at layer l (the same c * sum 1/n_l) once a
    non-homogeneous nonlinearity precedes it; before any (layer 1, z_1 = W_1 x) the network rule
    is exact where the MLP rule is conservatively approximate (E z_1^2 = s_w^2 n_0 E x^2 holds
    exactly)."""
    ws = [5, 7, 3, 9]
    net = Network.mlp("tanh", "lecun_normal", widths=ws)
    assert check.network_allowance(net, 1, False, method="auto", predicted_value=1.0)[0] == 1e-9
    for l in (2, 3):
        tol_net, _ = check.network_allowance(net, 2 * l - 1, False, method="auto",
                                             predicted_value=1.0)
        tol_mlp, _ = check.prediction_allowance("tanh", "lecun_normal", widths=ws, layer=l,
                                                quantity="preactivation", method="auto",
                                                predicted_value=1.0)
        assert tol_net == pytest.approx(tol_mlp, rel=1e-14)
    # backward: the gradient with respect to a_1 (position 2) is the MLP's gradient at layer 2;
    # the gradient with respect to z_1 (position 1) has no MLP quantity: the broad rule
    tol_b, _ = check.network_allowance(net, 2, True, method="auto", predicted_value=1.0)
    tol_g, _ = check.prediction_allowance("tanh", "lecun_normal", widths=ws, layer=2,
                                          quantity="gradient", method="auto", predicted_value=1.0)
    assert tol_b == pytest.approx(tol_g, rel=1e-14)
    tol_z, reason = check.network_allowance(net, 1, True, method="auto", predicted_value=1.0)
    assert tol_z == pytest.approx(2.0 * (1 / 7 + 1 / 3 + 1 / 9 + 1 / 5) + 1e-9, rel=1e-12)
    assert "no 1/n expansion" in reason


def test_inverse_width_sum_of_runs_equals_the_expanded_sum():
    from varprop.checking.allowance import _dense_inverse_widths
    net = Network([layers.Dense(4), "tanh", layers.Dense(6), "relu", layers.Dense(6), "relu",
                   layers.Dense(6), "relu", layers.Dense(3)], input_shape=(5,))
    deep = Network.mlp("tanh", "lecun_normal", fan_in=5, fan_out=7, depth=40)
    for n in (net, deep):
        for depth in range(1, n.depth + 1):
            assert _dense_inverse_widths(n, depth) == pytest.approx(
                _expanded_inverse_widths(n, depth), rel=1e-12)
    huge = Network.mlp("relu", "he_normal", fan_in=8, depth=10**9)  # closed form per run
    assert _dense_inverse_widths(huge, huge.depth) == pytest.approx(10**9 / 8, rel=1e-12)


def test_network_exact_reads_traits_per_layer():
    relu_abs = Network([layers.Dense(6, init="he_normal"), "relu", layers.Dense(5), "abs(x)",
                        layers.Dense(4)], input_shape=(3,))
    assert all(check.network_exact(relu_abs, p, False) for p in range(1, 6))
    assert check.network_exact(relu_abs, 1, True)
    mixed = Network([layers.Dense(6), "relu", layers.Dense(5), "tanh", layers.Dense(4)],
                    input_shape=(3,))
    assert [check.network_exact(mixed, p, False) for p in range(1, 6)] == [True, True, True,
                                                                          False, False]
    assert not check.network_exact(mixed, 1, True)  # backward passes every layer
    uniform_mean = Network([layers.Dense(6, init=varprop.init_scheme("uniform", low=0.0, high=1.0)), "relu"], input_shape=(3,))
    assert not check.network_exact(uniform_mean, 1, False)
    ortho_linear = Network([layers.Dense(6, init="orthogonal"), "2*x", layers.Dense(6,
                           init="orthogonal")], input_shape=(6,))
    assert check.network_exact(ortho_linear, 3, False)
    assert not check.network_exact(Network([layers.Dense(6, init="orthogonal"), "relu"],
                                           input_shape=(6,)), 2, False)


def test_non_mlp_network_takes_only_the_output_quantities():
    net = Network([layers.Dense(6), "relu", layers.Dense(5), "tanh"], input_shape=(3,))
    assert net.as_mlp() is None
    with pytest.raises(InvalidArgument, match="quantity"):
        check.verify(net, quantity="preactivation")
    with pytest.raises(InvalidArgument, match="quantity"):
        check.verify_step(net, quantity="gradient")
    with pytest.raises(InvalidArgument, match="target"):
        check.verify(net, quantity="output", target="unit_spread")
    with pytest.raises(InvalidArgument, match="layer"):
        check.verify(net, quantity="output", layer=5)


def test_one_step_chains_of_a_network():
    from varprop.checking.step import _chain_at
    d1, d2 = layers.Dense(6), layers.Dense(5)
    net = Network([d1, "relu", "tanh", d2], input_shape=(3,))
    assert _chain_at(net, 1, "output") == (0, (d1,))
    assert _chain_at(net, 2, "output") == (0, (d1, net.layers[1]))
    assert _chain_at(net, 4, "output") == (3, (d2,))
    with pytest.raises(InvalidArgument, match="layer"):
        _chain_at(net, 3, "output")  # tanh after relu: not a one-step map of a Dense
    assert _chain_at(net, 3, "output_gradient") == (4, (d2,))
    with pytest.raises(InvalidArgument, match="layer"):
        _chain_at(net, 4, "output_gradient")  # nothing after the last layer


# --- checks of any network, per layer position --------------------------------------------------------

def _relu_abs_net():
    return Network([layers.Dense(16, init="he_normal"), "relu",
                    layers.Dense(8, init="lecun_uniform"), "abs(x)",
                    layers.Dense(4, init="lecun_normal", bias_variance=0.5)], input_shape=(12,))


# E y_p^2 by hand: 2/12*12*1 = 2; relu halves it: 1; 1/16*16*1 = 1; abs keeps it: 1; 1/8*8*1 + 0.5
_BY_HAND = (2.0, 1.0, 1.0, 1.0, 1.5)


@pytest.mark.parametrize("position", [1, 2, 3, 4, 5])
def test_output_of_any_network_against_a_hand_computation(position):
    """Exact second moments per position (relu/abs with zero-mean symmetric i.i.d. weights): the
    hand-computed value is claimed exactly (tol = float floor) and not refuted; a value 20% off
    is refuted."""
    net = _relu_abs_net()
    assert net.as_mlp() is None
    v = check.verify(net, quantity="output", layer=position, predicted=_BY_HAND[position - 1],
                     seed=4, budget=8192)
    assert v.exact and v.tol == pytest.approx(1e-9)
    assert v.status != "refuted", str(v)
    w = check.verify(net, quantity="output", layer=position,
                     predicted=1.2 * _BY_HAND[position - 1], seed=4, budget=8192)
    assert w.status == "refuted", str(w)


def test_output_gradient_of_any_network_against_a_hand_computation():
    """Backward from dL/dy_5 ~ N(0, 1): E (dL/dy_4)^2 = s_w^2 n_out = 1/8 * 4 = 0.5 (W_5 is
    independent of the seed gradient)."""
    net = _relu_abs_net()
    v = check.verify(net, quantity="output_gradient", layer=4, predicted=0.5, seed=2, budget=8192)
    assert v.status != "refuted"
    w = check.verify(net, quantity="output_gradient", layer=4, predicted=0.6, seed=2, budget=8192)
    assert w.status == "refuted"


@pytest.mark.parametrize("quantity,position,exact", [
    ("output", 1, True), ("output", 3, True), ("output", 5, True),
    ("output_gradient", 4, True), ("output_gradient", 2, False),
])
def test_one_step_of_any_network(quantity, position, exact):
    """The realised statistic over the layers' one-step maps of the realised previous one: mean
    exactly 1 where the maps are exact, so never refuted."""
    net = Network([layers.Dense(16, init="he_normal"), "relu",
                   layers.Dense(8, init="lecun_uniform"), "tanh", layers.Dense(4)],
                  input_shape=(12,))
    v = check.verify_step(net, quantity=quantity, layer=position, seed=1, budget=4096)
    assert v.exact is exact and v.target == "one_step"
    assert v.status == "confirmed", str(v)
    assert v.estimate == pytest.approx(1.0, abs=0.05)


def test_output_with_the_library_prediction():
    """Without predicted=, the claim is predict_variance(net, quantity='output', per_layer=True)
    at the position: the hand-computed values, claimed exactly and not refuted."""
    net = _relu_abs_net()
    for position, by_hand in enumerate(_BY_HAND, 1):
        v = check.verify(net, quantity="output", layer=position, seed=3, budget=8192)
        assert v.predicted == pytest.approx(by_hand, rel=1e-12)
        assert v.exact and v.status != "refuted", str(v)
    g = check.verify(net, quantity="output_gradient", seed=3, budget=8192)  # position 1
    assert g.layer == 1 and g.status != "refuted"


def test_keyword_form_takes_the_output_quantities():
    """The keyword form is Network.mlp: 'output' at the l-th Dense position is E z_l^2, the
    same number as 'preactivation' at layer l for zero-mean weights."""
    v = check.verify("tanh", "lecun_normal", fan_in=8, depth=2, quantity="output", layer=3,
                     seed=1, replicates=256)
    w = check.verify("tanh", "lecun_normal", fan_in=8, depth=2, quantity="preactivation",
                     layer=2, seed=1, replicates=256)
    assert v.predicted == pytest.approx(w.predicted, rel=1e-12)
    assert v.tol == pytest.approx(w.tol, rel=1e-12)


def test_one_step_map_with_dead_inputs():
    """Realised input mean squares that are exactly 0 (a dead ReLU layer of a narrow net) among
    many distinct positive ones: phi(0)^2 there, quadrature elsewhere (it raised before)."""
    f = layers.Nonlinearity("x*tanh(x) + 0.5")
    v = np.concatenate([np.zeros(3), np.geomspace(0.01, 5.0, 100)])
    got = f.one_step(4, v)
    assert got[:3] == pytest.approx([0.25] * 3, rel=1e-12)
    phi = varprop.activation("x*tanh(x) + 0.5").function
    ref = integrate.quad(lambda t: float(phi(np.array([math.sqrt(5.0) * t]))[0]) ** 2
                         * math.exp(-t * t / 2) / math.sqrt(2 * math.pi), -40, 40)[0]
    assert got[-1] == pytest.approx(ref, rel=1e-6)
    net = Network([layers.Dense(6), "relu", layers.Dense(5), "tanh"], input_shape=(3,))
    assert check.verify_step(net, quantity="output", layer=4, seed=0).status == "confirmed"
