r"""Weight-initialization schemes: the catalogue of named schemes.

Every scheme draws the entries of a weight matrix :math:`W \in \mathbb{R}^{n_{out}\times n_{in}}`
(so that :math:`z = W a`) and knows

* its entry mean :math:`\mu_w` and variance :math:`\sigma_w^2` as exact SymPy expressions of
  ``fan_in`` (:math:`n_{in}`), ``fan_out`` (:math:`n_{out}`) and its parameters;
* how to sample with NumPy (:meth:`InitScheme.sample`).

Both come from the scheme's weight law (:mod:`varprop.components.laws`, one class per
distribution family): ``scheme.law(fan_in, fan_out)``.  The type and the lookup functions live in
:mod:`varprop.components.scheme`; this module registers the named schemes and re-exports the
public names.

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

from typing import TYPE_CHECKING, Any, Literal

from varprop._util.exact import exact
from varprop._util.lazy import lazy_module
from varprop._util.validation import (
    check_choice,
    check_positive_real,
    check_real,
    fail,
)
from varprop.components import laws
from varprop.components.laws import (
    Normal,
    Orthogonal,
    TruncatedNormal,
    Uniform,
    WeightLaw,
    truncated_variance_factor,
)
from varprop.components.scheme import (
    SAMPLE_MEMORY_LIMIT,
    SCHEMES,
    InitScheme,
    Spec,
    _build_cached,
    _cached_moments,
    init_scheme,
    resolve_scheme,
    scheme_names,
    weight_moments,
)

if TYPE_CHECKING:  # pragma: no cover
    import sympy as sp
else:
    #: SymPy, imported at first use (:mod:`varprop._util.lazy`): the factories build exact
    #: expressions, but the catalogued schemes (:mod:`varprop.components.scheme`) need none.
    sp = lazy_module("sympy")


def __getattr__(name: str) -> Any:
    """``FAN_IN``/``FAN_OUT``, re-exported from :mod:`varprop.components.laws` at first access
    (they are SymPy symbols: PEP 562 keeps the import of this module free of SymPy)."""
    if name in ("FAN_IN", "FAN_OUT"):
        return getattr(laws, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "InitScheme",
    "init_scheme",
    "resolve_scheme",
    "scheme_names",
    "variance_scaling",
    "weight_moments",
    "FAN_IN",  # noqa: F822  (module __getattr__, PEP 562)
    "FAN_OUT",  # noqa: F822
    "SAMPLE_MEMORY_LIMIT",
    "truncated_variance_factor",
]

# re-exported for the package's own modules (within ``components`` or by name for compatibility)
_REEXPORTED = (SCHEMES, _build_cached, _cached_moments)

Mode = Literal["fan_in", "fan_out", "fan_avg", "fan_geo_avg"]
#: ``fan_geo_avg`` is JAX's :math:`\sqrt{n_{in} n_{out}}`.
MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
#: ``untruncated_normal`` is Keras' name of ``normal`` (an untruncated normal).
VS_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform", "untruncated_normal")


def _fan(mode: str, n_in: sp.Expr, n_out: sp.Expr) -> sp.Expr:
    if mode == "fan_geo_avg":
        return sp.sqrt(n_in * n_out)
    return {"fan_in": n_in, "fan_out": n_out, "fan_avg": (n_in + n_out) / 2}[mode]


def _normal_vs(scale: sp.Expr, mode: str) -> Spec:
    return lambda i, o: {"loc": sp.Integer(0), "scale": sp.sqrt(scale / _fan(mode, i, o))}


def _uniform_vs(scale: sp.Expr, mode: str) -> Spec:
    def spec(i: sp.Expr, o: sp.Expr) -> dict[str, sp.Expr]:
        limit = sp.sqrt(3 * scale / _fan(mode, i, o))
        return {"low": -limit, "high": limit}
    return spec


def _truncated_vs(scale: sp.Expr, mode: str) -> Spec:
    two = sp.Integer(2)  # Keras/JAX: truncate at 2 std of the underlying normal, rescale variance
    return lambda i, o: {
        "loc": sp.Integer(0),
        "scale": sp.sqrt(scale / _fan(mode, i, o) / truncated_variance_factor(two)),
        "bound": two,
    }


#: ``variance_scaling``'s distributions: the law family and its parameters at variance scale/n.
_VS_LAWS = {"normal": (Normal, _normal_vs), "uniform": (Uniform, _uniform_vs),
            "truncated_normal": (TruncatedNormal, _truncated_vs)}


def _variance_scaling_spec(scale: sp.Expr, mode: str, distribution: str
                           ) -> tuple[type[WeightLaw], Spec]:
    family, spec = _VS_LAWS["normal" if distribution == "untruncated_normal" else distribution]
    return family, spec(scale, mode)


def _scheme(name: str, params: dict[str, object], family: type[WeightLaw], spec: Spec) -> InitScheme:
    return InitScheme(name=name, params=params, family=family, spec=spec)


@SCHEMES.register("variance_scaling")
def variance_scaling(
    scale: float = 1.0, mode: Mode = "fan_in", distribution: str = "truncated_normal"
) -> InitScheme:
    r"""General variance scaling: :math:`\sigma_w^2 = \text{scale}/n_{mode}` (Keras default
    ``distribution="truncated_normal"``, truncated at two underlying std and rescaled so that the
    variance is exactly ``scale / n``; ``"untruncated_normal"``, Keras' name, is ``"normal"``);
    ``mode="fan_geo_avg"`` is JAX's :math:`n = \sqrt{n_{in} n_{out}}`."""
    scale_f = check_positive_real("scale", scale)
    check_choice("mode", mode, MODES)
    check_choice("distribution", distribution, VS_DISTRIBUTIONS)
    if distribution == "untruncated_normal":
        distribution = "normal"
    dist, spec = _variance_scaling_spec(exact(scale_f), mode, distribution)
    params = {"scale": scale_f, "mode": mode, "distribution": distribution}
    return _scheme("variance_scaling", params, dist, spec)


def _named_vs(name: str, params: dict[str, object], scale: sp.Expr, mode: str, dist: str) -> InitScheme:
    d, spec = _variance_scaling_spec(scale, mode, dist)
    return _scheme(name, params, d, spec)


@SCHEMES.register("standard_normal")
def standard_normal() -> InitScheme:
    r"""The naive init :math:`W_{ij} \sim N(0, 1)`: variance grows by :math:`n` per layer."""
    return _scheme("standard_normal", {}, Normal,
                   lambda i, o: {"loc": sp.Integer(0), "scale": sp.Integer(1)})


@SCHEMES.register("normal")
def normal(std: float = 1.0, mean: float = 0.0) -> InitScheme:
    r""":math:`W_{ij} \sim N(\text{mean}, \text{std}^2)`."""
    s = exact(check_positive_real("std", std))
    m = exact(check_real("mean", mean))
    return _scheme("normal", {"std": float(std), "mean": float(mean)}, Normal, lambda i, o: {"loc": m, "scale": s})


@SCHEMES.register("uniform")
def uniform(low: float = 0.0, high: float = 1.0) -> InitScheme:
    r""":math:`W_{ij} \sim U[\text{low}, \text{high})`; the default :math:`U[0,1)` is
    ``tf.random.uniform``'s (mean 1/2: not zero-mean, units become correlated)."""
    lo = check_real("low", low)
    hi = check_real("high", high)
    if not hi > lo:
        raise fail("high", high, f"a number greater than low={low!r}")
    el, eh = exact(lo), exact(hi)
    return _scheme("uniform", {"low": lo, "high": hi}, Uniform, lambda i, o: {"low": el, "high": eh})


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
    return _scheme("truncated_normal", params, TruncatedNormal,
                   lambda i, o: {"loc": sp.Integer(0), "scale": s, "bound": b})


@SCHEMES.register("orthogonal")
def orthogonal(gain: float = 1.0) -> InitScheme:
    r"""Saxe et al. (2014): a Haar-random matrix with orthonormal rows or columns, times ``gain``.

    For :math:`n_{out} \ge n_{in}` it is an isometry, :math:`\|W a\| = g\|a\|` exactly, so a linear
    orthogonal net has zero-variance norms; entry variance :math:`g^2/\max(n_{in}, n_{out})`."""
    g = _check_gain(gain)
    return _scheme("orthogonal", {"gain": float(gain)}, Orthogonal, lambda i, o: {"gain": g})


@SCHEMES.register("torch_linear_default", "pytorch_linear_default")
def torch_linear_default() -> InitScheme:
    r"""PyTorch ``nn.Linear``'s default: ``kaiming_uniform_(a=sqrt(5))``, i.e.
    :math:`U[\pm 1/\sqrt{n_{in}}]`, :math:`\sigma_w^2 = 1/(3 n_{in})` -- not He: a deep ReLU net
    loses a factor 6 of variance per layer."""
    return _named_vs("torch_linear_default", {}, sp.Rational(1, 3), "fan_in", "uniform")


