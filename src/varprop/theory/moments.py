r"""Gaussian expectations of an activation for the mean-field engine (the numerics behind the
layers' moment rules, :class:`varprop.network.state.MomentEvaluator`).

- :func:`zero_mean_moments`: ``q -> (E phi, E phi^2, E phi'^2)`` for :math:`z \sim N(0, q)`,
  compiled once per activation and method (closed forms, or quadrature through a table in
  :math:`\log q` verified against quadrature, :mod:`varprop._math.tabulated`);
- :func:`correlated_moments`: the six moments of jointly Gaussian units with a common mean;
- :func:`node_moments`: the four moments at every outer node of the recursion conditional on the
  layer-1 shift (vectorised composite Gauss--Legendre quadrature, exact closed forms where they
  hold at any mean, the small-shift expansion for odd activations; see
  :mod:`varprop.theory.shifted` for the rule and its accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from varprop._math import quadrature as _q
from varprop._math.scalar import lambdify_scalar
from varprop._math.tabulated import LogTable
from varprop._util.lazy import lazy_module
from varprop._util.validation import fail
from varprop.components.activation import catalogue_name
from varprop.components.activations import MOMENTS, Activation
from varprop.errors import VarpropError

#: SymPy and the symbols of the moment rules, imported at first use (:mod:`varprop._util.lazy`):
#: to compile the closed forms of activations outside the generated catalogue
#: (:mod:`varprop.theory._compiled_moments`)
sp = lazy_module("sympy")
rule_symbols = lazy_module("varprop.components.moment_rules")
#: The generated catalogue, imported at first use: its generator imports this module, and must
#: run even when the catalogue is out of date (``python -m varprop.theory.compiled_moments``)
catalogue = lazy_module("varprop.theory._compiled_moments")

if TYPE_CHECKING:
    import sympy

    from varprop.components.moment_rules import MomentRules

__all__ = ["zero_mean_moments", "zero_mean_forms", "correlated_moments", "node_moments",
           "gaussian_moments_many", "overflowed_moments", "Moments", "SMALL_SHIFT"]

_BASE = np.arange(-_q.HALF_WIDTH, _q.HALF_WIDTH + 0.5, 1.0)


MomentFn = Callable[[float], tuple[float, float, float]]


@lru_cache(maxsize=256)
def zero_mean_moments(act: Activation, method: str) -> MomentFn:
    r"""``q -> (E phi(z), E phi(z)^2, E phi'(z)^2)`` for :math:`z \sim N(0, q)`, compiled once."""
    rules = act.closed_form
    if method == "closed_form" and rules is None:
        raise fail("method", method, f"'exact', 'auto' or 'quadrature': {act.name!r} has no closed form")

    def quadrature(q: float) -> tuple[float, float, float]:
        m = act.gaussian_moments(0.0, q, method="quadrature")
        return float(m[0]), float(m[1]), float(m[3])

    use_closed = rules is not None and (
        method == "closed_form" or (method == "exact" and rules.exact))
    if not use_closed:
        # "exact": quadrature through a verified table in log q (see _tabulated): ~50x faster
        # per layer, checked against quadrature to 1e-11 in every panel it uses
        return LogTable(quadrature) if method == "exact" else quadrature
    compiled = _catalogued(act)
    if compiled is None:
        compiled = lambdify_scalar([rule_symbols.Q], zero_mean_forms(rules))  # type: ignore[arg-type]

    def closed(q: float) -> tuple[float, float, float]:
        if q == 0.0 or math.isinf(q):  # limits, where the formulas divide by zero
            return quadrature(q)
        return compiled(q)  # type: ignore[return-value]

    return closed


def zero_mean_forms(rules: MomentRules) -> list[sympy.Expr]:
    r"""The closed forms of :math:`E\phi, E\phi^2, E\phi'^2` at :math:`\mu = 0`, as functions of
    :math:`q`, in the form :func:`zero_mean_moments` compiles (simplified, except polynomials:
    ``simplify`` takes seconds on a long polynomial, where it has nothing to gain).

    The generated catalogue :mod:`varprop.theory._compiled_moments` holds these forms compiled
    for the registered activations (:mod:`varprop.theory.compiled_moments` writes it).
    """
    exprs = [rules.evaluation_form(name).subs(rule_symbols.MU, 0)
             for name in ("mean", "second", "deriv_second")]
    return [e if e.is_polynomial(rule_symbols.Q) else sp.simplify(e) for e in exprs]


def _catalogued(act: Activation) -> MomentFn | None:
    """The catalogued compiled :func:`zero_mean_forms` of a registered activation at its default
    parameters (no SymPy), None for any other activation.

    The catalogue holds the code :func:`varprop._math.scalar.lambdify_scalar` compiles (its fast
    ``math`` path), so its floats are the same; where that path overflows, the full
    ``lambdify_scalar`` (its ``mpmath`` fallback) is built and used, as it would be.
    """
    name = catalogue_name(act)  # a light activation (never one of a replaced factory)
    fast = None if name is None else catalogue.ZERO_MEAN.get(name)
    if fast is None:
        return None
    full: list[Callable[..., tuple[float, ...]]] = []

    def evaluate(q: float) -> tuple[float, float, float]:
        try:
            return tuple(float(v) for v in fast(q))  # type: ignore[return-value]
        except (OverflowError, ZeroDivisionError, ValueError):
            if not full:
                forms = zero_mean_forms(act.closed_form)  # type: ignore[arg-type]
                full.append(lambdify_scalar([rule_symbols.Q], forms))
            return full[0](q)  # type: ignore[return-value]

    return evaluate


def correlated_moments(act: Activation, method: str, mean: float, var: float, cov: float
                     ) -> tuple[float, float, float, float, float, float]:
    """``(E phi, E phi^2, E phi_i phi_k, E phi', E phi'^2, E phi'_i phi'_k)`` for correlated units."""
    if act.traits.slope == 1.0:  # the identity: exact identities, no quadrature needed
        return mean, var + mean * mean, cov + mean * mean, 1.0, 1.0, 1.0
    if method == "closed_form":
        raise fail("method", method, f"'exact', 'auto' or 'quadrature': with non-zero-mean weights "
                   f"{act.name!r} has no closed form (units are correlated)")
    if math.isinf(mean) or math.isinf(var):
        return overflowed_moments(act, mean)
    e_m, e_2, e_d, e_d2 = act.gaussian_moments(mean, var, method=method)
    cross, dcross = act.correlated_moments(mean, var, cov)
    return e_m, e_2, cross, e_d, e_d2, dcross


#: Closed forms are used where the standardised mean is at least -3 (no cancellation).
_CLOSED_FORM_MIN_R = 3.0


def _stack(act: Activation, x: np.ndarray) -> np.ndarray:
    """``(phi, phi^2, phi', phi'^2)`` at ``x``."""
    f = np.broadcast_to(act.function(x), x.shape)
    d = np.broadcast_to(act.derivative_function(x), x.shape)
    return np.stack([f, f * f, d, d * d])


def gaussian_moments_many(act: Activation, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    r"""``(4, N)``: :math:`E\phi, E\phi^2, E\phi', E\phi'^2` for :math:`z \sim N(m_k, v_k)`.

    Finite means and variances only; ``var == 0`` gives the values at the mean.

    Each node's moments depend on its own ``(m_k, v_k)`` only, so nodes with the same pair (bit
    for bit) are computed once: the recursion conditional on the layer-1 shift has thousands of
    nodes but a few hundred distinct states (the small-shift nodes of an odd activation share one
    variance; saturated nodes reach the same state), and the floats are those of every node alone.
    """
    if mean.dtype == np.float64 and var.dtype == np.float64 and mean.ndim == var.ndim == 1 and mean.size > 1:
        # the bit patterns, not the values: -0.0 and 0.0 stay apart
        key = np.stack([mean.view(np.uint64), var.view(np.uint64)], axis=1)
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        if first.size < mean.size:
            # into a C-ordered (4, N) array as the direct path returns: a strided row (what
            # ``[:, inverse]`` gives) would be averaged by another BLAS kernel, another rounding
            out = np.empty((4, mean.size))
            out[...] = _gaussian_moments_distinct(act, mean[first], var[first])[:, inverse.ravel()]
            return out
    return _gaussian_moments_distinct(act, mean, var)


def _gaussian_moments_distinct(act: Activation, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """:func:`gaussian_moments_many`, node by node (vectorised over the nodes)."""
    out = np.empty((4, mean.size))
    zero = var == 0.0
    if zero.any():
        x = mean[zero]
        f, d = np.broadcast_to(act.function(x), x.shape), np.broadcast_to(act.derivative_function(x), x.shape)
        out[:, zero] = np.stack([f, f * f, d, d * d])
    rows = ~zero
    rules = act.closed_form
    if rows.any() and rules is not None and rules.exact and not rules.zero_mean_only:
        # exact closed forms at any mean (ReLU family): vectorised, no quadrature
        with np.errstate(all="ignore"):
            closed = np.stack([rules.vectorized[name](mean[rows], var[rows]) for name in MOMENTS])
            # below mu/sqrt(q) = -3 the formulas cancel (Phi(r) and r Phi(r) + pdf(r) lose their
            # digits: a negative E relu(z)^2 at r = -10), so those nodes go to quadrature
            standardised = mean[rows] / np.sqrt(var[rows])
        good = (np.all(np.isfinite(closed), axis=0) & (standardised >= -_CLOSED_FORM_MIN_R)
                & (closed[1] >= 0.0) & (closed[3] >= 0.0))
        idx = np.flatnonzero(rows)
        out[:, idx[good]] = closed[:, good]
        rows = rows.copy()
        rows[idx[good]] = False  # anything non-finite goes to quadrature below
    if not rows.any():
        return out
    m, s = mean[rows], np.sqrt(var[rows])
    pts = np.concatenate([_q.SCALE_POINTS, np.asarray(act.kinks, float)])
    extra = np.clip((pts[None, :] - m[:, None]) / s[:, None], -_q.HALF_WIDTH, _q.HALF_WIDTH)
    edges = np.sort(np.concatenate([np.broadcast_to(_BASE, (m.size, _BASE.size)), extra], axis=1), axis=1)
    a, b = edges[:, :-1, None], edges[:, 1:, None]
    t = (a + (b - a) * _q.NODES).reshape(m.size, -1)
    w = ((b - a) * _q.WEIGHTS).reshape(m.size, -1) * np.exp(-0.5 * t * t) * _q.INV_SQRT_2PI
    x = m[:, None] + s[:, None] * t
    f = np.broadcast_to(act.function(x), x.shape)
    d = np.broadcast_to(act.derivative_function(x), x.shape)
    fw, dw = f * w, d * w
    total = np.stack([fw.sum(axis=1), (fw * f).sum(axis=1), dw.sum(axis=1), (dw * d).sum(axis=1)])
    ok = np.all(np.isfinite(total), axis=0)
    for v, vw in ((f, fw), (d, dw)):  # the tail test of varprop._math.quadrature, for phi and phi'
        a = np.abs(v)
        scale = (np.abs(vw) * np.maximum(a, 1.0)).sum(axis=1)  # bounds the scales of v and v^2
        tail = np.maximum(np.abs(vw[:, 0]) * np.maximum(a[:, 0], 1.0), np.abs(vw[:, -1]) * np.maximum(a[:, -1], 1.0))
        ok &= np.isfinite(scale) & (tail <= _q.TAIL_RTOL * scale)
    idx = np.flatnonzero(rows)
    out[:, idx[ok]] = total[:, ok]
    for k in np.flatnonzero(~ok):  # fast-growing activations: the scalar rule widens its window
        mk, sk = float(m[k]), float(s[k])
        out[:, idx[k]] = _q.gaussian_expectations(
            [lambda x: _stack(act, x)], mk, sk * sk, act.kinks)[0]
    return out


def overflowed_moments(act: Activation, mean: float
                        ) -> tuple[float, float, float, float, float, float]:
    r"""The limits of :func:`correlated_moments` once the pre-activation's mean or variance has left
    the float range (only unbounded activations get there from finite inputs).

    With :math:`|\mu| = \infty` the shared shift dominates every unit: :math:`\phi` and
    :math:`\phi'` are taken at :math:`\operatorname{sign}(\mu)\,\infty` (ReLU: ``inf`` upwards,
    exactly 0 downwards).  With a finite mean and infinite variance the symmetric limit
    :math:`E f(\pm\infty)/2` is used and the units are treated as uncorrelated.
    """
    if math.isinf(mean):
        # at +-inf itself, or just inside the float range where that is NaN (x * sigmoid(x))
        x = np.array([mean, math.copysign(1e300, mean)])
        with np.errstate(all="ignore"):
            f, d = act.function(x), act.derivative_function(x)
        f, d = (float(v[0]) if math.isfinite(v[0]) or not math.isfinite(v[1]) else float(v[1])
                for v in (f, d))
        f, d = (v if not math.isnan(v) else math.inf for v in (f, d))
        return f, f * f, f * f, d, d * d, d * d
    e_m, e_2, e_d, e_d2 = act.gaussian_moments(0.0, math.inf)
    return e_m, e_2, e_m * e_m, e_d, e_d2, e_d * e_d


def _overflowed(act: Activation, mean: np.ndarray) -> np.ndarray:
    """``(4, N)`` limits once a node's mean or variance has left the float range."""
    out = np.empty((4, mean.size))
    # only three cases: the mean at +inf, at -inf, or finite with an infinite variance
    key = np.where(np.isinf(mean), np.sign(mean), 0.0)
    for k in np.unique(key):
        e_m, e_2, _, e_d, e_d2, _ = overflowed_moments(act, float(k) * math.inf if k else 0.0)
        out[:, key == k] = np.array([e_m, e_2, e_d, e_d2])[:, None]
    return out


#: Below |m| = SMALL_SHIFT sqrt(q), odd activations use the first-order expansion in the mean.
SMALL_SHIFT = 1e-6


def node_moments(act: Activation, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    r"""The four moments at every node.  For an odd activation and a shift below
    :data:`SMALL_SHIFT` standard deviations, :math:`E\phi(m + \sqrt q z) = m E\phi'(\sqrt q z)
    + O(m^3)` and the other three moments are their values at :math:`m = 0` up to
    :math:`O(m^2/q) \le 10^{-12}`: quadrature at such a mean would return its rounding noise
    (~1e-17) for a shift of 1e-20, which deep layers multiply by :math:`(\mu_w n E\phi')^L`."""
    if act.traits.odd:
        with np.errstate(all="ignore"):
            small = np.isfinite(var) & (var > 0) & (np.abs(mean) <= SMALL_SHIFT * np.sqrt(var))
        if small.any():
            out = np.empty((4, mean.size))
            at_zero = _moments_general(act, np.zeros(int(small.sum())), var[small])
            at_zero[0] = mean[small] * at_zero[2]
            out[:, small] = at_zero
            if (~small).any():
                out[:, ~small] = _moments_general(act, mean[~small], var[~small])
            return out
    return _moments_general(act, mean, var)


def _moments_general(act: Activation, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    finite = np.isfinite(mean) & np.isfinite(var)
    if finite.all():
        return gaussian_moments_many(act, mean, var)
    if np.isnan(mean).any() or np.isnan(var).any():
        raise VarpropError("a moment is 0 * inf: the variances leave the float range in both "
                           "directions; reduce depth or rescale")
    out = np.empty((4, mean.size))
    out[:, finite] = gaussian_moments_many(act, mean[finite], var[finite])
    out[:, ~finite] = _overflowed(act, mean[~finite])
    return out


@dataclass(frozen=True)
class Moments:
    """The :class:`~varprop.network.state.MomentEvaluator` of one ``method`` (``exact``,
    ``closed_form`` or ``quadrature``)."""

    method: str

    def zero_mean(self, act: Activation) -> MomentFn:
        return zero_mean_moments(act, self.method)

    def correlated(self, act: Activation, mean: float, var: float, cov: float
                   ) -> tuple[float, float, float, float, float, float]:
        return correlated_moments(act, self.method, mean, var, cov)

    def conditional(self, act: Activation, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        return node_moments(act, mean, var)
