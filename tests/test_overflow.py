"""Tests for varprop.theory.overflow: predicted first-overflow / first-underflow layers.

References are independent of the code under test: Monte Carlo runs of ``varprop.simulate``
(another engineer's engine, Gaussian shortcut: exact in distribution) and a direct NumPy
simulation written here (the exact conditional law ``z_l | a_{l-1} ~ N(0, s^2 ||a_{l-1}||^2 I)``).
All runs are seeded, so the tests are deterministic.  The comparison allows 5 binomial standard
errors (a false failure for a correct *exact* model would have probability < 1e-6 per cell) plus
0.03 for the model's documented approximations (conditioning of survivors, Gamma-matched
increments for ReLU).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import varprop as vp
from varprop.theory.overflow import (
    DepthDistribution,
    dtype_limits,
    overflow_depth,
    overflow_distribution,
    underflow_depth,
    underflow_distribution,
)

R = 2000
MODEL_SLACK = 0.03


def _assert_pmf_close(first: np.ndarray, dist: DepthDistribution, replicates: int) -> None:
    """Per-depth frequencies of the first-event layer (0 = never) against the prediction."""
    L = len(dist.pmf)
    counts = np.bincount(first, minlength=L + 1)[: L + 1] / replicates
    predicted = np.concatenate([[dist.never], dist.pmf])
    se = np.sqrt(np.maximum(predicted * (1 - predicted), 1e-4) / replicates)
    bad = np.abs(counts - predicted) > 5 * se + MODEL_SLACK
    assert not bad.any(), {int(k): (float(counts[k]), float(predicted[k]))
                           for k in np.flatnonzero(bad)}


def _direct_overflow(n: int, std: float, depth: int, threshold: float, seed: int,
                     replicates: int = R) -> np.ndarray:
    """Exact-in-law simulation of a linear Gaussian net: first layer with max |z| > threshold."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((replicates, n))
    log_norm2 = np.log(np.sum(x * x, axis=1))
    first = np.zeros(replicates, dtype=int)
    for layer in range(1, depth + 1):
        z = rng.standard_normal((replicates, n)) * (std * np.exp(0.5 * log_norm2))[:, None]
        hit = (np.abs(z).max(axis=1) > threshold) & (first == 0)
        first[hit] = layer
        log_norm2 = np.log(np.sum(z * z, axis=1))
    return first


# ---------------------------------------------------------------------------------------------
# the seeds' configuration: width 100 and 256, N(0, 1) weights, linear, float32
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width, depth, seed", [(100, 42, 11), (256, 35, 12)])
def test_linear_standard_normal_against_simulate(width: int, depth: int, seed: int) -> None:
    res = vp.simulate("linear", "standard_normal", fan_in=width, depth=depth, replicates=R,
                      dtype="float32", seed=seed, engine="gaussian")
    dist = overflow_distribution("linear", "standard_normal", fan_in=width, max_depth=depth)
    _assert_pmf_close(np.asarray(res.nonfinite_layer_per_replicate), dist, R)
    # simulate reports the earliest replicate's layer; it lies in the predicted support
    assert dist.pmf[res.overflow_layer - 1] > 1e-4


def test_seed_numbers_are_plausible() -> None:
    """Seeds: NaN detected at zero-based loop index 37 (width 100) and 31 (width 256), i.e. at
    layers 38 and 32 (1-based).  NaN appears at the first overflowing layer F (float32 partial
    sums meeting +inf and -inf) or one later, so the seeds' layers are F or F + 1 for some F in
    the predicted support; the predicted medians are within one layer of them."""
    d100 = overflow_distribution("linear", "standard_normal", fan_in=100, max_depth=100)
    d256 = overflow_distribution("linear", "standard_normal", fan_in=256, max_depth=100)
    assert d100.median in (38, 39) and d256.median == 32
    assert d100.probability(38) + d100.probability(37) > 0.05  # seed 001: layer 38 (index 37)
    assert d256.probability(32) + d256.probability(31) > 0.05  # seed 003: layer 32 (index 31)
    # back-of-envelope: scale sqrt(n)^l times the typical maximum sqrt(2 ln n) reaches M
    M = dtype_limits("float32")[0]
    for n, d in ((100, d100), (256, d256)):
        rough = (math.log(M) - 0.5 * math.log(2 * math.log(n))) / math.log(math.sqrt(n))
        assert abs(d.median - rough) <= 1.5


@pytest.mark.parametrize("dtype, n, std, depth", [("float16", 64, 1.0, 12), ("bfloat16", 100, 1.0, 45),
                                                 ("float32", 30, 0.5, 80)])
def test_linear_against_direct_simulation(dtype: str, n: int, std: float, depth: int) -> None:
    """float16/bfloat16 are not simulated by varprop.simulate: use the direct simulation."""
    big, _ = dtype_limits(dtype)  # type: ignore[arg-type]
    first = _direct_overflow(n, std, depth, big, seed=hash((dtype, n)) % 2**32)
    dist = overflow_distribution("linear", vp.init_scheme("normal", std=std), fan_in=n,
                                 max_depth=depth, dtype=dtype)  # type: ignore[arg-type]
    _assert_pmf_close(first, dist, R)


