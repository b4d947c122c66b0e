"""Guards of the finite-width theory (issue 13, adversary's findings): tiny and huge variances,
depth limits, short messages, argument checks, and the tails of Distribution.quantile/cdf."""

import math
import time
import warnings

import numpy as np
import pytest

import varprop as vp
from varprop.components.activations import resolve_activation
from varprop.errors import InvalidArgument, VarpropError
from varprop.theory.finite import finite_width_moments, gaussian_functions

pv = vp.predict_variance


def _relu_second_moment(widths, s_x, b2=0.0):
    """Hand derivation: ReLU with He weights, E a_l^2 = q_l / 2 with q_1 = b2 + 2 s_x and
    q_{l+1} = b2 + 2 E a_l^2 exactly at every width (degree-1 homogeneity); so E a_l^2 is
    s_x + l b2 / 2 ... computed here by that recursion."""
    q = b2 + 2.0 * s_x
    out = []
    for _ in widths[1:]:
        out.append(q / 2.0)
        q = b2 + q
    return np.array(out)


@pytest.mark.parametrize("s_x,b2", [(1e-300, 0.0), (1e-200, 0.0), (1e200, 0.0), (1.0, 1e300),
                                    (3e250, 5e249)])
def test_homogeneous_extreme_variances_scale_exactly(s_x, b2):
    # item 4 (ZeroDivisionError at tiny q) and item 6 (false "does not converge" and a numpy
    # RuntimeWarning at huge q): the exact class answers, without warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = pv("relu", "he_normal", fan_in=16, depth=3, input_variance=s_x, bias_variance=b2,
                 finite_width=True, quantity="activation_second_moment", per_layer=True)
        grad = pv("relu", "he_normal", fan_in=16, depth=3, input_variance=s_x, bias_variance=b2,
                  finite_width=True, quantity="gradient")
    np.testing.assert_allclose(got, _relu_second_moment([16] * 4, s_x, b2), rtol=1e-12)
    # the mean-field path (a separate code path, exact for ReLU at every width; scale-free)
    assert grad == pytest.approx(pv("relu", "he_normal", fan_in=16, depth=3, quantity="gradient"),
                                 rel=1e-12)


def test_homogeneous_functions_scale_from_unit_variance():
    relu = resolve_activation("relu")
    for q in (1e-150, 1e-20, 7.0, 1e100):
        fv = gaussian_functions(relu, q)
        # Hand: for ReLU f = q/2, E phi^4 = 3 q^2 / 2, mu = sqrt(q / (2 pi)), h = 1/2.
        assert fv.f == pytest.approx(q / 2, rel=1e-12)
        assert fv.u4 == pytest.approx(1.5 * q * q, rel=1e-12)
        assert fv.mu == pytest.approx(math.sqrt(q / (2 * math.pi)), rel=1e-12)
        assert fv.h == pytest.approx(0.5, rel=1e-12)


def test_tiny_variance_refused_for_other_activations():
    with pytest.raises(VarpropError, match="below 1e-06"):
        pv("tanh", "lecun_normal", fan_in=16, depth=3, input_variance=1e-300, finite_width=True)
    with pytest.raises(VarpropError, match="below 1e-06"):
        gaussian_functions(resolve_activation("tanh"), 1e-9)
    with pytest.raises(VarpropError):
        finite_width_moments("relu", "he_normal", widths=[16] * 4, input_variance=1e-300)


def test_huge_variance_direct_moments_truthful_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(VarpropError, match="float range"):
            finite_width_moments("relu", "he_normal", widths=[16] * 4, input_variance=1e200)


@pytest.mark.parametrize("act,init,n,depth", [("relu", "he_normal", 16, 10**7),
                                               ("tanh", "lecun_normal", 16, 10**7),
                                               ("gelu", "he_normal", 16, 10**7),
                                               ("tanh", "lecun_normal", 10**6, 10**5),
                                               ("relu", "he_normal", 16, 10**400)])
def test_deep_refused_fast(act, init, n, depth):
    # items 3 and 5: refused up front (no hang, no OverflowError), stating the cost
    start = time.perf_counter()
    for per_layer in (False, True):
        with pytest.raises(InvalidArgument, match="us a layer"):
            pv(act, init, fan_in=n, depth=depth, finite_width=True, per_layer=per_layer)
    assert time.perf_counter() - start < 5.0


def test_breakdown_message_is_short():
    # item 7: the widths are summarised, not printed in full
    with pytest.raises(VarpropError) as err:
        pv("tanh", "lecun_normal", fan_in=4, depth=3_000, finite_width=True)
    assert "[4]*3001" in str(err.value) and len(str(err.value)) < 600
    with pytest.raises(VarpropError) as err:
        pv("tanh", "lecun_normal", widths=[8] + [4] * 3_000, finite_width=True)
    assert "[8] + [4]*3000" in str(err.value) and len(str(err.value)) < 600
    odd = [8, 5] + [4] * 3_000
    with pytest.raises(VarpropError) as err:
        finite_width_moments("tanh", "lecun_normal", widths=odd)
    assert "(3002 widths)" in str(err.value) and len(str(err.value)) < 600


