"""Finite-width deviation of the recurrent mean field (the table in varprop.network.layers.recurrent).

A from-scratch NumPy Monte Carlo of h_t = phi(W h_{t-1} + U x_t), h_0 = 0, x_t ~ N(0, 1) i.i.d.
(n_in = 64), W ~ N(0, c/n), U ~ N(0, 1/n_in), no bias, T = 50 steps, unit-variance i.i.d.
gradients at the output of every step, back-propagation through time written out here (it does
not call varprop's sampler).  For each case and width: the relative deviation of the simulated
E h_T^2 and E (dL/dx_1)^2 from varprop's mean field, with two standard errors over replicates.

    PYTHONPATH=src python benchmarks/measure_recurrent.py [--quick] [tanh:2.0:0.01 ...]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from varprop import init_scheme
from varprop.layers import Recurrent
from varprop.network.field import FieldNeeds, input_field, output_gradient_field

T, N_IN, BATCH = 50, 64, 4
#: (activation, c = v_w n, input variance): the weak-input tanh cases explode through time
CASES = [("tanh", 0.5, 1.0), ("tanh", 1.0, 1.0), ("tanh", 2.0, 1.0), ("relu", 1.0, 1.0),
         ("relu", 2.0, 1.0), ("tanh", 2.0, 0.01), ("tanh", 3.0, 0.01)]


def simulate(act: str, c: float, n: int, replicates: int, seed: int, input_variance: float = 1.0
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate: mean over units and batch of h_T^2 and of (dL/dx_1)^2."""
    rng = np.random.default_rng(seed)
    phi = np.tanh if act == "tanh" else (lambda z: np.maximum(z, 0.0))
    dphi = (lambda z: 1.0 - np.tanh(z) ** 2) if act == "tanh" else (lambda z: (z > 0).astype(float))
    fwd, bwd = np.empty(replicates), np.empty(replicates)
    for r in range(replicates):
        w = rng.standard_normal((n, n)) * np.sqrt(c / n)
        u = rng.standard_normal((n, N_IN)) * np.sqrt(1.0 / N_IN)
        x = rng.standard_normal((T, BATCH, N_IN)) * np.sqrt(input_variance)
        h = np.zeros((BATCH, n))
        zs = []
        for t in range(T):
            z = h @ w.T + x[t] @ u.T
            zs.append(z)
            h = phi(z)
        fwd[r] = np.mean(h**2)
        g = rng.standard_normal((T, BATCH, n))
        carry = np.zeros((BATCH, n))
        for t in range(T - 1, -1, -1):
            delta = dphi(zs[t]) * (g[t] + carry @ w)
            carry = delta
        bwd[r] = np.mean((delta @ u) ** 2)  # delta_1 after the loop: dL/dx_1 = U^T delta_1
    return fwd, bwd


def predict(act: str, c: float, n: int, input_variance: float = 1.0) -> tuple[float, float]:
    layer = Recurrent(n, act, steps=T, init=init_scheme("variance_scaling", scale=c,
                                                        distribution="normal"))
    f = input_field((T, N_IN), -1, input_variance, FieldNeeds())
    out = layer.field_forward(f)
    g = layer.field_backward(output_gradient_field(out.shape, -1, FieldNeeds()), f, out)
    return float(out.second[-1]), float(g.second[0])


def main() -> None:
    quick = "--quick" in sys.argv
    widths = (64, 128) if quick else (64, 128, 256, 512)
    print(f"T = {T}, n_in = {N_IN}, batch {BATCH}")
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    for act, c, iv in CASES:
        if only and f"{act}:{c}:{iv}" not in only:
            continue
        for n in widths:
            reps = 400 if n <= 128 else 200
            t0 = time.perf_counter()
            fwd, bwd = simulate(act, c, n, reps // (4 if quick else 1), seed=1000 * n + int(10 * c),
                                input_variance=iv)
            pf, pb = predict(act, c, n, iv)
            cells = []
            for sim, pred in ((fwd, pf), (bwd, pb)):
                dev = sim.mean() / pred - 1
                se = sim.std(ddof=1) / np.sqrt(len(sim)) / pred
                med = np.median(sim) / pred - 1
                cells.append(f"{dev:+.3g} +- {2 * se:.2g} (median {med:+.3g})")
            print(f"{act} v_w n = {c:<4} input var {iv:<5} {n:>5}  fwd {cells[0]:>34}  bwd {cells[1]:>34}  "
                  f"(pred {pf:.4g}, {pb:.4g}; {len(fwd)} reps, {time.perf_counter() - t0:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
