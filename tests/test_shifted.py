"""Non-zero-mean weights with nonlinear activations (varprop.theory.shifted) against an independent,
from-scratch NumPy simulation of the model (not varprop's Monte Carlo engine).

Every simulation is seeded, so the tests are deterministic.  Tolerances: ``Z`` standard errors of
the simulated estimate (from the spread over independent networks) plus a declared model
allowance ``C / n`` for the finite-width error of the infinite-width recursion (measured:
at most about 2.4/n for ReLU with U[-0.1, 0.3), and 2.8/n for sigmoid with U[0, 1) at layer 3,
width 64; see the docstring of varprop.theory.shifted).  The old bivariate-Gaussian closure is
outside these bounds by 5 to 10 times (-31% and -33% on the issue's numbers).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import varprop
from varprop import predict_variance as pv

Z = 4.5        # standard errors
C = 6.0        # model allowance, relative error C / n


def _phi(act: str, z: np.ndarray) -> np.ndarray:
    if act == "relu":
        return np.maximum(z, 0.0)
    if act == "tanh":
        return np.tanh(z)
    return 0.5 * (1.0 + np.tanh(z / 2.0))


def _dphi(act: str, z: np.ndarray) -> np.ndarray:
    if act == "relu":
        return (z > 0).astype(float)
    if act == "tanh":
        return 1.0 - np.tanh(z) ** 2
    s = _phi("sigmoid", z)
    return s * (1.0 - s)


def simulate(act: str, low: float, high: float, n: int, depth: int, nets: int, batch: int = 256,
             seed: int = 0, backward: bool = False) -> dict[str, np.ndarray]:
    """Per network: batch averages of z_l, z_l^2 (each layer) and of (dL/dx)^2, with x ~ N(0, I),
    W_l ~ U[low, high) i.i.d., no bias, delta_L ~ N(0, I) independent of the forward pass."""
    rng = np.random.default_rng(seed)
    m1 = np.empty((nets, depth))
    m2 = np.empty((nets, depth))
    g2 = np.empty(nets)
    for r in range(nets):
        a = rng.standard_normal((n, batch))
        ws, zs = [], []
        for l in range(depth):
            w = rng.uniform(low, high, (n, n))
            z = w @ a
            a = _phi(act, z)
            ws.append(w)
            zs.append(z)
            m1[r, l], m2[r, l] = z.mean(), (z * z).mean()
        if backward:
            d = rng.standard_normal((n, batch))
            for l in range(depth - 1, -1, -1):
                g = ws[l].T @ d
                if l > 0:
                    d = _dphi(act, zs[l - 1]) * g
            g2[r] = (g * g).mean()
    return {"m1": m1, "m2": m2, "g2": g2}


def variance_estimate(m1: np.ndarray, m2: np.ndarray) -> tuple[float, float]:
    """E z^2 - (E z)^2 over networks and inputs, and its relative standard error (delta method)."""
    mean = m1.mean()
    var = m2.mean() - mean * mean
    infl = m2 - 2.0 * mean * m1
    return var, infl.std(ddof=1) / math.sqrt(len(m1)) / var


def _uniform(low: float, high: float) -> varprop.InitScheme:
    return varprop.init_scheme("uniform", low=low, high=high)


@pytest.mark.parametrize("low, high, n, depth, issue_value", [
    (0.0, 1.0, 64, 3, 5.33e6),    # the issue: 5.33e6 +- 1.1% (predicted 3.66e6 before)
    (-0.1, 0.3, 128, 4, 1.68e6),  # the issue: 1.68e6 +- 2.2% (predicted 1.12e6 before)
])
def test_issue_relu_numbers(low, high, n, depth, issue_value):
    sim = simulate("relu", low, high, n, depth, nets=200 if n == 64 else 60, seed=7)
    var, se = variance_estimate(sim["m1"][:, -1], sim["m2"][:, -1])
    assert abs(var / issue_value - 1) < 0.05  # the simulation reproduces the issue's number
    pred = pv("relu", _uniform(low, high), fan_in=n, depth=depth, quantity="preactivation")
    assert abs(pred / var - 1) < Z * se + C / n, (pred, var, se)


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-0.1, 0.3)])
def test_depths_3_to_6_against_simulation(act, low, high):
    n, depth = 64, 6
    sim = simulate(act, low, high, n, depth, nets=60, seed=11)
    pred = pv(act, _uniform(low, high), fan_in=n, depth=depth, quantity="preactivation", per_layer=True)
    for l in range(2, depth):
        var, se = variance_estimate(sim["m1"][:, l], sim["m2"][:, l])
        assert abs(pred[l] / var - 1) < Z * se + C / n, (l + 1, pred[l], var, se)


def test_relu_gradient_against_simulation():
    # before: 5.10e6 against a simulated 6.57e6 (-22%)
    n, depth = 64, 3
    sim = simulate("relu", 0.0, 1.0, n, depth, nets=100, seed=3, backward=True)
    g2 = sim["g2"]
    mean, se = g2.mean(), g2.std(ddof=1) / math.sqrt(len(g2)) / g2.mean()
    pred = pv("relu", "uniform", fan_in=n, depth=depth, quantity="gradient")
    assert abs(pred / mean - 1) < Z * se + C / n, (pred, mean, se)


def _linear_exact(low: float, high: float, widths: list[int], input_variance: float) -> float:
    """E z_L^2 of a linear net by exact second-moment matrices: E[z z^T] = E[W T W^T] with
    E[W_ij W_kl] = sigma^2 d_ik d_jl + mu^2, i.e. sigma^2 tr(T) I + mu^2 (1^T T 1) 11^T."""
    mu, var = (low + high) / 2, (high - low) ** 2 / 12
    T = input_variance * np.eye(widths[0])
    for n_out in widths[1:]:
        T = var * np.trace(T) * np.eye(n_out) + mu * mu * T.sum() * np.ones((n_out, n_out))
    return float(T[0, 0])


def test_linear_nonzero_mean_stays_exact():
    widths = [3, 5, 2, 4, 4, 6, 3]
    got = pv("linear", _uniform(-0.2, 0.7), widths=widths, quantity="preactivation",
             input_variance=1.7)
    exact = _linear_exact(-0.2, 0.7, widths, 1.7)  # E z = 0 (zero-mean inputs): Var = E z^2
    assert math.isclose(got, exact, rel_tol=1e-12)


def test_closed_form_method_refused_for_nonlinear():
    with pytest.raises(varprop.errors.InvalidArgument, match="method"):
        pv("relu", "uniform", fan_in=8, depth=3, method="closed_form")


def test_tanh_gradient_keeps_growing_instead_of_collapsing_to_zero() -> None:
    # tanh, U[0,1), width 64: the gradient at the input grows by a steady factor per layer (the
    # unsaturated networks whose layer-1 shift nearly cancels carry it); quadrature noise on tiny
    # shifts used to collapse it to 0 from depth 14 on (and 0.0 at depth 25)
    g = [float(pv("tanh", "uniform", fan_in=64, depth=d, quantity="gradient"))
         for d in (12, 13, 14, 25)]
    assert all(math.isfinite(x) and x > 0 for x in g)
    r1, r2 = g[1] / g[0], g[2] / g[1]
    assert 5 < r1 < 30 and abs(r2 / r1 - 1) < 0.2
    assert g[3] > g[2] * r1 ** 5  # still growing eleven layers later
