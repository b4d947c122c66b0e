r"""The :class:`InitScheme` type and the scheme registry (the named schemes are registered by
:mod:`varprop.components.schemes`).

A scheme is a weight-law family (:mod:`varprop.components.laws`) plus a rule giving the family's
parameters at each ``(fan_in, fan_out)`` as exact SymPy expressions.  ``scheme.law(fan_in,
fan_out)`` is the law of one layer's weights; the scheme's moments, sampler and flags read it.

A registered scheme at its default parameters (``init_scheme("he_normal")``, ``"keras:he_normal"``)
is read from the generated catalogue :mod:`varprop.components._compiled_schemes` instead: its
moments (:meth:`InitScheme.moments`), parameters, flags, sampler, and the numeric members of its
laws at integer fans (``parameters``, ``kurtosis``, ``support``, ``cdf``, ``sample``) are the
full scheme's code and floats without importing SymPy (about 0.3 s of ``varprop predict``'s
start-up).  Its SymPy-valued members build the full scheme on first access, and so do a law's
exact members (``exact``, ``mean``, ``variance``, ``moments()``, ``repr``: SymPy values, or
floats computed from them).  Other parameters build the full scheme at once.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from typing import TYPE_CHECKING, Any

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.light import Light
from varprop._util.registry import typed_cache_key
from varprop._util.rounding import float_or_inf
from varprop._util.validation import (
    check_nonnegative_int,
    check_positive_int,
    did_you_mean,
    fail,
    fail_type,
)
from varprop.components import laws
from varprop.components.laws import WeightLaw, fan_symbols
from varprop.components.registries import SCHEMES
from varprop.errors import InvalidArgumentType, VarpropWarning

if TYPE_CHECKING:  # pragma: no cover
    import sympy as sp
else:
    #: SymPy, imported at first use (:mod:`varprop._util.lazy`): a catalogued scheme's numeric
    #: members need none of it (:class:`_CataloguedScheme`).
    sp = lazy_module("sympy")
#: The generated catalogue, imported at first use (so its generator runs when it is stale or
#: missing: the generator imports this module).
_compiled_schemes = lazy_module("varprop.components._compiled_schemes")

__all__ = ["InitScheme", "SCHEMES", "init_scheme", "resolve_scheme", "scheme_names",
           "weight_moments", "SAMPLE_MEMORY_LIMIT"]

#: The largest sample :meth:`InitScheme.sample` draws (bytes of the result).
SAMPLE_MEMORY_LIMIT = 4 * 2**30

#: A spec maps ``(n_in, n_out)`` to the law family's parameters as SymPy expressions (``Any``
#: at run time: the alias must not import SymPy).
Spec = Callable[[Any, Any], Mapping[str, Any]]


@dataclass(frozen=True, eq=False)
class InitScheme:
    r"""A weight-initialization scheme (build with :func:`varprop.init_scheme`).

    Attributes
    ----------
    name : str
        Canonical registry name, e.g. ``"he_normal"``.
    params : dict
        The parameters it was built with (defaults filled in).
    family : type of WeightLaw
        The law family of the entries (:mod:`varprop.components.laws`).
    spec : callable
        ``(n_in, n_out) -> {parameter: SymPy expression}``, the family's parameters at the fans.
    note : str
        A remark on the convention, e.g. that a framework's gain is a heuristic (empty for most).
        A framework-qualified scheme's ``name`` carries its convention (``"keras:he_normal"``,
        :mod:`varprop.components.frameworks`), so every repr and verdict names it.
    """

    name: str
    params: Mapping[str, object]
    family: type[WeightLaw] = field(repr=False)
    spec: Spec = field(repr=False)
    note: str = field(default="", repr=False)

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle by name and parameters (the compiled NumPy functions are rebuilt on load), so
        InitSchemes cross process and machine boundaries, e.g. to executor workers."""
        return (_rebuild, (self.name, dict(self.params)))

    @property
    def distribution(self) -> str:
        """The family's name (``"normal"``, ``"uniform"``, ...), read-only, for compatibility:
        new code asks :meth:`law` or :attr:`family`."""
        return self.family.family

    # ----- the law ----------------------------------------------------------------------------
    def law(self, fan_in: object = None, fan_out: object = None) -> WeightLaw:
        r"""The law of the weights of a ``fan_out x fan_in`` layer (symbols ``n_in``/``n_out``
        where a fan is ``None``; positive integers or SymPy expressions otherwise)."""
        if type(fan_in) is int and type(fan_out) is int:  # no SymPy for a catalogued scheme
            return _cached_law(self, check_positive_int("fan_in", fan_in),
                               check_positive_int("fan_out", fan_out))
        symbol_in, symbol_out = fan_symbols()
        n_in = _symbolic_fan("fan_in", fan_in, symbol_in)
        n_out = _symbolic_fan("fan_out", fan_out, symbol_out)
        if n_in.is_Integer and n_out.is_Integer:
            return _cached_law(self, int(n_in), int(n_out))
        return self.family(self.spec(n_in, n_out), fan_in=n_in, fan_out=n_out)

    # ----- symbolic -------------------------------------------------------------------------
    def weight_mean(self, fan_in: object = None, fan_out: object = None) -> sp.Expr:
        r"""Exact :math:`\mu_w = E[W_{ij}]` (symbols ``n_in``/``n_out`` where a fan is ``None``)."""
        return self.law(fan_in, fan_out).mean

    def weight_variance(self, fan_in: object = None, fan_out: object = None) -> sp.Expr:
        r"""Exact :math:`\sigma_w^2 = \operatorname{Var}(W_{ij})`.

        For ``orthogonal`` the entries are not independent; :math:`g^2/\max(n_{in}, n_{out})` is
        the exact entry variance of a Haar-orthogonal matrix times the gain :math:`g`.
        """
        return self.law(fan_in, fan_out).variance

    # ----- numeric --------------------------------------------------------------------------
    @cached_property
    def _numeric_spec(self) -> Callable[[int, int], dict[str, float]]:
        keys, exprs = _spec_expressions(self)
        fn = sp.lambdify(fan_symbols(), exprs, modules="math")
        return lambda n_in, n_out: dict(zip(keys, map(float_or_inf, fn(n_in, n_out))))

    @cached_property
    def _numeric_moments(self) -> Callable[[int, int], tuple[float, float]]:
        if not self.family.moments_from_exact:
            return lambda n_in, n_out: _cached_law(self, n_in, n_out).moments()
        return _float_evaluator(_moment_expressions(self))

    def moments(self, fan_in: int, fan_out: int) -> tuple[float, float]:
        r"""``(mu_w, sigma_w^2)`` as floats for a layer of shape ``(fan_out, fan_in)``.

        A value beyond the float range (e.g. ``uniform(low=-1e200, high=1e200)``, variance
        :math:`10^{400}/3`) is returned as ``inf`` with a :class:`~varprop.errors.VarpropWarning`;
        :meth:`weight_variance` holds the exact value.
        """
        fan_in = check_positive_int("fan_in", fan_in)
        fan_out = check_positive_int("fan_out", fan_out)
        out = _cached_moments(self, fan_in, fan_out)
        if not all(map(math.isfinite, out)):
            warnings.warn(f"the weight moments (mean, variance) = {out} of {self!r} at "
                          f"fan_in={fan_in}, fan_out={fan_out} exceed the float range; returned "
                          "as inf (weight_mean/weight_variance give the exact values)",
                          VarpropWarning, stacklevel=2)
        return out

    def parameters(self, fan_in: int, fan_out: int) -> dict[str, float]:
        """The law's defining parameters (``loc``/``scale``/``low``/...) as floats."""
        return dict(_cached_parameters(self, check_positive_int("fan_in", fan_in),
                                       check_positive_int("fan_out", fan_out)))

    @property
    def is_gaussian(self) -> bool:
        """True if the entries are i.i.d. (untruncated) normal."""
        return self.family.gaussian and self.family.iid

    @cached_property
    def is_zero_mean(self) -> bool:
        """True if :math:`\\mu_w = 0` for every fan (checked symbolically)."""
        return sp.simplify(self.weight_mean()) == 0

    @property
    def is_symmetric(self) -> bool:
        """True if the entry law is symmetric about 0 (``W`` and ``-W`` have the same law)."""
        return self.family.symmetric and self.is_zero_mean

    @property
    def is_iid(self) -> bool:
        """True if the entries are independent (everything but ``orthogonal``)."""
        return self.family.iid

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        *,
        size: tuple[int, ...] = (),
        dtype: object = np.float64,
    ) -> np.ndarray:
        """Draw weight matrices of shape ``size + (fan_out, fan_in)`` (the law's sampler).

        Uses only NumPy.  Orthogonal matrices are Haar distributed (QR of a Gaussian matrix with
        the sign correction of Mezzadri 2007); truncated normals are drawn by rejection, from the
        normal (bound >= 1) or from the uniform on :math:`[-b, b]` accepted with probability
        :math:`e^{-w^2/2}` (narrower bounds: at least 86% accepted, exact at any tiny bound).

        Parameters
        ----------
        rng : numpy.random.Generator
            The source of randomness, e.g. ``np.random.default_rng(0)``.
        fan_in, fan_out : int
            The layer's fans.
        size : tuple of int
            Leading batch dimensions.
        dtype : floating dtype
            The dtype of the result (float32 or float64).
        """
        if not isinstance(rng, np.random.Generator):
            raise fail_type("rng", rng, "a numpy.random.Generator, e.g. np.random.default_rng(0)")
        law = _cached_law(self, check_positive_int("fan_in", fan_in),
                          check_positive_int("fan_out", fan_out))
        size = _check_size(size)
        shape = size + (fan_out, fan_in)
        dt = _check_float_dtype(dtype)
        needed = math.prod(shape) * dt.itemsize
        if needed > SAMPLE_MEMORY_LIMIT:
            raise fail("size", shape, f"a sample of at most {SAMPLE_MEMORY_LIMIT:,} bytes "
                       f"(varprop.components.scheme.SAMPLE_MEMORY_LIMIT): shape {shape} in "
                       f"{dt.name} would need {needed:,} bytes")
        return law.sample(rng, shape, dt)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InitScheme) and (self.name, tuple(self.params.items())) == (
            other.name,
            tuple(other.params.items()),
        )

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.params.items())))


