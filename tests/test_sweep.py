"""Tests of varprop.sweep: grids, executors, bit-identity, results (a wrapper of check_matrix)."""

from __future__ import annotations

import json
import pickle
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

import varprop
from varprop import activation, init_scheme
from varprop.checking.check import Verdict, config_seed, verify
from varprop.checking.sweeps import SweepResult, expand_grid, sweep

# small and fast: a fixed number of replicates of narrow, shallow nets
GRID = {"activation": ["relu", "tanh", "linear"], "init": ["he_normal", "xavier_uniform"],
        "fan_in": [16, 32], "depth": [1, 3]}
COMMON = {"replicates": 256}


@pytest.fixture(scope="module")
def serial() -> SweepResult:
    return sweep(GRID, workers=1, seed=7, **COMMON)


def _strip(v: Verdict) -> dict:
    d = v.to_dict()
    d.pop("elapsed")
    return d


def test_expand_grid_order() -> None:
    got = expand_grid({"activation": ["relu", "tanh"], "init": "he_normal", "fan_in": [16, 32]})
    assert got == [
        {"activation": "relu", "init": "he_normal", "fan_in": 16},
        {"activation": "relu", "init": "he_normal", "fan_in": 32},
        {"activation": "tanh", "init": "he_normal", "fan_in": 16},
        {"activation": "tanh", "init": "he_normal", "fan_in": 32},
    ]
    assert expand_grid({"activation": "relu", "init": "he_normal",
                        "widths": [[4, 8, 4], [4, 4]]})[1]["widths"] == [4, 4]


def test_serial_result_shape_and_order(serial: SweepResult) -> None:
    assert len(serial) == 3 * 2 * 2 * 2
    assert serial.executor == "serial"
    first, last = serial.configs[0], serial.configs[-1]
    assert (first["activation"], first["fan_in"], first["depth"]) == ("relu", 16, 1)
    assert (last["activation"], last["init"]) == ("linear", "xavier_uniform")
    assert all(isinstance(v, Verdict) for v in serial)
    assert all(v.replicates == 256 for v in serial)
    assert len({v.seed for v in serial}) == len(serial)       # every configuration its own stream
    # linear and ReLU nets under He are exact at finite width: nothing true may be refuted here
    assert not serial.any_refuted


def test_process_pool_is_bit_identical(serial: SweepResult) -> None:
    with ProcessPoolExecutor(2) as pool:
        parallel = sweep(GRID, executor=pool, seed=7, **COMMON)
    assert parallel.executor == "ProcessPoolExecutor"
    assert parallel == serial            # everything but timings, floats compared exactly
    assert parallel.to_json(timing=False) == serial.to_json(timing=False)
    assert [_strip(v) for v in parallel] == [_strip(v) for v in serial]


def test_default_local_processes_threads_and_parameterised_objects() -> None:
    # parameterised schemes/activations hold compiled lambdas: they travel by (name, params)
    configs = [
        {"activation": activation("leaky_relu", negative_slope=0.2),
         "init": init_scheme("he_normal", mode="fan_out"), "fan_in": 24, "fan_out": 12},
        {"activation": "tanh", "init": init_scheme("xavier_normal", gain=1.5), "fan_in": 12,
         "depth": 2},
        {"activation": "relu", "init": "orthogonal", "fan_in": 12, "depth": 2},
    ]
    local = sweep(configs, workers=2, seed=1, replicates=256)
    assert local.executor == "ProcessPoolExecutor(2)"
    with ThreadPoolExecutor(2) as pool:
        threads = sweep(configs, executor=pool, seed=1, replicates=256)
    assert local == threads == sweep(configs, workers=1, seed=1, replicates=256)
    s = init_scheme("he_normal", mode="fan_out")
    assert pickle.loads(pickle.dumps(s)) == s


def test_verdict_is_verify_at_the_family_level(serial: SweepResult) -> None:
    i = 13
    cfg = serial.configs[i]
    assert serial[i].seed == config_seed(cfg, 7)
    single = verify(**cfg, seed=config_seed(cfg, 7), alpha=0.01 / len(serial))
    assert (single.estimate, single.interval) == (serial[i].estimate, serial[i].interval)


