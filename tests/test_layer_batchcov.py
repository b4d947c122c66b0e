"""Between-sample covariances across positions (``Field.batch_cov``): pooling after a train-mode
BatchNorm.  Each rule against a Monte Carlo written here from scratch with numpy (seeded; 6
standard errors), and a small CNN end to end against ``simulate``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from varprop import predict_variance, simulate
from varprop._math.batch_backward import normalised_batch_gradient
from varprop.components.activations import activation
from varprop.errors import VarpropError
from varprop.layers import BatchNorm, Conv, Dense, GlobalAvgPool, MaxPool, Residual
from varprop.network.field import Field, FieldNeeds, GradField
from varprop.network.layers import AvgPool, Nonlinearity
from varprop.network.model import Network
from varprop.theory.fields import needs_of

Z = 6.0


def _pair_law(p: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random mean (p,) and joint covariance of two samples' fields, ``[[K, B], [B, K]]``
    (positive definite: a shared part plus independent parts)."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((p, p)) / math.sqrt(p)
    own = rng.standard_normal((p, p)) / math.sqrt(p)
    b = shared @ shared.T
    k = b + own @ own.T + 0.1 * np.eye(p)
    return 0.3 * rng.standard_normal(p), k, b


def _draw_pairs(m: np.ndarray, k: np.ndarray, b: np.ndarray, n: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    p = m.size
    joint = np.block([[k, b], [b, k]])
    x = np.random.default_rng(seed).multivariate_normal(np.concatenate([m, m]), joint, size=n)
    return x[:, :p], x[:, p:]


def _field(m: np.ndarray, k: np.ndarray, b: np.ndarray, spatial: tuple[int, ...]) -> Field:
    mm = np.outer(m, m)
    return Field((5, *spatial), 0, m.reshape(spatial), np.diag(k + mm).reshape(spatial), k + mm,
                 gaussian=True, batch_cov=b + mm)


def _close(samples: np.ndarray, pred: np.ndarray) -> None:
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / math.sqrt(len(samples))
    assert np.all(np.abs(mean - pred) <= Z * se + 1e-12), np.max(np.abs(mean - pred) / se)


def test_field_batch_cross_is_the_diagonal_and_with_drops_it() -> None:
    m, k, b = _pair_law(4, 0)
    f = _field(m, k, b, (2, 2))
    np.testing.assert_allclose(np.ravel(f.batch_cross), np.diag(b) + m * m)
    assert f.with_(batch_cross=np.zeros((2, 2))).batch_cov is None
    assert f.with_(second=f.second).batch_cov is not None


def test_engine_tracks_batch_cov_only_with_pooling_and_batchnorm() -> None:
    conv = Conv(4, 3)
    both = Network([conv, BatchNorm(batch_size=4), "relu", GlobalAvgPool()], input_shape=(2, 4, 4))
    no_bn = Network([conv, "relu", GlobalAvgPool()], input_shape=(2, 4, 4))
    no_pool = Network([conv, BatchNorm(batch_size=4), "relu"], input_shape=(2, 4, 4))
    assert needs_of(both) == FieldNeeds(cov=True, batch_cross=True, batch_cov=True)
    assert not needs_of(no_bn).batch_cov and not needs_of(no_pool).batch_cov


def test_pooling_refuses_batch_cross_without_batch_cov() -> None:
    m, k, b = _pair_law(4, 1)
    f = _field(m, k, b, (2, 2))
    bare = Field(f.shape, 0, f.mean, f.second, f.cov, f.batch_cross)
    for layer in (AvgPool(2), GlobalAvgPool(), MaxPool(2)):
        with pytest.raises(VarpropError, match="batch_cov"):
            layer.field_forward(bare)


def test_avgpool_and_global_batch_cov_vs_numpy() -> None:
    """E y_b,u y_b',u' of 2x2 average pooling (and the global average) of two correlated
    samples' 4x4 fields, against pooling numpy draws of the pair."""
    m, k, b = _pair_law(16, 2)
    f = _field(m, k, b, (4, 4))
    xb, xc = _draw_pairs(m, k, b, 40000, 3)
    pool = lambda x: x.reshape(-1, 2, 2, 2, 2).mean(axis=(2, 4)).reshape(-1, 4)  # noqa: E731
    yb, yc = pool(xb), pool(xc)
    out = AvgPool(2).field_forward(f)
    _close(np.einsum("nu,nv->nuv", yb, yc).reshape(len(yb), -1), np.ravel(out.batch_cov))
    np.testing.assert_allclose(np.ravel(out.batch_cross), np.diag(out.batch_cov))
    g = GlobalAvgPool().field_forward(f)
    _close(xb.mean(axis=1) * xc.mean(axis=1), float(np.ravel(g.batch_cross)[0]))


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_nonlinearity_batch_cov_vs_numpy(name: str) -> None:
    m, k, b = _pair_law(4, 4)
    f = _field(m, k, b, (2, 2))
    act = activation(name)
    out = Nonlinearity(name).field_forward(f)
    xb, xc = _draw_pairs(m, k, b, 60000, 5)
    fb, fc = np.asarray(act.function(xb)), np.asarray(act.function(xc))
    _close(np.einsum("nu,nv->nuv", fb, fc).reshape(len(fb), -1), np.ravel(out.batch_cov))
    # backward: E phi'(x_b,t) phi'(x_b',t') times the gradient's between-sample covariance
    gb = np.full((4, 4), 0.5) + 0.5 * np.eye(4)
    grad = GradField(f.shape, 0, np.ones((2, 2)), np.eye(4), batch_cov=gb)
    back = Nonlinearity(name).field_backward(grad, f, out)
    db, dc = np.asarray(act.derivative_function(xb)), np.asarray(act.derivative_function(xc))
    prods = np.einsum("nu,nv->nuv", db, dc) * gb
    _close(prods.reshape(len(db), -1), np.ravel(back.batch_cov))


