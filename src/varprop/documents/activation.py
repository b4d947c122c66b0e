"""One activation's derivation document, readable in one sitting: the model and assumptions,
the derivation written once for every scheme (in :math:`\\mu_w`, :math:`\\sigma_w^2` and
:math:`\\sigma_b^2`), then the schemes tabulated (their moments and factors, which keeps the variance
steady, fixed points and phases, depth, backward pass), the error of a closed-form approximation
against quadrature, a Monte Carlo verification table with verdicts and a figure of the requested
schemes.  Links stay inside the generated set (a document written with ``--out`` stands alone)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from varprop._util.validation import check_choice, fail
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, init_scheme, resolve_scheme
from varprop.documents.blocks import (
    _Block,
    _Figure,
    _Heading,
    _Para,
    _render_latex,
    _render_markdown,
    _Table,
    markdown_blocks,
)
from varprop.documents.cells import (
    _approximated,
    _derive,
    _estimate_cell,
    _latex,
    _verdict_cell,
)
from varprop.documents.common import (
    _TITLES,
    FIGURE_SCHEMES,
    FIGURE_WIDTH,
    VERIFY_DEPTH,
    VERIFY_WIDTH,
    Format,
    GeneratedFile,
    _label,
    _quiet,
    file_stem,
    schemes_for,
)
from varprop.documents.derivation_section import derivation_blocks, model_blocks
from varprop.documents.figures import _figure
from varprop.documents.finite_width import (
    figure_path,
    finite_width_figure,
    finite_width_section,
)
from varprop.documents.records import (
    _VERIFY_QUANTITIES,
    _curve_records,
    _verify_records,
    shared_simulations,
)
from varprop.documents.scheme_tables import (
    approximation_blocks,
    backward_blocks,
    depth_blocks,
    phase_blocks,
    scheme_blocks,
    steady_blocks,
)
from varprop.documents.store import Budget, MonteCarloStore, fmt
from varprop.documents.store import budget as _budget
from varprop.theory.predict import predict_variance

__all__ = ["activation_document"]


@dataclass
class _ActivationResult:
    files: list[GeneratedFile]
    index_rows: list[tuple[str, ...]] = field(default_factory=list)


def activation_document(act: Activation | str, schemes: Sequence[InitScheme | str] | None = None,
                        *, store: MonteCarloStore | None = None, budget: str | Budget = "default",
                        format: Format = "markdown", figures: bool = True,
                        progress: Callable[[], None] | None = None) -> list[GeneratedFile]:
    """Build one activation's document (and its figure) for ``schemes`` (default: all).

    Returns the files (``<name>.md`` or ``.tex``, ``figures/<name>.svg`` or ``.pdf``) without
    writing them; they link only to each other, so they can be written anywhere.  The figure
    draws the requested schemes (by default :data:`~varprop.documents.common.FIGURE_SCHEMES`).
    """
    return _activation_document(act, schemes, store=store, budget=budget, format=format,
                                figures=figures, progress=progress).files


def _typeset_powers(text: str) -> str:
    """The checker's plain-text reasons with their powers typeset (``skewness^2``)."""
    return re.sub(r"\b([A-Za-z]+)\^(\d+)", r"\1$^{\2}$", text)


def _shared_sentence(derivations: dict) -> str:
    twins = shared_simulations([d.init for d in derivations.values()])
    if not twins:
        return ""
    pairs = ", ".join(f"`{label}` as `{twin}`" for label, twin in twins.items())
    return (f"  At width {VERIFY_WIDTH} some schemes draw their weights from exactly the same law "
            f"as another (fan-in = fan-out); those rows are the same simulated networks: {pairs}.")


