r"""The exact law of a train-mode ``Dropout``'s output on a Gaussian input, for the activation
that follows it.

With :math:`x_t \sim N(m_t, v_t)` (jointly Gaussian over positions, a weight layer's output at
infinite width) and independent masks :math:`\xi_t \sim \mathrm{Bernoulli}(1-p)`, the output
:math:`y_t = \xi_t x_t/(1-p)` is :math:`0` with probability :math:`p` and
:math:`x'_t = x_t/(1-p) \sim N(m_t/(1-p), v_t/(1-p)^2)` otherwise: a mixture, not a Gaussian.  An
activation :math:`\phi` after it therefore has

.. math::

    E\phi(y_t)^k = p\,\phi(0)^k + (1-p)\,E\phi(x'_t)^k, \qquad
    E\phi(y_t)\phi(y_{t'}) = p^2\phi(0)^2 + p(1-p)\phi(0)\,(E\phi(x'_t) + E\phi(x'_{t'}))
    + (1-p)^2 E\phi(x'_t)\phi(x'_{t'})

for two different positions, or two samples of a batch (independent masks).  Backward, the mask
multiplies both :math:`\phi'(y)` and the gradient at the dropout's input,
:math:`g_x = \xi\,\phi'(y)\,g/(1-p)`, so the two are taken jointly (not as independent factors):
:math:`E g_{x,t}^2 = E\phi'(x'_t)^2\, G_t/(1-p)`, and between different positions
:math:`E g_{x,t}g_{x,t'} = E\phi'(x'_t)\phi'(x'_{t'})\, G_{tt'}`.  Exact at infinite width (the
Gaussianity of :math:`x`), for any activation; a Gaussian closure of the mixture is off by
+82% for tanh after ``Dropout(0.5)`` at :math:`q = 16` (0.731 against the exact 0.403).
"""

from __future__ import annotations

import numpy as np

from varprop.components.activations import Activation
from varprop.network.field import Field, GradField
from varprop.network.layers import elementwise

__all__ = ["DropoutLaw"]


