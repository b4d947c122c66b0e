r"""Weight-initialization schemes: one registry, SymPy weight moments, NumPy samplers.

Every scheme draws the entries of a weight matrix :math:`W \in \mathbb{R}^{n_{out}\times n_{in}}`
(so that :math:`z = W a`) and knows

* its entry mean :math:`\mu_w` and variance :math:`\sigma_w^2` as exact SymPy expressions of
  ``fan_in`` (:math:`n_{in}`), ``fan_out`` (:math:`n_{out}`) and its parameters;
* how to sample with NumPy (:meth:`InitScheme.sample`).

The named schemes are cases of :func:`variance_scaling` (Keras' ``VarianceScaling``):

.. math::

    \sigma_w^2 = \frac{\text{scale}}{n}, \qquad
    n = n_{in},\ n_{out}\ \text{or}\ \tfrac{1}{2}(n_{in} + n_{out})\ (\text{``fan_avg''}).

============================ ======================================= =========================
scheme                        :math:`\sigma_w^2`                       distribution
============================ ======================================= =========================
``standard_normal``          :math:`1`                                normal
``normal(std, mean)``        :math:`\text{std}^2`                     normal
``uniform(low, high)``       :math:`(\text{high}-\text{low})^2/12`    uniform (mean may be != 0)
``lecun_normal/uniform``     :math:`1/n_{in}`                         normal / uniform
``xavier_normal/uniform``    :math:`2 g^2/(n_{in}+n_{out})`           normal / uniform
``he_normal/uniform``        :math:`2/((1+a^2)\, n_{mode})`           normal / uniform
``truncated_normal(std, b)`` :math:`\text{std}^2 (1 - 2b\varphi(b)/(2\Phi(b)-1))` truncated at :math:`\pm b\,\text{std}`
``orthogonal(gain)``         :math:`g^2/\max(n_{in}, n_{out})`        Haar orthogonal times gain
``torch_linear_default``     :math:`1/(3 n_{in})`                     uniform :math:`\pm 1/\sqrt{n_{in}}`
============================ ======================================= =========================

References: LeCun et al. (1998) *Efficient BackProp*; Glorot & Bengio (2010); He et al. (2015);
Saxe et al. (2014) for orthogonal; Keras/JAX ``VarianceScaling`` for the truncated convention.
The ``*_normal`` schemes use an untruncated normal (the PyTorch convention); Keras and JAX use a
truncated normal rescaled to the same variance, available as
``variance_scaling(..., distribution="truncated_normal")``.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np
import sympy as sp

from varprop._math.truncnorm import truncated_normal_m2
from varprop._util.exact import exact
from varprop._util.registry import Registry, typed_cache_key
from varprop._util.rounding import float_or_inf
from varprop._util.validation import (
    check_choice,
    check_nonnegative_int,
    check_positive_int,
    check_positive_real,
    check_real,
    did_you_mean,
    fail,
    fail_type,
)
from varprop.errors import InvalidArgumentType, VarpropWarning

__all__ = [
    "InitScheme",
    "init_scheme",
    "resolve_scheme",
    "scheme_names",
    "variance_scaling",
    "FAN_IN",
    "FAN_OUT",
    "truncated_variance_factor",
]

#: The largest sample :meth:`InitScheme.sample` draws (bytes of the result).
SAMPLE_MEMORY_LIMIT = 4 * 2**30

Distribution = Literal["normal", "uniform", "truncated_normal", "orthogonal"]
Mode = Literal["fan_in", "fan_out", "fan_avg"]

#: SymPy symbols for the fan-in and fan-out of a layer.
FAN_IN = sp.Symbol("n_in", positive=True, integer=True)
FAN_OUT = sp.Symbol("n_out", positive=True, integer=True)

MODES = ("fan_in", "fan_out", "fan_avg")
VS_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")

# A spec maps (n_in, n_out) to the distribution's defining parameters as SymPy expressions:
#   normal:           {"loc", "scale"}                (scale = std)
#   uniform:          {"low", "high"}
#   truncated_normal: {"loc", "scale", "bound"}       (truncated at loc +- bound*scale)
#   orthogonal:       {"gain"}
Spec = Callable[[sp.Expr, sp.Expr], Mapping[str, sp.Expr]]


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


@dataclass(frozen=True, eq=False)
class InitScheme:
    r"""A weight-initialization scheme (build with :func:`init_scheme`).

    Attributes
    ----------
    name : str
        Canonical registry name, e.g. ``"he_normal"``.
    params : dict
        The parameters it was built with (defaults filled in).
    distribution : {"normal", "uniform", "truncated_normal", "orthogonal"}
        Shape of the entry distribution.
    """

    name: str
    params: Mapping[str, object]
    distribution: Distribution
    spec: Spec = field(repr=False)

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle by name and parameters (the compiled NumPy functions are rebuilt on load), so
        InitSchemes cross process and machine boundaries, e.g. to executor workers."""
        return (_rebuild, (self.name, dict(self.params)))

    # ----- symbolic -------------------------------------------------------------------------
    def _spec_at(self, fan_in: object, fan_out: object) -> Mapping[str, sp.Expr]:
        return self.spec(_symbolic_fan("fan_in", fan_in, FAN_IN),
                         _symbolic_fan("fan_out", fan_out, FAN_OUT))

    def weight_mean(self, fan_in: object = None, fan_out: object = None) -> sp.Expr:
        r"""Exact :math:`\mu_w = E[W_{ij}]` (symbols ``n_in``/``n_out`` where a fan is ``None``)."""
        p = self._spec_at(fan_in, fan_out)
        if self.distribution == "uniform":
            return sp.simplify((p["low"] + p["high"]) / 2)
        if self.distribution == "orthogonal":
            return sp.Integer(0)
        return sp.sympify(p["loc"])

    def weight_variance(self, fan_in: object = None, fan_out: object = None) -> sp.Expr:
        r"""Exact :math:`\sigma_w^2 = \operatorname{Var}(W_{ij})`.

        For ``orthogonal`` the entries are not independent; :math:`g^2/\max(n_{in}, n_{out})` is
        the exact entry variance of a Haar-orthogonal matrix times the gain :math:`g`.
        """
        p = self._spec_at(fan_in, fan_out)
        if self.distribution == "normal":
            return sp.simplify(p["scale"] ** 2)
        if self.distribution == "uniform":
            return sp.simplify((p["high"] - p["low"]) ** 2 / 12)
        if self.distribution == "truncated_normal":
            return sp.simplify(p["scale"] ** 2 * truncated_variance_factor(p["bound"]))
        n_in = _symbolic_fan("fan_in", fan_in, FAN_IN)
        n_out = _symbolic_fan("fan_out", fan_out, FAN_OUT)
        return sp.simplify(p["gain"] ** 2 / sp.Max(n_in, n_out))

    # ----- numeric --------------------------------------------------------------------------
    @cached_property
    def _numeric_spec(self) -> Callable[[int, int], dict[str, float]]:
        symbolic = self.spec(FAN_IN, FAN_OUT)
        keys = list(symbolic)
        fn = sp.lambdify((FAN_IN, FAN_OUT), [symbolic[k] for k in keys], modules="math")
        return lambda n_in, n_out: dict(zip(keys, map(float_or_inf, fn(n_in, n_out))))

    @cached_property
    def _numeric_moments(self) -> Callable[[int, int], tuple[float, float]]:
        expr = (self.weight_mean(), self.weight_variance())
        if self.distribution == "truncated_normal":
            # scale^2 m_2(bound) with the cancellation-free m_2 (the closed form in erf loses
            # every digit in floats below bound ~ 1e-8)
            def truncated(n_in: int, n_out: int) -> tuple[float, float]:
                p = self._numeric_spec(n_in, n_out)
                with np.errstate(over="ignore"):
                    var = float(np.square(p["scale"]) * truncated_normal_m2(p["bound"]))
                return p["loc"], var
            return truncated
        return _float_evaluator(expr)

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
        """The distribution's defining parameters (``loc``/``scale``/``low``/...) as floats."""
        return dict(_cached_parameters(self, check_positive_int("fan_in", fan_in),
                                       check_positive_int("fan_out", fan_out)))

    @property
    def is_gaussian(self) -> bool:
        """True if the entries are i.i.d. (untruncated) normal."""
        return self.distribution == "normal"

    @cached_property
    def is_zero_mean(self) -> bool:
        """True if :math:`\\mu_w = 0` for every fan (checked symbolically)."""
        return sp.simplify(self.weight_mean()) == 0

    @property
    def is_symmetric(self) -> bool:
        """True if the entry law is symmetric about 0 (``W`` and ``-W`` have the same law)."""
        return self.is_zero_mean

    @property
    def is_iid(self) -> bool:
        """True if the entries are independent (everything but ``orthogonal``)."""
        return self.distribution != "orthogonal"

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        *,
        size: tuple[int, ...] = (),
        dtype: object = np.float64,
    ) -> np.ndarray:
        """Draw weight matrices of shape ``size + (fan_out, fan_in)``.

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
        p = self.parameters(fan_in, fan_out)
        size = _check_size(size)
        shape = size + (fan_out, fan_in)
        dt = _check_float_dtype(dtype)
        needed = math.prod(shape) * dt.itemsize
        if needed > SAMPLE_MEMORY_LIMIT:
            raise fail("size", shape, f"a sample of at most {SAMPLE_MEMORY_LIMIT:,} bytes "
                       f"(varprop.components.schemes.SAMPLE_MEMORY_LIMIT): shape {shape} in {dt.name} would "
                       f"need {needed:,} bytes")
        if self.distribution == "normal":
            w = rng.standard_normal(shape, dtype=dt)
            w *= dt.type(p["scale"])
            if p["loc"] != 0.0:
                w += dt.type(p["loc"])
            return w
        if self.distribution == "uniform":
            w = rng.random(shape, dtype=dt)
            if math.isfinite(p["high"] - p["low"]):
                w *= dt.type(p["high"] - p["low"])
                w += dt.type(p["low"])
                return w
            half, mid = p["high"] / 2 - p["low"] / 2, p["high"] / 2 + p["low"] / 2  # no overflow
            w = 2 * w.astype(np.float64) - 1.0
            return (mid + half * w).astype(dt, copy=False)
        if self.distribution == "truncated_normal":
            w = _truncated_standard_normal(rng, shape, p["bound"], dt)
            w *= dt.type(p["scale"])
            if p["loc"] != 0.0:
                w += dt.type(p["loc"])
            return w
        return _haar_orthogonal(rng, shape, dt) * dt.type(p["gain"])

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


@lru_cache(maxsize=4096)
def _cached_parameters(scheme: InitScheme, fan_in: int, fan_out: int
                       ) -> tuple[tuple[str, float], ...]:
    return tuple(scheme._numeric_spec(fan_in, fan_out).items())


def _float_evaluator(exprs: tuple[sp.Expr, ...]) -> Callable[[int, int], tuple[float, ...]]:
    """Evaluate ``exprs`` at ``(n_in, n_out)`` as floats: compiled ``math`` code, and where it
    fails (an exact number beyond the float range, e.g. :math:`10^{400}/3`) SymPy's exact
    arithmetic, with results beyond the float range mapped to +-inf."""
    fn = sp.lambdify((FAN_IN, FAN_OUT), exprs, modules="math")

    def evaluate(n_in: int, n_out: int) -> tuple[float, ...]:
        try:
            return tuple(map(float_or_inf, fn(n_in, n_out)))
        except (OverflowError, ZeroDivisionError, ValueError):
            at = {FAN_IN: sp.Integer(n_in), FAN_OUT: sp.Integer(n_out)}
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


def _haar_orthogonal(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    *batch, n_out, n_in = shape
    tall = n_out >= n_in
    g = rng.standard_normal(tuple(batch) + ((n_out, n_in) if tall else (n_in, n_out)))
    q, r = np.linalg.qr(g)
    d = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    d[d == 0] = 1.0
    q = q * d[..., None, :]
    if not tall:
        q = np.swapaxes(q, -1, -2)
    return q.astype(dt, copy=False)


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------

SCHEMES: Registry[InitScheme] = Registry("init")


def _fan(mode: str, n_in: sp.Expr, n_out: sp.Expr) -> sp.Expr:
    return {"fan_in": n_in, "fan_out": n_out, "fan_avg": (n_in + n_out) / 2}[mode]


def _variance_scaling_spec(scale: sp.Expr, mode: str, distribution: str) -> tuple[str, Spec]:
    if distribution == "normal":
        return "normal", lambda i, o: {"loc": sp.Integer(0), "scale": sp.sqrt(scale / _fan(mode, i, o))}
    if distribution == "uniform":
        def spec(i: sp.Expr, o: sp.Expr) -> dict[str, sp.Expr]:
            limit = sp.sqrt(3 * scale / _fan(mode, i, o))
            return {"low": -limit, "high": limit}
        return "uniform", spec
    two = sp.Integer(2)  # Keras/JAX: truncate at 2 std of the underlying normal, rescale variance
    return "truncated_normal", lambda i, o: {
        "loc": sp.Integer(0),
        "scale": sp.sqrt(scale / _fan(mode, i, o) / truncated_variance_factor(two)),
        "bound": two,
    }


def _scheme(name: str, params: dict[str, object], distribution: str, spec: Spec) -> InitScheme:
    return InitScheme(name=name, params=params, distribution=distribution, spec=spec)  # type: ignore[arg-type]


@SCHEMES.register("variance_scaling")
def variance_scaling(
    scale: float = 1.0, mode: Mode = "fan_in", distribution: str = "truncated_normal"
) -> InitScheme:
    r"""General variance scaling: :math:`\sigma_w^2 = \text{scale}/n_{mode}` (Keras default
    ``distribution="truncated_normal"``, truncated at two underlying std and rescaled so that the
    variance is exactly ``scale / n``)."""
    scale_f = check_positive_real("scale", scale)
    check_choice("mode", mode, MODES)
    check_choice("distribution", distribution, VS_DISTRIBUTIONS)
    dist, spec = _variance_scaling_spec(exact(scale_f), mode, distribution)
    params = {"scale": scale_f, "mode": mode, "distribution": distribution}
    return _scheme("variance_scaling", params, dist, spec)


def _named_vs(name: str, params: dict[str, object], scale: sp.Expr, mode: str, dist: str) -> InitScheme:
    d, spec = _variance_scaling_spec(scale, mode, dist)
    return _scheme(name, params, d, spec)


@SCHEMES.register("standard_normal")
def standard_normal() -> InitScheme:
    r"""The seeds' naive init :math:`W_{ij} \sim N(0, 1)`: variance grows by :math:`n` per layer."""
    return _scheme("standard_normal", {}, "normal", lambda i, o: {"loc": sp.Integer(0), "scale": sp.Integer(1)})


