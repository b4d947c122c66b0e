r"""simulate() / SimulationResult: exact finite-width moments, engine equivalence, reproducibility,
overflow/underflow reporting and argument validation.

Statistical tests use fixed seeds (deterministic).  Where a tolerance is needed it is ``Z = 5``
standard errors, the standard error coming from the *exact* coefficient of variation of the
replicate statistic where it is known in closed form (Gaussian weights), so that under the normal
approximation the false-failure probability of each check is below :math:`6\times10^{-7}`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

import varprop
from varprop.errors import InvalidArgument
from varprop.simulation.montecarlo import (
    BACKWARD_QUANTITIES,
    ESTIMATES,
    FORWARD_QUANTITIES,
    QUANTITIES,
    SimulationOverflowError,
    SimulationResult,
    simulate,
)
from varprop.simulation.statistics import Draws

Z = 5.0  # standard errors: two-sided normal tail 5.7e-7


def _close_to(sample: np.ndarray, expected: float, cv2: float) -> None:
    """The mean of ``sample`` is within Z standard errors of ``expected`` (exact CV^2 given)."""
    se = expected * math.sqrt(cv2 / sample.size)
    assert abs(sample.mean() - expected) <= Z * se, (sample.mean(), expected, se)


def _close_to_empirical(sample: np.ndarray, expected: float) -> None:
    se = sample.std(ddof=1) / math.sqrt(sample.size)
    assert abs(sample.mean() - expected) <= Z * se, (sample.mean(), expected, se)


# ------------------------------------------------------------------------- shapes and metadata
def test_shapes_metadata_and_public_export():
    res = varprop.simulate("tanh", "xavier_normal", fan_in=12, fan_out=8, depth=3, replicates=70,
                           batch=2, seed=3)
    assert isinstance(res, SimulationResult) and varprop.SimulationResult is SimulationResult
    assert res.widths == (12, 8, 8, 8) and res.depth == 3
    assert (res.replicates, res.batch, res.seed, res.dtype) == (70, 2, 3, "float64")
    assert res.engine == "gaussian" and res.engine_requested == "auto"
    assert res.block_size == 64 and res.chunk_size % res.block_size == 0
    assert res.activation == varprop.activation("tanh") and res.scheme == res.init
    for q in QUANTITIES:
        arr = res.per_replicate(q)
        assert arr.shape == (70, 3) and arr.dtype == np.float64 and np.isfinite(arr).all()
        assert res.per_replicate(q, layer=2).shape == (70,)
        np.testing.assert_array_equal(res.per_replicate(q, -1), arr[:, 2])
    assert res.overflow_layer is None and res.gradient_overflow_layer is None
    assert res.underflow_layer is None and res.gradient_underflow_layer is None
    assert res.valid.all() and res.gradient_valid.all()
    assert (res.count("activation_second") == 70).all()
    assert "SimulationResult(tanh" in repr(res)


def test_statistics_match_a_direct_recomputation():
    """The recorded statistics are the stated averages (recomputed here from a tiny dense net
    built with the same per-block stream order: x, then per layer W, b; then delta_L)."""
    widths, B, act = (5, 4, 3), 2, np.tanh
    res = simulate("tanh", "lecun_normal", widths=widths, replicates=1, batch=B, seed=11,
                   engine="dense", bias_variance=0.5)
    rng = np.random.default_rng(np.random.SeedSequence(11).spawn(1)[0])
    x = rng.standard_normal((1, 5, B))[0]
    a, zs, As, Ws = x, [], [x], []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        w = rng.standard_normal((1, n_out, n_in))[0] / math.sqrt(n_in)
        b = rng.standard_normal((1, n_out, 1))[0] * math.sqrt(0.5)
        z = w @ a + b
        a = act(z)
        zs.append(z), As.append(a), Ws.append(w)
    delta = rng.standard_normal((1, 3, B))[0]
    got = {q: res.per_replicate(q)[0] for q in QUANTITIES}
    for l in range(2):
        z, a = zs[l], As[l + 1]
        assert math.isclose(got["preactivation_mean"][l], z.mean(), rel_tol=1e-12)
        assert math.isclose(got["preactivation_second"][l], (z**2).mean(), rel_tol=1e-12)
        assert math.isclose(got["activation_mean"][l], a.mean(), rel_tol=1e-12)
        assert math.isclose(got["activation_second"][l], (a**2).mean(), rel_tol=1e-12)
        assert math.isclose(got["preactivation_unit_std"][l], np.std(z[:, 0]), rel_tol=1e-12)
        assert math.isclose(got["activation_unit_std"][l], np.std(a[:, 0]), rel_tol=1e-12)
    for l in (1, 0):
        g = Ws[l].T @ delta
        per_example = np.stack([np.outer(delta[:, b], As[l][:, b]) for b in range(B)])
        assert math.isclose(got["delta_second"][l], (delta**2).mean(), rel_tol=1e-12)
        assert math.isclose(got["gradient_second"][l], (g**2).mean(), rel_tol=1e-12)
        assert math.isclose(got["weight_gradient_second"][l], (per_example**2).mean(), rel_tol=1e-12)
        delta = (1 - np.tanh(zs[l - 1]) ** 2) * g if l else None


# ------------------------------------------------------------- exact finite-width second moments
@pytest.mark.parametrize("engine", ["gaussian", "dense"])
def test_linear_lecun_preserves_the_preactivation_second_moment_exactly(engine):
    # ||z_L||^2 / n = v * prod_{l=0}^{L} chi2_n / n  =>  E = v, CV^2 = (1 + 2/n)^(L+1) - 1.
    n, L, v = 24, 4, 1.7
    res = simulate("linear", "lecun_normal", fan_in=n, depth=L, input_variance=v, replicates=1500,
                   seed=101, engine=engine)
    for l in range(1, L + 1):
        _close_to(res.per_replicate("preactivation_second", l), v, (1 + 2 / n) ** (l + 1) - 1)


@pytest.mark.parametrize("engine", ["gaussian", "dense"])
def test_relu_he_second_moment_is_twice_the_input_variance_at_every_layer(engine):
    # ||a_l||^2 = (2/n) ||a_{l-1}||^2 S, E(2S/n)^2 = 1 + 5/n; ||z_L||^2 = (2/n)||a_{L-1}||^2 chi2_n
    # => E z_l^2 = 2 v exactly, CV^2 = (1 + 2/n)^2 (1 + 5/n)^(l-1) - 1.
    n, L, v = 32, 4, 0.6
    res = simulate("relu", "he_normal", fan_in=n, depth=L, input_variance=v, replicates=1500,
                   seed=202, engine=engine, batch=1)
    for l in range(1, L + 1):
        cv2 = (1 + 2 / n) ** 2 * (1 + 5 / n) ** (l - 1) - 1
        _close_to(res.per_replicate("preactivation_second", l), 2 * v, cv2)
    # activations: E a_l^2 = v, CV^2 = (1 + 2/n)(1 + 5/n)^l - 1
    _close_to(res.per_replicate("activation_second", L), v, (1 + 2 / n) * (1 + 5 / n) ** L - 1)


@pytest.mark.parametrize("engine", ["gaussian", "dense"])
def test_linear_backward_gradient_second_moment_is_the_product_of_widths_times_variances(engine):
    # ||dL/da_0||^2 = ||delta_L||^2 prod_l sigma_l^2 chi2_{n_{l-1}}: E (dL/da_0)^2 per unit =
    # prod_l n_l sigma_l^2 = n_L / n_0 for LeCun; CV^2 = (1 + 2/n_L) prod_l (1 + 2/n_{l-1}) - 1.
    widths = (20, 40, 30, 50)
    res = simulate("linear", "lecun_normal", widths=widths, replicates=1500, seed=303, engine=engine)
    expected = np.prod([n_out / n_in for n_in, n_out in zip(widths[:-1], widths[1:])])
    assert math.isclose(expected, 50 / 20)
    cv2 = (1 + 2 / 50) * np.prod([1 + 2 / n for n in widths[:-1]]) - 1
    _close_to(res.per_replicate("gradient_second", 1), expected, cv2)
    _close_to(res.per_replicate("delta_second", 3), 1.0, 2 / 50)


@pytest.mark.parametrize("scheme", ["lecun_uniform", "truncated_normal", "orthogonal"])
def test_non_gaussian_zero_mean_schemes_dense_engine_exact_moments(scheme):
    # Linear, zero-mean i.i.d. (or orthogonal) weights: E z_L^2 = n sigma_w^2 E z_{L-1}^2 exactly.
    init = varprop.init_scheme(scheme)
    n, L = 16, 3
    _, var_w = init.moments(n, n)
    res = simulate("linear", init, fan_in=n, depth=L, replicates=800, seed=404)
    assert res.engine == "dense"
    _close_to_empirical(res.per_replicate("preactivation_second", L), (n * var_w) ** L)
    _close_to_empirical(res.per_replicate("gradient_second", 1), (n * var_w) ** L)


def test_relu_he_backward_exact_moments_with_batch():
    n, L = 16, 3
    res = simulate("relu", "he_normal", fan_in=n, depth=L, replicates=800, batch=3, seed=505,
                   engine="gaussian")
    for l in range(1, L + 1):
        _close_to_empirical(res.per_replicate("gradient_second", l), 2.0)
        _close_to_empirical(res.per_replicate("delta_second", l), 1.0)
    # per-example weight gradient: E delta_l^2 a_{l-1}^2 = 1 * 1 (a_0 = x has variance 1)
    _close_to_empirical(res.per_replicate("weight_gradient_second", 1), 1.0)


def test_orthogonal_linear_network_has_zero_variance_norms():
    res = simulate("linear", "orthogonal", fan_in=10, depth=6, replicates=64, seed=6, batch=2)
    z2 = res.per_replicate("preactivation_second")
    np.testing.assert_allclose(z2, np.repeat(z2[:, :1], 6, axis=1), rtol=1e-12)
    g2 = res.per_replicate("gradient_second")
    np.testing.assert_allclose(g2[:, 0], res.per_replicate("delta_second", 6), rtol=1e-12)
    # while Gaussian weights of the same variance fluctuate
    gauss = simulate("linear", "lecun_normal", fan_in=10, depth=6, replicates=64, seed=6)
    ratio = gauss.per_replicate("preactivation_second", 6) / gauss.per_replicate("preactivation_second", 1)
    assert ratio.std() > 0.2


def test_estimate_uses_predict_vocabulary():
    res = simulate("sigmoid", "xavier_normal", fan_in=8, depth=2, replicates=128, seed=2)
    assert set(ESTIMATES) == {"preactivation", "activation", "activation_second_moment", "gradient",
                              "weight_gradient", "output", "output_gradient"}
    act = res.estimate("activation")
    expected = res.mean("activation_second") - res.mean("activation_mean") ** 2
    np.testing.assert_allclose(act, expected, rtol=1e-15)
    assert res.estimate("gradient", layer=1) == res.mean("gradient_second", 1)
    assert res.estimate("activation_second_moment", -1) == res.mean("activation_second")[-1]
    assert 0.0 < res.estimate("activation", 1) < 0.25  # the variance of a [0, 1]-valued unit
    sem = res.sem("activation_second")
    assert sem.shape == (2,) and (sem > 0).all()


# -------------------------------------------------------------------- engines agree in distribution
CONFIGS = [
    dict(activation="relu", init="he_normal", fan_in=16, depth=3, batch=1),
    dict(activation="tanh", init="xavier_normal", widths=[24, 12, 20, 8], batch=1, bias_variance=0.3),
    dict(activation="tanh", init="lecun_normal", fan_in=12, depth=3, batch=3),
    dict(activation="relu", init=varprop.init_scheme("normal", std=0.3, mean=0.05), fan_in=10,
         depth=3, batch=2, input_variance=0.5),
]


def _joint_pvalue(ra: SimulationResult, rb: SimulationResult, l: int) -> float:
    """Equal forward-backward dependence: the Spearman correlation of ||z_l||^2 and
    ||W_l^T delta_l||^2 (dependent through W_l) compared by Fisher's z (var 1.06/(R-3))."""
    r = [scipy.stats.spearmanr(res.per_replicate("preactivation_second", l),
                               res.per_replicate("gradient_second", l))[0] for res in (ra, rb)]
    se = math.sqrt(1.06 / (ra.replicates - 3) + 1.06 / (rb.replicates - 3))
    return float(2 * scipy.stats.norm.sf(abs(math.atanh(r[0]) - math.atanh(r[1])) / se))