def _verification_blocks(a: Activation, derivations: dict, records: dict) -> list[_Block]:
    rows = []
    for label, d in derivations.items():
        for quantity in _VERIFY_QUANTITIES:
            rec = records[(label, quantity)]
            predicted = fmt(rec["predicted"]) if rec is not None and "predicted" in rec else fmt(_quiet(
                lambda: predict_variance(a, d.init, fan_in=VERIFY_WIDTH, depth=VERIFY_DEPTH,
                                         quantity=quantity)))
            rows.append((f"`{label}`", str(VERIFY_WIDTH), str(VERIFY_DEPTH), quantity, predicted,
                         _estimate_cell(rec), _verdict_cell(rec)))
    blocks: list[_Block] = [
        _Heading(2, "Verification (Monte Carlo)", "verification"),
        _Para(f"`verify(...)` at width {VERIFY_WIDTH}, depth {VERIFY_DEPTH}: *preactivation* is "
              f"$\\mathrm{{Var}}\\,z_{VERIFY_DEPTH}$, *gradient* is "
              "$E[(\\partial\\mathcal L/\\partial x)^2]$ at the network input.  The estimate is the "
              "mean over independent networks (replicates) with the checker's simultaneous "
              "interval (`varprop.verify`; its verdicts are explained in the user documentation, "
              "`docs/checker.md`).  Seeds are fixed (a hash of the row's key)."
              + _shared_sentence(derivations)),
        _Table(("Scheme", "Width", "Depth", "Quantity", "Predicted", "Monte Carlo [interval]",
                "Verdict"), tuple(rows))]
    counts: dict[str, int] = {}
    for rec in records.values():
        status = "not run" if rec is None else rec["status"]
        counts[status] = counts.get(status, 0) + 1
    blocks.append(_Para("Verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                        + "."))
    labelled = {status: sorted({label for (label, _), rec in records.items()
                                if rec is not None and rec["status"] == status})
                for status in ("refuted", "inconclusive")}
    if labelled["refuted"] or labelled["inconclusive"]:
        notes = [f"`{label}` {quantity} ({rec['status']}): "
                 + _typeset_powers(rec.get("reason", "no reason recorded."))
                 for (label, quantity), rec in sorted(records.items())
                 if rec is not None and rec["status"] in ("refuted", "inconclusive")]
        heads = [f"{title}: " + ", ".join(f"`{r}`" for r in labelled[status]) + "."
                 for title, status in (("Refuted", "refuted"), ("Inconclusive", "inconclusive"))
                 if labelled[status]]
        blocks.append(_Para("  ".join(heads + notes)))
    return blocks


def _short(heading: str) -> str:
    """A heading as a contents entry: before any colon or comma, first letter lower case."""
    text = heading.split(":")[0].split(",")[0]
    return text[:1].lower() + text[1:]


def _activation_document(act: Activation | str, schemes: Sequence[InitScheme | str] | None, *,
                         store: MonteCarloStore | None, budget: str | Budget, format: Format,
                         figures: bool, progress: Callable[[], None] | None,
                         index: bool = False) -> _ActivationResult:
    """The document; ``index`` links the folder's index (``README.md``, written by ``--all``)."""
    a = resolve_activation(act)
    format = check_choice("format", format, ("markdown", "latex"))  # type: ignore[assignment]
    b = _budget(budget)
    store = store if store is not None else MonteCarloStore(budget_name=b.name)
    tick = progress or (lambda: None)
    scheme_list = schemes_for(a) if schemes is None else [resolve_scheme(s) for s in schemes]
    if not scheme_list:
        raise fail("schemes", schemes, "at least one init scheme")
    name, stem = a.name, file_stem(a)
    title = f"{_TITLES.get(name, name)}: variance propagation under every init scheme"
    derivations = {_label(s): _derive(a, s) for s in scheme_list}
    for _ in scheme_list:
        tick()
    zero_mean = any(d.zero_mean for d in derivations.values())
    nonzero_mean = not all(d.zero_mean for d in derivations.values())
    kind = "svg" if format == "markdown" else "pdf"  # pdflatex's graphicx cannot read SVG

    # -- the sections, in order ---------------------------------------------------------------
    sections: list[list[_Block]] = []
    sections.append(model_blocks(a, nonzero_mean))
    sections.append(derivation_blocks(a, zero_mean=zero_mean, nonzero_mean=nonzero_mean))
    sections.append(scheme_blocks(derivations))
    sections.append(steady_blocks(a, derivations))
    sections.append(phase_blocks(a, derivations))
    sections.append(depth_blocks(a, derivations))
    sections.append(backward_blocks(derivations))
    if _approximated(a):
        sections.append(approximation_blocks(a, derivations))
    records = _verify_records(a, [d.init for d in derivations.values()], store, b, tick)
    sections.append(_verification_blocks(a, derivations, records))
    # More sections go here, before the figures.  A section is a list of blocks; one written as
    # Markdown lines becomes blocks (and so renders to LaTeX too) with markdown_blocks(lines).
    files: list[GeneratedFile] = []
    spread = finite_width_figure(a, store=store, budget=b, kind=kind) if figures else None
    spread_path = figure_path(a, kind, stem) if spread is not None else None
    if spread is not None:
        files.append(GeneratedFile(spread_path, spread))
    extra = [finite_width_section(a, store=store, budget=b, tick=tick, figure=spread_path)]
    sections += [markdown_blocks(lines) for lines in extra]
    figure: list[_Block] = [_Heading(2, "Figures", "figures")]
    drawn = ([init_scheme(n) for n in FIGURE_SCHEMES] if schemes is None
             else [d.init for d in derivations.values()])
    curves = _curve_records(a, drawn, store, b, tick) if figures else {}
    image = _figure(a, drawn, curves, kind) if figures else None
    if image is not None:
        files.append(GeneratedFile(f"figures/{stem}.{kind}", image))
        figure.append(_Figure(f"figures/{stem}.{kind}",
                              f"{_TITLES.get(name, name)}, width {FIGURE_WIDTH}: predicted "
                              f"$E[z_l^2]$ and $E[(\\partial\\mathcal L/\\partial a_{{l-1}})^2]$ "
                              f"(lines) and Monte Carlo means with 95% intervals (points) for "
                              + ", ".join(f"`{_label(s)}`" for s in drawn)))
    else:
        figure.append(_Para("(Figures need the optional extra `plot`: `pip install "
                            "'varprop[plot]'`.)"))
    sections.append(figure)

    head: list[_Block] = [_Heading(1, title), _Para(
        "*Generated by `varprop derive`; do not edit by hand.  Every prediction is recomputed on "
        f"generation; Monte Carlo at fixed seeds (budget `{b.name}`), numbers rounded to 4 "
        "significant digits." + ("  Index: [README.md](README.md)." if index else "") + "*")]
    anchors = [(blk.anchor, blk.text) for sec in sections for blk in sec
               if isinstance(blk, _Heading) and blk.level == 2 and blk.anchor]
    head.append(_Para("Contents: " + " · ".join(f"[{_short(text)}](#{anchor})"
                                                for anchor, text in anchors)))
    blocks = head + [blk for sec in sections for blk in sec]

    index_rows = []
    for label, d in derivations.items():
        fwd, bwd = records[(label, "preactivation")], records[(label, "gradient")]
        index_rows.append((f"[{name}]({stem}.md)", f"`{label}`", f"${_latex(d.hidden_factor)}$",
                           f"${_latex(d.backward_factor)}$",
                           "not run" if fwd is None else fwd["status"],
                           "not run" if bwd is None else bwd["status"]))
    text = _render_markdown(blocks) if format == "markdown" else _render_latex(blocks, title)
    files.insert(0, GeneratedFile(f"{stem}.md" if format == "markdown" else f"{stem}.tex", text))
    return _ActivationResult(files, index_rows)
