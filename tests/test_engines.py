"""Engines as objects, the layer walk on any Network, and bit-identical results of the keyword form.

The keyword form of ``simulate`` must give bit-identical results to the code before the layer
walk: ``tests/data/simulate_fixture.json`` holds the SHA-256 of every per-replicate array for a
grid of configurations, recorded from that code by ``tests/make_simulate_fixture.py``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import varprop
from varprop import Network, layers
from varprop.errors import InvalidArgument
from varprop.simulation import engines
from varprop.simulation.engines import DENSE, GAUSSIAN, check_resources, select_engine
from varprop.simulation.montecarlo import simulate

sys.path.insert(0, str(Path(__file__).parent))
from make_simulate_fixture import OUT, digest, run

RECORDS = json.loads(OUT.read_text())


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: str(RECORDS.index(r)))
def test_keyword_form_is_bit_identical_to_the_recorded_results(record: dict) -> None:
    assert digest(run(record["config"])) == record["digest"]


# ------------------------------------------------------------------------------- engine objects
MIXED = Network([layers.Dense(8, "he_normal", 0.2), "relu", layers.Dense(6, "lecun_normal"),
                 "tanh", layers.Dense(5, "lecun_normal")], input_shape=(4,), input_variance=1.5)
UNIFORM = Network([layers.Dense(8, "he_uniform"), "relu", layers.Dense(4)], input_shape=(3,))


def test_supports_names_the_reason() -> None:
    assert DENSE.supports(UNIFORM) is None and GAUSSIAN.supports(MIXED) is None
    reason = GAUSSIAN.supports(UNIFORM)
    assert reason is not None and "he_uniform" in reason and "normal" in reason
    with pytest.raises(InvalidArgument, match="engine='gaussian' is not allowed.*he_uniform"):
        select_engine(UNIFORM, "gaussian")
    with pytest.raises(InvalidArgument, match="engine='fast'"):
        select_engine(MIXED, "fast")


def test_auto_is_the_gaussian_shortcut_when_supported_and_cheaper() -> None:
    # the shortcut draws k n_out + k' n_in normals per Dense layer instead of n_out n_in
    wide = Network.mlp("relu", "he_normal", fan_in=64, depth=3)
    assert select_engine(wide, batch=4) is GAUSSIAN  # 2 (4*64 + 4*64) <= 64*64
    assert select_engine(wide, batch=17) is DENSE    # 2 (17*64 + 17*64) > 64*64
    assert select_engine(UNIFORM) is DENSE
    assert select_engine(wide, "dense", batch=1) is DENSE
    assert simulate(wide, replicates=4, batch=4).engine == "gaussian"


def test_cost_counts_weights_widths_and_positions() -> None:
    # independent count for UNIFORM: weights 3*8 + 8*4 = 56, widths 3 + 8 + 4 = 15, 3 positions
    B, R = 2, 100
    cost = DENSE.cost(UNIFORM, R, B, "float32")
    per = 15 * B * (3 * 4 + 24) + 4 * 56
    assert cost.block == 64
    assert cost.bytes == 64 * per + R * (116 * 3 + 64)
    assert cost.work == R * (56 * (1 + 2 * B) + 8 * B * 15)
    assert cost.seconds == cost.work / engines.WORK_RATE
    # a huge depth is assessed from the runs, not materialised
    deep = Network.mlp("relu", "he_normal", fan_in=10, fan_out=20, depth=10**9)
    shape = engines.network_shape(deep)
    assert shape.weights == 10 * 20 + 20 * 20 * (10**9 - 1) and shape.positions == 2 * 10**9
    with pytest.raises(InvalidArgument, match="would need about .* TiB of memory"):
        check_resources(deep, GAUSSIAN, 10)
    with pytest.raises(InvalidArgument, match=r"budget=100000 is not allowed.*would take about"):
        check_resources(Network.mlp("relu", "he_uniform", fan_in=1000, depth=10), DENSE, 10**5,
                        name="budget")


def test_resource_estimate_is_the_cost_of_the_mlp() -> None:
    ws = (16, 32, 32, 8)
    net = Network.mlp("tanh", "lecun_normal", widths=ws)
    for eng in (DENSE, GAUSSIAN):
        c = eng.cost(net, 500, 3, "float64")
        assert engines.resource_estimate(eng.name, ws, 3, 500, 8) == (c.bytes, c.seconds)


# ------------------------------------------------------------------------ any Network, by layers
def _numpy_simulation(net: Network, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A plain NumPy simulation of ``net`` (batch 1; weights drawn with the scheme's sampler; the
    backward seed i.i.d. N(0, 1) at the last output): per replicate and position, the mean square
    of each layer's output and of the loss gradient with respect to it."""
    rng = np.random.default_rng(seed)
    P = len(net.layers)
    out2, grad2 = np.zeros((replicates, P)), np.zeros((replicates, P))
    for r in range(replicates):
        a = rng.normal(0.0, math.sqrt(net.input_variance), net.input_shape[0])
        tape = []
        for p, layer in enumerate(net.layers):
            if isinstance(layer, layers.Dense):
                w = layer.init.sample(rng, a.size, layer.width)
                b = rng.normal(0.0, math.sqrt(layer.bias_variance), layer.width)
                tape.append(w)
                a = w @ a + b
            else:
                tape.append(a)
                a = layer.activation.function(a)
            out2[r, p] = np.mean(a**2)
        g = rng.standard_normal(a.size)
        for p in range(P - 1, -1, -1):
            grad2[r, p] = np.mean(g**2)
            layer = net.layers[p]
            g = tape[p].T @ g if isinstance(layer, layers.Dense) else \
                layer.activation.derivative_function(tape[p]) * g
    return out2, grad2


