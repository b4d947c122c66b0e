r"""``Recurrent(width, activation, *, steps, ...)``: an Elman recurrent layer unrolled over time.

.. math::

    z_t = W h_{t-1} + U x_t + b, \qquad h_t = \phi(z_t), \qquad h_0 = 0, \qquad t = 1, \dots, T,

one :math:`W \in \mathbb R^{n \times n}` and one :math:`U \in \mathbb R^{n \times n_{in}}`
shared by every step (PyTorch ``nn.RNN``'s ``weight_hh_l0`` and ``weight_ih_l0``: fans
:math:`(n, n)` and :math:`(n_{in}, n)`), biases :math:`b \sim N(0, \sigma_b^2)` shared too.  The
input has shape ``(T, n_in)`` (positions = time, channel axis -1), the output ``(T, n)``
(``return_sequences=True``) or ``(n,)`` (the last step).

Mean field (the rules are in :mod:`varprop.network.layers.recurrent_field`)
---------------------------------------------------------------------------
Forward, :math:`q_t = v_w n\, E\phi(z_{t-1})^2 + v_u n_{in}\, E x_t^2 + \sigma_b^2` per step and
the covariance over time :math:`K_{t,s}` (non-zero: the same :math:`W` and :math:`b` act at every
step) when position covariances are tracked.  Backward (back-propagation through time),
:math:`E\delta_t^2 = E\phi'(z_t)^2\,(G_t + v_w n\, E\delta_{t+1}^2)` with :math:`G_t` the
output-gradient second moment at step :math:`t` (every step with ``return_sequences``, the last
one otherwise), and :math:`E (U^\top\delta_t)^2 = v_u n\, E\delta_t^2` at the input.  Through
:math:`T` steps the gradient is multiplied by about :math:`\chi = v_w n\, E\phi'(z)^2` per step at
the fixed point: it vanishes for :math:`\chi < 1` and explodes for :math:`\chi > 1` (for tanh with
:math:`v_w n = 0.5, 1, 2` and :math:`v_u n_{in} = 1`: :math:`\chi \approx 0.22, 0.40, 0.69`,
all vanishing: the input drive keeps tanh off its linear regime; ReLU with He weights,
:math:`v_w n = 2`: :math:`\chi = 1` exactly, the critical point).

Where it is exact
-----------------
* **Infinite width, forward**: exact.  Tied weights do not break the Gaussian-process limit:
  each unit's pre-activations over time are a Gaussian process with kernel :math:`K` (Yang 2019,
  *Wide feedforward or recurrent neural networks of any architecture are Gaussian processes*,
  the tensor-program master theorem).
* **Infinite width, backward**: the recursion above replaces :math:`W^\top` by an independent
  copy (gradient independence).  For weight-shared networks whose output gradients come from an
  independent zero-mean readout (here: i.i.d. output gradients independent of the weights) the
  resulting limits are proved correct by Yang 2019, *Scaling limits of wide neural networks with
  weight sharing* (arXiv:1902.04760), under that paper's regularity conditions on :math:`\phi`
  and :math:`\phi'`; the Monte Carlo below supports it for tanh and for ReLU with LeCun weights.
* **Finite width**: not exact, even for ReLU or linear :math:`\phi`: from step 3 on,
  :math:`h_{t-1}` depends on :math:`W` itself, so :math:`E[z_t^2 \mid h_{t-1}] = v_w
  \|h_{t-1}\|^2 + \dots` no longer holds.  (For ReLU-class :math:`\phi` step 1 is exact at
  every width, and step 2 too without bias: :math:`z_2 = W h_1 + U x_2` is symmetric given
  :math:`h_1`; a shared bias makes :math:`z_2` asymmetric given :math:`h_1`.)  How large the
  deviation is depends on the regime: see the table below.

Measured at finite width
------------------------
A from-scratch NumPy Monte Carlo (``benchmarks/measure_recurrent.py``: Gaussian weights,
:math:`W \sim N(0, c/n)`, :math:`U \sim N(0, 1/n_{in})`, :math:`n_{in} = 64`, inputs i.i.d.
:math:`N(0, 1)`, no bias, :math:`T = 50`, unit i.i.d. output gradients at every step, batch 4,
400 networks at widths 64 and 128, 200 at 256 and 512) against the mean field: the relative
deviation of the simulated :math:`E h_T^2` (fwd) and :math:`E(\partial L/\partial x_1)^2` (bwd,
after 50 steps of back-propagation through time) from the prediction, :math:`\pm` two standard
errors over networks.  :math:`\chi = c\, E\phi'(z)^2` at the stationary :math:`q` is the
per-step gradient factor: with inputs of variance 1 the drive keeps every tanh case below 1
(gradients from far steps vanish as :math:`\chi^{t}`); the cases marked (*) have inputs of
variance 0.01, where tanh with :math:`c = 2, 3` explodes through time (the predicted
:math:`E g_{x,1}^2` is :math:`1.5 \cdot 10^4` and :math:`4.8 \cdot 10^6` times that of the
last step :math:`g_{x,T}`).

============================ === ======================= ============================
case                         n   fwd E h_T^2             bwd E g_{x,1}^2
============================ === ======================= ============================
tanh, c = 0.5, chi = 0.22    64  -0.003 +- 0.005         -0.007 +- 0.016
                             128 -0.006 +- 0.005         -0.006 +- 0.013
                             256 -0.005 +- 0.005         -0.004 +- 0.016
                             512 -0.006 +- 0.005         -0.011 +- 0.016
tanh, c = 1, chi = 0.40      64  -0.002 +- 0.006         -0.008 +- 0.017
                             128 -0.005 +- 0.004         +0.013 +- 0.015
                             256 +0.001 +- 0.004         -0.017 +- 0.016
                             512 -0.002 +- 0.004         -0.014 +- 0.016
tanh, c = 2, chi = 0.69      64  -0.001 +- 0.005         -0.002 +- 0.024
                             128 -0.003 +- 0.004         +0.007 +- 0.017
                             256 -0.004 +- 0.004         +0.006 +- 0.019
                             512 -0.003 +- 0.003         +0.008 +- 0.017
ReLU, LeCun c = 1, chi = 0.5 64  +0.078 +- 0.038         +0.006 +- 0.019
                             128 +0.032 +- 0.022         +0.011 +- 0.015
                             256 +0.016 +- 0.019         +0.009 +- 0.018
                             512 +0.015 +- 0.014         +0.010 +- 0.016
ReLU, He c = 2, chi = 1      64  mean x5e9, median -0.26 mean x4e8, median +0.24
                             128 mean x3e5, median -0.03 mean x3e4, median +0.30
                             256 mean x9e3, median +0.06 mean x2e2, median +0.15
                             512 mean x152, median +0.28 mean x5.9, median +0.08
tanh, c = 2, chi = 1.09 (*)  64  +0.087 +- 0.013         +0.05 +- 0.15 (median -0.45)
                             128 +0.054 +- 0.008         +0.05 +- 0.16 (median -0.28)
                             256 +0.022 +- 0.007         +0.07 +- 0.07 (median -0.03)
                             512 +0.009 +- 0.004         -0.00 +- 0.05 (median -0.07)
tanh, c = 3, chi = 1.23 (*)  64  +0.038 +- 0.008         -0.32 +- 0.11 (median -0.70)
                             128 +0.021 +- 0.005         +0.01 +- 0.14 (median -0.38)
                             256 +0.011 +- 0.004         +0.09 +- 0.12 (median -0.06)
                             512 +0.002 +- 0.003         +0.01 +- 0.05 (median -0.08)
============================ === ======================= ============================

Reading: for tanh the mean field holds to about 1% over 50 steps at every width from 64 when
gradients vanish (the forward offset of -0.2 to -0.6%, which does not shrink with :math:`n`, comes
at least in part from the finite input width: -0.09% +- 0.33% with :math:`n_{in} = 1024` at
:math:`n = 128`).  The bwd column does *not* test back-propagation over many steps: with unit
output gradients at every step, :math:`g_{x,1}` is dominated by its own step (the part carried back
from step :math:`t` is :math:`\chi^{t-1}`, :math:`10^{-8}` to :math:`10^{-33}` of it from the last
step).  With the loss on the last step only (``return_sequences=False``, :math:`T = 50`,
:math:`n_{in} = 64`, a from-scratch Monte Carlo in review), the *mean* over networks of
:math:`E(\partial L/\partial x_1)^2` lies above the mean field by about +100% at :math:`n = 128`
(+97%, +130%, +100% for :math:`v_w n = 0.5, 1, 2`; 100 networks each), +20% +- 19% at 256
(:math:`v_w n = 2`) and +16% +- 19% at 512 (:math:`v_w n = 1`), while the *median* network is
within 15%: a heavy right tail at finite width (tied weights), shrinking with the width.  When
they explode (*), the forward deviation is :math:`O(1/n)` (+9% at 64, +1% at 512) and the backward
*mean* agrees within two (large) standard errors from width 128 on (at 64, :math:`c = 3`: -32% +-
11%), while the typical (median) network's gradient is below the prediction (-45% at 64, -7% at
512): a heavy right tail.  ReLU with LeCun weights deviates by :math:`O(1/n)` (+8% at 64, +1.5% at
512).  ReLU with He weights sits at the critical point (:math:`q_t = q_1 t` grows linearly) and the
*mean over networks* there is useless at these widths: rare networks explode through time (the mean
is 6 to :math:`5 \cdot 10^9` times the prediction, less at larger width, and its standard error
means nothing), while the *median* network stays within 30% of the mean field.

The rules use only the entry variances, so every zero-mean scheme gets the same prediction at the
same :math:`v_w n`.  A Haar-orthogonal :math:`W` (``init="orthogonal"``, :math:`v_w n = g^2`, as
in Chen et al.) measured the same way at width 256 (200 networks, the layer's own sampler):
tanh :math:`g = 1`: fwd -0.5% +- 0.5%, bwd +0.0% +- 1.7%; tanh :math:`g = 1.5`: -0.3% +- 0.4%,
+0.2% +- 2.0%; ReLU :math:`g = 1`: +0.4% +- 1.9%, +0.3% +- 1.6%.

References
----------
Elman (1990) *Finding structure in time*; Chen, Pennington & Schoenholz (2018) *Dynamical
isometry and a mean field theory of RNNs: gating enables signal propagation in recurrent neural
networks*; Yang (2019) (both papers above); Cho & Saul (2009) *Kernel methods for deep learning*
for the ReLU-class pair expectations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.validation import (
    check_nonnegative_real,
    check_positive_int,
    check_width,
    fail,
    fail_type,
)
from varprop.components.activation import Activation
from varprop.components.activations import resolve_activation
from varprop.components.scheme import weight_moments
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.errors import VarpropError
from varprop.network.field import Field, GradField
from varprop.network.layers.base import Layer, Shape
from varprop.network.layers.recurrent_field import Kernel, backward_bptt, forward_kernel

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): only the symbolic derivations need it
sp = lazy_module("sympy")

__all__ = ["MAX_STEPS", "Recurrent"]

#: The longest sequence a recurrent layer is built for (its rules loop over the steps).
MAX_STEPS = 100_000


def _zero_mean_scheme(name: str, init: object) -> InitScheme:
    scheme = resolve_scheme(init, argument=name)
    if not scheme.is_zero_mean:
        raise fail(name, scheme, "a zero-mean init scheme (the mean field of a recurrent layer, "
                   "like every layer of the general engine, assumes zero-mean weights)")
    return scheme


def _last_only(a: np.ndarray, T: int) -> np.ndarray:
    """A last-step output moment (a scalar, or a ``(1, 1)`` covariance) placed at step ``T`` of
    zero moments over the ``T`` steps (vector or ``(T, T)``)."""
    out = np.zeros((T,) * max(np.ndim(a), 1))
    out[(-1,) * out.ndim] = float(np.asarray(a).reshape(-1)[0])
    return out


@lru_cache(maxsize=16)
def _cached_kernel(layer: Recurrent, field_in: Field, full: bool) -> Kernel:
    # Field compares by identity (eq=False): a hit is the same field object, as in a walk that
    # runs a layer's forward and then its backward rule on the field it was given
    return layer._compute_kernel(field_in, full)


@dataclass(frozen=True, init=False)
class Recurrent(Layer):
    r"""Elman recurrent layer :math:`h_t = \phi(W h_{t-1} + U x_t + b)`, :math:`h_0 = 0`, over
    ``steps`` time steps with weights tied over time (see the module docstring for the rules,
    where they are exact and their measured error at finite width).

    Parameters
    ----------
    width : int
        Number of hidden units :math:`n` (the output channels).
    activation : str or Activation
        :math:`\phi` (``"tanh"``, ``"relu"``, ...).
    steps : int
        Sequence length :math:`T`; the input shape must be ``(steps, n_in)``.
    init : str or InitScheme
        Scheme of the recurrent matrix :math:`W` (fans :math:`n, n`); zero-mean.
    input_init : str or InitScheme
        Scheme of the input matrix :math:`U` (fan-in :math:`n_{in}`, fan-out :math:`n`); zero-mean.
    bias_variance : float
        :math:`\sigma_b^2` of the i.i.d. Gaussian biases (shared over time; 0: no bias).
    return_sequences : bool
        Output every step ``(T, n)`` (default) or only the last one ``(n,)``.
    """

    width: int
    activation: Activation
    steps: int
    init: InitScheme
    input_init: InitScheme
    bias_variance: float = field(default=0.0)
    return_sequences: bool = field(default=True)
    kind = "recurrent"

    def __init__(self, width: int, activation: Activation | str, *, steps: int,
                 init: InitScheme | str = "lecun_normal",
                 input_init: InitScheme | str = "lecun_normal", bias_variance: float = 0.0,
                 return_sequences: bool = True) -> None:
        object.__setattr__(self, "width", check_width("width", width))
        object.__setattr__(self, "activation", resolve_activation(activation))
        steps = check_positive_int("steps", steps)
        if steps > MAX_STEPS:
            raise fail("steps", steps, f"a positive integer at most {MAX_STEPS:,} (the rules "
                       "loop over the steps)")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "init", _zero_mean_scheme("init", init))
        object.__setattr__(self, "input_init", _zero_mean_scheme("input_init", input_init))
        object.__setattr__(self, "bias_variance",
                           check_nonnegative_real("bias_variance", bias_variance))
        if not isinstance(return_sequences, (bool, np.bool_)):
            raise fail_type("return_sequences", return_sequences, "True or False")
        object.__setattr__(self, "return_sequences", bool(return_sequences))

    def __repr__(self) -> str:
        extra = f", bias_variance={self.bias_variance!r}" if self.bias_variance else ""
        if not self.return_sequences:
            extra += ", return_sequences=False"
        return (f"Recurrent({self.width}, {self.activation!r}, steps={self.steps}, "
                f"init={self.init!r}, input_init={self.input_init!r}{extra})")

    # --- shapes -------------------------------------------------------------------------------
    def _input_width(self, input_shape: Shape) -> int:
        if (len(input_shape) != 2 or input_shape[0] != self.steps
                or any(not isinstance(d, int) or d < 1 for d in input_shape)):
            raise fail("input_shape", tuple(input_shape),
                       f"a sequence shape (steps, n_in) with steps = {self.steps} for {self!r}")
        return input_shape[1]

    def output_shape(self, input_shape: Shape) -> Shape:
        self._input_width(input_shape)
        return (self.steps, self.width) if self.return_sequences else (self.width,)

    def channel_axis_for(self, input_shape: Shape) -> int | None:
        return -1

    def scales(self, n_in: int) -> tuple[float, float]:
        r""":math:`(v_w n, v_u n_{in})`: the recurrent and input weight variances times the
        number of terms they sum (fans as PyTorch's ``weight_hh``/``weight_ih``)."""
        vw = weight_moments(self.init, self.width, self.width)[1]
        vu = weight_moments(self.input_init, n_in, self.width)[1]
        return vw * self.width, vu * n_in

    # --- mean field ---------------------------------------------------------------------------
    def _kernel(self, field_in: Field, *, full: bool) -> Kernel:
        """The forward mean field for ``field_in`` (cached: the backward pass reuses it)."""
        return _cached_kernel(self, field_in, full)

    def _compute_kernel(self, field_in: Field, full: bool) -> Kernel:
        n_in = self._input_width(field_in.shape)
        if field_in.channel_axis % 2 != 1:
            raise VarpropError(f"{self!r} reads its input (T, n_in) with the channels on the last "
                               f"axis, not axis {field_in.channel_axis}")
        if full and field_in.cov is None:
            raise VarpropError(f"{self!r}: the covariance over time of its output needs that of "
                               "its input (Field.cov), which is not tracked")
        vw_n, vu_nin = self.scales(n_in)
        return forward_kernel(self.activation, vw_n, vu_nin, self.bias_variance,
                              np.asarray(field_in.second), field_in.cov if full else None,
                              field_in.batch_cross)

    def field_forward(self, field: Field) -> Field:
        r"""Per step :math:`E h_t`, :math:`E h_t^2`; :math:`E h_t h_s` when ``field.cov`` is
        tracked, :math:`E h_{b,t} h_{b',t}` when ``field.batch_cross`` is (a shared
        :math:`W, b` correlates two samples)."""
        k = self._kernel(field, full=field.cov is not None)
        shape = self.output_shape(field.shape)
        if self.return_sequences:
            return Field(shape, -1, k.mean, k.second, k.C, k.batch_cross, gaussian=False,
                         approximations=field.approximations)
        cov = None if k.C is None else k.C[-1:, -1:]
        bc = None if k.batch_cross is None else k.batch_cross[-1]
        return Field(shape, -1, k.mean[-1], k.second[-1], cov, bc, gaussian=False,
                     approximations=field.approximations)

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        r"""Back-propagation through time with gradient independence: :math:`E(\partial L/
        \partial x_t)^2 = v_u n\, E\delta_t^2`; when tracked, the covariance over time
        :math:`v_u n\, E\delta_t\delta_s` (``grad.cov``) and the between-sample moment
        (``grad.batch_cross``)."""
        full = grad.cov is not None
        if grad.batch_cross is not None and field_in.batch_cross is None:
            raise VarpropError(f"{self!r}: the between-sample gradient moment needs the "
                               "between-sample moments of its input (Field.batch_cross)")
        k = self._kernel(field_in, full=full)
        T = self.steps
        g2, gcov, gbc = (None if a is None else np.asarray(a, dtype=float)
                         for a in (grad.second, grad.cov, grad.batch_cross))
        if not self.return_sequences:  # the loss sees h_T only
            g2, gcov, gbc = (None if a is None else _last_only(a, T) for a in (g2, gcov, gbc))
        vw_n, vu_nin = self.scales(field_in.shape[1])
        e, cov, bc = backward_bptt(k, vw_n, g2, gcov, gbc)  # type: ignore[arg-type]
        scale = vu_nin / field_in.shape[1] * self.width  # v_u n
        return GradField(field_in.shape, field_in.channel_axis, scale * e,
                         None if cov is None else scale * cov,
                         None if bc is None else scale * bc)

    def field_steps(self) -> list[tuple[str, object]]:
        """The per-step recursions (forward kernel, back-propagation through time) as SymPy
        equations, in the notation of the module docstring (each sentence names its symbols)."""
        t, s = sp.symbols("t s", integer=True, positive=True)
        n, n_in = sp.symbols("n n_{in}", positive=True)
        vw, vu, b2 = sp.symbols(r"\sigma_w^2 \sigma_u^2 \sigma_b^2", nonnegative=True)
        q, K, A, C, X, G = (sp.Function(name) for name in ("q", "K", "A", "C", "X", "G"))
        D, Delta, H = sp.Function("D"), sp.Function("Delta"), sp.Function("H")
        return [
            (("Forward: the pre-activation variance q(t) at step t, with A(t) = E phi(z_t)^2 "
             "(A(0) = 0: h_0 = 0) and X(t) = E x_t^2 the input's second moment"),
             sp.Eq(q(t), vw * n * A(t - 1) + vu * n_in * X(t) + b2)),
            (("Forward: the covariance over time K(t, s) of one unit's pre-activations (the same "
             "W and b act at every step), with C(t, s) = E phi(z_t) phi(z_s) and X(t, s) = "
             "E x_t x_s"),
             sp.Eq(K(t, s), vw * n * C(t - 1, s - 1) + vu * n_in * X(t, s) + b2)),
            (("Backward (back-propagation through time, gradient independence): Delta(t) = "
             "E delta_t^2 from D(t) = E phi'(z_t)^2 and the output-gradient second moment G(t), "
             "Delta(T + 1) = 0"),
             sp.Eq(Delta(t), D(t) * (G(t) + vw * n * Delta(t + 1)))),
            ("Backward: the gradient at the input x_t, H(t) = E (dL/dx_t)^2",
             sp.Eq(H(t), vu * n * Delta(t))),
        ]

    # --- sampling -----------------------------------------------------------------------------
    def field_exact(self, field_in: Field) -> bool:
        """``False``: the rules are exact at infinite width only (module docstring: from step 3
        on, :math:`h_{t-1}` depends on the tied :math:`W`)."""
        return False

    def mc_parameter_count(self, input_shape: Shape) -> int:
        """Random numbers per replicate: :math:`n^2 + n n_{in}` (+ :math:`n` biases)."""
        n = self.width
        return n * n + n * self._input_width(input_shape) + (n if self.bias_variance > 0 else 0)

    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(W, U, b)`` of shapes ``(R, n, n)``, ``(R, n, n_in)``, ``(R, n)`` (``b`` is
        ``None`` without bias), drawn from the init schemes (any law: uniform, orthogonal...)."""
        n_in = self._input_width(input_shape)
        n = self.width
        w = self.init.sample(rng, n, n, size=(replicates,), dtype=dtype)
        u = self.input_init.sample(rng, n_in, n, size=(replicates,), dtype=dtype)
        b = None
        if self.bias_variance > 0:
            b = rng.standard_normal((replicates, n), dtype=np.float64).astype(dtype)
            b *= dtype.type(math.sqrt(self.bias_variance))  # type: ignore[union-attr]
        return w, u, b

    def mc_forward(self, params: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unroll over time: ``x`` of shape ``(R, B, T, n_in)``; the cache is the
        pre-activations ``(R, B, T, n)``."""
        w, u, b = params
        R, B, T, _ = x.shape
        wt, ut = np.swapaxes(w, -1, -2), np.swapaxes(u, -1, -2)
        z = np.matmul(x, ut[:, None])  # (R, B, T, n): the input terms U x_t of every step
        if b is not None:
            z += b[:, None, None, :]
        h = np.zeros((R, B, self.width), dtype=x.dtype)
        out = np.empty_like(z)
        phi = self.activation.function
        for t in range(T):
            if t:
                z[:, :, t] += np.matmul(h, wt)
            h = np.asarray(phi(z[:, :, t]), dtype=x.dtype)
            out[:, :, t] = h
        return (out if self.return_sequences else out[:, :, -1]), z

    def mc_backward(self, params: Any, cache: np.ndarray, grad: np.ndarray) -> np.ndarray:
        r"""Back-propagation through time: :math:`\delta_t = \phi'(z_t)(g_t + W^\top
        \delta_{t+1})`, returns :math:`U^\top \delta_t` of shape ``(R, B, T, n_in)``."""
        w, u, _ = params
        z = cache
        T = z.shape[2]
        deriv = np.asarray(self.activation.derivative_function(z), dtype=z.dtype)
        delta = np.zeros_like(z)
        nxt = np.zeros(z.shape[:2] + (self.width,), dtype=z.dtype)
        for t in range(T - 1, -1, -1):
            g = grad[:, :, t] if self.return_sequences else (
                grad if t == T - 1 else np.zeros_like(nxt))
            nxt = deriv[:, :, t] * (g + np.matmul(nxt, w))
            delta[:, :, t] = nxt
        return np.matmul(delta, u[:, None])
