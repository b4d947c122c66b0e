r"""``Dense(width, init, bias_variance)``: the fully connected layer :math:`z = W a + b`.

:math:`W` is ``(width, n_in)`` with i.i.d. entries from the init scheme (fans
:math:`n_{in}`, ``width``), or a scaled Haar-orthogonal matrix; :math:`b` has i.i.d.
:math:`N(0, \sigma_b^2)` entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.validation import check_nonnegative_real, check_width, fail
from varprop.components.scheme import weight_moments
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.errors import VarpropError
from varprop.network.field import Field, GradField
from varprop.network.layers.base import Layer, Shape
from varprop.network.state import NAN_MESSAGE, GradientState, MomentState

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): only the symbolic derivations need it
sp = lazy_module("sympy")

__all__ = ["Dense"]


@dataclass(frozen=True, init=False)
class Dense(Layer):
    r"""Fully connected layer :math:`z = W a + b` with ``width`` outputs.

    Parameters
    ----------
    width : int
        Number of output units :math:`n_{out}`.
    init : str or InitScheme
        Weight init scheme (``"lecun_normal"``, ``"he_normal"``, ... or :func:`varprop.init_scheme`).
    bias_variance : float
        :math:`\sigma_b^2` of the i.i.d. Gaussian biases (0: no bias).
    """

    width: int
    init: InitScheme
    bias_variance: float = field(default=0.0)
    kind = "dense"

    def __init__(self, width: int, init: InitScheme | str = "lecun_normal",
                 bias_variance: float = 0.0) -> None:
        object.__setattr__(self, "width", check_width("width", width))
        object.__setattr__(self, "init", resolve_scheme(init))
        object.__setattr__(self, "bias_variance", check_nonnegative_real("bias_variance", bias_variance))

    def output_shape(self, input_shape: Shape) -> Shape:
        self._require_vector(input_shape)
        return (self.width,)

    def __repr__(self) -> str:
        bias = f", bias_variance={self.bias_variance!r}" if self.bias_variance else ""
        return f"Dense({self.width}, init={self.init!r}{bias})"

    # --- mean field ---------------------------------------------------------------------------
    def weight_moments(self, fan_in: int) -> tuple[float, float]:
        r""":math:`(\mu_w, \sigma_w^2)` of the entries for this fan-in (cached)."""
        return weight_moments(self.init, fan_in, self.width)

    def mean_field(self, state: MomentState, fan_in: int) -> MomentState:
        r"""The state of :math:`z = W a + b` from that of :math:`a` (``fan_in`` :math:`= n`).

        Zero-mean weights: :math:`E z_i^2 = \sigma_w^2 n E a^2 + \sigma_b^2`, centred (exact
        for any input law).  Otherwise, with :math:`S_2 = n D + n(n-1) C = E(\sum_j a_j)^2`:
        :math:`m = \mu_w n A_m`, :math:`D = \sigma_w^2 n A_D + \mu_w^2 S_2 + \sigma_b^2`,
        :math:`C = \mu_w^2 S_2` (exact second moments of a linear map).  Conditional on the
        layer-1 shift :math:`u`: :math:`m = \mu_w n A_m(u)` (for the network input
        :math:`\mu_w \sqrt{n \sigma_x^2}\, u`), :math:`q = \sigma_w^2 n A_D(u) + \sigma_b^2`, the
        units i.i.d. :math:`N(m, q)` given :math:`u` (central limit theorem in the weights'
        random part; the shift's own fluctuation is neglected, see :mod:`varprop.theory.shifted`).
        """
        mu, v = self.weight_moments(fan_in)
        n, b2 = fan_in, self.bias_variance
        if state.conditional:
            if state.shift_scale is not None:
                m = mu * state.shift_scale * state.mean
            else:
                finite = np.isfinite(state.second) & (state.second > 0)
                if mu and np.all(finite & (np.abs(state.mean) * n <= 1e-6 * np.sqrt(n * state.second))):
                    raise VarpropError(
                        f"{self!r}: its shift mu_w * sum_j a_j is pure fluctuation here (the units "
                        "entering it have conditional mean 0, e.g. an odd activation after "
                        "zero-mean weights, while an earlier Dense layer's non-zero-mean shift is "
                        "already conditioned on): the mean field conditions on one shift only")
                m = mu * n * state.mean
            q = v * n * state.second + b2
            mm = m * m
            return MomentState(m, mm + q, mm, var=q)
        if self.init.is_zero_mean:
            return MomentState(0.0, v * n * state.second + b2, 0.0, centred=True)
        m, d, c = self.forward_moments(mu, v, n, state.mean, state.second, state.cross, b2)
        if math.isnan(d + c):
            raise VarpropError(NAN_MESSAGE)
        return MomentState(m, d, c)

    def mean_field_backward(self, grad: GradientState, fan_in: int) -> GradientState:
        r"""The gradient state at the input :math:`a` from the one at :math:`z` (gradient
        independence): :math:`g = W^\top\delta`, :math:`E g_j^2 = \sigma_w^2 n_{out} G_D +
        \mu_w^2 S`, :math:`E g_j g_k = \mu_w^2 S` with :math:`S = n_{out} G_D + n_{out}(n_{out}-1)
        G_C` the second moment of the shared backward shift :math:`\sum_i \delta_i`."""
        return self.backward_rule(fan_in)(grad)

    def backward_rule(self, fan_in: int) -> Callable[[GradientState], GradientState]:
        r""":meth:`mean_field_backward` for one fan-in, with the weight moments looked up once (a
        walk prepares it per block and applies it at every repetition)."""
        mu, v = self.weight_moments(fan_in)
        n = self.width
        if mu:
            backward = self.backward_moments

            def rule(grad: GradientState) -> GradientState:
                return GradientState(*backward(mu, v, n, grad.second, grad.cross))
            return rule
        scale = v * n  # (v * n) * G_D: the product in the order of the formula

        def zero_mean_rule(grad: GradientState) -> GradientState:
            return GradientState(scale * grad.second, 0.0)
        return zero_mean_rule

    def mean_field_log(self, log_second: float, fan_in: int, clamp: float) -> tuple[float, float]:
        r"""The zero-mean forward rule in log space, for scales beyond the float range:
        ``(ln(sigma_w^2 n E a^2), ln E z^2)`` from ``log_second`` :math:`= \ln E a^2`, the weight
        part clamped to :math:`\pm` ``clamp``, the bias added by ``logaddexp``."""
        v = self.weight_moments(fan_in)[1]
        log_b = math.log(self.bias_variance) if self.bias_variance > 0 else -math.inf
        lw = min(max(math.log(v * fan_in) + log_second, -clamp), clamp)
        return lw, float(np.logaddexp(lw, log_b))

    # --- general engine (varprop.network.field) ------------------------------------------------
    def channel_axis_for(self, input_shape: Shape) -> int | None:
        return -1

    def _zero_mean_moments(self, fan_in: int) -> tuple[float, float]:
        mu, v = self.weight_moments(fan_in)
        if mu:
            raise fail("init", self.init, "a zero-mean init scheme in a network that is not a "
                       "plain MLP (the general engine assumes zero-mean weights; non-zero-mean "
                       "weights are predicted for Dense/activation chains only)")
        return mu, v

    def field_forward(self, field: Field) -> Field:
        r""":math:`E z_i^2 = \sigma_w^2 n \overline{E a^2} + \sigma_b^2` with
        :math:`\overline{E a^2}` the mean over the :math:`n` input entries (a flattened tensor's
        positions), mean 0 (zero-mean weights), Gaussian at infinite width, and between two
        samples of a batch :math:`E z_{b,i} z_{b',i} = \sigma_w^2 n \overline{E a_b a_{b'}} +
        \sigma_b^2` (the bias is shared within a network).  Exact for any input law."""
        n = math.prod(field.shape)
        v = self._zero_mean_moments(n)[1]
        b2 = self.bias_variance
        q = v * n * float(np.mean(field.second)) + b2
        bc = None if field.batch_cross is None else v * n * float(np.mean(field.batch_cross)) + b2
        return Field((self.width,), -1, 0.0, q, None if field.cov is None else [[q]], bc,
                     gaussian=True, approximations=field.approximations,
                     batch_cov=None if field.batch_cov is None else [[bc]])

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        r""":math:`g = W^\top\delta`: :math:`E g_j^2 = \sigma_w^2 n_{out} E\delta^2` at every
        input entry, uncorrelated between entries (zero-mean independent weights); between two
        samples of a batch (one :math:`W` for both) :math:`E g_{b,j} g_{b',j} = \sigma_w^2
        n_{out} E\delta_b\delta_{b'}` when tracked (and 0 between different entries
        :math:`j \ne j'`: ``batch_cov`` diagonal)."""
        n = math.prod(field_in.shape)
        v = self._zero_mean_moments(n)[1]
        g = v * self.width * float(np.mean(grad.second))
        pos = field_in.positions
        cov = None if grad.cov is None else np.eye(math.prod(pos)) * g
        bc = None
        if grad.batch_cross is not None:  # the same W for every sample of the batch
            bc = np.full(pos, v * self.width * float(np.mean(grad.batch_cross)))
        # across input entries: different rows of W, uncorrelated (diagonal)
        bcov = None if bc is None or field_in.batch_cov is None else np.diag(np.ravel(bc))
        return GradField(field_in.shape, field_in.channel_axis, np.full(pos, g), cov, bc,
                         batch_cov=bcov)

    def field_exact(self, field_in: Field) -> bool:
        """Second moments exact at every width (zero-mean symmetric i.i.d. weights)."""
        s = self.init
        return bool(s.is_zero_mean and s.is_symmetric and s.is_iid)

    def field_steps(self) -> list[tuple[str, object]]:
        sw, n, a2, b2, g = sp.symbols("sigma_w^2 n_in E[a^2] sigma_b^2 E[delta^2]", positive=True)
        return [("forward: zero-mean weights, the mean over the input entries",
                 sp.Eq(sp.Symbol("E[z^2]"), sw * n * a2 + b2)),
                ("backward: g = W^T delta", sp.Eq(sp.Symbol("E[g^2]"),
                                                  sw * sp.Symbol("n_out", positive=True) * g))]

    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> tuple[np.ndarray, np.ndarray | None]:
        """``(W, b)``: ``W`` ``(R, width, n_in)`` from the init scheme, ``b`` ``(R, width)``."""
        n_in = self._require_vector(input_shape)
        w = np.asarray(self.init.sample(rng, n_in, self.width, size=(replicates,), dtype=dtype),
                       dtype=dtype)
        b = None
        if self.bias_variance > 0:
            b = (rng.standard_normal((replicates, self.width)) * math.sqrt(self.bias_variance)
                 ).astype(dtype)
        return w, b

    def mc_parameter_count(self, input_shape: Shape) -> int:
        return (math.prod(input_shape) + 1) * self.width

    def mc_forward(self, params: tuple, x: np.ndarray) -> tuple[np.ndarray, None]:
        w, b = params
        y = np.matmul(x, np.swapaxes(w, -1, -2))
        if b is not None:
            y += b[:, None, :]
        return y, None

    def mc_backward(self, params: tuple, cache: object, grad: np.ndarray) -> np.ndarray:
        return np.matmul(grad, params[0])

    # --- symbolic -----------------------------------------------------------------------------
    @staticmethod
    def forward_moments(mu_w: Any, sigma_w2: Any, fan_in: Any, mean_in: Any, second_in: Any,
                        cross_in: Any, bias_variance: Any) -> tuple[Any, Any, Any]:
        r"""The exact moment map of :math:`z = W a + b` (the forward rule of the layer).

        With :math:`A_m = E a_j`, :math:`A_D = E a_j^2`, :math:`A_C = E a_j a_{j'}` (:math:`j \ne
        j'`) of the input, weights i.i.d. (or uncorrelated) with mean :math:`\mu_w`, variance
        :math:`\sigma_w^2`, independent of :math:`a`, and biases :math:`N(0, \sigma_b^2)`:

        .. math::

            m = \mu_w n A_m, \quad
            D = E z_i^2 = \sigma_w^2 n A_D + \mu_w^2 S + \sigma_b^2, \quad
            C = E z_i z_k = \mu_w^2 S, \qquad S = n A_D + n(n-1) A_C,

        :math:`n` the fan-in.  Exact at every width (second moments need no Gaussianity).
        Arguments and results are SymPy expressions (or numbers); nothing is simplified.
        """
        n = fan_in
        s2 = n * second_in + n * (n - 1) * cross_in
        return mu_w * n * mean_in, sigma_w2 * n * second_in + mu_w**2 * s2 + bias_variance, mu_w**2 * s2

    @staticmethod
    def backward_moments(mu_w: Any, sigma_w2: Any, fan_out: Any, grad_second: Any,
                         grad_cross: Any) -> tuple[Any, Any]:
        r"""The moment map of the gradient at the layer's input, :math:`g = W^T \delta`.

        With :math:`G_D = E\delta_i^2`, :math:`G_C = E\delta_i\delta_k` of the gradient at the
        output (fan-out :math:`n`) and :math:`\delta` independent of :math:`W` (gradient
        independence):

        .. math::

            H_D = E g_j^2 = \sigma_w^2 n G_D + \mu_w^2 S, \quad H_C = E g_j g_k = \mu_w^2 S,
            \qquad S = n G_D + n(n-1) G_C.
        """
        n = fan_out
        s2 = n * grad_second + n * (n - 1) * grad_cross
        return sigma_w2 * n * grad_second + mu_w**2 * s2, mu_w**2 * s2

    # --- sampling -----------------------------------------------------------------------------
    # The Monte Carlo engines (varprop.simulation) call these on a block of C replicates: signals
    # have shape (C, n) (batch 1) or (C, n, B); ``draws`` hands out each block's random numbers
    # from its own stream (``draws.normal(shape, dtype)``, ``draws.per_block(shape, dtype, fn)``).

    #: An all-zero output from a non-zero input (or an all-zero input gradient from a non-zero
    #: output gradient) has probability 0 for continuous weights: it is an underflow.
    sample_flush_is_underflow = True
    sample_gradient_flush_is_underflow = True

    def gaussian_law(self, n_in: int) -> tuple[float, float] | None:
        r"""``(loc, scale)`` of the i.i.d. normal weights :math:`W = \mu_w + s W_0` for fan-in
        ``n_in``, or ``None`` if the weights are not i.i.d. normal (Gaussian shortcut)."""
        if not self.init.is_gaussian:
            return None
        p = self.init.parameters(n_in, self.width)
        return float(p["loc"]), float(p["scale"])

    def sample_weights(self, draws: Any, n_in: int, dtype: np.dtype) -> tuple[np.ndarray, float, float]:
        """``(W0, scale, loc)``, ``W0`` of shape ``(C, width, n_in)``, with ``W = loc + scale W0``
        in law.  Normal schemes: ``W0`` standard normal (the numbers ``InitScheme.sample`` would
        draw before scaling; the affine map is applied to the products, one pass over the weights
        fewer).  Other schemes: ``W0 = InitScheme.sample(...)``, ``scale = 1``, ``loc = 0``."""
        law = self.gaussian_law(n_in)
        if law is not None:
            return draws.normal((self.width, n_in), dtype), law[1], law[0]
        w = draws.per_block((self.width, n_in), dtype, lambda g, size: self.init.sample(
            g, n_in, self.width, size=(size,), dtype=dtype))
        return w, 1.0, 0.0

    def sample_bias(self, draws: Any, dtype: np.dtype) -> np.ndarray | None:
        """Biases of shape ``(C, width, 1)`` (drawn after the weights), or ``None`` without bias."""
        if self.bias_variance <= 0.0:
            return None
        b = draws.normal((self.width, 1), dtype)
        b *= dtype.type(math.sqrt(self.bias_variance))
        return b

    def sample_forward(self, draws: Any, a: np.ndarray) -> tuple[np.ndarray, tuple]:
        """Draw this layer's weights and biases for the block and apply it: ``(z, cache)`` with
        ``z = W a + b``; ``cache`` is what :meth:`sample_backward` needs."""
        w, scale, loc = self.sample_weights(draws, a.shape[1], a.dtype)
        z = self._affine(np.matmul(w, a), a, scale, loc)
        b = self.sample_bias(draws, a.dtype)
        if b is not None:
            z += b
        return z, (w, scale, loc)

    def sample_backward(self, cache: tuple, deltas: list[np.ndarray]) -> list[np.ndarray]:
        r""":math:`W^\top \delta` for each output gradient :math:`\delta` of ``deltas`` (backward
        passes over the same forward pass): the gradients with respect to the input."""
        w, scale, loc = cache
        wt = np.swapaxes(w, -1, -2)
        return [self._affine(np.matmul(wt, delta), delta, scale, loc) for delta in deltas]

    @staticmethod
    def _affine(prod: np.ndarray, x: np.ndarray, scale: float, loc: float) -> np.ndarray:
        """``scale * (W0 x) + loc * (1^T x) 1`` given ``prod = W0 x`` (in place)."""
        if scale != 1.0:
            prod *= prod.dtype.type(scale)
        if loc != 0.0:
            prod += (loc * np.add.reduce(x, axis=1, dtype=np.float64, keepdims=True)
                     ).astype(prod.dtype)
        return prod

    # --- one-step check -----------------------------------------------------------------------
    def one_step(self, n_in: int, second: np.ndarray) -> np.ndarray:
        r"""Forward one-step map: :math:`E[\overline{z^2} \mid a] = \sigma_w^2 n_{in}
        \overline{a^2} + \sigma_b^2` for the realised mean square ``second`` of the input
        :math:`a` (vectorised over replicates).

        Exact for zero-mean i.i.d. weights of variance :math:`\sigma_w^2` (any law), and for a
        Haar-orthogonal :math:`W` with :math:`\sigma_w^2 = g^2/\max(n_{in}, n_{out})`.
        """
        _, var_w = self.init.moments(n_in, self.width)
        return var_w * n_in * second + self.bias_variance

    def one_step_backward(self, n_in: int, second: np.ndarray) -> np.ndarray:
        r"""Backward one-step map: :math:`E[\overline{(W^\top\delta)^2} \mid \delta] =
        \sigma_w^2 n_{out} \overline{\delta^2}` for the realised mean square ``second`` of the
        output gradient :math:`\delta`, when :math:`W` is independent of :math:`\delta` (zero-mean
        i.i.d. weights; the top layer, or a net of linear activations)."""
        _, var_w = self.init.moments(n_in, self.width)
        return var_w * self.width * second
