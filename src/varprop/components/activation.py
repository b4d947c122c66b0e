r"""The :class:`Activation` type and the activation lookup (the named activations are registered
by :mod:`varprop.components.activations`; custom expressions are parsed by
:mod:`varprop.components.expressions`).

See :mod:`varprop.components.activations` for the moment conventions.

A registered activation at its default parameters is looked up in the generated catalogue
:mod:`varprop.components._compiled_activations` (written by
:mod:`varprop.components.compiled_activations` from the registered factories) and returned as a
light :class:`Activation` whose numbers (closed-form moments, traits, kinks, NumPy functions)
come from there, bit for bit those of the full object: building it imports no SymPy (about
0.3 s).  Its SymPy-valued attributes (``expr``, the closed form's expressions, ...) build the
full activation with the registered factory on first access.
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np

from varprop._math.quadrature import (
    bivariate_expectation,
    gaussian_expectations,
    smoothed,
)
from varprop._util.lazy import lazy_module
from varprop._util.light import Light
from varprop._util.registry import typed_cache_key
from varprop._util.validation import (
    check_nonnegative_real,
    check_positive_int,
    check_real,
    did_you_mean,
    fail,
    fail_type,
)
from varprop.components.closed_forms import CataloguedRules, MomentRules
from varprop.components.registries import ACTIVATIONS
from varprop.components.traits import ActivationTraits, compute_traits
from varprop.errors import InvalidArgumentType

#: SymPy and the modules that need it at import (the rule families, the expression parser), and
#: the generated catalogue, imported at first use (:mod:`varprop._util.lazy`; the catalogue
#: lazily so that its generator still runs when it is stale).
sp = lazy_module("sympy")
rules = lazy_module("varprop.components.moment_rules")
expressions = lazy_module("varprop.components.expressions")
catalogue = lazy_module("varprop.components._compiled_activations")

__all__ = ["Activation", "activation", "resolve_activation", "activation_names",
           "parse_activation", "is_odd", "catalogue_name"]

ArrayFn = Callable[[np.ndarray], np.ndarray]


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
        return sp.diff(self.expr, rules.X)

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


@lru_cache(maxsize=64)
def _series_rules(act: Activation, order: int) -> MomentRules:
    poly = sp.series(act.expr, rules.X, 0, order + 1).removeO()
    return rules.polynomial_rules(poly, exact=False,
                            approximation=f"Taylor polynomial of order {order} at 0")


# ----------------------------------------------------------------------------------------------
# Lookup
# ----------------------------------------------------------------------------------------------

class _CataloguedActivation(Activation, Light):
    """A registered activation at its default parameters, from the generated catalogue.

    Name, parameters, kinks, names, traits, the closed form's numeric facts and compiled
    moments (:class:`~varprop.components.closed_forms.CataloguedRules`) and the NumPy functions
    the factory uses are the catalogue's; the rest (``expr``, a NumPy function the catalogue
    cannot import) is the full activation's, built by the registered factory on first access
    (:attr:`full`).  Equality, hashing, pickling and ``repr`` are :class:`Activation`'s (by name
    and parameters), so it is interchangeable with the full object.
    """

    @classmethod
    def _from_entry(cls, registered: str, entry: Mapping[str, object]) -> _CataloguedActivation:
        """The light activation of the catalogue ``entry`` of the registered name."""
        self = object.__new__(cls)
        moments: Mapping[str, object] | None = entry["closed_form"]  # type: ignore[assignment]
        values: dict[str, object] = {
            "name": entry["name"], "params": dict(entry["params"]),  # type: ignore[call-overload]
            "kinks": entry["kinks"], "latex_name": entry["latex_name"],
            "reference": entry["reference"], "_registered": registered,
            "traits": ActivationTraits(**entry["traits"]),  # type: ignore[arg-type]
            "closed_form": None if moments is None else CataloguedRules._from_catalogue(
                moments["code"], self, exact=moments["exact"],  # type: ignore[arg-type]
                zero_mean_only=moments["zero_mean_only"],
                approximation=moments["approximation"],
                max_relative_error=moments["max_relative_error"]),
        }
        for key in ("function", "derivative_function"):
            if entry[key] is not None:  # else the full activation's (a closure)
                values[key] = entry[key]
        self.__dict__.update(values)  # frozen dataclass: no __setattr__
        return self

    @cached_property
    def full(self) -> Activation:
        """The activation built by the registered factory (imports SymPy)."""
        return ACTIVATIONS.build(self._registered)  # type: ignore[attr-defined]

    expr = cached_property(lambda self: self.full.expr)
    function = cached_property(lambda self: self.full.function)
    derivative_function = cached_property(lambda self: self.full.derivative_function)


def _catalogued(name: str, items: tuple[tuple[str, type, object, bool], ...]) -> Activation | None:
    """The catalogue's activation ``name`` if ``items`` are its default parameters (none, or
    all given with their default values, types and signs) and its registered factory is the one
    the catalogue was generated from (never unregistered, :meth:`Registry.replaced`, and the
    very object the catalogue names); else None."""
    entry = catalogue.CATALOGUE.get(name)
    if entry is None or items not in ((), entry["key"]) or ACTIVATIONS.replaced(name):
        return None
    if ACTIVATIONS.factory(name) is not _named_object(entry["factory"]):  # type: ignore[arg-type]
        return None
    return _CataloguedActivation._from_entry(name, entry)


def _named_object(dotted: str) -> object:
    """The object ``"package.module.qualname"`` names (a module already imported: the one
    that registered the factory), or None."""
    module, _, qualname = dotted.rpartition(".")
    return getattr(sys.modules.get(module), qualname, None)


def catalogue_name(act: object) -> str | None:
    """The registered name whose generated catalogue entry ``act`` was built from (a light
    activation: a registered activation at its default parameters, its factory never
    replaced), else None: code holding further catalogues keyed by name (the zero-mean
    moments, :mod:`varprop.theory.moments`) may use them for this object, and only then."""
    return act._registered if isinstance(act, _CataloguedActivation) else None  # type: ignore[attr-defined]


@lru_cache(maxsize=256)
def _build_cached(name: str, items: tuple[tuple[str, type, object, bool], ...]) -> Activation:
    light = _catalogued(name, items)
    if light is not None:
        return light
    return ACTIVATIONS.build(name, argument="activation", **{k: v for k, _, v, _ in items})


def activation(name: str, **params: object) -> Activation:
    """Build the activation ``name`` (or alias) with ``params``.

    >>> activation("leaky_relu", negative_slope=0.2)
    leaky_relu(negative_slope=0.2)
    >>> activation("relu").gaussian_moments(0.0, 2.0)[1]  # E relu(z)^2 = q/2
    1.0
    """
    if not isinstance(name, str):
        raise fail_type("activation", name, f"an activation name, one of {ACTIVATIONS.names()}")
    if not ACTIVATIONS.is_known(name):
        if not params:
            return parse_activation(name)
        ACTIVATIONS.canonical(name, argument="activation")  # raises with "did you mean"
    canonical = ACTIVATIONS.canonical(name, argument="activation")
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


@lru_cache(maxsize=256)
def parse_activation(text: str) -> Activation:
    """The :class:`~varprop.Activation` for a custom expression (cached on the text).

    An expression identical to a registered (default) activation's returns that activation,
    with its closed forms.  See :mod:`varprop.components.expressions` for the grammar, the
    safety rules and how moments are computed.
    """
    expr, normalised = expressions.parse_expression(text)
    for name in ACTIVATIONS.names():  # same expression as a registered (default) activation?
        registered = resolve_activation(name)
        if registered.expr == expr:
            return registered
    return Activation(name=normalised, params={}, reference="custom expression",
                      **expressions.compile_expression(expr, text))


def _rebuild(name: str, params: dict[str, object]) -> Activation:
    """Unpickling hook of :meth:`Activation.__reduce__`."""
    return activation(name, **params)


def is_odd(act: Activation) -> bool:
    """Whether ``act`` is odd: a compatibility alias of ``act.traits.odd``
    (:mod:`varprop.components.traits`)."""
    return act.traits.odd
