r"""Activation traits, computed once from the activation itself (never from name lists).

Every decision that depends on what kind of function :math:`\phi` is (whether a closed-form
shortcut applies, whether a prediction is exact at finite width, where quadrature needs
breakpoints) reads :attr:`varprop.Activation.traits`:

``linear``
    :math:`\phi(x) = c\,x` for a constant ``slope`` :math:`c` (decided symbolically; a
    piecewise expression such as leaky ReLU of slope 1 is first screened on a grid, then
    simplified).  A linear activation has no kinks.
``odd``
    :math:`\phi(-x) = -\phi(x)` for every real :math:`x` (what the small-shift expansions of the
    non-zero-mean recursion and the zero means by symmetry need).  Decided symbolically
    (:math:`\phi(-x) + \phi(x)` simplifies to 0) when the NumPy function is odd to rounding
    on a grid over :math:`(0, 60]` and finite there; where SymPy cannot decide, the NumPy
    function must be odd bitwise on the grid.  (A bitwise test alone misses ``x**3``, whose
    vectorised power is not bitwise odd.)
``homogeneous_degree``
    :math:`k > 0` with :math:`\phi(c x) = c^k \phi(x)` for every :math:`c > 0` (positively
    homogeneous: linear, ReLU, leaky ReLU, ``abs`` have :math:`k = 1`, ``x**3`` has 3,
    ``abs(x)**1.5`` has 3/2), a rational of denominator at most 64 checked on a grid to a
    relative :math:`10^{-12}`; ``None`` otherwise.
``exact_at_finite_width``
    Positively homogeneous of degree 1: :math:`\phi(z)^2 = z^2 (a^2 1_{z>0} + b^2 1_{z<0})`, so for
    a pre-activation that is symmetric given the previous layer (zero-mean symmetric i.i.d. weights)
    :math:`E[\phi(z)^2 \mid a_{l-1}] = \tfrac{a^2 + b^2}{2} E[z^2 \mid a_{l-1}]` and the mean-field
    second-moment recursion holds exactly at every width (likewise :math:`E\phi'(z)^2`).
``kinks``
    Points where :math:`\phi` is not smooth (:math:`\phi'`, or for ``max(x, 0)**2`` a higher
    derivative, jumps): the quadrature breakpoints.
``derivative_nonvanishing``
    :math:`\phi'(z) = 0` has probability 0 for a continuous :math:`z`: :math:`\phi'` vanishes
    identically on no interval between consecutive kinks (tested at three interior points of
    each; :math:`\phi'` of every piece is analytic, so it is zero on an interval or at isolated
    points only).  True for ``tanh``, ``abs`` and leaky ReLU (:math:`\phi' \in \{1, \alpha\}`,
    :math:`\alpha \ne 0`), False for ReLU (:math:`\phi' = 0` on :math:`x < 0`): a
    back-propagated signal that flushes to zero is then an underflow, never a genuine zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

from varprop._util.lazy import lazy_module

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): a catalogued activation's traits
#: are stored (:mod:`varprop.components.compiled_activations`), not computed.
sp = lazy_module("sympy")

if TYPE_CHECKING:  # pragma: no cover
    from varprop.components.activation import Activation

__all__ = ["ActivationTraits", "compute_traits"]

_GRID = np.array([-3.7, -1.3, -0.2, 0.3, 1.1, 2.9])
_SCALES = (0.37, 2.0, 11.0)
_MAX_DEGREE_DENOMINATOR = 64
#: Interior points of an interval between kinks at which phi' is tested (relative positions).
_INTERIOR = (0.21, 0.5, 0.83)
#: Offsets from the last kink into an unbounded interval.
_OUTSIDE = (0.37, 1.3, 2.9)


@dataclass(frozen=True)
class ActivationTraits:
    """What kind of function an activation is (see the module docstring)."""

    linear: bool
    slope: float | None
    odd: bool
    homogeneous_degree: float | None
    kinks: tuple[float, ...]
    derivative_nonvanishing: bool

    @property
    def homogeneous(self) -> bool:
        """Positively homogeneous of some degree."""
        return self.homogeneous_degree is not None

    @property
    def exact_at_finite_width(self) -> bool:
        """Second moments exact at every finite width (zero-mean symmetric i.i.d. weights)."""
        return self.homogeneous_degree == 1.0


def compute_traits(act: Activation) -> ActivationTraits:
    """The traits of ``act`` (called once per activation, by :attr:`Activation.traits`)."""
    x = sp.Symbol("x", real=True)
    expr = act.expr.subs({s: x for s in act.expr.free_symbols if s.name == "x"})
    slope = _slope(expr, x)
    if slope is None and expr.has(sp.Max, sp.Min, sp.Abs, sp.Heaviside, sp.sign):
        slope = _piecewise_slope(act, expr, x)
    return ActivationTraits(
        linear=slope is not None,
        slope=slope,
        odd=_odd(act, x),
        homogeneous_degree=1.0 if slope not in (None, 0.0) else _homogeneous_degree(act),
        kinks=() if slope is not None else tuple(act.kinks),
        derivative_nonvanishing=_derivative_nonvanishing(act),
    )


def _slope(expr: sp.Expr, x: sp.Symbol) -> float | None:
    r""":math:`c` if :math:`\phi(x) = c x` exactly, else ``None``."""
    if not expr.is_polynomial(x):
        return None
    poly = sp.Poly(expr, x)
    if poly.degree() > 1 or poly.coeff_monomial(1) != 0:
        return None
    c = poly.coeff_monomial(x)
    return float(c) if c.is_number else None


def _piecewise_slope(act: Activation, expr: sp.Expr, x: sp.Symbol) -> float | None:
    r""":math:`c` if a piecewise expression is :math:`c x` (leaky ReLU of slope 1 is the
    identity): screened on the grid, then confirmed by simplifying its piecewise form."""
    with np.errstate(all="ignore"):
        f = np.broadcast_to(act.function(_GRID), _GRID.shape)
        c = float(np.asarray(act.function(np.array([1.0])), dtype=float)[0])
        if not np.allclose(f, c * _GRID, rtol=1e-12, atol=0.0):
            return None
    return _slope(sp.simplify(sp.piecewise_fold(expr.rewrite(sp.Piecewise))), x)


def _odd(act: Activation, x: sp.Symbol) -> bool:
    """Odd: numerically to rounding on a grid over (0, 60] (and finite there), then
    symbolically; bitwise on the grid where SymPy cannot decide."""
    grid = np.concatenate([np.geomspace(1e-8, 60.0, 401), np.linspace(0.05, 20.0, 400)])
    with np.errstate(all="ignore"):
        f = np.broadcast_to(act.function(grid), grid.shape)
        g = np.broadcast_to(act.function(-grid), grid.shape)
        if not (np.all(np.isfinite(f)) and np.allclose(g, -f, rtol=1e-12, atol=0.0)):
            return False
    expr = act.expr.subs({s: x for s in act.expr.free_symbols if s.name == "x"})
    residual = sp.simplify(expr.subs(x, -x) + expr)
    if residual == 0:
        return True
    if residual.is_number:  # a nonzero constant (e.g. tanh(x) + 1e-20)
        return False
    return bool(np.array_equal(g, -f))


def _homogeneous_degree(act: Activation) -> float | None:
    r"""The degree :math:`k` of positive homogeneity, or ``None`` (grid check, relative 1e-12)."""
    f = act.function
    with np.errstate(all="ignore"):
        base = np.asarray(f(_GRID), dtype=float)
        nonzero = np.isfinite(base) & (base != 0.0)
        if not nonzero.any() or not np.all(np.isfinite(base)):
            return None
        i = int(np.argmax(nonzero))
        scaled = float(np.asarray(f(np.array([2.0 * _GRID[i]])), dtype=float)[0])
        ratio = scaled / base[i]
        if not (ratio > 0.0 and math.isfinite(ratio)):
            return None
        k_float = math.log2(ratio)
        k = float(Fraction(k_float).limit_denominator(_MAX_DEGREE_DENOMINATOR))
        if k <= 0 or abs(k - k_float) > 1e-9:
            return None
        if float(np.asarray(f(np.array([0.0])), dtype=float)[0]) != 0.0:
            return None
        for c in _SCALES:
            if not np.allclose(np.asarray(f(c * _GRID), dtype=float), c**k * base, rtol=1e-12,
                               atol=1e-300):
                return None
    return k


def _derivative_nonvanishing(act: Activation) -> bool:
    r"""No interval between consecutive kinks on which :math:`\phi' \equiv 0`."""
    try:
        if not bool(act.derivative != 0):
            return False
    except TypeError:  # an expression SymPy cannot decide: be conservative
        return False
    kinks = sorted(set(act.kinks))
    if not kinks:
        pieces = [np.array(_GRID[[1, 3, 5]])]
    else:
        pieces = [kinks[0] - np.array(_OUTSIDE), kinks[-1] + np.array(_OUTSIDE)]
        pieces += [a + (b - a) * np.array(_INTERIOR) for a, b in pairwise(kinks)]
    with np.errstate(all="ignore"):
        return all(np.any(np.broadcast_to(act.derivative_function(x), x.shape) != 0.0)
                   for x in pieces)
