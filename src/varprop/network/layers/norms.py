r"""``LayerNorm(eps=1e-5)`` and ``RMSNorm(eps=1e-6)``: per-sample normalisation over the channels.

Both normalise each sample over its channel axis, separately at each position, with the affine
weight 1 and bias 0 they have at initialisation:

.. math::

    \text{LayerNorm:}\ y_i = \frac{x_i - \bar x}{\sqrt{\hat v + \epsilon}},\quad
    \hat v = \frac1n \sum_i (x_i - \bar x)^2 \ \text{(biased)}; \qquad
    \text{RMSNorm:}\ y_i = \frac{x_i}{\sqrt{\hat Q + \epsilon}},\quad \hat Q = \frac1n \sum_i x_i^2

(Ba, Kiros & Hinton 2016, "Layer normalization"; Zhang & Sennrich 2019, "Root mean square layer
normalization").  The channel axis follows the input's layout: a vector ``(n,)`` is normalised
over all its units; a sequence ``(T, n)`` over the ``n`` features at each time step (PyTorch's
``nn.LayerNorm(n)``, channels last); an image ``(C, H, W)`` over the ``C`` channels at each pixel
(the "channels-first" LayerNorm of ConvNeXt).  A 2-D input is read as ``(T, n)``: a ``(C, L)``
1-D convolution output (channels first) is refused.

Mean-field rule (infinite width)
--------------------------------
With :math:`m_t, q_t` the mean and second moment of a channel at position :math:`t` and
:math:`d_t = q_t - m_t^2` (LayerNorm) or :math:`d_t = q_t` (RMSNorm), the sample statistic
(:math:`\hat v` or :math:`\hat Q`) converges to :math:`d_t` as the number of channels :math:`n \to
\infty` (law of large numbers over exchangeable channels), so the layer is the affine map
:math:`y = (x - c_t)/\sqrt{d_t + \epsilon}` with :math:`c_t = m_t` (LayerNorm) or :math:`0`
(RMSNorm) and

.. math::

    E y_t = \frac{m_t - c_t}{\sqrt{d_t + \epsilon}}, \qquad
    E y_t^2 = \frac{d_t}{d_t + \epsilon}, \qquad
    E y_t y_{t'} = \frac{E x_t x_{t'} - c_t m_{t'} - m_t c_{t'} + c_t c_{t'}}
                        {\sqrt{(d_t + \epsilon)(d_{t'} + \epsilon)}},

exact in :math:`\epsilon`; the between-sample moment likewise; a Gaussian input stays Gaussian.
"Infinite width" includes the fan-in of the layer feeding the norm: the statistic is
deterministic only if that layer averages over many inputs.  After a first convolution on a
3-channel image (fan-in 27) the per-pixel variance fluctuates between samples and, by Jensen,
:math:`E\,\hat v/(\hat v + \epsilon)` is below the rule: measured -3% for ``Conv(128, 3),
LayerNorm(0.3)`` on ``(3, 6, 6)`` inputs, -0.6% with 48 input channels.
At finite width the per-sample identity :math:`\frac1n \sum_i y_i^2 = \hat d/(\hat d + \epsilon)`
holds exactly.

Backward: the Jacobian is :math:`J = (I - \tfrac1n \mathbf 1 \mathbf 1^\top - \tfrac1n y y^\top)
/ \hat s` (LayerNorm; RMSNorm without the :math:`\mathbf 1 \mathbf 1^\top` term), :math:`\hat s =
\sqrt{\hat d + \epsilon}`, symmetric.  For a gradient :math:`g` independent of :math:`x` (gradient
independence) with i.i.d. zero-mean entries, :math:`E |J g|^2 = E g^2\,(n - 1 - 2r + r^2)/\hat s^2`
(LayerNorm; RMSNorm: :math:`n - 2r + r^2`), :math:`r = \hat d / (\hat d + \epsilon)`: the rank-one
corrections are :math:`O(1/n)` and at infinite width

.. math::

    E g_{x,t}^2 = \frac{E g_{y,t}^2}{d_t + \epsilon}, \qquad
    E g_{x,t} g_{x,t'} = \frac{E g_{y,t} g_{y,t'}}{\sqrt{(d_t + \epsilon)(d_{t'} + \epsilon)}},

and the between-sample moment of the gradient is divided by :math:`d_t + \epsilon` too.  At
finite width the sample normaliser fluctuates and :math:`E[1/\hat d] > 1/d`: for i.i.d. Gaussian
channels and :math:`\epsilon \to 0`, :math:`E g_x^2 = E g_y^2\, \frac{n-2}{(n-3)\, v}`
(LayerNorm) and :math:`E g_y^2\, \frac{n-1}{(n-2)\, Q}` (RMSNorm), 3% above the rule at
:math:`n = 32` channels (the rule is the :math:`n \to \infty` limit).  When the statistic
also fluctuates between samples (an input :math:`z = W a` whose :math:`\overline{a^2}` varies,
with kurtosis :math:`\kappa` of the entries of :math:`a`), :math:`E[1/\hat d]` grows by a further
:math:`\approx (\kappa - 1)/n`: for ``Dense, relu, Dropout(0.2), Dense, LayerNorm`` the measured
gradient at the LayerNorm input is 44% above the rule at :math:`n = 32`, 9% at 128, 1.5% at 512.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.validation import check_nonnegative_real, fail
from varprop.errors import VarpropError
from varprop.network.field import Field, GradField, Shape
from varprop.network.layers.base import Layer

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): only the symbolic derivations need it
sp = lazy_module("sympy")

__all__ = ["LayerNorm", "RMSNorm"]


def _layout_axis(input_shape: Shape) -> int:
    """The channel axis of a norm's input: last for ``(n,)`` and ``(T, n)``, first for ``(C, H, W)``."""
    return 0 if len(input_shape) == 3 else -1


