"""Benchmark the checker: seconds to a decisive verdict, ReLU / He normal, n = 512, L = 50, rtol 1%.

Run:  python benchmarks/bench_check.py          # one-step checks + full check at the default budget
      python benchmarks/bench_check.py --full   # also the full check with budget 2**18 (~2 min)

The full ensemble check of E[z_L^2] has replicate CV^2 = (1 + 5/n)^L - 1 = 0.63 here, so a +-1%
interval needs ~10^5 replicates; the one-step check (verify_step) tests the same map with
CV ~ sqrt(2/n) and is decisive with a few hundred.  Prints the ratio measured in this one run.
"""

from __future__ import annotations

import argparse
import time

from varprop.checking.check import verify, verify_step

CONFIG = dict(fan_in=512, depth=50, rtol=0.01, seed=0)


def timed(label: str, fn) -> float:
    t0 = time.perf_counter()
    v = fn()
    dt = time.perf_counter() - t0
    lo, hi = v.relative_interval
    print(f"{label:<52}{v.status:>13}{v.replicates:>9}{dt:>9.2f}  [{lo:+.4f}, {hi:+.4f}]")
    return dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also run the full check at budget 2**18")
    args = parser.parse_args()
    print("ReLU / he_normal, n=512, L=50, rtol 1%, alpha 0.01, seed 0")
    print(f"{'check':<52}{'verdict':>13}{'reps':>9}{'seconds':>9}  relative interval")
    step = timed("verify_step, preactivation (one-step map)",
                 lambda: verify_step("relu", "he_normal", quantity="preactivation", **CONFIG))
    timed("verify_step, activation second moment, budget 8192",
          lambda: verify_step("relu", "he_normal", quantity="activation_second_moment",
                              budget=8192, **CONFIG))
    timed("verify, E z_L^2, default budget",
          lambda: verify("relu", "he_normal", quantity="preactivation", **CONFIG))
    if args.full:
        full = timed("verify, E z_L^2, budget 2**18",
                     lambda: verify("relu", "he_normal", quantity="preactivation",
                                    budget=2**18, **CONFIG))
        print(f"ratio full check (budget 2**18) / one-step check: {full / step:.0f}x")


if __name__ == "__main__":
    main()
