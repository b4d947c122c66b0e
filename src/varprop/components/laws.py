r"""Weight laws: the distribution of the entries of one weight matrix, one class per family.

A :class:`WeightLaw` is the law of a weight matrix :math:`W \in \mathbb{R}^{n_{out}\times n_{in}}`
(so that :math:`z = W a`).  Each family knows

* its entry mean and variance as exact SymPy expressions (:attr:`WeightLaw.mean`,
  :attr:`WeightLaw.variance`) and as floats (:meth:`WeightLaw.moments`);
* the excess kurtosis, support, CDF and a NumPy sampler of an entry;
* whether the entries are i.i.d. (``iid``), Gaussian (``gaussian``) and symmetric about their
  mean (``symmetric``).

An init scheme (:class:`varprop.InitScheme`) is a family plus a rule giving the family's
parameters at each ``(fan_in, fan_out)``: ``scheme.law(fan_in, fan_out)`` is the law of that
layer's weights.  Adding a distribution family is one subclass of :class:`WeightLaw`: declare its
parameter names and implement the abstract members; every engine reads the law through this
interface.

============================ ===================================== ==============================
family                        parameters                            entry variance
============================ ===================================== ==============================
:class:`Normal`              ``loc``, ``scale`` (std)              :math:`\text{scale}^2`
:class:`Uniform`             ``low``, ``high``                     :math:`(\text{high}-\text{low})^2/12`
:class:`TruncatedNormal`     ``loc``, ``scale``, ``bound``         :math:`\text{scale}^2 (1 - 2b\varphi(b)/(2\Phi(b)-1))`
:class:`Orthogonal`          ``gain``                              :math:`g^2/\max(n_{in}, n_{out})`
============================ ===================================== ==============================
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from functools import cache, cached_property, partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from varprop._math.truncnorm import (
    truncated_normal_excess_kurtosis,
    truncated_normal_m2,
)
from varprop._math.weight_sampling import haar_orthogonal, truncated_standard_normal
from varprop._util.exact import exact
from varprop._util.lazy import lazy_module
from varprop._util.rounding import float_or_inf
from varprop._util.validation import fail

if TYPE_CHECKING:  # pragma: no cover
    import sympy as sp
else:
    #: SymPy, imported at first use (:mod:`varprop._util.lazy`): the numeric members of a law
    #: and the families' flags need none of it.
    sp = lazy_module("sympy")
#: scipy.special, imported at first use (:mod:`varprop._util.lazy`)
special = lazy_module("scipy.special")

# FAN_IN/FAN_OUT: module attributes made by __getattr__ (PEP 562)
__all__ = ["WeightLaw", "Normal", "Uniform", "TruncatedNormal", "Orthogonal",  # noqa: F822
           "truncated_variance_factor", "fan_symbols", "FAN_IN", "FAN_OUT"]


@cache
def fan_symbols() -> tuple[sp.Symbol, sp.Symbol]:
    """The SymPy symbols ``(n_in, n_out)`` of a layer's fan-in and fan-out, also the module
    attributes ``FAN_IN`` and ``FAN_OUT``; made at first use, so that importing the laws imports
    no SymPy."""
    return (sp.Symbol("n_in", positive=True, integer=True),
            sp.Symbol("n_out", positive=True, integer=True))


def __getattr__(name: str) -> Any:
    """``FAN_IN``/``FAN_OUT`` (:func:`fan_symbols`), made at first access (PEP 562)."""
    if name in ("FAN_IN", "FAN_OUT"):
        return fan_symbols()[name == "FAN_OUT"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def truncated_variance_factor(bound: sp.Expr) -> sp.Expr:
    r"""Variance of :math:`N(0,1)` truncated to :math:`[-b, b]`:
    :math:`1 - \frac{2 b \varphi(b)}{2\Phi(b) - 1}
    = 1 - \sqrt{2/\pi}\, b\, e^{-b^2/2} / \operatorname{erf}(b/\sqrt2)`.

    A float ``bound`` is made exact first (:func:`varprop._util.exact.exact`), so the expression stays
    unevaluated: SymPy's ``evalf`` (and ``float()``) then raise the working precision through the
    cancellation of the two terms near 1 at small :math:`b` (:math:`\approx b^2/3`), where float
    arithmetic would lose every digit below :math:`b \approx 10^{-8}`.  Numeric code uses the
    cancellation-free :func:`varprop._math.truncnorm.truncated_normal_m2`.
    """
    inexact = isinstance(bound, sp.Float) or (
        isinstance(bound, numbers.Real) and not isinstance(bound, (numbers.Integral, sp.Basic)))
    b = exact(float(bound)) if inexact else sp.sympify(bound)
    return 1 - sp.sqrt(2 / sp.pi) * b * sp.exp(-(b**2) / 2) / sp.erf(b / sp.sqrt(2))


class WeightLaw(ABC):
    r"""The law of the entries of a ``fan_out x fan_in`` weight matrix (one subclass per family).

    Parameters
    ----------
    params : mapping
        The family's parameters (:attr:`parameter_names`) as exact SymPy expressions (numbers, or
        expressions in the symbols ``n_in``/``n_out`` for a law stated at symbolic fans).
    fan_in, fan_out : sympy.Expr, optional
        The matrix's fans (the symbols ``n_in``/``n_out`` by default); only laws whose entries
        are not i.i.d. (e.g. :class:`Orthogonal`) depend on them beyond their parameters.
    numeric : mapping, optional
        The parameters as floats, when the caller has them already (an init scheme evaluates
        its compiled parameter rule); by default each exact parameter rounded to a float
        (beyond the float range: ``inf``).

    Subclasses set the class attributes ``family`` (the name, e.g. ``"normal"``),
    ``parameter_names``, ``scale_parameters`` (those that scale with :math:`W`:
    :meth:`rescaled` divides them), ``iid``, ``gaussian`` and ``symmetric``, and implement
    :attr:`mean`, :attr:`variance`, :meth:`kurtosis`, :meth:`support`, :meth:`cdf`,
    :meth:`sample`, :attr:`scale` and :meth:`describe`.  The numeric members use the float
    parameters only, so they work at any fans the parameters were evaluated at.
    """

    family: ClassVar[str]
    parameter_names: ClassVar[tuple[str, ...]]
    scale_parameters: ClassVar[tuple[str, ...]]
    #: The entries are independent and identically distributed.
    iid: ClassVar[bool] = True
    #: The entries are (untruncated) normal.
    gaussian: ClassVar[bool] = False
    #: An entry minus its mean has the law of its negative.
    symmetric: ClassVar[bool] = True
    #: :math:`W/g` has orthonormal rows (wide) or columns (tall) for the scale :math:`g`: a
    #: square matrix is :math:`g` times an isometry, :math:`\|W a\| = g \|a\|` exactly.
    orthonormal: ClassVar[bool] = False
    #: One sentence on the entries for derivations (default: :meth:`summary` from the flags).
    statement: ClassVar[str] = ""

    @classmethod
    def summary(cls) -> str:
        """One sentence on the entries (:attr:`statement`, or one made from the flags)."""
        if cls.statement:
            return cls.statement
        return (f"entries i.i.d. {cls.family}" if cls.iid
                else f"entries of a {cls.family} law, not independent")

    def __init__(self, params: Mapping[str, object], *, fan_in: object = None,
                 fan_out: object = None, numeric: Mapping[str, float] | None = None) -> None:
        missing = [k for k in self.parameter_names if k not in params]
        if missing or len(params) != len(self.parameter_names):
            raise fail("params", dict(params),
                       f"exactly the parameters {list(self.parameter_names)} of {self.family!r}")
        self.exact = {k: sp.sympify(params[k]) for k in self.parameter_names}
        n_in, n_out = fan_symbols()
        self.fan_in = n_in if fan_in is None else sp.sympify(fan_in)
        self.fan_out = n_out if fan_out is None else sp.sympify(fan_out)
        if numeric is not None:
            self.__dict__["parameters"] = {k: float(numeric[k]) for k in self.parameter_names}

    @classmethod
    def at_fans(cls, numeric: Mapping[str, float], fan_in: int, fan_out: int,
                exact_law: Callable[[], WeightLaw]) -> WeightLaw:
        """The law at integer fans from its float parameters alone (no SymPy: an init scheme's
        catalogued numeric path, :mod:`varprop.components.scheme`).  Its numeric members are
        those of ``cls(params, fan_in=..., fan_out=..., numeric=numeric)``; its exact ones
        (:attr:`exact`, :attr:`mean`, :attr:`variance`, :meth:`moments`, repr) are read from
        ``exact_law()``, that law, built at first access."""
        law = cls.__new__(cls)
        law.__dict__.update(parameters={k: float(numeric[k]) for k in cls.parameter_names},
                            _fans=(fan_in, fan_out), _exact_law=exact_law)
        return law

    # a law made by ``at_fans`` reads these from its exact law (others set them in __init__)
    @cached_property
    def exact(self) -> dict[str, sp.Expr]:
        """The parameters as exact SymPy expressions."""
        return self.__dict__["_exact_law"]().exact

    @cached_property
    def fan_in(self) -> sp.Expr:
        """The matrix's fan-in (a SymPy integer or expression)."""
        return sp.Integer(self.__dict__["_fans"][0])

    @cached_property
    def fan_out(self) -> sp.Expr:
        """The matrix's fan-out (a SymPy integer or expression)."""
        return sp.Integer(self.__dict__["_fans"][1])

    @cached_property
    def parameters(self) -> dict[str, float]:
        """The parameters as floats (``inf`` beyond the float range)."""
        return {k: float_or_inf(sp.N(v, 20)) for k, v in self.exact.items()}

    # ----- exact ------------------------------------------------------------------------------
    @property
    @abstractmethod
    def mean(self) -> sp.Expr:
        r"""Exact entry mean :math:`\mu_w = E[W_{ij}]`."""

    @property
    @abstractmethod
    def variance(self) -> sp.Expr:
        r"""Exact entry variance :math:`\sigma_w^2 = \operatorname{Var}(W_{ij})`."""

    # ----- numeric ----------------------------------------------------------------------------
    #: True when :meth:`moments` are the exact moments rounded to floats; a family whose exact
    #: expressions lose digits in float arithmetic sets it to False and overrides :meth:`moments`
    #: with a stable float formula in its parameters.
    moments_from_exact: ClassVar[bool] = True

    def moments(self) -> tuple[float, float]:
        r"""``(mu_w, sigma_w^2)`` as floats (``inf`` beyond the float range)."""
        return float_or_inf(sp.N(self.mean, 20)), float_or_inf(sp.N(self.variance, 20))

    @abstractmethod
    def kurtosis(self) -> float:
        """Excess kurtosis of an entry (0 for a normal)."""

    @abstractmethod
    def support(self) -> tuple[float, float]:
        """Smallest closed interval holding every entry (``(-inf, inf)`` when unbounded)."""

    @property
    def bounded(self) -> bool:
        """The support is a finite interval."""
        return all(map(math.isfinite, self.support()))

    @abstractmethod
    def cdf(self, v: np.ndarray) -> np.ndarray:
        """CDF of an entry at ``v`` (vectorised)."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Draw matrices of shape ``shape = batch + (fan_out, fan_in)`` (arguments validated by
        the caller, :meth:`varprop.InitScheme.sample`)."""

    @property
    @abstractmethod
    def scale(self) -> float:
        """A typical magnitude of an entry (std, half-width, gain): statistics divide the
        weights by the power of two of this size, so any scale is handled alike."""

    @abstractmethod
    def describe(self) -> str:
        """A short text of the law at its float parameters, e.g. ``N(0, 0.1^2)``."""

    def rescaled(self, e: int) -> WeightLaw:
        r"""The law of :math:`W / 2^e` (exact in floats: only the exponents of the scale
        parameters change)."""
        p = self.parameters
        numeric = {k: (float(np.ldexp(v, -e)) if k in self.scale_parameters else v)
                   for k, v in p.items()}
        if "_exact_law" in self.__dict__:  # a law at integer fans: its exact law at first use
            return self.at_fans(numeric, *self.__dict__["_fans"],
                                partial(_rescaled, self.__dict__["_exact_law"], e))
        factor = sp.Integer(2) ** (-e)
        params = {k: (v * factor if k in self.scale_parameters else v)
                  for k, v in self.exact.items()}
        return type(self)(params, fan_in=self.fan_in, fan_out=self.fan_out, numeric=numeric)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.exact.items())
        return f"{type(self).__name__}({args})"


