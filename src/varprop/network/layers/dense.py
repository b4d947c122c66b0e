r"""``Dense(width, init, bias_variance)``: the fully connected layer :math:`z = W a + b`.

:math:`W` is ``(width, n_in)`` with i.i.d. entries from the init scheme (fans
:math:`n_{in}`, ``width``), or a scaled Haar-orthogonal matrix; :math:`b` has i.i.d.
:math:`N(0, \sigma_b^2)` entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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

    # --- sampling -----------------------------------------------------------------------------

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
