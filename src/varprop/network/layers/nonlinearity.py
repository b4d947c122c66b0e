r"""``Nonlinearity(activation)``: the elementwise map :math:`a = \phi(z)`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from varprop.components.activations import Activation, resolve_activation
from varprop.errors import VarpropError
from varprop.network.layers.base import Layer, Shape
from varprop.network.state import GradientState, MomentEvaluator, MomentState, Value

__all__ = ["Nonlinearity"]


@dataclass(frozen=True, init=False)
class Nonlinearity(Layer):
    r"""Elementwise activation :math:`a = \phi(z)` (any shape in, the same shape out).

    Parameters
    ----------
    activation : str or Activation
        ``"relu"``, ``"tanh"``, an expression in ``x`` such as ``"x*tanh(x)"``, or
        :func:`varprop.activation`.
    """

    activation: Activation
    kind = "nonlinearity"

    def __init__(self, activation: Activation | str) -> None:
        object.__setattr__(self, "activation", resolve_activation(activation))

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def __repr__(self) -> str:
        return f"Nonlinearity({self.activation!r})"

    # --- mean field ---------------------------------------------------------------------------
    def mean_field(self, state: MomentState, moments: MomentEvaluator) -> MomentState:
        r"""The state of :math:`a = \phi(z)` from that of a (conditionally) Gaussian :math:`z`.

        Centred :math:`z \sim N(0, q)`: :math:`(E\phi, E\phi^2, (E\phi)^2)` and
        :math:`E\phi'^2` (units independent).  Jointly Gaussian units with mean :math:`m`,
        variance :math:`D - m^2` and covariance :math:`C - m^2`: the six correlated moments.
        Conditional on the outer nodes: :math:`z \sim N(m(u), q(u))` i.i.d. given :math:`u`, so
        :math:`E[a_i a_k \mid u] = E[\phi \mid u]^2` and likewise for :math:`\phi'`.
        """
        act = self.activation
        if not state.gaussian:
            raise VarpropError(
                f"{self!r} acts on the output of a nonlinear layer: the mean field needs Gaussian "
                "pre-activations (put a Dense layer between two nonlinearities)")
        if state.conditional:
            a_m, a_d, b1, bd = moments.conditional(act, state.mean, state.var)  # type: ignore[arg-type]
            return MomentState(a_m, a_d, a_m * a_m, after=act, deriv_second=bd,
                               deriv_cross=b1 * b1)
        if state.centred:
            em, e2, ed2 = moments.zero_mean(act)(state.second)  # type: ignore[arg-type]
            return MomentState(em, e2, em * em, after=act, deriv_second=ed2, deriv_cross=0.0)
        m, d, c = state.mean, state.second, state.cross
        var = d - m * m if math.isfinite(d) else math.inf  # type: ignore[operator, arg-type]
        cov = c - m * m if math.isfinite(c) else var  # type: ignore[operator, arg-type]
        e_m, e_2, cross, _, e_d2, d_cross = moments.correlated(act, m, max(var, 0.0), max(cov, 0.0))
        return MomentState(e_m, e_2, cross, after=act, deriv_second=e_d2, deriv_cross=d_cross)

    @staticmethod
    def mean_field_backward(grad: GradientState, deriv_second: Value, deriv_cross: Value
                            ) -> GradientState:
        r""":math:`\delta_z = \phi'(z)\,\delta_a` with :math:`\phi'(z)` independent of
        :math:`\delta_a` (gradient independence): :math:`E\delta_{z,i}^2 = E\phi'^2\,
        E\delta_{a,i}^2` and :math:`E\delta_{z,i}\delta_{z,k} = E\phi'_i\phi'_k\,
        E\delta_{a,i}\delta_{a,k}` (``deriv_second``, ``deriv_cross``: the moments of
        :math:`\phi'` in this layer's forward state)."""
        return GradientState(deriv_second * grad.second, deriv_cross * grad.cross)  # type: ignore[operator]

    # --- symbolic -----------------------------------------------------------------------------

    # --- sampling -----------------------------------------------------------------------------

    # --- one-step check -----------------------------------------------------------------------