@SCHEMES.register("normal")
def normal(std: float = 1.0, mean: float = 0.0) -> InitScheme:
    r""":math:`W_{ij} \sim N(\text{mean}, \text{std}^2)`."""
    s = exact(check_positive_real("std", std))
    m = exact(check_real("mean", mean))
    return _scheme("normal", {"std": float(std), "mean": float(mean)}, "normal", lambda i, o: {"loc": m, "scale": s})


@SCHEMES.register("uniform")
def uniform(low: float = 0.0, high: float = 1.0) -> InitScheme:
    r""":math:`W_{ij} \sim U[\text{low}, \text{high})`; the default :math:`U[0,1)` is the seeds'
    ``tf.random.uniform`` (mean 1/2: not zero-mean, units become correlated)."""
    lo = check_real("low", low)
    hi = check_real("high", high)
    if not hi > lo:
        raise fail("high", high, f"a number greater than low={low!r}")
    el, eh = exact(lo), exact(hi)
    return _scheme("uniform", {"low": lo, "high": hi}, "uniform", lambda i, o: {"low": el, "high": eh})


@SCHEMES.register("lecun_normal")
def lecun_normal() -> InitScheme:
    r"""LeCun normal: :math:`N(0, 1/n_{in})`."""
    return _named_vs("lecun_normal", {}, sp.Integer(1), "fan_in", "normal")


