r"""Train-mode ``BatchNorm`` on an activation's output (post-activation placement ``Dense -> phi
-> BatchNorm``): the normalisation's Jacobian depends on :math:`x = \phi(z)`, and so does the
activation's derivative :math:`\phi'(z)` below it, so the gradient at :math:`z`, :math:`D J
\delta`, has both factors functions of the same batch, which per-entry moments cannot carry.

The activation's output records its Gaussian pre-activation (``Field.pre_activation = (z,
phi)``); one channel's batch is :math:`z \sim N(m\mathbf 1, aI + b\mathbf 1\mathbf 1^\top)` with
:math:`a + b` the variance of an entry and :math:`b` the covariance between samples.  The
``BatchNorm`` computes its moments and both backward rules (at :math:`x`, and jointly at
:math:`z`, returned through ``GradField.preactivation``) by randomised quasi-Monte Carlo over that
batch (:func:`varprop._math.activated_batch.activated_batch`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from varprop._math.activated_batch import activated_batch
from varprop.components.activations import Activation
from varprop.network.field import Field

__all__ = ["Fn", "activated_integrals", "vectorised"]

Fn = Callable[[np.ndarray], np.ndarray]


def vectorised(fn: Callable[[np.ndarray], object]) -> Fn:
    """``fn`` as a float-valued function returning an array of its argument's shape."""
    return lambda x: np.broadcast_to(np.asarray(fn(x), dtype=float), np.shape(x))


def activated_integrals(fld: Field, n: int, eps: float
                        ) -> tuple[Activation, dict[str, tuple[float, float]]] | None:
    """``(phi, integrals)`` for a field :math:`x = \\phi(z)` over vectors whose Gaussian
    pre-activation ``z`` tracks the between-sample moment, else ``None``."""
    pre = fld.pre_activation
    if pre is None or not isinstance(pre[1], Activation):
        return None
    z, act = pre
    if not z.gaussian or z.size != 1 or z.batch_cross is None or fld.size != 1:
        return None
    m = float(np.ravel(z.mean)[0])
    var = float(np.ravel(z.second)[0]) - m * m
    cross = float(np.ravel(z.batch_cross)[0]) - m * m
    return act, _integrals(act, m, var - cross, cross, n, eps)


@lru_cache(maxsize=256)
def _integrals(act: Activation, mean: float, a: float, b: float, n: int, eps: float
               ) -> dict[str, tuple[float, float]]:
    return activated_batch(n, vectorised(act.function), vectorised(act.derivative_function),
                           mean, a, b, eps)
