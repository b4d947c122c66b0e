"""Gradient growth per block of deep batch-normalised MLPs (the table in
varprop.network.layers.batchnorm).

A from-scratch NumPy Monte Carlo of Dense(n) -> BatchNorm(train, batch B) -> phi repeated L times
(He gain for relu, LeCun otherwise, eps = 1e-5, no bias; batch normalisation and its backward
written out here, not varprop's sampler), unit-variance i.i.d. gradients at the output.  For each
case: the per-block growth rate of E delta^2 at the blocks' inputs, fitted over blocks 3..L-2,
predicted by varprop (the joint rule over the sphere law), by the "factorised" rule (the
activation's derivative treated as independent of the BatchNorm Jacobian), and measured (rate of
the mean over networks, and the mean per-network log-slope with its standard error).

    PYTHONPATH=src python benchmarks/measure_batchnorm.py [--quick] [relu:8 tanh:16 ...]
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from varprop.components.activations import resolve_activation
from varprop.layers import BatchNorm
from varprop.network.field import Field, GradField

EPS = 1e-5
ACTS = {"linear": (lambda x: x, lambda x: np.ones_like(x), 1.0),
        "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float), 2.0),
        "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2, 1.0)}
CASES = [(a, b) for b in (4, 8, 16) for a in ("linear", "relu", "tanh")]


def predicted(act: str, batch: int, depth: int, joint: bool = True) -> np.ndarray:
    """E delta^2 at each block's input from varprop's field rules (Dense by hand: gain x)."""
    gain = ACTS[act][2]
    bn, phi = BatchNorm(EPS, batch_size=batch), resolve_activation(act)
    x, fields = Field((8,), -1, 0.0, 1.0, None, 0.0), []
    for _ in range(depth):
        h = Field((8,), -1, 0.0, gain * float(x.second), None, gain * float(x.batch_cross))
        y = bn.field_forward(h)
        x = y.law.nonlinearity_forward(phi, y)
        fields.append((h, y))
    g, out = GradField((8,), -1, 1.0, None, 0.0), []
    for h, y in reversed(fields):
        gy = y.law.nonlinearity_backward(phi, g, y)
        gh = bn.field_backward(gy if joint else gy.with_(factor=None), h, y)
        g = GradField((8,), -1, gain * float(gh.second), None, gain * float(gh.batch_cross))
        out.append(float(g.second))
    return np.array(out[::-1])


def simulate(act: str, batch: int, depth: int, n: int, replicates: int, seed: int) -> np.ndarray:
    """(replicates, depth): mean over units and batch of delta^2 at each block's input."""
    f, df, gain = ACTS[act]
    rng = np.random.default_rng(seed)
    out = np.empty((replicates, depth))
    for r in range(replicates):
        x, cache = rng.standard_normal((n, batch)), []
        for _ in range(depth):
            w = rng.standard_normal((n, n)) * math.sqrt(gain / n)
            h = w @ x
            c = h - h.mean(1, keepdims=True)
            sig = np.sqrt((c * c).mean(1, keepdims=True) + EPS)
            y = c / sig
            x = f(y)
            cache.append((w, y, sig))
        g = rng.standard_normal((n, batch))
        for k in reversed(range(depth)):
            w, y, sig = cache[k]
            gy = df(y) * g
            gh = (gy - gy.mean(1, keepdims=True) - y * (gy * y).mean(1, keepdims=True)) / sig
            g = w.T @ gh
            out[r, k] = np.mean(g * g)
    return out


def rate(values: np.ndarray, blocks: slice) -> float:
    ls = np.arange(values.shape[-1])[blocks]
    return float(math.exp(-np.polyfit(ls, np.log(values[blocks]), 1)[0]))


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    cases = [(a.split(":")[0], int(a.split(":")[1])) for a in argv if ":" in a] or CASES
    depth, n, reps = (10, 128, 4) if quick else (20, 256, 10)
    blocks = slice(2, depth - 2)
    print("| B | phi | predicted | factorised | MC (mean) | MC (typical) | time |")
    for act, batch in cases:
        t0 = time.perf_counter()
        pred, fact = predicted(act, batch, depth), predicted(act, batch, depth, joint=False)
        g2 = simulate(act, batch, depth, n, reps, seed=5)
        ls = np.arange(depth)[blocks]
        slopes = np.array([np.polyfit(ls, np.log(row[blocks]), 1)[0] for row in g2])
        typical = math.exp(-slopes.mean())
        se = typical * slopes.std(ddof=1) / math.sqrt(reps)
        print(f"| {batch} | {act} | {rate(pred, blocks):.4f} | {rate(fact, blocks):.4f} | "
              f"{rate(g2.mean(0), blocks):.4f} | {typical:.4f} +- {se:.4f} | "
              f"{time.perf_counter() - t0:.0f} s |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