def _rescaled(exact_law: Callable[[], WeightLaw], e: int) -> WeightLaw:
    """The exact law of a rescaled law at integer fans (:meth:`WeightLaw.rescaled`)."""
    return exact_law().rescaled(e)


class _LocationScale(WeightLaw):
    r"""A family :math:`\text{loc} + \text{scale}\cdot S` for a standard member :math:`S`
    (drawn by :meth:`_standard`): mean ``loc``, scale ``scale``."""

    scale_parameters = ("loc", "scale")

    @property
    def mean(self) -> sp.Expr:
        return sp.sympify(self.exact["loc"])

    @property
    def scale(self) -> float:
        return self.parameters["scale"]

    @abstractmethod
    def _standard(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype
                  ) -> np.ndarray:
        """Draws of the standard member :math:`S` (``loc = 0``, ``scale = 1``)."""

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        p = self.parameters
        w = self._standard(rng, shape, dtype)
        w *= dtype.type(p["scale"])
        if p["loc"] != 0.0:
            w += dtype.type(p["loc"])
        return w


class Normal(_LocationScale):
    r""":math:`W_{ij} \sim N(\text{loc}, \text{scale}^2)`, i.i.d."""

    family = "normal"
    parameter_names = ("loc", "scale")
    gaussian = True
    statement = "entries i.i.d. normal"

    @property
    def variance(self) -> sp.Expr:
        return sp.simplify(self.exact["scale"] ** 2)

    def kurtosis(self) -> float:
        return 0.0

    def support(self) -> tuple[float, float]:
        return (-math.inf, math.inf)

    def cdf(self, v: np.ndarray) -> np.ndarray:
        p = self.parameters
        return special.ndtr((v - p["loc"]) / p["scale"])

    def _standard(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype
                  ) -> np.ndarray:
        return rng.standard_normal(shape, dtype=dtype)

    def describe(self) -> str:
        p = self.parameters
        return f"N({p['loc']:.6g}, {p['scale']:.6g}^2)"


