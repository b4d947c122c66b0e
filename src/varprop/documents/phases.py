r"""Computed facts about the zero-mean forward map, for the sentences of the documents.

Every sentence a derivation document states about fixed points, stability, phases or growth over
depth is rendered from a :class:`PhaseFacts` computed here for that activation and weight variance,
never from a template.  The model is the infinite-width length map of zero-mean weights with
:math:`s = n\sigma_w^2` (hidden layer, fan-in = fan-out = :math:`n`) and bias variance
:math:`\sigma_b^2`:

.. math::

    F(q) = s\,E[\phi(z)^2]_{z\sim N(0,q)} + \sigma_b^2, \qquad
    \chi(q) = s\,E[\phi'(z)^2]_{z\sim N(0,q)}, \qquad
    q_1 = s\,q_0 + \sigma_b^2,\; q_{l+1} = F(q_l), \qquad
    \frac{g_1}{g_L} = \prod_{l=1}^{L-1} \chi(q_l).

* **Fixed points**: every root of :math:`F(q) = q` with :math:`0 \le q \le 10^{12}` (sign changes of
  :math:`F(q) - q` on a logarithmic grid, refined by Brent's method, plus :math:`q = 0` when
  :math:`F(0) = 0`); for positively homogeneous :math:`\phi` the map is linear, :math:`F(q) = c q +
  \sigma_b^2`, and solved exactly.  Stability is :math:`|F'(q^*)|` with :math:`F'` from
  :func:`varprop.theory.criticality` (Price's theorem, no second derivative of :math:`\phi`).
* **Limit and phase**: the map is iterated from :math:`q_1` (up to :data:`LAYERS` layers, stopping
  once the iterate has converged, under- or overflowed); its limit :math:`q_\infty` is the fixed
  point it settles at (0 or :math:`\infty` included).  The phase is ordered / critical / chaotic as
  :math:`\chi(q_\infty) <, =, > 1` (within :data:`TOL`), *unbounded* if :math:`q_\infty = \infty`.
* **Growth**: forward, convergence to :math:`q^* > 0` (geometric, factor :math:`|F'(q^*)|`), or
  geometric decay/growth by :math:`F'(0)` resp. the measured :math:`q_{l+1}/q_l`, or a power law
  :math:`q_L \propto L^{-p}` where the factor is 1; backward, geometric by :math:`\chi(q_\infty)`,
  or a power law where :math:`\chi(q_\infty) = 1`.  Power-law exponents are *measured* from the
  iteration, :math:`p = -\log_2(x_{N}/x_{N/2})` with :math:`N` = :data:`LAYERS`.

Moments are the activation's exact ones (closed forms where exact, quadrature otherwise; see
:meth:`varprop.Activation.gaussian_moments`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq

from varprop.components.activations import Activation
from varprop.documents.store import fmt
from varprop.errors import InvalidArgument
from varprop.theory.criticality import dsecond_dq as _dsecond_dq
from varprop.theory.criticality import edge_of_chaos

__all__ = ["FixedPoint", "Growth", "PhaseFacts", "phase_facts", "critical_point", "LAYERS", "TOL",
           "homogeneous"]

#: Layers the map is iterated for (power-law exponents are measured between N/2 and N).
LAYERS = 10_000
#: |x - 1| <= TOL counts as exactly 1 (critical factor, marginal fixed point).
TOL = 1e-9
#: Depths at which the iteration records ``q_L`` and ``g_1/g_L``.
RECORD_DEPTHS = (30, 100, 1000, LAYERS)
_Q_MAX = 1e12
#: Relative size of F(q) - q below which its sign is rounding, not a crossing.
_RESOLUTION = 1e-10
_GRID = np.geomspace(1e-12, _Q_MAX, 241)


@dataclass(frozen=True)
class FixedPoint:
    """A fixed point ``q`` of the map and the slope ``F'(q)`` there."""

    q: float
    slope: float

    @property
    def stability(self) -> str:
        """``"attracting"`` (|F'| < 1), ``"repelling"`` (> 1) or ``"marginal"`` (= 1)."""
        if abs(abs(self.slope) - 1.0) <= TOL:
            return "marginal"
        return "attracting" if abs(self.slope) < 1.0 else "repelling"


@dataclass(frozen=True)
class Growth:
    r"""How a quantity behaves over depth.

    ``kind``: ``"converges"`` (to ``limit`` geometrically, factor ``rate`` per layer),
    ``"geometric"`` (factor ``rate`` per layer), ``"power"`` (:math:`\propto L^{rate}`, the
    exponent measured), ``"constant"``.
    """

    kind: str
    rate: float
    limit: float = math.nan