def test_maxpool_batch_cov_vs_numpy() -> None:
    """Joint RQMC of two samples' fields: E max_b,u max_b',u' against numpy draws (the RQMC's
    own error is far below the Monte Carlo's)."""
    m, k, b = _pair_law(16, 6)
    f = _field(m, k, b, (4, 4))
    out = MaxPool(2).field_forward(f)
    xb, xc = _draw_pairs(m, k, b, 40000, 7)
    pool = lambda x: x.reshape(-1, 2, 2, 2, 2).max(axis=(2, 4)).reshape(-1, 4)  # noqa: E731
    yb, yc = pool(xb), pool(xc)
    _close(np.einsum("nu,nv->nuv", yb, yc).reshape(len(yb), -1), np.ravel(out.batch_cov))
    _close(yb * yb, np.ravel(out.second))


def test_batch_gradient_rqmc_vs_numpy() -> None:
    """The backward of normalisation over one channel's whole batch (B = 3 samples x 4
    positions, correlated input, relu above, a gradient constant over a sample's positions as a
    global average pool gives) against numpy autodiff-free formulas on plain draws."""
    nb, p = 3, 4
    m, k, b = _pair_law(p, 8)
    cov = np.kron(np.eye(nb), k - b) + np.kron(np.ones((nb, nb)), b)
    gamma = np.kron(np.eye(nb), np.ones((p, p)))
    eps = 1e-3
    d = lambda y: (y > 0).astype(float)  # noqa: E731
    pred = normalised_batch_gradient(np.tile(m, nb), cov, gamma, d, eps, points=4096)
    rng = np.random.default_rng(9)
    r = 100000
    h = rng.multivariate_normal(np.tile(m, nb), cov, size=r)
    g = np.repeat(rng.standard_normal((r, nb)), p, axis=1)
    c = h - h.mean(axis=1, keepdims=True)
    s = np.sqrt((c * c).mean(axis=1, keepdims=True) + eps)
    y = c / s
    delta = (y > 0) * g
    # y = c/s: dL/dh = (delta - mean(delta) - y mean(delta y)) / s (derived by hand)
    dh = (delta - delta.mean(axis=1, keepdims=True) - y * (delta * y).mean(axis=1, keepdims=True)) / s
    _close(dh * dh, np.diag(pred))
    _close(dh[:, :p] * dh[:, p:2 * p], np.diag(pred[:p, p:2 * p]))