class Uniform(WeightLaw):
    r""":math:`W_{ij} \sim U[\text{low}, \text{high})`, i.i.d."""

    family = "uniform"
    parameter_names = ("low", "high")
    scale_parameters = ("low", "high")
    statement = "entries i.i.d. uniform, variance (high - low)^2 / 12"

    @property
    def mean(self) -> sp.Expr:
        return sp.simplify((self.exact["low"] + self.exact["high"]) / 2)

    @property
    def variance(self) -> sp.Expr:
        return sp.simplify((self.exact["high"] - self.exact["low"]) ** 2 / 12)

    def kurtosis(self) -> float:
        return -1.2

    def support(self) -> tuple[float, float]:
        return (self.parameters["low"], self.parameters["high"])

    def cdf(self, v: np.ndarray) -> np.ndarray:
        low, high = self.support()
        if math.isfinite(high - low):
            return np.clip((v - low) / (high - low), 0.0, 1.0)
        return np.clip((v / 2 - low / 2) / (high / 2 - low / 2), 0.0, 1.0)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        low, high = self.support()
        w = rng.random(shape, dtype=dtype)
        if math.isfinite(high - low):
            width, shift = dtype.type(high - low), dtype.type(low)
            if width != 1:  # w * 1 and w + 0 (w >= 0, never -0.0) change no bit
                w *= width
            if shift != 0:
                w += shift
            return w
        half, mid = high / 2 - low / 2, high / 2 + low / 2  # no overflow
        w = 2 * w.astype(np.float64) - 1.0
        return (mid + half * w).astype(dtype, copy=False)

    @property
    def scale(self) -> float:
        low, high = self.support()
        return max(abs(low), abs(high))

    def describe(self) -> str:
        low, high = self.support()
        return f"U[{low:.6g}, {high:.6g}]"


