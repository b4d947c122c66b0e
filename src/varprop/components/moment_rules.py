r"""Gaussian moment rules of activations: the symbols, exact Gaussian expectations of
polynomials, and the closed-form families of the registered activations (the container
:class:`MomentRules` is defined in :mod:`varprop.components.closed_forms`, which imports no
SymPy, and re-exported here).

For a pre-activation :math:`z \sim N(\mu, q)` a rule set gives :math:`E\phi(z)`,
:math:`E\phi(z)^2`, :math:`E\phi'(z)` and :math:`E\phi'(z)^2` as SymPy expressions in the
symbols ``mu`` and ``q``.  This module imports SymPy: the numeric path binds it lazily
(:func:`varprop._util.lazy.lazy_module`).
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from varprop._math import gauss_exp
from varprop.components.closed_forms import MOMENTS, MomentName, MomentRules, symbols

__all__ = ["MomentRules", "X", "MU", "Q", "MOMENTS", "MomentName",
           "gaussian_polynomial_expectation", "gauss_exp_below_zero", "gauss_exp_excess",
           "exponential_linear_rules", "clipped_linear_rules", "gelu_rules", "polynomial_rules"]

#: The activation's argument, the pre-activation mean and variance.
X, MU, Q = symbols()


def _Phi(x: sp.Expr) -> sp.Expr:
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def _pdf(x: sp.Expr) -> sp.Expr:
    return sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)


def _erf_scaled_rules(k: sp.Expr, *, exact_: bool, approximation: str = "",
                      offset: sp.Expr | None = None, factor: sp.Expr | None = None,
                      max_relative_error: Mapping[str, float] | None = None) -> MomentRules:
    r"""Rules for :math:`\phi(x) = c_0 + c_1 \operatorname{erf}(k x)` at :math:`\mu = 0`
    (``offset`` :math:`c_0` 0 and ``factor`` :math:`c_1` 1 unless given)."""
    offset = sp.Integer(0) if offset is None else offset
    factor = sp.Integer(1) if factor is None else factor
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


# ----------------------------------------------------------------------------------------------
# Closed forms of the exponential-linear units, the clipped linear units and GELU
# ----------------------------------------------------------------------------------------------

class gauss_exp_below_zero(sp.Function):  # noqa: N801  (SymPy functions are lower case)
    r""":math:`E[e^{kz}1\{z < 0\}]` for :math:`z \sim N(\mu, q)` (arguments ``k, mu, q``):
    :math:`e^{k\mu + k^2 q/2}\,\Phi(-(\mu + k q)/\sqrt q)` by completing the square; evaluated
    by :func:`varprop._math.gauss_exp.gauss_exp_below_zero` (no ``inf * 0``, no cancellation
    at large :math:`q`)."""

    nargs = 3
    _imp_ = staticmethod(gauss_exp.gauss_exp_below_zero)

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return _gauss_exp_below_zero(*self.args)._eval_evalf(prec)


class gauss_exp_excess(sp.Function):  # noqa: N801
    r""":math:`E[(e^{kz} - 1)1\{z < 0\}]` (arguments ``k, mu, q``), evaluated by
    :func:`varprop._math.gauss_exp.gauss_exp_excess` without the cancellation of its two terms
    as :math:`q \to 0`."""

    nargs = 3
    _imp_ = staticmethod(gauss_exp.gauss_exp_excess)

    def _eval_evalf(self, prec: int) -> sp.Expr:
        k, mu, q = self.args
        return (_gauss_exp_below_zero(k, mu, q) - _Phi(-mu / sp.sqrt(q)))._eval_evalf(prec)


def _gauss_exp_below_zero(k: sp.Expr, mu: sp.Expr = MU, q: sp.Expr = Q) -> sp.Expr:
    r""":math:`E[e^{k z} 1\{z < 0\}] = e^{k\mu + k^2 q/2}\,\Phi(-(\mu + k q)/\sqrt q)` in
    elementary functions (the stated closed form)."""
    return sp.exp(k * mu + k**2 * q / 2) * _Phi(-(mu + k * q) / sp.sqrt(q))


def exponential_linear_rules(scale: sp.Expr, alpha: sp.Expr, c: sp.Expr) -> MomentRules:
    r"""Exact rules at every :math:`\mu` for :math:`\phi(x) = \lambda x` (:math:`x > 0`),
    :math:`\lambda\alpha(e^{c x} - 1)` (:math:`x \le 0`): ELU (:math:`\lambda = c = 1`), SELU
    (Klambauer et al. 2017), CELU (:math:`\lambda = 1`, :math:`c = 1/\alpha`; Barron 2017).

    With :math:`s = \sqrt q`, :math:`r = \mu/s`, :math:`E_k = E[e^{kz}1\{z<0\}]`
    (:func:`_gauss_exp_below_zero`) and the positive part of ReLU:

    .. math::

        E\phi = \lambda\left[\mu\Phi(r) + s\varphi(r) + \alpha(E_c - \Phi(-r))\right],\quad
        E\phi^2 = \lambda^2\left[(\mu^2 + q)\Phi(r) + \mu s\varphi(r)
                  + \alpha^2(E_{2c} - 2E_c + \Phi(-r))\right],

    :math:`E\phi' = \lambda[\Phi(r) + \alpha c E_c]`,
    :math:`E\phi'^2 = \lambda^2[\Phi(r) + \alpha^2 c^2 E_{2c}]`.
    """
    s = sp.sqrt(Q)
    r = MU / s
    lam2 = scale**2

    def forms(e1: sp.Expr, e2: sp.Expr, g1: sp.Expr, g2: sp.Expr) -> dict[str, sp.Expr]:
        # g_k = e_k - Phi(-r) = E[(e^{kz} - 1) 1{z<0}]; e_2c - 2 e_c + Phi(-r) = g_2c - 2 g_c
        return {"mean": scale * (MU * _Phi(r) + s * _pdf(r) + alpha * g1),
                "second": lam2 * ((MU**2 + Q) * _Phi(r) + MU * s * _pdf(r)
                                  + alpha**2 * (g2 - 2 * g1)),
                "deriv_mean": scale * (_Phi(r) + alpha * c * e1),
                "deriv_second": lam2 * (_Phi(r) + alpha**2 * c**2 * e2)}

    e1, e2 = _gauss_exp_below_zero(c), _gauss_exp_below_zero(2 * c)
    stated = forms(e1, e2, e1 - _Phi(-r), e2 - _Phi(-r))
    # evaluation: the same with the stable functions (g_2c - 2 g_c is O(q) at mu = 0, from
    # terms O(sqrt q) instead of O(1))
    evaluation = forms(gauss_exp_below_zero(c, MU, Q), gauss_exp_below_zero(2 * c, MU, Q),
                       gauss_exp_excess(c, MU, Q), gauss_exp_excess(2 * c, MU, Q))
    return MomentRules(**stated, evaluation=evaluation)


def clipped_linear_rules(low: sp.Expr, high: sp.Expr) -> MomentRules:
    r"""Exact rules at every :math:`\mu` for :math:`\phi(x) = \min(\max(x, l), h)`, :math:`l < h`
    (hardtanh, ReLU6).  With :math:`s = \sqrt q`, :math:`u = (l - \mu)/s`,
    :math:`v = (h - \mu)/s` and :math:`P = \Phi(v) - \Phi(u)`:

    .. math::

        E\phi = l\Phi(u) + h\Phi(-v) + \mu P + s(\varphi(u) - \varphi(v)),

        E\phi^2 = l^2\Phi(u) + h^2\Phi(-v) + \mu^2 P + 2\mu s(\varphi(u) - \varphi(v))
                  + q\,(P + u\varphi(u) - v\varphi(v)),

    :math:`E\phi' = E\phi'^2 = P` (from :math:`\int_u^v t^2\varphi = u\varphi(u) - v\varphi(v)
    + P`)."""
    s = sp.sqrt(Q)
    u, v = (low - MU) / s, (high - MU) / s
    inside = _Phi(v) - _Phi(u)
    dens = _pdf(u) - _pdf(v)
    return MomentRules(
        mean=low * _Phi(u) + high * _Phi(-v) + MU * inside + s * dens,
        second=low**2 * _Phi(u) + high**2 * _Phi(-v) + MU**2 * inside + 2 * MU * s * dens
        + Q * (inside + u * _pdf(u) - v * _pdf(v)),
        deriv_mean=inside,
        deriv_second=inside,
    )


def gelu_rules() -> MomentRules:
    r"""Exact rules at :math:`\mu = 0` for GELU, :math:`\phi(x) = x\Phi(x)` (Hendrycks & Gimpel
    2016), :math:`z \sim N(0, q)`:

    * :math:`E\phi = q\,\varphi(0)/\sqrt{1+q} = q/\sqrt{2\pi(1+q)}` (Stein:
      :math:`E[z\Phi(z)] = q E\varphi(z)`);
    * :math:`E\phi^2 = \tfrac q4 + \tfrac14 E[z^2 f]` with :math:`f = \operatorname{erf}(z/\sqrt2)^2`,
      :math:`E f = \tfrac2\pi\arcsin\tfrac{q}{1+q}` (Williams 1997) and
      :math:`E[z^2 f] = q E f + 2q^2\,\tfrac{d}{dq}E f` (Stein twice and the heat equation
      :math:`\tfrac{d}{dq}E f = \tfrac12 E f''`):
      :math:`E\phi^2 = \tfrac q4 + \tfrac{q}{2\pi}\left(\arcsin\tfrac{q}{1+q}
      + \tfrac{2q}{(1+q)\sqrt{1+2q}}\right)`;
    * :math:`\phi' = \Phi(x) + x\varphi(x)`: :math:`E\phi' = 1/2`,
      :math:`E\phi'^2 = \tfrac14 + \tfrac1{2\pi}\arcsin\tfrac q{1+q}
      + \tfrac{q}{\pi(1+q)\sqrt{1+2q}} + \tfrac{q}{2\pi(1+2q)^{3/2}}`
      (:math:`E[z\varphi\Phi] = \tfrac{q}{1+q}E\varphi^2`, :math:`E\varphi^2 =
      \tfrac{1}{2\pi\sqrt{1+2q}}`, :math:`E[z^2\varphi^2] = \tfrac{q}{2\pi(1+2q)^{3/2}}`).
    """
    arc = sp.asin(Q / (1 + Q))
    return MomentRules(
        mean=Q / sp.sqrt(2 * sp.pi * (1 + Q)),
        second=Q / 4 + Q / (2 * sp.pi) * (arc + 2 * Q / ((1 + Q) * sp.sqrt(1 + 2 * Q))),
        deriv_mean=sp.Rational(1, 2),
        deriv_second=sp.Rational(1, 4) + arc / (2 * sp.pi)
        + Q / (sp.pi * (1 + Q) * sp.sqrt(1 + 2 * Q)) + Q / (2 * sp.pi * (1 + 2 * Q) ** sp.Rational(3, 2)),
        zero_mean_only=True,
    )
