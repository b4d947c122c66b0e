r"""The :class:`Derivation` result object and its Markdown / LaTeX renderings.

A derivation is an ordered tuple of :class:`Step` objects, each with a plain-text statement, a
SymPy equation and a one-line justification, grouped into sections (weights, forward pass,
activation moments, depth, backward pass, fixed point), plus summary attributes for the documents
(``forward_factor``, ``backward_factor``, ``closed_form_depth``, ``fixed_point``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import sympy as sp

from varprop._util.validation import check_nonnegative_real, check_widths, fail
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.errors import VarpropError
from varprop.theory.predict import propagate
from varprop.theory.symbolic.symbols import LATEX_NAMES, SYMBOL_TABLE, SymbolInfo

__all__ = ["SECTIONS", "Derivation", "Step", "latex"]

#: Section keys in document order, with their headings.
SECTIONS: dict[str, str] = {
    "weights": "Weights",
    "forward": "Forward pass",
    "activation": "Activation moments",
    "recursion": "Layer recursion",
    "depth": "Depth",
    "backward": "Backward pass",
    "fixed_point": "Fixed point and stability",
}


def latex(expr: Any) -> str:
    """LaTeX of a SymPy object with varprop's symbol names (``sigma_w^2`` -> ``\\sigma_w^2``)."""
    return sp.latex(expr, symbol_names=LATEX_NAMES)


