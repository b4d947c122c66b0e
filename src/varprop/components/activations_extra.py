r"""The activations users know from PyTorch, Keras and JAX by name: SELU, ELU, CELU, GELU (exact
and tanh-approximate), SiLU/swish, Mish, softplus, hardtanh, softsign and ReLU6.

Each is a registered factory (:data:`varprop.components.registries.ACTIVATIONS`) with PyTorch's
parameter names and defaults.  For :math:`z \sim N(\mu, q)`:

========================= =========================================== ============================
activation                 :math:`\phi(x)`                              Gaussian moments
========================= =========================================== ============================
``elu(alpha=1)``           :math:`x` (:math:`x>0`), :math:`\alpha(e^x-1)`  exact, every :math:`\mu`
``celu(alpha=1)``          :math:`x`, :math:`\alpha(e^{x/\alpha}-1)`       exact, every :math:`\mu`
``selu``                   :math:`\lambda\,\mathrm{elu}_{\alpha}(x)`        exact, every :math:`\mu`
``hardtanh(-1, 1)``        :math:`\min(\max(x, l), h)`                   exact, every :math:`\mu`
``relu6``                  :math:`\min(\max(x, 0), 6)`                   exact, every :math:`\mu`
``gelu``                   :math:`x\Phi(x)`                              exact at :math:`\mu = 0`
``gelu_tanh``              :math:`\tfrac x2(1+\tanh(\sqrt{2/\pi}(x+0.044715x^3)))` quadrature
``silu`` (``swish``)       :math:`x\sigma(x)`                            quadrature
``mish``                   :math:`x\tanh(\operatorname{softplus}(x))`     quadrature
``softplus(beta=1)``       :math:`\beta^{-1}\log(1+e^{\beta x})`          quadrature
``softsign``               :math:`x/(1+|x|)`                             quadrature
========================= =========================================== ============================

The closed forms are in :mod:`varprop.components.moment_rules` (:func:`exponential_linear_rules`,
:func:`clipped_linear_rules`, :func:`gelu_rules`); "quadrature" is the exact numerical reference
(composite Gauss--Legendre, :mod:`varprop._math.quadrature`, about :math:`10^{-12}`): the Gaussian
integrals of the logistic and tanh compositions have no known closed form.

**SELU's fixed point** (Klambauer et al. 2017, *Self-Normalizing Neural Networks*).  With
PyTorch's constants :math:`\alpha = 1.6732632423543772848170429916717`,
:math:`\lambda = 1.0507009873554804934193349852946` and :math:`z \sim N(0, 1)`,
:math:`E\,\mathrm{selu}(z) = 0` and :math:`E\,\mathrm{selu}(z)^2 = 1` (the closed form gives
:math:`|E\phi| < 10^{-9}` and :math:`|E\phi^2 - 1| < 10^{-9}` at these 32-digit constants:
the two equations define :math:`\alpha, \lambda`).  So under ``lecun_normal``
(:math:`\sigma_w^2 = 1/n_{in}`) a pre-activation variance :math:`q = 1` maps to
:math:`\sigma_w^2 n_{in} E\phi^2 = 1`: the mean-field fixed point at infinite width with
zero-mean weights and no bias.  (PyTorch's ``calculate_gain("selu") = 3/4`` is a different,
heuristic choice; its documentation recommends ``nonlinearity="linear"`` for SELU networks.)
"""

from __future__ import annotations

from functools import partial

from varprop._util.lazy import lazy_module
from varprop._util.validation import check_choice, check_positive_real, check_real, fail
from varprop.components import activation_numerics as numerics
from varprop.components.activation import Activation
from varprop.components.registries import ACTIVATIONS

#: SymPy, the rule families and exact numbers, imported at first use (:mod:`varprop._util.lazy`):
#: a catalogued activation (:mod:`varprop.components.compiled_activations`) needs none of them.
sp = lazy_module("sympy")
rules = lazy_module("varprop.components.moment_rules")
_exact = lazy_module("varprop._util.exact")

__all__ = ["SELU_ALPHA", "SELU_SCALE", "GELU_APPROXIMATIONS"]

