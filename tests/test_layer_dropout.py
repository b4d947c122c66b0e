"""Dropout: the moment rules against hand algebra and a from-scratch NumPy Monte Carlo (exact at
every width: tested at width 3).  Tolerances: 6 standard errors estimated from the samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from varprop import Network, predict_fields, predict_variance, simulate
from varprop.errors import InvalidArgument, InvalidArgumentType
from varprop.layers import Dense, Dropout
from varprop.network.field import Field, GradField

Z = 6.0


def close(est, se, want):
    assert np.all(np.abs(np.asarray(est) - np.asarray(want)) <= Z * np.asarray(se)), (est, want, se)


@pytest.mark.parametrize("p, err", [(1.0, InvalidArgument), (-0.1, InvalidArgument),
                                    (float("nan"), InvalidArgument), (True, InvalidArgumentType),
                                    ("0.5", InvalidArgumentType), (1.5, InvalidArgument)])
def test_bad_p(p, err):
    with pytest.raises(err, match="p="):
        Dropout(p)


def test_bad_mode_suggests():
    with pytest.raises(InvalidArgument, match="did you mean 'eval'"):
        Dropout(0.1, mode="evl")
    with pytest.raises(InvalidArgumentType, match="mode"):
        Dropout(0.1, mode=None)


def test_repr_equality_shape():
    assert repr(Dropout(0.25)) == "Dropout(0.25)"
    assert repr(Dropout(0.25, mode="eval")) == "Dropout(0.25, mode='eval')"
    assert Dropout(0.25) != Dropout(0.25, mode="eval") and hash(Dropout(0.5)) == hash(Dropout(0.5))
    assert Dropout(0.1).output_shape((3, 4)) == (3, 4)


M = np.array([0.5, -0.2, 0.1])
S = np.array([[1.0, 0.3, 0.1], [0.3, 0.8, -0.2], [0.1, -0.2, 0.6]])  # centred covariance
SHARED = np.array([0.2, 0.1, 0.05])  # variance of the part two samples of a batch share


def field_with_cov() -> Field:
    cov = S + np.outer(M, M)
    return Field((3, 3), -1, M, np.diag(cov), cov=cov, batch_cross=M * M + SHARED)


def test_hand_rule_and_eval_identity():
    f = field_with_cov()
    out = Dropout(0.2).field_forward(f)
    np.testing.assert_allclose(out.second, np.diag(f.cov) / 0.8, rtol=1e-15)
    np.testing.assert_array_equal(out.mean, f.mean)
    np.testing.assert_array_equal(out.batch_cross, f.batch_cross)
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_array_equal(out.cov[off], f.cov[off])
    np.testing.assert_allclose(np.diag(out.cov), out.second, rtol=1e-15)
    assert not out.gaussian
    g = GradField((3, 3), -1, np.array([1.0, 2.0, 3.0]), cov=np.eye(3) + 0.1)
    gb = Dropout(0.5).field_backward(g, f, out)
    np.testing.assert_allclose(gb.second, g.second / 0.5, rtol=1e-15)
    np.testing.assert_array_equal(gb.cov[off], g.cov[off])
    for layer in (Dropout(0.3, mode="eval"), Dropout(0.0)):
        assert layer.field_forward(f) is f and layer.field_backward(g, f, f) is g
        x = np.ones((1, 2, 3, 3))
        y, cache = layer.mc_forward(layer.mc_draw(np.random.default_rng(0), (3, 3), 1, x.dtype), x)
        assert y is x and layer.mc_backward(None, cache, x) is x
    assert Dropout(0.0).field_forward(f).gaussian


def test_field_steps():
    steps = Dropout(0.25).field_steps()
    assert len(steps) == 2 and all(isinstance(e, sp.Eq) for _, e in steps)
    vals = {sp.Symbol("q", real=True): 2.0, sp.Symbol("G_y", real=True): 3.0,
            sp.Symbol("p", nonnegative=True): 0.25}
    assert [float(e.rhs.subs(vals)) for _, e in steps] == pytest.approx([2.0 / 0.75, 3.0 / 0.75])


def test_forward_backward_vs_numpy_at_width_3():
    """A from-scratch inverted dropout on correlated non-Gaussian inputs (exact at every width)."""
    rng = np.random.default_rng(11)
    p, N, n, T = 0.3, 200000, 3, 3
    f = field_with_cov()
    out = Dropout(p).field_forward(f)
    # non-Gaussian input with the field's moments (Rademacher-driven): (N, n, T), n channels
    x = M + rng.choice([-1.0, 1.0], size=(N, n, T)) @ np.linalg.cholesky(S).T
    mask = rng.random(x.shape) >= p
    y = np.where(mask, x / (1 - p), 0.0)
    for t in range(T):
        s = (y[..., t] ** 2).ravel()
        close(s.mean(), s.std(ddof=1) / math.sqrt(s.size), out.second[t])
        s = y[..., t].ravel()
        close(s.mean(), s.std(ddof=1) / math.sqrt(s.size), out.mean[t])
        for u in range(T):
            if u != t:
                s = (y[..., t] * y[..., u]).ravel()
                close(s.mean(), s.std(ddof=1) / math.sqrt(s.size), out.cov[t, u])
    # two samples with a shared component: E y_b y_b' = E x_b x_b'
    c = rng.standard_normal((N, n, T)) * np.sqrt(SHARED)
    own = np.sqrt(np.diag(S) - SHARED)
    xa = M + c + rng.standard_normal((N, n, T)) * own
    xb = M + c + rng.standard_normal((N, n, T)) * own
    ya = np.where(rng.random(xa.shape) >= p, xa / (1 - p), 0.0)
    yb = np.where(rng.random(xb.shape) >= p, xb / (1 - p), 0.0)
    for t in range(T):
        s = (ya[..., t] * yb[..., t]).ravel()
        close(s.mean(), s.std(ddof=1) / math.sqrt(s.size), out.batch_cross[t])
    # backward: the same mask, a gradient independent of it
    g = rng.standard_normal((N, n, T)) * np.sqrt([1.0, 2.0, 0.5])
    gx = np.where(mask, g / (1 - p), 0.0)
    gb = Dropout(p).field_backward(GradField((3, 3), -1, np.array([1.0, 2.0, 0.5])), f, out)
    for t in range(T):
        s = (gx[..., t] ** 2).ravel()
        close(s.mean(), s.std(ddof=1) / math.sqrt(s.size), gb.second[t])


def test_mc_methods_agree_in_law_and_reuse_the_mask():
    rng = np.random.default_rng(12)
    p, R, B, n = 0.4, 3, 4000, 16
    layer = Dropout(p)
    params = layer.mc_draw(rng, (n,), R, np.dtype(np.float64))
    x = rng.standard_normal((R, B, n)) + 0.5
    y, cache = layer.mc_forward(params, x)
    kept = y != 0
    frac = kept.mean()
    close(frac, math.sqrt(p * (1 - p) / kept.size), 1 - p)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-15)
    y2, _ = layer.mc_forward(params, x)
    np.testing.assert_array_equal(y, y2)  # same parameters, same masks
    g = rng.standard_normal(x.shape)
    gx = layer.mc_backward(params, cache, g)
    np.testing.assert_array_equal(gx != 0, kept)
    np.testing.assert_allclose(gx[kept], g[kept] / (1 - p), rtol=1e-15)
    s = (y * y).ravel()
    close(s.mean(), s.std(ddof=1) / math.sqrt(s.size), (1 + 0.25) / (1 - p))
    y32, _ = layer.mc_forward(params, x.astype(np.float32))
    assert y32.dtype == np.float32
    other = layer.mc_draw(rng, (n,), R, np.dtype(np.float64))
    assert not np.array_equal(layer.mc_forward(other, x)[0] != 0, kept)


# --- end to end: Network, predict_variance, simulate ------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
def test_network_with_dropout_vs_simulate(mode):
    """Dense(he), relu, Dropout(0.5), Dense(lecun) at width 24: E y^2 = 2, 1, 1/(1 - p), 1/(1 - p)
    (train; eval: 2, 1, 1, 1); gradients at the outputs 1/(2(1 - p)), 1/(1 - p), 1, 1.  Exact at
    every width (independent weights and masks), so the prediction is flagged exact and simulate
    agrees within 6 standard errors."""
    n, p = 24, 0.5
    net = Network([Dense(n, "he_normal"), "relu", Dropout(p, mode=mode), Dense(n)], input_shape=(n,))
    k = 1 / (1 - p) if mode == "train" else 1.0
    pred = predict_variance(net, quantity="output", per_layer=True)
    np.testing.assert_allclose(pred, [2.0, 1.0, k, k], rtol=1e-12)
    grad = predict_variance(net, quantity="output_gradient", per_layer=True)
    np.testing.assert_allclose(grad, [0.5 * k, k, 1.0, 1.0], rtol=1e-12)
    assert predict_fields(net).exact
    res = simulate(net, replicates=400, batch=4, seed=42)
    for stat, want in (("output_second", pred), ("output_gradient_second", grad)):
        v = res.per_replicate(stat)
        close(v.mean(0), v.std(0, ddof=1) / math.sqrt(v.shape[0]), want)
