"""The per-scheme tables of an activation document: each scheme's weight moments and factors,
the steady table, fixed points and phases, depth, backward pass and the approximation error.

The factors and closed forms of a scheme are those of :func:`varprop.derive` for that scheme
(the derivation written once in the document, with the scheme's moments substituted)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from varprop.components.activations import Activation, Q
from varprop.documents import phases as _phases
from varprop.documents.approx_error import (
    COMPOUND_DEPTHS,
    compounded_error,
    moment_error_sentence,
)
from varprop.documents.blocks import _Block, _Heading, _Para, _Table
from varprop.documents.cells import (
    _critical_text,
    _facts,
    _latex,
    _nsw2,
    _ratio_text,
    _rel,
    _signed_pct,
    _stability_cell,
    _steady,
    _steady_row,
)
from varprop.documents.common import ERROR_TABLE_Q, STEADY_DEPTH, STEADY_WIDTH
from varprop.documents.step_text import approximation_latex
from varprop.documents.store import fmt
from varprop.theory.symbolic import Derivation
from varprop.theory.symbolic.symbols import N_IN, N_OUT, Q_PREV

__all__ = ["scheme_blocks", "steady_blocks", "phase_blocks", "depth_blocks", "backward_blocks",
           "approximation_blocks"]

Derivations = Mapping[str, Derivation]


def _law(scheme: object) -> str:
    """The family of a scheme's weight law in words (``normal``, ``truncated normal``, ...)."""
    law = scheme.family  # type: ignore[attr-defined]
    name = law.family.replace("_", " ")
    return f"i.i.d. {name}" if law.iid else f"{name} (uncorrelated entries, not independent)"


def scheme_blocks(derivations: Derivations) -> list[_Block]:
    """Each scheme's weight moments and the resulting per-layer factors."""
    rows = []
    for label, d in derivations.items():
        s = d.init
        rows.append((f"`{label}`", _law(s), f"${_latex(s.weight_mean())}$",
                     f"${_latex(s.weight_variance())}$", fmt(_nsw2(s, STEADY_WIDTH)),
                     f"${_latex(d.hidden_factor)}$", f"${_latex(_hidden(d.backward_factor))}$"))
    return [
        _Heading(2, "The schemes", "schemes"),
        _Para("Each scheme's weight mean and variance at a layer with fan-in $n_{in}$ and fan-out "
              "$n_{out}$, $n\\sigma_w^2$ of a hidden layer of width "
              f"{STEADY_WIDTH}, and the factors of the derivation with them substituted: the forward "
              "factor $(q_l - \\sigma_b^2)/q_{l-1}$ of a hidden layer and the backward factor "
              "$\\chi$ (for non-homogeneous activations functions of $q$; for a non-zero weight "
              "mean functions of the moments $A_D, A_C$, $G_D, G_C$ of the layer below)."),
        _Table(("Scheme", "Weights", "$\\mu_w$", "$\\sigma_w^2$",
                f"$n\\sigma_w^2$ ($n$ = {STEADY_WIDTH})", "forward factor (hidden layer)",
                "backward factor $\\chi$ (hidden layer)"), tuple(rows)),
        _Para("Fixed points, their stability and each scheme's phase are computed numerically in "
              "[fixed points and phases](#phases)."),
    ]