@dataclass(frozen=True)
class Step:
    r"""One step of a derivation.

    Attributes
    ----------
    key : str
        Stable machine-readable identifier (``"variance"``, ``"recursion"``, ``"backward.chi"``...).
    section : str
        One of :data:`SECTIONS`.
    title : str
        Short heading.
    statement : str
        What is claimed, in plain text.
    equation : sympy.Eq (or a SymPy relational / boolean)
        The claim as a SymPy equation.
    justification : str
        One line: why it holds (assumption, identity, reference).
    """

    key: str
    section: str
    title: str
    statement: str
    equation: sp.Basic
    justification: str

    @cached_property
    def latex(self) -> str:
        """The equation in LaTeX."""
        return latex(self.equation)


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def _tex_text(text: str) -> str:
    """Escape plain text for LaTeX."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _md_cell(text: str) -> str:
    return text.replace("|", r"\|")


def _numbered(steps: tuple[Step, ...]) -> list[tuple[str, list[tuple[int, Step]]]]:
    """``(heading, [(number, step), ...])`` per non-empty section in document order; steps are
    numbered 1, 2, ... across sections."""
    out: list[tuple[str, list[tuple[int, Step]]]] = []
    number = 0
    for section, heading in SECTIONS.items():
        group = [s for s in steps if s.section == section]
        if group:
            out.append((heading, list(enumerate(group, start=number + 1))))
            number += len(group)
    return out


def _steps_markdown(steps: tuple[Step, ...], h: str) -> list[str]:
    """Markdown lines of ``steps`` by section (``h``: the heading prefix)."""
    out: list[str] = []
    for heading, group in _numbered(steps):
        out += [f"{h}# {heading}", ""]
        for number, s in group:
            out += [f"{h}## Step {number}: {s.title}", "", s.statement, "", "$$",
                    s.latex, "$$", "", f"*Why:* {s.justification}", ""]
    return out


def _steps_latex(steps: tuple[Step, ...]) -> list[str]:
    """LaTeX lines of ``steps`` by section."""
    out: list[str] = []
    for heading, group in _numbered(steps):
        out.append(rf"\subsection*{{{_tex_text(heading)}}}")
        for number, s in group:
            out += [rf"\paragraph{{Step {number}: {_tex_text(s.title)}}} {_tex_text(s.statement)}",
                    r"\begin{equation*}", s.latex, r"\end{equation*}",
                    rf"\emph{{Why:}} {_tex_text(s.justification)}", ""]
    return out


class StepLookup:
    """``title``, ``keys`` and ``step(key)`` of a derivation of a network (``network`` and
    ``steps`` attributes)."""

    network: object
    steps: tuple[Step, ...]
    assumptions: tuple[str, ...]

    def _markdown_head(self, level: object) -> tuple[str, list[str]]:
        """The heading prefix and the Markdown of title, assumptions and steps."""
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 4:
            raise fail("level", level, "an integer heading level from 1 to 4")
        h = "#" * level
        out = [f"{h} {self.title}", "", f"{h}# Model and assumptions", ""]
        out += [f"- {a}" for a in self.assumptions] + [""]
        return h, out + _steps_markdown(self.steps, h)

    def _latex_head(self) -> list[str]:
        """The LaTeX of title, assumptions and steps."""
        out = [rf"\section*{{{_tex_text(self.title)}}}", r"\subsection*{Model and assumptions}",
               r"\begin{itemize}"]
        out += [rf"  \item {_tex_text(a)}" for a in self.assumptions] + [r"\end{itemize}"]
        return out + _steps_latex(self.steps)

    @property
    def title(self) -> str:
        return f"Variance propagation through {self.network!r}"

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.steps)

    def step(self, key: str) -> Step:
        """The step with ``key`` (raises ``KeyError`` listing the keys)."""
        for s in self.steps:
            if s.key == key:
                return s
        raise KeyError(f"no step {key!r}; steps are {list(self.keys)}")


def _latex_document(lines: list[str], document: bool) -> str:
    """The LaTeX fragment ``lines``, or with ``document`` a complete compilable ``article``."""
    body = "\n".join(lines) + "\n"
    if document:
        return ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
                "\\begin{document}\n" + body + "\\end{document}\n")
    return body


@dataclass(frozen=True, eq=False)
class Derivation:
    r"""The symbolic derivation of variance propagation for one activation and init scheme.

    Build with :func:`varprop.derive`.  All expressions are exact SymPy objects in the symbols of
    :mod:`varprop.theory.symbolic.symbols` (``n_in``, ``n_out``, ``sigma_b^2``, ``q_0``, ``L``, ``q``...).

    Attributes
    ----------
    activation : Activation
    init : InitScheme
    steps : tuple of Step
        The ordered derivation.
    first_layer : sympy.Expr or sympy.ImmutableMatrix
        :math:`q_1 = n_{in}\sigma_w^2 q_0 + \sigma_b^2` (zero-mean weights) or the vector
        :math:`(D_1, C_1)` (non-zero weight mean).
    forward_map : sympy.Expr or sympy.ImmutableMatrix
        The map of a generic layer (fan-in ``n_in``, fan-out ``n_out``): :math:`f(q)` in the
        symbol ``q`` = :math:`q_{l-1}` for zero-mean weights; for a non-zero weight mean the vector
        :math:`(D_l, C_l)` in :math:`D_{l-1}, C_{l-1}` (linear) or in :math:`A_D, A_C` (otherwise).
    forward_factor : sympy.Expr
        Per-layer forward factor of a generic layer, :math:`(q_l - \sigma_b^2)/q_{l-1} =
        n_{in}\sigma_w^2 E[\phi^2]/q`: a constant for positively homogeneous activations
        (e.g. Xavier + linear: :math:`2n_{in}/(n_{in}+n_{out})`), otherwise a function of ``q``.
        Non-zero weight mean: the largest eigenvalue :math:`\lambda_F` of the linear
        :math:`(D, C)` map, or :math:`(D_l - \sigma_b^2)/D_{l-1}` in :math:`A_D, A_C` otherwise.
    hidden_factor : sympy.Expr
        ``forward_factor`` of a hidden layer (:math:`n_{out} \to n_{out}`).
    backward_factor : sympy.Expr
        :math:`\chi = n_{out}\sigma_w^2 E[\phi'(z)^2]` of a generic layer (Xavier + linear:
        :math:`2n_{out}/(n_{in}+n_{out})`; a function of ``q`` unless homogeneous).  Non-zero
        weight mean: the largest eigenvalue :math:`\lambda_B` of the backward :math:`(G_D, G_C)`
        map (linear) or :math:`G_{D,l-1}/G_{D,l}` in :math:`B_D, G_D, G_C`.
    closed_form_depth : sympy.Expr or None
        :math:`q_L` (or :math:`D_L`) as a function of the depth ``L``, where one exists.
    gradient_depth : sympy.Expr or None
        :math:`E(\partial\mathcal L/\partial x)^2` at the network input as a function of ``L``
        (a closed form, or an unevaluated product over layers).
    fixed_point : sympy.Expr or None
        :math:`q^*` of the hidden-layer map, where it has a closed form.
    fixed_point_equation : sympy.Eq or None
        :math:`q^* = f(q^*)` (or the :math:`(D, C)` version).
    stability : sympy.Basic or None
        The condition for the fixed point to be stable (e.g. :math:`n_{out}\sigma_w^2\phi'(0)^2
        \le 1`), a SymPy relational or boolean.
    assumptions : tuple of str
    exact : bool
        True if every closed form used is exact (False for tanh/sigmoid approximations and where
        only quadrature is available).
    exact_at_finite_width : bool
        True if the forward second-moment recursion is exact at every finite width (linear and
        ReLU-type nets with zero-mean symmetric weights, linear nets with i.i.d. weights).
    zero_mean : bool
        True if the scheme's weight mean is zero (one variance per layer suffices).
    homogeneous : bool
        True if the per-layer factors do not depend on ``q`` (linear, relu, leaky_relu).
    bias : bool
    widths : {"constant", "general"}
    symbols : tuple of SymbolInfo
        The symbols the steps use (symbol, LaTeX, meaning, name in code).
    numeric_plan, display : dict
        Internal: expressions compiled by :meth:`evaluate`; compact forms (in the eigenvalue
        symbols :math:`\lambda_\pm`) shown in the summary instead of ``closed_form_depth`` /
        ``gradient_depth`` when those are long.

    Methods
    -------
    step(key), keys, sections()
        Access the steps (keys such as ``"variance"``, ``"first_layer"``, ``"moment.second"``,
        ``"recursion"``, ``"forward_factor"``, ``"closed_form_depth"``, ``"backward.chi"``,
        ``"backward.input_gradient"``, ``"fixed_point"``, ``"stability"``).
    to_markdown(level=1, symbols=True), to_latex(document=False)
        Render the derivation.
    evaluate(fan_in=..., depth=..., ...)
        Iterate the derived recursions numerically.
    is_stable
        ``stability`` decided (True/False) or None.

    References
    ----------
    Glorot & Bengio (2010); He et al. (2015); Poole et al. (2016), *Exponential expressivity in
    deep neural networks through transient chaos*; Schoenholz et al. (2017), *Deep information
    propagation*; Williams (1997) for the erf kernel.
    """

    activation: Activation
    init: InitScheme
    steps: tuple[Step, ...]
    first_layer: Any
    forward_map: Any
    forward_factor: sp.Expr
    hidden_factor: sp.Expr
    backward_factor: sp.Expr
    closed_form_depth: sp.Expr | None
    gradient_depth: sp.Expr | None
    fixed_point: sp.Expr | None
    fixed_point_equation: sp.Basic | None
    stability: sp.Basic | None
    assumptions: tuple[str, ...]
    exact: bool
    exact_at_finite_width: bool
    zero_mean: bool
    homogeneous: bool
    bias: bool
    widths: str
    numeric_plan: Mapping[str, Any] = field(repr=False, default_factory=dict)
    display: Mapping[str, Any] = field(repr=False, default_factory=dict)

    # ----- access ---------------------------------------------------------------------------
    def step(self, key: str) -> Step:
        """The step with ``key`` (raises ``KeyError`` listing the keys)."""
        for s in self.steps:
            if s.key == key:
                return s
        raise KeyError(f"no step {key!r}; steps are {[s.key for s in self.steps]}")

    @property
    def is_stable(self) -> bool | None:
        """``stability`` decided: True/False, or None when it depends on the symbols."""
        if self.stability is None:
            return None
        value = sp.simplify(self.stability)
        if value in (sp.true, sp.false):
            return bool(value)
        return None

    def sections(self) -> list[tuple[str, str, tuple[Step, ...]]]:
        """``(key, heading, steps)`` for each non-empty section, in document order."""
        out = []
        for key, heading in SECTIONS.items():
            steps = tuple(s for s in self.steps if s.section == key)
            if steps:
                out.append((key, heading, steps))
        return out

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.steps)

    @cached_property
    def symbols(self) -> tuple[SymbolInfo, ...]:
        """Symbols that appear in the steps, in the order of :data:`SYMBOL_TABLE`."""
        used: set[sp.Basic] = set()
        for s in self.steps:
            eq = s.equation
            if isinstance(eq, sp.Basic):
                used |= eq.atoms(sp.Symbol)
                used |= {i.base for i in eq.atoms(sp.Indexed)}
        return tuple(info for info in SYMBOL_TABLE if info.symbol in used)

    @property
    def title(self) -> str:
        return f"Variance propagation: {self.activation!r} with {self.init!r}"

    def __repr__(self) -> str:
        return (f"Derivation(activation={self.activation!r}, init={self.init!r}, "
                f"steps={len(self.steps)}, forward_factor={self.forward_factor}, "
                f"backward_factor={self.backward_factor})")

    # ----- rendering ------------------------------------------------------------------------
    def summary_rows(self) -> list[tuple[str, str]]:
        """``(label, LaTeX)`` rows of the summary table."""
        return list(self._summary_rows)

    @cached_property
    def _summary_rows(self) -> tuple[tuple[str, str], ...]:
        rows = [("forward factor per layer", latex(self.forward_factor)),
                ("forward factor, hidden layer", latex(self.hidden_factor)),
                ("backward factor per layer", latex(self.backward_factor))]
        shown = {k: v for k, v in self.display.items() if v is not None}
        if self.closed_form_depth is not None:
            rows.append(("last layer (depth L)", latex(shown.get("closed_form_depth", self.closed_form_depth))))
        if self.gradient_depth is not None:
            rows.append(("gradient at the input", latex(shown.get("gradient_depth", self.gradient_depth))))
        if self.fixed_point is not None:
            rows.append(("fixed point", latex(self.fixed_point)))
        if self.stability is not None:
            rows.append(("stability", latex(self.stability)))
        return tuple(rows)

    def to_markdown(self, *, level: int = 1, symbols: bool = True) -> str:
        r"""GitHub Markdown with ``$$`` display math.

        Layout (``level=1``)::

            # Variance propagation: <activation> with <init>
            ## Model and assumptions
            ## Symbols                     (table: symbol | meaning | in code)
            ## Weights / Forward pass / Activation moments / Depth / Backward pass /
               Fixed point and stability   (### Step k: <title>, statement, $$...$$, *Why:*)
            ## Summary                     (table: quantity | value)
        """
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 4:
            raise fail("level", level, "an integer heading level from 1 to 4")
        h = "#" * level
        out = [f"{h} {self.title}", "", f"{h}# Model and assumptions", ""]
        out += [f"- {a}" for a in self.assumptions] + [""]
        if symbols:
            out += [f"{h}# Symbols", "", "| Symbol | Meaning | In code |", "|---|---|---|"]
            out += [f"| ${_md_cell(i.latex)}$ | {_md_cell(i.meaning)} | `{_md_cell(i.code)}` |"
                    for i in self.symbols]
            out.append("")
        out += _steps_markdown(self.steps, h)
        out += [f"{h}# Summary", "", "| Quantity | Value |", "|---|---|"]
        out += [f"| {label} | ${_md_cell(value)}$ |" for label, value in self.summary_rows()]
        out += [f"| closed forms exact | {'yes' if self.exact else 'no (approximation or quadrature)'} |",
                f"| exact at finite width | {'yes' if self.exact_at_finite_width else 'no (infinite-width limit)'} |"]
        return "\n".join(out) + "\n"

    def to_latex(self, *, document: bool = False) -> str:
        r"""LaTeX: a fragment (``\section*`` ... ) needing ``amsmath``/``amssymb``, or with
        ``document=True`` a complete compilable ``article``."""
        out = [rf"\section*{{{_tex_text(self.title)}}}", r"\subsection*{Model and assumptions}",
               r"\begin{itemize}"]
        out += [rf"  \item {_tex_text(a)}" for a in self.assumptions]
        out += [r"\end{itemize}", r"\subsection*{Symbols}", r"\begin{tabular}{lll}",
                r"Symbol & Meaning & In code \\ \hline"]
        out += [rf"${i.latex}$ & {_tex_text(i.meaning)} & \texttt{{{_tex_text(i.code)}}} \\"
                for i in self.symbols]
        out.append(r"\end{tabular}")
        out += _steps_latex(self.steps)
        out += [r"\subsection*{Summary}", r"\begin{tabular}{ll}"]
        out += [rf"{_tex_text(label)} & ${value}$ \\" for label, value in self.summary_rows()]
        out += [rf"closed forms exact & {'yes' if self.exact else 'no'} \\", r"\end{tabular}"]
        return _latex_document(out, document)

    def _repr_markdown_(self) -> str:  # Jupyter
        return self.to_markdown()

    # ----- numbers --------------------------------------------------------------------------
    @cached_property
    def _compiled(self) -> dict[str, Callable[..., Any]]:
        plan = self.numeric_plan
        out: dict[str, Callable[..., Any]] = {}
        mods = ["math", {"erf": math.erf}]
        for name, (args, expr) in plan.get("expressions", {}).items():
            out[name] = sp.lambdify(args, expr, modules=mods)
        return out

    def evaluate(self, *, fan_in: int | None = None, fan_out: int | None = None,
                 widths: list[int] | tuple[int, ...] | None = None, depth: int = 1,
                 input_variance: float = 1.0, bias_variance: float = 0.0) -> dict[str, np.ndarray]:
        r"""Iterate the derived recursions numerically (per layer :math:`l = 1..L`).

        Uses the derivation's own formulas: the closed-form moments (the stated approximation for
        tanh/sigmoid) and, where the derivation states a quadrature reference (non-zero weight
        mean with a non-linear activation, activations without a closed form), the activation's
        numerical quadrature.

        Returns
        -------
        dict of ndarray
            ``preact_mean``, ``preact_second`` (:math:`q_l` or :math:`D_l`), ``preact_cross``
            (:math:`C_l`), ``act_second`` (:math:`E a_l^2`), ``grad_second``
            (:math:`E(\partial\mathcal L/\partial a_{l-1})^2`), ``delta_second``
            (:math:`E(\partial\mathcal L/\partial z_l)^2`), named as in
            :class:`varprop.theory.predict.Propagation`.
        """
        ws = check_widths(fan_in, fan_out, widths, depth)
        if not self.bias and bias_variance:
            raise fail("bias_variance", bias_variance, "0 for a derivation built with bias=False")
        q0 = check_nonnegative_real("input_variance", input_variance)
        sb = check_nonnegative_real("bias_variance", bias_variance)
        L = len(ws) - 1
        f = self._compiled
        act = self.activation
        mean, d, c, am, ad, ac, bd, bc = (np.zeros(L) for _ in range(8))
        kind = self.numeric_plan["kind"]
        if kind == "shifted":  # conditional on the layer-1 shift: the quadrature of varprop.theory.shifted
            p = propagate(act, self.init, widths=ws, input_variance=q0, bias_variance=sb)
            return {k: np.array(getattr(p, k)) for k in ("preact_mean", "preact_second", "preact_cross",
                                                          "act_mean", "act_second", "grad_second", "delta_second")}
        with np.errstate(all="ignore"):
            for l in range(L):
                n_i, n_o = ws[l], ws[l + 1]
                if kind == "zero_mean":
                    if l == 0:
                        q = f["layer"](q0, n_i, n_o, sb)
                    elif "map" in f:  # the derived closed-form map q_l = f(q_{l-1})
                        q = f["map"](d[l - 1], n_i, n_o, sb)
                    else:
                        q = f["layer"](ad[l - 1], n_i, n_o, sb)
                    d[l] = q
                    mom = self._moments(q)
                    am[l], ad[l], bd[l] = mom[0], mom[1], mom[3]
                    ac[l], bc[l] = mom[0] ** 2, mom[2] ** 2
                    continue
                prev = (0.0, q0, 0.0) if l == 0 else (am[l - 1], ad[l - 1], ac[l - 1])
                mean[l], d[l], c[l] = f["mean_dc"](*prev, n_i, n_o, sb)
                if kind == "linear_dc":
                    am[l], ad[l], ac[l], bd[l], bc[l] = mean[l], d[l], c[l], 1.0, 1.0
                else:
                    var = max(d[l] - mean[l] ** 2, 0.0)
                    cov = max(c[l] - mean[l] ** 2, 0.0)
                    e_m, e_2, _, e_d2 = act.gaussian_moments(float(mean[l]), float(var), method="exact")
                    cross, dcross = act.correlated_moments(float(mean[l]), float(var), float(cov))
                    am[l], ad[l], ac[l], bd[l], bc[l] = e_m, e_2, cross, e_d2, dcross
            grad, delta = np.zeros(L), np.zeros(L)
            g_d, g_c = 1.0, 0.0
            for l in range(L - 1, -1, -1):
                n_i, n_o = ws[l], ws[l + 1]
                delta[l] = g_d
                h_d, h_c = f["backward"](g_d, g_c, n_i, n_o)
                grad[l] = h_d
                if l > 0:
                    g_d, g_c = bd[l - 1] * h_d, bc[l - 1] * h_c
        return {"preact_mean": mean, "preact_second": d, "preact_cross": c, "act_mean": am,
                "act_second": ad, "grad_second": grad, "delta_second": delta}

    def _moments(self, q: float) -> tuple[float, float, float, float]:
        """``(E phi, E phi^2, E phi', E phi'^2)`` at ``N(0, q)`` as the derivation states them."""
        if self.numeric_plan.get("closed_moments") and 0.0 < q < math.inf:
            return self.activation.gaussian_moments(0.0, q, method="closed_form")
        if q == 0.0 or not math.isfinite(q):
            if math.isnan(q):
                raise VarpropError("the recursion produced NaN")
        return self.activation.gaussian_moments(0.0, q, method="quadrature") if math.isfinite(q) \
            else self.activation.gaussian_moments(0.0, q)