def _two_sample_pvalues(kw_a: dict, kw_b: dict, replicates: int) -> list[float]:
    ra = simulate(**kw_a, replicates=replicates, seed=1000, engine="gaussian")
    rb = simulate(**kw_b, replicates=replicates, seed=2000, engine="dense")
    assert (ra.engine, rb.engine) == ("gaussian", "dense")
    out = []
    for l in (1, ra.depth):
        for q in QUANTITIES:
            out.append(scipy.stats.ks_2samp(ra.per_replicate(q, l), rb.per_replicate(q, l)).pvalue)
        out.append(_joint_pvalue(ra, rb, l))
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c['activation']}-b{c['batch']}")
def test_gaussian_shortcut_and_dense_engine_agree_in_distribution(config):
    # KS on the 9 statistics + the joint-dependence test at the first and last layer; Bonferroni over the 20
    # tests at family-wise level 1e-4 (seeds fixed, so the outcome is deterministic).
    pvalues = _two_sample_pvalues(config, config, 1500)
    assert min(pvalues) > 1e-4 / len(pvalues), min(pvalues)


def test_two_sample_check_has_power_against_a_wrong_variance():
    # a 20% error in the weight variance of the dense side is detected by the same procedure
    a = dict(activation="tanh", init="lecun_normal", fan_in=12, depth=3, batch=1)
    b = dict(a, init=varprop.init_scheme("normal", std=math.sqrt(1.2 / 12)))
    assert min(_two_sample_pvalues(a, b, 1500)) < 1e-4 / 20


