r"""``MaxPool(kernel_size, stride=None)``: max pooling of a Gaussian field, or of an elementwise
activation of one, by randomized quasi-Monte Carlo (declared approximation).

Within each channel :math:`y_u = \max_j x_{w(u, j)}`.  The input must be jointly Gaussian (a
``Conv`` output at infinite width), or :math:`x = \phi(z)` elementwise with :math:`z` Gaussian
(``Field.pre_activation``; e.g. ``Conv -> ReLU -> MaxPool``, where :math:`\max_j
\mathrm{relu}(z_j) = \mathrm{relu}(\max_j z_j)`).  The moments :math:`E y_u`,
:math:`E y_u y_{u'}` (between pooled outputs, needed by a following pool) and the argmax
probabilities of the backward pass are estimated by RQMC (:mod:`varprop._math.gaussian_max`;
method below): deterministic (fixed seed), with the standard errors over independent scrambles
reported in the output field's ``approximations``.

Backward (gradient independence for the output gradient :math:`\delta`, covariance :math:`G`):
the gradient goes to each window's argmax,
:math:`E(\partial x)_t(\partial x)_{t'} = \sum_{u, u'} P(a_u = t, a_{u'} = t') G_{uu'}`; for
stride = kernel (no overlap) :math:`E(\partial x)_t^2 = P(t = \arg\max \text{ of its window})
G_{uu}`.  For :math:`x = \phi(z)` the routing and :math:`\phi'(z)` are strongly dependent (the
argmax of ReLU outputs is where :math:`z > 0`), so gradient independence at the activation
would be wrong (for ReLU and 2x2 windows by a factor near 2); the layer also gives the gradient
at :math:`z`, :math:`\sum_{u,u'} E[\phi'(z_t)\phi'(z_{t'}) 1\{a_u = t, a_{u'} = t'\}]
G_{uu'}` from the same points, as ``GradField.preactivation``, which ``Nonlinearity`` returns.

Method: the mean and second moment of each window by RQMC of the window's own
:math:`J`-dimensional law (8 scrambles of 16384 points; windows with the same law computed
once), the covariances between windows from joint RQMC points of the whole field, rescaled to
that diagonal (:mod:`varprop._math.gaussian_max`).

Measured error.  Two-entry windows against Clark's (1961) exact formulas (three mean/variance/
correlation settings, tests/test_layer_pooling.py): relative error of :math:`E y^2` 1.3e-5 to
5.9e-5, of :math:`E y` (in units of :math:`\sqrt{E y^2}`) 2.4e-6 to 1.6e-5, reported relative
standard errors 5.9e-5 to 9.4e-5.  Pools of a ``Conv(8, 3, he_normal, bias_variance=0.2)`` output
on a :math:`6 \times 6` grid (36 positions, zero padding; joint points 8 x 8192) against a NumPy
Monte Carlo of :math:`2 \cdot 10^6` field draws (whose own relative standard error, about
:math:`10^{-3}`, dominates the differences):

==============================  ========================  ==========================  ==========
pool (after Conv [-> ReLU])     largest rel. error        largest rel. error          reported
                                :math:`E y_u^2`           :math:`E y_u y_{u'}`        rel. s.e.
==============================  ========================  ==========================  ==========
2x2, stride 2                   1.4e-3 (ReLU: 1.2e-3)     2.0e-3 (ReLU: 2.4e-3)       1.3e-4
3x3, stride 1 (overlapping)     8.1e-4 (ReLU: 7.8e-4)     1.2e-3 (ReLU: 1.1e-3)       2.8e-4
3x3, stride 2 (overlapping)     6.2e-4 (ReLU: 1.3e-3)     6.8e-4 (ReLU: 1.3e-3)       2.8e-4
==============================  ========================  ==========================  ==========

Larger fields get fewer joint points (:func:`points_for`): reported relative standard errors of
the covariances between windows 4.8e-3 on a :math:`16 \times 16` grid, 2.2e-2 on
:math:`32 \times 32`, 5.3e-2 on :math:`64 \times 64` (there about 20 s forward on a shared
machine); those of :math:`E y^2` stay near 1.2e-4.  The backward pass takes each window's own
argmax probabilities from the per-window points and the pairs of different windows from the
joint points.

The output is not Gaussian: a ``Nonlinearity`` after a ``MaxPool`` is approximate (Gaussian
closure), and so is a ``MaxPool`` of an activation of it (the pre-activation's Gaussian closure,
declared); a ``MaxPool`` directly on a non-Gaussian field without a pre-activation is refused.

Two samples of a batch (``Field.batch_cov`` tracked: a train-mode ``BatchNorm`` upstream): the
joint points are drawn for both samples' fields at once, a Gaussian of :math:`2P` entries with
covariance :math:`\begin{pmatrix} K & K^\times \\ K^\times & K\end{pmatrix}`
(:math:`K^\times_{tt'} = E z_{b,t} z_{b',t'}` centred), giving :math:`E y_{b,u} y_{b',u'}`
(rescaled by the same per-window factors) and, backward, the gradient routed to both samples'
argmaxima: :math:`E(\partial x_b)_t(\partial x_{b'})_{t'} = \sum_{u,u'} P(a_{b,u} = t,
a_{b',u'} = t')\, E\delta_{b,u}\delta_{b',u'}`.  A pre-activation that is not Gaussian (an
activation of a train-mode ``BatchNorm`` output over positions) is taken with its Gaussian
closure (declared).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from varprop._math.gaussian_max import (
    MaxSamples,
    WindowMoments,
    sample_window_max,
    window_max_moments,
)
from varprop._util.lazy import lazy_module
from varprop._util.validation import fail
from varprop.errors import VarpropError
from varprop.network.field import Field, GradField, Shape
from varprop.network.layers.conv import check_spatial_input
from varprop.network.layers.pooling import _Pool, require_cov
from varprop.network.layers.spatial import (
    Windows,
    check_size_tuple,
    expand,
    output_size,
    sliding_windows,
)

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): only the symbolic derivations need it
sp = lazy_module("sympy")

__all__ = ["MaxPool"]

#: RQMC budget: scrambles, the most and the fewest points per scramble (see :func:`points_for`).
SCRAMBLES = 8
MAX_POINTS = 8192
MIN_POINTS = 128
#: Points per scramble for the per-window moments (:func:`window_max_moments`).
WINDOW_POINTS = 2**14
SEED = 20261204


def points_for(p: int) -> int:
    r"""Points per scramble for a field of ``p`` positions: a power of two between ``MIN_POINTS``
    and ``MAX_POINTS`` near :math:`2^{30}/p^2` (sampling the field costs about
    :math:`\text{points} \cdot p^2` flops per scramble: 8192 points up to 362 positions, 1024 at
    1024 positions, 128 from 2896 positions on)."""
    budget = 2**30 // max(p, 1) ** 2
    return int(max(MIN_POINTS, min(MAX_POINTS, 2 ** int(np.floor(np.log2(max(budget, 1)))))))


@dataclass(frozen=True, init=False, repr=False)
class MaxPool(_Pool):
    r"""Max pooling over ``kernel_size`` windows (``stride`` defaults to ``kernel_size``; floor
    mode), 1-D or 2-D, channels first; ``padding`` (an int or one per dimension, at most half the
    kernel, as PyTorch's ``MaxPool2d`` allows) pads with :math:`-\infty`: a window's padding
    taps never win, so the window is the maximum over its real positions (implemented by
    repeating one of them in the padding taps, which changes neither the maximum nor where
    the gradient goes).

    Rule: :math:`E y_u^{(k)} = E \max_j x_{w(u,j)}^{(k)}` (:math:`k = 1, 2`, and
    :math:`E y_u y_{u'}`) for a jointly Gaussian input or an activation of one, by joint RQMC of
    the field (declared approximation, standard error reported); backward routed to the argmax.
    """

    padding: int | tuple[int, ...]
    kind = "maxpool"

    def __init__(self, kernel_size: int | tuple[int, ...],
                 stride: int | tuple[int, ...] | None = None,
                 padding: int | tuple[int, ...] = 0) -> None:
        super().__init__(kernel_size, stride)
        pad = check_size_tuple("padding", padding, zero=True)
        object.__setattr__(self, "padding", pad)

    def __repr__(self) -> str:
        text = super().__repr__()
        if self.padding in (0, (0,), (0, 0)):
            return text
        return f"{text[:-1]}, padding={self.padding!r})"

    def windows(self, input_shape: Shape) -> Windows:
        if self.padding in (0, (0,), (0, 0)):
            return super().windows(input_shape)
        return _padded_windows(self, tuple(input_shape))

    def field_exact(self, field_in: Field) -> bool:
        """Never: randomized quasi-Monte Carlo (declared approximation)."""
        return False

    def _source(self, field: Field) -> tuple[Field, object, object]:
        """The Gaussian field, the elementwise map (``None``: identity) the input is, and its
        derivative (``None`` if unknown).  A non-Gaussian pre-activation (``BatchNorm`` in train
        mode over positions) is taken with the Gaussian closure its ``Nonlinearity`` declared."""
        if field.gaussian:
            return field, None, None
        if field.pre_activation is not None:
            z, phi = field.pre_activation
            return z, getattr(phi, "function", phi), getattr(phi, "derivative_function", None)
        raise VarpropError(
            f"{self!r} needs a jointly Gaussian input (a Conv output) or an elementwise "
            "activation of one (Field.pre_activation): the moments of a non-Gaussian field do not "
            "determine those of its window maxima")

    def _samples(self, field: Field) -> tuple[MaxSamples, WindowMoments, Windows]:
        """The joint RQMC points of ``field``'s windows and the per-window moments (cached by
        field identity: the backward pass reuses the forward pass's points)."""
        return _cached_samples(self, field)

    def _draw(self, field: Field) -> tuple[MaxSamples, WindowMoments, Windows]:
        win = self._check(field)
        z, phi, dphi = self._source(field)
        m = np.ravel(z.mean)
        cov = require_cov(self, z) - np.outer(m, m)  # Field.cov holds E z_t z_t' (uncentred)
        m2, cov2, taps = m, cov, win.taps
        if z.batch_cov is not None:  # two samples' fields jointly: [[cov, bcov], [bcov, cov]]
            bcov = np.asarray(z.batch_cov) - np.outer(m, m)
            m2, cov2 = np.concatenate([m, m]), np.block([[cov, bcov], [bcov, cov]])
            taps = np.concatenate([taps, taps + win.p_in])
        samples = sample_window_max(m2, cov2, taps, transform=phi, derivative=dphi,
                                    points=points_for(m2.size), scrambles=SCRAMBLES, seed=SEED)
        own = window_max_moments(m, cov, win.taps, transform=phi, derivative=dphi,
                                 points=WINDOW_POINTS, scrambles=SCRAMBLES, seed=SEED)
        return samples, own, win

    def field_forward(self, field: Field) -> Field:
        samples, own, win = self._samples(field)
        joint, joint_se = samples.second()
        u = win.p_out
        pair = samples.taps.shape[0] > u  # two samples' windows: (2U, 2U)
        jd = np.diag(joint)[:u]
        # the joint points' matrix rescaled to the per-window diagonal (stays positive semi-definite)
        scale = np.sqrt(np.divide(own.second, jd, out=np.zeros_like(jd), where=jd > 0))
        if pair:
            scale = np.concatenate([scale, scale])
        full = joint * np.outer(scale, scale)
        second = full[:u, :u]
        bcov = None
        if pair:  # E y_b,u y_b',u' (b != b'), symmetric by exchangeability of the samples
            bcov = 0.5 * (full[:u, u:] + full[u:, :u])
        tiny = 1e-300
        rel = float(np.max(own.se_second / np.maximum(np.abs(own.second), tiny)))
        jd_all = np.diag(joint)
        rel_joint = float(np.max(joint_se / np.sqrt(np.maximum(np.outer(jd_all, jd_all), tiny))))
        n = samples.y.shape[1] * samples.scrambles
        sentence = (f"{self!r}: E max, E max^2 of each window by randomized quasi-Monte Carlo "
                    f"({own.points} scrambled Sobol' points per window law), the covariances "
                    f"between windows by joint randomized quasi-Monte Carlo of the Gaussian field "
                    f"({n} points in {samples.scrambles} scrambles); largest relative standard "
                    f"errors: between windows {rel_joint:.1e}, of E y^2: {rel:.1e}")
        return Field(self.output_shape(field.shape), 0, own.mean.reshape(win.out_spatial),
                     own.second.reshape(win.out_spatial), second, None, gaussian=False,
                     approximations=self._closure(field).approximate(sentence), batch_cov=bcov)

    def _closure(self, field: Field) -> Field:
        """``field`` with the Gaussian closure of a non-Gaussian pre-activation declared."""
        z = self._source(field)[0]
        if z.gaussian:
            return field
        return field.with_(approximations=field.approximate(
            f"{self!r}: the pre-activation entering the window maxima is not jointly Gaussian "
            "(a train-mode BatchNorm over positions): a Gaussian with its means and "
            "covariances is used (Gaussian closure)"))

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        samples, own, win = self._samples(field_in)
        g = grad.cov if grad.cov is not None else np.diag(np.ravel(grad.second))
        pair = samples.taps.shape[0] > win.p_out
        route, through = own.route, own.route_through
        if pair:  # both samples' windows: [[G, G_bb'], [G_bb', G]] (module docstring)
            if grad.batch_cross is None:
                raise VarpropError(f"{self!r}: the forward pass tracks two samples of a batch; "
                                   "the gradient's between-sample moments are not tracked")
            gb = (grad.batch_cov if grad.batch_cov is not None
                  else np.diag(np.ravel(grad.batch_cross)))
            g = np.block([[g, gb], [gb, g]])
            route = np.concatenate([route, route])
            through = None if through is None else np.concatenate([through, through])
        keep = grad.cov is not None
        out = self._routed(samples, g, route, False, win, field_in, keep, pair)
        pre = None
        if samples.slope is not None:  # through phi on the same points (module docstring)
            pre = self._routed(samples, g, through, True, win, field_in, keep, pair)
        return out.with_(preactivation=pre)

    @staticmethod
    def _routed(samples: MaxSamples, g: np.ndarray, own: np.ndarray | None, through: bool,
                win: Windows, field_in: Field, keep: bool, pair: bool) -> GradField:
        """The routed gradient field (the same-sample block; between samples, the
        off-diagonal block as ``batch_cov``, or its diagonal as ``batch_cross``)."""
        full = samples.routed_cov(g, through=through, own=own)
        p = win.p_in
        cov = full[:p, :p]
        bc = bcov = None
        if pair:
            cross = 0.5 * (full[:p, p:] + full[p:, :p])
            bc = np.diag(cross).reshape(win.in_spatial)
            bcov = cross if field_in.batch_cov is not None and keep else None
        return GradField(field_in.shape, 0, np.diag(cov).reshape(win.in_spatial),
                         cov if keep else None, bc, batch_cov=bcov)

    def field_steps(self) -> list[tuple[str, object]]:
        u, up, t, j = sp.symbols("u u' t j", integer=True)
        P = sp.Symbol("P_out", positive=True, integer=True)
        x, m = sp.Function("x"), sp.Function("M")
        w, g_in, g_out, prob = (sp.Function(n) for n in ("w", "G_in", "G", "P"))
        a = sp.Function("a")
        return [
            ("Window maximum (moments by randomized quasi-Monte Carlo of the Gaussian field):",
             sp.Eq(m(u), sp.Max(*(x(w(u, jj)) for jj in sp.symbols("j_1:3"))))),
            ("Backward: the gradient is routed to each window's argmax a(u):",
             sp.Eq(g_in(t), sp.Sum(sp.Sum(prob(sp.Eq(a(u), t), sp.Eq(a(up), t)) * g_out(u, up),
                                          (u, 1, P)), (up, 1, P)))),
        ]

    def mc_draw(self, rng: np.random.Generator, input_shape: tuple[int, ...], replicates: int,
                dtype: np.dtype) -> Windows:
        return self.windows(input_shape)

    def mc_forward(self, params: Windows, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        win = params
        windows = x.reshape(*x.shape[:3], win.p_in)[..., win.taps]  # (R, B, C, U, J)
        j = np.argmax(windows, axis=-1)
        y = np.take_along_axis(windows, j[..., None], axis=-1)[..., 0]
        return y.reshape(*x.shape[:3], *win.out_spatial), (x.shape, win.taps[np.arange(win.p_out), j])

    def mc_backward(self, params: Windows, cache: tuple, grad: np.ndarray) -> np.ndarray:
        win = params
        shape, arg = cache
        lead = shape[:3]
        flat = np.zeros((int(np.prod(lead)), win.p_in), dtype=grad.dtype)
        rows = np.repeat(np.arange(flat.shape[0]), win.p_out)
        np.add.at(flat, (rows, arg.reshape(-1)), grad.reshape(-1))
        return flat.reshape(shape)


@lru_cache(maxsize=64)
def _padded_windows(layer: MaxPool, input_shape: Shape) -> Windows:
    """The windows of a padded max pool, each padding tap replaced by the window's first real
    position (the maximum and the argmax position are those over the real positions)."""
    _, spatial = check_spatial_input(layer, input_shape)
    nd = len(spatial)
    kernel = expand("kernel_size", layer.kernel_size, nd)
    strides = expand("stride", layer.stride, nd)
    pads = expand("padding", layer.padding, nd)
    for n, k, s, p in zip(spatial, kernel, strides, pads):
        if 2 * p > k:
            raise fail("padding", layer.padding, "at most half the kernel size "
                       f"{layer.kernel_size!r} (as PyTorch's MaxPool requires: every window "
                       "keeps a real position)")
        if output_size(n, k, s, 1, 2 * p) < 1:
            raise fail("kernel_size", layer.kernel_size, f"at most the padded input size per "
                       f"dimension (input_shape={input_shape})")
    win = sliding_windows(spatial, kernel, strides, (1,) * nd, tuple((p, p) for p in pads),
                          circular=False)
    taps = np.array(win.taps)
    first = taps[np.arange(taps.shape[0]), np.argmax(taps >= 0, axis=1)]
    taps = np.where(taps < 0, first[:, None], taps)
    taps.flags.writeable = False
    return Windows(win.in_spatial, win.out_spatial, taps)


@lru_cache(maxsize=2)  # a field may hold a (P, P) covariance: keep few
def _cached_samples(layer: MaxPool, field: Field) -> tuple[MaxSamples, WindowMoments, Windows]:
    return layer._draw(field)
