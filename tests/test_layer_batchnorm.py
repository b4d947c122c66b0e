"""BatchNorm (train and eval) against independent computations: hand derivations (moments of the
sphere law, the linear Jacobian's closed form), mpmath quadrature of the chi-square radial part,
and Monte Carlo written here from scratch with numpy (seeded; tolerances in standard errors).

Monte Carlo tolerances are 6 standard errors of the sample mean (estimated from the samples);
the chance of a false failure per comparison is below 1e-8."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from varprop._math.sphere import BatchSphere
from varprop.components.activations import resolve_activation
from varprop.errors import InvalidArgument, InvalidArgumentType, VarpropError
from varprop.layers import BatchNorm
from varprop.network.field import Field, GradField

SIGMAS = 6.0


def _bn(h: np.ndarray, eps: float) -> np.ndarray:
    """Batch normalisation of h (..., N) over the last axis, biased variance (from scratch)."""
    c = h - h.mean(-1, keepdims=True)
    return c / np.sqrt((c * c).mean(-1, keepdims=True) + eps)


def _bn_vjp(h: np.ndarray, g: np.ndarray, eps: float) -> np.ndarray:
    """Vector-Jacobian product of _bn by the explicit Jacobian (I - 11^T/N - y y^T/N)/sigma."""
    n = h.shape[-1]
    c = h - h.mean(-1, keepdims=True)
    sig = np.sqrt((c * c).mean(-1, keepdims=True) + eps)
    y = c / sig
    jac = (np.eye(n) - 1.0 / n - y[..., :, None] * y[..., None, :] / n) / sig[..., None]
    return np.einsum("...ij,...i->...j", jac, g)


def _batch(rng: np.random.Generator, count: int, n: int, a: float, b: float) -> np.ndarray:
    """``count`` batches h ~ N(0.3, a I + b 11^T) of n entries (a shared mean and component)."""
    return 0.3 + math.sqrt(a) * rng.standard_normal((count, n)) + math.sqrt(b) * rng.standard_normal((count, 1))


def _close(samples: np.ndarray, predicted: float) -> None:
    se = samples.std(ddof=1) / math.sqrt(samples.size)
    assert abs(samples.mean() - predicted) <= SIGMAS * se, (samples.mean(), predicted, se)


def _vector_field(second: float, bc: float, gaussian: bool = True) -> Field:
    return Field((64,), -1, 0.0, second, None, bc, gaussian=gaussian)


# --- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan"), float("inf")])
def test_eps_must_be_positive_and_finite(eps: float) -> None:
    with pytest.raises(InvalidArgument, match="eps"):
        BatchNorm(eps, batch_size=4)


def test_bad_arguments_raise_named_errors() -> None:
    with pytest.raises(InvalidArgumentType, match="eps"):
        BatchNorm(True, batch_size=4)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="did you mean 'eval'"):
        BatchNorm(mode="evl")
    with pytest.raises(InvalidArgument, match="batch_size=None"):
        BatchNorm()
    with pytest.raises(InvalidArgument, match="more than 1 value per channel"):
        BatchNorm(batch_size=1)
    for bad in (True, 4.0, "4"):
        with pytest.raises(InvalidArgumentType, match="batch_size"):
            BatchNorm(batch_size=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="input_shape"):
        BatchNorm(batch_size=4).output_shape((2, 3, 4, 5))


def test_attributes() -> None:
    bn = BatchNorm(batch_size=8)
    assert bn.required_batch == 8 and bn.field_needs().batch_cross
    assert repr(bn) == "BatchNorm(eps=1e-05, mode='train', batch_size=8)"
    ev = BatchNorm(mode="eval")
    assert ev.required_batch is None and not ev.field_needs().batch_cross and ev.field_exact(None)
    assert bn.channel_axis_for((16,)) == -1 and bn.channel_axis_for((3, 8, 8)) == 0
    assert hash(bn) == hash(BatchNorm(1e-5, batch_size=8))


def test_missing_batch_cross_is_a_clear_error() -> None:
    with pytest.raises(VarpropError, match="batch_cross"):
        BatchNorm(batch_size=4).field_forward(Field((8,), -1, 0.0, 1.0))


# --- eval mode ---------------------------------------------------------------------------------

def test_eval_mode_divides_moments_by_one_plus_eps() -> None:
    bn = BatchNorm(0.25, mode="eval")
    f = Field((3, 4), 0, [0.5, 0, 0, 1.0], [2.0, 1, 1, 3.0], np.eye(4), [0.1, 0, 0, 0])
    out = bn.field_forward(f)
    assert np.allclose(out.second, np.array([2.0, 1, 1, 3]) / 1.25)
    assert np.allclose(out.mean, np.array([0.5, 0, 0, 1]) / math.sqrt(1.25))
    assert np.allclose(out.cov, np.eye(4) / 1.25) and np.allclose(out.batch_cross[0], 0.08)
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 4))
    y, cache = bn.mc_forward(None, x)
    assert np.allclose(y, x / math.sqrt(1.25))
    assert np.allclose(bn.mc_backward(None, cache, x), x / math.sqrt(1.25))
    g = bn.field_backward(GradField((3, 4), 0, np.ones(4)), f, out)
    assert np.allclose(g.second, 0.8)


# --- the sphere law: forward -------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 16, 2000])
def test_one_coordinate_is_not_gaussian(n: int) -> None:
    """eps = 0: y_b = sqrt(N-1) t, t^2 ~ Beta(1/2, (N-2)/2), so E y_b^4 = 3(N-1)/(N+1)
    (a Gaussian would give 3; N = 2: y_b = +-1; N = 3: sqrt(2) cos(theta), E = 3/2)."""
    sph = BatchSphere(n, 0.0)
    assert sph.expect(lambda y: y**4) == pytest.approx(3 * (n - 1) / (n + 1), rel=1e-10)
    assert sph.expect2(lambda y: y, lambda y: y) == pytest.approx(-1 / (n - 1), rel=1e-10)


@pytest.mark.parametrize("n, eps, a", [(4, 0.5, 1.0), (8, 1e-5, 0.7), (16, 0.1, 2.0)])
def test_second_moment_with_eps_is_the_chi_square_integral(n: int, eps: float, a: float) -> None:
    """E y^2 = E v/(v + N eps/a), v ~ chi^2_{N-1}: mpmath at 30 digits."""
    mpmath.mp.dps = 30
    k, eta = n - 1, n * eps / a
    pdf = lambda v: v ** (mpmath.mpf(k) / 2 - 1) * mpmath.exp(-v / 2) / (2 ** (mpmath.mpf(k) / 2) * mpmath.gamma(mpmath.mpf(k) / 2))
    exact = float(mpmath.quad(lambda v: v / (v + eta) * pdf(v), [0, eta, 1, mpmath.inf]))
    bn = BatchNorm(eps, batch_size=n)
    out = bn.field_forward(_vector_field(a + 0.2, 0.2))
    assert float(out.second) == pytest.approx(exact, rel=1e-9)
    assert float(out.batch_cross) == pytest.approx(-exact / (n - 1), rel=1e-9)
    assert not out.gaussian and out.law is not None and out.law.describes(out)


@pytest.mark.parametrize("n, act", [(4, "relu"), (8, "relu"), (8, "tanh"), (16, "tanh")])
def test_activation_after_batchnorm_against_monte_carlo(n: int, act: str) -> None:
    """E phi(y_b), E phi(y_b)^2 and E phi(y_b) phi(y_c) over the law vs normalised Gaussian batches
    (with a shared mean and a shared component, which the normalisation removes)."""
    eps, a, b = 0.05, 1.3, 0.4
    bn = BatchNorm(eps, batch_size=n)
    out = bn.field_forward(_vector_field(a + b + 0.09, b + 0.09))
    phi = resolve_activation(act)
    pred = out.law.nonlinearity_forward(phi, out)
    y = _bn(_batch(np.random.default_rng(1), 200_000, n, a, b), eps)
    f = np.asarray(phi.function(y))
    _close(f[:, 0], float(pred.mean))
    _close(f[:, 0] ** 2, float(pred.second))
    _close(f[:, 0] * f[:, 1], float(pred.batch_cross))
    if act == "relu":  # a Gaussian closure would give E relu^2 = E y^2 / 2 and the arc-cosine cross
        assert float(pred.second) == pytest.approx(float(out.second) / 2, rel=1e-10)


def test_law_is_dropped_when_a_layer_changes_the_moments() -> None:
    out = BatchNorm(batch_size=8).field_forward(_vector_field(1.0, 0.0))
    scaled = out.with_(second=out.second * 2.0)
    assert not out.law.describes(scaled)
    assert out.law.nonlinearity_forward(resolve_activation("relu"), scaled) is None


# --- backward ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [4, 6, 8, 16, 2000])
def test_linear_backward_closed_form(n: int) -> None:
    """eps -> 0, no activation: E d_h^2 = (N-2)/(N-3) (G_D - G_C)/a (hand derivation: E J^2 =
    (N/a) E[1/v] (1 - 1/(N-1)) P with E[1/v] = 1/(N-3) for v ~ chi^2_{N-1})."""
    sph = BatchSphere(n, 0.0)
    gd, gc, a = 1.7, 0.3, 2.5
    x = sph.backward(None, gd - gc, gc) / a
    assert x * (n - 1) / n == pytest.approx((n - 2) / (n - 3) * (gd - gc) / a, rel=1e-10)


@pytest.mark.parametrize("n, eps, act", [(4, 0.2, "linear"), (6, 0.01, "relu"), (8, 1e-3, "tanh"),
                                         (16, 1e-5, "relu"), (2, 0.1, "linear")])
def test_backward_against_monte_carlo(n: int, eps: float, act: str) -> None:
    """delta_h = J diag(phi'(y)) delta with delta ~ N(0, alpha I + beta 11^T) independent of h:
    the joint expectation (BatchNorm + the activation above it) vs explicit Jacobians."""
    a, b, alpha, beta = 1.3, 0.4, 0.9, -0.2 / n
    bn = BatchNorm(eps, batch_size=n)
    fin = _vector_field(a + b + 0.09, b + 0.09)
    out = bn.field_forward(fin)
    phi = resolve_activation(act)
    grad = GradField((64,), -1, alpha + beta, None, beta)
    g_y = out.law.nonlinearity_backward(phi, grad, out)
    pred = bn.field_backward(g_y, fin, out)
    rng = np.random.default_rng(2)
    count = 100_000 if n <= 8 else 40_000
    h = _batch(rng, count, n, a, b)
    delta = math.sqrt(alpha) * rng.standard_normal((count, n)) + math.sqrt(max(beta, 0)) * rng.standard_normal((count, 1))
    if beta < 0:  # alpha I + beta 11^T with beta < 0: remove a common component instead
        delta = math.sqrt(alpha) * rng.standard_normal((count, n))
        delta -= (1 - math.sqrt(1 + n * beta / alpha)) * delta.mean(-1, keepdims=True)
    d = np.asarray(phi.derivative_function(_bn(h, eps))) * delta
    gh = _bn_vjp(h, d, eps)
    _close(gh[:, 0] ** 2, float(pred.second))
    _close(gh[:, 0] * gh[:, 1], float(pred.batch_cross))
    _close(d[:, 0] ** 2, float(g_y.second))


def test_backward_without_activation_factor_uses_the_marginal_gradient() -> None:
    """BatchNorm followed by a weight layer: the gradient is independent of the forward pass."""
    n, eps, a = 8, 1e-4, 1.0
    bn = BatchNorm(eps, batch_size=n)
    fin = _vector_field(a, 0.0)
    out = bn.field_forward(fin)
    pred = bn.field_backward(GradField((64,), -1, 1.0, None, 0.0), fin, out)
    rng = np.random.default_rng(3)
    h = rng.standard_normal((100_000, n))
    gh = _bn_vjp(h, rng.standard_normal((100_000, n)), eps)
    _close(gh[:, 0] ** 2, float(pred.second))
    with pytest.raises(VarpropError, match="batch_cross"):
        bn.field_backward(GradField((64,), -1, 1.0), fin, out)


# --- sampling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 3)])
def test_mc_forward_and_backward(shape: tuple[int, ...]) -> None:
    """Per channel: mean 0 and biased variance var/(var + eps) over batch and positions; the
    backward is the vector-Jacobian product (central finite differences)."""
    bn = BatchNorm(0.01, batch_size=4)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4) + shape)
    y, cache = bn.mc_forward(None, x)
    ch = np.moveaxis(y, 2, -1).reshape(2, -1, shape[0])  # (R, B*P, C) for vectors and images
    if len(shape) > 1:
        ch = np.moveaxis(y, 2, 1).reshape(2, shape[0], -1).swapaxes(1, 2)
    assert np.allclose(ch.mean(1), 0, atol=1e-12)
    xv = np.moveaxis(x, 2, 1).reshape(2, shape[0], -1)
    var = xv.var(-1)
    assert np.allclose((ch**2).mean(1), var / (var + 0.01))
    g = rng.standard_normal(y.shape)
    gx = bn.mc_backward(None, cache, g)
    step, k = 1e-6, (1, 2) + (1,) * len(shape)
    xp, xm = x.copy(), x.copy()
    xp[k] += step
    xm[k] -= step
    fd = (np.sum(bn.mc_forward(None, xp)[0] * g) - np.sum(bn.mc_forward(None, xm)[0] * g)) / (2 * step)
    assert gx[k] == pytest.approx(fd, rel=1e-6)
    with pytest.raises(VarpropError, match="batch_size=4"):
        bn.mc_forward(None, x[:, :3])


def test_positions_are_an_exchangeable_closure() -> None:
    out = BatchNorm(batch_size=4).field_forward(Field((3, 5), 0, 0.0, 2.0, None, 0.0))
    assert out.second == pytest.approx(np.full(5, BatchSphere(20, 20 * 1e-5 / 2.0).second))
    assert any("exchangeable" in s for s in out.approximations) and out.law is None


def test_field_steps_are_equations() -> None:
    for bn in (BatchNorm(batch_size=4), BatchNorm(mode="eval")):
        steps = bn.field_steps()
        assert steps and all(isinstance(s, str) and hasattr(eq, "lhs") for s, eq in steps)


# --- a deep batch-normalised MLP ---------------------------------------------------------------

def _chain_prediction(act: str, batch: int, depth: int, gain: float, eps: float = 1e-5) -> np.ndarray:
    """E delta^2 at each block's input of Dense -> BatchNorm -> act (Dense rule by hand:
    sigma_w^2 n = gain on second moments, batch cross moments and gradients)."""
    bn, phi = BatchNorm(eps, batch_size=batch), resolve_activation(act)
    x, fields = Field((8,), -1, 0.0, 1.0, None, 0.0), []
    for _ in range(depth):
        h = Field((8,), -1, 0.0, gain * float(x.second), None, gain * float(x.batch_cross))
        y = bn.field_forward(h)
        x = y.law.nonlinearity_forward(phi, y)
        fields.append((h, y))
    g, out = GradField((8,), -1, 1.0, None, 0.0), []
    for h, y in reversed(fields):
        gh = bn.field_backward(y.law.nonlinearity_backward(phi, g, y), h, y)
        g = GradField((8,), -1, gain * float(gh.second), None, gain * float(gh.batch_cross))
        out.append(float(g.second))
    return np.array(out[::-1])


def _relu_rate(n: int) -> float:
    """Hand derivation (eps = 0) of the per-block growth of E delta^2 in Dense(He) -> BN -> relu:
    2 (A - B/N) / (1 - 2 kappa), kappa = (sin psi + (pi - psi) cos psi) / (2 pi) (the arc-cosine
    kernel at cos psi = -1/(N-1)), A = N(N-2)/(2(N-1)(N-3)),
    B = N/((N-1)(N-3)) ((N-1)(1/4 + asin(1/(N-1))/(2 pi)) - 1/2 - (N-1) kappa)."""
    c = -1 / (n - 1)
    psi = math.acos(c)
    kappa = (math.sin(psi) + (math.pi - psi) * c) / (2 * math.pi)
    a = n * (n - 2) / (2 * (n - 1) * (n - 3))
    b = n / ((n - 1) * (n - 3)) * ((n - 1) * (0.25 + math.asin(1 / (n - 1)) / (2 * math.pi))
                                   - 0.5 - (n - 1) * kappa)
    return 2 * (a - b / n) / (1 - 2 * kappa)


@pytest.mark.parametrize("n", [5, 8, 16])
def test_per_block_rates_against_closed_forms(n: int) -> None:
    """eps -> 0 (1e-12): linear (N-2)/(N-3) and the relu closed form (-> pi/(pi-1) as N
    grows)."""
    lin = _chain_prediction("linear", n, 5, 1.0, eps=1e-12)
    assert lin[1] / lin[2] == pytest.approx((n - 2) / (n - 3), rel=1e-6)
    relu = _chain_prediction("relu", n, 5, 2.0, eps=1e-12)
    assert relu[1] / relu[2] == pytest.approx(_relu_rate(n), rel=1e-6)
    assert _relu_rate(10**6) == pytest.approx(math.pi / (math.pi - 1), rel=1e-5)


def test_gradient_growth_of_a_deep_relu_batchnorm_mlp() -> None:
    """Dense(256, He) -> BatchNorm(train, B=8) -> relu, 8 blocks, from scratch: the
    per-block growth of E delta^2 (log-slope per network, over blocks 1..6), 30 networks.
    Tolerance: 6 standard errors of the mean slope plus 0.02 for the finite-width bias (measured: -0.006 +- 0.004 in
    the log-rate at width 256 over 20 blocks; 0.000 +- 0.002 at width 2048)."""
    batch, depth, n, nets = 8, 8, 256, 30
    pred = _chain_prediction("relu", batch, depth, 2.0)
    rng = np.random.default_rng(6)
    logs = np.empty((nets, depth))
    for r in range(nets):
        x, cache = rng.standard_normal((batch, n)), []
        for _ in range(depth):
            w = rng.standard_normal((n, n)) * math.sqrt(2.0 / n)
            h = x @ w.T
            x = np.maximum(_bn(h.T, 1e-5), 0).T  # normalise each unit over the batch
            cache.append((w, h))
        g = rng.standard_normal((batch, n))
        for k in reversed(range(depth)):
            w, h = cache[k]
            gy = (_bn(h.T, 1e-5) > 0).T * g
            g = _bn_vjp(h.T, gy.T, 1e-5).T @ w
            logs[r, k] = math.log(np.mean(g * g))
    blocks = np.arange(1, depth - 1)
    slopes = np.array([np.polyfit(blocks, row[1:-1], 1)[0] for row in logs])
    predicted = np.polyfit(blocks, np.log(pred[1:-1]), 1)[0]
    se = slopes.std(ddof=1) / math.sqrt(nets)
    assert abs(slopes.mean() - predicted) <= SIGMAS * se + 0.02, (slopes.mean(), predicted, se)
    assert math.exp(-predicted) > 1.7  # the gradient explodes going down (about 1.79 per block)


# --- end to end (general engine) ---------------------------------------------------------------

def test_predict_variance_against_simulate() -> None:
    """predict_variance per layer (forward and output gradient) vs the general Monte Carlo engine
    for Dense(256, He) -> BatchNorm(B=8) -> relu x 4: 6 standard errors over 60 networks, plus a
    finite-width allowance of 1.5% per BatchNorm layer the quantity passed through (the measured
    bias of the per-block gradient growth at width 256 is about 1%)."""
    from varprop import Network, layers, predict_variance, simulate

    blocks = 4
    net = Network([layers.Dense(256, init="he_normal"), layers.BatchNorm(batch_size=8), "relu"] * blocks,
                  input_shape=(32,))
    res = simulate(net, replicates=60, seed=11)
    assert res.batch == 8
    for quantity, stat in (("output", "output_second"), ("output_gradient", "output_gradient_second")):
        pred = np.asarray(predict_variance(net, quantity=quantity, per_layer=True), dtype=float)
        sim = res.per_replicate(stat)
        mean, se = sim.mean(0), sim.std(0, ddof=1) / math.sqrt(sim.shape[0])
        position = np.arange(len(pred))
        # BatchNorm layers (positions 3k + 1) the quantity went through
        passed = (position + 2) // 3 if quantity == "output" else blocks - (position + 2) // 3
        tol = SIGMAS * se + 0.015 * passed * pred
        assert np.all(np.abs(mean - pred) <= tol), (quantity, mean, pred, tol)
    # the exact sphere law, not a Gaussian closure: no approximation declared
    from varprop import predict_fields

    assert predict_fields(net).approximations == ()


# --- post-activation placement: BatchNorm of an activated Gaussian batch (QMC) -----------------

def test_activated_batch_of_a_linear_activation_is_the_sphere_law() -> None:
    """phi(z) = z: the QMC integrals against the sphere law's quadrature (6 QMC standard errors;
    E y^2 to 1e-6)."""
    from varprop._math.activated_batch import activated_batch

    n, eps, a, b = 8, 1e-3, 1.5, -0.1
    r = activated_batch(n, lambda z: z, np.ones_like, 0.2, a, b, eps)
    sph = BatchSphere(n, n * eps / a)
    jj = sph.backward(None, 1.0, 0.0) * (n - 1) / n / a
    assert r["second"][0] == pytest.approx(sph.second, abs=1e-6)
    assert abs(r["jj"][0] - jj) <= SIGMAS * r["jj"][1]
    assert r["djjd"][0] == pytest.approx(r["jj"][0], rel=1e-12)
    assert r["djjd_cross"][0] == pytest.approx(-r["jj"][0] / (n - 1), rel=1e-9)


def test_activated_batch_against_monte_carlo() -> None:
    """relu, N = 16: E y_b^2 and the gradient at z = D J delta (delta ~ N(0, I) independent) vs
    explicit Jacobians on pseudo-random batches (6 standard errors of the difference)."""
    from varprop._math.activated_batch import activated_batch

    n, eps, a, b = 16, 1e-5, 2.0, -0.05
    r = activated_batch(n, lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0, 0.0, a, b, eps)
    rng = np.random.default_rng(8)
    count = 60_000
    xi = rng.standard_normal((count, n))
    bar = xi.mean(-1, keepdims=True)
    z = math.sqrt(a) * (xi - bar) + math.sqrt(a + n * b) * bar
    y = _bn(np.maximum(z, 0), eps)
    gz = (z > 0) * _bn_vjp(np.maximum(z, 0), rng.standard_normal((count, n)), eps)
    for sample, (value, qse) in ((y[:, 0] ** 2, r["second"]), (gz[:, 0] ** 2, r["djjd"]),
                                 (gz[:, 0] * gz[:, 1], r["djjd_cross"])):
        se = math.hypot(sample.std(ddof=1) / math.sqrt(count), qse)
        assert abs(sample.mean() - value) <= SIGMAS * se, (sample.mean(), value, se)


def test_post_activation_batchnorm_against_simulate() -> None:
    """Dense(256, He) -> relu -> BatchNorm(B=16) x 3, 60 networks: the gradient per layer within 6
    standard errors plus 1.5% per BatchNorm passed (finite width), and the QMC declared."""
    from varprop import Network, layers, predict_fields, predict_variance, simulate

    blocks = 3
    net = Network([layers.Dense(256, init="he_normal"), "relu", layers.BatchNorm(batch_size=16)] * blocks,
                  input_shape=(256,))
    res = simulate(net, replicates=60, seed=12)
    pred = np.asarray(predict_variance(net, quantity="output_gradient", per_layer=True), dtype=float)
    sim = res.per_replicate("output_gradient_second")
    mean, se = sim.mean(0), sim.std(0, ddof=1) / math.sqrt(sim.shape[0])
    passed = blocks - (np.arange(len(pred)) + 1) // 3  # BatchNorm layers (3k + 2) above
    assert np.all(np.abs(mean - pred) <= SIGMAS * se + 0.015 * passed * pred), (mean, pred)
    assert any("quasi-Monte Carlo" in s for s in predict_fields(net).approximations)


def test_convolutional_batchnorm_is_a_declared_approximation() -> None:
    """Conv(16, 3) -> BatchNorm2d-style (B=4) -> relu x 2 on (3, 8, 8): the entries of a channel
    over batch and positions are treated as exchangeable (declared); measured against simulate
    within 10% per layer (the measured deviation is at most 5.5%; 6 standard errors on top)."""
    from varprop import Network, layers, predict_fields, predict_variance, simulate

    block = [layers.Conv(16, 3, init="he_normal"), layers.BatchNorm(batch_size=4), "relu"]
    net = Network(block * 2, input_shape=(3, 8, 8))
    assert any("exchangeable" in s for s in predict_fields(net).approximations)
    res = simulate(net, replicates=40, seed=4)
    for quantity, stat in (("output", "output_second"), ("output_gradient", "output_gradient_second")):
        pred = np.asarray(predict_variance(net, quantity=quantity, per_layer=True), dtype=float)
        sim = res.per_replicate(stat)
        se = sim.std(0, ddof=1) / math.sqrt(sim.shape[0])
        assert np.all(np.abs(sim.mean(0) - pred) <= 0.10 * pred + SIGMAS * se), (quantity, sim.mean(0), pred)
