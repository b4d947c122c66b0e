"""The numbers and sentences the sections of an activation document are made of: the steady
table, the critical condition, stability, verdict and error cells."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy as sp

from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme
from varprop.documents import phases as _phases
from varprop.documents.common import STEADY_DEPTH, STEADY_WIDTH, _quiet
from varprop.documents.store import fmt
from varprop.errors import VarpropError
from varprop.theory.criticality import _dsecond_dq, edge_of_chaos
from varprop.theory.predict import propagate
from varprop.theory.symbolic import derive, latex

__all__ = ["critical_nsw2"]


def _ratio_text(x: float) -> str:
    return fmt(x) if math.isfinite(x) else ("inf" if x > 0 else "n/a")


def _steady_row(act: Activation, scheme: InitScheme) -> tuple[float, float]:
    """Forward ``q_L / q_1`` and backward ``g_1 / g_L`` at width STEADY_WIDTH, depth STEADY_DEPTH."""
    def compute() -> tuple[float, float]:
        try:
            p = propagate(act, scheme, fan_in=STEADY_WIDTH, depth=STEADY_DEPTH)
        except VarpropError:
            return math.nan, math.nan
        q, g = p.preact_second, p.grad_second
        fwd = float(q[-1] / q[0]) if q[0] > 0 else math.nan
        bwd = float(g[0] / g[-1]) if g[-1] > 0 else math.nan
        return fwd, bwd
    return _quiet(compute)


def _steady(x: float) -> bool:
    return math.isfinite(x) and 0.5 <= x <= 2.0


def critical_nsw2(act: Activation | str) -> tuple[float, float]:
    r"""``(n sigma_w^2, q*)`` at the critical point without bias: :math:`\chi = n\sigma_w^2
    E[\phi'(z)^2] = 1` at the fixed point :math:`q^* = n\sigma_w^2 E[\phi(z)^2]` the variance
    reaches (:func:`varprop.edge_of_chaos` with ``bias_variance=0``).

    :math:`q^*` is 0 for positively homogeneous activations (where every :math:`q` is then a fixed
    point).  Raises :class:`~varprop.errors.InvalidArgument` when there is no critical point (e.g.
    softplus, GELU: the variance grows without bound before :math:`\chi` reaches 1).
    """
    p = edge_of_chaos(resolve_activation(act), 0.0)
    return float(p.sigma_w2), (0.0 if math.isnan(p.q_star) else float(p.q_star))


def _nsw2(scheme: InitScheme, width: int) -> float:
    r""":math:`n\sigma_w^2` of a hidden layer of width ``width`` (fan-in = fan-out)."""
    return float(width * scheme.weight_variance(width, width))


def _facts(act: Activation, scheme: InitScheme) -> _phases.PhaseFacts:
    """The computed fixed points, phase and growth of a zero-mean scheme at the steady table's
    width, without bias, from the steady table's input variance 1."""
    return _quiet(lambda: _phases.phase_facts(act, _nsw2(scheme, STEADY_WIDTH), 0.0, 1.0))


def _derive(act: Activation, scheme: InitScheme) -> Any:
    return derive(act, scheme)


def _latex(expr: Any) -> str:
    return latex(expr)


def _verdict_cell(rec: Any) -> str:
    if rec is None:
        return "not run"
    if rec["status"] == "error":
        return f"not checked: {rec['message']}"
    return f"**{rec['status']}**"


def _estimate_cell(rec: Any) -> str:
    if rec is None:
        return "(no Monte Carlo record)"
    if rec["status"] == "error":
        return "n/a"
    return f"{fmt(rec['estimate'])} [{fmt(rec['low'])}, {fmt(rec['high'])}] (R = {rec['replicates']})"


def _critical_text(a: Activation) -> str:
    """The critical condition of ``a`` without bias, with the facts there, all computed
    (:func:`varprop.edge_of_chaos` and :mod:`varprop.documents.phases`)."""
    parts = []
    if _phases.homogeneous(a):
        c = _quiet(lambda: a.gaussian_moments(0.0, 1.0, method="exact"))[3]
        parts.append(f"The activation is positively homogeneous: $E[\\phi(z)^2] = c\\,q$ and "
                     f"$E[\\phi'(z)^2] = c$ with $c$ = {fmt(c)}, so forward and backward factors "
                     f"are both $n\\sigma_w^2 c$ (fan-in for the forward pass, fan-out for the "
                     f"backward pass).")
    g2, why_none = _quiet(lambda: _phases.critical_point(a, 0.0))
    if g2 is None:
        parts.append("**No critical point** without bias: `edge_of_chaos` finds no "
                     "$n\\sigma_w^2$ in $[10^{-3}, 10^4]$ with $\\chi = 1$ at the fixed point the "
                     f"variance reaches ({why_none}).")
    else:
        parts.append(f"The **critical condition** (edge of chaos without bias, `edge_of_chaos`) is "
                     f"$n\\sigma_w^2$ = {fmt(g2)}.  "
                     + _phases.facts_paragraph(_quiet(lambda: _phases.phase_facts(a, g2))))
    slope0 = _quiet(lambda: _dsecond_dq(a, 0.0))
    phi0 = float(np.asarray(a.function(np.zeros(1)), dtype=float)[0])
    if (phi0 == 0.0 and slope0 > 0.0 and not _phases.homogeneous(a)
            and (g2 is None or abs(g2 * slope0 - 1.0) > 1e-9)):
        s0 = 1.0 / slope0
        parts.append(f"$\\phi(0) = 0$, so $q = 0$ is a fixed point, marginal ($F'(0) = 1$) at "
                     f"$n\\sigma_w^2$ = {fmt(s0)}; there: "
                     + _phases.facts_paragraph(_quiet(lambda: _phases.phase_facts(a, s0))))
    return "  ".join(parts)


def _stability_cell(stability: Any) -> str:
    """The stability condition; when it has no free symbols, what it evaluates to."""
    if stability is None:
        return "—"
    if getattr(stability, "free_symbols", None) or not isinstance(stability, sp.core.relational.Relational):
        return f"${_latex(stability)}$"
    lhs, rhs = float(stability.lhs), float(stability.rhs)
    if lhs == rhs:
        verdict = "marginal"
    else:
        verdict = "stable" if bool(stability.func(lhs, rhs)) else "unstable"
    return f"{verdict} (${_latex(stability.lhs)}$ vs ${_latex(stability.rhs)}$)"


def _approximated(a: Activation) -> bool:
    return a.closed_form is not None and not a.closed_form.exact


def _signed_pct(e: float) -> str:
    """A relative error as a signed percentage, 4 significant digits (``+84.2%``, ``+11.86%``),
    ``n/a`` if not finite."""
    return f"{100 * e:+.4g}%" if math.isfinite(e) else "n/a"


def _rel(x: float, ref: float) -> str:
    return fmt(x / ref - 1.0, 2) if ref else "n/a"