def test_relu_against_simulate() -> None:
    res = vp.simulate("relu", "standard_normal", fan_in=64, depth=60, replicates=R,
                      dtype="float32", seed=13, engine="gaussian")
    dist = overflow_distribution("relu", "standard_normal", fan_in=64, max_depth=60)
    _assert_pmf_close(np.asarray(res.nonfinite_layer_per_replicate), dist, R)


def test_custom_softplus_against_simulate() -> None:
    """A non-linear (asymptotically ReLU-like) custom activation: mean-field drift."""
    res = vp.simulate("log(1 + exp(x))", "standard_normal", fan_in=100, depth=50, replicates=R,
                      dtype="float32", seed=14, engine="gaussian")
    dist = overflow_distribution("log(1 + exp(x))", "standard_normal", fan_in=100, max_depth=50)
    _assert_pmf_close(np.asarray(res.nonfinite_layer_per_replicate), dist, R)


def test_gradient_against_simulate() -> None:
    """Backward: depth k counts layers back from the output; simulate's layer is L - k + 1.
    A tiny input keeps the forward pass finite (else simulate does not assess the backward)."""
    L = 45
    res = vp.simulate("linear", "standard_normal", fan_in=100, depth=L, input_variance=1e-30,
                      replicates=R, dtype="float32", seed=15, engine="gaussian")
    assert res.overflow_layer is None and res.underflow_layer is None
    g = np.asarray(res.gradient_nonfinite_layer_per_replicate)
    k = np.where(g > 0, L - g + 1, 0)
    dist = overflow_distribution("linear", "standard_normal", fan_in=100, max_depth=L,
                                 quantity="gradient", input_variance=1e-30)
    _assert_pmf_close(k, dist, R)


@pytest.mark.parametrize("act, std, n", [("linear", 0.01, 100), ("tanh", 0.01, 100)])
def test_underflow_against_simulate(act: str, std: float, n: int) -> None:
    """simulate flags underflow when every |z_{l,i}| is below finfo.tiny (criterion="all")."""
    scheme = vp.init_scheme("normal", std=std)
    res = vp.simulate(act, scheme, fan_in=n, depth=45, replicates=R, dtype="float32", seed=16,
                      engine="gaussian")
    dist = underflow_distribution(act, scheme, fan_in=n, max_depth=45)
    _assert_pmf_close(np.asarray(res.underflow_layer_per_replicate), dist, R)


@pytest.mark.parametrize("criterion", ["all", "rms"])
def test_underflow_criteria_against_direct_simulation(criterion: str) -> None:
    """criterion="all": every |z_i| below the smallest normal; "rms": their root mean square."""
    n, std, depth = 100, 0.01, 45
    tiny = dtype_limits("float32")[1]
    rng = np.random.default_rng(17)
    x = rng.standard_normal((R, n))
    log_norm2 = np.log(np.sum(x * x, axis=1))
    first = np.zeros(R, dtype=int)
    for layer in range(1, depth + 1):
        z = rng.standard_normal((R, n)) * (std * np.exp(0.5 * log_norm2))[:, None]
        small = (np.abs(z).max(axis=1) < tiny) if criterion == "all" else (
            np.sqrt(np.mean(z * z, axis=1)) < tiny)
        first[small & (first == 0)] = layer
        log_norm2 = np.log(np.sum(z * z, axis=1))
    dist = underflow_distribution("linear", vp.init_scheme("normal", std=std), fan_in=n,
                                  max_depth=depth, criterion=criterion)  # type: ignore[arg-type]
    _assert_pmf_close(first, dist, R)


def test_rms_underflow_comes_first() -> None:
    scheme = vp.init_scheme("normal", std=0.01)
    every = underflow_distribution("linear", scheme, fan_in=100, max_depth=45)
    rms = underflow_distribution("linear", scheme, fan_in=100, max_depth=45, criterion="rms")
    assert rms.mean() < every.mean()


# ---------------------------------------------------------------------------------------------
# deterministic facts
# ---------------------------------------------------------------------------------------------

def test_dtype_limits() -> None:
    assert dtype_limits("float16") == (65504.0, 2.0**-14)
    assert dtype_limits("bfloat16") == pytest.approx((3.3895313892515355e38, 1.1754943508222875e-38))
    assert dtype_limits("float64")[0] == np.finfo(np.float64).max


def test_never_cases() -> None:
    # He-initialised ReLU keeps the variance at 2: never overflows
    assert overflow_depth("relu", "he_normal", fan_in=100, max_depth=200) is None
    # bounded activation: |z| <= sum |w| never reaches float32 max
    assert overflow_depth("tanh", "standard_normal", fan_in=100, max_depth=200) is None
    # orthogonal weights preserve the norm exactly (square layers)
    assert overflow_depth("linear", "orthogonal", fan_in=64, max_depth=200) is None
    # sigmoid(0) = 1/2: its activations never underflow
    assert underflow_depth("sigmoid", vp.init_scheme("normal", std=0.01), fan_in=50,
                           quantity="activation", max_depth=100, criterion="all") is None


