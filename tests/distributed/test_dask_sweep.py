"""A sweep on a local Dask cluster is bit-identical to the serial run (optional ``distributed``)."""

from __future__ import annotations

import pytest

distributed = pytest.importorskip("distributed")

from varprop.checking.sweeps import sweep  # noqa: E402

pytestmark = pytest.mark.distributed

from varprop import init_scheme  # noqa: E402

# includes a parameterised scheme: it travels to the workers by (name, params)
GRID = {"activation": ["relu", "tanh"],
        "init": ["he_normal", "orthogonal", init_scheme("xavier_normal", gain=1.5)],
        "fan_in": [16, 32], "depth": [1, 3]}


def test_dask_cluster_matches_serial() -> None:
    serial = sweep(GRID, workers=1, seed=3, replicates=200)
    # two worker processes (fresh interpreters: configurations travel as plain data)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)  # both registered before any task (a loaded machine)
        on_dask = sweep(GRID, executor=client.get_executor(), seed=3, replicates=200)
        assert len(cluster.workers) == 2
    assert on_dask.executor == "ClientExecutor"
    assert on_dask == serial         # everything but timings, floats compared exactly
    assert on_dask.to_json(timing=False) == serial.to_json(timing=False)