@SCHEMES.register("lecun_uniform")
def lecun_uniform() -> InitScheme:
    r"""LeCun uniform: :math:`U[-\sqrt{3/n_{in}}, \sqrt{3/n_{in}}]`."""
    return _named_vs("lecun_uniform", {}, sp.Integer(1), "fan_in", "uniform")


def _check_gain(gain: object) -> sp.Expr:
    return exact(check_positive_real("gain", gain))


@SCHEMES.register("xavier_normal", "glorot_normal")
def xavier_normal(gain: float = 1.0) -> InitScheme:
    r"""Glorot & Bengio (2010): :math:`N(0, 2 g^2/(n_{in}+n_{out}))`."""
    g = _check_gain(gain)
    return _named_vs("xavier_normal", {"gain": float(gain)}, g**2, "fan_avg", "normal")


@SCHEMES.register("xavier_uniform", "glorot_uniform")
def xavier_uniform(gain: float = 1.0) -> InitScheme:
    r"""Glorot & Bengio (2010): :math:`U[\pm g\sqrt{6/(n_{in}+n_{out})}]`."""
    g = _check_gain(gain)
    return _named_vs("xavier_uniform", {"gain": float(gain)}, g**2, "fan_avg", "uniform")


def _he_scale(mode: object, negative_slope: object) -> sp.Expr:
    check_choice("mode", mode, ("fan_in", "fan_out"))
    a = exact(check_real("negative_slope", negative_slope))
    return 2 / (1 + a**2)