def test_finite_width_moments_arguments():
    # item 15: no plain TypeError without widths; fan_in/depth accepted like predict_variance
    with pytest.raises(InvalidArgument, match="widths"):
        finite_width_moments("relu", "he_normal")
    a = finite_width_moments("tanh", "lecun_normal", fan_in=16, depth=3)
    b = finite_width_moments("tanh", "lecun_normal", widths=[16] * 4)
    np.testing.assert_array_equal(a.act_second, b.act_second)
    with pytest.raises(TypeError, match="depth=True"):
        finite_width_moments("tanh", "lecun_normal", fan_in=16, depth=True)


def test_quantile_tails_refused_and_accurate_within_reach():
    # item 13: no silently wrong extreme quantiles; inside the stated range the inversion is
    # checked against an independent quadrature of the same law (X = e^{shift + N} chi2_nu).
    d = vp.predict_distribution("tanh", "lecun_normal", fan_in=16, depth=3)
    for p in (1e-300, 1e-17, 1e-12, 1 - 1e-12):
        with pytest.raises(VarpropError, match="numerical CDF inversion"):
            d.quantile(p)
    law = d.law
    (term, count), = law.terms
    nu, s = term.dofs[0], math.sqrt(law.normal_variance)
    assert count == 1 and term.scales[0] == 1.0
    stats = pytest.importorskip("scipy.stats")
    integrate = pytest.importorskip("scipy.integrate")
    for p in (1e-9, 1e-6, 0.5, 1 - 1e-9):
        ell = math.log(d.quantile(p))
        below = integrate.quad(lambda z: stats.norm.pdf(z) * stats.chi2.cdf(
            math.exp(ell - law.shift - s * z), nu), -12, 12, epsabs=1e-16, epsrel=1e-12)[0]
        above = integrate.quad(lambda z: stats.norm.pdf(z) * stats.chi2.sf(
            math.exp(ell - law.shift - s * z), nu), -12, 12, epsabs=1e-16, epsrel=1e-12)[0]
        assert min(below, above) == pytest.approx(min(p, 1 - p), rel=1e-4)
    r = vp.predict_distribution("relu", "he_normal", fan_in=16, depth=3)
    with pytest.raises(VarpropError, match="the atom at X = 0"):
        r.quantile(1 - 1e-12)


def test_wide_relu_law_fast_and_right():
    # item 14: closed-form (Chernoff) far tails, and a thinned binomial mixture at huge width
    n = 10**6
    start = time.perf_counter()
    d = vp.predict_distribution("relu", "he_normal", fan_in=n, depth=3)
    assert d.cdf(1e300) == 1.0 and d.cdf(1e-300) == 0.0
    median = d.quantile(0.5)
    assert time.perf_counter() - start < 10.0
    # Monte Carlo from scratch: q1 = 2 chi2_n / n, q_{l+1} = (2/n) q_l chi2_{K_l},
    # K_l ~ Binomial(n, 1/2) (ReLU keeps about half the units), X = q3 chi2_n / n.
    rng = np.random.default_rng(13)
    reps = 20_000
    q = 2.0 * rng.chisquare(n, reps) / n
    for _ in range(2):
        q = 2.0 / n * q * rng.chisquare(rng.binomial(n, 0.5, reps))
    x = q * rng.chisquare(n, reps) / n
    se = 1.2533 * x.std() / math.sqrt(reps)  # standard error of a sample median (normal shape)
    assert abs(np.median(x) - median) < 6 * se


def test_thinned_binomial_mixture_matches_full(monkeypatch):
    from varprop.theory.finite import loglaw

    n = 4096
    thin = loglaw.ChiSquareMixture.binomial(1.0, n)
    monkeypatch.setattr(loglaw, "_binomial_stride", lambda n: 1)
    full = loglaw.ChiSquareMixture.binomial(1.0, n)
    assert thin.size < full.size / 3
    a, b = loglaw.LogChiSquareSum(((thin, 3),), 0.0), loglaw.LogChiSquareSum(((full, 3),), 0.0)
    assert a.log_variance == pytest.approx(b.log_variance, rel=1e-12)
    sd = math.sqrt(b.log_variance)
    for z in (-6.0, -2.0, 0.0, 1.0, 5.0):
        x = b.log_mean + z * sd
        assert abs(a.cdf(x) - b.cdf(x)) < 1e-11


def test_huge_variance_refused_for_other_activations():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for act, init in (("tanh", "lecun_normal"), ("gelu", "he_normal")):
            with pytest.raises(VarpropError, match="above 1e"):
                pv(act, init, fan_in=16, depth=3, input_variance=1e200, finite_width=True)
