r"""Linear pooling and reshaping: ``AvgPool``, ``GlobalAvgPool``, ``Flatten``.

Average pooling is the linear map :math:`y_u = \frac1K \sum_{j} x_{w(u, j)}` within each
channel (window :math:`w(u, \cdot)` of :math:`K` positions).  It mixes positions, so its second
moment needs the second moments between positions, :math:`K_{s s'} = E x_s x_{s'}` (not zero
after a nonlinearity with non-zero mean such as ReLU, even for uncorrelated pre-activations, and
correlated by overlapping convolution windows and shared biases in general).  With :math:`A` the
``(P_in, P_out)`` averaging matrix:

.. math::

    E y = A^\top E x, \qquad E y_u y_{u'} = (A^\top K A)_{u u'}, \qquad
    E (\partial x)_s (\partial x)_{s'} = (A G A^\top)_{s s'},

:math:`G` the covariance of the output gradient.  The backward diagonal needs :math:`G` only
where windows overlap (stride < kernel); otherwise :math:`E(\partial x)_s^2 = G_{uu}/K^2` for
the window :math:`u` containing :math:`s` (0 for positions no window reads).  Between two samples
:math:`b \ne b'` of a batch (train-mode ``BatchNorm`` upstream) the same linear maps act on
``Field.batch_cov`` :math:`B_{ss'} = E x_{b,s} x_{b',s'}`: :math:`A^\top B A`, and backward on
the gradient's between-sample covariance.  Exact at every width
(a linear map of second moments; gradients of a linear layer do not depend on the input).  As in
Neural Tangents' ``stax.AvgPool`` / ``GlobalAvgPool`` (Novak et al. 2019).

``Flatten`` changes the layout only: its output entries are the input's random variables, so its
:class:`~varprop.network.field.Field` is the input field unchanged (shape ``(C, *spatial)``,
channel axis first, per-position moments kept): a following ``Nonlinearity`` acts per position and
a ``Dense`` layer averages :math:`E x^2` over the positions, as the flattened vector's entries are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.validation import fail
from varprop.errors import VarpropError
from varprop.network.field import Field, FieldNeeds, GradField, Shape
from varprop.network.layers.base import Layer
from varprop.network.layers.conv import check_spatial_input, require_channels_first
from varprop.network.layers.spatial import (
    Windows,
    check_size_tuple,
    expand,
    output_size,
    sliding_windows,
)

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): only the symbolic derivations need it
sp = lazy_module("sympy")

__all__ = ["AvgPool", "Flatten", "GlobalAvgPool", "pool_windows"]

BATCH_COV_GAP = ("the between-sample moments are tracked (Field.batch_cross) but not across "
                 "positions (Field.batch_cov): a layer upstream dropped them")


def pool_windows(layer: Layer, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...],
                 input_shape: Shape) -> Windows:
    """The windows of a pooling layer (no padding, floor mode; validated, cached)."""
    return _pool_windows(layer, kernel_size, stride, tuple(input_shape))


@lru_cache(maxsize=256)
def _pool_windows(layer: Layer, kernel_size: int | tuple[int, ...],
                  stride: int | tuple[int, ...], input_shape: Shape) -> Windows:
    _, spatial = check_spatial_input(layer, input_shape)
    nd = len(spatial)
    kernel = expand("kernel_size", kernel_size, nd)
    strides = expand("stride", stride, nd)
    for n, k, s in zip(spatial, kernel, strides):
        if output_size(n, k, s, 1, 0) < 1:
            raise fail("kernel_size", kernel_size, f"at most the input size per dimension "
                       f"(input_shape={input_shape}; pooling has no padding)")
    return sliding_windows(spatial, kernel, strides, (1,) * nd, ((0, 0),) * nd, circular=False)


def check_batch_cov(layer: Layer, field: Field | GradField) -> None:
    """Refuse a field whose between-sample moments are tracked only at equal positions."""
    if field.batch_cross is not None and field.batch_cov is None:
        raise VarpropError(f"{layer!r} mixes positions: {BATCH_COV_GAP}")


def _sandwich(a: object, m: np.ndarray | None, left: bool) -> np.ndarray | None:
    """:math:`A^\top M A` (``left=False``) or :math:`A M A^\top` (``left=True``) for a sparse
    averaging matrix ``a``; ``None`` stays ``None``."""
    if m is None:
        return None
    if left:
        return np.asarray((a @ (a @ m).T).T)
    return np.asarray((a.T @ (a.T @ m).T).T)


def require_cov(layer: Layer, field: Field) -> np.ndarray:
    """The position covariance of ``field``; a clear error if it is not tracked."""
    if field.cov is None:
        raise VarpropError(f"{layer!r} mixes positions: it needs the covariance between "
                           "positions (FieldNeeds(cov=True)), which the field does not carry")
    return field.cov


class _MixesPositions(Layer):
    """What every pool shares: channels first, position covariances (and between-sample ones)
    tracked, a linear map of second moments (exact; ``MaxPool`` overrides this)."""

    def channel_axis_for(self, input_shape: Shape) -> int | None:
        return 0

    def field_needs(self) -> FieldNeeds:
        return FieldNeeds(cov=True, batch_cov=True)

    def field_exact(self, field_in: Field) -> bool:
        """A linear map of second moments: exact at every width."""
        return True


@dataclass(frozen=True, init=False)
class _Pool(_MixesPositions):
    """Common parts of the windowed pools (kernel, stride, shapes, validation)."""

    kernel_size: int | tuple[int, ...]
    stride: int | tuple[int, ...]

    def __init__(self, kernel_size: int | tuple[int, ...],
                 stride: int | tuple[int, ...] | None = None) -> None:
        object.__setattr__(self, "kernel_size", check_size_tuple("kernel_size", kernel_size))
        object.__setattr__(self, "stride", self.kernel_size if stride is None
                           else check_size_tuple("stride", stride))

    def __repr__(self) -> str:
        stride = "" if self.stride == self.kernel_size else f", stride={self.stride!r}"
        return f"{type(self).__name__}({self.kernel_size!r}{stride})"

    def windows(self, input_shape: Shape) -> Windows:
        return pool_windows(self, self.kernel_size, self.stride, input_shape)

    def output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], *self.windows(input_shape).out_spatial)

    def _check(self, field: Field) -> Windows:
        require_channels_first(self, field)
        check_batch_cov(self, field)
        return self.windows(field.shape)


@dataclass(frozen=True, init=False, repr=False)
class AvgPool(_Pool):
    r"""Average pooling over ``kernel_size`` windows (``stride`` defaults to ``kernel_size``;
    no padding, PyTorch's floor mode), 1-D or 2-D, channels first.

    Rule: :math:`E y = A^\top E x`, :math:`\mathrm{Cov}` :math:`E yy^\top = A^\top K A` with the
    averaging matrix :math:`A` (module docstring); backward :math:`A G A^\top`.  Exact at every
    width; needs the covariance between positions.
    """

    kind = "avgpool"

    def field_forward(self, field: Field) -> Field:
        win = self._check(field)
        cov = require_cov(self, field)
        a = win.average
        out_cov = _sandwich(a, cov, left=False)
        mean = np.asarray(a.T @ np.ravel(field.mean)).reshape(win.out_spatial)
        return Field(self.output_shape(field.shape), 0, mean,
                     np.diag(out_cov).reshape(win.out_spatial), out_cov, None,
                     gaussian=field.gaussian, approximations=field.approximations,
                     batch_cov=_sandwich(a, field.batch_cov, left=False))

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        win = self.windows(field_in.shape)
        a = win.average
        cov = None
        if grad.cov is not None:
            cov = _sandwich(a, grad.cov, left=True)
            second = np.diag(cov).copy()
        elif win.overlapping:
            raise VarpropError(f"{self!r}: overlapping windows (stride < kernel_size) need the "
                               "covariance of the output gradient, which is not tracked")
        else:
            second = win.backward_diag(grad.second) / win.kernel ** 2
        bc = None
        if grad.batch_cross is not None and grad.batch_cov is None:
            if win.overlapping:
                check_batch_cov(self, grad)
            bc = (win.backward_diag(grad.batch_cross) / win.kernel ** 2).reshape(win.in_spatial)
        return GradField(field_in.shape, 0, second.reshape(win.in_spatial), cov, bc,
                         batch_cov=_sandwich(a, grad.batch_cov, left=True))

    def field_steps(self) -> list[tuple[str, object]]:
        u, up, s, sp_, j, jp = sp.symbols("u u' s s' j j'", integer=True)
        K, P = sp.symbols("K P_out", positive=True, integer=True)
        k_in, k_out, m_in, m_out = (sp.Function(n) for n in ("K_in", "K", "m_in", "m"))
        g_in, g_out, w = sp.Function("G_in"), sp.Function("G"), sp.Function("w")
        hit = sp.Function("1")
        return [
            ("Mean, per output position u (window average):",
             sp.Eq(m_out(u), sp.Sum(m_in(w(u, j)), (j, 1, K)) / K)),
            ("Covariance between output positions (every pair of taps of the two windows):",
             sp.Eq(k_out(u, up), sp.Sum(sp.Sum(k_in(w(u, j), w(up, jp)), (j, 1, K)),
                                        (jp, 1, K)) / K**2)),
            ("Backward covariance: the output gradient spread as g/K over each window:",
             sp.Eq(g_in(s, sp_), sp.Sum(sp.Sum(hit(s, u) * hit(sp_, up) * g_out(u, up),
                                               (u, 1, P)), (up, 1, P)) / K**2)),
        ]

    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> Windows:
        return self.windows(input_shape)

    def mc_forward(self, params: Windows, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        win = params
        flat = x.reshape(*x.shape[:3], win.p_in)
        y = flat[..., win.taps].mean(axis=-1)  # no padding: every tap is a real position
        return y.reshape(*x.shape[:3], *win.out_spatial), x.shape

    def mc_backward(self, params: Windows, cache: tuple, grad: np.ndarray) -> np.ndarray:
        win = params
        g = grad.reshape(*grad.shape[:3], win.p_out) / win.kernel
        gx = np.zeros((*grad.shape[:3], win.p_in), dtype=grad.dtype)
        for j in range(win.kernel):  # each tap's map t -> w(t, j) is injective
            gx[..., win.taps[:, j]] += g
        return gx.reshape(cache)


@dataclass(frozen=True)
class GlobalAvgPool(_MixesPositions):
    r"""The average over every position of each channel: ``(C, *spatial) -> (C,)``.

    Rule: :math:`E y = \frac1P \sum_s E x_s`, :math:`E y^2 = \frac1{P^2} \sum_{s, s'} K_{s s'}`;
    backward: every position receives :math:`\delta/P`, so :math:`E(\partial x)_s
    (\partial x)_{s'} = E\delta^2 / P^2` for all :math:`s, s'`.  Between two samples
    :math:`b \ne b'` the same rules with ``batch_cov`` (:math:`E y_b y_{b'} = \frac1{P^2}
    \sum_{s,s'} E x_{b,s} x_{b',s'}`) and the gradient's ``batch_cross``.  Exact at every width; needs the
    covariance between positions.
    """

    kind = "globalavgpool"

    def __repr__(self) -> str:
        return "GlobalAvgPool()"

    def output_shape(self, input_shape: Shape) -> Shape:
        check_spatial_input(self, input_shape)
        return (input_shape[0],)

    def field_forward(self, field: Field) -> Field:
        require_channels_first(self, field)
        check_batch_cov(self, field)
        cov = require_cov(self, field)
        second = float(np.mean(cov))
        bcov = None if field.batch_cov is None else np.array([[float(np.mean(field.batch_cov))]])
        return Field((field.channels,), -1, float(np.mean(field.mean)), second,
                     np.array([[second]]), None, gaussian=field.gaussian,
                     approximations=field.approximations, batch_cov=bcov)

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        p = field_in.size
        g2 = float(np.ravel(grad.second)[0]) / p**2
        cov = np.full((p, p), g2) if grad.cov is not None else None
        bc = bcov = None
        if grad.batch_cross is not None:  # every position of both samples gets its delta / P
            b2 = float(np.ravel(grad.batch_cross)[0]) / p**2
            bc = np.full(field_in.positions, b2)
            bcov = np.full((p, p), b2) if grad.cov is not None else None
        return GradField(field_in.shape, 0, np.full(field_in.positions, g2), cov, bc,
                         batch_cov=bcov)

    def field_steps(self) -> list[tuple[str, object]]:
        s, sp_ = sp.symbols("s s'", integer=True)
        P = sp.Symbol("P", positive=True, integer=True)
        k_in, m_in = sp.Function("K_in"), sp.Function("m_in")
        m, q, g, g_in = sp.Symbol("m"), sp.Symbol("q"), sp.Symbol("G"), sp.Function("G_in")
        return [("Mean of the channel average:", sp.Eq(m, sp.Sum(m_in(s), (s, 1, P)) / P)),
                ("Second moment: every pair of positions:",
                 sp.Eq(q, sp.Sum(sp.Sum(k_in(s, sp_), (s, 1, P)), (sp_, 1, P)) / P**2)),
                ("Backward: each position receives the gradient over P:",
                 sp.Eq(g_in(s, sp_), g / P**2))]

    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> None:
        return None

    def mc_forward(self, params: None, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        return x.reshape(*x.shape[:3], -1).mean(axis=-1), x.shape

    def mc_backward(self, params: None, cache: tuple, grad: np.ndarray) -> np.ndarray:
        p = math.prod(cache[3:])
        return np.broadcast_to((grad / p)[..., None], (*grad.shape, p)).reshape(cache).copy()


@dataclass(frozen=True)
class Flatten(Layer):
    r"""``(C, *spatial) -> (C \prod \text{spatial},)`` (row-major, as ``torch.flatten(x, 1)``).

    Its field is the input field unchanged (module docstring): the flattened entries are the
    same random variables, with per-position moments; exact.  Any layout flattens the same way:
    channels first ``(C, H, W)`` or a sequence ``(T, n)`` (a ``Recurrent`` layer's output).
    """

    kind = "flatten"

    def __repr__(self) -> str:
        return "Flatten()"

    def output_shape(self, input_shape: Shape) -> Shape:
        check_spatial_input(self, input_shape)
        return (math.prod(input_shape),)

    def channel_axis_for(self, input_shape: Shape) -> int | None:
        return None  # a reshape: any layout

    def field_exact(self, field_in: Field) -> bool:
        """A reshape: exact."""
        return True

    def field_forward(self, field: Field) -> Field:
        return field

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        if grad.shape == field_in.shape:
            return grad
        if grad.size != 1 and grad.size != field_in.size:
            raise VarpropError(f"{self!r}: a gradient field of shape {grad.shape} does not match "
                               f"the input field of shape {field_in.shape}")
        p = field_in.size
        second = np.broadcast_to(np.ravel(grad.second), (p,)).reshape(field_in.positions)
        cov = None if grad.cov is None else np.broadcast_to(grad.cov, (p, p))
        bc = (None if grad.batch_cross is None
              else np.broadcast_to(np.ravel(grad.batch_cross), (p,)).reshape(field_in.positions))
        bcov = None if grad.batch_cov is None else np.broadcast_to(grad.batch_cov, (p, p))
        return GradField(field_in.shape, field_in.channel_axis, second, cov, bc, batch_cov=bcov)

    def field_steps(self) -> list[tuple[str, object]]:
        t = sp.Symbol("t", integer=True)
        return [("Flatten keeps every entry and its per-position moments:",
                 sp.Eq(sp.Function("q")(t), sp.Function("q_in")(t)))]

    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> None:
        return None

    def mc_forward(self, params: None, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        return x.reshape(*x.shape[:2], -1), x.shape

    def mc_backward(self, params: None, cache: tuple, grad: np.ndarray) -> np.ndarray:
        return grad.reshape(cache)