def test_batchnorm_forward_pairs_vs_numpy() -> None:
    """Train-mode BatchNorm over B = 4 samples x 16 positions with a structured input: the
    output's same-sample and between-sample covariances against numpy normalisation of draws.
    The rule is randomized quasi-Monte Carlo of this very Gaussian law (8 x 2048 points),
    rescaled to the sphere law's average E y^2: 6 se of the Monte Carlo plus 0.002 for the
    RQMC error (entries of order 1)."""
    nb, p = 4, 16
    m, k, b = _pair_law(p, 10)
    m = np.zeros(p)
    f = _field(m, k, b, (4, 4))
    out = BatchNorm(batch_size=nb).field_forward(f)
    cov = np.kron(np.eye(nb), k - b) + np.kron(np.ones((nb, nb)), b)
    h = np.random.default_rng(11).multivariate_normal(np.zeros(nb * p), cov, size=20000)
    c = h - h.mean(axis=1, keepdims=True)
    y = c / np.sqrt((c * c).mean(axis=1, keepdims=True) + 1e-5)
    same = np.einsum("nu,nv->nuv", y[:, :p], y[:, :p]).reshape(len(y), -1)
    other = np.einsum("nu,nv->nuv", y[:, :p], y[:, p:2 * p]).reshape(len(y), -1)
    for samples, pred in ((same, out.cov), (other, out.batch_cov)):
        mean = samples.mean(axis=0)
        se = samples.std(axis=0, ddof=1) / math.sqrt(len(samples))
        assert np.all(np.abs(mean - np.ravel(pred)) <= Z * se + 0.002), np.max(np.abs(mean - np.ravel(pred)))


def test_cnn_with_batchnorm_maxpool_and_global_pool_vs_simulate() -> None:
    """Conv -> BatchNorm(train, B=4) -> relu -> MaxPool(2) -> Conv -> BatchNorm -> relu ->
    GlobalAvgPool -> Dense: per-layer predictions against the engine's Monte Carlo (batches of
    4), 6 standard errors.  The BatchNorm outputs' second moments are nearly deterministic
    (sigma^2/(sigma^2 + eps) per channel: standard errors ~1e-7) and the rule takes the eps
    correction from the exchangeable sphere law (declared): for them a relative 1e-4 floor.
    Measured (seed 4, 300 replicates): every other layer within 5 standard errors."""
    net = Network([Conv(16, 3, init="he_normal", bias_variance=0.1), BatchNorm(batch_size=4),
                   "relu", MaxPool(2), Conv(16, 3, init="he_normal"), BatchNorm(batch_size=4),
                   "relu", GlobalAvgPool(), Dense(10, init="he_normal")], input_shape=(3, 6, 6))
    fwd = predict_variance(net, quantity="output", per_layer=True)
    bwd = predict_variance(net, quantity="output_gradient", per_layer=True)
    sim = simulate(net, replicates=300, seed=4)
    for name, pred in (("output_second", fwd), ("output_gradient_second", bwd)):
        x = sim.per_replicate(name)
        se = x.std(axis=0, ddof=1) / np.sqrt(len(x))
        tol = Z * se + 1e-4 * np.abs(pred)
        assert np.all(np.abs(x.mean(axis=0) - pred) <= tol), (name, (x.mean(0) - pred) / se)


