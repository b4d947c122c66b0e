"""Exact finite-width laws of linear and ReLU networks (varprop.theory.finite.exact, loglaw).

The truth is a from-scratch NumPy Monte Carlo of whole networks (never varprop.simulate) or a
hand derivation; quantiles are checked through the empirical CDF at the predicted quantile,
within 6 binomial standard errors.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import integrate, stats

import varprop
from varprop.theory.finite.loglaw import (
    AffineBetaMixture,
    ChiSquareMixture,
    LogChiSquareSum,
    gamma_product,
    lognormal_matching,
    normal_chi_square,
)
from varprop.theory.finite.statistics import predict_distribution

SIGMAS = 6.0


def simulate(widths, nets, rng, *, slope=(1.0, 0.0), std=None, uniform=False, bias=0.0):
    """Per-network (z_L, a_L, input gradient, gradient at layer-5 input) of an MLP with the same
    weights forward and backward, delta_L ~ N(0, I)."""
    a = rng.standard_normal((nets, widths[0], 1))
    weights, zs = [], []
    for n_in, n in itertools.pairwise(widths):
        s = std(n_in) if std else math.sqrt(2.0 / n_in)
        if uniform:
            W = rng.uniform(-math.sqrt(3) * s, math.sqrt(3) * s, (nets, n, n_in))
        else:
            W = rng.standard_normal((nets, n, n_in)) * s
        z = W @ a + math.sqrt(bias) * rng.standard_normal((nets, n, 1))
        a = np.where(z > 0, slope[0] * z, slope[1] * z)
        weights.append(W)
        zs.append(z)
    delta = rng.standard_normal((nets, widths[-1], 1))
    grads = {}
    for l in range(len(widths) - 1, 0, -1):
        g = np.swapaxes(weights[l - 1], 1, 2) @ delta  # dL/da_{l-1}
        grads[l] = g[..., 0]
        if l > 1:
            delta = g * np.where(zs[l - 2] > 0, slope[0], slope[1])
    return zs[-1][..., 0], a[..., 0], grads


def assert_quantiles(dist, sample, ps=(0.1, 0.5, 0.9)):
    n = sample.size
    for p in ps:
        q = dist.quantile(p)
        F = np.mean(sample <= q)
        assert abs(F - p) < SIGMAS * math.sqrt(p * (1 - p) / n), (p, q, F)


def assert_mean(pred, sample):
    se = sample.std() / math.sqrt(sample.size)
    assert abs(pred - sample.mean()) < SIGMAS * se, (pred, sample.mean(), se)


def assert_variance(pred, sample):
    c = sample - sample.mean()
    se = math.sqrt(np.mean(c ** 4) - np.mean(c ** 2) ** 2) / math.sqrt(sample.size)
    assert abs(pred - sample.var()) < SIGMAS * se, (pred, sample.var(), se)


# ----- the characteristic-function inversion against scipy ---------------------------------------

@pytest.mark.parametrize("k", [1, 3, 40])
def test_single_log_chi_square_cdf_and_quantile(k):
    law = LogChiSquareSum(((ChiSquareMixture.single(0.5, k), 1),), 0.3)
    for x in np.log(stats.chi2.ppf([0.01, 0.3, 0.7, 0.999], k) * 0.5) + 0.3:
        assert law.cdf(x) == pytest.approx(stats.chi2.cdf(math.exp(x - 0.3) / 0.5, k), abs=1e-11)
    assert law.quantile(0.2) == pytest.approx(math.log(0.5 * stats.chi2.ppf(0.2, k)) + 0.3, abs=1e-9)
    assert law.moment(1) == pytest.approx(0.5 * k * math.exp(0.3), rel=1e-12)


def test_binomial_mixture_atom():
    # K ~ Bin(3, 1/2): P(K = 0) = 1/8 per term, two terms
    law = LogChiSquareSum(((ChiSquareMixture.binomial(1.0, 3), 2),), 0.0)
    assert law.zero_probability == pytest.approx(1 - (7 / 8) ** 2, rel=1e-12)
    assert law.cdf(-math.inf) == pytest.approx(1 - (7 / 8) ** 2, rel=1e-12)
    assert law.quantile(0.1) == -math.inf


# ----- ReLU he_normal width 16 depth 10 ------------------------------------------------------------

def _relu_moments_by_hand(n=16, L=10):
    """E M, E M^2 of M = |z_L|^2 / n: qhat_1 = (2/n) chi2_n, qhat_{l+1} = (2/n) qhat_l chi2_K,
    E chi2_K = n/2, E chi2_K^2 = E K(K+2) = n(n+5)/4."""
    s2 = Fraction(2, n)
    q1, q2 = s2 * n, s2 ** 2 * n * (n + 2)
    for _ in range(L - 1):
        q1, q2 = s2 * q1 * Fraction(n, 2), s2 ** 2 * q2 * Fraction(n * (n + 5), 4)
    return q1, q2 * Fraction(n + 2, n)


def test_relu_exact_mean_variance_by_hand():
    d = predict_distribution("relu", "he_normal", fan_in=16, depth=10)
    m1, m2 = _relu_moments_by_hand()
    assert d.method == "exact"
    assert d.mean == pytest.approx(float(m1), rel=1e-12)
    assert d.variance == pytest.approx(float(m2 - m1 * m1), rel=1e-10)
    assert d.cv2 == pytest.approx(d.variance / d.mean ** 2, rel=1e-14)


@pytest.fixture(scope="module")
def relu_sample():
    return simulate([16] * 11, 20_000, np.random.default_rng(20261205))


def test_relu_quantiles_against_networks(relu_sample):
    z, a, _grads = relu_sample
    ms = np.mean(z * z, axis=1)
    assert_quantiles(predict_distribution("relu", "he_normal", fan_in=16, depth=10), ms)
    assert_quantiles(predict_distribution("relu", "he_normal", fan_in=16, depth=10,
                                          quantity="activation"), np.mean(a * a, axis=1))
    assert_quantiles(predict_distribution("relu", "he_normal", fan_in=16, depth=10,
                                          statistic="unit_std", ddof=1), z.std(axis=1, ddof=1))
    logd = predict_distribution("relu", "he_normal", fan_in=64, depth=2,
                                statistic="log_mean_square")
    assert logd.method == "exact"
    # the atom: every unit of a layer off -> a_L = 0 exactly
    act = predict_distribution("relu", "he_normal", fan_in=16, depth=10, quantity="activation")
    assert act.zero_probability == pytest.approx(1 - (1 - 2.0 ** -16) ** 10, rel=1e-9)


def test_relu_gradient_law_with_the_same_weights(relu_sample):
    _, _, grads = relu_sample
    for layer in (1, 5):
        d = predict_distribution("relu", "he_normal", fan_in=16, depth=10, quantity="gradient",
                                 layer=layer)
        assert d.method == "exact"
        assert_quantiles(d, np.mean(grads[layer] ** 2, axis=1))


def test_relu_narrow_atom_against_networks():
    rng = np.random.default_rng(7)
    _z, a, _ = simulate([3, 2, 2, 2], 40_000, rng)
    d = predict_distribution("relu", "he_normal", widths=[3, 2, 2, 2], quantity="activation")
    p0 = 1 - (3 / 4) ** 3  # some layer of width 2 entirely off
    assert d.zero_probability == pytest.approx(p0, rel=1e-12)
    F = np.mean(np.all(a == 0, axis=1))
    assert abs(F - p0) < SIGMAS * math.sqrt(p0 * (1 - p0) / a.shape[0])
    assert_quantiles(d, np.mean(a * a, axis=1), ps=(0.7, 0.9))
    with pytest.raises(ValueError, match="probability 0.578"):
        predict_distribution("relu", "he_normal", widths=[3, 2, 2, 2], quantity="activation",
                             statistic="log_mean_square")


# ----- linear ---------------------------------------------------------------------------------------

def test_linear_exact_law_and_gradient():
    rng = np.random.default_rng(11)
    ws = [8] * 6
    z, _, grads = simulate(ws, 40_000, rng, slope=(1.0, 1.0), std=lambda n: math.sqrt(1 / n))
    d = predict_distribution("linear", "lecun_normal", widths=ws)
    # by hand: M = prod of 6 independent chi2_8 / 8 (input and 5 layers)
    assert d.mean == pytest.approx(1.0, rel=1e-12)
    assert d.variance == pytest.approx((10 / 8) ** 6 - 1, rel=1e-12)
    assert_quantiles(d, np.mean(z * z, axis=1))
    logd = predict_distribution("linear", "lecun_normal", widths=ws, statistic="log_mean_square")
    assert logd.mean == pytest.approx(6 * (math.log(2 / 8) + float(__import__("scipy").special.digamma(4))),
                                      rel=1e-12)
    assert_quantiles(logd, np.log(np.mean(z * z, axis=1)))
    g = predict_distribution("linear", "lecun_normal", widths=ws, quantity="gradient")
    assert_quantiles(g, np.mean(grads[1] ** 2, axis=1))


def test_uniform_weights_kurtosis_enters_the_variance():
    rng = np.random.default_rng(12)
    ws = [8] * 6
    z, _, _ = simulate(ws, 60_000, rng, slope=(1.0, 1.0), std=lambda n: math.sqrt(1 / n),
                       uniform=True)
    d = predict_distribution("linear", "lecun_uniform", widths=ws)
    gauss = predict_distribution("linear", "lecun_normal", widths=ws)
    assert d.method == "exact moments"
    assert d.variance < gauss.variance  # kurtosis -1.2
    ms = np.mean(z * z, axis=1)
    assert_mean(d.mean, ms)
    assert_variance(d.variance, ms)
    assert abs(gauss.variance - ms.var()) > 0.1  # the Gaussian answer is measurably wrong here


def test_relu_uniform_and_bias_exact_moments():
    rng = np.random.default_rng(13)
    ws = [16] * 5
    z, a, _ = simulate(ws, 40_000, rng, uniform=True, bias=0.2)
    for quantity, sample in (("preactivation", np.mean(z * z, 1)), ("activation", np.mean(a * a, 1))):
        d = predict_distribution("relu", "he_uniform", widths=ws, bias_variance=0.2,
                                 quantity=quantity)
        assert d.method == "exact moments"
        assert_mean(d.mean, sample)
        assert_variance(d.variance, sample)
    d = predict_distribution("relu", "he_uniform", widths=ws, bias_variance=0.2,
                             statistic="unit_std", ddof=1)
    Y = z.var(axis=1, ddof=1)
    # the across-unit variance's moments are exact: compare them through the std's law
    assert_mean(d.law.moment(1.0), Y)


def test_relu_jacobian_entry_law_against_networks():
    """J_ij = dz_{L,i}/dx_j for one input: J_ij^2 = chi2_1 prod sigma_l^2 prod_{l<L} chi2_{K_l}."""
    rng = np.random.default_rng(14)
    ws = [8, 16, 16, 16, 4]
    nets = 40_000
    a = rng.standard_normal((nets, 8, 1))
    J = np.broadcast_to(np.eye(8), (nets, 8, 8))
    for l in range(1, 5):
        W = rng.standard_normal((nets, ws[l], ws[l - 1])) * math.sqrt(2 / ws[l - 1])
        z = W @ a
        J = W @ J
        if l < 4:
            a = z * (z > 0)
            J = J * (z > 0)
    entry2 = J[:, 0, 3] ** 2
    d = predict_distribution("relu", "he_normal", widths=ws, quantity="jacobian_entry")
    assert d.method == "exact"
    # by hand: E J^2 = prod sigma_l^2 * prod (n_l / 2) = (2/8)(2/16)^3 (16/2)^3
    assert d.mean == pytest.approx(0.25, rel=1e-12)
    assert_quantiles(d, entry2)


def test_fitted_laws_have_the_moments_they_were_matched_to():
    """Mean 2, variance 3; the normal x chi-square law with between 1, within 2 has variance
    m^2[(1 + b/m^2)(1 + w/m^2) - 1] = b + w + b w / m^2 = 3.5 (independent factors)."""
    for law, var in ((gamma_product(2.0, 3.0, 7), 3.0), (lognormal_matching(2.0, 3.0), 3.0),
                     (normal_chi_square(2.0, 1.0, 2.0), 3.5)):
        assert law.moment(1.0) == pytest.approx(2.0, rel=1e-12)
        assert law.moment(2.0) - 4.0 == pytest.approx(var, rel=1e-12)


def test_relu_layer1_activation_cdf_against_quadrature():
    """a_1 of ReLU, he_normal, n0 = 5, n1 = 6: M = (2/5) chi2_5 chi2_K / 6, K ~ Bin(6, 1/2);
    P(M <= m) = 2^-6 + sum_{K>0} p_K int f_5(u) F_K(15 m / u) du by scipy quadrature."""
    d = predict_distribution("relu", "he_normal", widths=[5, 6], quantity="activation")
    for m in (0.05, 1.0, 3.0):
        total = 2.0 ** -6
        for K in range(1, 7):
            inner = integrate.quad(lambda u, K=K, m=m: stats.chi2.pdf(u, 5) * stats.chi2.cdf(15 * m / u, K),
                                   0, np.inf, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
            total += stats.binom.pmf(K, 6, 0.5) * inner
        assert d.cdf(m) == pytest.approx(total, abs=1e-9)
    q = d.quantile(0.37)
    assert d.cdf(q) == pytest.approx(0.37, abs=1e-10)


def test_leaky_ratio_moments_by_hand():
    """R = a2 chi2_K + b2 chi2_{n-K}: E R = n (a2 + b2)/2,
    E R^2 = (a2^2 + b2^2) n (n+5)/4 + a2 b2 n (n-1)/2 (E K(K+2) = n(n+5)/4, E K(n-K) = n(n-1)/4)."""
    a2, b2, n = 1.0, 0.04, 9
    law = LogChiSquareSum(((ChiSquareMixture.single(1.0, n), 1),
                           (AffineBetaMixture(a2, b2, n), 1)), 0.0)
    assert law.moment(1.0) == pytest.approx(n * (a2 + b2) / 2, rel=1e-12)
    second = (a2 ** 2 + b2 ** 2) * n * (n + 5) / 4 + a2 * b2 * n * (n - 1) / 2
    assert law.moment(2.0) == pytest.approx(second, rel=1e-12)
    # the characteristic function is converged in the number of quadrature nodes
    t = np.array([0.5, 3.0, 20.0])
    fine = AffineBetaMixture(a2, b2, n, nodes=400)
    assert np.allclose(AffineBetaMixture(a2, b2, n).log_cf(t), fine.log_cf(t), atol=1e-12)


def test_leaky_relu_exact_law_against_networks():
    rng = np.random.default_rng(15)
    ws = [16] * 11
    slope = 0.2
    s = math.sqrt(2 / (1 + slope ** 2))
    z, a, grads = simulate(ws, 10_000, rng, slope=(1.0, slope), std=lambda n: s / math.sqrt(n))
    act = varprop.activation("leaky_relu", negative_slope=slope)
    init = varprop.init_scheme("he_normal", negative_slope=slope)
    for kw, sample in (({}, np.mean(z * z, 1)),
                       ({"quantity": "activation"}, np.mean(a * a, 1)),
                       ({"quantity": "gradient"}, np.mean(grads[1] ** 2, 1))):
        d = predict_distribution(act, init, widths=ws, **kw)
        assert d.method == "exact"
        assert_quantiles(d, sample)


def test_many_distinct_widths_use_the_lognormal_limit():
    """300 distinct widths: beyond MAX_COMPONENTS chi-square components the law of log M is the
    normal with its exact mean and variance; the moments stay exact:
    cv2 = (1 + 2/n_0) prod_{l<L} (1 + 5/n_l) (1 + 2/n_L) - 1 (E R^2/(E R)^2 = 1 + 5/n)."""
    ws = [100, *range(100, 400)]
    d = predict_distribution("relu", "he_normal", widths=ws)
    assert d.method == "lognormal" and "skewness" in d.order
    cv2 = (1 + 2 / 100) * math.prod(1 + 5 / n for n in ws[1:-1]) * (1 + 2 / ws[-1]) - 1
    assert d.mean == pytest.approx(2.0, rel=1e-10)
    assert d.cv2 == pytest.approx(cv2, rel=1e-9)
    # sampled from the product law: chi2_{n0}/n0 * prod_l chi2_{K_l}/(n_l/2) * chi2_{nL}/nL
    rng = np.random.default_rng(17)
    nets = 20_000
    log_m = np.log(2 * rng.chisquare(100, nets) / 100) + np.log(rng.chisquare(ws[-1], nets) / ws[-1])
    for n in ws[1:-1]:
        log_m += np.log(rng.chisquare(rng.binomial(n, 0.5, nets)) / (n / 2))
    assert_quantiles(d, np.exp(log_m))
