"""The general Monte Carlo engine (simulation/fields.py), its selection and cost, and verify /
predict routing for networks beyond the dense chain.

References are NumPy Monte Carlo written here from scratch (seeded, 6 standard errors) and exact
hand-derived predictions (ReLU networks with He init are exact at every width).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from varprop import (
    InvalidArgument,
    Network,
    layers,
    predict_fields,
    predict_variance,
    simulate,
    verify,
    verify_step,
)
from varprop.checking.allowance import FINITE_WIDTH_CONSTANT, network_allowance
from varprop.checking.step_general import gaussian_draw
from varprop.network.field import Field
from varprop.network.layers.base import Layer
from varprop.simulation.engines import (
    DENSE,
    GAUSSIAN,
    GENERAL,
    check_resources,
    network_batch,
    select_engine,
)


@dataclass(frozen=True)
class Scale(Layer):
    """Test-only layer y = c x."""

    c: float = 2.0
    kind = "scale"

    def output_shape(self, input_shape):
        return input_shape

    def field_forward(self, f):
        return f.with_(mean=self.c * f.mean, second=self.c ** 2 * f.second)

    def field_backward(self, g, field_in, field_out):
        return g.with_(second=self.c ** 2 * g.second)

    def field_exact(self, field_in):
        return True

    def mc_draw(self, rng, input_shape, replicates, dtype):
        return None

    def mc_forward(self, params, x):
        return self.c * x, None

    def mc_backward(self, params, cache, grad):
        return self.c * grad


@dataclass(frozen=True, init=False)
class NeedsBatch(Scale):
    """Scale that requires a batch size (as train-mode BatchNorm does)."""

    batch: int = 1

    def __init__(self, batch: int) -> None:
        object.__setattr__(self, "c", 1.0)
        object.__setattr__(self, "batch", batch)
        object.__setattr__(self, "required_batch", batch)


@dataclass(frozen=True)
class Unsampled(Scale):
    """A layer without Monte Carlo methods."""

    mc_forward = Layer.mc_forward


def _six_sigma(x):
    return 6.0 * x.std(ddof=1) / math.sqrt(x.size)


def test_engine_selection_keeps_mlp_engines():
    mlp = Network.mlp("relu", "he_normal", fan_in=64, depth=3)
    assert select_engine(mlp) is GAUSSIAN
    assert select_engine(Network.mlp("relu", "he_uniform", fan_in=8, depth=2)) is DENSE
    net = Network([Scale(), layers.Dense(4), "relu"], input_shape=(5,))
    assert select_engine(net) is GENERAL
    assert select_engine(mlp, "general") is GENERAL  # may be asked for explicitly
    with pytest.raises(InvalidArgument, match="general"):
        select_engine(net, "dense")
    with pytest.raises(InvalidArgument, match="cannot sample"):
        select_engine(Network([Unsampled()], input_shape=(3,)), "general")


def test_dense_relu_dense_batch4_against_numpy_monte_carlo():
    """Per-position stats of simulate (general engine, batch 4) against a from-scratch MC."""
    n0, n1, n2, B, R = 6, 8, 3, 4, 3000
    net = Network([layers.Dense(n1, "he_normal", bias_variance=0.2), "relu",
                   layers.Dense(n2, "lecun_normal")], input_shape=(n0,), input_variance=1.5)
    res = simulate(net, replicates=R, batch=B, seed=7, engine="general")
    assert res.engine == "general" and res.batch == B
    rng = np.random.default_rng(123)
    x = rng.standard_normal((R, B, n0)) * math.sqrt(1.5)
    W1 = rng.standard_normal((R, n1, n0)) * math.sqrt(2.0 / n0)
    b1 = rng.standard_normal((R, 1, n1)) * math.sqrt(0.2)
    W2 = rng.standard_normal((R, n2, n1)) * math.sqrt(1.0 / n1)
    z1 = np.einsum("rbi,roi->rbo", x, W1) + b1
    a1 = np.maximum(z1, 0.0)
    z2 = np.einsum("rbi,roi->rbo", a1, W2)
    g2 = rng.standard_normal(z2.shape)
    g1 = np.einsum("rbo,roi->rbi", g2, W2)
    d1 = g1 * (z1 > 0)
    ref_fwd = [(z1 ** 2).mean(axis=(1, 2)), (a1 ** 2).mean(axis=(1, 2)), (z2 ** 2).mean(axis=(1, 2))]
    ref_bwd = [(d1 ** 2).mean(axis=(1, 2)), (g1 ** 2).mean(axis=(1, 2)), (g2 ** 2).mean(axis=(1, 2))]
    sim_fwd = res.per_replicate("output_second")
    sim_bwd = res.per_replicate("output_gradient_second")
    for p in range(3):
        for sim, ref in ((sim_fwd[:, p], ref_fwd[p]), (sim_bwd[:, p], ref_bwd[p])):
            diff = sim.mean() - ref.mean()
            se = math.sqrt(sim.var(ddof=1) / R + ref.var(ddof=1) / R)
            assert abs(diff) < 6 * se
    # the exact prediction (ReLU, He init, zero-mean Gaussian weights: exact at every width)
    pred = predict_variance(net, quantity="output", per_layer=True)
    np.testing.assert_allclose(pred, [2 * 1.5 + 0.2, (2 * 1.5 + 0.2) / 2, (2 * 1.5 + 0.2) / 2])
    for p in range(3):
        assert abs(sim_fwd[:, p].mean() - pred[p]) < _six_sigma(sim_fwd[:, p])
    # a vector output has no positions: per_position is (R,)
    assert res.per_position("output_second", 1).shape == (R,)


def test_reproducible_across_chunk_and_replicate_counts():
    net = Network([Scale(1.5), layers.Dense(5), "tanh"], input_shape=(4,))
    a = simulate(net, replicates=150, seed=3)
    b = simulate(net, replicates=150, seed=3, chunk_size=1)
    c = simulate(net, replicates=300, seed=3)
    for q in ("output_second", "output_gradient_second", "output_mean"):
        np.testing.assert_array_equal(a.per_replicate(q), b.per_replicate(q))
    block = a.block_size
    k = (150 // block) * block  # whole blocks are drawn from the same streams
    np.testing.assert_array_equal(a.per_replicate("output_second")[:k],
                                  c.per_replicate("output_second")[:k])


def test_per_position_statistics_of_a_tensor_network():
    net = Network([Scale(2.0), "relu", Scale(0.5)], input_shape=(3, 2, 4))
    res = simulate(net, replicates=800, batch=2, seed=1)
    pos = res.per_position("output_second", 2)
    assert pos.shape == (800, 2, 4)
    np.testing.assert_allclose(pos.mean(axis=(1, 2)), res.per_replicate("output_second")[:, 1],
                               rtol=1e-12)
    pred = predict_variance(net, quantity="output", per_layer=True)
    for p in (1, 2, 3):
        stat = res.per_position("output_second", p)
        for idx in np.ndindex(2, 4):
            x = stat[(slice(None),) + idx]
            assert abs(x.mean() - pred[p - 1]) < _six_sigma(x)
    grad = res.per_position("output_gradient_second", -1)
    assert grad.shape == (800, 2, 4)
    with pytest.raises(InvalidArgument, match="quantity"):
        res.per_position("output_mean", 1)
    with pytest.raises(InvalidArgument, match="general engine"):
        simulate("relu", "he_normal", fan_in=4, replicates=8).per_position("output_second", 1)


def test_required_batch():
    net = Network([NeedsBatch(4), layers.Dense(3)], input_shape=(5,))
    assert network_batch(net) == 4
    assert simulate(net, replicates=16, seed=0).batch == 4
    with pytest.raises(InvalidArgument, match="batch"):
        simulate(net, replicates=16, batch=8)
    with pytest.raises(InvalidArgument, match="batch size"):
        network_batch(Network([NeedsBatch(4), NeedsBatch(8)], input_shape=(5,)))


def test_general_cost_and_resource_refusal():
    net = Network([Scale(), layers.Dense(256), "relu"], input_shape=(256,))
    cost = GENERAL.cost(net, 1000, batch=2)
    assert cost.bytes > 0 and cost.work > 1000 * 256 * 257  # at least the weights drawn
    with pytest.raises(InvalidArgument, match="replicates"):
        check_resources(net, GENERAL, 10**9)


def test_verify_a_general_network_exact_claim():
    net = Network([Scale(1.5), layers.Dense(8, "he_normal"), "relu", layers.Dense(4)],
                  input_shape=(6,))
    v = verify(net, quantity="output", seed=2, rtol=0.1)
    assert v.status == "confirmed"
    assert v.exact
    g = verify(net, quantity="output_gradient", layer=1, replicates=4000, seed=2)
    assert g.status in ("confirmed", "inconclusive")
    assert g.status != "refuted"


def test_gaussian_draw_has_the_field_moments():
    mean = np.array([0.5, -0.2, 0.0])
    cov = np.array([[1.0, 0.3, 0.1], [0.3, 2.0, -0.4], [0.1, -0.4, 0.7]])
    bc = 0.2 * np.diag(cov) + mean ** 2
    f = Field((3, 2), -1, mean, np.diag(cov) + mean ** 2, cov + np.outer(mean, mean), bc)
    x = gaussian_draw(np.random.default_rng(0), f, 20000, 2, np.dtype("float64"))
    assert x.shape == (20000, 2, 3, 2)
    flat = x[:, 0, :, 0]  # sample 0, channel 0: (R, positions)
    np.testing.assert_allclose(flat.mean(axis=0), mean, atol=6 * math.sqrt(2.0 / 20000))
    emp = np.cov(flat.T)
    np.testing.assert_allclose(emp, cov, atol=6 * math.sqrt(2 * 4.0 / 20000))
    cross = np.mean((x[:, 0, :, 1] - mean) * (x[:, 1, :, 1] - mean), axis=0)
    np.testing.assert_allclose(cross, 0.2 * np.diag(cov), atol=6 * math.sqrt(4.0 / 20000))


def test_verify_step_on_general_layers():
    net = Network([Scale(1.5), layers.Dense(8, "he_normal"), "relu", layers.Dense(4)],
                  input_shape=(6,))
    for q, pos in (("output", 2), ("output", 3), ("output_gradient", 2)):
        v = verify_step(net, quantity=q, layer=pos, seed=1, replicates=2048)
        assert v.status != "refuted"
        assert v.exact
    v = verify_step(net, quantity="output", layer=2, seed=1, replicates=2048,
                    tol=0.0, rtol=0.1)
    assert v.status == "confirmed"


def test_general_engine_reports_underflow_like_the_mlp_engines():
    """A Dense output flushed below float32's smallest normal from a non-zero (subnormal) input
    is an underflow: that position and the later ones are masked."""
    net = Network([Scale(1e-20), Scale(1e-20), layers.Dense(4), layers.Dense(3)], input_shape=(5,))
    res = simulate(net, replicates=64, seed=0, dtype="float32")
    assert res.underflow_layer == 3
    assert res.output_valid.all(axis=0).tolist() == [True, True, False, False]
    assert not res.output_gradient_valid.any()  # the forward pass was invalid
    ok = simulate(Network([Scale(1.0), layers.Dense(4), "relu", layers.Dense(3)],
                          input_shape=(5,)), replicates=64, seed=0)
    assert ok.underflow_layer is None and ok.output_valid.all() and ok.output_gradient_valid.all()


@dataclass(frozen=True)
class Nested(Scale):
    """A layer holding weight layers (as a residual block does): the allowance counts them."""

    branch: tuple = (layers.Dense(8), layers.Dense(4))


def test_allowance_counts_nested_weight_layers():
    net = Network([Nested(), layers.Dense(5), "tanh"], input_shape=(6,))
    tol, reason = network_allowance(net, 3, False, method="auto", predicted_value=1.0)
    expected = FINITE_WIDTH_CONSTANT * (1 / 8 + 1 / 4 + 1 / 5)
    assert tol == pytest.approx(expected, rel=1e-6)
    assert "finite-width" in reason


def test_verify_refutes_a_wrong_claim_on_a_general_network():
    net = Network([Scale(1.5), layers.Dense(16, "he_normal"), "relu", layers.Dense(8)],
                  input_shape=(6,))
    true = float(predict_variance(net))
    v = verify(net, quantity="output", predicted=1.3 * true, seed=3)
    assert v.status == "refuted"


@dataclass(frozen=True)
class Flat(Layer):
    """A flatten that keeps its input's field (per-position moments), as varprop's Flatten."""

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def channel_axis_for(self, input_shape):
        return 0

    def field_forward(self, f):
        return f

    def field_backward(self, g, field_in, field_out):
        return g

    def mc_draw(self, rng, input_shape, replicates, dtype):
        return None

    def mc_forward(self, params, x):
        return x.reshape(*x.shape[:2], -1), x.shape

    def mc_backward(self, params, cache, grad):
        return grad.reshape(cache)


def test_per_position_layout_matches_the_predicted_fields():
    net = Network([Scale(2.0), "relu", Flat(), layers.Dense(4)], input_shape=(2, 3, 2))
    fp = predict_fields(net)
    res = simulate(net, replicates=64, seed=0)
    for p, f in enumerate(fp.forward, start=1):
        assert res.per_position("output_second", p).shape == (64,) + f.positions
        grad_positions = fp.backward[p - 1].positions
        assert res.per_position("output_gradient_second", p).shape == (64,) + grad_positions


def test_verify_step_after_a_flatten_uses_the_tensor_shape():
    net = Network([Scale(2.0), Flat(), layers.Dense(4, "he_normal")], input_shape=(2, 3))
    for q in ("output", "output_gradient"):
        v = verify_step(net, quantity=q, layer=3, seed=0, replicates=1024)
        assert v.status != "refuted" and v.exact
