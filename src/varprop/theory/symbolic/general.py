r"""Deriving a network of any layer types: :func:`derive_general`.

Networks with residual blocks, normalisation, dropout, convolutions, pooling or recurrent layers
(:func:`varprop.theory.fields.is_general`) are derived layer by layer from each layer's own
mean-field rules (``layer.field_steps()``: SymPy equations in the layer's local symbols, forward
and backward), then evaluated numerically by the general engine (:func:`varprop.predict_fields`):
per layer position :math:`k = 1..K`, :math:`E[y_k^2]` averaged over the entries of the output
tensor and :math:`E[(\partial\mathcal L/\partial y_k)^2]` from i.i.d. unit-variance gradients at the
network output.

The symbolic part is the rule of each *distinct* layer (a repeated block is derived once); the
numbers are those of the whole network.  Assumptions: infinite width (channels independent, weight
layers' outputs Gaussian), zero-mean weights, gradient independence backward, and every
approximation a layer declares on the way (listed in the document).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import sympy as sp

from varprop.network.layout import expanded_layers
from varprop.network.model import Network
from varprop.theory.fields import FieldPrediction, predict_fields
from varprop.theory.symbolic.derivation import (
    Step,
    StepLookup,
    _latex_document,
    _md_cell,
    _tex_text,
)

__all__ = ["FieldDerivation", "derive_general", "MAX_GENERAL_LAYERS"]

#: Longest network whose per-layer summary table is written (the numbers exist for any depth).
MAX_GENERAL_LAYERS = 256

_ASSUMPTIONS = (
    "The input has i.i.d. zero-mean entries of second moment q_0 (input_variance), independent "
    "between the samples of a batch.",
    "Infinite width: the channels (units) of a tensor are exchangeable and independent, and a "
    "weight layer's output is Gaussian given its input (central limit theorem); weights have "
    "zero mean.",
    "Backward: the loss gradient at the network output has i.i.d. zero-mean unit-variance "
    "entries, and the backward weights are treated as independent of the forward pass "
    "(gradient independence).",
)


@dataclass(frozen=True, eq=False)
class FieldDerivation(StepLookup):
    r"""The derivation of a network walked with the general engine (:func:`derive_general`).

    Attributes
    ----------
    network : Network
    steps : tuple of Step
        Each distinct layer's rules (keys ``"<kind><i>.<j>"``), forward then backward.
    prediction : FieldPrediction
        The numbers: every position's output field and gradient field.
    assumptions : tuple of str
        The model's assumptions and every approximation declared by a layer.
    exact_at_finite_width : bool
        Whether every layer's rule is exact at finite width for its input.
    """

    network: Network
    steps: tuple[Step, ...]
    prediction: FieldPrediction
    assumptions: tuple[str, ...]
    exact_at_finite_width: bool

    def evaluate(self) -> dict[str, np.ndarray]:
        """``output_second`` and ``output_gradient`` per layer position, ``input_gradient``."""
        p = self.prediction
        return {"output_second": p.output_second(), "output_gradient": p.output_gradient_second(),
                "input_gradient": np.array(p.input_gradient.average_second())}

    def summary_rows(self) -> list[tuple[str, str, str, str]]:
        """``(position, layer, E[y_k^2], E[(dL/dy_k)^2])`` with the numbers to 6 significant
        digits (the first :data:`MAX_GENERAL_LAYERS` positions)."""
        values = self.evaluate()
        layers = expanded_layers(self.network)[:MAX_GENERAL_LAYERS]
        return [(str(k), repr(layer), f"{d:.6g}", f"{g:.6g}") for k, (layer, d, g) in enumerate(
            zip(layers, values["output_second"], values["output_gradient"]), start=1)]

    def to_markdown(self, *, level: int = 1) -> str:
        """GitHub Markdown with ``$$`` display math."""
        h, out = self._markdown_head(level)
        out += [f"{h}# Summary (numbers from the general engine)", "",
                "| Position | Layer | $E[y_k^2]$ | $E[(dL/dy_k)^2]$ |", "|---|---|---|---|"]
        out += [f"| {k} | `{_md_cell(kind)}` | {d} | {g} |" for k, kind, d, g in self.summary_rows()]
        g_in = float(self.prediction.input_gradient.average_second())
        out += [f"| input | | | {g_in:.6g} |", "",
                "Exact at finite width: " + ("yes." if self.exact_at_finite_width
                                             else "no (infinite-width limit).")]
        return "\n".join(out) + "\n"

    def to_latex(self, *, document: bool = False) -> str:
        r"""LaTeX: a fragment needing ``amsmath``, or with ``document=True`` a whole ``article``."""
        out = self._latex_head()
        out += [r"\subsection*{Summary}", r"\begin{tabular}{rlrr}",
                r"Position & Layer & $E[y_k^2]$ & $E[(dL/dy_k)^2]$ \\ \hline"]
        out += [rf"{k} & \texttt{{{_tex_text(kind)}}} & {d} & {g} \\"
                for k, kind, d, g in self.summary_rows()]
        out += [r"\end{tabular}"]
        return _latex_document(out, document)

    def _repr_markdown_(self) -> str:  # Jupyter
        return self.to_markdown()


_GREEK = re.compile(r"(?<![A-Za-z\\])(delta|sigma|phi|mu|rho|alpha|beta|gamma|epsilon|xi|chi|"
                    r"lambda|eta|tau|kappa|theta|omega|psi)(?![A-Za-z])")
_BARE_POWER = re.compile(r"([\^_])([A-Za-z0-9])(?![A-Za-z0-9{])")


def _typeset_name(name: str) -> str:
    r"""A layer's symbol name such as ``E[delta_z^2]`` as LaTeX that SymPy keeps verbatim
    (``\mathbb{E}[\delta_{z}^{2}]``): Greek words get backslashes, bare sub/superscripts braces."""
    out = _GREEK.sub(r"\\\1", name)
    out = _BARE_POWER.sub(r"\1{\2}", out)
    if out.startswith("E["):
        out = r"\mathbb{E}" + out[1:]
    return out


def _typeset(expr: sp.Basic) -> sp.Basic:
    """``expr`` with bracketed symbol names (``E[a^2]``) renamed to LaTeX-safe ones."""
    renames = {s: sp.Symbol(_typeset_name(s.name), **s.assumptions0)
               for s in expr.free_symbols if isinstance(s, sp.Symbol) and any(c in s.name for c in "[^")}
    return expr.xreplace(renames) if renames else expr


def _layer_steps(net: Network) -> tuple[Step, ...]:
    """Each distinct layer's ``field_steps()`` as :class:`Step` values, forward then backward."""
    forward: list[Step] = []
    backward: list[Step] = []
    seen: list[object] = []
    for block, _ in net.layers.runs:
        for layer in block:
            if layer in seen:
                continue
            seen.append(layer)
            i = len(seen)
            for j, (sentence, equation) in enumerate(layer.field_steps(), start=1):
                is_backward = sentence.lower().startswith("backward")
                step = Step(f"{layer.kind}{i}.{j}", "backward" if is_backward else "forward",
                            f"{layer!r}", sentence, _typeset(sp.sympify(equation)),
                            f"the rule of {type(layer).__name__} (see its docstring)")
                (backward if is_backward else forward).append(step)
    return tuple(forward + backward)


def derive_general(net: Network) -> FieldDerivation:
    r"""Derive ``net`` with the general engine: each distinct layer's SymPy rules and the
    per-position numbers (module docstring)."""
    prediction = predict_fields(net)
    assumptions = _ASSUMPTIONS + tuple(f"Approximation: {a}" for a in prediction.approximations)
    return FieldDerivation(net, _layer_steps(net), prediction, assumptions, prediction.exact)
