"""predict_variance / propagate against hand derivations, quadrature and small exact simulations."""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest

import varprop
from varprop import predict_variance as pv
from varprop.network.quantities import spec
from varprop.theory.predict import propagate


# ---------------------------------------------------------------- hand-derived closed forms
def test_he_relu_preserves_preactivation_variance_after_first_layer():
    # q_1 = n (2/n) E x^2 = 2 v_in; q_l = n (2/n) q_{l-1}/2 = q_{l-1}
    got = pv("relu", "he_normal", fan_in=37, depth=12, input_variance=0.7, quantity="preactivation",
             per_layer=True)
    assert np.allclose(got, 1.4, rtol=1e-14)
    # Var(relu(z)) = q/2 - q/(2 pi)
    assert math.isclose(pv("relu", "he_uniform", fan_in=37, depth=5), 2 * (0.5 - 0.5 / math.pi), rel_tol=1e-14)


def test_lecun_linear_preserves_variance():
    # q_l = n_{l-1} * (1/n_{l-1}) * q_{l-1}: preserved whatever the widths
    got = pv("linear", "lecun_uniform", widths=[10, 30, 7, 50], quantity="preactivation", per_layer=True)
    assert np.allclose(got, 1.0, rtol=1e-14)


def test_lecun_linear_factor_is_one_for_equal_widths():
    got = pv("linear", "lecun_normal", fan_in=64, depth=20, input_variance=3.0, quantity="preactivation",
             per_layer=True)
    assert np.allclose(got, 3.0, rtol=1e-13)


@pytest.mark.parametrize("n_in, n_out", [(100, 300), (512, 64), (7, 7)])
def test_xavier_forward_and_backward_factors(n_in, n_out):
    fwd = pv("linear", "xavier_normal", widths=[n_in, n_out], quantity="preactivation")
    bwd = pv("linear", "xavier_uniform", widths=[n_in, n_out], quantity="gradient")
    assert math.isclose(fwd, 2 * n_in / (n_in + n_out), rel_tol=1e-14)
    assert math.isclose(bwd, 2 * n_out / (n_in + n_out), rel_tol=1e-14)


def test_torch_linear_default_loses_a_factor_three_per_linear_layer():
    got = pv("linear", "torch_linear_default", fan_in=128, depth=6, quantity="preactivation", per_layer=True)
    assert np.allclose(got, (1 / 3) ** np.arange(1, 7), rtol=1e-13)
    # and a factor 6 per ReLU layer after the first
    relu = pv("relu", "torch_linear_default", fan_in=128, depth=6, quantity="preactivation", per_layer=True)
    assert np.allclose(relu, (1 / 3) * (1 / 6) ** np.arange(0, 6), rtol=1e-13)


def test_leaky_relu_with_matched_he_gain_preserves_variance():
    a = 0.3
    got = pv(varprop.activation("leaky_relu", negative_slope=a),
             varprop.init_scheme("he_normal", negative_slope=a), fan_in=50, depth=8,
             quantity="preactivation", per_layer=True)
    assert np.allclose(got, 2 / (1 + a * a), rtol=1e-13)


def test_bias_adds_linearly_for_he_relu():
    got = pv("relu", "he_normal", fan_in=20, depth=5, bias_variance=0.1, quantity="preactivation", per_layer=True)
    assert np.allclose(got, 2 + 0.1 * np.arange(1, 6), rtol=1e-13)


def test_linear_backward_product_of_factors():
    widths = [8, 16, 4, 32]
    got = pv("linear", "he_normal", widths=widths, quantity="gradient", per_layer=True)
    # Var dL/da_{l-1} = prod_{k >= l} n_k * 2/n_{k-1}
    factors = [widths[k] * 2 / widths[k - 1] for k in range(1, 4)]
    expected = [np.prod(factors[l:]) for l in range(3)]
    assert np.allclose(got, expected, rtol=1e-13)


