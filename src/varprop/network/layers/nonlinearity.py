r"""``Nonlinearity(activation)``: the elementwise map :math:`a = \phi(z)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
    #: A zero output from a non-zero input is a genuine value (ReLU's negative side), never
    #: counted as an underflow.
    sample_flush_is_underflow = False

    @property
    def sample_gradient_flush_is_underflow(self) -> bool:
        r"""An all-zero :math:`\phi'(z) \odot g` from a non-zero :math:`g` is an underflow when
        :math:`\phi' \ne 0` almost everywhere (``traits.derivative_nonvanishing``: tanh's
        :math:`\tanh'(z) < 10^{-308}` at :math:`|z| > 355`), a genuine zero otherwise (ReLU)."""
        return self.activation.traits.derivative_nonvanishing

    def sample_forward(self, draws: Any, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`\phi(z)` in ``z``'s dtype (no random numbers); the cache is ``z``."""
        return np.asarray(self.activation.function(z), dtype=z.dtype), z

    def sample_backward(self, cache: np.ndarray, grads: list[np.ndarray]) -> list[np.ndarray]:
        r""":math:`\phi'(z) \odot g` for each output gradient :math:`g` of ``grads`` (backward
        passes over the same forward pass; the derivative is computed once, without
        cancellation)."""
        d = np.asarray(self.activation.derivative_function(cache), dtype=cache.dtype)
        return [d * g for g in grads]

    # --- one-step check -----------------------------------------------------------------------