def test_conv_batch_cov_vs_numpy() -> None:
    """1-D Conv(kernel 3, zero padding 'same', bias variance 0.3) of two samples' fields with
    correlated positions and samples (channels i.i.d.): E z_b,t z_b',t' from draws of shared
    weights and bias (LeCun normal: variance 1/(C_in k), written out here) and of the inputs."""
    c_in, length, kern, b2 = 3, 5, 3, 0.3
    m, k, b = _pair_law(length, 12)
    mm = np.outer(m, m)
    f = Field((c_in, length), 0, m, np.diag(k + mm), k + mm, gaussian=True, batch_cov=b + mm)
    out = Conv(2, kern, bias_variance=b2).field_forward(f)
    rng = np.random.default_rng(13)
    n = 40000
    joint = np.block([[k, b], [b, k]])
    x = rng.multivariate_normal(np.concatenate([m, m]), joint, size=(n, c_in))  # (n, C, 2L)
    w = rng.standard_normal((n, c_in, kern)) / math.sqrt(c_in * kern)
    bias = rng.standard_normal(n) * math.sqrt(b2)
    pad = np.pad(x.reshape(n, c_in, 2, length), ((0, 0), (0, 0), (0, 0), (1, 1)))
    z = np.stack([np.einsum("ncsj,ncj->ns", pad[..., t:t + kern], w) for t in range(length)],
                 axis=-1) + bias[:, None, None]  # (n, 2 samples, L)
    _close(np.einsum("nu,nv->nuv", z[:, 0], z[:, 1]).reshape(n, -1), np.ravel(out.batch_cov))


def test_eval_batchnorm_scales_batch_cov() -> None:
    """Exact rule: eval-mode BatchNorm (running variance 1) divides every second moment, the
    between-sample ones across positions included, by 1 + eps (hand derivation)."""
    m, k, b = _pair_law(4, 14)
    f = _field(np.zeros(4), k, b, (2, 2))
    out = BatchNorm(0.25, mode="eval").field_forward(f)
    np.testing.assert_allclose(out.batch_cov, f.batch_cov / 1.25, rtol=1e-14)
    g = GradField(f.shape, 0, np.ones((2, 2)), np.eye(4), batch_cov=np.full((4, 4), 0.5))
    np.testing.assert_allclose(BatchNorm(0.25, mode="eval").field_backward(g, f, out).batch_cov,
                               np.full((4, 4), 0.4), rtol=1e-14)


def test_batchnorm_over_too_many_entries_is_refused() -> None:
    p = 16 * 16
    f = Field((2, 16, 16), 0, np.zeros((16, 16)), np.ones((16, 16)), np.eye(p), gaussian=True,
              batch_cov=np.zeros((p, p)))
    with pytest.raises(VarpropError, match="at most"):
        BatchNorm(batch_size=8).field_forward(f)


def test_residual_block_with_batchnorm_and_pools_vs_simulate() -> None:
    """A ResNet stem and basic block: Conv -> BN -> relu -> MaxPool(2) -> Residual(Conv -> BN
    -> relu -> Conv -> BN) -> relu -> GlobalAvgPool -> Dense (batches of 4).  Backward within 6
    standard errors.  Forward: the MaxPool and the relu after the residual sum act on
    non-Gaussian fields (train-mode BatchNorm outputs over 144 and 36 entries) with the Gaussian
    closure they declare; measured -0.8% and -1.4% (seed 5, 300 replicates): 6 standard errors
    plus 2.5% of the value on the layers whose field declares a closure, 1e-4 on the BatchNorm
    outputs (nearly deterministic, see the CNN test)."""
    net = Network([Conv(16, 3, init="he_normal"), BatchNorm(batch_size=4), "relu", MaxPool(2),
                   Residual([Conv(16, 3, init="he_normal"), BatchNorm(batch_size=4), "relu",
                             Conv(16, 3, init="he_normal"), BatchNorm(batch_size=4)]),
                   "relu", GlobalAvgPool(), Dense(10, init="he_normal")], input_shape=(3, 6, 6))
    fwd = predict_variance(net, quantity="output", per_layer=True)
    bwd = predict_variance(net, quantity="output_gradient", per_layer=True)
    sim = simulate(net, replicates=300, seed=5)
    closure = np.array([0.0, 1e-4, 0.0, 0.025, 0.0, 0.025, 0.025, 0.025])
    for name, pred, rel in (("output_second", fwd, closure),
                            ("output_gradient_second", bwd, np.zeros(len(bwd)))):
        x = sim.per_replicate(name)
        se = x.std(axis=0, ddof=1) / np.sqrt(len(x))
        tol = Z * se + rel * np.abs(pred)
        assert np.all(np.abs(x.mean(axis=0) - pred) <= tol), (name, (x.mean(0) - pred) / se)