@dataclass(frozen=True, init=False)
class _ChannelNorm(Layer):
    r"""A per-sample normalisation over the channel axis (see the module docstring); ``centred``
    says whether the channel mean is subtracted (LayerNorm) or not (RMSNorm)."""

    eps: float = field(default=1e-5)
    centred = True
    default_eps = 1e-5
    #: Its rule reads the field's channel axis: it cannot act on a flattened field (whose layout
    #: is the tensor's before ``Flatten``), which the general walk refuses.
    reads_channel_layout = True

    def __init__(self, eps: float | None = None) -> None:
        value = type(self).default_eps if eps is None else eps
        object.__setattr__(self, "eps", check_nonnegative_real("eps", value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps!r})"

    def output_shape(self, input_shape: Shape) -> Shape:
        if not 1 <= len(input_shape) <= 3:
            raise fail("input_shape", input_shape, f"a shape (n,), (T, n) or (C, H, W) for {self!r}")
        if input_shape[_layout_axis(input_shape)] < 2 and self.centred:
            raise fail("input_shape", input_shape, f"at least 2 channels for {self!r} (one channel "
                       "normalises to 0)")
        return input_shape

    def channel_axis_for(self, input_shape: Shape) -> int | None:
        return _layout_axis(input_shape)

    # --- mean field ---------------------------------------------------------------------------
    def field_exact(self, field_in: Field) -> bool:
        r"""``False``: the rule is exact in the limit of infinitely many channels (at finite width
        only the per-sample identity :math:`\frac1n\sum_i y_i^2 = \hat d/(\hat d + \epsilon)` is)."""
        return False

    def _check_layout(self, field: Field) -> None:
        axis = _layout_axis(field.shape) % len(field.shape)
        if field.channel_axis % len(field.shape) != axis:
            raise VarpropError(
                f"{self!r} normalises the channel axis {axis} of an input of shape {field.shape} "
                f"(vectors and (T, n) sequences: the last axis; (C, H, W) images: the first), but "
                f"its input holds channels on axis {field.channel_axis} (e.g. a (C, L) 1-D "
                "convolution output): not supported")

    def _statistic(self, field: Field) -> tuple[np.ndarray, np.ndarray]:
        """``(c, d + eps)`` per position: the centring and the normaliser's square."""
        self._check_layout(field)
        c = field.mean if self.centred else np.zeros_like(field.mean)
        d = field.variance if self.centred else field.second
        denom = d + self.eps
        if np.any(denom <= 0.0) or not np.all(np.isfinite(denom)):
            raise VarpropError(f"{self!r}: the channel statistic plus eps is 0 or not finite at "
                               "some position (a constant input with eps=0 divides by zero)")
        return c, denom

    def field_forward(self, field: Field) -> Field:
        r""":math:`E y = (m - c)/\sqrt{d + \epsilon}`, :math:`E y^2 = d/(d + \epsilon)`,
        covariances and between-sample moments centred by :math:`c` and scaled likewise."""
        c, denom = self._statistic(field)
        m = field.mean
        root = np.sqrt(denom)
        d = field.variance if self.centred else field.second
        cov = None
        if field.cov is not None:
            cf, mf, rf = c.reshape(-1), m.reshape(-1), root.reshape(-1)
            cov = (field.cov - np.outer(cf, mf) - np.outer(mf, cf) + np.outer(cf, cf)) / np.outer(rf, rf)
            np.fill_diagonal(cov, d.reshape(-1) / denom.reshape(-1))
        bc = None
        if field.batch_cross is not None:
            bc = (field.batch_cross - 2 * c * m + c * c) / denom
        bcov = None  # between samples across positions: centred and scaled as cov
        if field.batch_cov is not None:
            cf, mf, rf = c.reshape(-1), m.reshape(-1), np.sqrt(denom).reshape(-1)
            bcov = ((field.batch_cov - np.outer(cf, mf) - np.outer(mf, cf) + np.outer(cf, cf))
                    / np.outer(rf, rf))
        # a new Field (not ``with_``): nothing else the input carried describes the output
        return Field(field.shape, field.channel_axis, (m - c) / root, d / denom, cov, bc,
                     gaussian=field.gaussian, approximations=field.approximations, batch_cov=bcov)

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        r""":math:`E g_x^2 = E g_y^2 / (d + \epsilon)` (infinite width, gradient independence)."""
        _, denom = self._statistic(field_in)
        cov = None
        if grad.cov is not None:
            r = np.sqrt(denom).reshape(-1)
            cov = grad.cov / np.outer(r, r)
        bc = None if grad.batch_cross is None else grad.batch_cross / denom
        bcov = None
        if grad.batch_cov is not None:
            r = np.sqrt(denom).reshape(-1)
            bcov = grad.batch_cov / np.outer(r, r)
        return GradField(field_in.shape, field_in.channel_axis, grad.second / denom, cov, bc,
                         batch_cov=bcov)

    def field_steps(self) -> list[tuple[str, object]]:
        m, q, eps, g_y = sp.symbols("m q epsilon G_y", real=True)
        m_y, q_y, g_x = sp.symbols("m_y q_y G_x", real=True)
        d = q - m**2 if self.centred else q
        c = m if self.centred else 0
        what = "variance q - m^2" if self.centred else "mean square q"
        return [
            (f"Forward: at infinite width the sample {what} over the channels is deterministic, so "
             "the layer is an affine map of its input; its mean:", sp.Eq(m_y, (m - c) / sp.sqrt(d + eps))),
            ("Forward second moment, exact in eps:", sp.Eq(q_y, d / (d + eps))),
            ("Backward (infinite width; the rank-one corrections of the Jacobian are O(1/n)):",
             sp.Eq(g_x, g_y / (d + eps))),
        ]

    # --- sampling -----------------------------------------------------------------------------
    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> object:
        """No random parameters (affine weight 1, bias 0 at initialisation): the channel axis."""
        self.output_shape(input_shape)
        return _layout_axis(input_shape)

    def mc_forward(self, params: object, x: np.ndarray) -> tuple[np.ndarray, object]:
        axis = int(params)  # type: ignore[call-overload]
        axis = axis if axis < 0 else axis + 2  # leading (replicates, batch)
        if self.centred:
            x = x - x.mean(axis=axis, keepdims=True)
        s = np.sqrt(np.mean(x * x, axis=axis, keepdims=True) + x.dtype.type(self.eps))
        y = x / s
        return y, (y, s, axis)

    def mc_backward(self, params: object, cache: object, grad: np.ndarray) -> np.ndarray:
        r""":math:`J^\top g = (g - \bar g - y\, \overline{y g}) / \hat s` (no :math:`\bar g` for
        RMSNorm)."""
        y, s, axis = cache  # type: ignore[misc]
        g = grad - grad.mean(axis=axis, keepdims=True) if self.centred else grad
        return (g - y * np.mean(y * grad, axis=axis, keepdims=True)) / s