def test_uncorrected_subsweep_reproduces_full_sweep() -> None:
    full = sweep(GRID, workers=1, seed=7, correction="none", **COMMON)
    sub = [c for c in expand_grid(GRID) if c["activation"] == "tanh"]
    part = sweep(sub, workers=1, seed=7, correction="none", **COMMON)
    picked = [v for c, v in zip(full.configs, full) if c["activation"] == "tanh"]
    assert [_strip(v) for v in part] == [_strip(v) for v in picked]


def test_result_serialisation(serial: SweepResult) -> None:
    data = json.loads(serial.to_json())
    assert data["seed"] == 7 and len(data["results"]) == len(serial)
    assert data["results"][0]["config"]["activation"] == "relu"
    assert data["results"][0]["verdict"]["status"] == serial[0].status
    assert sum(data["counts"].values()) == len(serial)
    assert "elapsed" not in json.loads(serial.to_json(timing=False))
    table = serial.table()
    assert len(table.splitlines()) == len(serial) + 3
    assert "xavier_uniform" in table and "configurations" in table.splitlines()[-1]


def test_progress_callback_and_public_export() -> None:
    calls = []
    small = {"activation": "linear", "init": "he_normal", "fan_in": 8, "depth": [1, 2],
             "replicates": 64}
    res = sweep(small, workers=1, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    # varprop.sweep is the function (the module is varprop.checking.sweeps: no name clash)
    assert varprop.sweep is sweep
    assert varprop.sweep(small, workers=1) == res


@pytest.mark.parametrize(("configs", "kwargs", "exc", "match"), [
    ([], {}, ValueError, "configs"),
    ("relu", {}, TypeError, "configs"),
    ([{"activation": "relu", "init": "he_normal", "fan_in": 8, "alpha": 0.1}], {}, ValueError,
     "alpha"),
    ([{"activation": "relu", "init": "he_normal", "fan_inn": 8}], {}, ValueError, "fan_in"),
    ([{"init": "he_normal", "fan_in": 8}], {}, ValueError, "activation"),
    (["relu"], {}, TypeError, r"configs\[0\]"),
    ({"activation": "relu", "init": "he_normal", "widths": [4, 4]}, {}, ValueError, "widths"),
    ({"activation": "relu", "init": "he_normal", "fan_in": []}, {}, ValueError, "fan_in"),
    ({"activation": "relu", "init": "he_normal", "fan_in": 8}, {"workers": 0}, ValueError,
     "workers"),
    ({"activation": "relu", "init": "he_normal", "fan_in": 8}, {"seed": -1}, ValueError, "seed"),
    ({"activation": "relu", "init": "he_normal", "fan_in": 8}, {"alpha": 2}, ValueError, "alpha"),
    ({"activation": "relu", "init": "he_normal", "fan_in": 8}, {"correction": "holmes"},
     ValueError, "holm"),
    ({"activation": "relu", "init": "he_normal", "fan_in": 8}, {"executor": object()}, TypeError,
     "executor"),
    ({"activation": "relu", "init": "he_normal", "fan_in": 8}, {"progress": "yes"}, TypeError,
     "progress"),
])
def test_bad_arguments(configs: object, kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        sweep(configs, **kwargs)  # type: ignore[arg-type]


def test_executor_and_workers_exclusive() -> None:
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="workers"):
        sweep({"activation": "relu", "init": "he_normal", "fan_in": 8}, executor=pool, workers=2)


def test_unusable_configuration_is_reported_not_fatal() -> None:
    # N(0, 1) weights at width 64: the predicted variance leaves the float range long before 400
    with pytest.warns(varprop.VarpropWarning, match="float range"):
        res = sweep([{"activation": "relu", "init": "he_normal", "fan_in": 8, "replicates": 64},
                     {"activation": "relu", "init": "standard_normal", "fan_in": 64,
                      "depth": 400, "replicates": 64}], workers=1)
    assert isinstance(res[0], Verdict)
    assert isinstance(res[1], str) and "float range" in res[1]
    assert res.counts()["error"] == 1
    assert res.table().splitlines()[3].startswith("error")
    assert json.loads(res.to_json())["results"][1]["error"] == res[1]