@SCHEMES.register("he_normal", "kaiming_normal")
def he_normal(mode: Mode = "fan_in", negative_slope: float = 0.0) -> InitScheme:
    r"""He et al. (2015): :math:`N(0, 2/((1+a^2) n_{mode}))` (PyTorch ``kaiming_normal_``)."""
    scale = _he_scale(mode, negative_slope)
    params = {"mode": mode, "negative_slope": float(negative_slope)}
    return _named_vs("he_normal", params, scale, str(mode), "normal")


@SCHEMES.register("he_uniform", "kaiming_uniform")
def he_uniform(mode: Mode = "fan_in", negative_slope: float = 0.0) -> InitScheme:
    r"""He et al. (2015): :math:`U[\pm\sqrt{6/((1+a^2) n_{mode})}]` (PyTorch ``kaiming_uniform_``)."""
    scale = _he_scale(mode, negative_slope)
    params = {"mode": mode, "negative_slope": float(negative_slope)}
    return _named_vs("he_uniform", params, scale, str(mode), "uniform")


@SCHEMES.register("truncated_normal")
def truncated_normal(std: float = 1.0, bound: float = 2.0) -> InitScheme:
    r""":math:`N(0, \text{std}^2)` truncated to :math:`\pm\text{bound}\cdot\text{std}` (Keras/JAX
    convention); its variance is the truncated one,
    :math:`\text{std}^2\,(1 - 2b\varphi(b)/(2\Phi(b)-1))` (0.7737 std^2 for b = 2)."""
    s = exact(check_positive_real("std", std))
    b = exact(check_positive_real("bound", bound))
    params = {"std": float(std), "bound": float(bound)}
    return _scheme("truncated_normal", params, "truncated_normal",
                   lambda i, o: {"loc": sp.Integer(0), "scale": s, "bound": b})


