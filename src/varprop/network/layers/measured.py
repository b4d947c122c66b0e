r"""``Measured(shape, moments, *, name)``: a pass-through layer carrying measured moments.

A part of a model that varprop has no rule for (a PyTorch module it cannot map, such as an
attention block) can still sit inside a :class:`~varprop.Network` whose other layers are
predicted: its output moments are *measured* (over re-initialisations of the real model, by
:func:`varprop.torch.audit`) and handed to the walk as given values.

Forward, the output field is the measured one, whatever the input field is:

.. math::

    E y = m, \qquad E y^2 = q \quad \text{(every entry: the average over the output's entries)},

independent between positions (``cov`` :math:`= m^2` off the diagonal) and between the samples
of a batch (``batch_cross`` :math:`= m^2`), not Gaussian (nothing is known about its law).
Backward, the gradient's second moment is multiplied by the measured gain

.. math::

    \gamma = \frac{E\,\lvert\partial L/\partial x\rvert^2}{E\,\lvert\partial L/\partial y\rvert^2}
    \quad \text{(per entry)},

spread evenly over the input's positions (between positions and samples: uncorrelated).

These are declared approximations (listed in the field's ``approximations``): the per-position
structure of the module's output and the dependence of its output on its input beyond their
second moments are not represented.  Inside a :class:`~varprop.layers.Residual` branch the
measured output is taken as uncorrelated with the block's input (the cross term of the sum is
:math:`m_S m_F`), as for a branch ending with a zero-mean weight layer: true for an attention
block whose output projection has zero-mean weights (:attr:`Measured.decorrelates`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from varprop._util.validation import check_nonnegative_real, check_real, fail, fail_type
from varprop.network.field import Field, GradField, Shape, positions_of
from varprop.network.layers.base import Layer

__all__ = ["Measured", "MeasuredMoments"]


@dataclass(frozen=True)
class MeasuredMoments:
    r"""Measured moments of one module's output, per entry: ``second`` :math:`E y^2`, ``mean``
    :math:`E y`, ``gradient_gain`` :math:`E|\partial L/\partial x|^2 / E|\partial L/\partial y|^2`
    (input over output, per entry)."""

    second: float
    mean: float = 0.0
    gradient_gain: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "second", check_nonnegative_real("second", self.second))
        object.__setattr__(self, "mean", check_real("mean", self.mean))
        object.__setattr__(self, "gradient_gain",
                           check_nonnegative_real("gradient_gain", self.gradient_gain))
        if self.mean * self.mean > self.second * (1 + 1e-9):
            raise fail("mean", self.mean, f"a mean whose square is at most the second moment "
                       f"{self.second!r} (E y^2 >= (E y)^2)")


def _shape(value: object) -> Shape:
    if not isinstance(value, (tuple, list)) or not value:
        raise fail_type("shape", value, "a non-empty tuple of positive ints (one sample's shape)")
    out = []
    for n in value:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise fail("shape", value, "a tuple of positive ints")
        out.append(int(n))
    return tuple(out)


@dataclass(frozen=True, init=False)
class Measured(Layer):
    r"""A module's measured output moments, passed through (module docstring).

    Parameters
    ----------
    shape : tuple of int
        Its output shape (one sample).
    moments : MeasuredMoments
        The measured per-entry ``second``, ``mean`` and ``gradient_gain``.
    name : str
        What was measured (a qualified module name), for reports and the declared approximation.
    """

    shape: Shape
    moments: MeasuredMoments
    name: str
    kind = "measured"
    #: The output is taken as uncorrelated with the input (a Residual branch may consist of it).
    decorrelates = True

    def __init__(self, shape: Shape, moments: MeasuredMoments, *, name: str = "measured") -> None:
        if not isinstance(moments, MeasuredMoments):
            raise fail_type("moments", moments, "a MeasuredMoments(second, mean, gradient_gain)")
        if not isinstance(name, str):
            raise fail_type("name", name, "a string")
        object.__setattr__(self, "shape", _shape(shape))
        object.__setattr__(self, "moments", moments)
        object.__setattr__(self, "name", name)

    def __repr__(self) -> str:
        m = self.moments
        return (f"Measured({self.shape}, second={m.second:.6g}, mean={m.mean:.6g}, "
                f"gradient_gain={m.gradient_gain:.6g}, name={self.name!r})")

    def output_shape(self, input_shape: Shape) -> Shape:
        return self.shape

    def _axis(self, field: Field) -> int:
        if len(self.shape) == len(field.shape):
            return field.channel_axis
        return 0 if len(self.shape) >= 3 else -1

    def field_forward(self, field: Field) -> Field:
        axis = self._axis(field)
        pos = positions_of(self.shape, axis)
        p = math.prod(pos)
        m, q = self.moments.mean, self.moments.second
        cov = None
        if field.cov is not None:
            cov = np.full((p, p), m * m)
            np.fill_diagonal(cov, q)
        bc = None if field.batch_cross is None else np.full(pos, m * m)
        bcov = None if field.batch_cov is None else np.full((p, p), m * m)
        sentence = (f"{self.name}: measured output moments passed through (E y^2 = {q:.4g}); "
                    "its positions and samples taken as uncorrelated, its law unknown")
        return Field(self.shape, axis, np.full(pos, m), np.full(pos, q), cov, bc, gaussian=False,
                     approximations=field.approximate(sentence), batch_cov=bcov, symmetric=False)

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        g = float(np.mean(grad.second)) * self.moments.gradient_gain
        pos = field_in.positions
        p = field_in.size
        cov = None if grad.cov is None else np.eye(p) * g
        bc = None if grad.batch_cross is None else np.zeros(pos)
        bcov = None if grad.batch_cov is None else np.zeros((p, p))
        return GradField(field_in.shape, field_in.channel_axis, np.full(pos, g), cov, bc,
                         batch_cov=bcov)