class TruncatedNormal(_LocationScale):
    r""":math:`N(\text{loc}, \text{scale}^2)` conditioned on
    :math:`|W_{ij} - \text{loc}| \le \text{bound}\cdot\text{scale}`, i.i.d."""

    family = "truncated_normal"
    parameter_names = ("loc", "scale", "bound")
    moments_from_exact = False
    statement = ("entries i.i.d. normal truncated at +-bound std; the variance is the truncated "
                 "one, std^2 (1 - 2 b phi(b) / (2 Phi(b) - 1))")

    @property
    def variance(self) -> sp.Expr:
        return sp.simplify(self.exact["scale"] ** 2 * truncated_variance_factor(self.exact["bound"]))

    def moments(self) -> tuple[float, float]:
        r""":math:`(\text{loc}, \text{scale}^2 m_2(b))` with the cancellation-free
        :math:`m_2` (the closed form in erf loses every digit in floats below
        :math:`b \approx 10^{-8}`): :meth:`moments_of` the float parameters."""
        return self.moments_of(self.parameters)

    @staticmethod
    def moments_of(parameters: Mapping[str, float]) -> tuple[float, float]:
        r""":meth:`moments` from the float parameters alone (no law, no SymPy: an init scheme's
        numeric path, :mod:`varprop.components.scheme`)."""
        with np.errstate(over="ignore"):
            var = float(np.square(parameters["scale"]) * truncated_normal_m2(parameters["bound"]))
        return parameters["loc"], var

    def kurtosis(self) -> float:
        return truncated_normal_excess_kurtosis(self.parameters["bound"])

    def support(self) -> tuple[float, float]:
        p = self.parameters
        return (p["loc"] - p["bound"] * p["scale"], p["loc"] + p["bound"] * p["scale"])

    def cdf(self, v: np.ndarray) -> np.ndarray:
        r"""For :math:`b \le 1`
        :math:`(\operatorname{erf}(t/\sqrt2) + \operatorname{erf}(b/\sqrt2))/(2\operatorname{erf}(b/\sqrt2))`
        (:math:`\Phi(t) - \Phi(-b)` would cancel near 1/2); the difference of normal CDFs
        beyond (accurate in the tails)."""
        p = self.parameters
        loc, scale, b = p["loc"], p["scale"], p["bound"]
        if b <= 1.0:
            eb = special.erf(b / math.sqrt(2.0))
            return np.clip((special.erf((v - loc) / scale / math.sqrt(2.0)) + eb) / (2.0 * eb),
                           0.0, 1.0)
        lo_mass, mass = special.ndtr(-b), special.ndtr(b) - special.ndtr(-b)
        return np.clip((special.ndtr((v - loc) / scale) - lo_mass) / mass, 0.0, 1.0)

    def _standard(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype
                  ) -> np.ndarray:
        return truncated_standard_normal(rng, shape, self.parameters["bound"], dtype)

    def describe(self) -> str:
        p = self.parameters
        return f"N({p['loc']:.6g}, {p['scale']:.6g}^2) truncated at +-{p['bound']:.6g} std"


