"""Conv: shapes and fans (PyTorch), the per-position mean-field rules against hand derivations
and from-scratch NumPy/SciPy Monte Carlo, the sampling against scipy.signal, validation."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy import signal

from varprop import init_scheme
from varprop.errors import InvalidArgument, InvalidArgumentType, VarpropError
from varprop.layers import Conv
from varprop.network.field import Field, GradField

#: Statistical tolerance: 6 standard errors (two-sided normal tail 2e-9 per comparison).
Z = 6.0


def _iid_field(shape: tuple[int, ...], q: float, cov: bool = True) -> Field:
    pos = shape[1:]
    p = int(np.prod(pos))
    return Field(shape, 0, np.zeros(pos), np.full(pos, q), np.eye(p) * q if cov else None)


def _within(mc: np.ndarray, se: np.ndarray, pred: np.ndarray) -> None:
    assert np.all(np.abs(mc - pred) <= Z * se + 1e-12), (mc, pred, se)


# --- shapes, fans ------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("kw, shape", [
    (dict(kernel_size=3), (4, 10)),
    (dict(kernel_size=4), (4, 10)),  # even kernel: 'same' pads 1 left, 2 right
    (dict(kernel_size=3, stride=2, padding="valid"), (4, 11)),
    (dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (4, 9, 7)),
    (dict(kernel_size=3, padding=2, dilation=2, groups=2), (4, 6, 5)),
])
def test_output_shape_and_fans_match_torch(kw: dict, shape: tuple[int, ...]) -> None:
    torch = pytest.importorskip("torch")
    layer = Conv(6, **kw)
    nd = len(shape) - 1
    tconv = (torch.nn.Conv1d if nd == 1 else torch.nn.Conv2d)(
        shape[0], 6, kw["kernel_size"], stride=kw.get("stride", 1), padding=kw.get("padding", "same"),
        dilation=kw.get("dilation", 1), groups=kw.get("groups", 1))
    out = tconv(torch.zeros((1, *shape)))
    assert layer.output_shape(shape) == tuple(out.shape[1:])
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(tconv.weight)
    assert layer.fans(shape) == (fan_in, fan_out)
    # the sampling path computes what torch computes with the same weights
    w, b, win = layer.mc_draw(np.random.default_rng(3), shape, 1, np.float64)
    x = np.random.default_rng(4).standard_normal((1, 2, *shape))
    y, _ = layer.mc_forward((w, b, win), x)
    conv = torch.nn.functional.conv1d if nd == 1 else torch.nn.functional.conv2d
    ref = conv(torch.from_numpy(x[0]), torch.from_numpy(w[0]), stride=kw.get("stride", 1),
               padding=kw.get("padding", "same"), dilation=kw.get("dilation", 1),
               groups=kw.get("groups", 1)).numpy()
    np.testing.assert_allclose(y[0], ref, rtol=1e-10, atol=1e-12)


def test_circular_output_size_and_torch_circular_padding() -> None:
    torch = pytest.importorskip("torch")
    layer = Conv(2, 3, padding="circular", init="he_normal")
    params = layer.mc_draw(np.random.default_rng(0), (3, 8), 1, np.float64)
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 8))
    y, _ = layer.mc_forward(params, x)
    t = torch.nn.Conv1d(3, 2, 3, padding=1, padding_mode="circular", bias=False).double()
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(params[0][0]))
        ref = t(torch.from_numpy(x[0])).numpy()
    np.testing.assert_allclose(y[0], ref, rtol=1e-12, atol=1e-12)


# --- the forward rule: hand derivations ---------------------------------------------------------

def test_same_zero_padding_edges_have_fewer_taps() -> None:
    # E z_t^2 = sigma_w^2 C (K - m_t) q + sigma_b^2, m_t taps in the padding: k=5 -> m = 2, 1, 0...
    c_in, q, b2 = 3, 1.7, 0.2
    layer = Conv(4, 5, init="he_normal", bias_variance=b2)
    out = layer.field_forward(_iid_field((c_in, 9), q))
    sw2 = 2.0 / (c_in * 5)
    taps = np.array([3, 4, 5, 5, 5, 5, 5, 4, 3])
    np.testing.assert_allclose(out.second, sw2 * c_in * taps * q + b2, rtol=1e-14)
    # i.i.d. input: distinct positions share only the bias (no tap reads the same position twice)
    expected = np.full((9, 9), b2) + np.diag(sw2 * c_in * taps * q)
    np.testing.assert_allclose(out.cov, expected, rtol=1e-14, atol=1e-15)
    assert np.all(out.mean == 0) and out.gaussian


def test_circular_padding_is_translation_invariant() -> None:
    layer = Conv(4, (3, 3), padding="circular", init="he_normal")
    out = layer.field_forward(_iid_field((2, 5, 6), 1.3))
    np.testing.assert_allclose(out.second, 2.0 * 1.3, rtol=1e-14)  # sigma_w^2 C K = 2


def test_2d_corner_edge_interior_taps() -> None:
    layer = Conv(3, 3, init="lecun_normal")  # sigma_w^2 C_in K = 1 with a full window
    out = layer.field_forward(_iid_field((5, 4, 4), 1.0, cov=False))
    expected = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]) / 9
    np.testing.assert_allclose(out.second, expected, rtol=1e-14)
    assert out.cov is None


def test_backward_hand_derivation_stride_2() -> None:
    # valid, k=3, s=2 on L=7: output t reads 2t, 2t+1, 2t+2: input 2 and 4 are read twice
    layer = Conv(6, 3, stride=2, padding="valid", init="he_normal", groups=2)
    f_in = _iid_field((4, 7), 1.0)
    f_out = layer.field_forward(f_in)
    g = layer.field_backward(GradField((6, 3), 0, np.array([1.0, 2.0, 3.0])), f_in, f_out)
    sw2 = 2.0 / (2 * 3)  # fan_in = C_in/g * k = 6
    np.testing.assert_allclose(g.second, sw2 * 3 * np.array([1, 1, 3, 2, 5, 3, 3]), rtol=1e-14)
    assert g.cov is None


# --- Monte Carlo from scratch -------------------------------------------------------------------

def _correlated_input(rng: np.random.Generator, n: int, c: int, mean: np.ndarray,
                      chol: np.ndarray) -> np.ndarray:
    """(n, c, P) samples: channels i.i.d., positions N(mean, L L^T)."""
    return mean + rng.standard_normal((n, c, len(mean))) @ chol.T


def _conv_loops(x: np.ndarray, w: np.ndarray, stride: tuple[int, ...], pad: tuple[int, ...],
                dil: tuple[int, ...], groups: int = 1) -> np.ndarray:
    """Independent convolution: zero-pad with np.pad, then explicit loops over output positions
    and taps (vectorised over the leading replicate axis).  x (n, C_in, *sp), w (n, C_out,
    C_in/g, *k)."""
    n, c_in, *sp = x.shape
    c_out, cg, *k = w.shape[1:]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    out_sp = [(s_ + 2 * p - d * (kk - 1) - 1) // st + 1 for s_, p, d, kk, st in zip(sp, pad, dil, k, stride)]
    z = np.zeros((n, c_out, *out_sp))
    per = c_out // groups
    for o in range(c_out):
        gi = o // per
        for t in np.ndindex(*out_sp):
            for j in np.ndindex(*k):
                idx = tuple(tt * st + jj * d for tt, st, jj, d in zip(t, stride, j, dil))
                for i in range(cg):
                    z[(slice(None), o, *t)] += w[(slice(None), o, i, *j)] * xp[(slice(None), gi * cg + i, *idx)]
    return z


def test_forward_cov_1d_vs_monte_carlo() -> None:
    rng = np.random.default_rng(11)
    L, c_in, c_out, k, b2 = 6, 3, 2, 3, 0.3
    mean = np.linspace(-0.5, 0.8, L)
    chol = np.linalg.cholesky(0.6 * np.exp(-np.subtract.outer(np.arange(L), np.arange(L)) ** 2 / 4)
                              + 0.2 * np.eye(L))
    second = chol @ chol.T + np.outer(mean, mean)
    layer = Conv(c_out, k, padding=1, init="he_normal", bias_variance=b2)
    pred = layer.field_forward(Field((c_in, L), 0, mean, np.diag(second), second))
    n = 40000
    x = _correlated_input(rng, n, c_in, mean, chol)
    w = rng.standard_normal((n, c_out, c_in, k)) * np.sqrt(2.0 / (c_in * k))
    z = _conv_loops(x, w, (1,), (1,), (1,)) + rng.standard_normal((n, c_out, 1)) * np.sqrt(b2)
    prods = np.einsum("nct,ncs->nts", z, z) / c_out
    mc, se = prods.mean(axis=0), prods.std(axis=0) / np.sqrt(n)
    _within(mc, se, pred.cov)
    np.testing.assert_allclose(pred.second, np.diag(pred.cov))


def test_forward_2d_strided_grouped_dilated_vs_monte_carlo() -> None:
    rng = np.random.default_rng(12)
    c_in, c_out, sp = 4, 4, (5, 6)
    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
    layer = Conv(c_out, init="lecun_uniform", **kw)
    p = int(np.prod(sp))
    mean = rng.uniform(0, 1, p)
    a = rng.standard_normal((p, p)) / np.sqrt(p)
    chol = np.linalg.cholesky(a @ a.T + 0.1 * np.eye(p))
    second = chol @ chol.T + np.outer(mean, mean)
    pred = layer.field_forward(Field((c_in, *sp), 0, mean.reshape(sp), np.diag(second).reshape(sp), second))
    n = 20000
    x = _correlated_input(rng, n, c_in, mean, chol).reshape(n, c_in, *sp)
    bound = np.sqrt(3.0 / (2 * 6))  # lecun_uniform: variance 1/fan_in, fan_in = (4/2) * 6
    w = rng.uniform(-bound, bound, (n, c_out, 2, 3, 2))
    z = _conv_loops(x, w, (2, 1), (1, 1), (1, 2), groups=2).reshape(n, c_out, -1)
    prods = np.einsum("nct,ncs->nts", z, z) / c_out
    mc, se = prods.mean(axis=0), prods.std(axis=0) / np.sqrt(n)
    _within(mc, se, pred.cov)


def test_backward_cov_vs_monte_carlo() -> None:
    # g_in = W^T g: the adjoint of the loop convolution applied to i.i.d. N(0, G) output gradients
    rng = np.random.default_rng(13)
    c_in, c_out, L, k = 2, 3, 7, 3
    layer = Conv(c_out, k, stride=2, padding=1, init="he_normal")
    f_in = _iid_field((c_in, L), 1.0)
    f_out = layer.field_forward(f_in)
    lo = f_out.size
    gcov = 0.5 * np.eye(lo) + 0.5 * np.exp(-np.abs(np.subtract.outer(np.arange(lo), np.arange(lo))))
    pred = layer.field_backward(GradField((c_out, lo), 0, np.diag(gcov), gcov), f_in, f_out)
    n = 40000
    w = rng.standard_normal((n, c_out, c_in, k)) * np.sqrt(2.0 / (c_in * k))
    g = rng.standard_normal((n, c_out, lo)) @ np.linalg.cholesky(gcov).T
    gin = np.zeros((n, c_in, L + 2))  # padded input; gradient at x_s = sum over (t, j) reading s
    for t in range(lo):
        for j in range(k):
            gin[:, :, 2 * t + j] += np.einsum("no,noi->ni", g[:, :, t], w[:, :, :, j])
    gin = gin[:, :, 1:-1]
    prods = np.einsum("nct,ncs->nts", gin, gin) / c_in
    mc, se = prods.mean(axis=0), prods.std(axis=0) / np.sqrt(n)
    _within(mc, se, pred.cov)
    np.testing.assert_allclose(pred.second, np.diag(pred.cov))


# --- sampling: the MC engine's conv against independent implementations ------------------------

@pytest.mark.parametrize("kw, shape", [
    (dict(kernel_size=3, padding=1), (3, 8)),
    (dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=3), (3, 5, 6)),
])
def test_mc_forward_matches_loops_and_backward_is_the_adjoint(kw: dict, shape: tuple) -> None:
    rng = np.random.default_rng(14)
    layer = Conv(6, bias_variance=0.0, **kw)
    w, b, win = layer.mc_draw(rng, shape, 2, np.float64)
    x = rng.standard_normal((2, 3, *shape))
    y, cache = layer.mc_forward((w, b, win), x)
    nd = len(shape) - 1
    ex = lambda v: v if isinstance(v, tuple) else (v,) * nd  # noqa: E731
    for r in range(2):
        ref = _conv_loops(x[r], np.broadcast_to(w[r], (3, *w.shape[1:])), ex(kw.get("stride", 1)),
                          ex(kw["padding"]), ex(kw.get("dilation", 1)), kw.get("groups", 1))
        np.testing.assert_allclose(y[r], ref, rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    gx = layer.mc_backward((w, b, win), cache, gy)
    # <g, conv(x)> = <conv^T(g), x> for every replicate and sample
    np.testing.assert_allclose((gy * y).reshape(2, 3, -1).sum(-1),
                               (gx * x).reshape(2, 3, -1).sum(-1), rtol=1e-10)


def test_mc_forward_matches_scipy_correlate_same() -> None:
    rng = np.random.default_rng(15)
    layer = Conv(1, 5)
    w, b, win = layer.mc_draw(rng, (1, 12), 1, np.float64)
    x = rng.standard_normal((1, 1, 1, 12))
    y, _ = layer.mc_forward((w, b, win), x)
    np.testing.assert_allclose(y[0, 0, 0], signal.correlate(x[0, 0, 0], w[0, 0, 0], mode="same"),
                               rtol=1e-12, atol=1e-12)


def test_mc_draw_weight_variance_for_schemes() -> None:
    rng = np.random.default_rng(16)
    for init in ("he_uniform", "xavier_normal", "orthogonal"):
        layer = Conv(8, 3, init=init, groups=2)
        w, _, _ = layer.mc_draw(rng, (4, 5), 400, np.float64)
        assert w.shape == (400, 8, 2, 3)
        v = layer.weight_variance((4, 5))
        est = np.mean(w**2)
        # the entries' 4th moment is at most 3 v^2 (normal): standard error <= sqrt(2 v^2 / N)
        assert abs(est - v) <= Z * np.sqrt(2.0 / w.size) * v * (4 if init == "orthogonal" else 1)
    torch = pytest.importorskip("torch")
    t = torch.nn.Conv2d(4, 8, 3, groups=2)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(t.weight)
    assert Conv(8, 3, init="xavier_normal", groups=2).weight_variance((4, 5, 5)) == pytest.approx(
        2.0 / (fan_in + fan_out), rel=1e-14)


# --- validation -------------------------------------------------------------------------------

def test_validation_errors() -> None:
    with pytest.raises(InvalidArgument, match="did you mean 'same'"):
        Conv(4, 3, padding="sam")
    with pytest.raises(InvalidArgument, match="stride"):
        Conv(4, 3, stride=2)
    with pytest.raises(InvalidArgument, match="divisor of channels=4"):
        Conv(4, 3, groups=3)
    with pytest.raises(InvalidArgument, match="divisor of the input channels"):
        Conv(4, 3, groups=2).output_shape((3, 8))
    with pytest.raises(InvalidArgument, match="fits the padded input"):
        Conv(4, 9, padding="valid").output_shape((3, 8))
    with pytest.raises(InvalidArgument, match="a tuple of 1 int "):
        Conv(4, (3, 3)).output_shape((3, 8))
    with pytest.raises(InvalidArgument, match=r"\(C, L\) or \(C, H, W\)"):
        Conv(4, 3).output_shape((8,))
    with pytest.raises(InvalidArgumentType):
        Conv(4, True)
    with pytest.raises(InvalidArgument):
        Conv(4, 0)
    with pytest.raises(InvalidArgument, match="zero-mean"):
        Conv(4, 3, init=init_scheme("normal", mean=0.1))
    with pytest.raises(InvalidArgument, match="bias_variance"):
        Conv(4, 3, bias_variance=float("nan"))
    with pytest.raises(VarpropError, match="channel axis first"):
        Conv(4, 3).field_forward(Field((8, 3), -1, np.zeros(8), np.ones(8)))


def test_repr_and_hash() -> None:
    a = Conv(4, (3, 3), stride=2, padding=1)
    assert repr(a).startswith("Conv(4, (3, 3), stride=2, padding=1")
    assert a == Conv(4, (3, 3), stride=2, padding=1) and hash(a) == hash(Conv(4, (3, 3), stride=2, padding=1))


def test_mc_engine_agrees_in_law_with_the_field_rules() -> None:
    """mc_draw/mc_forward/mc_backward (the simulation engine's path) against field_forward and
    field_backward: per-position E z^2 over replicates and channels, 2-D, zero padding."""
    rng = np.random.default_rng(17)
    layer = Conv(4, 3, stride=1, padding=1, init="he_uniform", bias_variance=0.5, groups=2)
    shape = (4, 4, 5)
    f_in = _iid_field(shape, 1.5)
    f_out = layer.field_forward(f_in)
    r = 3000
    params = layer.mc_draw(rng, shape, r, np.float64)
    x = rng.standard_normal((r, 1, *shape)) * np.sqrt(1.5)
    y, cache = layer.mc_forward(params, x)
    per = np.mean(y**2, axis=(1, 2))  # (R, H, W): one value per network
    _within(per.mean(0), per.std(0) / np.sqrt(r), f_out.second)
    g_out = rng.standard_normal(y.shape)
    gx = layer.mc_backward(params, cache, g_out)
    pred = layer.field_backward(GradField(f_out.shape, 0, np.ones(f_out.positions)), f_in, f_out)
    per = np.mean(gx**2, axis=(1, 2))
    _within(per.mean(0), per.std(0) / np.sqrt(r), pred.second)


def test_field_steps_are_sympy_equations() -> None:
    steps = Conv(4, 3).field_steps()
    assert len(steps) == 3
    for sentence, eq in steps:
        assert isinstance(sentence, str) and isinstance(eq, sp.Eq)
