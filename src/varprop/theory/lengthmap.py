r"""The length map :math:`q \mapsto \sigma_w^2 E[\phi(z)^2]_{z \sim N(0, q)} + \sigma_b^2`, its
fixed points and the correlation map (the numerics behind :mod:`varprop.theory.criticality`).

The :math:`\phi` step of the length map is the :class:`~varprop.layers.Nonlinearity` layer's
mean-field rule applied to a centred Gaussian state, with the activation's exact moments
(``Activation.gaussian_moments(0, q, method="exact")``: closed forms where exact, quadrature
otherwise); the dense step is :math:`\sigma_w^2 x + \sigma_b^2` with the per-fan-in weight variance
:math:`\sigma_w^2`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from varprop._math.quadrature import gaussian_expectations
from varprop._util.lazy import lazy_module
from varprop.components.activations import Activation
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.network.state import MomentState
from varprop.theory.moments import Moments

#: SymPy, the moment rules' symbols and scipy.optimize, imported at first use
#: (:mod:`varprop._util.lazy`): derivatives of the expression, root finding
sp = lazy_module("sympy")
rule_symbols = lazy_module("varprop.components.moment_rules")
optimize = lazy_module("scipy.optimize")

__all__ = ["dsecond_dq"]

Q_MAX = 1e12  # above this the fixed-point search gives up (q* = inf)
Q_MIN = 1e-14  # below this a fixed point is taken to be q* = 0


class _ExactMoments(Moments):
    """The library's ``exact`` moments, with the length map's own centred moments (quadrature
    that stays accurate at the tiny and huge variances a fixed-point search visits)."""

    def zero_mean(self, act: Activation) -> Callable[[float], tuple[float, float, float]]:
        def moments(q: float) -> tuple[float, float, float]:
            m = _moments(act, q)
            return m[0], m[1], m[3]
        return moments


_EXACT = _ExactMoments("exact")


def _moments(act: Activation, q: float) -> tuple[float, float, float, float]:
    return act.gaussian_moments(0.0, float(q), method="exact")


def _second(act: Activation, q: float) -> float:
    r""":math:`E\phi(z)^2`, :math:`z \sim N(0, q)`: the nonlinearity's mean-field rule on a centred
    Gaussian state (the length map's :math:`\phi` step)."""
    return Nonlinearity(act).mean_field(MomentState(0.0, q, 0.0, centred=True), _EXACT).second  # type: ignore[return-value]


def dsecond_dq(act: Activation, q: float) -> float:
    r""":math:`\frac{d}{dq} E[\phi(z)^2]` for :math:`z \sim N(0, q)`.

    By Gaussian integration by parts (Price's theorem),
    :math:`\frac{d}{dq}E h(z) = \tfrac12 E h''(z) = E[h(z)(z^2 - q)]/(2q^2)`; the last form needs
    no derivative of :math:`h = \phi^2` and so is exact for kinked activations.  At :math:`q = 0`
    the limit :math:`\phi'(0)^2 + \phi(0)\phi''(0)` is used; at a kink at 0 with
    :math:`\phi(0) = 0` (ReLU6, ELU, SELU) the average of the one-sided squares,
    :math:`(\phi'(0^+)^2 + \phi'(0^-)^2)/2` (half of the Gaussian mass on each side; the square
    of the averaged slope would be wrong).
    """
    if q <= 0.0 and 0.0 in act.kinks and float(act.function(np.zeros(1))[0]) == 0.0:
        sides = act.derivative_function(np.array([-1e-300, 1e-300]))
        return float(np.mean(np.square(sides)))
    if q <= 0.0:
        d1, d2 = sp.diff(act.expr, rule_symbols.X), sp.diff(act.expr, rule_symbols.X, 2)
        try:
            val = float((d1**2 + act.expr * d2).subs(rule_symbols.X, 0))
        except (TypeError, ValueError):
            eps = 1e-6
            f = act.function
            val = float(np.mean([(f(np.array([eps]))[0] ** 2 - f(np.array([0.0]))[0] ** 2) / eps,
                                 (f(np.array([-eps]))[0] ** 2 - f(np.array([0.0]))[0] ** 2) / eps]))
        return val
    f = act.function
    r = math.sqrt(q)

    def integrand(x: np.ndarray) -> np.ndarray:
        # E[h(z)(z^2 - q)] / (2 q^2) with everything scaled by sqrt(q): no 2 q^2 underflowing
        # to 0 (q = 1e-200) nor x * x overflowing (q = 1e307)
        u, v = f(x) / r, x / r
        return u * u * (v * v - 1.0) / 2.0

    return float(gaussian_expectations([integrand], 0.0, q, act.kinks)[0])


def _second_over_q(act: Activation, q: float) -> float:
    r""":math:`E[\phi(z)^2]/q` for :math:`z \sim N(0, q)`, as :math:`E[(\phi(z)/\sqrt q)^2]` (no
    subnormal :math:`\phi(z)^2` at tiny :math:`q`)."""
    f, r = act.function, math.sqrt(q)
    return float(gaussian_expectations([lambda x: (f(x) / r) ** 2], 0.0, q, act.kinks)[0])



def _depth_scale(factor: float) -> float:
    if not math.isfinite(factor):
        return math.nan
    if factor >= 1.0 - 1e-12:
        return math.inf
    if factor <= 0.0:
        return 0.0
    return -1.0 / math.log(factor)


def _fixed_point(act: Activation, s: float, b2: float, q0: float = 1.0) -> float:
    """The fixed point of ``q -> s E phi^2(q) + b2`` that the recursion reaches from ``q0``.

    The map is increasing, so iterating from :math:`q_0` moves monotonically to the nearest root
    in the direction of :math:`f(q_0) - q_0`: scan in steps of 4 for a sign change, then
    :func:`scipy.optimize.brentq`.  ``inf`` if no root lies below :math:`10^{12}` (the variance
    grows without bound), 0 if none lies above :math:`10^{-14}`.
    """
    def h(q: float) -> float:
        return s * _second(act, q) + b2 - q

    h0 = h(q0)
    if h0 == 0.0:
        return q0
    if h0 > 0.0:
        lo, hi = q0, 4.0 * q0
        while h(hi) > 0.0:
            if hi > Q_MAX:
                return math.inf
            lo, hi = hi, 4.0 * hi
    else:
        hi, lo = q0, q0 / 4.0
        while h(lo) <= 0.0:
            if lo < Q_MIN:
                return 0.0
            hi, lo = lo, lo / 4.0
    return optimize.brentq(h, lo, hi, xtol=1e-15, rtol=1e-13, maxiter=200)



def _chaotic_correlation(act: Activation, s: float, b2: float, q: float) -> tuple[float, float]:
    r"""The stable fixed point :math:`c^* < 1` of the correlation map and :math:`\chi_c` there."""
    def g(c: float) -> float:
        return (s * act.correlated_moments(0.0, q, c * q)[0] + b2) / q - c

    g0 = g(0.0)
    if g0 <= 0.0:
        c_star = 0.0
    else:
        hi = 1.0 - 1e-3
        while g(hi) >= 0.0 and hi < 1.0 - 1e-9:
            hi = 1.0 - (1.0 - hi) / 10.0
        c_star = optimize.brentq(g, 0.0, hi, xtol=1e-12)
    chi_c = s * act.correlated_moments(0.0, q, c_star * q)[1]
    return c_star, chi_c


def _zero_fixed_point_slope(act: Activation, b2: float) -> float | None:
    """``phi'(0)**2`` if ``q = 0`` is a fixed point (``b2 == 0`` and ``phi(0) == 0``), else None."""
    if b2 != 0.0:
        return None
    m = _moments(act, 0.0)
    if m[1] != 0.0 or not m[3] > 0.0:
        return None
    return m[3]