@lru_cache(maxsize=4096)
def _cached_moments(scheme: InitScheme, fan_in: int, fan_out: int) -> tuple[float, float]:
    return scheme._numeric_moments(fan_in, fan_out)


def weight_moments(scheme: InitScheme, fan_in: int, fan_out: int) -> tuple[float, float]:
    """:meth:`InitScheme.moments` without its validation and warning, for the engines' inner
    loops: ``fan_in`` and ``fan_out`` must be validated positive Python ints (cached)."""
    return _cached_moments(scheme, fan_in, fan_out)


@lru_cache(maxsize=4096)
def _cached_parameters(scheme: InitScheme, fan_in: int, fan_out: int
                       ) -> tuple[tuple[str, float], ...]:
    return tuple(scheme._numeric_spec(fan_in, fan_out).items())


@lru_cache(maxsize=4096)
def _cached_law(scheme: InitScheme, fan_in: int, fan_out: int) -> WeightLaw:
    numeric = dict(_cached_parameters(scheme, fan_in, fan_out))
    if isinstance(scheme, _CataloguedScheme):  # the exact law at first use (picklable)
        return scheme.family.at_fans(numeric, fan_in, fan_out,
                                     partial(_full_law, scheme, fan_in, fan_out, numeric))
    return _exact_law(scheme, fan_in, fan_out, numeric)


