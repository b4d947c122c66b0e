r"""``Dense(width, init, bias_variance)``: the fully connected layer :math:`z = W a + b`.

:math:`W` is ``(width, n_in)`` with i.i.d. entries from the init scheme (fans
:math:`n_{in}`, ``width``), or a scaled Haar-orthogonal matrix; :math:`b` has i.i.d.
:math:`N(0, \sigma_b^2)` entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from varprop._util.validation import check_nonnegative_real, check_width
from varprop.components.schemes import InitScheme, _cached_moments, resolve_scheme
from varprop.errors import VarpropError
from varprop.network.layers.base import Layer, Shape
from varprop.network.state import NAN_MESSAGE, GradientState, MomentState, Value

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
        return _cached_moments(self.init, fan_in, self.width)

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
                m = mu * n * state.mean
            q = v * n * state.second + b2
            mm = m * m
            return MomentState(m, mm + q, mm, var=q)
        if self.init.is_zero_mean:
            return MomentState(0.0, v * n * state.second + b2, 0.0, centred=True)
        s2 = n * state.second + n * (n - 1) * state.cross
        m = mu * n * state.mean
        d = v * n * state.second + mu * mu * s2 + b2
        c = mu * mu * s2
        if math.isnan(d + c):
            raise VarpropError(NAN_MESSAGE)
        return MomentState(m, d, c)

    def mean_field_backward(self, grad: GradientState, fan_in: int) -> GradientState:
        r"""The gradient state at the input :math:`a` from the one at :math:`z` (gradient
        independence): :math:`g = W^\top\delta`, :math:`E g_j^2 = \sigma_w^2 n_{out} G_D +
        \mu_w^2 S`, :math:`E g_j g_k = \mu_w^2 S` with :math:`S = n_{out} G_D + n_{out}(n_{out}-1)
        G_C` the second moment of the shared backward shift :math:`\sum_i \delta_i`."""
        mu, v = self.weight_moments(fan_in)
        n = self.width
        second: Value = v * n * grad.second
        cross: Value = 0.0
        if mu:
            cross = mu * mu * (n * grad.second + n * (n - 1) * grad.cross)
            second = second + cross
        return GradientState(second, cross)

    def mean_field_log(self, log_second: float, fan_in: int, clamp: float) -> tuple[float, float]:
        r"""The zero-mean forward rule in log space, for scales beyond the float range:
        ``(ln(sigma_w^2 n E a^2), ln E z^2)`` from ``log_second`` :math:`= \ln E a^2`, the weight
        part clamped to :math:`\pm` ``clamp``, the bias added by ``logaddexp``."""
        v = self.weight_moments(fan_in)[1]
        log_b = math.log(self.bias_variance) if self.bias_variance > 0 else -math.inf
        lw = min(max(math.log(v * fan_in) + log_second, -clamp), clamp)
        return lw, float(np.logaddexp(lw, log_b))

    # --- symbolic -----------------------------------------------------------------------------

    # --- sampling -----------------------------------------------------------------------------

    # --- one-step check -----------------------------------------------------------------------