@dataclass(frozen=True)
class PhaseFacts:
    """What the documents may say about one activation at one ``(n sigma_w^2, sigma_b^2)``."""

    activation: str
    nsw2: float
    bias_variance: float
    q_start: float
    fixed_points: tuple[FixedPoint, ...]
    every_q_fixed: bool
    q_limit: float
    chi: float
    phase: str
    forward: Growth
    backward: Growth
    forward_at: dict[int, float] = field(default_factory=dict)
    backward_at: dict[int, float] = field(default_factory=dict)


def homogeneous(act: Activation) -> bool:
    r"""True if :math:`\phi(c x) = c\,\phi(x)` for every :math:`c > 0` (positively homogeneous of
    degree 1: linear, ReLU, leaky ReLU, ``abs``), from the activation's computed traits; then
    :math:`E[\phi(z)^2] = c\,q` and the length map is linear in :math:`q`."""
    return act.traits.homogeneous_degree == 1.0


def _second(act: Activation, q: float) -> float:
    return act.gaussian_moments(0.0, float(q), method="exact")[1]


def _chi(act: Activation, s: float, q: float) -> float:
    return s * act.gaussian_moments(0.0, float(q), method="exact")[3]


def _slope(act: Activation, s: float, q: float) -> float:
    return s * _dsecond_dq(act, q)


def _fixed_points(act: Activation, s: float, b2: float) -> tuple[tuple[FixedPoint, ...], bool]:
    if homogeneous(act):
        c = s * _second(act, 1.0)
        if abs(c - 1.0) <= TOL:
            return ((), True) if b2 == 0.0 else ((), False)
        if b2 == 0.0:
            return (FixedPoint(0.0, c),), False
        return ((FixedPoint(b2 / (1.0 - c), c),) if c < 1.0 else ()), False
    out = []
    if s * _second(act, 0.0) + b2 == 0.0:
        out.append(FixedPoint(0.0, _slope(act, s, 0.0)))

    def h(q: float) -> float:
        return s * _second(act, q) + b2 - q

    # F(q) - q below the quadrature's resolution (~1e-12 relative) is no evidence of a root: such
    # "sign changes" are rounding (GELU at q ~ 1e10, where q - F(q) ~ 1e-16 q); treat them as 0
    # only where a genuine crossing brackets them, i.e. require resolved signs on both sides.
    # Consecutive *resolved* grid points bracket: a root on a grid point (SELU's q* = 1 under
    # lecun_normal, where F(1) - 1 is rounding) is found between its resolved neighbours.
    values = [h(float(q)) for q in _GRID]
    resolved = [i for i, (v, q) in enumerate(zip(values, _GRID))
                if abs(v) > _RESOLUTION * max(float(q), 1e-300)]
    for i, j in zip(resolved, resolved[1:]):
        if (values[i] < 0.0) == (values[j] < 0.0):
            continue
        q = brentq(h, float(_GRID[i]), float(_GRID[j]), xtol=1e-15, rtol=1e-13, maxiter=200)
        out.append(FixedPoint(q, _slope(act, s, q)))
    return tuple(out), False


def _power_exponent(x_half: float, x_full: float) -> float:
    """``p`` with ``x ~ L^p`` from values at ``N/2`` and ``N`` (logs to avoid overflow)."""
    return (x_full - x_half) / math.log(2.0)