def steady_blocks(a: Activation, derivations: Derivations) -> list[_Block]:
    """Which scheme keeps both passes within a factor 2 over :data:`STEADY_DEPTH` layers."""
    blocks: list[_Block] = [_Heading(2, "Which scheme keeps the variance steady", "steady"),
                            _Para(_critical_text(a))]
    rows, steady = [], []
    for label, d in derivations.items():
        fwd, bwd = _steady_row(a, d.init)
        ok = _steady(fwd) and _steady(bwd)
        if ok:
            steady.append(f"`{label}`")
        rows.append((f"`{label}`", _ratio_text(fwd), _ratio_text(bwd), "yes" if ok else "no"))
    blocks.append(_Para(
        f"Predicted over {STEADY_DEPTH} layers of width {STEADY_WIDTH} (`propagate`, "
        "`method=\"auto\"`): forward $q_{L}/q_1$ and backward $g_1/g_L$ (gradient at the input "
        "over gradient at the last layer's input); *steady* means both stay within a factor 2."))
    blocks.append(_Table(("Scheme", f"forward $q_{{{STEADY_DEPTH}}}/q_1$",
                          f"backward $g_1/g_{{{STEADY_DEPTH}}}$", "steady"), tuple(rows)))
    if steady:
        blocks.append(_Para("Steady (within a factor 2 both ways): " + ", ".join(steady) + "."))
        return blocks

    def distance(row: tuple[str, ...]) -> float:
        try:
            return abs(math.log(float(row[1]))) + abs(math.log(float(row[2])))
        except (ValueError, ZeroDivisionError):
            return math.inf
    best = min(rows, key=distance)
    scheme = derivations[best[0].strip("`")].init
    if scheme.is_zero_mean:
        f = _facts(a, scheme)
        why = _phases.phase_sentence(f) + " " + _phases.growth_sentence(f)
    else:
        why = (f"its weights have a non-zero mean (moments conditional on the layer-1 shift); "
               f"over {STEADY_DEPTH} layers forward $q_L/q_1$ = {best[1]} and backward $g_1/g_L$ = "
               f"{best[2]}.")
    blocks.append(_Para(
        f"No scheme keeps both passes within a factor 2 over {STEADY_DEPTH} layers; the closest "
        f"is {best[0]} ($n\\sigma_w^2$ = {fmt(_nsw2(scheme, STEADY_WIDTH))} at width "
        f"{STEADY_WIDTH}, no bias). {why}"))
    return blocks


def phase_blocks(a: Activation, derivations: Derivations) -> list[_Block]:
    """Fixed points, their stability, the phase and the growth over depth of each scheme."""
    rows = []
    for label, d in derivations.items():
        if d.zero_mean:
            rows.append((f"`{label}`",) + _phases.table_cells(_facts(a, d.init)))
        else:
            rows.append((f"`{label}`", "non-zero weight mean: not a map of $q$ alone", "", "", "",
                         "", "", ""))
    return [
        _Heading(2, "Fixed points and phases", "phases"),
        _Para(f"Computed for each zero-mean scheme at width {STEADY_WIDTH} (hidden layer, "
              f"$n\\sigma_w^2$ with $n$ = {STEADY_WIDTH}), no bias, from $q_0 = 1$: every fixed "
              "point $q^* \\ge 0$ of $F(q) = n\\sigma_w^2 E[\\phi(z)^2]$ with its slope $F'(q^*)$ "
              "(attracting iff $|F'| < 1$), the limit $q_\\infty$ of the iteration from $q_1$, "
              "$\\chi = n\\sigma_w^2 E[\\phi'(z)^2]$ there, the phase (ordered $\\chi < 1$, "
              "critical $= 1$, chaotic $> 1$, unbounded if $q_\\infty = \\infty$) and the behaviour "
              f"over depth (power-law exponents measured over {_phases.LAYERS} layers).  Exact "
              "moments throughout."),
        _Table(("Scheme", "$n\\sigma_w^2$", "fixed points $q^*$", "$q_\\infty$ from $q_1$",
                "$\\chi(q_\\infty)$", "phase", "forward", "backward"), tuple(rows)),
    ]


def _hidden(expr: object) -> object:
    """A layer-1 expression (fan-in :math:`n_{in}`, the scheme's variance at :math:`(n_{in},
    n_{out})`) for the hidden layers :math:`2..L` (:math:`n_{out} \to n_{out}`)."""
    subs = getattr(expr, "subs", None)
    return subs(N_IN, N_OUT) if subs is not None else expr


def _depth_cell(d: Derivation, linear: bool) -> str:
    if d.closed_form_depth is not None:
        return f"$q_L = {_latex(d.closed_form_depth)}$"
    if not hasattr(d.forward_map, "shape"):
        return f"$q_l = {_latex(_hidden(d.forward_map).subs(Q, Q_PREV))}$ ($l \\ge 2$)"
    return ("recursion on $(D_l, C_l)$ (derived above)" if linear else
            "recursion conditional on the layer-1 shift (derived above)")


