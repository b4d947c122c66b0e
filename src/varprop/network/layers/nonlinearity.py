r"""``Nonlinearity(activation)``: the elementwise map :math:`a = \phi(z)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp

from varprop.components.activations import (
    MOMENTS,
    MU,
    Activation,
    Q,
    X,
    resolve_activation,
)
from varprop.network.layers.base import Layer, Shape

__all__ = ["Nonlinearity"]


@dataclass(frozen=True, init=False)
class Nonlinearity(Layer):
    r"""Elementwise activation :math:`a = \phi(z)` (any shape in, the same shape out).

    Parameters
    ----------
    activation : str or Activation
        ``"relu"``, ``"tanh"``, an expression in ``x`` such as ``"x*tanh(x)"``, or
        :func:`varprop.activation`.
    """

    activation: Activation
    kind = "nonlinearity"

    def __init__(self, activation: Activation | str) -> None:
        object.__setattr__(self, "activation", resolve_activation(activation))

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def __repr__(self) -> str:
        return f"Nonlinearity({self.activation!r})"

    # --- mean field ---------------------------------------------------------------------------

    # --- symbolic -----------------------------------------------------------------------------
    def symbolic_moments(self, mean: Any, variance: Any) -> dict[str, sp.Expr] | None:
        r"""Closed-form Gaussian moments at :math:`z \sim N(\text{mean}, \text{variance})`:
        ``{"mean": E phi, "second": E phi^2, "deriv_mean": E phi', "deriv_second": E phi'^2}``
        from the activation's registered closed form (exact, or its declared approximation), or
        ``None`` if it has none (or only at mean 0 and ``mean`` is not 0).  Exact inputs give
        exact outputs; nothing is simplified."""
        rules = self.activation.closed_form
        if rules is None or (rules.zero_mean_only and mean != 0):
            return None
        return {m: getattr(rules, m).subs({MU: mean, Q: variance}) for m in MOMENTS}

    def moment_integrals(self, mean: Any, variance: Any) -> dict[str, sp.Integral]:
        r"""The Gaussian moments as named, unevaluated integrals over :math:`t \sim N(0, 1)` with
        :math:`z = \text{mean} + \sqrt{\text{variance}}\, t` (the definition, for activations
        without a closed form): keys as in :meth:`symbolic_moments`."""
        t = sp.Symbol("t", real=True)
        dens = sp.exp(-t**2 / 2) / sp.sqrt(2 * sp.pi)
        z = mean + sp.sqrt(variance) * t
        phi, dphi = self.activation.expr.subs(X, z), self.activation.derivative.subs(X, z)
        return {key: sp.Integral(e * dens, (t, -sp.oo, sp.oo))
                for key, e in (("mean", phi), ("second", phi**2), ("deriv_mean", dphi),
                               ("deriv_second", dphi**2))}

    def linear_slope(self) -> sp.Expr | None:
        r"""The exact slope :math:`c` if :math:`\phi(x) = c x` (``traits.linear``), else ``None``.

        Then the layer maps moments exactly, with no Gaussian assumption: :math:`(m, D, C) \mapsto
        (c m, c^2 D, c^2 C)` forward and :math:`(G_D, G_C) \mapsto (c^2 G_D, c^2 G_C)` backward."""
        if not self.activation.traits.linear:
            return None
        expr = self.activation.expr  # phi(1) = c, exactly (also for a piecewise identity)
        c = sp.sympify(expr.subs({s: 1 for s in expr.free_symbols}))
        return sp.nsimplify(c, rational=True) if c.has(sp.Float) else c  # 1.0*x: slope 1

    # --- sampling -----------------------------------------------------------------------------

    # --- one-step check -----------------------------------------------------------------------
