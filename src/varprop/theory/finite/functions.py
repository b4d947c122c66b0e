r"""The Gaussian functions of an activation that the :math:`1/n` expansion needs, with their
derivatives in the variance :math:`q`.

For :math:`\xi \sim N(0, 1)` and :math:`z = \sqrt q\,\xi`,

.. math::

    \mu(q) = E\phi(z), \quad f(q) = E\phi(z)^2, \quad g(q) = \operatorname{Var}\phi(z)^2
    = E\phi(z)^4 - f(q)^2, \quad h(q) = E\phi'(z)^2, \quad
    g_2(q) = \operatorname{Var}\phi'(z)^2, \quad c(q) = \operatorname{Cov}(\phi'(z)^2, \phi(z)^2).

Derivatives in :math:`q` are taken by differentiating the Gaussian density, not the activation
(so kinks such as ReLU's need no :math:`\phi''` and no Dirac delta): with
:math:`p_q(x) = e^{-x^2/2q}/\sqrt{2\pi q}`,
:math:`\partial_q p_q = p_q\,\mathrm{He}_2(\xi)/(2q)` and
:math:`\partial_q^2 p_q = p_q\,\mathrm{He}_4(\xi)/(4q^2)`, where :math:`\xi = x/\sqrt q`,
:math:`\mathrm{He}_2 = \xi^2 - 1`, :math:`\mathrm{He}_4 = \xi^4 - 6\xi^2 + 3`; hence for any
:math:`F`

.. math::

    \frac{d}{dq} E F(\sqrt q \xi) = \frac{E[(F(\sqrt q\xi) - F(0))\,\mathrm{He}_2(\xi)]}{2q},
    \qquad
    \frac{d^2}{dq^2} E F(\sqrt q \xi) = \frac{E[(F(\sqrt q\xi) - F(0))\,\mathrm{He}_4(\xi)]}{4q^2}

(subtracting the constant :math:`F(0)`, whose Hermite projections vanish, removes the
cancellation that would otherwise cost a factor :math:`1/q` of relative accuracy at small
:math:`q`).  All expectations are one composite Gauss--Legendre quadrature
(:mod:`varprop._math.quadrature`, relative accuracy about :math:`10^{-13}` of the integrand's
scale), so every registered activation and every custom expression works; the remaining relative
error of the derivatives grows like :math:`10^{-15}/q` at small :math:`q`.

For activations positively homogeneous of degree 1 (linear, ReLU, leaky ReLU, ``abs``:
``traits.exact_at_finite_width``) :math:`f(q) = f(1)\,q` and :math:`h` is constant, so
:math:`f'' = h' = h'' = 0` are set exactly (not to quadrature rounding): that is what makes
their second moments exact at every width.  Their functions are computed once at :math:`q = 1`
and scaled exactly (:math:`\mu \propto q^{1/2}`, :math:`f, c \propto q`, :math:`g, E\phi^4
\propto q^2`, :math:`h, g_2` constant), so any :math:`q > 0` in the float range works.  For other
activations the derivatives lose accuracy below :data:`MIN_VARIANCE` (relative error about
:math:`10^{-15}/q` for :math:`f'`, worse for second derivatives: tanh's :math:`h''` is off by a
factor 5 at :math:`q = 10^{-9}`), and such :math:`q` is refused with a
:class:`~varprop.VarpropError` rather than answered wrongly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from varprop._math.quadrature import gaussian_expectations
from varprop.components.activations import Activation
from varprop.errors import VarpropError

__all__ = ["FunctionValues", "gaussian_functions", "MIN_VARIANCE", "MAX_VARIANCE"]

#: The smallest positive variance :math:`q` at which the Gaussian functions of an activation that
#: is not degree-1 homogeneous are evaluated (their quadrature derivatives are accurate to about
#: :math:`10^{-4}` relative there; below it they are refused).
MIN_VARIANCE = 1e-6
#: The largest variance at which they are evaluated (:math:`q^2` must fit in a float).
MAX_VARIANCE = 1e150


@dataclass(frozen=True)
class FunctionValues:
    r"""The Gaussian functions of one activation at one variance ``q`` (see the module docstring).

    ``f, f1, f2``: :math:`f, f', f''`; ``g``: :math:`g = E\phi^4 - f^2`; ``g2nd``: :math:`g''`;
    ``u4``: :math:`E\phi^4`; ``mu, mu2``: :math:`\mu, \mu''`; ``h, h1, h2``: :math:`h, h', h''`;
    ``g2``: :math:`\operatorname{Var}\phi'^2`; ``c``: :math:`\operatorname{Cov}(\phi'^2, \phi^2)`.
    (All of :math:`z = \sqrt q\,\xi`; for fw-exact's laws: given :math:`\hat q_l = q` the
    activations of layer :math:`l` are i.i.d. :math:`\phi(\sqrt q\,\xi)` for Gaussian weights.)
    """

    q: float
    f: float
    f1: float
    f2: float
    g: float
    g2nd: float
    u4: float
    mu: float
    mu2: float
    h: float
    h1: float
    h2: float
    g2: float
    c: float


def _finite_or_zero(v: float) -> float:
    return v if math.isfinite(v) else 0.0


def _stack(act: Activation, q: float):
    phi0 = _finite_or_zero(float(np.asarray(act.function(np.array([0.0])))[0]))
    d0 = _finite_or_zero(float(np.asarray(act.derivative_function(np.array([0.0])))[0]))
    root = math.sqrt(q)

    def stack(x: np.ndarray) -> np.ndarray:
        t = x / root
        t2 = t * t
        he2, he4 = t2 - 1.0, t2 * t2 - 6.0 * t2 + 3.0
        p = np.broadcast_to(act.function(x), x.shape)
        d = np.broadcast_to(act.derivative_function(x), x.shape)
        p2, d2 = p * p, d * d
        p2c, d2c = p2 - phi0 * phi0, d2 - d0 * d0
        return np.stack([p, p2, p2 * p2, d2, d2 * d2, p2 * d2, (p - phi0) * he4,
                         p2c * he2, p2c * he4, d2c * he2, d2c * he4, (p2 * p2 - phi0**4) * he4])

    return stack


@lru_cache(maxsize=4096)
def _values(act: Activation, q: float) -> FunctionValues:
    if q == 0.0:  # every pre-activation is exactly 0: no fluctuation to expand around
        p = float(np.asarray(act.function(np.array([0.0])))[0])
        d = float(np.asarray(act.derivative_function(np.array([0.0])))[0])
        return FunctionValues(0.0, p * p, 0.0, 0.0, 0.0, 0.0, p**4, p, 0.0, d * d, 0.0, 0.0, 0.0,
                              0.0)
    if not math.isfinite(q):
        raise VarpropError(f"the pre-activation variance left the float range (q = {q}): the 1/n "
                           "expansion needs finite variances; reduce depth or rescale")
    if act.traits.exact_at_finite_width and q != 1.0:  # degree 1: exact scaling from q = 1
        one = _values(act, 1.0)
        r, s = q, math.sqrt(q)
        r32 = q ** -1.5 if q > 1e-200 else math.inf  # (no ZeroDivisionError at tiny q)
        with np.errstate(over="ignore"):
            out = FunctionValues(q, one.f * r, one.f1, 0.0, one.g * r * r, one.g2nd, one.u4 * r * r,
                                 one.mu * s, one.mu2 * r32, one.h, 0.0, 0.0, one.g2, one.c * r)
        if not all(map(math.isfinite, (out.f, out.g, out.u4, out.mu2))):
            raise VarpropError(f"the Gaussian functions of {act.name} (E phi^2 ~ q, E phi^4 ~ "
                               f"q^2, mu'' ~ q^-3/2) exceed the float range at pre-activation "
                               f"variance {q:.3g}: reduce depth or rescale")
        return out
    if q > MAX_VARIANCE:
        raise VarpropError(
            f"the pre-activation variance q = {q:.3g} is above {MAX_VARIANCE:g}, where the 1/n "
            f"expansion of {act.name} is not evaluated (Var(q), of order q^2/n, and for an "
            "activation growing linearly E phi(z)^4 ~ q^2 leave the float range); rescale the "
            "input and bias variances")
    if q < MIN_VARIANCE:
        raise VarpropError(
            f"the pre-activation variance q = {q:.3g} is below {MIN_VARIANCE:g}, where the "
            f"q-derivatives of {act.name}'s Gaussian functions (by quadrature, relative error "
            "about 1e-15/q and worse) are no longer accurate: the 1/n expansion is not evaluated "
            "there (the signal has died out; the mean field of predict_variance still applies)")
    e = gaussian_expectations([_stack(act, q)], 0.0, q, act.kinks)[0]
    mu, f, u4, h, h4, cross, mu_he4, f_he2, f_he4, h_he2, h_he4, u_he4 = map(float, e)
    f1, f2 = f_he2 / (2 * q), f_he4 / (4 * q * q)
    values = {"q": q, "f": f, "f1": f1, "f2": f2, "g": max(u4 - f * f, 0.0),
              "g2nd": u_he4 / (4 * q * q) - 2.0 * (f1 * f1 + f * f2), "u4": u4, "mu": mu,
              "mu2": mu_he4 / (4 * q * q), "h": h, "h1": h_he2 / (2 * q),
              "h2": h_he4 / (4 * q * q), "g2": max(h4 - h * h, 0.0), "c": cross - h * f}
    if act.traits.exact_at_finite_width:  # f = f(1) q, g = g(1) q^2, h constant: exactly
        values.update(f1=f / q, f2=0.0, h1=0.0, h2=0.0, g2nd=2.0 * values["g"] / (q * q))
    if not all(map(math.isfinite, values.values())):
        raise VarpropError(f"a Gaussian expectation of {act.name} at q = {q:g} is beyond the "
                           "float range; the 1/n expansion cannot be evaluated there")
    return FunctionValues(**values)


def gaussian_functions(act: Activation, q: float) -> FunctionValues:
    r""":class:`FunctionValues` of ``act`` at variance ``q >= 0`` (cached per ``(act, q)``).

    At ``q == 0`` the values of :math:`\phi(0)` with zero derivatives (the expansion multiplies
    them by fluctuations that are exactly zero there).
    """
    return _values(act, float(q))
