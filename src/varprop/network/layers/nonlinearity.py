r"""``Nonlinearity(activation)``: the elementwise map :math:`a = \phi(z)`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from varprop._util.lazy import lazy_module
from varprop.components.activations import MOMENTS, Activation, resolve_activation
from varprop.errors import VarpropError
from varprop.network.field import Field, GradField
from varprop.network.layers import elementwise
from varprop.network.layers.base import Layer, Shape
from varprop.network.state import GradientState, MomentEvaluator, MomentState, Value

#: SymPy and the moment rules' symbols, imported at first use (:mod:`varprop._util.lazy`):
#: symbolic moments and derivations, the realised second-moment map
sp = lazy_module("sympy")
rule_symbols = lazy_module("varprop.components.moment_rules")

#: scipy.interpolate, imported at first use (:mod:`varprop._util.lazy`)
interpolate = lazy_module("scipy.interpolate")
#: scipy.special, imported at first use (:mod:`varprop._util.lazy`)
special = lazy_module("scipy.special")

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
    def mean_field(self, state: MomentState, moments: MomentEvaluator) -> MomentState:
        r"""The state of :math:`a = \phi(z)` from that of a (conditionally) Gaussian :math:`z`.

        Centred :math:`z \sim N(0, q)`: :math:`(E\phi, E\phi^2, (E\phi)^2)` and
        :math:`E\phi'^2` (units independent).  Jointly Gaussian units with mean :math:`m`,
        variance :math:`D - m^2` and covariance :math:`C - m^2`: the six correlated moments.
        Conditional on the outer nodes: :math:`z \sim N(m(u), q(u))` i.i.d. given :math:`u`, so
        :math:`E[a_i a_k \mid u] = E[\phi \mid u]^2` and likewise for :math:`\phi'`.
        """
        act = self.activation
        if not state.gaussian:
            raise VarpropError(
                f"{self!r} acts on the output of a nonlinear layer: the mean field needs Gaussian "
                "pre-activations (put a Dense layer between two nonlinearities)")
        if state.conditional:
            a_m, a_d, b1, bd = moments.conditional(act, state.mean, state.var)  # type: ignore[arg-type]
            return MomentState(a_m, a_d, a_m * a_m, after=act, deriv_second=bd,
                               deriv_cross=b1 * b1)
        if state.centred:
            em, e2, ed2 = moments.zero_mean(act)(state.second)  # type: ignore[arg-type]
            return MomentState(em, e2, em * em, after=act, deriv_second=ed2, deriv_cross=0.0)
        m, d, c = state.mean, state.second, state.cross
        var = d - m * m if math.isfinite(d) else math.inf  # type: ignore[operator, arg-type]
        cov = c - m * m if math.isfinite(c) else var  # type: ignore[operator, arg-type]
        e_m, e_2, cross, _, e_d2, d_cross = moments.correlated(act, m, max(var, 0.0), max(cov, 0.0))
        return MomentState(e_m, e_2, cross, after=act, deriv_second=e_d2, deriv_cross=d_cross)

    @staticmethod
    def mean_field_backward(grad: GradientState, deriv_second: Value, deriv_cross: Value
                            ) -> GradientState:
        r""":math:`\delta_z = \phi'(z)\,\delta_a` with :math:`\phi'(z)` independent of
        :math:`\delta_a` (gradient independence): :math:`E\delta_{z,i}^2 = E\phi'^2\,
        E\delta_{a,i}^2` and :math:`E\delta_{z,i}\delta_{z,k} = E\phi'_i\phi'_k\,
        E\delta_{a,i}\delta_{a,k}` (``deriv_second``, ``deriv_cross``: the moments of
        :math:`\phi'` in this layer's forward state)."""
        return GradientState(deriv_second * grad.second, deriv_cross * grad.cross)  # type: ignore[operator]

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
        at = {rule_symbols.MU: mean, rule_symbols.Q: variance}
        return {m: getattr(rules, m).subs(at) for m in MOMENTS}

    def moment_integrals(self, mean: Any, variance: Any) -> dict[str, sp.Integral]:
        r"""The Gaussian moments as named, unevaluated integrals over :math:`t \sim N(0, 1)` with
        :math:`z = \text{mean} + \sqrt{\text{variance}}\, t` (the definition, for activations
        without a closed form): keys as in :meth:`symbolic_moments`."""
        t = sp.Symbol("t", real=True)
        dens = sp.exp(-t**2 / 2) / sp.sqrt(2 * sp.pi)
        z = mean + sp.sqrt(variance) * t
        x = rule_symbols.X
        phi, dphi = self.activation.expr.subs(x, z), self.activation.derivative.subs(x, z)
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
    #: A zero output from a non-zero input is a genuine value (ReLU's negative side), never
    #: counted as an underflow.
    sample_flush_is_underflow = False

    @property
    def sample_gradient_flush_is_underflow(self) -> bool:
        r"""An all-zero :math:`\phi'(z) \odot g` from a non-zero :math:`g` is an underflow when
        :math:`\phi' \ne 0` almost everywhere (``traits.derivative_nonvanishing``: tanh's
        :math:`\tanh'(z) < 10^{-308}` at :math:`|z| > 355`), a genuine zero otherwise (ReLU)."""
        return self.activation.traits.derivative_nonvanishing

    def sample_forward(self, draws: Any, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`\phi(z)` in ``z``'s dtype (no random numbers); the cache is ``z``."""
        return np.asarray(self.activation.function(z), dtype=z.dtype), z

    def sample_backward(self, cache: np.ndarray, grads: list[np.ndarray]) -> list[np.ndarray]:
        r""":math:`\phi'(z) \odot g` for each output gradient :math:`g` of ``grads`` (backward
        passes over the same forward pass; the derivative is computed once, without
        cancellation)."""
        d = np.asarray(self.activation.derivative_function(cache), dtype=cache.dtype)
        return [d * g for g in grads]

    # --- general engine (varprop.network.field) ------------------------------------------------
    def field_forward(self, field: Field) -> Field:
        r"""Per position :math:`t`, :math:`z_t \sim N(m_t, v_t)`: :math:`E\phi(z_t)`,
        :math:`E\phi(z_t)^2`; between positions and between two samples of a batch the bivariate
        expectations :math:`E\phi(z)\phi(z')` (:mod:`varprop._math.bivariate`).  Exact for a
        jointly Gaussian input (``field.gaussian``); otherwise the Gaussian closure with the same
        means and (co)variances, declared in ``approximations``.  A linear
        :math:`\phi(x) = s x` maps the moments exactly for any input law."""
        return elementwise.forward(self.activation, field, self)

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        r""":math:`E\delta_{z,t}^2 = E\phi'(z_t)^2\, E\delta_{a,t}^2` and, when tracked,
        :math:`E\delta_{z,t}\delta_{z,t'} = E\phi'(z_t)\phi'(z_{t'})\, E\delta_{a,t}\delta_{a,t'}`
        (gradient independence)."""
        return elementwise.backward(self.activation, grad, field_in)

    def field_exact(self, field_in: Field) -> bool:
        """Exact at every finite width: a linear activation (any input), or a positively
        homogeneous one of degree 1 (ReLU class) on a zero-mean input produced by weights
        (``gaussian``) when no covariance between positions or samples is tracked."""
        return elementwise.exact(self.activation, field_in)

    def field_steps(self) -> list[tuple[str, object]]:
        return elementwise.steps(self.activation)

    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> None:
        return None

    def mc_forward(self, params: object, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(np.broadcast_to(self.activation.function(x), x.shape), dtype=x.dtype), x

    def mc_backward(self, params: object, cache: np.ndarray, grad: np.ndarray) -> np.ndarray:
        d = np.broadcast_to(self.activation.derivative_function(cache), cache.shape)
        return np.asarray(d * grad, dtype=grad.dtype)

    # --- one-step check -----------------------------------------------------------------------
    def one_step(self, n_in: int, second: np.ndarray) -> np.ndarray:
        r"""Forward one-step map :math:`v \mapsto E[\phi(\sqrt v\, \xi)^2]`, :math:`\xi \sim
        N(0, 1)`, vectorised over the realised mean squares ``second`` of the input.

        Exact when the input units are, given the previous layer, i.i.d. :math:`N(0, v)` (after a
        ``Dense`` layer with zero-mean Gaussian weights); ``n_in`` is unused (elementwise).
        """
        return _second_moment_map(self.activation)(second)


@lru_cache(maxsize=64)
def _second_moment_map(act: Activation) -> Callable[[np.ndarray], np.ndarray]:
    r""":math:`v \mapsto E[\phi(\sqrt v\, \xi)^2]`: :math:`c^2 v` for :math:`\phi(x) = c x`, the
    exact closed form where the activation has one, else quadrature (through a cubic spline in
    :math:`\log v` for many distinct values)."""
    traits = act.traits
    rules = act.closed_form
    if traits.linear:
        assert traits.slope is not None
        slope2 = traits.slope * traits.slope
        return lambda v: np.asarray(v, dtype=float) * slope2
    if rules is not None and rules.exact and not rules.zero_mean_only:
        second = sp.simplify(rules.evaluation_form("second").subs(rule_symbols.MU, 0))
        f = sp.lambdify(rule_symbols.Q, second,
                        modules=[{"erf": special.erf}, "numpy"])
        return lambda v: np.broadcast_to(np.asarray(f(np.asarray(v, dtype=float)), dtype=float),
                                         np.shape(v)).astype(float)

    def by_quadrature(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        lo, hi = float(v.min()), float(v.max())
        if lo <= 0 or hi / lo < 1 + 1e-12:
            uniq = np.unique(v)
            if len(uniq) <= 64:
                vals = {float(u): act.gaussian_moments(0.0, float(u), method="quadrature")[1]
                        for u in uniq}
                return np.array([vals[float(x)] for x in v])
        if lo <= 0:  # realised inputs that are exactly 0 (a dead ReLU layer): phi(0)^2 there
            out = np.full(v.shape, act.gaussian_moments(0.0, 0.0, method="quadrature")[1])
            positive = v > 0
            out[positive] = by_quadrature(v[positive])
            return out
        grid = np.geomspace(lo, hi, 129)
        vals = np.array([act.gaussian_moments(0.0, float(g), method="quadrature")[1] for g in grid])
        spline = interpolate.CubicSpline(np.log(grid), vals)
        return np.asarray(spline(np.log(v)), dtype=float)

    return by_quadrature