class Orthogonal(WeightLaw):
    r"""``gain`` times a Haar-random matrix with orthonormal rows (wide) or columns (tall).

    The entries are dependent (not i.i.d.).  With :math:`m = \max(n_{in}, n_{out})` an entry
    :math:`W_{ij}/g` is a coordinate of a uniform unit vector in :math:`\mathbb{R}^m`:
    :math:`(W_{ij}/g)^2 \sim \mathrm{Beta}(1/2, (m-1)/2)`, symmetric in sign, so the entry
    variance is :math:`g^2/m` and the excess kurtosis :math:`3m/(m+2) - 3 = -6/(m+2)`.
    """

    family = "orthogonal"
    parameter_names = ("gain",)
    scale_parameters = ("gain",)
    iid = False
    orthonormal = True
    statement = ("Haar-orthogonal times gain g; entries are uncorrelated (sign symmetry) with "
                 "variance g^2 / max(n_in, n_out), not independent")

    @property
    def _m(self) -> sp.Expr:
        return sp.Max(self.fan_in, self.fan_out)

    def _m_float(self) -> float:
        if "_fans" in self.__dict__:  # integer fans (:meth:`WeightLaw.at_fans`)
            return float_or_inf(max(self.__dict__["_fans"]))  # inf beyond the float range
        m = self._m
        if not m.is_number:
            raise fail("fan_in", self.fan_in, "numeric fans for the numeric members of an "
                       "orthogonal law (build it with scheme.law(fan_in, fan_out))")
        return float(m)

    @property
    def mean(self) -> sp.Expr:
        return sp.Integer(0)

    @property
    def variance(self) -> sp.Expr:
        return sp.simplify(self.exact["gain"] ** 2 / self._m)

    def kurtosis(self) -> float:
        return -6.0 / (self._m_float() + 2.0)

    def support(self) -> tuple[float, float]:
        g = self.parameters["gain"]
        return (-g, g)

    def cdf(self, v: np.ndarray) -> np.ndarray:
        m, g = self._m_float(), self.parameters["gain"]
        if m == 1:
            return np.where(np.asarray(v) < -g, 0.0, np.where(np.asarray(v) < g, 0.5, 1.0))
        u = np.minimum((np.asarray(v, dtype=float) / g) ** 2, 1.0)
        half = 0.5 * special.betainc(0.5, (m - 1) / 2.0, u)  # the Beta(1/2, (m-1)/2) cdf
        return 0.5 + np.sign(v) * half

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        w, gain = haar_orthogonal(rng, shape, dtype), dtype.type(self.parameters["gain"])
        if gain != 1:  # in place (w is fresh); w * 1 changes no bit
            w *= gain
        return w

    @property
    def scale(self) -> float:
        return self.parameters["gain"]

    def describe(self) -> str:
        return f"{self.parameters['gain']:.6g} x Haar orthogonal"
