"""``simulate(..., backward=False)``: the forward statistics are bit-identical to a full run with
the same seed on every engine (the forward draws come first in each block's stream), the
backward ones are refused, and the checker uses it for forward quantities without changing a
verdict.  All deterministic (fixed seeds, exact equality)."""

from __future__ import annotations

import numpy as np
import pytest

import varprop
import varprop.checking.outputs as outputs_mod
import varprop.checking.step as step_mod
import varprop.checking.verify as verify_mod
from varprop import Network, layers, simulate
from varprop.errors import InvalidArgument, InvalidArgumentType, VarpropError
from varprop.simulation.result import (
    BACKWARD_QUANTITIES,
    FORWARD_QUANTITIES,
    OUTPUT_QUANTITIES,
)

FORWARD_FIELDS = ("valid", "output_valid", "nonfinite_layer_per_replicate",
                  "underflow_layer_per_replicate", "input_second")

MLP_CASES = [
    # (activation, init, keyword arguments): each engine path of the walk
    ("relu", "he_normal", dict(fan_in=64, depth=5)),                       # Gaussian, batch 1
    ("tanh", "he_normal", dict(fan_in=16, depth=3, batch=4)),              # Gaussian, batch
    ("tanh", "uniform", dict(fan_in=32, depth=4)),                         # dense, mean != 0
    ("sigmoid", "glorot_uniform", dict(fan_in=24, depth=3, bias_variance=0.2)),
    ("leaky_relu", "orthogonal", dict(fan_in=16, depth=3)),
    ("erf", "variance_scaling", dict(fan_in=16, depth=3, batch=3)),
    ("linear", "lecun_normal", dict(fan_in=8, depth=4, engine="dense")),
    # overflow in float32: forward invalid from some layer on, the same layer both ways
    ("relu", "standard_normal", dict(fan_in=64, depth=60, dtype="float32")),
]


def _pair(*args, **kwargs):
    return simulate(*args, **kwargs), simulate(*args, backward=False, **kwargs)


@pytest.mark.parametrize("act, init, kwargs", MLP_CASES)
def test_forward_statistics_bit_identical_mlp(act, init, kwargs):
    full, fwd = _pair(act, init, replicates=150, seed=11, **kwargs)
    assert full.engine == fwd.engine
    for q in FORWARD_QUANTITIES:
        assert np.array_equal(full._stats[q], fwd._stats[q]), q
    for name in FORWARD_FIELDS:
        assert np.array_equal(getattr(full, name), getattr(fwd, name)), name
    assert full.backward_recorded and not fwd.backward_recorded
    if kwargs.get("dtype") == "float32":
        assert fwd.overflow_layer is not None  # the case really overflows
        assert fwd.overflow_layer == full.overflow_layer


@pytest.mark.parametrize("engine", ["auto", "dense", "general"])
def test_forward_statistics_bit_identical_network(engine):
    net = Network([layers.Dense(32), "tanh", layers.Dense(16, init="glorot_uniform"), "relu",
                   layers.Dense(8)], input_shape=(12,))
    full, fwd = _pair(net, replicates=130, seed=5, engine=engine)
    for q in ("output_mean", "output_second", "output_unit_std"):
        assert np.array_equal(full._stats[q], fwd._stats[q]), q
    for name in FORWARD_FIELDS:
        assert np.array_equal(getattr(full, name), getattr(fwd, name)), name
    if engine == "general":
        for p in range(1, net.layers.size + 1):
            assert np.array_equal(full.per_position("output_second", p),
                                  fwd.per_position("output_second", p))