@SCHEMES.register("orthogonal")
def orthogonal(gain: float = 1.0) -> InitScheme:
    r"""Saxe et al. (2014): a Haar-random matrix with orthonormal rows or columns, times ``gain``.

    For :math:`n_{out} \ge n_{in}` it is an isometry, :math:`\|W a\| = g\|a\|` exactly, so a linear
    orthogonal net has zero-variance norms; entry variance :math:`g^2/\max(n_{in}, n_{out})`."""
    g = _check_gain(gain)
    return _scheme("orthogonal", {"gain": float(gain)}, "orthogonal", lambda i, o: {"gain": g})


@SCHEMES.register("torch_linear_default", "pytorch_linear_default")
def torch_linear_default() -> InitScheme:
    r"""PyTorch ``nn.Linear``'s default: ``kaiming_uniform_(a=sqrt(5))``, i.e.
    :math:`U[\pm 1/\sqrt{n_{in}}]`, :math:`\sigma_w^2 = 1/(3 n_{in})` -- not He: a deep ReLU net
    loses a factor 6 of variance per layer."""
    return _named_vs("torch_linear_default", {}, sp.Rational(1, 3), "fan_in", "uniform")


@lru_cache(maxsize=512)
def _build_cached(name: str, items: tuple[tuple[str, type, object], ...]) -> InitScheme:
    return SCHEMES.build(name, argument="init", **{k: v for k, _, v in items})


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


def scheme_names(*, aliases: bool = False) -> list[str]:
    """Names of the registered schemes."""
    return SCHEMES.names(aliases=aliases)


def _rebuild(name: str, params: dict[str, object]) -> InitScheme:
    """Unpickling hook of :meth:`InitScheme.__reduce__`."""
    return init_scheme(name, **params)


def _truncated_standard_normal(rng: np.random.Generator, shape: tuple[int, ...], bound: float,
                               dt: np.dtype) -> np.ndarray:
    """:math:`N(0, 1)` conditioned on :math:`|w| \\le` ``bound``: rejection from the normal when
    it accepts at least 68% of the draws (``bound >= 1``), else from the uniform on
    :math:`[-b, b]`, accepting :math:`w` with probability :math:`e^{-w^2/2}` (at least 86%; the
    inverse CDF on :math:`[\\Phi(-b), \\Phi(b)]` it replaces resolved only about
    :math:`10^{-16}/b` of the interval)."""
    if bound >= 1.0:
        w = rng.standard_normal(shape, dtype=dt)
        bad = np.abs(w) > bound
        while bad.any():
            w[bad] = rng.standard_normal(int(bad.sum()), dtype=dt)
            bad = np.abs(w) > bound
        return w
    w = np.empty(int(np.prod(shape, dtype=np.int64)))
    todo = np.arange(w.size)
    while todo.size:
        x = bound * (2.0 * rng.random(todo.size) - 1.0)
        ok = rng.random(todo.size) < np.exp(-0.5 * x * x)
        w[todo[ok]] = x[ok]
        todo = todo[~ok]
    return w.reshape(shape).astype(dt, copy=False)