@dataclass(frozen=True, init=False)
class LayerNorm(_ChannelNorm):
    r"""Layer normalisation :math:`y = (x - \bar x)/\sqrt{\hat v + \epsilon}` over the channels
    (biased :math:`\hat v`; affine weight 1, bias 0 at initialisation).

    Mean field (infinite width): :math:`E y = 0`, :math:`E y^2 = v/(v + \epsilon)` with
    :math:`v = q - m^2` of the input, exact in :math:`\epsilon`; backward :math:`E g_x^2 = E g_y^2
    / (v + \epsilon)`.  See :mod:`varprop.network.layers.norms` (Ba, Kiros & Hinton 2016).

    Parameters
    ----------
    eps : float
        :math:`\epsilon \ge 0` added to the variance (PyTorch's default ``1e-5``).
    """

    kind = "layernorm"
    centred = True
    default_eps = 1e-5

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__(eps)


@dataclass(frozen=True, init=False)
class RMSNorm(_ChannelNorm):
    r"""Root-mean-square normalisation :math:`y = x/\sqrt{\hat Q + \epsilon}`,
    :math:`\hat Q = \frac1n \sum_i x_i^2` over the channels (weight 1 at initialisation).

    Mean field (infinite width): :math:`E y = m/\sqrt{Q + \epsilon}`, :math:`E y^2 = Q/(Q +
    \epsilon)` with :math:`Q = E x^2`, exact in :math:`\epsilon`; backward :math:`E g_x^2 = E g_y^2
    / (Q + \epsilon)`.  See :mod:`varprop.network.layers.norms` (Zhang & Sennrich 2019).

    Parameters
    ----------
    eps : float
        :math:`\epsilon \ge 0` added to the mean square (default ``1e-6``).
    """

    kind = "rmsnorm"
    centred = False
    default_eps = 1e-6

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__(eps)