def test_backward_statistics_refused_and_never_valid():
    res = simulate("tanh", "he_normal", fan_in=16, depth=3, replicates=70, seed=1, backward=False)
    for q in BACKWARD_QUANTITIES + ("gradient", "weight_gradient"):
        with pytest.raises(InvalidArgument, match="backward=False"):
            res.per_replicate(q)
        with pytest.raises(InvalidArgument, match="backward=False"):
            res.mean(q)
    assert not res.gradient_valid.any() and not res.output_gradient_valid.any()
    assert (res.gradient_nonfinite_layer_per_replicate == -1).all()
    assert (res.gradient_underflow_layer_per_replicate == -1).all()
    for name in ("gradient_overflow_layer", "gradient_underflow_layer"):
        with pytest.raises(VarpropError, match="forward pass only"):
            getattr(res, name)
    for arr in res._stats.values():  # never NaN, even behind the masks
        assert np.isfinite(arr).all()
    assert np.isfinite(res.estimate("activation")).all()  # forward estimates still work

    net = Network([layers.Dense(8), "relu", layers.Dense(4)], input_shape=(6,))
    res = simulate(net, replicates=64, seed=2, engine="general", backward=False)
    for q in OUTPUT_QUANTITIES[3:]:
        with pytest.raises(InvalidArgument, match="backward=False"):
            res.per_replicate(q)
    with pytest.raises(InvalidArgument, match="backward=False"):
        res.per_position("output_gradient_second", 1)


@pytest.mark.parametrize("bad", ["no", 0, 1, None, 1.0])
def test_backward_argument_checked(bad):
    with pytest.raises(InvalidArgumentType, match="backward"):
        simulate("relu", "he_normal", fan_in=8, replicates=4, backward=bad)


def test_numpy_bool_accepted():
    res = simulate("relu", "he_normal", fan_in=8, replicates=4, backward=np.bool_(False))
    assert res.backward_recorded is False


def _force_backward(monkeypatch, module, calls):
    """Make ``module``'s simulate run the backward pass always, recording what it was asked."""
    def spy(*args, **kwargs):
        calls.append(kwargs.get("backward", True))
        kwargs["backward"] = True
        return simulate(*args, **kwargs)
    monkeypatch.setattr(module, "simulate", spy)


def _same_verdict(a, b):
    assert (a.status, a.estimate, a.replicates, tuple(a.interval)) == \
        (b.status, b.estimate, b.replicates, tuple(b.interval))


@pytest.mark.parametrize("act, init, quantity", [
    ("tanh", "uniform", "preactivation"), ("relu", "he_normal", "activation"),
    ("relu", "glorot_uniform", "gradient")])
def test_verify_forward_quantities_skip_the_backward_pass(monkeypatch, act, init, quantity):
    fast = varprop.verify(act, init, fan_in=32, depth=3, quantity=quantity, seed=4, budget=2048)
    calls: list[bool] = []
    _force_backward(monkeypatch, verify_mod, calls)
    slow = varprop.verify(act, init, fan_in=32, depth=3, quantity=quantity, seed=4, budget=2048)
    _same_verdict(fast, slow)
    assert calls and set(calls) == {quantity == "gradient"}


@pytest.mark.parametrize("quantity", ["output", "output_gradient"])
def test_verify_network_and_step_forward_only(monkeypatch, quantity):
    net = Network([layers.Dense(32, init="glorot_uniform"), "tanh", layers.Dense(16)],
                  input_shape=(16,))
    fast = varprop.verify(net, quantity=quantity, layer=3, seed=3, budget=1024)
    fast_step = varprop.verify_step(net, quantity=quantity, seed=3, replicates=256)
    calls: list[bool] = []
    _force_backward(monkeypatch, outputs_mod, calls)
    _force_backward(monkeypatch, step_mod, calls)
    _same_verdict(fast, varprop.verify(net, quantity=quantity, layer=3, seed=3, budget=1024))
    _same_verdict(fast_step, varprop.verify_step(net, quantity=quantity, seed=3, replicates=256))
    assert calls and set(calls) == {quantity == "output_gradient"}