def _full_law(scheme: _CataloguedScheme, fan_in: int, fan_out: int, numeric: dict[str, float]
              ) -> WeightLaw:
    return _exact_law(scheme._full, fan_in, fan_out, numeric)


def _exact_law(scheme: InitScheme, fan_in: int, fan_out: int, numeric: dict[str, float]
               ) -> WeightLaw:
    n_in, n_out = sp.Integer(fan_in), sp.Integer(fan_out)
    return scheme.family(scheme.spec(n_in, n_out), fan_in=n_in, fan_out=n_out, numeric=numeric)


def _spec_expressions(scheme: InitScheme) -> tuple[list[str], list[sp.Expr]]:
    """The names and SymPy expressions (in the symbols ``n_in``/``n_out``) of the family's
    parameters: what ``_numeric_spec`` compiles (and the catalogue,
    :mod:`varprop.components.compiled_schemes`)."""
    symbolic = scheme.spec(*fan_symbols())
    keys = list(symbolic)
    return keys, [symbolic[k] for k in keys]


def _moment_expressions(scheme: InitScheme) -> tuple[sp.Expr, sp.Expr]:
    """The exact entry mean and variance at symbolic fans: what ``_numeric_moments`` compiles
    for a family with ``moments_from_exact`` (and the catalogue)."""
    law = scheme.law()
    return (law.mean, law.variance)


