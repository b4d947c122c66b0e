"""LayerNorm and RMSNorm: the mean-field rules against hand algebra, a from-scratch NumPy Monte
Carlo, finite differences and the exact finite-width identities.

Statistical tolerances: 6 standard errors (estimated from the samples) plus, where a finite-width
estimate is compared with the infinite-width rule, a stated bound on the O(1/n) bias.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from varprop import Network, predict_fields, predict_variance, simulate
from varprop.errors import InvalidArgument, InvalidArgumentType, VarpropError
from varprop.layers import Dense, Dropout, LayerNorm, RMSNorm
from varprop.network.field import Field, GradField

Z = 6.0  # standard errors


def ln_numpy(x: np.ndarray, eps: float, axis: int) -> np.ndarray:
    """LayerNorm written from its definition (biased variance)."""
    c = x - x.mean(axis=axis, keepdims=True)
    return c / np.sqrt((c * c).mean(axis=axis, keepdims=True) + eps)


def rms_numpy(x: np.ndarray, eps: float, axis: int) -> np.ndarray:
    return x / np.sqrt((x * x).mean(axis=axis, keepdims=True) + eps)


def mc_stat(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard error) over replicates (axis 0)."""
    return values.mean(0), values.std(0, ddof=1) / math.sqrt(values.shape[0])


def close(est: np.ndarray, se: np.ndarray, want: np.ndarray, bias: float = 0.0) -> None:
    err = np.abs(np.asarray(est) - np.asarray(want))
    assert np.all(err <= Z * np.asarray(se) + bias), (est, want, se)


# --- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
@pytest.mark.parametrize("eps, err", [(-1e-3, InvalidArgument), (float("nan"), InvalidArgument),
                                      (float("inf"), InvalidArgument), (True, InvalidArgumentType),
                                      ("1e-5", InvalidArgumentType)])
def test_bad_eps(cls, eps, err):
    with pytest.raises(err, match="eps"):
        cls(eps)


def test_defaults_repr_equality():
    assert LayerNorm().eps == 1e-5 and RMSNorm().eps == 1e-6
    assert repr(LayerNorm()) == "LayerNorm(eps=1e-05)"
    assert LayerNorm(1e-6) != RMSNorm(1e-6) and LayerNorm(0.1) == LayerNorm(0.1)
    assert hash(LayerNorm(0.1)) == hash(LayerNorm(0.1))


def test_shapes_and_layout():
    ln = LayerNorm()
    assert ln.output_shape((5,)) == (5,) and ln.output_shape((3, 4, 5)) == (3, 4, 5)
    assert ln.channel_axis_for((7,)) == -1 and ln.channel_axis_for((4, 7)) == -1
    assert ln.channel_axis_for((3, 4, 5)) == 0
    with pytest.raises(InvalidArgument, match="input_shape"):
        ln.output_shape((2, 2, 2, 2))
    with pytest.raises(InvalidArgument, match="at least 2 channels"):
        ln.output_shape((1,))
    assert RMSNorm().output_shape((1,)) == (1,)
    conv_out = Field((4, 6), 0, np.zeros(6), np.ones(6))  # a (C, L) conv output: channels first
    with pytest.raises(VarpropError, match="channel axis"):
        ln.field_forward(conv_out)


def test_zero_statistic_with_zero_eps_is_refused():
    f = Field((8,), -1, np.array(1.0), np.array(1.0))  # constant input: variance 0
    with pytest.raises(VarpropError, match="eps=0"):
        LayerNorm(0.0).field_forward(f)
    assert LayerNorm(0.5).field_forward(f).average_second() == 0.0


# --- forward: hand algebra --------------------------------------------------------------------

def test_forward_hand_values():
    # m = 1, q = 3: v = 2.  LayerNorm eps = 2: E y^2 = 2/4, E y = 0.  RMSNorm eps = 1: E y^2 = 3/4,
    # E y = 1/2.
    f = Field((16,), -1, np.array(1.0), np.array(3.0))
    out = LayerNorm(2.0).field_forward(f)
    assert out.second == pytest.approx(0.5, abs=1e-15) and out.mean == 0.0 and out.gaussian
    out = RMSNorm(1.0).field_forward(f)
    assert out.second == pytest.approx(0.75, abs=1e-15) and out.mean == pytest.approx(0.5, abs=1e-15)
    g = GradField((16,), -1, np.array(2.0))
    assert LayerNorm(2.0).field_backward(g, f, f).second == pytest.approx(0.5, abs=1e-15)
    assert RMSNorm(1.0).field_backward(g, f, f).second == pytest.approx(0.5, abs=1e-15)