#: SELU's constants as PyTorch (``torch.nn.SELU``) and Klambauer et al. (2017) state them.
SELU_ALPHA = "1.6732632423543772848170429916717"
SELU_SCALE = "1.0507009873554804934193349852946"
#: ``gelu``'s ``approximate`` values (PyTorch's ``torch.nn.GELU``).
GELU_APPROXIMATIONS = ("none", "tanh")


def _exponential_linear(name: str, params: dict[str, object], scale: str | float,
                        alpha: str | float, c_inverse: str | float, latex: str,
                        reference: str) -> Activation:
    r""":math:`\lambda x` for :math:`x > 0`, :math:`\lambda\alpha(e^{x/\gamma} - 1)` below
    (:math:`\gamma` = ``c_inverse``)."""
    lam, a, g = (sp.Rational(v) if isinstance(v, str) else _exact.exact(v)
                 for v in (scale, alpha, c_inverse))
    lam_f, a_f, g_f = float(lam), float(a), float(g)
    x = rules.X
    expr = lam * (sp.Max(x, 0) + a * (sp.exp(sp.Min(x, 0) / g) - 1))
    return Activation(name, params, expr, partial(numerics.exponential_linear, lam_f, a_f, g_f),
                      partial(numerics.exponential_linear_slope, lam_f, a_f, g_f),
                      rules.exponential_linear_rules(lam, a, 1 / g),
                      kinks=(0.0,), latex_name=latex, reference=reference)


@ACTIVATIONS.register("elu")
def elu(alpha: float = 1.0) -> Activation:
    r"""ELU (Clevert et al. 2016): :math:`x` for :math:`x > 0`, :math:`\alpha(e^x - 1)` below;
    exact Gaussian moments at every :math:`\mu` (:func:`exponential_linear_rules`)."""
    a = check_positive_real("alpha", alpha)
    return _exponential_linear("elu", {"alpha": a}, 1, a, 1, r"\mathrm{ELU}",
                               "Clevert et al. 2016")


@ACTIVATIONS.register("celu")
def celu(alpha: float = 1.0) -> Activation:
    r"""CELU (Barron 2017): :math:`x` for :math:`x > 0`, :math:`\alpha(e^{x/\alpha} - 1)` below
    (continuously differentiable for every :math:`\alpha`); exact moments at every :math:`\mu`."""
    a = check_positive_real("alpha", alpha)
    return _exponential_linear("celu", {"alpha": a}, 1, a, a, r"\mathrm{CELU}", "Barron 2017")


@ACTIVATIONS.register("selu")
def selu() -> Activation:
    r"""SELU (Klambauer et al. 2017): :math:`\lambda x` for :math:`x > 0`,
    :math:`\lambda\alpha(e^x - 1)` below, :math:`\alpha \approx 1.6733`,
    :math:`\lambda \approx 1.0507` (the module docstring states them and the fixed point
    :math:`E\phi = 0`, :math:`E\phi^2 = 1` at :math:`q = 1`)."""
    return _exponential_linear("selu", {}, SELU_SCALE, SELU_ALPHA, 1, r"\mathrm{SELU}",
                               "Klambauer et al. 2017")


def _clipped(name: str, params: dict[str, object], low: float, high: float, latex: str) -> Activation:
    lo, hi = _exact.exact(low), _exact.exact(high)
    return Activation(
        name, params, sp.Min(sp.Max(rules.X, lo), hi),
        partial(numerics.clipped, low, high), partial(numerics.clipped_slope, low, high),
        rules.clipped_linear_rules(lo, hi), kinks=(low, high), latex_name=latex)


@ACTIVATIONS.register("hardtanh")
def hardtanh(min_val: float = -1.0, max_val: float = 1.0) -> Activation:
    r"""Hardtanh: :math:`\min(\max(x, l), h)` (PyTorch's ``min_val``, ``max_val``); exact
    moments at every :math:`\mu` (:func:`clipped_linear_rules`)."""
    lo, hi = check_real("min_val", min_val), check_real("max_val", max_val)
    if not hi > lo:
        raise fail("max_val", max_val, f"a number greater than min_val={min_val!r}")
    return _clipped("hardtanh", {"min_val": lo, "max_val": hi}, lo, hi, r"\mathrm{hardtanh}")


