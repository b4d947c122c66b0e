r"""``Dense(width, init, bias_variance)``: the fully connected layer :math:`z = W a + b`.

:math:`W` is ``(width, n_in)`` with i.i.d. entries from the init scheme (fans
:math:`n_{in}`, ``width``), or a scaled Haar-orthogonal matrix; :math:`b` has i.i.d.
:math:`N(0, \sigma_b^2)` entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from varprop._util.validation import check_nonnegative_real, check_width
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.network.layers.base import Layer, Shape

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

    # --- one-step check -----------------------------------------------------------------------