def test_weight_gradient_is_delta_times_input_second_moment():
    got = pv("linear", "lecun_normal", fan_in=30, depth=4, input_variance=2.5, quantity="weight_gradient")
    assert math.isclose(got, 2.5, rel_tol=1e-13)


# ---------------------------------------------------------------- the seeds' single-layer numbers
def test_seed_sqrt_512():
    # 001_2bbe60fd5150b093: N(0,1) weights, N(0,1) input, width 512: std ~ sqrt(512) = 22.6
    std = math.sqrt(pv("linear", "standard_normal", fan_in=512, quantity="preactivation"))
    assert round(std, 1) == 22.6


def test_seed_tanh_0_63():
    # 001_2bbe60fd5150b093: N(0,1)/sqrt(512) weights then tanh: reduce_std ~ 0.627
    std = math.sqrt(pv("tanh", varprop.init_scheme("normal", std=1 / math.sqrt(512)), fan_in=512))
    assert round(std, 2) == 0.63


# ---------------------------------------------------------------- independent quadrature recursion
def mp_tanh_recursion(sigma_w2_n, q0, depth):
    mpmath.mp.dps = 25
    q = mpmath.mpf(q0) * sigma_w2_n
    out = [q]
    for _ in range(depth - 1):
        s = mpmath.sqrt(q)
        e2 = mpmath.quad(lambda t: mpmath.tanh(s * t) ** 2 * mpmath.npdf(t), [-mpmath.inf, 0, mpmath.inf])
        q = sigma_w2_n * e2
        out.append(q)
    return [float(v) for v in out]


def test_tanh_recursion_matches_mpmath():
    got = pv("tanh", "xavier_normal", fan_in=256, depth=6, quantity="preactivation", per_layer=True)
    ref = mp_tanh_recursion(1.0, 1.0, 6)
    assert np.allclose(got, ref, rtol=1e-10)


def test_closed_form_tanh_within_compounded_declared_error():
    exact = pv("tanh", "lecun_normal", fan_in=100, depth=10, quantity="preactivation", per_layer=True)
    closed = pv("tanh", "lecun_normal", fan_in=100, depth=10, quantity="preactivation", per_layer=True,
                method="closed_form")
    assert exact[0] == closed[0]  # the first layer does not go through tanh
    bound = varprop.activation("tanh").closed_form.max_relative_error["second"]
    # each layer multiplies the error by at most (1 + bound) (the map is monotone, sub-linear)
    assert np.all(np.abs(closed / exact - 1) <= (1 + bound) ** np.arange(10) - 1 + 1e-12)
    assert np.any(np.abs(closed / exact - 1) > 0.01)  # and the approximation is really different


@pytest.mark.parametrize("act", ["linear", "relu", "leaky_relu", "erf"])
def test_auto_equals_quadrature_where_closed_form_is_exact(act):
    kw = dict(fan_in=64, depth=7, bias_variance=0.05, per_layer=True)
    for quantity in ("preactivation", "activation", "gradient"):
        a = pv(act, "he_normal", quantity=quantity, method="auto", **kw)
        b = pv(act, "he_normal", quantity=quantity, method="quadrature", **kw)
        assert np.allclose(a, b, rtol=1e-10), (act, quantity)


