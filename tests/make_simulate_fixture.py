"""Record the per-replicate results of ``simulate`` (keyword form) for a grid of configurations.

Run once from the pre-change code (``python tests/make_simulate_fixture.py``) to write
``tests/data/simulate_fixture.json``; ``tests/test_engines.py`` recomputes every configuration
and compares the SHA-256 (first 64 bits) of every array's bytes (bit-identical results), so this script and its
grid are the definition of "unchanged".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

import varprop

OUT = Path(__file__).parent / "data" / "simulate_fixture.json"

#: (activation, init, shape kwargs, extra kwargs) -- every engine/dtype/batch/bias path.
CONFIGS: list[dict] = []
for act in ("relu", "tanh", "sigmoid", "x*exp(-x**2)"):
    for init in ("he_normal", "lecun_uniform", "orthogonal", ("normal", {"mean": 0.05, "std": 0.1})):
        for engine in ("auto", "dense", "gaussian"):
            if engine == "gaussian" and init in ("lecun_uniform", "orthogonal"):
                continue
            for dtype in ("float64", "float32"):
                for batch in (1, 3):
                    CONFIGS.append(dict(activation=act, init=init, engine=engine, dtype=dtype,
                                        batch=batch, widths=[5, 7, 4, 6], replicates=70,
                                        bias_variance=0.1 if batch == 3 else 0.0, seed=3))
# bigger, deeper, chunked, over- and underflowing runs
CONFIGS += [
    dict(activation="relu", init="he_normal", fan_in=40, depth=6, replicates=200, seed=1),
    dict(activation="relu", init="he_normal", fan_in=40, depth=6, replicates=200, seed=1,
         chunk_size=64),
    dict(activation="tanh", init="lecun_normal", fan_in=16, fan_out=32, depth=4, replicates=130,
         seed=7, batch=4, engine="gaussian", chunk_size=1),
    dict(activation="relu", init="he_uniform", fan_in=30, depth=3, replicates=90, seed=2,
         engine="dense", chunk_size=10, input_variance=2.5),
    dict(activation="linear", init=("normal", {"std": 40.0}), fan_in=8, depth=60, replicates=66,
         seed=4, dtype="float32"),
    dict(activation="linear", init=("normal", {"std": 1e-3}), fan_in=8, depth=60, replicates=66,
         seed=4, dtype="float32"),
    dict(activation="linear", init=("normal", {"std": 1e-3}), fan_in=8, depth=60, replicates=66,
         seed=4, dtype="float32", engine="dense", batch=2),
    dict(activation="tanh", init=("normal", {"std": 50.0}), fan_in=6, depth=40, replicates=64,
         seed=5),
    dict(activation="exp(x)", init=("normal", {"std": 3.0}), fan_in=6, depth=12, replicates=64,
         seed=6, dtype="float32"),
    dict(activation="relu", init="truncated_normal", fan_in=12, depth=3, replicates=64, seed=8,
         bias_variance=0.3, batch=2),
]


def run(config: dict) -> varprop.SimulationResult:
    kw = dict(config)
    init = kw.pop("init")
    if isinstance(init, (list, tuple)):
        init = varprop.init_scheme(init[0], **init[1])
    return varprop.simulate(kw.pop("activation"), init, **kw)


#: Every array the result exposes (per-replicate statistics, masks and layer indices).
ARRAYS = ("valid", "gradient_valid", "input_second", "nonfinite_layer_per_replicate",
          "underflow_layer_per_replicate", "gradient_nonfinite_layer_per_replicate",
          "gradient_underflow_layer_per_replicate")


def digest(res: varprop.SimulationResult) -> dict[str, str]:
    out = {}
    for q in res.QUANTITIES:
        arr = np.ascontiguousarray(res.masked(q).data, dtype=np.float64)
        out[q] = hashlib.sha256(arr.tobytes()).hexdigest()[:16]
    for name in ARRAYS:
        arr = np.ascontiguousarray(getattr(res, name))
        out[name] = hashlib.sha256(arr.astype(np.float64).tobytes()).hexdigest()[:16]
    out["engine"] = res.engine
    out["block_size"] = str(res.block_size)
    return out


def main() -> None:
    records = [{"config": c, "digest": digest(run(c))} for c in CONFIGS]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("[\n" + ",\n".join(json.dumps(r, sort_keys=True) for r in records) + "\n]\n")
    print(f"wrote {len(records)} records to {OUT}")


if __name__ == "__main__":
    main()
