"""Regression tests for the issue-13 referee's findings (narrow ReLU-class networks).

Truths: hand formulas (Gamma functions, binomial sums with scipy) and an explicit-matrix NumPy
Monte Carlo written here (no varprop code).  Seeded; tolerances 6 standard errors.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import special, stats

import varprop
from varprop import VarpropError, VarpropWarning
from varprop.theory.finite.distribution import METHODS
from varprop.theory.finite.expansion import finite_width_moments


def _mc_relu(widths, reps, seed, sb2=0.0):
    """Explicit He-normal matrices, ReLU, one input N(0, I) per network; per network: the unit
    means of a_l and a_l^2 (R, L) and mean_j (dL/da_{l-1,j})^2 (R, L) for delta_L ~ N(0, I),
    relu'(0) = 0."""
    rng = np.random.default_rng(seed)
    L = len(widths) - 1
    a = rng.standard_normal((reps, widths[0]))
    Ws, zs, a1, a2 = [], [], np.empty((reps, L)), np.empty((reps, L))
    for l in range(1, L + 1):
        W = rng.normal(0.0, math.sqrt(2.0 / widths[l - 1]), (reps, widths[l], widths[l - 1]))
        z = np.einsum("rij,rj->ri", W, a) + math.sqrt(sb2) * rng.standard_normal((reps, widths[l]))
        a = np.maximum(z, 0.0)
        Ws.append(W), zs.append(z)
        a1[:, l - 1], a2[:, l - 1] = a.mean(1), (a * a).mean(1)
    g2 = np.empty((reps, L))
    d = rng.standard_normal((reps, widths[L]))
    for l in range(L, 0, -1):
        g = np.einsum("rij,ri->rj", Ws[l - 1], d)
        g2[:, l - 1] = (g * g).mean(1)
        if l > 1:
            d = (zs[l - 2] > 0) * g
    return a1, a2, g2


def _e_sqrt_chi2(k):
    return math.sqrt(2.0) * math.exp(special.gammaln((k + 1) / 2) - special.gammaln(k / 2))


def test_relu_activation_mean_matches_gamma_formula():
    # E a_1 = E sqrt(q1) / sqrt(2 pi), q1 = (2/8) chi2_8; E a_2 adds E sqrt(R), R = (2/8) chi2_K,
    # K ~ Bin(8, 1/2) (K = 0 contributes 0)
    fw = finite_width_moments("relu", "he_normal", widths=[8] * 4)
    c = 1.0 / math.sqrt(2 * math.pi)
    e1 = c * math.sqrt(2.0 / 8) * _e_sqrt_chi2(8)
    ks = np.arange(1, 9)
    e_sqrt_r = math.sqrt(2.0 / 8) * float(stats.binom.pmf(ks, 8, 0.5)
                                          @ np.array([_e_sqrt_chi2(k) for k in ks]))
    assert fw.act_mean_order == "exact"
    np.testing.assert_allclose(fw.act_mean[:2], [e1, e1 * e_sqrt_r], rtol=1e-9)


def test_relu_activation_variance_narrow_against_monte_carlo():
    # referee: widths [8]*9 gave 0.0 (MC 0.894 +- 0.021) and act_mean -2.00 (MC +0.30)
    widths = [8] * 9
    pred = varprop.predict_variance("relu", "he_normal", widths=widths, quantity="activation",
                                    per_layer=True, finite_width=True)
    mean = finite_width_moments("relu", "he_normal", widths=widths).act_mean
    a1, a2, _ = _mc_relu(widths, 20000, seed=3)
    m1, m2 = a1.mean(0), a2.mean(0)
    se1, se2 = a1.std(0, ddof=1) / math.sqrt(len(a1)), a2.std(0, ddof=1) / math.sqrt(len(a2))
    var_se = np.sqrt(se2 ** 2 + (2 * m1 * se1) ** 2)  # conservative (ignores the covariance)
    assert np.all(np.abs(mean - m1) < 6 * se1)
    assert np.all(np.abs(pred - (m2 - m1 * m1)) < 6 * var_se)


def test_relu_gradient_dead_layer_atom():
    # a dead layer j < l (probability 2^-n_j) zeroes the gradient at layer l's input (l < L)
    widths = [4] * 8
    L = 7
    pred = varprop.predict_variance("relu", "he_normal", widths=widths, quantity="gradient",
                                    per_layer=True, finite_width=True)
    hand = [2.0 * (15 / 16) ** (l - 1) if l < L else 2.0 for l in range(1, L + 1)]
    np.testing.assert_allclose(pred, hand, rtol=1e-12)
    _, _, g2 = _mc_relu(widths, 40000, seed=5)
    m, se = g2.mean(0), g2.std(0, ddof=1) / math.sqrt(len(g2))
    assert np.all(np.abs(pred - m) < 6 * se)
    # the mean field (2 everywhere) is resolved as wrong at layer 6
    assert abs(2.0 - m[5]) > 6 * se[5]


