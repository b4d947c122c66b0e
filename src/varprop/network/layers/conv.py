r"""``Conv(channels, kernel_size, ...)``: 1-D and 2-D convolution, the mean-field rule per position.

For input :math:`x` of shape :math:`(C_{in}, *\text{spatial})` and :math:`g` groups, output channel
:math:`c` at position :math:`t` is

.. math::

    z_{c,t} = \sum_{c' \in \text{group}(c)} \sum_{j} W_{c c' j}\, x_{c', \mathrm{in}(t, j)} + b_c,

with the tap map :math:`\mathrm{in}(t, j)` of :mod:`varprop.network.layers.spatial` (a padding
zero where it leaves the input).  The weights are i.i.d. (uncorrelated for ``orthogonal``)
zero-mean with the init scheme's variance :math:`\sigma_w^2` for PyTorch's fans
:math:`n_{in} = (C_{in}/g) \prod k`, :math:`n_{out} = C_{out} \prod k` (PyTorch divides only the fan-in by the groups); biases
:math:`N(0, \sigma_b^2)`, one per channel shared by every position.

Forward (every cross term has a zero-mean weight factor, so for any input law):

.. math::

    E z_t^2 &= \sigma_w^2 \frac{C_{in}}{g} \sum_j E x^2_{\mathrm{in}(t,j)} + \sigma_b^2,\\
    E z_t z_{t'} &= \sigma_w^2 \frac{C_{in}}{g} \sum_j E x_{\mathrm{in}(t,j)} x_{\mathrm{in}(t',j)}
        + \sigma_b^2,

(a padding tap contributes 0), the same for the between-sample moments of a batch, at equal
positions (``batch_cross``) and between positions (``batch_cov``, :math:`E z_{b,t} z_{b',t'}`,
when tracked) -- the weights and biases are shared by the samples --, and :math:`E z = 0`.  Exact at every width for second
moments; the output is Gaussian in the limit :math:`C_{in} \to \infty` (central limit theorem in
the channels).  Zero padding makes the edges differ: a position with :math:`m` taps in the
padding has :math:`m` fewer terms (for i.i.d. input, :math:`E z_t^2 = \sigma_w^2 (C_{in}/g)
(K - m) E x^2`), which the rule keeps per position instead of assuming a full receptive field.

Backward (gradient independence: :math:`W` independent of the output gradient :math:`\delta`):

.. math::

    E (\partial x)_s^2 = \sigma_w^2 \frac{C_{out}}{g} \sum_{(t, j):\, \mathrm{in}(t,j) = s}
        E \delta_t^2, \qquad
    E (\partial x)_s (\partial x)_{s'} = \sigma_w^2 \frac{C_{out}}{g} \sum_j
        \sum_{t:\, \mathrm{in}(t,j)=s}\ \sum_{t':\, \mathrm{in}(t',j)=s'} E \delta_t \delta_{t'}.

These are the spatial covariance rules of Neural Tangents' ``stax.Conv`` (Novak et al. 2019,
"Bayesian deep convolutional networks with many channels are Gaussian processes"; Xiao et al.
2018, "Dynamical isometry and a mean field theory of CNNs"), in PyTorch's standard
parameterisation and with per-position zero padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.validation import (
    check_choice,
    check_nonnegative_real,
    check_width,
    fail,
)
from varprop.components.scheme import weight_moments
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.errors import VarpropError
from varprop.network.field import Field, GradField, Shape
from varprop.network.layers.base import Layer
from varprop.network.layers.spatial import (
    Windows,
    check_size_tuple,
    expand,
    output_size,
    sliding_windows,
)

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): only the symbolic derivations need it
sp = lazy_module("sympy")

__all__ = ["Conv"]

PADDINGS = ("same", "valid", "circular")


def check_spatial_input(layer: Layer, input_shape: Shape) -> tuple[int, tuple[int, ...]]:
    """``(C, spatial)`` of a ``(C, L)`` or ``(C, H, W)`` input; a clear error otherwise."""
    if len(input_shape) not in (2, 3):
        raise fail("input_shape", input_shape, f"(C, L) or (C, H, W) for {layer!r} (channels first)")
    return input_shape[0], tuple(input_shape[1:])


def require_channels_first(layer: Layer, field: Field | GradField) -> None:
    """A clear error if the engine hands a spatial layer a field not laid out channels first."""
    if len(field.shape) not in (2, 3) or field.channel_axis % len(field.shape) != 0:
        raise VarpropError(f"{layer!r} needs a (C, L) or (C, H, W) field with the channel axis "
                           f"first, got shape {field.shape} with channel axis {field.channel_axis}")


@dataclass(frozen=True, init=False)
class Conv(Layer):
    r"""Convolution over ``(C, L)`` or ``(C, H, W)`` inputs (channels first, as PyTorch).

    Rule (module docstring): :math:`E z_t^2 = \sigma_w^2 (C_{in}/g) \sum_j E x^2_{\mathrm{in}(t,j)}
    + \sigma_b^2` per output position, padding taps contributing 0; covariances between positions
    and between samples alike; backward :math:`E(\partial x)_s^2 = \sigma_w^2 (C_{out}/g)
    \sum_{\mathrm{in}(t,j)=s} E\delta_t^2`.  Exact second moments at every width (zero-mean
    weights, any input law); Gaussian output at infinite width; backward under gradient
    independence.

    Parameters
    ----------
    channels : int
        Output channels :math:`C_{out}`.
    kernel_size, stride, dilation : int or tuple of int
        One value for every spatial dimension, or one per dimension.
    padding : "same", "valid", "circular", int or tuple of int
        ``"same"``: zeros, output size = input size, stride 1 only, left pad ``total // 2`` of
        ``total = d (k - 1)`` (PyTorch); ``"valid"``: none; ``"circular"``: the same pads, wrapped
        around (any stride: output size :math:`\lceil L/s \rceil`); an int/tuple: that many zeros
        on both sides.
    init : str or InitScheme
        Zero-mean weight scheme, evaluated at PyTorch's fans :math:`n_{in} = (C_{in}/g)\prod k`,
        :math:`n_{out} = C_{out}\prod k` (``orthogonal``: a Haar matrix of shape
        :math:`C_{out} \times n_{in}`, as ``torch.nn.init.orthogonal_`` on a conv weight).
    bias_variance : float
        :math:`\sigma_b^2` (0: no bias).
    groups : int
        Divides both :math:`C_{in}` and ``channels``.
    """

    channels: int
    kernel_size: int | tuple[int, ...]
    stride: int | tuple[int, ...]
    padding: str | int | tuple[int, ...]
    init: InitScheme
    bias_variance: float
    dilation: int | tuple[int, ...]
    groups: int
    kind = "conv"

    def __init__(self, channels: int, kernel_size: int | tuple[int, ...], *,
                 stride: int | tuple[int, ...] = 1, padding: str | int | tuple[int, ...] = "same",
                 init: InitScheme | str = "lecun_normal", bias_variance: float = 0.0,
                 dilation: int | tuple[int, ...] = 1, groups: int = 1) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "channels", check_width("channels", channels))
        setattr_(self, "kernel_size", check_size_tuple("kernel_size", kernel_size))
        setattr_(self, "stride", check_size_tuple("stride", stride))
        setattr_(self, "dilation", check_size_tuple("dilation", dilation))
        if isinstance(padding, str):
            padding = check_choice("padding", padding, PADDINGS)
            if padding == "same" and self.stride not in (1, (1,), (1, 1)):
                raise fail("padding", padding, f"'valid', 'circular' or an int with stride="
                           f"{stride!r} ('same' needs stride 1, as in PyTorch)")
        else:
            padding = check_size_tuple("padding", padding, zero=True)
        setattr_(self, "padding", padding)
        scheme = resolve_scheme(init)
        if not scheme.is_zero_mean:
            raise fail("init", scheme, "a zero-mean init scheme (the general engine assumes "
                       "zero-mean weights outside plain MLPs)")
        setattr_(self, "init", scheme)
        setattr_(self, "bias_variance", check_nonnegative_real("bias_variance", bias_variance))
        groups = check_width("groups", groups)
        if self.channels % groups:
            raise fail("groups", groups, f"a divisor of channels={self.channels}")
        setattr_(self, "groups", groups)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k, default in
                        (("stride", 1), ("padding", "same"), ("dilation", 1), ("groups", 1))
                        if getattr(self, k) != default)
        bias = f", bias_variance={self.bias_variance!r}" if self.bias_variance else ""
        return f"Conv({self.channels}, {self.kernel_size!r}{extra}, init={self.init!r}{bias})"

    # --- geometry -----------------------------------------------------------------------------
    def _pads(self, spatial: tuple[int, ...], kernel: tuple[int, ...],
              dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        if isinstance(self.padding, str):
            if self.padding == "valid":
                return tuple((0, 0) for _ in spatial)
            return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                         for k, d in zip(kernel, dilation))
        return tuple((p, p) for p in expand("padding", self.padding, len(spatial)))

    def windows(self, input_shape: Shape) -> Windows:
        """The tap map of this layer on ``input_shape`` (validated; cached)."""
        return _windows(self, tuple(input_shape))

    def output_shape(self, input_shape: Shape) -> Shape:
        c_in, _ = check_spatial_input(self, input_shape)
        if c_in % self.groups:
            raise fail("groups", self.groups, f"a divisor of the input channels C_in={c_in} "
                       f"(input_shape={tuple(input_shape)})")
        return (self.channels, *self.windows(input_shape).out_spatial)

    def channel_axis_for(self, input_shape: Shape) -> int | None:
        return 0

    def fans(self, input_shape: Shape) -> tuple[int, int]:
        """PyTorch's ``(fan_in, fan_out)``: :math:`((C_{in}/g)\\prod k, C_{out}\\prod k)`
        (``torch.nn.init._calculate_fan_in_and_fan_out`` on the ``(C_out, C_in/g, *k)`` weight:
        the groups divide the fan-in only)."""
        c_in, spatial = check_spatial_input(self, input_shape)
        k = math.prod(expand("kernel_size", self.kernel_size, len(spatial)))
        return c_in // self.groups * k, self.channels * k

    def _law_fans(self, input_shape: Shape) -> tuple[int, int]:
        """The fans at which the weight law is evaluated: PyTorch's, except for a non-i.i.d.
        (orthogonal) scheme, whose matrix is ``channels x fan_in``."""
        fan_in, fan_out = self.fans(input_shape)
        return (fan_in, fan_out) if self.init.is_iid else (fan_in, self.channels)

    def weight_variance(self, input_shape: Shape) -> float:
        r""":math:`\sigma_w^2` of the entries for this input shape."""
        return weight_moments(self.init, *self._law_fans(input_shape))[1]

    # --- mean field ---------------------------------------------------------------------------
    def field_forward(self, field: Field) -> Field:
        require_channels_first(self, field)
        self.output_shape(field.shape)
        win = self.windows(field.shape)
        s = self.weight_variance(field.shape) * (field.channels // self.groups)
        b2 = self.bias_variance
        second = s * win.forward_diag(field.second) + b2
        cov = None if field.cov is None else s * win.forward_cov(field.cov) + b2
        cross = (None if field.batch_cross is None
                 else s * win.forward_diag(field.batch_cross) + b2)
        # between two samples across positions: the same sum over tap pairs, the bias shared
        bcov = None if field.batch_cov is None else s * win.forward_cov(field.batch_cov) + b2
        shape = (self.channels, *win.out_spatial)
        return Field(shape, 0, np.zeros(win.out_spatial), second.reshape(win.out_spatial), cov,
                     None if cross is None else cross.reshape(win.out_spatial), gaussian=True,
                     approximations=field.approximations, batch_cov=bcov)

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        require_channels_first(self, field_in)
        win = self.windows(field_in.shape)
        s = self.weight_variance(field_in.shape) * (self.channels // self.groups)
        second = s * win.backward_diag(grad.second)
        cov = None if grad.cov is None else s * win.backward_cov(grad.cov)
        # between two samples of a batch (one W for both): the same sum over the taps
        bc = (None if grad.batch_cross is None
              else (s * win.backward_diag(grad.batch_cross)).reshape(win.in_spatial))
        bcov = None if grad.batch_cov is None else s * win.backward_cov(grad.batch_cov)
        return GradField(field_in.shape, 0, second.reshape(win.in_spatial), cov, bc, batch_cov=bcov)

    def field_exact(self, field_in: Field) -> bool:
        """Second moments exact at every width for zero-mean symmetric i.i.d. weights (any input
        law); the backward rule under gradient independence, as for ``Dense``."""
        s = self.init
        return bool(s.is_zero_mean and s.is_symmetric and s.is_iid)

    def mc_parameter_count(self, input_shape: Shape) -> int:
        return self.channels * (self.fans(input_shape)[0] + (self.bias_variance > 0))

    def mc_workspace(self, input_shape: Shape) -> int:
        """Temporary entries per sample of :meth:`mc_forward`/:meth:`mc_backward`: the
        ``(C_in, P_out, K)`` patches and the backward's patch gradients."""
        kernel = math.prod(expand("kernel_size", self.kernel_size, len(input_shape) - 1))
        p_out = math.prod(self.output_shape(input_shape)[1:])
        return 2 * input_shape[0] * p_out * kernel

    def field_steps(self) -> list[tuple[str, object]]:
        t, tp, s, j = sp.symbols("t t' s j", integer=True)
        K, c_in, c_out, g = sp.symbols("K C_in C_out g", positive=True, integer=True)
        sw2, sb2 = sp.symbols("sigma_w^2 sigma_b^2", nonnegative=True)
        q_in, q_out = sp.Function("q_in"), sp.Function("q")
        k_in, k_out = sp.Function("K_in"), sp.Function("K")
        g_in, g_out = sp.Function("G_in"), sp.Function("G")
        idx = sp.Function("in")
        hit = sp.Function("1")
        return [
            ("Forward, per output position t (padding taps contribute 0):",
             sp.Eq(q_out(t), sw2 * c_in / g * sp.Sum(q_in(idx(t, j)), (j, 1, K)) + sb2)),
            ("Covariance between output positions t, t' (the same tap j of both windows):",
             sp.Eq(k_out(t, tp), sw2 * c_in / g
                   * sp.Sum(k_in(idx(t, j), idx(tp, j)), (j, 1, K)) + sb2)),
            ("Backward, per input position s (every output position and tap that reads s):",
             sp.Eq(g_in(s), sw2 * c_out / g * sp.Sum(sp.Sum(hit(sp.Eq(idx(t, j), s)) * g_out(t),
                                                            (t, 1, sp.Symbol("P_out"))),
                                                     (j, 1, K)))),
        ]

    # --- sampling -----------------------------------------------------------------------------
    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> tuple[np.ndarray, np.ndarray | None, Windows]:
        """``(W, b, windows)``: ``W`` of shape ``(R, C_out, C_in/g, *k)``, ``b`` ``(R, C_out)``."""
        self.output_shape(input_shape)
        dt = np.dtype(dtype)
        c_in, spatial = check_spatial_input(self, input_shape)
        kernel = expand("kernel_size", self.kernel_size, len(spatial))
        law_in, law_out = self._law_fans(input_shape)
        w = self.init.law(law_in, law_out).sample(rng, (replicates, self.channels, law_in), dt)
        w = w.reshape(replicates, self.channels, c_in // self.groups, *kernel)
        b = None
        if self.bias_variance > 0:
            b = (rng.standard_normal((replicates, self.channels)) * math.sqrt(self.bias_variance)
                 ).astype(dt)
        return w, b, self.windows(input_shape)

    def mc_forward(self, params: tuple, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        w, b, win = params
        r, batch, c_in = x.shape[:3]
        g = self.groups
        flat = x.reshape(r, batch, c_in, win.p_in)
        flat = np.concatenate([flat, np.zeros((r, batch, c_in, 1), x.dtype)], axis=-1)
        patches = flat[..., win.padded_taps]  # (R, B, C_in, P_out, K)
        patches = patches.reshape(r, batch, g, c_in // g, win.p_out, win.kernel)
        wg = w.reshape(r, g, self.channels // g, c_in // g, win.kernel)
        y = np.einsum("rgoik,rbgipk->rbgop", wg, patches, optimize=True)
        y = y.reshape(r, batch, self.channels, win.p_out)
        if b is not None:
            y = y + b[:, None, :, None]
        return y.reshape(r, batch, self.channels, *win.out_spatial), x.shape

    def mc_backward(self, params: tuple, cache: tuple, grad: np.ndarray) -> np.ndarray:
        w, _, win = params
        r, batch, c_in = cache[:3]
        g = self.groups
        gout = grad.reshape(r, batch, g, self.channels // g, win.p_out)
        wg = w.reshape(r, g, self.channels // g, c_in // g, win.kernel)
        gp = np.einsum("rgoik,rbgop->rbgipk", wg, gout, optimize=True)
        gp = gp.reshape(r, batch, c_in, win.p_out, win.kernel)
        gx = np.zeros((r, batch, c_in, win.p_in + 1), dtype=grad.dtype)
        for j in range(win.kernel):  # injective in t for each tap: no repeated index but the pad
            gx[..., win.padded_taps[:, j]] += gp[..., j]
        return gx[..., :-1].reshape(cache)


@lru_cache(maxsize=256)
def _windows(layer: Conv, input_shape: Shape) -> Windows:
    _, spatial = check_spatial_input(layer, input_shape)
    nd = len(spatial)
    kernel = expand("kernel_size", layer.kernel_size, nd)
    stride = expand("stride", layer.stride, nd)
    dilation = expand("dilation", layer.dilation, nd)
    pads = layer._pads(spatial, kernel, dilation)
    for n, k, st, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pads):
        if output_size(n, k, st, d, lo + hi) < 1:
            raise fail("kernel_size", layer.kernel_size,
                       f"a kernel whose dilated extent d(k-1)+1 = {d * (k - 1) + 1} fits the "
                       f"padded input ({n} + {lo + hi} padding) of input_shape={input_shape}")
    return sliding_windows(spatial, kernel, stride, dilation, pads,
                           circular=layer.padding == "circular")
