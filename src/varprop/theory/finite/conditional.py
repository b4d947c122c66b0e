r"""Mean and variance of a per-network statistic from the law of :math:`\hat q_l`, to :math:`O(1/n)`.

Given layer :math:`l-1`, the units :math:`z_{l,i}` are i.i.d. with variance :math:`\hat q_l`
(Gaussian for Gaussian weights; otherwise with fourth cumulant :math:`\hat\kappa_l = O(1/n)`).
A statistic of the :math:`n = n_l` units :math:`y_i = \psi(z_{l,i})` (:math:`\psi = \phi` for
activations, the identity for pre-activations) has, with the powers
:math:`P_k(q) = E\psi(\sqrt q\,\xi)^k`,

* ``mean_square`` :math:`X = \tfrac1n\sum_i y_i^2`:
  :math:`E[X\mid\hat q] = h(\hat q) = P_2`, :math:`\operatorname{Var}[X\mid\hat q] = w(\hat q) = (P_4 - P_2^2)/n`;
* ``variance`` (the across-unit variance :math:`Y = \tfrac{1}{n-d}\sum_i(y_i - \bar y)^2`,
  ``ddof`` :math:`d`): with :math:`u = P_2 - P_1^2`, the central fourth moment :math:`\mu_4` and
  :math:`c = (n-1)/(n-d)`, :math:`h = c\,u` and
  :math:`w = c^2\big(\mu_4/n - u^2\tfrac{n-3}{n(n-1)}\big)` (the variance of a sample variance).

The delta method over :math:`\hat q` with mean :math:`m_l` and variance :math:`v_l`
(:func:`varprop.theory.finite.expansion.finite_width_moments`) gives

.. math::

    EX = h(m) + \tfrac12 h''(m)\,v + \tfrac{\bar\kappa}{6}\sum_k \frac{\partial h}{\partial P_k}P_k''(m),
    \qquad
    \operatorname{Var}X = h'(m)^2 v + w(m) + \tfrac12 w''(m)\,v ,

the last sum the Edgeworth correction of the conditional moments by the average fourth cumulant
:math:`\bar\kappa` of the units (non-Gaussian weights).  Neglected: :math:`O(1/n^2)`.  For
:math:`h` linear and :math:`w` quadratic in :math:`q` (linear and ReLU-class activations) the
two formulas are exact given exact :math:`m, v`.  Derivatives in :math:`q` are central differences
of step :math:`10^{-3} m` on quadrature values accurate to :math:`10^{-13}` (error about
:math:`10^{-6}` relative on the :math:`O(1/n)` terms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from varprop._math.quadrature import gaussian_expectations
from varprop.components.activations import Activation

__all__ = ["DeltaMoments", "delta_moments", "powers"]

_EPS = 1e-3


def powers(act: Activation | None, q: float) -> np.ndarray:
    r""":math:`(P_1, P_2, P_3, P_4)` at :math:`q` (``act=None``: the identity, closed form)."""
    if act is None:
        return np.array([0.0, q, 0.0, 3 * q * q])
    f = act.function

    def stack(x: np.ndarray) -> np.ndarray:
        y = np.broadcast_to(f(x), x.shape)
        return np.stack([y, y * y, y ** 3, y ** 4])

    return np.asarray(gaussian_expectations([stack], 0.0, q, act.kinks)[0], dtype=float)


def _h_w(P: np.ndarray, statistic: str, n: int, ddof: int) -> tuple[float, float, np.ndarray]:
    """h, w and dh/dP at the powers ``P``."""
    p1, p2, p3, p4 = P
    if statistic == "mean_square":
        return p2, (p4 - p2 * p2) / n, np.array([0.0, 1.0, 0.0, 0.0])
    c = (n - 1) / (n - ddof)
    u = p2 - p1 * p1
    mu4 = p4 - 4 * p1 * p3 + 6 * p1 * p1 * p2 - 3 * p1 ** 4
    w = c * c * (mu4 / n - u * u * (n - 3) / (n * (n - 1)))
    return c * u, w, c * np.array([-2 * p1, 1.0, 0.0, 0.0])


@dataclass(frozen=True)
class DeltaMoments:
    r""":math:`EX` (``mean``) and :math:`\operatorname{Var}X = ` ``between + within``:
    ``between`` :math:`= h'(m)^2 v \approx \operatorname{Var}E[X\mid\hat q]`, ``within``
    :math:`= w(m) + w''(m)v/2 \approx E\operatorname{Var}[X\mid\hat q]`."""

    mean: float
    between: float
    within: float

    @property
    def variance(self) -> float:
        return self.between + self.within


def delta_moments(act: Activation | None, statistic: str, n: int, ddof: int, m: float, v: float,
                  kappa: float = 0.0) -> DeltaMoments:
    r"""The moments to :math:`O(1/n)` (module docstring); ``statistic`` ``"mean_square"`` or
    ``"variance"``, ``act=None`` for pre-activations."""
    step = _EPS * m
    P = np.array([powers(act, m + j * step) for j in (-1, 0, 1)])
    hw = [_h_w(row, statistic, n, ddof) for row in P]
    h = np.array([x[0] for x in hw])
    w = np.array([x[1] for x in hw])

    def d1(y: np.ndarray) -> float:
        return float((y[2] - y[0]) / (2 * step))

    def d2(y: np.ndarray) -> float:
        return float((y[0] - 2 * y[1] + y[2]) / (step * step))

    P2nd = np.array([d2(P[:, k]) for k in range(4)])
    mean = h[1] + d2(h) * v / 2 + kappa / 6 * float(hw[1][2] @ P2nd)
    return DeltaMoments(float(mean), float(d1(h) ** 2 * v), float(max(w[1] + d2(w) * v / 2, 0.0)))
