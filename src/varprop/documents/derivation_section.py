r"""The model and the derivation of an activation document, written once for every scheme.

The steps come from :func:`varprop.theory.symbolic.generic.derive_generic`: the same builder as
:func:`varprop.derive`, with the scheme's weight moments left as the symbols :math:`\mu_w`,
:math:`\sigma_w^2` (hidden layers) and :math:`\mu_{w,1}`, :math:`\sigma_{w,1}^2` (layer 1), so one
derivation serves every scheme and the schemes are tabulated afterwards.  The prose of each step
is :mod:`varprop.documents.step_text` (Markdown with LaTeX, no ASCII math).
"""

from __future__ import annotations

from varprop.components.activations import Activation
from varprop.documents.approx_error import moment_error_sentence
from varprop.documents.blocks import _Block, _Heading, _List, _Math, _Para
from varprop.documents.common import _MODEL
from varprop.documents.step_text import approximation_latex, step_text, step_title
from varprop.theory.symbolic import SECTIONS, latex
from varprop.theory.symbolic.generic import derive_generic

__all__ = ["model_blocks", "derivation_blocks"]

#: Steps left out of the derivation for any scheme: the weight moments are its symbols.
_SKIPPED = frozenset({"weight_mean", "weight_variance", "weight_variance_hidden",
                      "weight_variance_layer"})


def _moments_sentence(a: Activation) -> str:
    rules = a.closed_form
    if rules is not None and rules.exact:
        return "The Gaussian moments have exact closed forms (used by `method=\"auto\"`)."
    if rules is not None:
        return (f"The closed form uses the approximation {approximation_latex(rules.approximation)}; "
                "`predict_variance(method=\"auto\")` uses exact quadrature instead.  "
                + moment_error_sentence(a) + "  The [approximation error](#approximation) "
                "section tables the errors per moment and compounded over depth.")
    return "No closed form: moments by numerical quadrature."


def model_blocks(a: Activation, nonzero_mean: bool) -> list[_Block]:
    """The model, the activation and the assumptions, in Markdown with LaTeX."""
    blocks: list[_Block] = [_Heading(2, "Model and assumptions", "model"), _Para(_MODEL),
                            _Math(f"\\phi(x) = {latex(a.expr)}, \\qquad "
                                  f"\\phi'(x) = {latex(a.derivative)}")]
    assumptions = [
        "*Infinite width (mean field):* pre-activations are Gaussian with the stated moments.",
        "*Gradient independence:* $\\partial\\mathcal L/\\partial z_L$ has i.i.d. zero-mean "
        "unit-variance entries independent of the forward pass, and $\\phi'(z_{l-1})$ is treated as "
        "independent of $W_l^\\top\\delta_l$ (Schoenholz et al. 2017).",
        "*Widths:* $n_0 = n_{in}$ and $n_1 = \\dots = n_L = n_{out}$: layer 1 maps "
        "$n_{in} \\to n_{out}$, layers $2, \\dots, L$ map $n_{out} \\to n_{out}$.",
        "*Moments:* " + _moments_sentence(a),
        ("*Finite width:* for zero-mean symmetric i.i.d. weights the second moments of this "
         "network are exact at every finite width." if a.traits.exact_at_finite_width else
         "*Finite width:* the predictions are approximations there (the random scale of each "
         "layer feeds the non-linearity)."),
    ]
    if nonzero_mean:
        assumptions.append(
            "*Non-zero weight mean:* the units of a layer share the shift $\\mu_w\\sum_j a_j$, so "
            "both $D = E[z_i^2]$ and $C = E[z_i z_k]$ are tracked; "
            + ("for the identity this is exact (second moments need no Gaussianity)." if
               a.traits.linear else
               "after a non-linearity the shift is not Gaussian: the moments are conditional on "
               "the layer-1 shift $u$ (exactly Gaussian) and averaged over it; given $u$ each later "
               "shift is deterministic (its $O(n^{-1/2})$ fluctuation is neglected).  Measured "
               "limits (independent Monte Carlo): the gradient through saturating layers is not "
               "reliable, since each weight's own $O(1)$ share of $z_i$ tilts $\\phi'(z_i)$, which "
               "gradient independence ignores (sigmoid, $U[-0.1, 0.3)$: $+31\\%$ at depth 4 at "
               "widths 64 and 256), and rare unsaturated networks carry the ensemble mean (tanh, "
               "erf); ReLU gradients at hidden layers are up to $+10\\%$ at width 64 ($+6\\%$ at "
               "256)."))
    blocks.append(_List(tuple(assumptions)))
    return blocks


def _steps(a: Activation, zero_mean: bool, first: int) -> tuple[list[_Block], int]:
    """The blocks of one generic derivation (numbered from ``first``) and the next number."""
    d = derive_generic(a, zero_mean)
    out: list[_Block] = []
    number = first
    for section, heading in SECTIONS.items():
        group = [s for s in d.steps if s.section == section and s.key not in _SKIPPED]
        if not group:
            continue
        out.append(_Heading(4, heading))
        for s in group:
            statement, why = step_text(s, a, zero_mean)
            out.append(_Para(f"**Step {number}: {step_title(s)}.**" + (f" {statement}" if statement else "")))
            out.append(_Math(s.latex))
            if why:
                out.append(_Para(f"*Why:* {why}"))
            number += 1
    return out, number


def derivation_blocks(a: Activation, *, zero_mean: bool, nonzero_mean: bool) -> list[_Block]:
    """The derivation for every scheme: the zero-mean recursion (if any scheme has zero-mean
    weights) and the non-zero-mean one (if any scheme has a weight mean), each once."""
    blocks: list[_Block] = [
        _Heading(2, "Derivation, once for every scheme", "derivation"),
        _Para("A scheme enters only through the mean $\\mu_w$ and the variance $\\sigma_w^2$ of its "
              "weight entries at a hidden layer's fans ($n_{out} \\to n_{out}$) and "
              "$\\mu_{w,1}$, $\\sigma_{w,1}^2$ at layer 1's ($n_{in} \\to n_{out}$; the same "
              "numbers when $n_{in} = n_{out}$); in the one-layer steps $\\sigma_w^2$ is the "
              "variance of the layer at hand.  Biases are i.i.d. $N(0, \\sigma_b^2)$.  The steps "
              "below are `varprop.derive` with these moments left as symbols; each scheme's "
              "values are [tabulated](#schemes) afterwards.  Notation: $q_l = \\mathrm{Var}(z_l)$, "
              "$A_D = E[a_{l-1}^2]$ the activation's second moment of the layer below, "
              "$\\tilde q_l = E[(\\partial\\mathcal L/\\partial z_l)^2]$, "
              "$g_l = E[(\\partial\\mathcal L/\\partial a_{l-1})^2]$.")]
    number = 1
    if zero_mean:
        blocks.append(_Heading(3, "Zero-mean weights ($\\mu_w = 0$)", "zero-mean"))
        steps, number = _steps(a, True, number)
        blocks += steps
    if nonzero_mean:
        blocks.append(_Heading(3, "Non-zero weight mean ($\\mu_w \\ne 0$)", "nonzero-mean"))
        blocks.append(_Para("With $\\mu_w \\ne 0$ the units of a layer are correlated: the "
                            "second moment $D_l = E[z_{l,i}^2]$ and the cross moment "
                            "$C_l = E[z_{l,i} z_{l,k}]$ ($i \\ne k$) are tracked together; "
                            "backward likewise $G_D$, $G_C$."))
        steps, number = _steps(a, False, number)
        blocks += steps
    return blocks