@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
def test_field_steps_agree_with_rule(cls):
    layer = cls(0.3)
    steps = layer.field_steps()
    assert len(steps) == 3 and all(isinstance(s, str) and isinstance(e, sp.Eq) for s, e in steps)
    m, q = 0.4, 1.3
    f = Field((8,), -1, np.array(m), np.array(q))
    out = layer.field_forward(f)
    grad = layer.field_backward(GradField((8,), -1, np.array(1.7)), f, out)
    values = {sp.Symbol("m", real=True): m, sp.Symbol("q", real=True): q,
              sp.Symbol("epsilon", real=True): 0.3, sp.Symbol("G_y", real=True): 1.7}
    got = [float(eq.rhs.subs(values)) for _, eq in steps]
    assert got == pytest.approx([float(out.mean), float(out.second), float(grad.second)], rel=1e-12)


# --- forward: Monte Carlo (from scratch) ------------------------------------------------------

@pytest.mark.parametrize("cls, fn", [(LayerNorm, ln_numpy), (RMSNorm, rms_numpy)])
def test_forward_sequence_cov_and_batch_cross_vs_numpy(cls, fn):
    """(T, n) input, channels last, T = 3 positions with correlated Gaussian channels and a
    component shared by the two samples of a batch; n = 2048 channels."""
    rng = np.random.default_rng(1)
    T, n, N, eps = 3, 2048, 150, 0.4
    m = np.array([0.5, -0.3, 0.0])
    A = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.2, -0.5, 0.7]])
    shared = 0.3  # variance of the per-channel component shared by the two samples
    sigma = A @ A.T  # covariance of the independent part
    cov = sigma + shared + np.outer(m, m)
    second = np.diag(cov).copy()
    field = Field((T, n), -1, m, second, cov=cov, batch_cross=m * m + shared, gaussian=True)
    out = cls(eps).field_forward(field)

    ys = []
    for _ in range(N):
        common = math.sqrt(shared) * rng.standard_normal((n, 1))
        x = [m + common + rng.standard_normal((n, T)) @ A.T for _ in range(2)]  # (n, T) each
        ys.append([fn(xi.T, eps, axis=-1) for xi in x])  # (T, n), normalised over channels
    y = np.array(ys)  # (N, 2, T, n)
    y0 = y[:, 0]
    per_sample = lambda a: a.mean(axis=-1)  # noqa: E731 - channel average per sample
    bias = 4.0 / n  # |E f(v_hat) - f(v)| <= (|f'| v + |f''| v^2) / n with f(v) = v/(v+eps) < 4/n here
    for t in range(T):
        s = per_sample(y0[:, t] ** 2)
        close(s.mean(), s.std(ddof=1) / math.sqrt(N), out.second[t], bias)
        s = per_sample(y0[:, t])
        close(s.mean(), s.std(ddof=1) / math.sqrt(N), out.mean[t], bias)
        for u in range(T):
            s = per_sample(y0[:, t] * y0[:, u])
            close(s.mean(), s.std(ddof=1) / math.sqrt(N), out.cov[t, u], bias)
        s = per_sample(y[:, 0, t] * y[:, 1, t])
        close(s.mean(), s.std(ddof=1) / math.sqrt(N), out.batch_cross[t], bias)
    assert out.gaussian and np.allclose(np.diag(out.cov), out.second)


