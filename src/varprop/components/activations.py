r"""Activations: the catalogue of named activations (SymPy expressions, NumPy functions and
Gaussian moment rules), and the public names of the activation modules.

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

The type and the lookup live in :mod:`varprop.components.activation`, the moment rules in
:mod:`varprop.components.moment_rules`, the traits in :mod:`varprop.components.traits`.  Adding
an activation is one registered factory below plus its reference test (``tests/test_activations.py``
and ``tests/test_traits.py`` require one for every registered name).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.validation import check_real
from varprop.components import activation_numerics as numerics
from varprop.components.activation import (
    Activation,
    _build_cached,
    activation,
    activation_names,
    is_odd,
    parse_activation,
    resolve_activation,
)
from varprop.components.closed_forms import MOMENTS, MomentRules
from varprop.components.registries import ACTIVATIONS

if TYPE_CHECKING:  # bound on first access by __getattr__ below
    from varprop.components.moment_rules import (
        MU,
        Q,
        X,
        gaussian_polynomial_expectation,
        polynomial_rules,
    )

#: SymPy, the rule families and exact numbers, imported at first use (:mod:`varprop._util.lazy`):
#: a catalogued activation (:mod:`varprop.components.compiled_activations`) needs none of them.
sp = lazy_module("sympy")
rules = lazy_module("varprop.components.moment_rules")
_exact = lazy_module("varprop._util.exact")

__all__ = [
    "Activation",
    "MomentRules",
    "activation",
    "resolve_activation",
    "activation_names",
    "parse_activation",
    "is_odd",
    "polynomial_rules",
    "X",
    "MU",
    "Q",
    "MOMENTS",
    "gaussian_polynomial_expectation",
]

# kept importable from here for the package's own modules and benchmarks
_REEXPORTED = (_build_cached,)
#: Names re-exported from :mod:`varprop.components.moment_rules`, which imports SymPy: bound on
#: first access (``from varprop.components.activations import X`` imports SymPy then).
_FROM_RULES = frozenset({"X", "MU", "Q", "polynomial_rules", "gaussian_polynomial_expectation"})


def __getattr__(name: str) -> Any:
    if name in _FROM_RULES:
        value = getattr(rules, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@ACTIVATIONS.register("linear", "identity")
def linear() -> Activation:
    r""":math:`\phi(x) = x`: :math:`E\phi^2 = \mu^2 + q`, :math:`\phi' = 1`."""
    mu, q = rules.MU, rules.Q
    return Activation("linear", {}, rules.X, numerics.identity, numerics.ones,
                      MomentRules(mu, mu**2 + q, sp.Integer(1), sp.Integer(1)),
                      latex_name=r"\mathrm{id}")


@ACTIVATIONS.register("relu")
def relu() -> Activation:
    r""":math:`\phi(x) = \max(x, 0)`: at :math:`\mu = 0`, :math:`E\phi^2 = q/2`,
    :math:`E\phi'^2 = 1/2` (He et al. 2015); general :math:`\mu` via :math:`\Phi(\mu/\sqrt q)`."""
    return Activation("relu", {}, sp.Max(rules.X, 0), numerics.relu, numerics.step,
                      rules._leaky_rules(sp.Integer(0)),
                      kinks=(0.0,), latex_name=r"\mathrm{ReLU}", reference="He et al. 2015")


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(negative_slope: float = 0.01) -> Activation:
    r""":math:`\phi(x) = \max(x, 0) + \alpha \min(x, 0)`: at :math:`\mu = 0`,
    :math:`E\phi^2 = (1+\alpha^2) q/2`, :math:`E\phi'^2 = (1+\alpha^2)/2`."""
    a_f = check_real("negative_slope", negative_slope)
    a, x = _exact.exact(a_f), rules.X
    return Activation(
        "leaky_relu", {"negative_slope": a_f},
        sp.Max(x, 0) + a * sp.Min(x, 0),
        partial(numerics.leaky_relu, a_f), partial(numerics.leaky_step, a_f),
        rules._leaky_rules(a), kinks=(0.0,), latex_name=r"\mathrm{LeakyReLU}_{%s}" % sp.latex(a),
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
    moments = rules._erf_scaled_rules(sp.sqrt(sp.pi) / 2, exact_=False,
                                      approximation=r"tanh(x) ~ erf(sqrt(pi) x / 2)",
                                      max_relative_error={"mean": 0.0, "second": 0.062,
                                                          "deriv_mean": 0.031,
                                                          "deriv_second": 0.061})
    return Activation("tanh", {}, sp.tanh(rules.X), np.tanh, numerics.sech2, moments,
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
    moments = rules._erf_scaled_rules(sp.sqrt(sp.pi) / 4, exact_=False, offset=half,
                                      factor=half, approximation=r"sigmoid(x) ~ Phi(sqrt(pi/8) x)",
                                      max_relative_error={"mean": 0.0, "second": 0.019,
                                                          "deriv_mean": 0.031,
                                                          "deriv_second": 0.061})
    expr = 1 / (1 + sp.exp(-rules.X))
    return Activation("sigmoid", {}, expr, numerics.sigmoid, numerics.sigmoid_slope, moments,
                      latex_name=r"\sigma")


@ACTIVATIONS.register("erf")
def erf() -> Activation:
    r""":math:`\operatorname{erf}(x)`: exact at :math:`\mu = 0` (Williams 1997),
    :math:`E\phi^2 = \frac{2}{\pi}\arcsin\frac{2q}{1+2q}`, :math:`E\phi'^2 = \frac{4}{\pi\sqrt{1+4q}}`."""
    return Activation("erf", {}, sp.erf(rules.X), numerics.erf, numerics.erf_slope,
                      rules._erf_scaled_rules(sp.Integer(1), exact_=True),
                      latex_name=r"\operatorname{erf}", reference="Williams 1997")