@pytest.mark.parametrize("engine", ["dense", "gaussian"])
def test_output_statistics_of_any_network_match_a_plain_numpy_simulation(engine: str) -> None:
    R = 3000
    res = simulate(MIXED, replicates=R, seed=11, engine=engine)
    assert not res.is_mlp and res.depth == res.positions == 5
    out2, grad2 = _numpy_simulation(MIXED, R, seed=12)
    for name, ref in (("output_second", out2), ("output_gradient_second", grad2)):
        ours = res.per_replicate(name)
        assert ours.shape == (R, 5)
        se = np.sqrt(ours.var(axis=0, ddof=1) / R + ref.var(axis=0, ddof=1) / R)
        assert np.all(np.abs(ours.mean(axis=0) - ref.mean(axis=0)) <= 5 * se), (name, engine)


def test_mlp_output_gradient_is_seeded_at_the_last_output() -> None:
    # ReLU MLP: dL/da_L ~ N(0, 1) at the last output, so E (dL/dz_L)^2 = E phi'(z_L)^2 = 1/2
    res = simulate(Network.mlp("relu", "he_normal", fan_in=32, depth=3), replicates=4000, seed=5)
    g = res.per_replicate("output_gradient_second")
    assert g.shape == (4000, 6)
    for col, expected in ((5, 1.0), (4, 0.5)):
        se = g[:, col].std(ddof=1) / math.sqrt(g.shape[0])
        assert abs(g[:, col].mean() - expected) <= 5 * se
    # forward statistics per position are the MLP's, interleaved
    assert np.array_equal(res.per_replicate("output_second")[:, 0::2],
                          res.per_replicate("preactivation_second"))
    assert np.array_equal(res.per_replicate("output_mean")[:, 1::2],
                          res.per_replicate("activation_mean"))
    # the MLP statistics keep their seed at z_L: E delta_L^2 = 1
    d = res.per_replicate("delta_second", 3)
    assert abs(d.mean() - 1.0) <= 5 * d.std(ddof=1) / math.sqrt(d.size)
    # the keyword form records the MLP statistics only (no second backward pass), bit for bit
    kw = simulate("relu", "he_normal", fan_in=32, depth=3, replicates=4000, seed=5)
    assert not kw.output_gradient_recorded and res.output_gradient_recorded
    for q in ("delta_second", "gradient_second", "weight_gradient_second", "output_second"):
        assert np.array_equal(kw.per_replicate(q), res.per_replicate(q))
    with pytest.raises(InvalidArgument, match="pass a Network"):
        kw.per_replicate("output_gradient_second")