def test_invalid_entries_raise_the_overflow_error_without_a_backward_pass():
    from varprop.errors import SimulationOverflowError
    kwargs = dict(fan_in=64, depth=60, replicates=20, dtype="float32", seed=0)
    full = simulate("relu", "standard_normal", **kwargs)
    fwd = simulate("relu", "standard_normal", backward=False, **kwargs)
    for res in (full, fwd):
        with pytest.raises(SimulationOverflowError, match="valid_only=True") as err:
            res.per_replicate("preactivation_second")
        assert f"overflow_layer={full.overflow_layer}" in str(err.value)
        with pytest.raises(SimulationOverflowError):
            res.mean("preactivation_second")
    assert "gradient_overflow_layer" not in str(err.value)  # the last one: forward only


def test_forward_only_flags_and_estimate_names_the_quantity():
    net = Network([layers.Dense(8), "relu", layers.Dense(4)], input_shape=(6,))
    for engine in ("auto", "general"):
        res = simulate(net, replicates=64, seed=2, engine=engine, backward=False)
        assert res.output_gradient_recorded is False and res.backward_recorded is False
        assert simulate(net, replicates=64, seed=2, engine=engine).output_gradient_recorded
    res = simulate("relu", "he_normal", fan_in=8, depth=2, replicates=64, seed=1, backward=False)
    for q in ("gradient", "weight_gradient"):
        with pytest.raises(InvalidArgument, match=f"quantity='{q}'.*backward=False"):
            res.estimate(q)


def test_output_gradient_reason_names_the_forward_overflow():
    # the forward pass overflows (float32) at position 6; the backward pass never does
    net = Network([x for _ in range(30) for x in (layers.Dense(16, init="normal"), "relu")],
                  input_shape=(16,), input_variance=1e70)
    v = varprop.verify(net, quantity="output_gradient", dtype="float32", budget=512)
    assert v.status == "inconclusive"
    res = simulate(net, replicates=64, seed=0, dtype="float32")
    assert res.gradient_overflow_layer is None and res.overflow_layer is not None
    # positions, not MLP layers: Dense of layer 6 is position 11
    first = min(int(np.argmin(row)) for row in res.output_valid if not row.all()) + 1
    assert first == 2 * res.overflow_layer - 1
    assert f"in the forward pass (64 of them, first at layer position {first})" \
        in v.reason and "in the backward pass" not in v.reason


class _Stub:
    """What _output_columns reads of a result: 6 invalid replicates at position 2, 3 of them
    invalid in the forward pass from position 3 on."""

    def __init__(self):
        self.output_valid = np.ones((10, 4), dtype=bool)
        self.output_valid[:3, 2:] = False
        self.gradient = np.ones((10, 4), dtype=bool)
        self.gradient[:6] = False

    def valid_mask(self, stat):
        return self.gradient if stat == "output_gradient_second" else self.output_valid


def test_output_gradient_reason_splits_forward_and_backward_failures():
    from varprop.checking.outputs import _output_columns
    cols, reason = _output_columns(_Stub(), "output_gradient", 2)
    assert cols == [] and reason.startswith("6 of 10 replicates left the float range")
    assert "in the forward pass (3 of them, first at layer position 3)" in reason
    assert "or in the backward pass by layer position 2 (the other 3)" in reason


def test_output_gradient_reason_on_a_real_mix_of_failures():
    # float32, "normal" weights, depth 165: some replicates overflow forward, others only
    # backward (found by a reviewer; about 1 s)
    import re
    net = Network([x for _ in range(165) for x in (layers.Dense(8, init="normal"), "relu")],
                  input_shape=(8,), input_variance=1e-2)
    v = varprop.verify(net, quantity="output_gradient", layer=1, dtype="float32", replicates=512,
                       seed=0)
    m = re.search(r"(\d+) of 512 replicates left the float range .* in the forward pass \((\d+) of "
                  r"them, first at layer position (\d+)\), .* or in the backward pass by layer "
                  r"position 1 \(the other (\d+)\)", v.reason)
    assert m is not None, v.reason
    total, n_fwd, first, n_bwd = (int(g) for g in m.groups())
    assert n_fwd > 0 and n_bwd > 0 and n_fwd + n_bwd == total
    assert first % 2 == 1  # a Dense output: a layer position, not an MLP layer
