r"""Activations: one registry of SymPy expressions, NumPy functions and Gaussian moment rules.

For a pre-activation :math:`z \sim N(\mu, q)` every activation :math:`\phi` provides

.. math::

    E[\phi(z)], \qquad E[\phi(z)^2], \qquad E[\phi'(z)^2]

(and :math:`E[\phi'(z)]`, used when units are correlated), in one of three ways:

* **exact closed forms** where they exist -- ``linear``, ``relu``, ``leaky_relu`` (any
  :math:`\mu`) and ``erf`` (:math:`E[\phi^2]` only at :math:`\mu = 0`, the arcsine kernel of
  Williams 1997);
* **closed-form approximations** -- ``tanh`` via :math:`\tanh x \approx \operatorname{erf}(\sqrt\pi
  x/2)` (same slope at 0, same limits) and ``sigmoid`` via the probit approximation
  :math:`\sigma(x) \approx \Phi(\sqrt{\pi/8}\,x)`, plus Taylor series (:meth:`Activation.series_rules`)
  whose Gaussian expectations use :math:`E[t^{2k}] = (2k-1)!!`;
* an **exact numerical reference** for every activation by composite Gauss--Legendre quadrature
  (:mod:`varprop._math.quadrature`, good to about :math:`10^{-12}`).

The next layer's pre-activation variance uses :math:`E[\phi(z)^2]`, not
:math:`\operatorname{Var}\phi(z)`: for ``sigmoid`` :math:`E[\phi] = 1/2` and the difference is 1/4.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np
import scipy.special
import sympy as sp

from varprop._math.quadrature import (
    bivariate_expectation,
    gaussian_expectations,
    smoothed,
)
from varprop._math.scalar import lambdify_scalar
from varprop._util.exact import exact
from varprop._util.registry import Registry, typed_cache_key
from varprop._util.validation import (
    check_nonnegative_real,
    check_positive_int,
    check_real,
    did_you_mean,
    fail,
    fail_type,
)
from varprop.components.traits import ActivationTraits, compute_traits
from varprop.errors import InvalidArgumentType

__all__ = [
    "Activation",
    "MomentRules",
    "activation",
    "resolve_activation",
    "activation_names",
    "X",
    "MU",
    "Q",
    "gaussian_polynomial_expectation",
]

#: The activation's argument, the pre-activation mean and variance.
X = sp.Symbol("x", real=True)
MU = sp.Symbol("mu", real=True)
Q = sp.Symbol("q", positive=True)

MomentName = Literal["mean", "second", "deriv_mean", "deriv_second"]
MOMENTS: tuple[MomentName, ...] = ("mean", "second", "deriv_mean", "deriv_second")

ArrayFn = Callable[[np.ndarray], np.ndarray]


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


@dataclass(frozen=True, eq=False)
class Activation:
    r"""An activation function :math:`\phi` (build with :func:`activation`).

    Attributes
    ----------
    name : str
        Canonical name (or the expression text of a custom activation).
    params : dict
        Parameters it was built with.
    expr : sympy.Expr
        :math:`\phi(x)` in the symbol ``x``.
    function, derivative : callable
        NumPy implementations of :math:`\phi` and :math:`\phi'` (for the Monte Carlo engine).
    closed_form : MomentRules or None
        The closed-form (exact or approximate) Gaussian moments.
    kinks : tuple of float
        Points where :math:`\phi'` jumps (quadrature breakpoints).
    """

    name: str
    params: Mapping[str, object]
    expr: sp.Expr
    function: ArrayFn = field(repr=False)
    derivative_function: ArrayFn = field(repr=False)
    closed_form: MomentRules | None = field(default=None, repr=False)
    kinks: tuple[float, ...] = ()
    latex_name: str = ""
    reference: str = ""

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle by name and parameters (the compiled NumPy functions are rebuilt on load), so
        Activations cross process and machine boundaries, e.g. to executor workers."""
        return (_rebuild, (self.name, dict(self.params)))

    @cached_property
    def derivative(self) -> sp.Expr:
        r""":math:`\phi'(x)` (SymPy; ``Heaviside`` for kinks)."""
        return sp.diff(self.expr, X)

    @cached_property
    def traits(self) -> ActivationTraits:
        """What kind of function this is (linear, odd, homogeneous, ...), computed once from the
        function itself: see :mod:`varprop.components.traits`."""
        return compute_traits(self)

    @property
    def closed_form_is_exact(self) -> bool:
        """True if the closed-form moments are exact (at least at :math:`\\mu = 0`)."""
        return self.closed_form is not None and self.closed_form.exact

    # ----- numeric moments ------------------------------------------------------------------
    def gaussian_moments(
        self, mu: float, q: float, *, method: Literal["exact", "closed_form", "quadrature"] = "exact"
    ) -> tuple[float, float, float, float]:
        r"""``(E phi, E phi^2, E phi', E phi'^2)`` for :math:`z \sim N(\mu, q)`.

        ``method="exact"`` uses the closed form where it is exact, else quadrature;
        ``"quadrature"`` always integrates numerically; ``"closed_form"`` uses the stated
        closed form (an approximation for ``tanh``/``sigmoid``).  ``q = inf`` is taken as the
        limit (e.g. :math:`E\tanh^2 \to 1`).
        """
        mu = check_real("mu", mu)
        q = math.inf if isinstance(q, numbers.Real) and q == math.inf else (
            check_nonnegative_real("q", q))
        if q == math.inf:
            return self._infinite_variance_moments()
        rules = self.closed_form
        usable = rules is not None and (not rules.zero_mean_only or mu == 0.0) and q > 0
        if method == "closed_form":
            if not usable:
                raise fail("method", method, f"'exact' or 'quadrature': {self.name} has no closed "
                           f"form at mu={mu!r}, q={q!r}")
            return rules.compiled(mu, q)  # type: ignore[union-attr]
        if method == "exact" and usable and rules.exact:  # type: ignore[union-attr]
            return rules.compiled(mu, q)  # type: ignore[union-attr]
        return self._quadrature_moments(mu, q)

    def _quadrature_moments(self, mu: float, q: float) -> tuple[float, float, float, float]:
        f, d = self.function, self.derivative_function

        def all_four(x: np.ndarray) -> np.ndarray:
            fx, dx = f(x), d(x)
            return np.stack([fx, fx * fx, dx, dx * dx])

        return tuple(map(float, gaussian_expectations([all_four], mu, q, self.kinks)[0]))  # type: ignore[return-value]

    def _infinite_variance_moments(self) -> tuple[float, float, float, float]:
        big = np.array([-np.inf, np.inf])
        with np.errstate(all="ignore"):
            vals = [self.function(big), self.function(big) ** 2,
                    self.derivative_function(big), self.derivative_function(big) ** 2]
        out = []
        for v in vals:
            m = float(np.mean(v)) if np.all(np.isfinite(v)) else (
                math.inf if np.all(np.nan_to_num(v, nan=math.inf) >= 0) else math.nan)
            out.append(m)
        if math.isnan(out[0]):  # unbounded both ways (e.g. linear): mean 0 by symmetry
            out[0] = 0.0
        if math.isnan(out[2]):
            out[2] = 0.0
        return tuple(out)  # type: ignore[return-value]

    def smoothed(self, which: Literal["function", "derivative"]) -> Callable[[np.ndarray, float], np.ndarray]:
        r""":math:`y \mapsto E_e[\phi(y + \sqrt{r}\, e)]` (or of :math:`\phi'`), vectorised in ``y``."""
        rules = self.closed_form
        name = "mean" if which == "function" else "deriv_mean"
        if rules is not None and rules.exact and not rules.zero_mean_only:
            closed = rules.vectorized[name]
            fn = self.function if which == "function" else self.derivative_function
            return lambda y, r: closed(y, r) if r > 0 else fn(y)
        fn = self.function if which == "function" else self.derivative_function
        return lambda y, r: smoothed(fn, y, r)

    def correlated_moments(self, mean: float, var: float, cov: float) -> tuple[float, float]:
        r""":math:`(E[\phi(z_i)\phi(z_k)], E[\phi'(z_i)\phi'(z_k)])` for two units with common
        mean, variance ``var`` and covariance ``cov`` (jointly Gaussian; by quadrature)."""
        if math.isinf(var):
            inf_m = self._infinite_variance_moments()
            return inf_m[1], inf_m[3]
        f, d = self.smoothed("function"), self.smoothed("derivative")
        return (bivariate_expectation(f, f, mean, var, cov, self.kinks),
                bivariate_expectation(d, d, mean, var, cov, self.kinks))

    # ----- series ---------------------------------------------------------------------------
    def series_rules(self, order: int = 5) -> MomentRules:
        r"""Small-signal approximation: the Taylor polynomial of :math:`\phi` at 0 to ``order``,
        with exact Gaussian expectations of the polynomial (valid for small :math:`\mu, q`)."""
        order = check_positive_int("order", order)
        return _series_rules(self, order)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})" if self.params or self.name.isidentifier() else self.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Activation) and (self.name, tuple(self.params.items())) == (
            other.name, tuple(other.params.items()))

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.params.items())))


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