@ACTIVATIONS.register("relu6")
def relu6() -> Activation:
    r"""ReLU6 (Krizhevsky 2010; MobileNet): :math:`\min(\max(x, 0), 6)`; exact moments."""
    return _clipped("relu6", {}, 0.0, 6.0, r"\mathrm{ReLU6}")


@ACTIVATIONS.register("gelu")
def gelu(approximate: str = "none") -> Activation:
    r"""GELU (Hendrycks & Gimpel 2016): :math:`x\Phi(x)` (``approximate="none"``, exact
    moments at :math:`\mu = 0` by :func:`gelu_rules`, quadrature elsewhere) or PyTorch's
    ``approximate="tanh"``, :math:`\tfrac x2(1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))`
    (quadrature; ``jax.nn.gelu``'s default ``approximate=True`` is this form)."""
    check_choice("approximate", approximate, GELU_APPROXIMATIONS)
    x = rules.X
    if approximate == "none":
        return Activation(
            "gelu", {"approximate": "none"}, x * (1 + sp.erf(x / sp.sqrt(2))) / 2,
            numerics.gelu, numerics.gelu_slope,
            rules.gelu_rules(), latex_name=r"\mathrm{GELU}", reference="Hendrycks & Gimpel 2016")
    cubic = sp.Rational(numerics.GELU_TANH_CUBIC)
    expr = x / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x + cubic * x**3)))
    return Activation("gelu", {"approximate": "tanh"}, expr, numerics.gelu_tanh,
                      numerics.gelu_tanh_slope, latex_name=r"\mathrm{GELU}_{\tanh}",
                      reference="Hendrycks & Gimpel 2016")


@ACTIVATIONS.register("gelu_tanh")
def gelu_tanh() -> Activation:
    r"""``gelu(approximate="tanh")`` by one name."""
    return gelu(approximate="tanh")


@ACTIVATIONS.register("silu", "swish")
def silu() -> Activation:
    r"""SiLU / swish (Elfwing et al. 2018; Ramachandran et al. 2017): :math:`x\sigma(x)`,
    :math:`\phi' = \sigma(x)(1 + x(1 - \sigma(x)))`; quadrature."""
    x = rules.X
    return Activation("silu", {}, x / (1 + sp.exp(-x)), numerics.silu, numerics.silu_slope,
                      latex_name=r"\mathrm{SiLU}", reference="Elfwing et al. 2018")


@ACTIVATIONS.register("mish")
def mish() -> Activation:
    r"""Mish (Misra 2019): :math:`x\tanh(\operatorname{softplus}(x))`,
    :math:`\phi' = \tanh(s) + x\,\operatorname{sech}^2(s)\,\sigma(x)`, :math:`s =
    \operatorname{softplus}(x)`; quadrature."""
    x = rules.X
    return Activation("mish", {}, x * sp.tanh(sp.log(1 + sp.exp(x))), numerics.mish,
                      numerics.mish_slope,
                      latex_name=r"\mathrm{Mish}", reference="Misra 2019")


@ACTIVATIONS.register("softplus")
def softplus(beta: float = 1.0) -> Activation:
    r"""Softplus: :math:`\beta^{-1}\log(1 + e^{\beta x})`, :math:`\phi' = \sigma(\beta x)`
    (PyTorch's ``beta``; its ``threshold`` is a float shortcut, not a different function);
    quadrature."""
    b = check_positive_real("beta", beta)
    eb = _exact.exact(b)
    return Activation("softplus", {"beta": b}, sp.log(1 + sp.exp(eb * rules.X)) / eb,
                      partial(numerics.softplus, b), partial(numerics.softplus_slope, b),
                      latex_name=r"\mathrm{softplus}")


@ACTIVATIONS.register("softsign")
def softsign() -> Activation:
    r"""Softsign: :math:`x/(1 + |x|)`, :math:`\phi' = (1 + |x|)^{-2}`; quadrature."""
    x = rules.X
    return Activation("softsign", {}, x / (1 + sp.Abs(x)),  # phi'' jumps at 0: a kink
                      numerics.softsign, numerics.softsign_slope,
                      kinks=(0.0,), latex_name=r"\mathrm{softsign}")