@pytest.mark.parametrize("batch", [1, 2])
def test_two_sample_check_has_power_against_a_backward_pass_ignoring_the_forward(monkeypatch, batch):
    """Drawing W^T delta afresh (dropping the conditioning on the forward pass) leaves every
    marginal right but breaks the joint law; the joint-dependence test detects it."""
    import varprop.simulation.gaussian as gs

    def wrong(draw, cache, delta, s, mu):  # each column N(0, s^2 ||delta_b||^2 I), fresh
        qmat, _ = cache
        f = draw((qmat.shape[1], delta.shape[2]))
        norm = np.sqrt((delta.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
        return (s * norm * f).astype(delta.dtype)

    def no_projection(x, y):  # batch-1 path: e.delta = a.f = 0, i.e. g = s ||delta|| f
        return np.zeros(x.shape[0])

    cfg = dict(activation="linear", init="lecun_normal", fan_in=2, depth=2, batch=batch)
    dense = simulate(**cfg, replicates=2000, seed=8, engine="dense")
    good = simulate(**cfg, replicates=2000, seed=9, engine="gaussian")
    if batch == 1:
        monkeypatch.setattr(gs, "row_dot", no_projection)
    else:
        monkeypatch.setattr(gs, "backward_batch", wrong)
    bad = simulate(**cfg, replicates=2000, seed=9, engine="gaussian")
    assert _joint_pvalue(good, dense, 2) > 1e-3
    assert _joint_pvalue(bad, dense, 2) < 1e-6
    # the marginal of the gradient alone cannot tell
    assert scipy.stats.ks_2samp(bad.per_replicate("gradient_second", 2),
                                dense.per_replicate("gradient_second", 2)).pvalue > 1e-3


# ------------------------------------------------------------------------------ reproducibility
SHIFTED = varprop.init_scheme("normal", std=0.3, mean=0.02)


@pytest.mark.parametrize("engine, batch, dtype, init", [
    ("gaussian", 1, "float64", "he_normal"), ("gaussian", 3, "float32", "he_normal"),
    ("dense", 1, "float32", "he_normal"), ("dense", 2, "float64", "he_normal"),
    ("gaussian", 1, "float32", SHIFTED), ("gaussian", 2, "float64", SHIFTED),
    ("dense", 2, "float32", SHIFTED), ("dense", 1, "float64", "he_uniform"),
])
def test_same_seed_is_bit_identical_for_any_chunking(engine, batch, dtype, init):
    kw = dict(fan_in=9, depth=3, replicates=150, batch=batch, dtype=dtype, engine=engine, seed=42,
              bias_variance=0.2)
    runs = [simulate("tanh", init, chunk_size=c, **kw) for c in (1, 64, 128, None)]
    assert runs[0].chunk_size == 64 and runs[2].chunk_size == 128
    for q in QUANTITIES:
        for other in runs[1:]:
            np.testing.assert_array_equal(runs[0].per_replicate(q), other.per_replicate(q))
    different = simulate("tanh", "he_normal", **dict(kw, seed=43))
    assert not np.array_equal(different.per_replicate("activation_second"),
                              runs[0].per_replicate("activation_second"))


@pytest.mark.parametrize("engine, n, batch", [("gaussian", 20000, 1), ("dense", 300, 40)])
def test_chunking_invariance_with_rows_longer_than_numpy_buffers(engine, n, batch):
    # per-replicate rows of n * batch > 8192 elements (NumPy's casting buffer) in float32
    kw = dict(fan_in=n, depth=1, replicates=130, batch=batch, dtype="float32", engine=engine, seed=4)
    a = simulate("relu", "he_normal", chunk_size=64, **kw)
    b = simulate("relu", "he_normal", chunk_size=192, **kw)
    for q in QUANTITIES:
        np.testing.assert_array_equal(a.per_replicate(q), b.per_replicate(q))


def test_seed_none_records_a_reusable_seed():
    a = simulate("relu", "he_normal", fan_in=4, depth=2, replicates=10, seed=None)
    b = simulate("relu", "he_normal", fan_in=4, depth=2, replicates=10, seed=a.seed)
    np.testing.assert_array_equal(a.per_replicate("activation_second"),
                                  b.per_replicate("activation_second"))


def test_results_are_read_only():
    res = simulate("relu", "he_normal", fan_in=4, depth=2, replicates=10)
    with pytest.raises(ValueError):
        res.valid[0, 0] = False
    arr = res.per_replicate("activation_second")
    arr[0, 0] = -1.0  # a copy
    assert res.per_replicate("activation_second")[0, 0] != -1.0


def test_float32_and_float64_agree_statistically():
    kw = dict(fan_in=32, depth=3, replicates=600, engine="gaussian")
    r32 = simulate("linear", "lecun_normal", dtype="float32", seed=1, **kw)
    r64 = simulate("linear", "lecun_normal", dtype=np.float64, seed=2, **kw)
    assert r32.dtype == "float32" and r64.dtype == "float64"
    for res in (r32, r64):
        _close_to(res.per_replicate("preactivation_second", 3), 1.0, (1 + 2 / 32) ** 4 - 1)


# --------------------------------------------------------------------------- overflow / underflow
def _theoretical_overflow_layer(n: int) -> int:
    r"""Median first layer with a non-finite value: N(0,1) weights, linear, float32, batch 1.

    :math:`\ln\|x_{L-1}\|^2` is a sum of :math:`L` i.i.d. :math:`\ln\chi^2_n` terms (input plus
    :math:`L-1` layers), :math:`E\ln\chi^2_n = \psi(n/2) + \ln 2`; the largest entry of
    :math:`z_L` is :math:`\|x_{L-1}\| \max_i |g_i|` with median :math:`t` of the max of :math:`n`
    half-normals, :math:`(2\Phi(t)-1)^n = 1/2`.  Overflow when it exceeds float32's max."""
    e_log_chi2 = scipy.special.digamma(n / 2) + math.log(2)
    t = scipy.stats.norm.ppf((1 + 0.5 ** (1 / n)) / 2)
    log_max = math.log(float(np.finfo(np.float32).max))
    return math.ceil(2 * (log_max - math.log(t)) / e_log_chi2)


@pytest.mark.parametrize("n, seeds_layer", [(100, 38), (256, 32)])
def test_float32_overflow_layer_matches_theory_and_the_seeds(n, seeds_layer):
    theory = _theoretical_overflow_layer(n)
    assert abs(theory - seeds_layer) <= 1
    res = simulate("linear", "standard_normal", fan_in=n, depth=theory + 6, replicates=256,
                   dtype="float32", seed=37)
    first = res.nonfinite_layer_per_replicate
    assert (first > 0).all()  # every replicate overflows
    assert abs(np.median(first) - theory) <= 2, (np.median(first), theory)
    assert abs(res.overflow_layer - seeds_layer) <= 2
    # statistics are masked from the first non-finite layer on, NaN-free
    for q in QUANTITIES:
        m = res.masked(q)
        assert np.isfinite(m.data).all() and m.mask.any()
    layer = np.arange(1, res.depth + 1)
    np.testing.assert_array_equal(res.valid, layer[None, :] < first[:, None])
    assert not res.gradient_valid.any()
    assert (res.gradient_nonfinite_layer_per_replicate == -1).all()
    with pytest.raises(SimulationOverflowError, match="valid_only=True"):
        res.per_replicate("preactivation_second")
    early = res.per_replicate("preactivation_second", 5)  # all valid at layer 5
    assert early.shape == (256,)
    counts = res.count("preactivation_second")
    assert (np.diff(counts) <= 0).all() and counts[0] == 256 and counts[-1] == 0
    for l in range(1, res.depth + 1):
        survivors = res.per_replicate("preactivation_second", l, valid_only=True)
        assert survivors.size == counts[l - 1] and np.isfinite(survivors).all()
    assert res.per_replicate("activation_second", valid_only=True).shape == (0, res.depth)
    means = res.mean("preactivation_second", valid_only=True)
    assert np.isfinite(means[: theory - 3]).all()
    assert res.count("preactivation_second")[-1] == 0 and math.isnan(means[-1])
    # the dense engine overflows at the same place
    dense = simulate("linear", "standard_normal", fan_in=n, depth=theory + 2, replicates=24,
                     dtype="float32", seed=38, engine="dense")
    assert abs(np.median(dense.nonfinite_layer_per_replicate) - theory) <= 2


@pytest.mark.parametrize("engine", ["gaussian", "dense"])
def test_backward_overflow_is_reported_separately(engine):
    # tiny inputs keep the forward pass finite; the backward signal grows by sqrt(n) = 10 per layer
    # from delta_L ~ N(0,1): max |g_l| ~ 2.5 * 10^(L - l + 1) exceeds 3.4e38 for l <= L - 37 = 9.
    res = simulate("linear", "standard_normal", fan_in=100, depth=46, input_variance=1e-40,
                   replicates=64, dtype="float32", seed=5, engine=engine)
    assert res.overflow_layer is None and res.valid.all()
    g = res.gradient_nonfinite_layer_per_replicate
    assert (g > 0).all() and abs(np.median(g) - 8.5) <= 1.5
    assert res.gradient_overflow_layer == g.max()
    layer = np.arange(1, 47)
    np.testing.assert_array_equal(res.gradient_valid, layer[None, :] > g[:, None])
    res.per_replicate("gradient_second", 40)  # valid above the overflow


@pytest.mark.parametrize("engine", ["gaussian", "dense"])
def test_no_underflow_is_reported_after_an_overflow(engine):
    # the seeds' N(0,1) net, batch 3: overflowed replicates' activations are zeroed, which used to
    # be reported as an underflow one layer later on the Gaussian engine
    res = simulate("linear", "standard_normal", fan_in=100, depth=45, batch=3, replicates=16,
                   dtype="float32", seed=0, engine=engine)
    assert res.overflow_layer == 38 and res.underflow_layer is None


@pytest.mark.parametrize("engine", ["gaussian", "dense"])
def test_underflow_is_reported_and_masked(engine):
    # variance factor n std^2 = 0.01 per layer: max |z_L| = std ||x_{L-1}|| max|g| with
    # E ln(std^2 ||x_{L-1}||^2) = L (psi(n/2) + ln 2 + ln std^2); every |z_L| < tiny(float32)
    # when 0.5 L (psi(n/2) + ln 2 + ln std^2) + ln t < ln tiny (t: median max of n half-normals).
    n, std = 100, 0.01
    drift = 0.5 * (scipy.special.digamma(n / 2) + math.log(2) + math.log(std**2))
    t = scipy.stats.norm.ppf((1 + 0.5 ** (1 / n)) / 2)
    theory = math.ceil((math.log(float(np.finfo(np.float32).tiny)) - math.log(t)) / drift)
    assert theory == 39
    init = varprop.init_scheme("normal", std=std)
    res = simulate("linear", init, fan_in=n, depth=45, replicates=64, dtype="float32", seed=3,
                   engine=engine)
    assert res.overflow_layer is None
    first = res.underflow_layer_per_replicate
    assert (first > 0).all() and abs(np.median(first) - theory) <= 2
    assert res.underflow_layer == first.min()
    assert not res.valid[:, -1].any() and not res.gradient_valid.any()
    with pytest.raises(SimulationOverflowError):
        res.mean("activation_second")
    r64 = simulate("linear", init, fan_in=100, depth=45, replicates=64, dtype="float64", seed=3)
    assert r64.underflow_layer is None and r64.valid.all()


@given(
    act=st.sampled_from(varprop.activation_names()),
    init=st.sampled_from(varprop.scheme_names()),
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    batch=st.integers(1, 3),
    dtype=st.sampled_from(["float32", "float64"]),
    dense=st.booleans(),
    bias=st.sampled_from([0.0, 0.5]),
)
def test_property_any_configuration_is_finite_valid_and_chunk_invariant(act, init, widths, batch,
                                                                         dtype, dense, bias):
    kw = dict(widths=widths, batch=batch, dtype=dtype, engine="dense" if dense else "auto",
              bias_variance=bias, replicates=70, seed=9)
    a = simulate(act, init, chunk_size=1, **kw)
    b = simulate(act, init, **kw)
    assert a.valid.all() and a.gradient_valid.all()  # tiny, shallow nets stay in range
    for q in QUANTITIES:
        x = a.per_replicate(q)
        assert x.shape == (70, len(widths) - 1) and np.isfinite(x).all()
        np.testing.assert_array_equal(x, b.per_replicate(q))
    assert (a.per_replicate("preactivation_second") >= 0).all()
    assert (a.per_replicate("activation_unit_std") >= 0).all()
    if varprop.activation(act).name in ("relu", "sigmoid"):
        assert (a.per_replicate("activation_mean") >= 0).all()


# ----------------------------------------------------------------------------- engine selection
def test_engine_selection():
    assert simulate("relu", "he_uniform", fan_in=8, replicates=4).engine == "dense"
    assert simulate("relu", "he_normal", fan_in=8, replicates=4, batch=8).engine == "dense"
    assert simulate("relu", "he_normal", fan_in=64, replicates=4, batch=4).engine == "gaussian"
    assert simulate("relu", "he_normal", fan_in=64, replicates=4, engine="dense").engine == "dense"
    with pytest.raises(ValueError, match="engine='gaussian' is not allowed.*non-Gaussian"):
        simulate("relu", "orthogonal", fan_in=8, replicates=4, engine="gaussian")


def test_progress_callback_is_called_per_chunk():
    calls = []
    simulate("relu", "he_normal", fan_in=8, replicates=200, chunk_size=64,
             progress=lambda done, total: calls.append((done, total)))
    assert calls == [(64, 200), (128, 200), (192, 200), (200, 200)]


def test_blas_is_single_threaded_inside_and_restored_after():
    from varprop.simulation import blas as _mc_blas

    funcs = _mc_blas._openblas()
    if funcs is None:
        pytest.skip("NumPy is not linked to OpenBLAS")
    get, _ = funcs
    before = get()
    with _mc_blas.single_threaded_blas():
        assert get() == 1
        with _mc_blas.single_threaded_blas():
            assert get() == 1
        assert get() == 1
    assert get() == before


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")
    res = simulate("relu", "he_normal", fan_in=8, replicates=100, chunk_size=64, progress=True)
    assert res.replicates == 100
    assert "100/100" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- bad input
BAD = [
    (dict(activation="rleu"), ValueError, "activation='rleu'.*did you mean 'relu'"),
    (dict(activation=3), TypeError, "activation"),
    (dict(init="he_normla"), ValueError, "did you mean 'he_normal'"),
    (dict(fan_in=0), ValueError, "fan_in=0"),
    (dict(fan_in=2.5), TypeError, "fan_in"),
    (dict(depth=0), ValueError, "depth=0"),
    (dict(fan_in=None, widths=[4]), ValueError, "widths"),
    (dict(input_variance=-1.0), ValueError, "input_variance=-1.0"),
    (dict(bias_variance=float("nan")), ValueError, "bias_variance"),
    (dict(replicates=0), ValueError, "replicates=0"),
    (dict(replicates=True), TypeError, "replicates"),
    (dict(batch=0), ValueError, "batch=0"),
    (dict(seed=-1), ValueError, "seed=-1"),
    (dict(seed="a"), TypeError, "seed"),
    (dict(dtype="float16"), ValueError, "dtype='float16'.*float32"),
    (dict(dtype="flaot32"), ValueError, "did you mean 'float32'"),
    (dict(dtype=np.int32), ValueError, "dtype"),
    (dict(dtype=3.5), TypeError, "dtype"),
    (dict(engine="dens"), ValueError, "engine='dens'.*did you mean 'dense'"),
    (dict(engine=None), TypeError, "engine"),
    (dict(chunk_size=0), ValueError, "chunk_size=0"),
    (dict(progress="yes"), TypeError, "progress"),
]


@pytest.mark.parametrize("kwargs, exc, text", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_arguments(kwargs, exc, text):
    base = dict(activation="relu", init="he_normal", fan_in=4, depth=2, replicates=4)
    base.update(kwargs)
    with pytest.raises(exc, match=text):
        simulate(base.pop("activation"), base.pop("init"), **base)


def test_bad_accessor_arguments():
    res = simulate("relu", "he_normal", fan_in=4, depth=2, replicates=4)
    with pytest.raises(ValueError, match="did you mean 'activation_second'"):
        res.per_replicate("activation_secnd")
    with pytest.raises(ValueError, match="layer=3"):
        res.per_replicate("activation_second", 3)
    with pytest.raises(ValueError, match="layer=0"):
        res.mean("activation_second", 0)
    with pytest.raises(TypeError, match="layer"):
        res.masked("activation_second", 1.0)
    with pytest.raises(ValueError, match="quantity='variance'"):
        res.estimate("variance")
    assert set(FORWARD_QUANTITIES) | set(BACKWARD_QUANTITIES) == set(QUANTITIES)


# ----------------------------------------------------------------------------------------------
# one vocabulary: predict_variance's quantity names in per_replicate (independent identities)
# ----------------------------------------------------------------------------------------------

def test_per_replicate_accepts_predict_variance_quantities_checked_by_norm_identities():
    """Square orthogonal linear layers preserve norms exactly, so every per-replicate value is
    known from the realised input and the realised backward seed, independently of the engine:
    ||z_L||^2 = ||x||^2, ||dL/da_0||^2 = ||delta_L||^2, and the per-example weight gradient's
    mean square is mean(delta_l^2) * mean(a_{l-1}^2) with both norms preserved."""
    from varprop.network.quantities import QUANTITIES as PREDICTED
    from varprop.theory.predict import QUANTITIES as PREDICT_QUANTITIES

    assert PREDICT_QUANTITIES is PREDICTED  # defined once
    res = simulate("linear", "orthogonal", fan_in=16, depth=3, replicates=64, seed=3)
    x2 = res.input_second
    d2 = res.per_replicate("delta_second", 3)  # the seed dL/dz_L
    np.testing.assert_allclose(res.per_replicate("preactivation", 3), x2, rtol=1e-12)
    np.testing.assert_allclose(res.per_replicate("activation", 2), x2, rtol=1e-12)
    np.testing.assert_allclose(res.per_replicate("activation_second_moment", 1), x2, rtol=1e-12)
    np.testing.assert_allclose(res.per_replicate("gradient", 1), d2, rtol=1e-12)
    np.testing.assert_allclose(res.per_replicate("weight_gradient", 2), d2 * x2, rtol=1e-12)
    assert res.per_replicate("gradient").shape == (64, 3)
    assert res.count("weight_gradient").tolist() == [64, 64, 64]
    with pytest.raises(InvalidArgument, match="gradient_second"):
        res.per_replicate("gradient_secnd")


def test_per_replicate_refuses_a_variance_name_whose_mean_is_not_zero() -> None:
    # per_replicate("activation") of a ReLU net returned E a^2 (~1.0) under the name of Var a
    # (0.68 predicted): a silent mismatch with predict_variance's vocabulary
    from varprop.errors import InvalidArgument

    relu = simulate("relu", "he_normal", fan_in=64, depth=2, replicates=64, seed=0)
    with pytest.raises(InvalidArgument, match="activation_second_moment"):
        relu.per_replicate("activation")
    assert relu.per_replicate("preactivation").shape == (64, 2)  # E z = 0: Var z = E z^2
    shifted = simulate("relu", "uniform", fan_in=16, depth=2, replicates=16, seed=0)
    with pytest.raises(InvalidArgument, match="preactivation_second"):
        shifted.per_replicate("preactivation")
    tanh = simulate("tanh", "lecun_normal", fan_in=64, depth=2, replicates=16, seed=0)
    assert tanh.per_replicate("activation").shape == (16, 2)  # odd: E a = 0


def test_dense_default_chunk_is_one_big_block_or_small_blocks_grouped():
    # a block of at least DENSE_CHUNK_BYTES runs alone (weights kept in cache, no copy): width 256,
    # depth 5 holds 5 * 256^2 * 8 B = 2.6 MB of weights a replicate (a block: DENSE_BLOCK_BYTES)
    big = simulate("relu", "he_uniform", fan_in=256, depth=5, replicates=100, seed=3)
    assert big.engine == "dense" and big.chunk_size == big.block_size < 64
    # width 16, depth 2: a block is ~300 kB, so blocks are grouped (the per-chunk overhead)
    small = simulate("relu", "he_uniform", fan_in=16, depth=2, replicates=2000, seed=3)
    assert small.engine == "dense" and small.chunk_size > small.block_size == 64
    assert small.chunk_size % small.block_size == 0
    one = simulate("relu", "he_uniform", fan_in=16, depth=2, replicates=2000, seed=3, chunk_size=64)
    for name in ("preactivation_second", "gradient_second"):
        np.testing.assert_array_equal(small.per_replicate(name), one.per_replicate(name))


@pytest.mark.parametrize("make", [
    lambda g, size: np.asfortranarray(g.random((size, 3, 4))),  # not C order: copied
    lambda g, size: g.random((size, 3, 4), dtype=np.float32),   # other dtype: cast
    lambda g, size: g.random((size, 3, 4)),                      # returned as it is
])
def test_per_block_of_one_block_equals_the_blockwise_fill(make):
    one = Draws([(np.random.default_rng(5), slice(0, 7))])
    out = one.per_block((3, 4), np.dtype("float64"), make)
    expected = make(np.random.default_rng(5), 7).astype(np.float64)
    assert out.shape == (7, 3, 4) and out.dtype == np.float64 and out.flags.c_contiguous
    assert out.flags.writeable
    np.testing.assert_array_equal(out, expected)
