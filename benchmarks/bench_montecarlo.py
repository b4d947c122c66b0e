"""Benchmark the Monte Carlo engine (issue 3): every ratio is measured in this one run.

Run:  python benchmarks/bench_montecarlo.py [--quick]

Prints, for ReLU/He at width n = 512, depth L = 20, batch 1:

1. the Gaussian shortcut vs the dense engine (seconds per replicate; aim >= 100x);
2. the dense engine vs the floor of its own work -- drawing the same weight matrices with the same
   generator and dtype plus the forward and backward matrix products of the same shapes, timed
   alone without any statistics (aim <= 1.3x);
3. varprop (engine="auto") vs a seed-style loop (one input vector at a time, a new weight matrix
   every layer, forward only, as in the seeds' notebooks) for the same number of replicates
   (aim >= 50x).

The machines here are shared and noisy: each timing is the best of a few rounds in which all
contenders run in turn, and ratios are what to compare across runs, not absolute seconds.  The two baselines (floor, seed loop) are each
timed with OpenBLAS at its default thread count and limited to one thread (as inside
``simulate``), and the faster is kept: the ratios are conservative.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from varprop.simulation.blas import single_threaded_blas
from varprop.simulation.montecarlo import simulate

N, L = 512, 20


def best_interleaved(fns: dict[str, object], repeat: int) -> dict[str, float]:
    """Best seconds of each function over ``repeat`` rounds, the functions run in turn within a
    round (so that a burst of load on the shared machine hits all of them alike)."""
    out = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[k] = min(out[k], time.perf_counter() - t0)
    return out


def floor_dense(replicates: int, dtype: np.dtype) -> None:
    """The irreducible work of the dense engine: weights + forward and backward products."""
    rng = np.random.default_rng(0)
    scale = dtype.type(np.sqrt(2.0 / N))
    for _ in range(replicates):
        a = rng.standard_normal((N, 1), dtype=dtype)
        ws = []
        for _ in range(L):
            w = rng.standard_normal((N, N), dtype=dtype)
            a = np.maximum(scale * (w @ a), 0)
            ws.append(w)
        d = rng.standard_normal((N, 1), dtype=dtype)
        for w in reversed(ws):
            d = scale * (w.T @ d)


def seed_loop(replicates: int, dtype: np.dtype) -> list[float]:
    """The seeds' notebooks: one vector at a time, a new weight matrix every layer, forward only,
    printing (here: keeping) reduce_std of each layer."""
    rng = np.random.default_rng(0)
    stds = []
    for _ in range(replicates):
        x = rng.standard_normal(N).astype(dtype)
        for _ in range(L):
            w = (rng.standard_normal((N, N)) * np.sqrt(2.0 / N)).astype(dtype)
            x = np.maximum(w @ x, 0)
            stds.append(float(np.std(x)))
    return stds


def _one_thread(fn, *args):
    with single_threaded_blas():
        return fn(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer replicates and repeats")
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    r_dense = 6 if args.quick else 12
    r_gauss = 4096 if args.quick else 8192
    kw = dict(fan_in=N, depth=L, batch=1)
    simulate("relu", "he_normal", fan_in=8, depth=2, replicates=8, engine="dense")  # warm caches

    print(f"varprop Monte Carlo engine: ReLU / He normal, n = {N}, L = {L}, batch 1 "
          f"(best of {repeat})")
    rows = []
    for dtype in ("float32", "float64"):
        dt = np.dtype(dtype)
        t = best_interleaved({
            "dense": lambda: simulate("relu", "he_normal", **kw, replicates=r_dense, seed=1,
                                      dtype=dtype, engine="dense"),
            "floor": lambda: floor_dense(r_dense, dt),
            "floor1": lambda: _one_thread(floor_dense, r_dense, dt),
            "seed": lambda: seed_loop(r_dense, dt),
            "seed1": lambda: _one_thread(seed_loop, r_dense, dt),
            "gauss": lambda: simulate("relu", "he_normal", **kw, replicates=r_gauss, seed=1,
                                      dtype=dtype, engine="auto"),
        }, repeat)
        t_dense = t["dense"] / r_dense
        t_floor = min(t["floor"], t["floor1"]) / r_dense
        t_seed = min(t["seed"], t["seed1"]) / r_dense
        t_gauss = t["gauss"] / r_gauss
        rows.append((dtype, t_gauss, t_dense, t_floor, t_seed))
        print(f"\n[{dtype}] seconds per replicate (forward + backward unless noted)")
        print(f"  gaussian shortcut (auto)          {t_gauss:10.3e}   ({r_gauss} replicates)")
        print(f"  dense engine                      {t_dense:10.3e}   ({r_dense} replicates)")
        print(f"  dense floor (RNG + matmul alone)  {t_floor:10.3e}")
        print(f"  seed-style loop (forward only)    {t_seed:10.3e}")
        print(f"  ratio shortcut vs dense           {t_dense / t_gauss:10.0f}x   (aim >= 100x)")
        print(f"  ratio dense / its floor           {t_dense / t_floor:10.2f}x   (aim <= 1.3x)")
        print(f"  ratio varprop (auto) vs seed loop {t_seed / t_gauss:10.0f}x   (aim >= 50x)")
        print(f"  ratio varprop dense vs seed loop  {t_seed / t_dense:10.2f}x   "
              "(dense also does the backward pass)")
    print("\nsummary (dtype, shortcut/dense, dense/floor, seed/auto):")
    for dtype, tg, td, tf, ts in rows:
        print(f"  {dtype}: {td / tg:.0f}x  {td / tf:.2f}x  {ts / tg:.0f}x")


if __name__ == "__main__":
    main()