#: The errors of compiled ``math`` code on numbers beyond the float range.
_FLOAT_ERRORS = (OverflowError, ZeroDivisionError, ValueError)


def _float_evaluator(exprs: tuple[sp.Expr, ...]) -> Callable[[int, int], tuple[float, ...]]:
    """Evaluate ``exprs`` at ``(n_in, n_out)`` as floats: compiled ``math`` code, and where it
    fails (an exact number beyond the float range, e.g. :math:`10^{400}/3`) SymPy's exact
    arithmetic, with results beyond the float range mapped to +-inf."""
    symbols = fan_symbols()
    fn = sp.lambdify(symbols, exprs, modules="math")

    def evaluate(n_in: int, n_out: int) -> tuple[float, ...]:
        try:
            return tuple(map(float_or_inf, fn(n_in, n_out)))
        except _FLOAT_ERRORS:
            at = dict(zip(symbols, (sp.Integer(n_in), sp.Integer(n_out))))
            return tuple(float_or_inf(sp.N(e.subs(at), 20)) for e in exprs)
    return evaluate


def _symbolic_fan(name: str, value: object, symbol: sp.Symbol) -> sp.Expr:
    """A fan for the symbolic moments: ``None`` (the symbol), a SymPy expression with free
    symbols, or a positive integer (anything else raises, instead of returning ``zoo``)."""
    if value is None:
        return symbol
    if isinstance(value, sp.Basic) and not value.is_number:
        return value
    return sp.Integer(check_positive_int(name, value))


def _check_size(size: object) -> tuple[int, ...]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size,)
    if not isinstance(size, (tuple, list)):
        raise fail_type("size", size, "a tuple of non-negative integers (batch dimensions)")
    return tuple(check_nonnegative_int(f"size[{i}]", s) for i, s in enumerate(size))


def _check_float_dtype(dtype: object) -> np.dtype:
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise fail("dtype", dtype, "float32 or float64")
    return dt


# ----------------------------------------------------------------------------------------------
# Catalogued schemes: the registered schemes at their defaults, without SymPy
# ----------------------------------------------------------------------------------------------

class _CataloguedScheme(InitScheme, Light):
    """A registered scheme at its default parameters whose numeric members come from the
    catalogue :mod:`varprop.components._compiled_schemes` (generated from the full scheme by
    :mod:`varprop.components.compiled_schemes`: the code ``lambdify`` compiles, so the floats are
    bit-identical) and need no SymPy.  ``spec``, ``law``, the exact moments and everything else
    SymPy-valued build the full scheme (its registered factory) on first access.  Name, params,
    repr, equality, hash and pickling are the full scheme's."""

    @classmethod
    def _from_entry(cls, name: str, entry: Mapping[str, Any]) -> _CataloguedScheme:
        """The light scheme of the catalogue ``entry`` of the registered name ``name``."""
        self = object.__new__(cls)
        # a frozen dataclass: the fields are set as its own __init__ does
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", dict(entry["params"]))
        object.__setattr__(self, "family", getattr(laws, entry["family"]))
        object.__setattr__(self, "note", entry["note"])
        object.__setattr__(self, "_entry", entry)
        return self

    @cached_property
    def _full(self) -> InitScheme:
        """The scheme built by its registered factory (imports SymPy)."""
        return SCHEMES.factory(self.name)()

    @cached_property
    def spec(self) -> Spec:  # type: ignore[override]
        return self._full.spec

    @cached_property
    def is_zero_mean(self) -> bool:
        r"""True if :math:`\mu_w = 0` for every fan (decided symbolically by the generator)."""
        return bool(self._entry["zero_mean"])

    @cached_property
    def _numeric_spec(self) -> Callable[[int, int], dict[str, float]]:
        fn, keys = self._entry["spec"], self._entry["spec_keys"]

        def evaluate(n_in: int, n_out: int) -> dict[str, float]:
            try:
                return dict(zip(keys, map(float_or_inf, fn(n_in, n_out))))
            except _FLOAT_ERRORS:
                return self._full._numeric_spec(n_in, n_out)
        return evaluate

    @cached_property
    def _numeric_moments(self) -> Callable[[int, int], tuple[float, float]]:
        fn = self._entry["moments"]
        if fn is None:  # a family computing its moments from the float parameters
            moments_of = self.family.moments_of  # type: ignore[attr-defined]
            return lambda n_in, n_out: moments_of(dict(_cached_parameters(self, n_in, n_out)))

        def evaluate(n_in: int, n_out: int) -> tuple[float, float]:
            try:
                mean, var = map(float_or_inf, fn(n_in, n_out))
            except _FLOAT_ERRORS:  # the full scheme's exact fallback
                return self._full._numeric_moments(n_in, n_out)
            return mean, var
        return evaluate


