"""Time ``simulate(..., backward=False)`` against the full forward and backward run, same seed.

Run:  python benchmarks/bench_forward_only.py [--rounds 3]

The two runs alternate within each round and the best round of each is kept (the machine is
shared), and the forward statistics are checked to be bit-identical.  Prints the CPU seconds of
each and the ratio forward-only / full.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from varprop import simulate
from varprop.simulation.result import FORWARD_QUANTITIES

CASES = [
    # (label, args, kwargs): the documents job's configurations
    ("uniform U[0,1), n=64, L=5 (dense)", ("tanh", "uniform"), dict(fan_in=64, depth=5,
                                                                    replicates=8192)),
    ("orthogonal, n=64, L=5 (dense)", ("relu", "orthogonal"), dict(fan_in=64, depth=5,
                                                                   replicates=4096)),
    ("he_normal, n=64, L=5 (Gaussian shortcut)", ("relu", "he_normal"), dict(fan_in=64, depth=5,
                                                                             replicates=65536)),
    ("xavier_uniform, tanh, n=256, L=100 (dense)", ("tanh", "glorot_uniform"),
     dict(fan_in=256, depth=100, replicates=32)),
]


def cpu(args: tuple, kwargs: dict, backward: bool) -> tuple[float, object]:
    t0 = time.process_time()
    res = simulate(*args, seed=1, backward=backward, **kwargs)
    return time.process_time() - t0, res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'configuration':<46}{'full s':>9}{'fwd s':>9}{'ratio':>8}")
    for label, a, kw in CASES:
        simulate(*a, **{**kw, "replicates": 64})  # warm caches
        full, fwd = [], []
        for _ in range(args.rounds):
            t, r_full = cpu(a, kw, True)
            full.append(t)
            t, r_fwd = cpu(a, kw, False)
            fwd.append(t)
        assert all(np.array_equal(r_full._stats[q], r_fwd._stats[q])  # type: ignore[attr-defined]
                   for q in FORWARD_QUANTITIES)
        print(f"{label:<46}{min(full):9.3f}{min(fwd):9.3f}{min(fwd) / min(full):8.2f}")


if __name__ == "__main__":
    main()