def depth_blocks(a: Activation, derivations: Derivations) -> list[_Block]:
    """The last layer's variance over depth (closed form) or the recursion, and the fixed point."""
    rows = []
    for label, d in derivations.items():
        fp = (f"$q^* = {_latex(d.fixed_point)}$" if d.fixed_point is not None else
              "no closed form (numerical: [phases](#phases))" if d.zero_mean else "—")
        st = _stability_cell(d.stability)
        if d.fixed_point is None and d.stability is None and d.homogeneous and d.zero_mean:
            c = d.hidden_factor
            fp = "none"
            st = (f"no fixed point; factor ${_latex(c)}$"
                  + (" (critical)" if not getattr(c, "free_symbols", None) and c == 1 else ""))
        rows.append((f"`{label}`", _depth_cell(d, a.traits.linear), fp, st))
    return [
        _Heading(2, "Depth: closed form or recursion and fixed point", "depth"),
        _Para("With a bias of variance $\\sigma_b^2$, from the derivation with each scheme's "
              "moments substituted; the numbers without bias are in "
              "[fixed points and phases](#phases)."),
        _Table(("Scheme", "last layer / recursion", "fixed point (with bias)", "stability"),
               tuple(rows)),
    ]


def backward_blocks(derivations: Derivations) -> list[_Block]:
    """The backward factor and the gradient at the input after ``L`` layers of each scheme."""
    rows = []
    for label, d in derivations.items():
        gd = "—" if d.gradient_depth is None else f"${_latex(d.gradient_depth)}$"
        rows.append((f"`{label}`", f"${_latex(_hidden(d.backward_factor))}$", gd))
    return [
        _Heading(2, "Backward pass", "backward"),
        _Para("One factor $\\chi$ per hidden layer $l \\ge 2$ (the backward steps of the "
              "derivation with $n_{in} = n_{out}$; layer 1's uses the scheme's variance at "
              "$(n_{in}, n_{out})$): "
              "$E[(\\partial\\mathcal L/\\partial x)^2]$ at the input after $L$ layers."),
        _Table(("Scheme", "$\\chi$ per layer", "$E[(\\partial\\mathcal L/\\partial x)^2]$ after "
                "$L$ layers"), tuple(rows)),
    ]


def approximation_blocks(a: Activation, derivations: Derivations) -> list[_Block]:
    """The closed form's error against quadrature per moment, and compounded over depth."""
    rules = a.closed_form
    assert rules is not None
    rows = []
    for q in ERROR_TABLE_Q:
        c = a.gaussian_moments(0.0, q, method="closed_form")
        e = a.gaussian_moments(0.0, q, method="quadrature")
        rows.append((fmt(q), fmt(c[1]), fmt(e[1]), _rel(c[1], e[1]), fmt(c[3]), fmt(e[3]),
                     _rel(c[3], e[3])))
    comp_rows = []
    for label, d in derivations.items():
        if not d.zero_mean:
            continue
        for quantity in ("preactivation", "gradient"):
            errs = compounded_error(a, d.init, quantity, width=STEADY_WIDTH)
            comp_rows.append((f"`{label}`", quantity) + tuple(_signed_pct(e) for e in errs))
    return [
        _Heading(2, "Approximation error against quadrature", "approximation"),
        _Para(f"Closed form ({approximation_latex(rules.approximation)}) against exact "
              "Gauss-Legendre quadrature (`Activation.gaussian_moments(0, q, method=...)`), "
              "$z \\sim N(0, q)$; relative error = closed form / quadrature $- 1$."),
        _Table(("$q$", "$E\\phi^2$ closed", "$E\\phi^2$ quadrature", "rel. error",
                "$E\\phi'^2$ closed", "$E\\phi'^2$ quadrature", "rel. error"), tuple(rows)),
        _Para(moment_error_sentence(a) + "  The errors of $E\\phi^2$ (forward) and $E\\phi'^2$ "
              "(backward) enter every layer, so they compound over depth: relative error of "
              "`predict_variance(..., method=\"closed_form\")` against `method=\"exact\"` at width "
              f"{STEADY_WIDTH}, no bias, for the last layer's pre-activation variance and the "
              "gradient at the input."),
        _Table(("Scheme", "Quantity") + tuple(f"$L$ = {L}" for L in COMPOUND_DEPTHS),
               tuple(comp_rows)),
    ]