def test_orthogonal_gain_is_deterministic_growth() -> None:
    """Orthogonal weights with gain g: ||z_l|| = g^l ||x|| exactly; the only randomness is the
    input norm and the largest entry: same scale as N(0, g^2/n) weights, narrower spread."""
    ortho = overflow_distribution("linear", vp.init_scheme("orthogonal", gain=10.0), fan_in=100,
                                  max_depth=60)
    gauss = overflow_distribution("linear", vp.init_scheme("normal", std=1.0), fan_in=100,
                                  max_depth=60)
    assert abs(ortho.median - gauss.median) <= 1


def test_float64_and_float16_scale() -> None:
    # sigma_l = 10^l for width 100: float16 (65504) at l = 5, float64 (1.8e308) at l ~ 308
    assert overflow_depth("linear", "standard_normal", fan_in=100, dtype="float16") == 5
    d = overflow_distribution("linear", "standard_normal", fan_in=100, dtype="float64")
    assert d.median in (307, 308)
    assert d.log_scale[-1] > 700  # scales beyond float64 are kept as logs


def test_activation_quantity_thresholds() -> None:
    # exp overflows float32 at z > 88.7: the activation overflows a layer before the pre-activation
    a = overflow_depth("exp(x)", "lecun_normal", fan_in=100, quantity="activation")
    z = overflow_depth("exp(x)", "lecun_normal", fan_in=100, quantity="preactivation")
    assert a is not None and z is not None and a < z
    # ReLU: only the positive side overflows, a little later (or equally) than |z|
    ra = overflow_distribution("relu", "standard_normal", fan_in=64, max_depth=80,
                               quantity="activation")
    rz = overflow_distribution("relu", "standard_normal", fan_in=64, max_depth=80)
    assert ra.mean() > rz.mean()


def test_distribution_object() -> None:
    d = overflow_distribution("linear", "standard_normal", fan_in=100, max_depth=60)
    assert d.pmf.sum() == pytest.approx(1.0, abs=1e-9) and d.never < 1e-9
    assert np.all(np.diff(d.cdf) >= 0)
    lo, hi = d.interval(0.9)
    assert lo <= d.median <= hi
    assert d.quantile(0.01) <= d.quantile(0.99)
    assert d.probability(1000) == 0.0
    assert overflow_depth("linear", "standard_normal", fan_in=100, quantile=0.99) == d.quantile(0.99)
    short = overflow_distribution("linear", "standard_normal", fan_in=100, max_depth=10)
    assert short.never == pytest.approx(1.0) and short.median is None


def test_bias_and_widths() -> None:
    # widths=[...] fixes the depth; a large bias variance keeps tanh nets from underflowing
    d = overflow_distribution("linear", "standard_normal", widths=[100] * 46)
    assert len(d.pmf) == 45 and d.median == overflow_depth("linear", "standard_normal",
                                                           fan_in=100, max_depth=45)
    assert underflow_depth("tanh", vp.init_scheme("normal", std=0.01), fan_in=100,
                           bias_variance=0.1, max_depth=100) is None


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"dtype": "float8"}, ValueError, "dtype"),
    ({"quantity": "weights"}, ValueError, "quantity"),
    ({"max_depth": 0}, ValueError, "max_depth"),
    ({"max_depth": 2.5}, TypeError, "max_depth"),
    ({"quantile": 1.5}, ValueError, "quantile"),
    ({"input_variance": 0.0}, ValueError, "input_variance"),
    ({"bias_variance": -1.0}, ValueError, "bias_variance"),
    ({"fan_in": None}, ValueError, "fan_in"),
])
def test_bad_arguments(kwargs: dict, exc: type, name: str) -> None:
    args = {"fan_in": 100} | kwargs
    with pytest.raises(exc, match=name):
        overflow_depth("linear", "standard_normal", **args)


def test_bad_scheme_and_criterion() -> None:
    with pytest.raises(ValueError, match="init"):
        overflow_depth("linear", "uniform", fan_in=10)  # mean 1/2: not zero-mean
    with pytest.raises(ValueError, match="criterion"):
        underflow_depth("linear", "standard_normal", fan_in=10, criterion="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        overflow_depth("rleu", "standard_normal", fan_in=10)


def test_long_walk_is_fast_and_max_depth_is_bounded():
    import time

    # was 82-115 s (subnormal tails of the walk's density and an FFT length 40003 = 109 * 367);
    # about 6 s now on a loaded 2-core machine
    start = time.perf_counter()
    assert overflow_depth("relu", "he_normal", fan_in=64, max_depth=4000) is None
    assert time.perf_counter() - start < 40.0
    with pytest.raises(vp.errors.InvalidArgument, match="max_depth"):
        overflow_depth("relu", "he_normal", fan_in=64, max_depth=10**12)
    for name, value in (("input_variance", 10**400), ("bias_variance", 10**400),
                        ("max_depth", 10**400), ("fan_in", True), ("input_variance", math.nan)):
        with pytest.raises(vp.errors.VarpropError):
            underflow_depth("tanh", "he_normal", **{"fan_in": 64, name: value})
