"""AvgPool, GlobalAvgPool, Flatten, MaxPool: mean-field rules against hand derivations, closed
forms (Clark 1961 for the max of two Gaussians, the arc-cosine kernel for ReLU) and from-scratch
NumPy Monte Carlo; the sampling against explicit loops; validation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy as sp
from scipy.stats import norm

from varprop import Network, activation, predict_fields, predict_variance, simulate
from varprop.errors import InvalidArgument, VarpropError
from varprop.layers import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, MaxPool
from varprop.network.field import Field, GradField

#: Statistical tolerance: 6 standard errors.
Z = 6.0


def _field(mean: np.ndarray, cov_centred: np.ndarray, spatial: tuple[int, ...], c: int = 3,
           gaussian: bool = True) -> Field:
    second = cov_centred + np.outer(mean, mean)
    return Field((c, *spatial), 0, mean.reshape(spatial), np.diag(second).reshape(spatial), second,
                 gaussian=gaussian)


def _random_cov(rng: np.random.Generator, p: int) -> np.ndarray:
    a = rng.standard_normal((p, p)) / np.sqrt(p)
    return a @ a.T + 0.2 * np.eye(p)


def _sample(rng: np.random.Generator, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return mean + rng.standard_normal((n, len(mean))) @ np.linalg.cholesky(cov).T


def _relu_cov(second: np.ndarray) -> np.ndarray:
    """Arc-cosine kernel (Cho & Saul 2009), written out: E relu(x) relu(y) for centred Gaussians
    with second moments ``second`` (a (P, P) matrix)."""
    d = np.sqrt(np.diag(second))
    cos = np.clip(second / np.outer(d, d), -1, 1)
    th = np.arccos(cos)
    return np.outer(d, d) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * cos)


# --- AvgPool --------------------------------------------------------------------------------

def test_avgpool_hand_derivation_iid() -> None:
    # i.i.d. N(m, v) input, windows of K = 4 (2x2, no overlap): E y = m, E y^2 = m^2 + v/4
    m, v = 0.7, 2.0
    f = _field(np.full(16, m), v * np.eye(16), (4, 4))
    out = AvgPool(2).field_forward(f)
    np.testing.assert_allclose(out.mean, m)
    np.testing.assert_allclose(out.second, m * m + v / 4)
    off = out.cov - np.diag(np.diag(out.cov))
    np.testing.assert_allclose(off[off != 0], m * m)  # distinct windows share only the mean
    assert out.shape == (3, 2, 2) and out.gaussian


def test_avgpool_overlapping_forward_and_backward_vs_monte_carlo() -> None:
    rng = np.random.default_rng(21)
    spatial = (5, 4)
    p = 20
    mean, cov = rng.uniform(-1, 1, p), _random_cov(rng, p)
    layer = AvgPool((3, 2), stride=(1, 2))
    f = _field(mean, cov, spatial)
    out = layer.field_forward(f)
    n = 100000
    x = _sample(rng, n, mean, cov).reshape(n, *spatial)
    y = np.empty((n, 3, 2))
    for i in range(3):
        for j in range(2):
            y[:, i, j] = x[:, i:i + 3, 2 * j:2 * j + 2].mean(axis=(1, 2))
    y = y.reshape(n, -1)
    prods = np.einsum("nu,nv->nuv", y, y)
    se = prods.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(prods.mean(axis=0) - out.cov) <= Z * se)
    assert np.all(np.abs(y.mean(0) - out.mean.ravel()) <= Z * y.std(0) / np.sqrt(n))
    # backward: g_in[s] = sum over windows containing s of g_u / K, g ~ N(0, G)
    gcov = _random_cov(rng, 6)
    gb = layer.field_backward(GradField((3, 3, 2), 0, np.diag(gcov).reshape(3, 2), gcov), f, out)
    g = _sample(rng, n, np.zeros(6), gcov).reshape(n, 3, 2)
    gin = np.zeros((n, 5, 4))
    for i in range(3):
        for j in range(2):
            gin[:, i:i + 3, 2 * j:2 * j + 2] += g[:, i, j, None, None] / 6
    gin = gin.reshape(n, -1)
    prods = np.einsum("nu,nv->nuv", gin, gin)
    se = prods.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(prods.mean(axis=0) - gb.cov) <= Z * se + 1e-15)
    with pytest.raises(VarpropError, match="overlapping"):
        layer.field_backward(GradField((3, 3, 2), 0, np.ones((3, 2))), f, out)


def test_avgpool_disjoint_backward_without_cov() -> None:
    f = _field(np.zeros(7), np.eye(7), (7,))
    out = AvgPool(3).field_forward(f)  # windows {0,1,2}, {3,4,5}; position 6 unread
    g = AvgPool(3).field_backward(GradField((3, 2), 0, np.array([9.0, 18.0])), f, out)
    np.testing.assert_allclose(g.second, [1, 1, 1, 2, 2, 2, 0])


def test_conv_relu_conv_relu_avgpool_chain_vs_monte_carlo() -> None:
    """The spatial covariance through a small CNN: predicted by the layers' rules (ReLU by the
    arc-cosine kernel written in this test) against a from-scratch finite-width simulation.

    At finite width the second conv's output is not exactly Gaussian (a 1/C effect on the ReLU
    cross moments); with C = 64 channels it is far below the Monte Carlo tolerance used."""
    rng = np.random.default_rng(22)
    L, c0, c, k = 8, 4, 64, 3
    conv1, conv2 = Conv(c, k, init="he_normal", bias_variance=0.1), Conv(c, k, init="he_normal")
    f = _field(np.zeros(L), np.eye(L), (L,), c=c0)
    z1 = conv1.field_forward(f)
    a1 = Field(z1.shape, 0, np.sqrt(np.diag(z1.cov) / (2 * np.pi)), np.diag(z1.cov) / 2,
               _relu_cov(z1.cov), gaussian=False)
    z2 = conv2.field_forward(a1)
    a2 = Field(z2.shape, 0, np.sqrt(np.diag(z2.cov) / (2 * np.pi)), np.diag(z2.cov) / 2,
               _relu_cov(z2.cov), gaussian=False)
    pred = AvgPool(2, stride=1).field_forward(a2)

    def conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:  # 'same', k = 3: explicit taps
        xp = np.pad(x, [(0, 0), (0, 0), (1, 1)])
        return sum(np.einsum("noi,nit->not", w[..., j], xp[:, :, j:j + L]) for j in range(k))

    n = 1500
    x = rng.standard_normal((n, c0, L))
    h = np.maximum(conv(x, rng.standard_normal((n, c, c0, k)) * np.sqrt(2 / (c0 * k)))
                   + rng.standard_normal((n, c, 1)) * np.sqrt(0.1), 0)
    h = np.maximum(conv(h, rng.standard_normal((n, c, c, k)) * np.sqrt(2 / (c * k))), 0)
    y = (h[:, :, 1:] + h[:, :, :-1]) / 2
    per = np.einsum("nct,ncs->nts", y, y) / c  # one value per network (replicate)
    mc, se = per.mean(axis=0), per.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(mc - pred.cov) <= Z * se), np.max(np.abs(mc - pred.cov) / se)


# --- GlobalAvgPool, Flatten ---------------------------------------------------------------------

def test_global_avgpool_vs_monte_carlo_and_backward() -> None:
    rng = np.random.default_rng(23)
    mean, cov = rng.uniform(0, 1, 6), _random_cov(rng, 6)
    f = _field(mean, cov, (2, 3))
    out = GlobalAvgPool().field_forward(f)
    y = _sample(rng, 200000, mean, cov).mean(axis=1)
    assert abs(np.mean(y * y) - out.second) <= Z * np.std(y * y) / np.sqrt(len(y))
    assert out.shape == (3,) and out.positions == () and out.mean == pytest.approx(mean.mean())
    g = GlobalAvgPool().field_backward(GradField((3,), -1, 2.0, np.array([[2.0]])), f, out)
    np.testing.assert_allclose(g.cov, np.full((6, 6), 2.0 / 36))
    assert g.shape == (3, 2, 3)


def test_flatten_keeps_the_field_and_shapes() -> None:
    f = _field(np.arange(6.0), np.eye(6), (2, 3))
    assert Flatten().output_shape((3, 2, 3)) == (18,)
    assert Flatten().field_forward(f) is f
    g = GradField((18,), -1, 1.5)
    back = Flatten().field_backward(g, f, f)
    assert back.shape == (3, 2, 3) and np.all(back.second == 1.5)
    x = np.arange(2 * 1 * 3 * 2 * 3.0).reshape(2, 1, 3, 2, 3)
    y, cache = Flatten().mc_forward(None, x)
    np.testing.assert_array_equal(y, x.reshape(2, 1, 18))  # torch.flatten(x, 1) order
    np.testing.assert_array_equal(Flatten().mc_backward(None, cache, y), x)


# --- MaxPool ----------------------------------------------------------------------------------

def _clark(m1: float, m2: float, s1: float, s2: float, rho: float) -> tuple[float, float, float]:
    """Clark (1961): E max, E max^2 of two Gaussians, and P(X1 > X2)."""
    a = np.sqrt(s1**2 + s2**2 - 2 * rho * s1 * s2)
    al = (m1 - m2) / a
    e1 = m1 * norm.cdf(al) + m2 * norm.cdf(-al) + a * norm.pdf(al)
    e2 = ((m1**2 + s1**2) * norm.cdf(al) + (m2**2 + s2**2) * norm.cdf(-al)
          + (m1 + m2) * a * norm.pdf(al))
    return e1, e2, norm.cdf(al)


@pytest.mark.parametrize("m1, m2, s1, s2, rho", [(0.3, -0.2, 1.0, 1.5, 0.5), (0.0, 0.0, 1.0, 1.0, 0.9),
                                                 (1.0, 0.0, 0.5, 2.0, -0.3)])
def test_maxpool_two_entries_vs_clark(m1: float, m2: float, s1: float, s2: float, rho: float) -> None:
    cov = np.array([[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]])
    f = _field(np.array([m1, m2]), cov, (2,))
    out = MaxPool(2).field_forward(f)
    e1, e2, p1 = _clark(m1, m2, s1, s2, rho)
    rel = _reported_rel_se(out)  # the reported RQMC relative standard error of E y^2
    assert rel < 2e-4
    assert out.second[0] == pytest.approx(e2, rel=Z * rel)
    assert out.mean[0] == pytest.approx(e1, abs=Z * rel * e2 / np.sqrt(e2 - e1 * e1 + 1e-12)
                                        + Z * np.sqrt(e2 / 65536))
    assert "randomized quasi-Monte Carlo" in out.approximations[-1] and not out.gaussian
    g = MaxPool(2).field_backward(GradField((3, 1), 0, np.array([2.0]), np.array([[2.0]])), f, out)
    np.testing.assert_allclose(g.second, [2 * p1, 2 * (1 - p1)], atol=Z * 2 * 0.5 / np.sqrt(65536))


def _reported_rel_se(out: Field) -> float:
    """The relative standard error MaxPool reports in its approximation sentence."""
    return float(re.search(r"of E y\^2: ([0-9.e+-]+)", out.approximations[-1]).group(1))


def _max_windows_2x2(v: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, h, w) -> pooled (n, h//2 * w//2) and the flat argmax input position per window."""
    n = v.shape[0]
    ys, args = [], []
    for i in range(h // 2):
        for j in range(w // 2):
            block = v[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(n, 4)
            a = np.argmax(block, axis=1)
            ys.append(block[np.arange(n), a])
            args.append((2 * i + a // 2) * w + 2 * j + a % 2)
    return np.stack(ys, 1), np.stack(args, 1)


@pytest.mark.parametrize("relu", [False, True])
def test_maxpool_2x2_after_conv_vs_monte_carlo(relu: bool) -> None:
    """Conv 3x3 (zero padding: edge positions have smaller variance) -> [ReLU] -> MaxPool 2x2,
    the conv output drawn as the Gaussian field it is at infinite width."""
    rng = np.random.default_rng(24)
    h, w = 4, 6
    z = Conv(8, 3, init="he_normal", bias_variance=0.2).field_forward(
        _field(np.zeros(h * w), np.eye(h * w), (h, w)))
    x = z
    if relu:
        x = Field(z.shape, 0, np.sqrt(z.second / (2 * np.pi)), z.second / 2, _relu_cov(z.cov),
                  gaussian=False, pre_activation=(z, activation("relu")))
    layer = MaxPool(2)
    out = layer.field_forward(x)
    n = 200000
    zs = _sample(rng, n, np.zeros(h * w), z.cov).reshape(n, h, w)
    y, arg = _max_windows_2x2(np.maximum(zs, 0) if relu else zs, h, w)
    prods = np.einsum("nu,nv->nuv", y, y)
    mc = prods.mean(0)
    rel = _reported_rel_se(out)
    rel_joint = float(re.search(r"between windows ([0-9.e+-]+)", out.approximations[-1]).group(1))
    assert rel < 1e-3 and rel_joint < 3e-3
    d = np.sqrt(np.diag(mc))
    rqmc = np.where(np.eye(len(d), dtype=bool), rel * np.abs(mc), rel_joint * np.outer(d, d))
    se = np.sqrt((prods.std(0) / np.sqrt(n)) ** 2 + rqmc**2)  # MC and RQMC
    assert np.all(np.abs(mc - out.cov) <= Z * se), np.max(np.abs(mc - out.cov) / se)
    # backward, no overlap: E g_in[t]^2 = P(t is its window's argmax) G_uu (G = identity * 1.5)
    g = layer.field_backward(GradField((8, 2, 3), 0, np.full((2, 3), 1.5), 1.5 * np.eye(6)), x, out)
    freq = np.zeros(h * w)
    np.add.at(freq, arg.ravel(), 1.0)
    freq /= n
    # Bernoulli frequencies: s.e. <= sqrt(1/4n) for the MC, sqrt(1/4N) for the 65536 RQMC points
    assert np.all(np.abs(g.second.ravel() - 1.5 * freq)
                  <= Z * 1.5 * np.sqrt(0.25 / n + 0.25 / 65536))
    np.testing.assert_allclose(g.cov - np.diag(np.diag(g.cov)), 0.0)  # G diagonal: different
    # windows' routings multiply G_uu' = 0, the same window's positions exclude each other
    if relu:  # the gradient at z: routed AND z_t > 0 (dependent events), not their product
        both = np.zeros(h * w)
        flat = zs.reshape(n, -1)
        np.add.at(both, arg.ravel(), (np.take_along_axis(flat, arg, 1) > 0).ravel().astype(float))
        both /= n
        pre = g.preactivation.second.ravel()
        assert np.all(np.abs(pre - 1.5 * both) <= Z * 1.5 * np.sqrt(0.25 / n + 0.25 / 65536))
        # gradient independence at the ReLU would give P(z_t > 0) P(route) = P(route) / 2: in
        # total 1.5 U / 2, while the routed positive maxima give 1.5 U P(max > 0), near 1.5 U
        assert pre.sum() > 1.6 * 1.5 * freq.sum() / 2
    else:
        assert g.preactivation is None


def test_maxpool_overlapping_backward_vs_monte_carlo() -> None:
    rng = np.random.default_rng(25)
    mean, cov = np.zeros(5), _random_cov(rng, 5)
    f = _field(mean, cov, (5,))
    layer = MaxPool(3, stride=1)  # windows {0,1,2}, {1,2,3}, {2,3,4}
    out = layer.field_forward(f)
    gcov = _random_cov(rng, 3)
    g = layer.field_backward(GradField((3, 3), 0, np.diag(gcov), gcov), f, out)
    n = 200000
    x = _sample(rng, n, mean, cov)
    d = _sample(rng, n, np.zeros(3), gcov)
    gin = np.zeros((n, 5))
    for u in range(3):
        a = u + np.argmax(x[:, u:u + 3], axis=1)
        np.add.at(gin, (np.arange(n), a), d[:, u])
    prods = np.einsum("ns,nt->nst", gin, gin)
    mc = prods.mean(0)
    # RQMC part: the routed covariance is an average of bounded terms over 65536 points
    se = np.sqrt(prods.var(0) / n + prods.var(0) / 65536)
    assert np.all(np.abs(mc - g.cov) <= Z * se), np.max(np.abs(mc - g.cov) / se)


def test_maxpool_refuses_non_gaussian_without_source() -> None:
    f = _field(np.zeros(4), np.eye(4), (4,), gaussian=False)
    with pytest.raises(VarpropError, match="jointly Gaussian"):
        MaxPool(2).field_forward(f)


# --- sampling against loops ---------------------------------------------------------------------

@pytest.mark.parametrize("layer", [AvgPool(2), AvgPool((2, 3), stride=1), MaxPool(2),
                                   MaxPool((3, 2), stride=(1, 2))])
def test_pool_sampling_vs_loops_and_adjoint(layer: AvgPool | MaxPool) -> None:
    rng = np.random.default_rng(26)
    shape = (2, 5, 6)
    x = rng.standard_normal((2, 3, *shape))
    params = layer.mc_draw(rng, shape, 2, np.float64)
    y, cache = layer.mc_forward(params, x)
    k = layer.kernel_size if isinstance(layer.kernel_size, tuple) else (layer.kernel_size,) * 2
    s = layer.stride if isinstance(layer.stride, tuple) else (layer.stride,) * 2
    reduce = np.mean if isinstance(layer, AvgPool) else np.max
    oh, ow = (5 - k[0]) // s[0] + 1, (6 - k[1]) // s[1] + 1
    ref = np.empty((2, 3, 2, oh, ow))
    for i in range(oh):
        for j in range(ow):
            ref[..., i, j] = reduce(x[..., i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]],
                                    axis=(-2, -1))
    np.testing.assert_allclose(y, ref, rtol=1e-14)
    if isinstance(layer, AvgPool):  # linear: backward is the adjoint
        gy = rng.standard_normal(y.shape)
        gx = layer.mc_backward(params, cache, gy)
        np.testing.assert_allclose((gy * y).sum(), (gx * x).sum(), rtol=1e-12)
    else:  # the gradient lands on the argmax: sum preserved, zero elsewhere
        gx = layer.mc_backward(params, cache, np.ones_like(y))
        assert gx.sum() == pytest.approx(y.size) and np.all((gx == 0) | (x >= ref.min()))


def test_pool_validation() -> None:
    with pytest.raises(InvalidArgument, match="at most the input size"):
        AvgPool(5).output_shape((3, 4))
    with pytest.raises(InvalidArgument, match=r"\(C, L\) or \(C, H, W\)"):
        MaxPool(2).output_shape((4,))
    with pytest.raises(InvalidArgument):
        AvgPool(0)
    with pytest.raises(VarpropError, match="covariance between positions"):
        AvgPool(2).field_forward(Field((3, 4), 0, np.zeros(4), np.ones(4)))
    with pytest.raises(VarpropError, match="batch_cov"):  # between samples at equal positions only
        GlobalAvgPool().field_forward(Field((3, 4), 0, np.zeros(4), np.ones(4), np.eye(4),
                                            np.zeros(4)))
    assert repr(AvgPool(2)) == "AvgPool(2)" and repr(MaxPool(3, 1)) == "MaxPool(3, stride=1)"
    assert AvgPool(2).field_needs().cov and MaxPool(2).field_needs().cov


@pytest.mark.parametrize("layer", [AvgPool(2), MaxPool(2), GlobalAvgPool(), Flatten()])
def test_field_steps_are_sympy_equations(layer: object) -> None:
    steps = layer.field_steps()
    assert steps
    for sentence, eq in steps:
        assert isinstance(sentence, str) and isinstance(eq, sp.Eq)


def test_changed_fields_drop_the_activation_source() -> None:
    z = _field(np.zeros(4), np.eye(4), (4,))
    x = Field(z.shape, 0, z.mean, z.second, z.cov, gaussian=False,
              pre_activation=(z, activation("relu")))
    scaled = x.with_(second=2 * x.second)  # e.g. a dropout: no longer relu(z)
    assert scaled.pre_activation is None
    with pytest.raises(VarpropError, match="jointly Gaussian"):
        MaxPool(2).field_forward(scaled)
    g = GradField((3, 4), 0, np.ones(4), preactivation=GradField((3, 4), 0, np.ones(4)))
    assert g.with_(second=np.zeros(4)).preactivation is None


# --- end to end: a small CNN through the general engine -------------------------------------------

@pytest.mark.parametrize("pool", ["avg", "max"])
def test_small_cnn_predict_variance_vs_simulate(pool: str) -> None:
    """Conv -> ReLU -> pool -> Conv -> ReLU -> GlobalAvgPool/Flatten -> Dense: the per-layer
    predictions of the general engine against its Monte Carlo (the layers' mc_* methods, tested
    against loops above), 6 standard errors over replicates.  Finite width (16 channels) biases
    the ReLU cross moments by O(1/C): measured about 1% here (2 standard errors at 600
    replicates), inside the tolerance."""
    p = AvgPool(2) if pool == "avg" else MaxPool(2)
    head = [GlobalAvgPool()] if pool == "avg" else [Flatten()]
    net = Network([Conv(16, 3, init="he_normal", bias_variance=0.1), "relu", p,
                   Conv(16, 3, init="he_normal"), "relu", *head, Dense(10, init="he_normal")],
                  input_shape=(3, 8, 8))
    fwd = predict_variance(net, quantity="output", per_layer=True)
    bwd = predict_variance(net, quantity="output_gradient", per_layer=True)
    sim = simulate(net, replicates=600, seed=3)
    for name, pred in (("output_second", fwd), ("output_gradient_second", bwd)):
        x = sim.per_replicate(name)
        se = x.std(axis=0) / np.sqrt(len(x))
        assert np.all(np.abs(x.mean(axis=0) - pred) <= Z * se), (name, (x.mean(0) - pred) / se)
    fp = predict_fields(net)
    assert fp.forward[2].shape == (16, 4, 4)
    if pool == "max":
        assert not fp.exact and any("quasi-Monte Carlo" in s for s in fp.approximations)