class DropoutLaw:
    r"""The mixture law of ``Dropout(p)``'s output on the Gaussian field ``source`` (module
    docstring); ``output`` is the dropout's output field, which this law describes."""

    def __init__(self, p: float, source: Field) -> None:
        self.p = p
        self.source = source
        self.output: Field | None = None

    # --- the law hooks used by Nonlinearity (varprop.network.field) ---------------------------
    def describes(self, fld: Field) -> bool:
        """Whether ``fld`` is the dropout output this law was made for (no layer changed it)."""
        return fld.law is self and fld is self.output and not fld.gaussian

    def _scaled(self) -> tuple[np.ndarray, np.ndarray]:
        keep = 1.0 - self.p
        return self.source.mean / keep, self.source.variance / (keep * keep)

    def _mixture(self, f0: float, e_f: np.ndarray, pair: np.ndarray, rows: np.ndarray,
                 cols: np.ndarray) -> np.ndarray:
        r""":math:`E f(y_t) f(y_{t'})` over independent masks from :math:`f(0)`, :math:`E f(x')`
        and the Gaussian pair moment :math:`E f(x'_t) f(x'_{t'})` (module docstring)."""
        p, keep = self.p, 1.0 - self.p
        return p * p * f0 * f0 + p * keep * f0 * (e_f[rows] + e_f[cols]) + keep * keep * pair

    def _pair_arrays(self, act: Activation) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray, np.ndarray]:
        """``(rows, cols, m', v', c')``: the position pairs of the source's covariance and the
        scaled moments of :math:`x' = x/(1-p)`."""
        keep = 1.0 - self.p
        m, v = self._scaled()
        src = self.source
        rows, cols = np.triu_indices(src.size, 1)
        mean = src.mean.ravel()
        c = (np.asarray(src.cov)[rows, cols] - mean[rows] * mean[cols]) / (keep * keep)
        return rows, cols, m.ravel(), v.ravel(), c

    def nonlinearity_forward(self, act: Activation, fld: Field) -> Field | None:
        r""":math:`E\phi(y)`, :math:`E\phi(y)^2` and, when tracked, the covariances over the
        mixture (module docstring)."""
        if not self.describes(fld):
            return None
        p, keep = self.p, 1.0 - self.p
        m, v = self._scaled()
        mom = elementwise.position_moments(act, m.ravel(), v.ravel())
        phi0 = float(np.asarray(act.function(np.zeros(1)), dtype=float)[0])
        e_phi = p * phi0 + keep * mom[0]
        e_phi2 = p * phi0 * phi0 + keep * mom[1]
        cov = None
        if self.source.cov is not None:
            rows, cols, mm, vv, c = self._pair_arrays(act)
            P = self.source.size
            cov = np.zeros((P, P))
            if rows.size:
                ff = elementwise.pair_moments(act, mm[rows], mm[cols], vv[rows], vv[cols], c)[0]
                cov[rows, cols] = cov[cols, rows] = self._mixture(phi0, mom[0], ff, rows, cols)
            cov[np.arange(P), np.arange(P)] = e_phi2
        return Field(fld.shape, fld.channel_axis, e_phi.reshape(m.shape), e_phi2.reshape(m.shape),
                     cov, None, gaussian=False, approximations=fld.approximations)

    def nonlinearity_backward(self, act: Activation, grad: GradField, fld: Field
                              ) -> GradField | None:
        r"""The marginal moments of :math:`\phi'(y)\odot g` (what a reader of this position's
        gradient sees), with the factor ``(activation, g, law)`` passed down to the ``Dropout``
        below, which takes the mask jointly (module docstring)."""
        if not self.describes(fld):
            return None
        p, keep = self.p, 1.0 - self.p
        m, v = self._scaled()
        mom = elementwise.position_moments(act, m.ravel(), v.ravel())
        d0 = float(np.asarray(act.derivative_function(np.zeros(1)), dtype=float)[0])
        second = (p * d0 * d0 + keep * mom[3]).reshape(m.shape) * grad.second
        cov = None
        if grad.cov is not None:
            rows, cols, mm, vv, c = self._pair_arrays(act)
            P = self.source.size
            cov = np.zeros((P, P))
            if rows.size:
                dd = elementwise.pair_moments(act, mm[rows], mm[cols], vv[rows], vv[cols], c)[1]
                mixed = self._mixture(d0, mom[2], dd, rows, cols)
                cov[rows, cols] = cov[cols, rows] = mixed * np.asarray(grad.cov)[rows, cols]
            cov[np.arange(P), np.arange(P)] = second.ravel()
        return GradField(grad.shape, grad.channel_axis, second, cov, None, factor=(act, grad, self))

    def input_gradient(self, act: Activation, grad: GradField) -> GradField:
        r"""The gradient at the dropout's input from :math:`g` at the activation's output:
        :math:`E g_{x,t}^2 = E\phi'(x'_t)^2 G_t/(1-p)`, :math:`E g_{x,t} g_{x,t'} =
        E\phi'(x'_t)\phi'(x'_{t'}) G_{tt'}` (the masks are independent)."""
        keep = 1.0 - self.p
        m, v = self._scaled()
        d2 = elementwise.position_moments(act, m.ravel(), v.ravel())[3].reshape(m.shape)
        second = d2 * grad.second / keep
        src = self.source
        cov = None
        if grad.cov is not None:  # the law is made only where the forward covariance is tracked too
            rows, cols, mm, vv, c = self._pair_arrays(act)
            P = src.size
            cov = np.zeros((P, P))
            if rows.size:
                dd = elementwise.pair_moments(act, mm[rows], mm[cols], vv[rows], vv[cols], c)[1]
                cov[rows, cols] = cov[cols, rows] = dd * np.asarray(grad.cov)[rows, cols]
            cov[np.arange(P), np.arange(P)] = second.ravel()
        return GradField(src.shape, src.channel_axis, second, cov, None)
