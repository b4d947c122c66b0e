r"""Init schemes by their frameworks' names and conventions: ``"keras:he_normal"``,
``"jax:lecun_normal"`` (also ``"flax:..."``), ``"torch:kaiming_normal"`` (also ``"pytorch:..."``).

The same name means different laws in different frameworks, and the unqualified varprop names
keep their meaning (PyTorch's untruncated normals).  A qualified scheme's ``name`` carries its
framework, so its repr, every prediction and every :func:`~varprop.check_initializer` verdict
names the convention (``keras:he_normal()``).  Parameters use each framework's own names and
defaults, with the usual parameter syntax: ``init_scheme("torch:kaiming_normal",
nonlinearity="tanh")`` or, as text, ``"torch:kaiming_normal:nonlinearity=tanh,mode=fan_out"``.

**Keras** (``keras.initializers``; Glorot & Bengio 2010, He et al. 2015, LeCun et al. 1998).
``VarianceScaling(scale, mode, distribution)`` draws with variance :math:`\sigma_w^2 =
\text{scale}/n`, :math:`n` = ``fan_in``, ``fan_out`` or their mean ``fan_avg``:

* ``"truncated_normal"`` (the default, and the law of ``glorot_normal``, ``he_normal``,
  ``lecun_normal``): a normal of std :math:`\sqrt{\text{scale}/n}/0.87962566103423978`
  truncated at :math:`\pm 2` of its std.  The constant is :math:`\sqrt{m_2(2)}`, the std of
  :math:`N(0,1)` truncated to :math:`[-2, 2]`, :math:`m_2(b) = 1 - 2b\varphi(b)/(2\Phi(b)-1)`:
  the truncated law has variance exactly :math:`\text{scale}/n` (varprop uses the exact
  :math:`\sqrt{m_2(2)}`, equal to Keras' 17-digit constant to :math:`10^{-16}`);
* ``"untruncated_normal"``: :math:`N(0, \text{scale}/n)`;
* ``"uniform"``: :math:`U[\pm\sqrt{3\,\text{scale}/n}]`.

``RandomNormal(mean=0, stddev=0.05)``, ``RandomUniform(minval=-0.05, maxval=0.05)``,
``TruncatedNormal(mean=0, stddev=0.05)`` (truncated at 2 std and *not* rescaled: variance
:math:`0.7737\,\text{stddev}^2`), ``Orthogonal(gain=1)``.  Keras' ``Dense`` default is
``glorot_uniform``.

**JAX** (``jax.nn.initializers``; Flax's ``flax.linen.initializers`` re-exports them, and Flax's
``Dense`` default is ``lecun_normal``).  ``variance_scaling(scale, mode, distribution)`` as Keras
with ``distribution`` one of ``"truncated_normal"`` (same constant), ``"normal"`` (untruncated),
``"uniform"``, and the extra ``mode="fan_geo_avg"``, :math:`n = \sqrt{n_{in} n_{out}}`;
``glorot_*``/``xavier_*``, ``he_*``/``kaiming_*``, ``lecun_*`` are truncated normals or uniforms
as in Keras.  ``normal(stddev=1e-2)``; ``uniform(scale=1e-2)`` is :math:`U[0, \text{scale})`
(mean :math:`\text{scale}/2`, not zero); ``truncated_normal(stddev=1e-2, lower=-2, upper=2)``
(bounds in units of ``stddev``, no rescaling; varprop takes symmetric bounds only);
``orthogonal(scale=1)``.

**PyTorch** (``torch.nn.init``).  ``kaiming_normal_(a=0, mode="fan_in",
nonlinearity="leaky_relu")``: :math:`N(0, g^2/n_{mode})` with
:math:`g` = ``calculate_gain(nonlinearity, a)``; ``kaiming_uniform_``:
:math:`U[\pm g\sqrt{3/n_{mode}}]`; ``xavier_normal_(gain=1)``:
:math:`N(0, 2g^2/(n_{in}+n_{out}))`; ``xavier_uniform_``; ``normal_(mean=0, std=1)``;
``uniform_(a=0, b=1)``; ``trunc_normal_(mean=0, std=1, a=-2, b=2)`` (absolute bounds, no
rescaling; varprop takes bounds symmetric about the mean); ``orthogonal_(gain=1)``;
``"torch:default"`` is ``nn.Linear``'s own ``kaiming_uniform_(a=sqrt(5))``, i.e.
:math:`U[\pm 1/\sqrt{n_{in}}]`, :math:`\sigma_w^2 = 1/(3n_{in})`.

``calculate_gain`` (:func:`torch_gain`): 1 for ``linear``, the convolutions and ``sigmoid``;
:math:`5/3` for ``tanh``; :math:`\sqrt2` for ``relu``; :math:`\sqrt{2/(1+a^2)}` for ``leaky_relu``
(:math:`a` = 0.01 when not given); :math:`3/4` for ``selu``.  Only the ReLU-family gains and the
linear gain are variance-preserving (He et al. 2015): :math:`5/3` (tanh), 1 (sigmoid) and
:math:`3/4` (selu) are heuristics, noted in the scheme's ``note`` (:func:`gain_note`); for SELU
networks PyTorch's documentation itself recommends ``nonlinearity="linear"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from varprop._util.exact import exact
from varprop._util.lazy import lazy_module
from varprop._util.validation import (
    check_choice,
    check_positive_real,
    check_real,
    fail,
)
from varprop.components.laws import Normal, Orthogonal, TruncatedNormal, Uniform
from varprop.components.scheme import SCHEMES, InitScheme
from varprop.components.schemes import _variance_scaling_spec

if TYPE_CHECKING:  # pragma: no cover
    import sympy as sp
else:
    #: SymPy, imported at first use (:mod:`varprop._util.lazy`), by the factories only.
    sp = lazy_module("sympy")

__all__ = ["FRAMEWORKS", "TORCH_NONLINEARITIES", "torch_gain", "gain_note", "qualified_name"]

#: Framework prefixes: the canonical one and its aliases (Flax re-exports JAX's initializers).
FRAMEWORKS = {"keras": "keras", "jax": "jax", "flax": "jax", "torch": "torch", "pytorch": "torch"}
#: ``torch.nn.init.calculate_gain``'s nonlinearities.
TORCH_NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh", "relu",
                        "leaky_relu", "selu")
_KERAS_MODES = ("fan_in", "fan_out", "fan_avg")
_KERAS_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")
_JAX_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
_JAX_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
_HEURISTIC = {
    "tanh": "calculate_gain('tanh') = 5/3 is a heuristic, not a variance-preserving gain "
            "(varprop.critical_gain gives that one)",
    "sigmoid": "calculate_gain('sigmoid') = 1 is a convention, not a variance-preserving gain",
    "selu": "calculate_gain('selu') = 3/4 is a heuristic; PyTorch recommends "
            "nonlinearity='linear' (variance 1/n) for self-normalising SELU networks",
}


def qualified_name(framework: str, name: str) -> str:
    """``"keras:he_normal"``: a framework prefix (or alias) and a scheme name, canonical."""
    prefix = check_choice("framework", framework.strip().lower(), tuple(FRAMEWORKS))
    return f"{FRAMEWORKS[prefix]}:{name}"


def _register(framework: str, name: str, *aliases: str):  # type: ignore[no-untyped-def]
    prefixes = [p for p, c in FRAMEWORKS.items() if c == framework]
    names = [f"{p}:{n}" for n in (name, *aliases) for p in prefixes]
    return SCHEMES.register(*names)


def _vs(name: str, params: dict[str, object], scale: sp.Expr, mode: str, distribution: str,
        note: str = "") -> InitScheme:
    family, spec = _variance_scaling_spec(scale, mode, distribution)
    return InitScheme(name=name, params=params, family=family, spec=spec, note=note)


def _normal(name: str, params: dict[str, object], mean: object, std: object) -> InitScheme:
    m = exact(check_real("mean", mean))
    s = exact(check_positive_real("std", std))
    return InitScheme(name, params, Normal, lambda i, o: {"loc": m, "scale": s})


def _uniform(name: str, params: dict[str, object], low: float, high: float, argument: str
             ) -> InitScheme:
    if not high > low:
        raise fail(argument, high, f"a number greater than the lower end {low!r}")
    lo, hi = exact(low), exact(high)
    return InitScheme(name, params, Uniform, lambda i, o: {"low": lo, "high": hi})


def _truncated(name: str, params: dict[str, object], mean: float, std: float, bound: float,
               note: str) -> InitScheme:
    m, s, b = exact(mean), exact(std), exact(check_positive_real("bound", bound))
    return InitScheme(name, params, TruncatedNormal,
                      lambda i, o: {"loc": m, "scale": s, "bound": b}, note=note)


def _orthogonal(name: str, params: dict[str, object], gain: object, argument: str) -> InitScheme:
    g = exact(check_positive_real(argument, gain))
    return InitScheme(name, params, Orthogonal, lambda i, o: {"gain": g})


# ----------------------------------------------------------------------------------------------
# Keras
# ----------------------------------------------------------------------------------------------

@_register("keras", "variance_scaling")
def keras_variance_scaling(scale: float = 1.0, mode: str = "fan_in",
                           distribution: str = "truncated_normal") -> InitScheme:
    r"""Keras ``VarianceScaling``: :math:`\sigma_w^2 = \text{scale}/n_{mode}`."""
    s = check_positive_real("scale", scale)
    check_choice("mode", mode, _KERAS_MODES)
    check_choice("distribution", distribution, _KERAS_DISTRIBUTIONS)
    return _vs("keras:variance_scaling", {"scale": s, "mode": mode, "distribution": distribution},
               exact(s), mode, distribution)


def _keras_preset(name: str, scale: int, mode: str, distribution: str) -> None:
    @_register("keras", name)
    def preset() -> InitScheme:
        return _vs(f"keras:{name}", {}, sp.Integer(scale), mode, distribution)
    preset.__doc__ = (f"Keras ``{name}``: ``VarianceScaling(scale={scale}, mode={mode!r}, "
                      f"distribution={distribution!r})``.")


for _name, _scale, _mode in (("glorot", 1, "fan_avg"), ("he", 2, "fan_in"), ("lecun", 1, "fan_in")):
    _keras_preset(f"{_name}_normal", _scale, _mode, "truncated_normal")
    _keras_preset(f"{_name}_uniform", _scale, _mode, "uniform")


@_register("keras", "random_normal")
def keras_random_normal(mean: float = 0.0, stddev: float = 0.05) -> InitScheme:
    r"""Keras ``RandomNormal``: :math:`N(\text{mean}, \text{stddev}^2)`."""
    return _normal("keras:random_normal", {"mean": check_real("mean", mean),
                                           "stddev": check_positive_real("stddev", stddev)},
                   mean, stddev)


@_register("keras", "random_uniform")
def keras_random_uniform(minval: float = -0.05, maxval: float = 0.05) -> InitScheme:
    r"""Keras ``RandomUniform``: :math:`U[\text{minval}, \text{maxval})`."""
    lo, hi = check_real("minval", minval), check_real("maxval", maxval)
    return _uniform("keras:random_uniform", {"minval": lo, "maxval": hi}, lo, hi, "maxval")


@_register("keras", "truncated_normal")
def keras_truncated_normal(mean: float = 0.0, stddev: float = 0.05) -> InitScheme:
    r"""Keras ``TruncatedNormal``: :math:`N(\text{mean}, \text{stddev}^2)` truncated at
    :math:`\pm 2\,\text{stddev}`, not rescaled (variance :math:`m_2(2)\,\text{stddev}^2`)."""
    m, s = check_real("mean", mean), check_positive_real("stddev", stddev)
    return _truncated("keras:truncated_normal", {"mean": m, "stddev": s}, m, s, 2.0,
                      "stddev is the untruncated normal's: variance 0.7737 stddev^2")


@_register("keras", "orthogonal")
def keras_orthogonal(gain: float = 1.0) -> InitScheme:
    r"""Keras ``Orthogonal(gain)``: ``gain`` times a Haar-orthogonal matrix."""
    return _orthogonal("keras:orthogonal", {"gain": check_positive_real("gain", gain)}, gain, "gain")


# ----------------------------------------------------------------------------------------------
# JAX / Flax
# ----------------------------------------------------------------------------------------------

@_register("jax", "variance_scaling")
def jax_variance_scaling(scale: float = 1.0, mode: str = "fan_in",
                         distribution: str = "truncated_normal") -> InitScheme:
    r"""``jax.nn.initializers.variance_scaling``: :math:`\sigma_w^2 = \text{scale}/n_{mode}`,
    ``mode="fan_geo_avg"`` is :math:`n = \sqrt{n_{in} n_{out}}` (JAX has no defaults; these
    are Keras')."""
    s = check_positive_real("scale", scale)
    check_choice("mode", mode, _JAX_MODES)
    check_choice("distribution", distribution, _JAX_DISTRIBUTIONS)
    return _vs("jax:variance_scaling", {"scale": s, "mode": mode, "distribution": distribution},
               exact(s), mode, distribution)


def _jax_preset(name: str, alias: str | None, scale: int, mode: str, distribution: str) -> None:
    @_register("jax", name, *([alias] if alias else []))
    def preset() -> InitScheme:
        return _vs(f"jax:{name}", {}, sp.Integer(scale), mode, distribution)
    preset.__doc__ = (f"``jax.nn.initializers.{name}``: ``variance_scaling({scale}, {mode!r}, "
                      f"{distribution!r})``.")


for _name, _alias, _scale, _mode in (("glorot", "xavier", 1, "fan_avg"), ("he", "kaiming", 2, "fan_in"),
                                     ("lecun", None, 1, "fan_in")):
    _jax_preset(f"{_name}_normal", _alias and f"{_alias}_normal", _scale, _mode, "truncated_normal")
    _jax_preset(f"{_name}_uniform", _alias and f"{_alias}_uniform", _scale, _mode, "uniform")


@_register("jax", "normal")
def jax_normal(stddev: float = 1e-2) -> InitScheme:
    r"""``jax.nn.initializers.normal``: :math:`N(0, \text{stddev}^2)`."""
    return _normal("jax:normal", {"stddev": check_positive_real("stddev", stddev)}, 0.0, stddev)


@_register("jax", "uniform")
def jax_uniform(scale: float = 1e-2) -> InitScheme:
    r"""``jax.nn.initializers.uniform``: :math:`U[0, \text{scale})` (mean scale/2)."""
    s = check_positive_real("scale", scale)
    return _uniform("jax:uniform", {"scale": s}, 0.0, s, "scale")


@_register("jax", "truncated_normal")
def jax_truncated_normal(stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0) -> InitScheme:
    r"""``jax.nn.initializers.truncated_normal``: :math:`N(0, \text{stddev}^2)` truncated to
    :math:`[\text{lower}, \text{upper}]\cdot\text{stddev}`, not rescaled (symmetric bounds)."""
    s = check_positive_real("stddev", stddev)
    lo, hi = check_real("lower", lower), check_real("upper", upper)
    if lo != -hi:
        raise fail("lower", lower, f"-upper = {-hi!r} (varprop's truncated normal is symmetric)")
    return _truncated("jax:truncated_normal", {"stddev": s, "lower": lo, "upper": hi}, 0.0, s,
                      hi, "stddev is the untruncated normal's (no rescaling)")


@_register("jax", "orthogonal")
def jax_orthogonal(scale: float = 1.0) -> InitScheme:
    r"""``jax.nn.initializers.orthogonal(scale)``: ``scale`` times a Haar-orthogonal matrix."""
    return _orthogonal("jax:orthogonal", {"scale": check_positive_real("scale", scale)}, scale,
                       "scale")


# ----------------------------------------------------------------------------------------------
# PyTorch
# ----------------------------------------------------------------------------------------------

def torch_gain(nonlinearity: str, param: float | None = None) -> sp.Expr:
    r"""``torch.nn.init.calculate_gain(nonlinearity, param)`` as an exact SymPy number."""
    check_choice("nonlinearity", nonlinearity, TORCH_NONLINEARITIES)
    if nonlinearity == "tanh":
        return sp.Rational(5, 3)
    if nonlinearity == "relu":
        return sp.sqrt(2)
    if nonlinearity == "selu":
        return sp.Rational(3, 4)
    if nonlinearity == "leaky_relu":
        a = sp.Rational(1, 100) if param is None else exact(check_real("param", param))
        return sp.sqrt(2 / (1 + a**2))
    return sp.Integer(1)


def gain_note(nonlinearity: str) -> str:
    """Why ``calculate_gain(nonlinearity)`` is a heuristic ("" where it is variance-preserving)."""
    return _HEURISTIC.get(check_choice("nonlinearity", nonlinearity, TORCH_NONLINEARITIES), "")


def _kaiming(name: str, distribution: str, a: object, mode: object, nonlinearity: object
             ) -> InitScheme:
    a_f = check_real("a", a)
    check_choice("mode", mode, ("fan_in", "fan_out"))
    check_choice("nonlinearity", nonlinearity, TORCH_NONLINEARITIES)
    gain = torch_gain(str(nonlinearity), a_f)
    params = {"a": a_f, "mode": mode, "nonlinearity": nonlinearity}
    return _vs(name, params, gain**2, str(mode), distribution, gain_note(str(nonlinearity)))


@_register("torch", "kaiming_normal", "he_normal")
def torch_kaiming_normal(a: float = 0.0, mode: str = "fan_in",
                         nonlinearity: str = "leaky_relu") -> InitScheme:
    r"""``torch.nn.init.kaiming_normal_``: :math:`N(0, g^2/n_{mode})`, :math:`g` =
    ``calculate_gain(nonlinearity, a)`` (:func:`torch_gain`)."""
    return _kaiming("torch:kaiming_normal", "normal", a, mode, nonlinearity)


@_register("torch", "kaiming_uniform", "he_uniform")
def torch_kaiming_uniform(a: float = 0.0, mode: str = "fan_in",
                          nonlinearity: str = "leaky_relu") -> InitScheme:
    r"""``torch.nn.init.kaiming_uniform_``: :math:`U[\pm g\sqrt{3/n_{mode}}]`."""
    return _kaiming("torch:kaiming_uniform", "uniform", a, mode, nonlinearity)


@_register("torch", "xavier_normal", "glorot_normal")
def torch_xavier_normal(gain: float = 1.0) -> InitScheme:
    r"""``torch.nn.init.xavier_normal_``: :math:`N(0, 2g^2/(n_{in}+n_{out}))`."""
    g = check_positive_real("gain", gain)
    return _vs("torch:xavier_normal", {"gain": g}, exact(g) ** 2, "fan_avg", "normal")


@_register("torch", "xavier_uniform", "glorot_uniform")
def torch_xavier_uniform(gain: float = 1.0) -> InitScheme:
    r"""``torch.nn.init.xavier_uniform_``: :math:`U[\pm g\sqrt{6/(n_{in}+n_{out})}]`."""
    g = check_positive_real("gain", gain)
    return _vs("torch:xavier_uniform", {"gain": g}, exact(g) ** 2, "fan_avg", "uniform")


@_register("torch", "normal")
def torch_normal(mean: float = 0.0, std: float = 1.0) -> InitScheme:
    r"""``torch.nn.init.normal_``: :math:`N(\text{mean}, \text{std}^2)`."""
    return _normal("torch:normal", {"mean": check_real("mean", mean),
                                    "std": check_positive_real("std", std)}, mean, std)


@_register("torch", "uniform")
def torch_uniform(a: float = 0.0, b: float = 1.0) -> InitScheme:
    r"""``torch.nn.init.uniform_``: :math:`U[a, b)`."""
    lo, hi = check_real("a", a), check_real("b", b)
    return _uniform("torch:uniform", {"a": lo, "b": hi}, lo, hi, "b")


@_register("torch", "trunc_normal", "truncated_normal")
def torch_trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
                       ) -> InitScheme:
    r"""``torch.nn.init.trunc_normal_``: :math:`N(\text{mean}, \text{std}^2)` truncated to the
    absolute interval :math:`[a, b]`, not rescaled (varprop: symmetric about the mean)."""
    m, s = check_real("mean", mean), check_positive_real("std", std)
    lo, hi = check_real("a", a), check_real("b", b)
    if not hi > m or abs((m - lo) - (hi - m)) > 1e-12 * max(1.0, abs(hi - m)):
        raise fail("a", a, f"{2 * m - hi!r}: bounds symmetric about mean={m!r} (b={b!r})")
    return _truncated("torch:trunc_normal", {"mean": m, "std": s, "a": lo, "b": hi}, m, s,
                      (hi - m) / s, "a and b are absolute bounds; std is the untruncated normal's")


@_register("torch", "orthogonal")
def torch_orthogonal(gain: float = 1.0) -> InitScheme:
    r"""``torch.nn.init.orthogonal_(gain)``: ``gain`` times a Haar-orthogonal matrix."""
    return _orthogonal("torch:orthogonal", {"gain": check_positive_real("gain", gain)}, gain,
                       "gain")


@_register("torch", "default", "linear_default")
def torch_default() -> InitScheme:
    r"""``nn.Linear``'s default, ``kaiming_uniform_(a=sqrt(5))``: :math:`g^2 = 2/(1+5) = 1/3`,
    :math:`U[\pm 1/\sqrt{n_{in}}]`, :math:`\sigma_w^2 = 1/(3 n_{in})`."""
    return _vs("torch:default", {}, sp.Rational(1, 3), "fan_in", "uniform",
               "nn.Linear's default: kaiming_uniform_(a=sqrt(5)), variance 1/(3 fan_in), "
               "not He")
