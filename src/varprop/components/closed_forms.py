r"""The container of an activation's closed-form Gaussian moments, :class:`MomentRules`, and its
catalogued stand-in :class:`CataloguedRules`; importing this module imports no SymPy.

For a pre-activation :math:`z \sim N(\mu, q)` a rule set gives :math:`E\phi(z)`,
:math:`E\phi(z)^2`, :math:`E\phi'(z)` and :math:`E\phi'(z)^2` as SymPy expressions in the
symbols ``mu`` and ``q`` (:func:`symbols`); the rule families that build them are in
:mod:`varprop.components.moment_rules`.  A registered activation at its default parameters gets
a :class:`CataloguedRules` instead (:mod:`varprop.components.compiled_activations`): the same
numbers from the compiled code stored in :mod:`varprop.components._compiled_activations`, the
SymPy expressions built on first access.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np

from varprop._math.scalar import guarded_scalar, lambdify_scalar
from varprop._util.lazy import lazy_module
from varprop._util.light import Light

#: SymPy and scipy.special, imported at first use (:mod:`varprop._util.lazy`)
sp = lazy_module("sympy")
special = lazy_module("scipy.special")

__all__ = ["MomentRules", "CataloguedRules", "MOMENTS", "symbols"]

MomentName = Literal["mean", "second", "deriv_mean", "deriv_second"]
MOMENTS: tuple[MomentName, ...] = ("mean", "second", "deriv_mean", "deriv_second")

Moments = tuple[float, float, float, float]


@lru_cache(maxsize=1)
def symbols() -> tuple[sp.Symbol, sp.Symbol, sp.Symbol]:
    """``(x, mu, q)``: the activation's argument (real), the pre-activation mean (real) and
    variance (positive), as SymPy symbols (:data:`varprop.components.moment_rules.X`, ``MU``,
    ``Q``)."""
    return sp.Symbol("x", real=True), sp.Symbol("mu", real=True), sp.Symbol("q", positive=True)


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
    evaluation : dict
        Numerically stable forms of some moments, equal to the stated ones, used by
        :attr:`compiled` and :attr:`vectorized` (e.g. ``gauss_exp_below_zero`` for
        :math:`e^a\Phi(b)`, which avoids :math:`\infty \cdot 0`); the stated forms stay in
        elementary functions for the symbolic engine (limits, derivations).
    """

    mean: sp.Expr
    second: sp.Expr
    deriv_mean: sp.Expr
    deriv_second: sp.Expr
    exact: bool = True
    zero_mean_only: bool = False
    approximation: str = ""
    max_relative_error: Mapping[str, float] = field(default_factory=dict)
    evaluation: Mapping[str, sp.Expr] = field(default_factory=dict)

    def as_dict(self) -> dict[str, sp.Expr]:
        return {name: getattr(self, name) for name in MOMENTS}

    def evaluation_form(self, name: str) -> sp.Expr:
        """The form of moment ``name`` to evaluate numerically: :attr:`evaluation`'s stable one
        where given, else the stated one (numeric code reads this, not the attributes)."""
        return self.evaluation.get(name, getattr(self, name))

    @cached_property
    def compiled(self) -> Callable[[float, float], Moments]:
        """Scalar (``math``-module) evaluation of the four moments at ``(mu, q)``."""
        _, mu, q = symbols()
        return lambdify_scalar((mu, q), [self.evaluation_form(m) for m in MOMENTS])  # inf beyond range

    @cached_property
    def vectorized(self) -> dict[str, Callable[[np.ndarray, float], np.ndarray]]:
        """NumPy evaluation of each moment for an array of means at one ``q``."""
        _, mu, q = symbols()
        mods = [{"erf": special.erf}, "numpy"]
        out = {}
        for m in MOMENTS:
            f = sp.lambdify((mu, q), self.evaluation_form(m), modules=mods)
            out[m] = (lambda f: lambda mu, q: _beyond_range_as_inf(f, mu, q))(f)
        return out


def _beyond_range_as_inf(f: Callable[..., np.ndarray], mu: np.ndarray, q: float) -> np.ndarray:
    """``f(mu, q)`` in NumPy floats (``inf`` beyond the float range, not Python's OverflowError)."""
    with np.errstate(over="ignore", invalid="ignore"):
        values = f(np.asarray(mu, dtype=float), np.float64(q))
    return np.broadcast_to(values, np.shape(mu)).astype(float)


class CataloguedRules(MomentRules, Light):
    r"""A :class:`MomentRules` whose numeric facts come from a generated catalogue.

    ``exact``, ``zero_mean_only``, ``approximation``, ``max_relative_error`` are stored;
    :attr:`compiled` runs the catalogued code (``lambdify``'s own text for the evaluation forms,
    so the floats are those of the full rules' :attr:`compiled`) and, where it overflows, the
    full rules' evaluation (mpmath); the SymPy expressions, :attr:`evaluation`,
    :attr:`vectorized`, equality, hashing and ``repr`` are the full rules', built by ``full()``
    on first access.
    """

    @classmethod
    def _from_catalogue(cls, code: Callable[[float, float], list[object]], owner: object, *,
                        exact: bool, zero_mean_only: bool, approximation: str,
                        max_relative_error: Mapping[str, float]) -> CataloguedRules:
        """The rules of the catalogued code ``code`` of the light activation ``owner``, whose
        ``full.closed_form`` are the full rules (and which pickles by name and parameters)."""
        self = object.__new__(cls)
        values = {"exact": exact, "zero_mean_only": zero_mean_only,
                  "approximation": approximation, "max_relative_error": dict(max_relative_error),
                  "_owner": owner,
                  "compiled": guarded_scalar(code, lambda: self.full_rules.compiled)}
        self.__dict__.update(values)  # frozen dataclass: no __setattr__
        return self

    @cached_property
    def full_rules(self) -> MomentRules:
        """The rules built from SymPy by the activation's factory."""
        return self._owner.full.closed_form  # type: ignore[attr-defined, no-any-return]

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle (and copy) as the owner activation's ``closed_form``: the activation pickles
        by name and parameters, so this loads as the same catalogued rules."""
        return (getattr, (self._owner, "closed_form"))  # type: ignore[attr-defined]

    mean = property(lambda self: self.full_rules.mean, doc=r":math:`E\phi(z)` (SymPy).")
    second = property(lambda self: self.full_rules.second, doc=r":math:`E\phi(z)^2` (SymPy).")
    deriv_mean = property(lambda self: self.full_rules.deriv_mean,
                          doc=r":math:`E\phi'(z)` (SymPy).")
    deriv_second = property(lambda self: self.full_rules.deriv_second,
                            doc=r":math:`E\phi'(z)^2` (SymPy).")
    evaluation = property(lambda self: self.full_rules.evaluation,
                          doc="The stable evaluation forms (SymPy).")
    vectorized = property(lambda self: self.full_rules.vectorized,
                          doc="NumPy evaluation of each moment (the full rules').")

    def __eq__(self, other: object) -> bool:
        full = other.full_rules if isinstance(other, CataloguedRules) else other
        return self.full_rules == full

    def __hash__(self) -> int:
        return hash(self.full_rules)

    def __repr__(self) -> str:
        return repr(self.full_rules)