def test_identity_mlp_passes_coincide() -> None:
    res = simulate("linear", "lecun_normal", fan_in=6, depth=3, replicates=100, seed=2,
                   engine="dense")
    g = res.per_replicate("output_gradient_second")
    assert np.array_equal(g[:, 0::2], res.per_replicate("delta_second"))
    assert np.array_equal(g[:, 1:-1:2], res.per_replicate("gradient_second")[:, 1:])


@pytest.mark.parametrize("engine, batch", [("dense", 1), ("gaussian", 1), ("gaussian", 3),
                                           ("dense", 2)])
def test_any_network_is_bit_identical_for_every_chunk_size(engine: str, batch: int) -> None:
    kw = dict(replicates=150, seed=4, engine=engine, batch=batch)
    a = simulate(MIXED, **kw)
    b = simulate(MIXED, **kw, chunk_size=1)
    for q in res_quantities(a):
        assert np.array_equal(a.masked(q).data, b.masked(q).data), q


def res_quantities(res: varprop.SimulationResult) -> tuple[str, ...]:
    outputs = tuple(q for q in res.OUTPUT_QUANTITIES
                    if q != "output_gradient_second" or res.output_gradient_recorded)
    return outputs + (res.QUANTITIES if res.is_mlp else ())


def test_network_form_equals_the_keyword_form() -> None:
    kw = dict(replicates=70, seed=3, batch=2)
    a = simulate("tanh", "he_normal", fan_in=5, fan_out=7, depth=3, bias_variance=0.1,
                 input_variance=2.0, **kw)
    net = Network.mlp("tanh", "he_normal", fan_in=5, fan_out=7, depth=3, bias_variance=0.1,
                      input_variance=2.0)
    b = simulate(net, **kw)
    for q in res_quantities(a):
        assert np.array_equal(a.masked(q).data, b.masked(q).data), q
    assert (a.widths, a.bias_variance, a.input_variance) == (b.widths, b.bias_variance, 2.0)


def test_errors_name_the_argument() -> None:
    with pytest.raises(InvalidArgument, match="fan_in=4 is not allowed.*left unset when the first argument is a Network"):
        simulate(MIXED, fan_in=4)
    with pytest.raises(InvalidArgument, match="quantity='delta_second'.*MLP-shaped"):
        simulate(MIXED, replicates=4).per_replicate("delta_second")
    with pytest.raises(InvalidArgument, match="init=None"):
        simulate("relu", fan_in=4)
    with pytest.raises(InvalidArgument, match="layer=6"):
        simulate(MIXED, replicates=4).per_replicate("output_second", 6)


def test_underflow_masks_follow_the_layer_rules() -> None:
    # tiny weights: the Dense outputs flush to zero (an underflow), all later entries masked;
    # the backward pass of those replicates is not assessed
    tiny = varprop.init_scheme("normal", std=1e-3)
    net = Network([layers.Dense(8, tiny), layers.Dense(8, tiny), "tanh"] * 40, input_shape=(8,))
    res = simulate(net, replicates=64, seed=4, dtype="float32")
    assert not res.is_mlp
    first = res.underflow_layer_per_replicate
    assert (first > 0).all()
    assert all(isinstance(net.layers[u - 1], layers.Dense) for u in first)
    col = np.arange(1, res.positions + 1)[None, :]
    assert np.array_equal(res.output_valid, col < first[:, None])
    assert not res.output_gradient_valid.any()
    assert (res.gradient_underflow_layer_per_replicate == -1).all()
