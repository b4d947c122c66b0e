r"""``Nonlinearity(activation)``: the elementwise map :math:`a = \phi(z)`."""

from __future__ import annotations

from dataclasses import dataclass

from varprop.components.activations import Activation, resolve_activation
from varprop.network.layers.base import Layer, Shape

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

    # --- symbolic -----------------------------------------------------------------------------

    # --- sampling -----------------------------------------------------------------------------

    # --- one-step check -----------------------------------------------------------------------