@lru_cache(maxsize=64)
def _series_rules(act: Activation, order: int) -> MomentRules:
    poly = sp.series(act.expr, X, 0, order + 1).removeO()
    return polynomial_rules(poly, exact=False,
                            approximation=f"Taylor polynomial of order {order} at 0")


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
# The registry
# ----------------------------------------------------------------------------------------------

ACTIVATIONS: Registry[Activation] = Registry("activation")

_SQRT_PI = math.sqrt(math.pi)


def _relu_np(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _step_np(x: np.ndarray) -> np.ndarray:
    return (x > 0).astype(np.result_type(x, np.float32))


def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _tanh_derivative_np(x: np.ndarray) -> np.ndarray:
    r""":math:`\tanh'(x) = \operatorname{sech}^2 x = 4t/(1+t)^2`, :math:`t = e^{-2|x|}`: no
    cancellation (``1 - tanh(x)**2`` is exactly 0 for :math:`|x| > 19` in float64, where the true
    value is still :math:`\approx 4e^{-2|x|} > 10^{-17}`); 0 only below the subnormal range."""
    t = np.exp(-2.0 * np.abs(x))
    return 4.0 * t / ((1.0 + t) * (1.0 + t))


def _sigmoid_derivative_np(x: np.ndarray) -> np.ndarray:
    r""":math:`\sigma'(x) = \sigma(x)(1-\sigma(x)) = t/(1+t)^2`, :math:`t = e^{-|x|}`, without the
    cancellation of ``s * (1 - s)`` (exactly 0 for :math:`x > 37` in float64)."""
    t = np.exp(-np.abs(x))
    return t / ((1.0 + t) * (1.0 + t))


@ACTIVATIONS.register("linear", "identity")
def linear() -> Activation:
    r""":math:`\phi(x) = x`: :math:`E\phi^2 = \mu^2 + q`, :math:`\phi' = 1`."""
    return Activation("linear", {}, X, lambda x: x, lambda x: np.ones_like(x),
                      MomentRules(MU, MU**2 + Q, sp.Integer(1), sp.Integer(1)),
                      latex_name=r"\mathrm{id}")


@ACTIVATIONS.register("relu")
def relu() -> Activation:
    r""":math:`\phi(x) = \max(x, 0)`: at :math:`\mu = 0`, :math:`E\phi^2 = q/2`,
    :math:`E\phi'^2 = 1/2` (He et al. 2015); general :math:`\mu` via :math:`\Phi(\mu/\sqrt q)`."""
    return Activation("relu", {}, sp.Max(X, 0), _relu_np, _step_np, _leaky_rules(sp.Integer(0)),
                      kinks=(0.0,), latex_name=r"\mathrm{ReLU}", reference="He et al. 2015")


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(negative_slope: float = 0.01) -> Activation:
    r""":math:`\phi(x) = \max(x, 0) + \alpha \min(x, 0)`: at :math:`\mu = 0`,
    :math:`E\phi^2 = (1+\alpha^2) q/2`, :math:`E\phi'^2 = (1+\alpha^2)/2`."""
    a_f = check_real("negative_slope", negative_slope)
    a = exact(a_f)
    return Activation(
        "leaky_relu", {"negative_slope": a_f},
        sp.Max(X, 0) + a * sp.Min(X, 0),
        lambda x: np.where(x > 0, x, a_f * x),
        lambda x: np.where(x > 0, 1.0, a_f).astype(np.result_type(x, np.float32)),
        _leaky_rules(a), kinks=(0.0,), latex_name=r"\mathrm{LeakyReLU}_{%s}" % sp.latex(a),
        reference="Maas et al. 2013; He et al. 2015")


@ACTIVATIONS.register("tanh")
def tanh() -> Activation:
    r""":math:`\tanh`; closed form via :math:`\tanh x \approx \operatorname{erf}(\sqrt\pi x/2)`:
    :math:`E\phi^2 \approx \frac{2}{\pi}\arcsin\frac{\pi q/2}{1 + \pi q/2}`,
    :math:`E\phi'^2 \approx (1 + \pi q)^{-1/2}` (at :math:`\mu = 0`).

    Declared errors (sup over :math:`q > 0`): :math:`E\phi^2` within 6.2% (worst near
    :math:`q \approx 0.8`; exact as :math:`q \to 0` and :math:`q \to \infty`),
    :math:`E\phi'^2` within 6.1% (tends to :math:`\frac{3}{4}\sqrt{2} - 1 = 6.07\%` as
    :math:`q \to \infty`, since :math:`E\,\mathrm{sech}^4 z \sim \frac{4}{3\sqrt{2\pi q}}`)."""
    rules = _erf_scaled_rules(sp.sqrt(sp.pi) / 2, exact_=False,
                              approximation=r"tanh(x) ~ erf(sqrt(pi) x / 2)",
                              max_relative_error={"mean": 0.0, "second": 0.062,
                                                  "deriv_mean": 0.031, "deriv_second": 0.061})
    return Activation("tanh", {}, sp.tanh(X), np.tanh, _tanh_derivative_np, rules,
                      latex_name=r"\tanh")


@ACTIVATIONS.register("sigmoid", "logistic")
def sigmoid() -> Activation:
    r""":math:`\sigma(x) = 1/(1+e^{-x})`; closed form via the probit approximation
    :math:`\sigma(x) \approx \Phi(\sqrt{\pi/8}\, x) = \tfrac12 + \tfrac12\operatorname{erf}(\sqrt\pi x/4)`:
    :math:`E\sigma^2 \approx \frac14 + \frac{1}{2\pi}\arcsin\frac{\pi q/8}{1+\pi q/8}` (at
    :math:`\mu = 0`; note :math:`E\sigma = 1/2`, so :math:`E\sigma^2 \ne \operatorname{Var}\sigma`).

    Declared errors (sup over :math:`q > 0`): :math:`E\sigma^2` within 1.9%,
    :math:`E\sigma'^2` within 6.1% (the same :math:`\mathrm{sech}^4` tail as tanh)."""
    half = sp.Rational(1, 2)
    rules = _erf_scaled_rules(sp.sqrt(sp.pi) / 4, exact_=False, offset=half, factor=half,
                              approximation=r"sigmoid(x) ~ Phi(sqrt(pi/8) x)",
                              max_relative_error={"mean": 0.0, "second": 0.019,
                                                  "deriv_mean": 0.031, "deriv_second": 0.061})
    expr = 1 / (1 + sp.exp(-X))
    return Activation("sigmoid", {}, expr, _sigmoid_np,
                      _sigmoid_derivative_np, rules,
                      latex_name=r"\sigma")


@ACTIVATIONS.register("erf")
def erf() -> Activation:
    r""":math:`\operatorname{erf}(x)`: exact at :math:`\mu = 0` (Williams 1997),
    :math:`E\phi^2 = \frac{2}{\pi}\arcsin\frac{2q}{1+2q}`, :math:`E\phi'^2 = \frac{4}{\pi\sqrt{1+4q}}`."""
    return Activation("erf", {}, sp.erf(X), scipy.special.erf,
                      lambda x: (2.0 / _SQRT_PI) * np.exp(-(x**2)),
                      _erf_scaled_rules(sp.Integer(1), exact_=True),
                      latex_name=r"\operatorname{erf}", reference="Williams 1997")


#: Hook for expressions that are not registered names (see ``varprop.components.expressions``).
_CUSTOM_PARSER: Callable[[str], Activation] | None = None


@lru_cache(maxsize=256)
def _build_cached(name: str, items: tuple[tuple[str, type, object], ...]) -> Activation:
    return ACTIVATIONS.build(name, argument="activation", **{k: v for k, _, v in items})


def activation(name: str, **params: object) -> Activation:
    """Build the activation ``name`` (or alias) with ``params``.

    >>> activation("leaky_relu", negative_slope=0.2)
    leaky_relu(negative_slope=0.2)
    >>> activation("relu").closed_form.second.subs(MU, 0)
    q/2
    """
    if not isinstance(name, str):
        raise fail_type("activation", name, f"an activation name, one of {ACTIVATIONS.names()}")
    if not ACTIVATIONS.is_known(name):
        if _CUSTOM_PARSER is not None and not params:
            return _CUSTOM_PARSER(name)
        ACTIVATIONS.canonical(name, argument="activation")  # raises with "did you mean"
    canonical = ACTIVATIONS.canonical(name, argument="activation")
    import inspect

    allowed = list(inspect.signature(ACTIVATIONS._factories[canonical]).parameters)
    for key in params:
        if key not in allowed:
            raise InvalidArgumentType(
                f"{key}={params[key]!r} is not a parameter of activation {canonical!r}: "
                f"allowed parameters are {allowed or '(none)'}{did_you_mean(key, allowed)}")
    return _build_cached(canonical, typed_cache_key(params))


def resolve_activation(act: object, *, argument: str = "activation") -> Activation:
    """Accept an :class:`Activation` or a string (a name, or a custom expression in ``x``)."""
    if isinstance(act, Activation):
        return act
    if isinstance(act, str):
        if ACTIVATIONS.is_known(act):
            return _build_cached(ACTIVATIONS.canonical(act, argument=argument), ())
        return activation(act)
    raise fail_type(argument, act, "an Activation (varprop.activation(...)) or a name string")


def activation_names(*, aliases: bool = False) -> list[str]:
    """Names of the registered activations."""
    return ACTIVATIONS.names(aliases=aliases)


def _lazy_custom_parser(text: str) -> Activation:
    """Parse a custom expression in ``x`` (imported lazily: :mod:`varprop.components.expressions` imports us)."""
    from varprop.components.expressions import parse_activation

    return parse_activation(text)


_CUSTOM_PARSER = _lazy_custom_parser


def _rebuild(name: str, params: dict[str, object]) -> Activation:
    """Unpickling hook of :meth:`Activation.__reduce__`."""
    return activation(name, **params)


@lru_cache(maxsize=64)
def is_odd(act: Activation) -> bool:
    """Whether ``act.function`` is odd, bitwise, on a grid over (0, 60] (tanh, erf, x**3)."""
    x = np.concatenate([np.geomspace(1e-8, 60.0, 401), np.linspace(0.05, 20.0, 400)])
    with np.errstate(all="ignore"):
        f, g = np.broadcast_to(act.function(x), x.shape), np.broadcast_to(act.function(-x), x.shape)
        return bool(np.array_equal(g, -f) and np.all(np.isfinite(f)))