def _catalogued(name: str, items: tuple[tuple[str, type, object, bool], ...]
                ) -> InitScheme | None:
    """The catalogued scheme ``name`` if ``items`` (typed parameters) are all its defaults
    (same type, value and sign: ``mean=-0.0`` is not the default ``0.0``) and its factory is
    the one the catalogue was generated from (registered by a catalogued module and never
    unregistered, :meth:`Registry.replaced`)."""
    entry = _compiled_schemes.CATALOGUE.get(name)
    if (entry is None or SCHEMES.replaced(name)
            or SCHEMES.factory(name).__module__ not in _compiled_schemes.MODULES):
        return None  # not catalogued, or re-registered by a user
    defaults = typed_cache_key(entry["params"])
    if all(item in defaults for item in items):
        return _CataloguedScheme._from_entry(name, entry)
    return None


# ----------------------------------------------------------------------------------------------
# The registry and lookup
# ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=512)
def _build_cached(name: str, items: tuple[tuple[str, type, object, bool], ...]) -> InitScheme:
    light = _catalogued(name, items)
    if light is not None:
        return light
    return SCHEMES.build(name, argument="init", **{k: v for k, _, v, _ in items})


def init_scheme(name: str, **params: object) -> InitScheme:
    """Build the init scheme ``name`` (or alias) with ``params``.

    >>> init_scheme("kaiming_normal", mode="fan_out")
    he_normal(mode='fan_out', negative_slope=0.0)
    >>> init_scheme("he_normal").weight_variance()
    2/n_in
    """
    canonical = SCHEMES.canonical(name, argument="init")
    factory = SCHEMES._factories[canonical]
    allowed = list(inspect.signature(factory).parameters)
    for key in params:
        if key not in allowed:
            raise InvalidArgumentType(
                f"{key}={params[key]!r} is not a parameter of init scheme {canonical!r}: "
                f"allowed parameters are {allowed or '(none)'}{did_you_mean(key, allowed)}"
            )
    try:
        return _build_cached(canonical, typed_cache_key(params))
    except TypeError as exc:  # unhashable parameter values: build uncached
        if "unhashable" not in str(exc):
            raise
        return SCHEMES.build(canonical, argument="init", **params)


def resolve_scheme(init: object, *, argument: str = "init") -> InitScheme:
    """Accept an :class:`InitScheme` or a plain name string."""
    if isinstance(init, InitScheme):
        return init
    if isinstance(init, str):
        return _build_cached(SCHEMES.canonical(init, argument=argument), ())
    raise fail_type(argument, init, "an InitScheme (varprop.init_scheme(...)) or a scheme name")


def scheme_names(*, aliases: bool = False, frameworks: bool = False) -> list[str]:
    """Names of the registered schemes: varprop's own (unqualified) names, and with
    ``frameworks=True`` also the framework-qualified ones (``"keras:he_normal"``, ...;
    :mod:`varprop.components.frameworks`)."""
    names = SCHEMES.names(aliases=aliases)
    return names if frameworks else [n for n in names if ":" not in n]


def _rebuild(name: str, params: dict[str, object]) -> InitScheme:
    """Unpickling hook of :meth:`InitScheme.__reduce__`."""
    return init_scheme(name, **params)