def test_relu_gradient_distribution_dead_layer_atom():
    # widths [4]*7, gradient at layer 3: mean 2 (15/16)^2, P(G = 0) = 1 - (15/16)^5 (two dead
    # layers below, three K_k = 0 atoms above); the referee's MC: 1.744 +- 0.020, 0.276
    d = varprop.predict_distribution("relu", "he_normal", widths=[4] * 7, quantity="gradient",
                                     layer=3)
    assert d.mean == pytest.approx(2.0 * (15 / 16) ** 2, rel=1e-9)
    assert d.zero_probability == pytest.approx(1 - (15 / 16) ** 5, rel=1e-9)
    _, _, g2 = _mc_relu([4] * 7, 20000, seed=7)
    p0 = float(np.mean(g2[:, 2] == 0.0))
    assert abs(p0 - d.zero_probability) < 6 * math.sqrt(p0 * (1 - p0) / len(g2))
    # leaky ReLU has no dead layers: no atom
    leaky = varprop.activation("leaky_relu", negative_slope=0.2)
    assert varprop.predict_distribution(leaky, "he_normal", widths=[4] * 7, quantity="gradient",
                                        layer=3).zero_probability == 0.0


def test_verify_relu_gradient_mean_field_misses_dead_layers():
    # widths [4]*8, layer 5: the exact value is 2 (15/16)^4 = 1.545, 22.75% below the mean field;
    # the mean-field claim is refuted with the dead-layer factor named, the exact one is not
    v = varprop.verify("relu", "he_normal", widths=[4] * 8, quantity="gradient", layer=5, seed=0,
                       budget=4000)
    assert v.status == "refuted"
    assert "dead-layer" in v.assumptions and "0.7725 x the mean field" in v.config["tol_reason"]
    w = varprop.verify("relu", "he_normal", widths=[4] * 8, quantity="gradient", layer=5, seed=0,
                       budget=4000, finite_width=True)
    assert w.status != "refuted" and abs(w.predicted - 2 * (15 / 16) ** 4) < 1e-12


def test_bias_or_uniform_relu_activation_refused_not_silent():
    # no exact value; the delta method gives a negative mean of a non-negative activation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VarpropWarning)
        with pytest.raises(VarpropError, match="breaks down"):
            varprop.predict_variance("relu", "he_normal", widths=[8] * 9, bias_variance=0.3,
                                     quantity="activation", finite_width=True)
    with pytest.warns(VarpropWarning, match="outside its range"):
        varprop.predict_variance("abs", "lecun_normal", widths=[3] * 7, bias_variance=0.2,
                                 quantity="activation", finite_width=True)


def test_warns_outside_expansion_range_like_predict_distribution():
    with pytest.warns(VarpropWarning, match="outside its range"):
        varprop.predict_variance("gelu", "he_normal", widths=[16] * 9, finite_width=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", VarpropWarning)  # exact second moments: no warning
        varprop.predict_variance("relu", "he_normal", widths=[16] * 9, finite_width=True)


def test_exact_second_moments_do_not_overflow_with_v():
    # v = Var qhat overflows at depth 2000, width 2; the exact second moments do not use it
    assert varprop.predict_variance("relu", "he_normal", fan_in=2, depth=2000,
                                    quantity="preactivation", finite_width=True) == 2.0
    assert varprop.predict_variance("relu", "he_normal", fan_in=2, depth=2000,
                                    quantity="gradient", finite_width=True) == 2.0
    with pytest.raises(VarpropError, match="exceed the float range"):
        varprop.predict_variance("linear", "standard_normal", fan_in=8, depth=400,
                                 finite_width=True)


def test_log_mean_square_of_fitted_law_is_labelled_moment_matched():
    d = varprop.predict_distribution("relu", "lecun_uniform", fan_in=16, depth=10,
                                     statistic="log_mean_square")
    assert d.method == "moment-matched" and "not exact" in METHODS[d.method]
    with pytest.raises(ValueError, match="cv2"):
        _ = d.cv2


def test_linear_activation_unit_std_is_exact():
    # a = z: across-unit variance Y = qhat_L chi2_{n-1}/n, E qhat_L = 1 (lecun_normal, v = 1),
    # so E Y = (n - 1)/n = E[std]^2 + Var[std]
    d = varprop.predict_distribution("linear", "lecun_normal", fan_in=8, depth=5,
                                     statistic="unit_std", quantity="activation")
    assert d.method == "exact"
    assert d.mean ** 2 + d.variance == pytest.approx(7 / 8, rel=1e-9)


def test_relu_activation_unit_std_includes_last_layer_atom():
    # the across-unit std of a_L is 0 iff some layer 1..L died (the last one included):
    # P = 1 - (15/16)^6 at widths [4]*7 (referee MC 0.322; before: 0.276, the last layer missed)
    d = varprop.predict_distribution("relu", "he_normal", widths=[4] * 7, statistic="unit_std",
                                     quantity="activation")
    assert d.zero_probability == pytest.approx(1 - (15 / 16) ** 6, rel=1e-9)
    a1, a2, _ = _mc_relu([4] * 7, 20000, seed=9)
    p0 = float(np.mean(a2[:, -1] == 0.0))
    assert abs(p0 - d.zero_probability) < 6 * math.sqrt(p0 * (1 - p0) / len(a2))
    # the mean of the across-unit variance stays exact: E Y = E a^2 - E[(mean_i a_i)^2]
    ey = float(np.mean(a2[:, -1] - a1[:, -1] ** 2))
    se = float(np.std(a2[:, -1] - a1[:, -1] ** 2, ddof=1)) / math.sqrt(len(a2))
    assert abs(d.mean ** 2 + d.variance - ey) < 6 * se
