r"""Gaussian moment rules of activations: the symbols, the :class:`MomentRules` container, exact
Gaussian expectations of polynomials, and the closed-form families of the registered activations.

For a pre-activation :math:`z \sim N(\mu, q)` a rule set gives :math:`E\phi(z)`,
:math:`E\phi(z)^2`, :math:`E\phi'(z)` and :math:`E\phi'(z)^2` as SymPy expressions in the
symbols ``mu`` and ``q``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import scipy.special
import sympy as sp

from varprop._math.scalar import lambdify_scalar

__all__ = ["MomentRules", "X", "MU", "Q", "MOMENTS", "gaussian_polynomial_expectation",
           "polynomial_rules"]

#: The activation's argument, the pre-activation mean and variance.
X = sp.Symbol("x", real=True)
MU = sp.Symbol("mu", real=True)
Q = sp.Symbol("q", positive=True)

MomentName = Literal["mean", "second", "deriv_mean", "deriv_second"]
MOMENTS: tuple[MomentName, ...] = ("mean", "second", "deriv_mean", "deriv_second")


def _Phi(x: sp.Expr) -> sp.Expr:
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def _pdf(x: sp.Expr) -> sp.Expr:
    return sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)


@dataclass(frozen=True)
class MomentRules:
    r"""Closed-form Gaussian moments of an activation as SymPy expressions in ``mu`` and ``q``.

    Attributes
    ----------
    mean, second, deriv_mean, deriv_second : sympy.Expr
        :math:`E\phi(z)`, :math:`E\phi(z)^2`, :math:`E\phi'(z)`, :math:`E\phi'(z)^2` for
        :math:`z \sim N(\mu, q)`.
    exact : bool
        True if the formulas are exact; False for approximations.
    zero_mean_only : bool
        True if ``second`` holds only at :math:`\mu = 0` (then all four are stated at
        :math:`\mu = 0`).
    approximation : str
        What was approximated (empty when exact).
    max_relative_error : dict
        For approximations: the declared bound on :math:`|\text{closed}/\text{exact} - 1|` of
        each moment over all :math:`q > 0` at :math:`\mu = 0` (measured on a dense grid
        :math:`10^{-4} \le q \le 10^{4}` and checked in the tests; both ends tend to the
        asymptotic values stated in the activation's docstring).
    """

    mean: sp.Expr
    second: sp.Expr
    deriv_mean: sp.Expr
    deriv_second: sp.Expr
    exact: bool = True
    zero_mean_only: bool = False
    approximation: str = ""
    max_relative_error: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, sp.Expr]:
        return {name: getattr(self, name) for name in MOMENTS}

    @cached_property
    def compiled(self) -> Callable[[float, float], tuple[float, float, float, float]]:
        """Scalar (``math``-module) evaluation of the four moments at ``(mu, q)``."""
        return lambdify_scalar((MU, Q), [getattr(self, m) for m in MOMENTS])  # inf beyond range

    @cached_property
    def vectorized(self) -> dict[str, Callable[[np.ndarray, float], np.ndarray]]:
        """NumPy evaluation of each moment for an array of means at one ``q``."""
        mods = [{"erf": scipy.special.erf}, "numpy"]
        out = {}
        for m in MOMENTS:
            f = sp.lambdify((MU, Q), getattr(self, m), modules=mods)
            out[m] = (lambda f: lambda mu, q: _beyond_range_as_inf(f, mu, q))(f)
        return out


def _beyond_range_as_inf(f: Callable[..., np.ndarray], mu: np.ndarray, q: float) -> np.ndarray:
    """``f(mu, q)`` in NumPy floats (``inf`` beyond the float range, not Python's OverflowError)."""
    with np.errstate(over="ignore", invalid="ignore"):
        values = f(np.asarray(mu, dtype=float), np.float64(q))
    return np.broadcast_to(values, np.shape(mu)).astype(float)


def _erf_scaled_rules(k: sp.Expr, *, exact_: bool, approximation: str = "",
                      offset: sp.Expr = sp.Integer(0), factor: sp.Expr = sp.Integer(1),
                      max_relative_error: Mapping[str, float] | None = None) -> MomentRules:
    r"""Rules for :math:`\phi(x) = c_0 + c_1 \operatorname{erf}(k x)` at :math:`\mu = 0`."""
    k2 = k**2
    e_mean = sp.Integer(0)
    e_second = 2 / sp.pi * sp.asin(2 * k2 * Q / (1 + 2 * k2 * Q))
    e_dmean = 2 * k / sp.sqrt(sp.pi) / sp.sqrt(1 + 2 * k2 * Q)
    e_dsecond = 4 * k2 / sp.pi / sp.sqrt(1 + 4 * k2 * Q)
    return MomentRules(
        mean=offset + factor * e_mean,
        second=offset**2 + 2 * offset * factor * e_mean + factor**2 * e_second,
        deriv_mean=factor * e_dmean,
        deriv_second=factor**2 * e_dsecond,
        exact=exact_,
        zero_mean_only=True,
        approximation=approximation,
        max_relative_error=dict(max_relative_error or {}),
    )


def _leaky_rules(alpha: sp.Expr) -> MomentRules:
    s = sp.sqrt(Q)
    r = MU / s
    return MomentRules(
        mean=MU * _Phi(r) + s * _pdf(r) + alpha * (MU * _Phi(-r) - s * _pdf(r)),
        second=(MU**2 + Q) * _Phi(r) + MU * s * _pdf(r)
        + alpha**2 * ((MU**2 + Q) * _Phi(-r) - MU * s * _pdf(r)),
        deriv_mean=_Phi(r) + alpha * _Phi(-r),
        deriv_second=_Phi(r) + alpha**2 * _Phi(-r),
    )


def gaussian_polynomial_expectation(poly: sp.Expr | sp.Poly, mu: sp.Expr = MU, q: sp.Expr = Q) -> sp.Expr:
    r""":math:`E[p(z)]` for a polynomial ``p`` in ``x`` and :math:`z \sim N(\mu, q)`:
    :math:`\sum_k c_k m_k` with the raw moments :math:`m_k = E z^k` from
    :math:`m_0 = 1`, :math:`m_1 = \mu`, :math:`m_k = \mu m_{k-1} + (k-1) q\, m_{k-2}` (Stein's
    lemma), in polynomial arithmetic (no symbolic expansion of :math:`(\mu + \sqrt q\, t)^k`);
    at :math:`\mu = 0` directly :math:`m_{2j} = (2j-1)!!\, q^j`, odd moments 0."""
    m, s = sp.Dummy("m"), sp.Dummy("s")
    p = poly if isinstance(poly, sp.Poly) else sp.Poly(poly, X)
    domain = p.get_domain()
    if mu == 0:
        terms = {(k // 2,): coeff * sp.factorial2(k - 1) for (k,), coeff in p.terms() if k % 2 == 0}
        total = sp.Poly.from_dict(terms or {(0,): 0}, s, domain=domain)
        return sp.expand(total.as_expr().xreplace({s: q}))
    m_poly = sp.Poly(m, m, s, domain=domain)
    moments = [sp.Poly(1, m, s, domain=domain), m_poly]
    for k in range(2, p.degree() + 1):
        moments.append(moments[-1] * m_poly + moments[-2] * sp.Poly((k - 1) * s, m, s, domain=domain))
    total = sp.Poly(0, m, s, domain=domain)
    for (k,), coeff in p.terms():
        total += moments[k] * sp.Poly(coeff, m, s, domain=domain)
    return sp.expand(total.as_expr().xreplace({m: mu, s: q}))


def polynomial_rules(poly: sp.Expr, mu: sp.Expr = MU, **kwargs: object) -> MomentRules:
    r"""Exact Gaussian moments of a polynomial :math:`p(x)`: :math:`E p`, :math:`E p^2`,
    :math:`E p'`, :math:`E p'^2` for :math:`z \sim N(\mu, q)` (``kwargs`` go to
    :class:`MomentRules`); ``mu=0`` states them at :math:`\mu = 0` only (``zero_mean_only``,
    polynomials in :math:`q` alone: far smaller for high degrees)."""
    p = sp.Poly(poly, X)
    d = p.diff(X)
    if mu == 0:
        kwargs["zero_mean_only"] = True
    return MomentRules(
        mean=gaussian_polynomial_expectation(p, mu),
        second=gaussian_polynomial_expectation(p**2, mu),
        deriv_mean=gaussian_polynomial_expectation(d, mu),
        deriv_second=gaussian_polynomial_expectation(d**2, mu),
        **kwargs,  # type: ignore[arg-type]
    )