# ---------------------------------------------------------------- exact finite-width checks by simulation
def simulate_small(phi, dphi, widths, sampler, reps, seed, in_var=1.0):
    """A plain NumPy simulation (independent of varprop.simulation.montecarlo): E z_L^2, E (dL/dx)^2."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((reps, widths[0])) * math.sqrt(in_var)
    zs, ws = [], []
    for n_in, n_out in zip(widths, widths[1:]):
        w = sampler(rng, (reps, n_out, n_in))
        z = np.einsum("rij,rj->ri", w, a)
        zs.append(z); ws.append(w)
        a = phi(z)
    delta = rng.standard_normal(zs[-1].shape)
    for l in range(len(ws) - 1, -1, -1):
        g = np.einsum("rij,ri->rj", ws[l], delta)
        if l > 0:
            delta = dphi(zs[l - 1]) * g
    return (zs[-1] ** 2).mean(axis=1), (g**2).mean(axis=1)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_relu_he_second_moments_exact_at_tiny_width(width):
    reps = 200_000
    fwd, bwd = simulate_small(lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0, [width] * 4,
                              lambda rng, s: rng.standard_normal(s) * math.sqrt(2 / width), reps, seed=width)
    for sample, quantity in ((fwd, "preactivation"), (bwd, "gradient")):
        predicted = pv("relu", "he_normal", fan_in=width, depth=3, quantity=quantity)
        se = sample.std() / math.sqrt(reps)
        # fixed seed (deterministic); 6 standard errors
        assert abs(sample.mean() - predicted) < 6 * se, (quantity, sample.mean(), predicted, se)


def test_nonzero_mean_linear_tracks_correlation_exactly():
    # uniform[0,1) weights (the seeds' naive "Xavier"): D' = n(v+mu^2) D + n(n-1) mu^2 C
    n, reps = 3, 300_000
    fwd, bwd = simulate_small(lambda z: z, lambda z: np.ones_like(z), [n] * 4,
                              lambda rng, s: rng.random(s), reps, seed=7)
    mu, v = 0.5, 1 / 12
    d, c = 1.0, 0.0
    for _ in range(3):
        d, c = n * (v + mu * mu) * d + n * (n - 1) * mu * mu * c, mu * mu * (n * d + n * (n - 1) * c)
    predicted = pv("linear", "uniform", fan_in=n, depth=3, quantity="preactivation")
    assert math.isclose(predicted, d, rel_tol=1e-13)
    assert abs(fwd.mean() - predicted) < 6 * fwd.std() / math.sqrt(reps)
    predicted_b = pv("linear", "uniform", fan_in=n, depth=3, quantity="gradient")
    assert abs(bwd.mean() - predicted_b) < 6 * bwd.std() / math.sqrt(reps)


def test_nonzero_mean_relu_mean_field_is_close_at_width_64():
    reps = 4000
    fwd, _ = simulate_small(lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0, [64] * 3,
                            lambda rng, s: rng.random(s) * math.sqrt(2 / 64), reps, seed=3)
    prop = propagate("relu", varprop.init_scheme("uniform", low=0.0, high=math.sqrt(2 / 64)), fan_in=64, depth=2)
    # layer 1 by hand: zero-mean unit-variance inputs, so E z_1^2 = n E[w^2] = 64 (2/64)/3 = 2/3
    assert prop.preact_second[0] == pytest.approx(2 / 3, rel=1e-12)
    # Gaussian closure for correlated units: within 5% at width 64
    assert abs(fwd.mean() / prop.preact_second[-1] - 1) < 0.05


# ---------------------------------------------------------------- ranges, warnings, speed contract
def test_overflow_returns_inf_with_warning_never_nan():
    with pytest.warns(varprop.VarpropWarning, match="float range"):
        got = pv("linear", "standard_normal", fan_in=512, depth=200, quantity="gradient", per_layer=True)
    assert np.isinf(got[0]) and not np.isnan(got).any()


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "x*sigmoid(x)"])
@pytest.mark.parametrize("quantity", ["activation", "gradient", "weight_gradient"])
def test_non_zero_mean_overflow_returns_inf_with_warning(act, quantity):
    # the seeds' U[0,1) weights: the shared shift mu_w * sum_j a_j grows ~ (n/2)^l and leaves the
    # float range near layer 100 at width 256 (used to raise "mu=inf is not allowed")
    with pytest.warns(varprop.VarpropWarning, match="float range"):
        got = pv(act, "uniform", fan_in=256, depth=100, quantity=quantity, per_layer=True)
    assert np.isinf(got[-1] if quantity != "gradient" else got[0]) and not np.isnan(got).any()
    # the shift is (n * mean(U[0,1)))^l: finite layers agree with the hand formula for E z^2 >= m^2
    with pytest.warns(varprop.VarpropWarning, match="float range"):
        z = pv(act, "uniform", fan_in=256, depth=100, quantity="preactivation", per_layer=True)
    assert np.all(z[:5] > 0) and np.all(np.isfinite(z[:5]))


def test_bounded_activation_recovers_from_huge_variance():
    huge = varprop.init_scheme("normal", std=1e200)
    with pytest.warns(varprop.VarpropWarning):
        got = pv("tanh", huge, fan_in=10, depth=3, quantity="preactivation", per_layer=True)
    assert np.isinf(got).all()  # sigma_w^2 = 1e400 itself is beyond the float range
    # the backward pass is 0 * inf (sech^2 -> 0 times an infinite gradient): an error, not NaN
    with pytest.raises(varprop.VarpropError, match="0 \\* inf"):
        pv("tanh", huge, fan_in=10, depth=3, quantity="gradient")
    got = pv("tanh", varprop.init_scheme("normal", std=1e150), fan_in=10, depth=3, per_layer=True)
    assert np.allclose(got, 1.0)  # saturated: tanh = +-1


def test_propagation_arrays_are_read_only():
    p = propagate("relu", "he_normal", fan_in=4, depth=2)
    with pytest.raises(ValueError):
        p.preact_second[0] = 1.0


def test_per_layer_shapes_and_orders():
    g = pv("relu", "he_normal", widths=[4, 8, 16], quantity="gradient", per_layer=True)
    assert g.shape == (2,) and pv("relu", "he_normal", widths=[4, 8, 16], quantity="gradient") == g[0]


BAD = [
    (dict(fan_in=0), ValueError, "fan_in"),
    (dict(fan_in=-3), ValueError, "fan_in"),
    (dict(fan_in=2.5), TypeError, "fan_in"),
    (dict(fan_in=True), TypeError, "fan_in"),
    (dict(fan_in=None), ValueError, "fan_in"),
    (dict(fan_in=4, fan_out=0), ValueError, "fan_out"),
    (dict(widths=[3]), ValueError, "widths"),
    (dict(widths=[3, 0]), ValueError, r"widths\[1\]"),
    (dict(widths="3,4"), TypeError, "widths"),
    (dict(widths=[3, 3, 3], fan_in=4), ValueError, "fan_in"),
    (dict(widths=[3, 3, 3], fan_out=7), ValueError, "fan_out"),
    (dict(widths=[3, 3, 3], depth=5), ValueError, "depth"),
    (dict(fan_in=4, depth=0), ValueError, "depth"),
    (dict(fan_in=4, input_variance=-1.0), ValueError, "input_variance"),
    (dict(fan_in=4, input_variance=float("nan")), ValueError, "input_variance"),
    (dict(fan_in=4, bias_variance=float("inf")), ValueError, "bias_variance"),
    (dict(fan_in=4, quantity="gradients"), ValueError, "did you mean 'gradient'"),
    (dict(fan_in=4, method="closed"), ValueError, "method"),
    (dict(fan_in=4, per_layer="yes"), ValueError, "per_layer"),
]


@pytest.mark.parametrize("kwargs, exc, text", BAD)
def test_bad_arguments(kwargs, exc, text):
    with pytest.raises(exc, match=text):
        pv("relu", "he_normal", **kwargs)


def test_bad_names_and_impossible_methods():
    with pytest.raises(ValueError, match="did you mean 'he_normal'"):
        pv("relu", "he_norml", fan_in=3)
    with pytest.raises(ValueError, match="did you mean 'tanh'"):
        pv("tanhh", "he_normal", fan_in=3)
    with pytest.raises(ValueError, match="method"):
        pv("relu", "uniform", fan_in=3, method="closed_form")


# ----- sizes and underflow (issue "Correctness first", item 2) --------------------------------

def test_huge_depth_last_layer_in_constant_memory():
    import time
    import tracemalloc

    tracemalloc.start()
    t0 = time.perf_counter()
    got = [pv("relu", "he_normal", fan_in=64, depth=10**7, quantity=q)
           for q in ("preactivation", "gradient", "weight_gradient")]
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got == [2.0, 2.0, 1.0]  # He + ReLU: q_l = 2 q_0 at every layer, chi = 1
    assert peak < 20 * 2**20 and elapsed < 10  # was 4 GB and 26 s
    assert pv("relu", "he_normal", fan_in=64, depth=10**9, quantity="preactivation") == 2.0


def test_per_layer_arrays_that_cannot_fit_are_refused_before_allocating():
    from varprop.errors import VarpropError

    for call in (lambda: pv("relu", "he_normal", fan_in=64, depth=10**12, per_layer=True),
                 lambda: propagate("tanh", "xavier_normal", fan_in=64, depth=10**12),
                 lambda: pv("relu", "uniform", fan_in=64, depth=10**12)):
        with pytest.raises(VarpropError, match=r"would need [\d,]{15,} bytes"):
            call()


@pytest.mark.parametrize("act, init, kw", [
    ("tanh", "xavier_normal", dict(fan_in=30, depth=300, bias_variance=0.05)),
    ("relu", "he_uniform", dict(fan_in=7, fan_out=40, depth=50)),
    ("sigmoid", "lecun_normal", dict(widths=[5, 9, 9, 9, 9], input_variance=2.0)),
    ("erf", "orthogonal", dict(fan_in=16, depth=2000, bias_variance=0.2)),
    ("linear", "uniform", dict(fan_in=6, depth=40)),
])
def test_last_layer_path_is_bit_identical_to_per_layer(act, init, kw):
    for q in varprop.theory.predict.QUANTITIES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", varprop.VarpropWarning)
            arr = pv(act, init, quantity=q, per_layer=True, **kw)
            one = pv(act, init, quantity=q, **kw)
        assert one == float(arr[0] if spec(q).backward else arr[-1])


def test_underflow_warns_like_overflow():
    tiny = varprop.init_scheme("normal", std=0.01)  # q shrinks by 5e-4 per layer
    for q in ("preactivation", "activation_second_moment", "gradient", "weight_gradient"):
        with pytest.warns(varprop.VarpropWarning, match="underflows to 0.0"):
            assert pv("relu", tiny, fan_in=10, depth=400, quantity=q) == 0.0
        with pytest.warns(varprop.VarpropWarning, match="underflows to 0.0"):
            assert pv("relu", tiny, fan_in=10, depth=400, quantity=q, per_layer=True)[
                0 if q in ("gradient", "weight_gradient") else -1] == 0.0


def test_true_zero_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", varprop.VarpropWarning)
        for q in varprop.theory.predict.QUANTITIES:
            pv("relu", "he_normal", fan_in=10, depth=5, input_variance=0.0, quantity=q)
            pv("relu", "he_normal", fan_in=10, depth=5, input_variance=0.0, quantity=q, per_layer=True)


@pytest.mark.parametrize("scheme", [varprop.init_scheme("normal", std=1e-300),
                                    varprop.init_scheme("truncated_normal", bound=1e-300)])
@pytest.mark.parametrize("quantity", ["preactivation", "gradient"])
def test_underflow_of_the_weight_variance_itself_warns(scheme, quantity) -> None:
    # the weight variance (1e-600, 3.3e-601) is below the float range: 0.0 was returned silently
    with pytest.warns(varprop.VarpropWarning, match="underflows to 0.0"):
        assert pv("relu", scheme, fan_in=16, depth=3, quantity=quantity) == 0.0


def test_a_recursion_that_never_settles_is_refused_fast_at_huge_depth() -> None:
    # tanh/lecun_normal decays like 1/l forever (no bitwise fixed point): depth 10**9 ran for
    # hours; now it is refused after the first probe, with the estimated time
    import time

    t = time.perf_counter()
    with pytest.raises(varprop.InvalidArgument, match=r"depth=1000000000.*would take about"):
        pv("tanh", "lecun_normal", fan_in=16, depth=10**9)
    assert time.perf_counter() - t < 30