@lru_cache(maxsize=512)
def phase_facts(act: Activation, nsw2: float, bias_variance: float = 0.0,
                input_variance: float = 1.0) -> PhaseFacts:
    r"""Fixed points, limit, phase and growth over depth of the zero-mean map (module docstring).

    Parameters
    ----------
    act : Activation
    nsw2 : float
        :math:`s = n\sigma_w^2 > 0` of a hidden layer.
    bias_variance : float
        :math:`\sigma_b^2 \ge 0`.
    input_variance : float
        :math:`q_0`; the iteration starts at :math:`q_1 = s q_0 + \sigma_b^2`.
    """
    s, b2 = float(nsw2), float(bias_variance)
    if not (math.isfinite(s) and s > 0.0):
        raise InvalidArgument(f"nsw2={nsw2!r} is not allowed: a finite number > 0")
    fixed, every = _fixed_points(act, s, b2)
    q1 = s * float(input_variance) + b2
    # iterate: q_l and log(g_1/g_L) = sum_{l<L} log chi(q_l)
    q, log_g = q1, 0.0
    fwd_at: dict[int, float] = {}
    bwd_at: dict[int, float] = {}
    log_q_at: dict[int, float] = {}
    log_g_at: dict[int, float] = {}
    last_ratio = math.nan
    converged_to = None
    stopped = None  # "zero" or "inf"
    depth = 1
    while depth < LAYERS:
        if depth in RECORD_DEPTHS or depth == LAYERS // 2:
            log_q_at[depth], log_g_at[depth] = math.log(q), log_g
        m = act.gaussian_moments(0.0, float(q), method="exact")
        chi, q_next = s * m[3], s * m[1] + b2
        if not (chi > 0.0 and math.isfinite(chi)):
            break
        log_g += math.log(chi)
        if q_next <= 1e-300:
            stopped = "zero"
            depth += 1
            break
        if not math.isfinite(q_next) or q_next > 1e300:
            stopped = "inf"
            depth += 1
            break
        last_ratio = q_next / q
        if abs(q_next - q) <= 1e-14 * q and not every:
            converged_to = q_next
            q = q_next
            depth += 1
            break
        q = q_next
        depth += 1
    if depth == LAYERS:
        log_q_at[depth], log_g_at[depth] = math.log(q), log_g
    # extend a converged iteration analytically (q stays at q*, chi constant)
    if converged_to is not None:
        chi_star = _chi(act, s, converged_to)
        for d in (*RECORD_DEPTHS, LAYERS // 2):
            if d >= depth and d not in log_q_at:
                log_q_at[d] = math.log(converged_to)
                log_g_at[d] = log_g + (d - depth) * math.log(chi_star)
    for d in RECORD_DEPTHS:
        if d in log_q_at:
            fwd_at[d] = math.exp(log_q_at[d]) / q1
            bwd_at[d] = math.exp(log_g_at[d]) if log_g_at[d] < 700.0 else math.inf
    # the limit
    if every:
        q_lim = q1
    elif converged_to is not None:
        q_lim = converged_to
    elif stopped == "zero":
        q_lim = 0.0
    elif stopped == "inf":
        q_lim = math.inf
    else:  # still moving after LAYERS layers: the nearest fixed point in its direction
        up = s * _second(act, q) + b2 > q
        ahead = [f.q for f in fixed if (f.q > q if up else f.q < q)]
        q_lim = (min(ahead) if up else max(ahead)) if ahead else (math.inf if up else 0.0)
    # phase and growth
    if math.isinf(q_lim):
        chi_lim = _chi(act, s, q)
        phase = "unbounded"
        forward = Growth("geometric", last_ratio)
    else:
        # at q = 0 the limit q -> 0+ (E phi'^2 at exactly 0 sits on a kink for ReLU-like phi)
        chi_lim = _chi(act, s, q_lim if q_lim > 0.0 else (1.0 if homogeneous(act) else 1e-14))
        phase = ("critical" if abs(chi_lim - 1.0) <= TOL else
                 "ordered" if chi_lim < 1.0 else "chaotic")
        if every:
            forward = Growth("constant", 1.0, q_lim)
        elif q_lim > 0.0:
            forward = Growth("converges", abs(_slope(act, s, q_lim)), q_lim)
        else:
            slope0 = _slope(act, s, 0.0)
            if abs(slope0 - 1.0) <= TOL and LAYERS in log_q_at:
                forward = Growth("power", _power_exponent(log_q_at[LAYERS // 2], log_q_at[LAYERS]), 0.0)
            else:
                forward = Growth("geometric", slope0 if stopped != "zero" else last_ratio, 0.0)
    if abs(chi_lim - 1.0) <= TOL and LAYERS in log_g_at:
        p = _power_exponent(log_g_at[LAYERS // 2], log_g_at[LAYERS])
        backward = Growth("constant" if abs(p) < 1e-3 else "power", p)
    else:
        backward = Growth("geometric", chi_lim)
    return PhaseFacts(act.name, s, b2, q1, fixed, every, q_lim, chi_lim, phase, forward, backward,
                      fwd_at, bwd_at)


def critical_point(act: Activation, bias_variance: float = 0.0) -> tuple[float | None, str]:
    r"""``(n sigma_w^2, "")`` at the edge of chaos (:func:`varprop.edge_of_chaos`), or
    ``(None, why)`` when there is none."""
    try:
        p = edge_of_chaos(act, bias_variance)
    except InvalidArgument as exc:
        why = str(exc)
        cut = why.find("(no edge of chaos there")
        return None, (why[cut + 1:].rstrip(")") if cut >= 0 else why)
    return float(p.sigma_w2), ""


# ----------------------------------------------------------------------------------------------
# sentences, rendered from the facts only
# ----------------------------------------------------------------------------------------------

def _n(x: float) -> str:
    return "\\infty" if math.isinf(x) else fmt(x)


def fixed_point_sentence(f: PhaseFacts) -> str:
    """The fixed points of the map and their stability."""
    head = (f"At $n\\sigma_w^2$ = {fmt(f.nsw2)}, $\\sigma_b^2$ = {fmt(f.bias_variance)} the map "
            "$q \\mapsto n\\sigma_w^2 E[\\phi(z)^2] + \\sigma_b^2$")
    if f.every_q_fixed:
        return head + " is the identity: every $q$ is a fixed point (marginal, $F' = 1$)."
    if not f.fixed_points:
        return head + " has no fixed point $q \\ge 0$ (below $10^{12}$)."
    parts = [f"$q^*$ = {fmt(p.q)} ({p.stability}, $F'(q^*)$ = {fmt(p.slope)})" for p in f.fixed_points]
    word = "fixed point" if len(parts) == 1 else "fixed points"
    return head + f" has the {word} " + ", ".join(parts) + "."


def phase_sentence(f: PhaseFacts) -> str:
    """Where the iteration from ``q_1`` goes, chi there and the phase."""
    start = f"From $q_1$ = {fmt(f.q_start)}"
    if f.every_q_fixed:
        return (f"{start} the variance stays at $q_1$; $\\chi$ = {fmt(f.chi)} at every $q$: "
                f"**{f.phase}**.")
    if math.isinf(f.q_limit):
        return f"{start} the variance grows without bound (no finite fixed point above it): **unbounded**."
    chi = "= 1" if f.phase == "critical" else f"= {fmt(f.chi)} " + ("< 1" if f.chi < 1 else "> 1")
    return (f"{start} the variance tends to $q^*$ = {fmt(f.q_limit)}, where "
            f"$\\chi(q^*)$ {chi}: **{f.phase}** phase.")


def _growth_text(g: Growth, what: str, sym: str, at: dict[int, float]) -> str:
    vals = "; ".join(f"{sym} = {fmt(at[d])} at $L$ = {d}" for d in (30, 100) if d in at)
    vals = f" ({vals})" if vals else ""
    if g.kind == "constant":
        return f"{what} stay constant{vals}"
    if g.kind == "converges":
        return (f"{what} converge to $q^*$ = {fmt(g.limit)} geometrically (factor {fmt(g.rate)} "
                f"per layer)")
    if g.kind == "geometric" and g.rate == 0.0:
        return f"{what} vanish faster than any geometric rate (per-layer factor tending to 0){vals}"
    if g.kind == "geometric":
        verb = "grow" if g.rate > 1 else "decay"
        return f"{what} {verb} geometrically by a factor {_n(g.rate)} per layer{vals}"
    verb = "grow" if g.rate > 0 else "decay"
    return (f"{what} {verb} as a power law, $\\propto L^{{{fmt(g.rate, 3)}}}$ (exponent measured "
            f"over {LAYERS} layers){vals}")


def growth_sentence(f: PhaseFacts) -> str:
    """Forward and backward behaviour over depth."""
    fwd = _growth_text(f.forward, "forward variances", "$q_L/q_1$", f.forward_at)
    bwd = _growth_text(f.backward, "gradients", "$g_1/g_L$", f.backward_at)
    return f"Over depth {fwd}; {bwd}."


def facts_paragraph(f: PhaseFacts) -> str:
    return " ".join((fixed_point_sentence(f), phase_sentence(f), growth_sentence(f)))


def growth_cell(g: Growth) -> str:
    """A short table cell for a :class:`Growth`."""
    if g.kind == "constant":
        return "constant"
    if g.kind == "converges":
        return f"converges to {fmt(g.limit)} (factor {fmt(g.rate)}/layer)"
    if g.kind == "geometric":
        return "vanishes faster than geometric" if g.rate == 0.0 else f"factor {_n(g.rate)}/layer"
    return f"power law $L^{{{fmt(g.rate, 3)}}}$"


def table_cells(f: PhaseFacts) -> tuple[str, ...]:
    """``(n sigma_w^2, fixed points, limit from q_1, chi there, phase, forward, backward)``."""
    if f.every_q_fixed:
        fixed = "every $q$ (marginal)"
    elif not f.fixed_points:
        fixed = "none"
    else:
        fixed = ", ".join(f"{fmt(p.q)} ({p.stability}, $F'$ = {fmt(p.slope)})" for p in f.fixed_points)
    limit = "$q_1$" if f.every_q_fixed else ("$\\infty$" if math.isinf(f.q_limit) else fmt(f.q_limit))
    chi = "n/a" if math.isinf(f.q_limit) else fmt(f.chi)
    return (fmt(f.nsw2), fixed, limit, chi, f.phase, growth_cell(f.forward), growth_cell(f.backward))