@pytest.mark.parametrize("cls, fn", [(LayerNorm, ln_numpy), (RMSNorm, rms_numpy)])
def test_finite_width_identity(cls, fn):
    """Per sample and position: mean_c y^2 = d_hat/(d_hat + eps) exactly, at any width."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 5, 7)) * 0.3 + 0.2  # (R, B, T, n): T = 5 steps, n = 7 channels
    eps = 0.05
    y, _ = cls(eps).mc_forward(cls(eps).mc_draw(rng, (5, 7), 4, x.dtype), x)
    c = x - x.mean(axis=-1, keepdims=True) if cls is LayerNorm else x
    d = (c * c).mean(axis=-1)
    np.testing.assert_allclose((y * y).mean(axis=-1), d / (d + eps), rtol=1e-12)
    np.testing.assert_allclose(y, fn(x, eps, axis=-1), rtol=1e-12, atol=1e-14)


def test_image_layout_normalises_channels_per_pixel():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5, 6))  # (R, B, C, H, W)
    ln = LayerNorm(1e-3)
    y, _ = ln.mc_forward(ln.mc_draw(rng, (4, 5, 6), 2, x.dtype), x)
    np.testing.assert_allclose(y, ln_numpy(x, 1e-3, axis=2), rtol=1e-12, atol=1e-14)
    f = Field((4, 5, 6), 0, np.zeros((5, 6)), np.full((5, 6), 2.0))
    assert np.allclose(ln.field_forward(f).second, 2.0 / 2.001)


# --- backward ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, fn", [(LayerNorm, ln_numpy), (RMSNorm, rms_numpy)])
@pytest.mark.parametrize("shape, axis", [((6,), -1), ((2, 5), -1), ((4, 2, 2), 2)])
def test_backward_is_the_vjp(cls, fn, shape, axis):
    """mc_backward against central finite differences of the from-scratch function (vector,
    (T, n) channels last, (C, H, W) channels first)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1) + shape) + 0.3
    g = rng.standard_normal((1, 1) + shape)
    layer = cls(0.1)
    _, cache = layer.mc_forward(layer.mc_draw(rng, shape, 1, x.dtype), x)
    got = layer.mc_backward(None, cache, g)
    h, size = 1e-6, x.size
    want = np.array([np.sum(g * (fn(x + h * e, 0.1, axis) - fn(x - h * e, 0.1, axis))) / (2 * h)
                     for e in np.eye(size).reshape((size,) + x.shape)])
    np.testing.assert_allclose(got.ravel(), want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
def test_backward_finite_width_formula(cls):
    r"""Hand derivation: for fixed x and i.i.d. N(0, 1) gradients, E|J^T g|^2 / n =
    (1 - (k + 2r - r^2)/n) / s^2, k = 1 (LayerNorm) or 0 (RMSNorm), r = d_hat/(d_hat + eps)."""
    rng = np.random.default_rng(5)
    n, N, eps = 12, 40000, 0.2
    x = rng.standard_normal((1, 1, n)) * 0.7 + 0.4
    layer = cls(eps)
    _, cache = layer.mc_forward(layer.mc_draw(rng, (n,), 1, x.dtype), x)
    g = rng.standard_normal((1, N, n))
    gx = layer.mc_backward(None, cache, g)
    per = (gx * gx).mean(axis=-1).ravel()
    c = x - x.mean() if cls is LayerNorm else x
    d = float((c * c).mean())
    r, k = d / (d + eps), (1 if cls is LayerNorm else 0)
    want = (1 - (k + 2 * r - r * r) / n) / (d + eps)
    close(per.mean(), per.std(ddof=1) / math.sqrt(N), want)


@pytest.mark.parametrize("cls, fn", [(LayerNorm, ln_numpy), (RMSNorm, rms_numpy)])
def test_backward_infinite_width_vs_numpy(cls, fn):
    """E g_x^2 = E g_y^2/(d + eps) and the position covariance, against a from-scratch Monte Carlo
    (explicit Jacobian-vector products of the numpy function) at n = 1024; bias bound 3/n."""
    rng = np.random.default_rng(6)
    T, n, N, eps = 2, 1024, 200, 0.5
    m = np.array([0.3, -0.2])
    q = np.array([1.2, 0.8])
    gcov = np.array([[1.5, 0.4], [0.4, 0.9]])
    field = Field((T, n), -1, m, q, cov=np.diag(q) + np.outer(m, m) - np.diag(m * m))
    grad = GradField((T, n), -1, np.diag(gcov), cov=gcov)
    out = cls(eps).field_backward(grad, field, cls(eps).field_forward(field))
    L = np.linalg.cholesky(gcov)
    stats = []
    for _ in range(N):
        x = m[:, None] + np.sqrt(q - m * m)[:, None] * rng.standard_normal((T, n))
        g = L @ rng.standard_normal((T, n))  # same channel: covariance gcov between positions
        y = fn(x, eps, -1)
        if cls is LayerNorm:
            s = np.sqrt(x.var(axis=-1, keepdims=True) + eps)
            gx = (g - g.mean(-1, keepdims=True) - y * (y * g).mean(-1, keepdims=True)) / s
        else:
            s = np.sqrt((x * x).mean(-1, keepdims=True) + eps)
            gx = (g - y * (y * g).mean(-1, keepdims=True)) / s
        stats.append([(gx[0] ** 2).mean(), (gx[1] ** 2).mean(), (gx[0] * gx[1]).mean()])
    stats = np.array(stats)
    est, se = stats.mean(0), stats.std(0, ddof=1) / math.sqrt(N)
    want = [out.second[0], out.second[1], out.cov[0, 1]]
    close(est, se, want, bias=3.0 / n)
    # the hand rule
    d = q - m * m if cls is LayerNorm else q
    np.testing.assert_allclose(out.second, np.diag(gcov) / (d + eps), rtol=1e-14)


# --- end to end: Network, predict_variance, simulate ------------------------------------------

def test_network_with_norms_vs_simulate():
    """Dense(he), relu, LayerNorm(0.5), Dense, tanh, RMSNorm(0.2), Dense at width 128: the hand
    chain of rules, and simulate within 6 standard errors plus an O(1/n) allowance of 8/n
    (relative) for the norms' finite width."""
    n = 128
    net = Network([Dense(n, "he_normal"), "relu", LayerNorm(0.5), Dense(n), "tanh", RMSNorm(0.2),
                   Dense(n)], input_shape=(n,))
    pred = predict_variance(net, quantity="output", per_layer=True)
    # hand: relu output: mean sqrt(2/(2 pi)) = 1/sqrt(pi), second 1; LayerNorm: v = 1 - 1/pi
    v = 1 - 1 / math.pi
    assert pred[:3] == pytest.approx([2.0, 1.0, v / (v + 0.5)], rel=1e-12)
    q_tanh = pred[4]
    assert pred[5] == pytest.approx(q_tanh / (q_tanh + 0.2), rel=1e-12)
    grad = predict_variance(net, quantity="output_gradient", per_layer=True)
    assert grad[4] == pytest.approx(1 / (q_tanh + 0.2), rel=1e-12)  # at the RMSNorm input
    assert grad[1] == pytest.approx(grad[2] / (v + 0.5), rel=1e-12)  # at the LayerNorm input
    res = simulate(net, replicates=150, batch=4, seed=41)
    for stat, want in (("output_second", pred), ("output_gradient_second", grad)):
        m, se = mc_stat(res.per_replicate(stat))
        assert np.all(np.abs(m - want) <= Z * se + 8.0 / n * want), (stat, m, want, se)
    assert not predict_fields(net).exact


@pytest.mark.parametrize("cls, want", [(LayerNorm, 6 / 5), (RMSNorm, 7 / 6)])
def test_backward_finite_width_bias_gaussian_input(cls, want):
    r"""Hand derivation (module docstring): Gaussian x with n = 8 channels, eps = 0, gradients
    independent: E|J^T g|^2/n = (1 - (1 + 2r - r^2)/n) E[1/v_hat] with r = 1 and
    v_hat ~ chi^2_{n-1}/n: (n - 2)/(n - 3) = 6/5 (LayerNorm); RMSNorm (1 - 1/n) n/(n - 2) = 7/6.
    The infinite-width rule gives 1."""
    rng = np.random.default_rng(7)
    n, N = 8, 100000
    layer = cls(0.0)
    x = rng.standard_normal((1, N, n))
    _, cache = layer.mc_forward(layer.mc_draw(rng, (n,), 1, x.dtype), x)
    per = (layer.mc_backward(None, cache, rng.standard_normal((1, N, n))) ** 2).mean(-1).ravel()
    close(per.mean(), per.std(ddof=1) / math.sqrt(N), want)
    f = Field((n,), -1, np.array(0.0), np.array(1.0))
    assert float(layer.field_backward(GradField((n,), -1, np.array(1.0)), f, f).second) == 1.0


@pytest.mark.parametrize("shape", [(3, 64), (64, 2, 2)])
def test_sequence_and_image_networks_vs_simulate(shape):
    """Dropout(0.25), LayerNorm(0.5), RMSNorm(0.1) on a (T, n) sequence (channels last) and a
    (C, H, W) image (channels first), input variance 2: hand values 2/0.75, v/(v + 0.5),
    Q/(Q + 0.1); simulate per position within 6 standard errors plus 8/n (relative) for the
    norms' finite width (n = 64 channels)."""
    n = 64
    net = Network([Dropout(0.25), LayerNorm(0.5), RMSNorm(0.1)], input_shape=shape,
                  input_variance=2.0)
    v = 2 / 0.75
    q = v / (v + 0.5)
    pred = predict_variance(net, quantity="output", per_layer=True)
    np.testing.assert_allclose(pred, [v, q, q / (q + 0.1)], rtol=1e-12)
    grad = predict_variance(net, quantity="output_gradient", per_layer=True)
    np.testing.assert_allclose(grad, [1 / (q + 0.1) / (v + 0.5), 1 / (q + 0.1), 1.0], rtol=1e-12)
    res = simulate(net, replicates=200, batch=2, seed=43)
    for stat, want in (("output_second", pred), ("output_gradient_second", grad)):
        for layer in (1, 2, 3):
            vals = res.per_position(stat, layer).reshape(200, -1)  # (replicates, positions)
            m, se = mc_stat(vals)
            assert np.all(np.abs(m - want[layer - 1]) <= Z * se + 8.0 / n * want[layer - 1]), (
                stat, layer, m, want, se)
