"""Benchmark predict_variance: cold (compile), warm uncached recursion, and cached calls.

Run:  python benchmarks/bench_predict.py

Prints absolute timings and the ratios measured in this one run (the machines here are noisy:
compare ratios, not absolute numbers across runs).
"""

from __future__ import annotations

import time

from varprop import activation, init_scheme, predict_variance
from varprop.components.activations import _build_cached as _act_cache
from varprop.theory.moments import zero_mean_moments as _zero_mean_moments
from varprop.theory.predict import _propagate_cached


def best_of(fn, repeat: int = 5, number: int = 20) -> float:
    """Best mean seconds per call over ``repeat`` batches of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def main() -> None:
    depth, width = 100, 256
    print(f"predict_variance, depth {depth}, width {width} (seconds per call; best of 5)")
    print(f"{'configuration':<34}{'cold':>12}{'warm':>12}{'cached':>12}{'cold/warm':>11}")
    for act_name, method in [("relu", "auto"), ("linear", "auto"), ("erf", "auto"),
                             ("tanh", "closed_form"), ("tanh", "auto"), ("sigmoid", "auto")]:
        kwargs = dict(fan_in=width, depth=depth, method=method, quantity="gradient", per_layer=True)

        def cold() -> None:
            _act_cache.cache_clear()
            _zero_mean_moments.cache_clear()
            _propagate_cached.cache_clear()
            predict_variance(act_name, "he_normal", **kwargs)

        def warm() -> None:  # compiled moment functions kept, the recursion recomputed
            _propagate_cached.cache_clear()
            predict_variance(act_name, "he_normal", **kwargs)

        def cached() -> None:
            predict_variance(act_name, "he_normal", **kwargs)

        t_cold = best_of(cold, repeat=3, number=3)
        t_warm = best_of(warm)
        t_cached = best_of(cached, number=200)
        label = f"{act_name} ({method})"
        print(f"{label:<34}{t_cold:>12.2e}{t_warm:>12.2e}{t_cached:>12.2e}{t_cold / t_warm:>11.0f}")
    scheme = init_scheme("uniform")
    t = best_of(lambda: (_propagate_cached.cache_clear(),
                         predict_variance(activation("tanh"), scheme, fan_in=64, depth=10)), number=3)
    print(f"non-zero-mean weights (uniform[0,1), tanh, depth 10, moments conditional on the layer-1 shift): {t:.2e} s")


if __name__ == "__main__":
    main()
