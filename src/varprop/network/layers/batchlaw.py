r"""``Field.law`` of an activation's output over an exchangeable Gaussian batch, for a train-mode
``BatchNorm`` that follows it (post-activation placement ``Dense -> phi -> BatchNorm``).

The normalisation's Jacobian depends on :math:`x = \phi(z)`, and so does the activation's
derivative :math:`\phi'(z)` below it: the gradient at :math:`z` is :math:`D J\delta` with both
factors functions of the same batch, which per-entry moments cannot carry.  The activation's
output field therefore records its Gaussian input batch :math:`z \sim N(m\mathbf 1, aI +
b\mathbf 1\mathbf 1^\top)` (this law); the ``BatchNorm`` above computes its moments and both
backward rules by randomised quasi-Monte Carlo over that batch
(:func:`varprop._math.activated_batch.activated_batch`), and hands the joint rule to the
activation through ``GradField.factor``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from varprop._math.activated_batch import activated_batch
from varprop.components.activations import Activation
from varprop.network.field import Field, GradField

__all__ = ["ActivatedBatchLaw", "vectorised"]


Fn = Callable[[np.ndarray], np.ndarray]


def vectorised(fn: Callable[[np.ndarray], object]) -> Fn:
    """``fn`` as a float-valued function returning an array of its argument's shape."""
    return lambda x: np.broadcast_to(np.asarray(fn(x), dtype=float), np.shape(x))


@dataclass(frozen=True, eq=False)
class ActivatedBatchLaw:
    r""":math:`x = \phi(z)` entrywise, :math:`z` one channel's batch, :math:`N(m\mathbf 1, aI +
    b\mathbf 1\mathbf 1^\top)`: ``activation``, ``mean`` :math:`m`, ``var`` :math:`a + b` (an
    entry's variance) and ``cross`` :math:`b` (between two samples)."""

    activation: Activation
    mean: float
    var: float
    cross: float
    second: float
    batch_cross: float

    def describes(self, fld: Field) -> bool:
        """Whether ``fld`` is the activation's output this law was made for."""
        return (fld.law is self and not fld.gaussian and fld.size == 1
                and float(np.ravel(fld.second)[0]) == self.second
                and fld.batch_cross is not None
                and float(np.ravel(fld.batch_cross)[0]) == self.batch_cross)

    def integrals(self, n: int, eps: float) -> dict[str, tuple[float, float]]:
        """The QMC integrals for a batch of ``n`` and ``eps`` (cached per pair)."""
        return _integrals(self.activation, self.mean, self.var - self.cross, self.cross, n, eps)

    # an elementwise layer acting on this field: no exact rule here (the Gaussian closure applies)
    def nonlinearity_forward(self, activation: Activation, fld: Field) -> None:
        return None

    def nonlinearity_backward(self, activation: Activation, grad: GradField, fld: Field) -> None:
        return None

    def activation_backward(self, activation: Activation, grad: GradField, field_in: Field
                            ) -> GradField | None:
        r"""The gradient at :math:`z` when ``grad`` came from a ``BatchNorm`` over this law
        (``grad.factor = (n, eps, self, delta)``): :math:`E\delta_{z,b}^2 = \alpha E d_b^2
        (J^2)_{bb}`, :math:`E\delta_{z,b}\delta_{z,c} = \alpha E d_b d_c (J^2)_{bc}`,
        :math:`\alpha = G_D - G_C` of the gradient :math:`\delta` at the ``BatchNorm`` output."""
        n, eps, law, delta = grad.factor  # type: ignore[misc]
        if law is not self or activation is not self.activation or field_in.size != 1:
            return None
        if float(np.ravel(field_in.mean)[0]) != self.mean or float(field_in.variance.ravel()[0]) != self.var:
            return None
        r = self.integrals(n, eps)
        alpha = float(np.mean(delta.second) - np.mean(delta.batch_cross))
        cov = None if grad.cov is None else [[alpha * r["djjd"][0]]]
        return GradField(field_in.shape, field_in.channel_axis, alpha * r["djjd"][0], cov,
                         alpha * r["djjd_cross"][0])


@lru_cache(maxsize=256)
def _integrals(activation: Activation, mean: float, a: float, b: float, n: int, eps: float
               ) -> dict[str, tuple[float, float]]:
    return activated_batch(n, vectorised(activation.function), vectorised(activation.derivative_function),
                           mean, a, b, eps)
