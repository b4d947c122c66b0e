r"""One derivation document per layer type (``derivations/layers/<kind>.md``): what the layer
computes, its mean-field rules forward and backward (the layer's own SymPy steps,
``layer.field_steps()``), its assumptions and where the rule is exact, its source, and a verdict
table: each row a configuration (:mod:`varprop.documents.layer_cases`), the claim computed for it
(:func:`varprop.predict_variance`, with a hand-derived closed form where one exists) and the
checker's verdict (:func:`varprop.verify`, seeded, recorded in the shared Monte Carlo store).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from varprop.documents import netrows
from varprop.documents.blocks import (
    _Block,
    _Heading,
    _Math,
    _Para,
    _render_latex,
    _render_markdown,
    _Table,
)
from varprop.documents.common import Format, GeneratedFile
from varprop.documents.layer_cases import WIDTH, Case, LayerTopic, available_topics
from varprop.documents.positions import (
    POSITION_REPLICATES,
    position_record,
    predicted_positions,
    taps_in_bounds,
)
from varprop.documents.store import Budget, MonteCarloStore, fmt
from varprop.network import layers as layer_module
from varprop.network.layers.base import Layer
from varprop.network.model import Network
from varprop.theory.symbolic import latex

__all__ = ["layer_documents", "LayerRow", "layer_rows", "layer_steps"]


@dataclass(frozen=True)
class LayerRow:
    """One computed verdict row (kept for the tests: every number printed comes from here)."""

    case: Case
    position: int
    predicted: float
    closed: float | None
    record: Any
    error: str


def _walk(layers: Any) -> Iterator[Layer]:
    for layer in layers:
        yield layer
        for attr in ("branch", "shortcut"):
            inner = getattr(layer, attr, None)
            if isinstance(inner, (tuple, list)):
                yield from _walk(inner)


def layer_steps(cls: type, nets: list[Network]) -> list[tuple[str, Any]]:
    """``field_steps()`` of the first layer of type ``cls`` in ``nets`` (branches included)."""
    for net in nets:
        for layer in _walk(net.layers):
            if type(layer) is cls:
                return list(layer.field_steps())
    return []


def _key(kind: str, case: Case, position: int) -> str:
    return f"layers/{kind}/{case.key}/{case.quantity}/p{position}/n{WIDTH}"


def layer_rows(topic: LayerTopic, kind: str, store: MonteCarloStore, b: Budget,
               module: ModuleType = layer_module,
               tick: Callable[[], None] = lambda: None) -> tuple[list[LayerRow], dict[str, Network]]:
    """The verdict rows of ``topic`` (``kind`` names the records) and the networks built, by
    case key."""
    rows: list[LayerRow] = []
    nets: dict[str, Network] = {}
    for case in topic.cases:
        try:
            net = case.build(module)
        except (TypeError, ValueError, AttributeError) as exc:  # an older signature: say so
            rows.append(LayerRow(case, 0, math.nan, None, None,
                                 f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]))
            tick()
            continue
        nets[case.key] = net
        pos = case.position(net)
        forward, backward, why = netrows.predictions(net)
        values = backward if case.quantity == "output_gradient" else forward
        predicted = netrows.at(values, pos)
        closed = case.closed_form() if case.closed_form is not None else None
        record = (netrows.verdict_record(store, _key(kind, case, pos), net, case.quantity, pos, b)
                  if values is not None else None)
        rows.append(LayerRow(case, pos, predicted, closed, record, why if values is None else ""))
        tick()
    return rows, nets


def _claim(row: LayerRow) -> str:
    what = netrows.QUANTITY_TEXT[row.case.quantity].replace("_k", f"_{{{row.position}}}")
    if row.error:
        return f"not predicted: {row.error}"
    text = f"{what} = {fmt(row.predicted)}"
    if row.closed is not None:
        text += f"; closed form {row.case.closed_text} = {fmt(row.closed)}"
    return text


def _table(rows: list[LayerRow]) -> _Table:
    body = []
    for r in rows:
        body.append((r.case.label, f"{r.position}", _claim(r), netrows.exact_cell(r.record),
                     netrows.estimate_cell(r.record) if r.record is not None else "n/a",
                     netrows.verdict_cell(r.record) if r.record is not None else "not run"))
    return _Table(("Configuration", "Layer position $k$", "Claim (predicted)", "Claimed to hold at",
                   "Monte Carlo [interval]", "Verdict"), tuple(body))


def _position_blocks(kind: str, rows: list[LayerRow], nets: dict[str, Network],
                     store: MonteCarloStore, b: Budget) -> list[_Block]:
    """Per-position tables of the cases that ask for one (see :mod:`~varprop.documents.positions`)."""
    out: list[_Block] = []
    for r in rows:
        net = nets.get(r.case.key)
        if r.case.positions is None or net is None or r.error:
            continue
        padding, kernel, length = r.case.positions
        layer, shape, q = net.layers[-1], tuple(net.input_shape), float(net.input_variance)
        try:
            pred = predicted_positions(layer, shape, q)
        except (ValueError, NotImplementedError, ArithmeticError) as exc:
            out.append(_Para(f"{r.case.label}: no per-position prediction ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:160]})."))
            continue
        taps = taps_in_bounds(length, kernel, padding)
        rec = position_record(store, f"layers/{kind}/{r.case.key}/positions/n{WIDTH}", layer,
                              shape, q, b.name)
        body = []
        for t, (p, k) in enumerate(zip(pred, taps)):
            mc = ("n/a" if rec is None else
                  f"{fmt(rec['mean'][t])} [{fmt(rec['low'][t])}, {fmt(rec['high'][t])}]")
            body.append((f"{t}", f"{k} of {kernel}", fmt(q * k / kernel), fmt(p), mc))
        out += [_Para(f"**{r.case.label}**, position by position (input $E x^2$ = {fmt(q)}):"),
                _Table(("Position $t$", "Taps in the input", "Hand count $q\\,k_t/k$",
                        "Predicted $E y_t^2$", "Monte Carlo [95%]"), tuple(body))]
    if out:
        reps = POSITION_REPLICATES.get(b.name, 200)
        out.insert(0, _Para("Predicted: the layer's field rule on the input field; hand count: "
                            "the taps that read the input, not the zero padding; Monte Carlo: "
                            f"{reps} replicates of the layer's own sampling, mean of the "
                            "per-position channel average of $y^2$ with a 95% normal interval "
                            "(the checker's verdicts are on the position averages, above)."))
        out.insert(0, _Heading(2, "Per position"))
    return out


def _tally(rows: list[LayerRow]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        status = r.record["status"] if r.record is not None else "not run"
        counts[status] = counts.get(status, 0) + 1
    return "Verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + "."


def _document(topic: LayerTopic, cls: type, store: MonteCarloStore, b: Budget, format: Format,
              tick: Callable[[], None], module: ModuleType) -> tuple[GeneratedFile, str]:
    kind = str(getattr(cls, "kind", topic.classes[0].lower()))
    rows, nets = layer_rows(topic, kind, store, b, module, tick)
    steps = layer_steps(cls, list(nets.values()))
    blocks: list[_Block] = [
        _Heading(1, f"{topic.title}: `{topic.classes[0]}`"),
        _Para(f"*Generated by `varprop derive` from `src/varprop/documents/`; do not edit by hand. "
              f" Predictions recomputed on generation; Monte Carlo at fixed seeds (budget "
              f"`{b.name}`), numbers rounded to 4 significant digits.  Index: "
              "[README.md](../README.md).*"),
        _Heading(2, "What it computes"), _Para(topic.computes),
        _Heading(2, "Assumptions and where the rule is exact"), _Para(topic.assumptions),
        _Para("Every weight layer has zero-mean i.i.d. weights (the general engine's assumption); "
              "backward passes start from i.i.d. unit-variance gradients at the network output, "
              "independent of the forward pass (gradient independence)."),
        _Heading(2, "Mean-field rules, forward and backward"),
    ]
    if steps:
        blocks.append(_Para(f"The steps `{topic.classes[0]}.field_steps()` returns (SymPy), "
                            "in order:"))
        for i, (sentence, eq) in enumerate(steps, 1):
            blocks += [_Para(f"**Step {i}.** {sentence}"), _Math(latex(eq))]
    else:
        blocks.append(_Para(f"`{topic.classes[0]}.field_steps()` returns no steps in this "
                            "version."))
    blocks += [
        _Heading(2, "Verification (Monte Carlo)"),
        _Para("Each row is a small network (width "
              f"{WIDTH} where the layer has units) and a claim about one layer position $k$ "
              "(`net.layers` order): the second moment of its output $y_k$, or of the loss "
              "gradient with respect to it.  *Predicted* is `predict_variance(net, quantity=..., "
              "per_layer=True)`; a *closed form* is a hand derivation independent of the engine; "
              "*claimed to hold at*: every finite width (the checker's tolerance is 0) or only "
              "as the width grows (the checker's allowance for the layers on the path).  "
              "The verdict is `verify(net, quantity=..., layer=k)` with the checker's plan and "
              "simultaneous interval (`docs/checker.md` of the repository); seeds are a hash "
              "of the row's key."),
        _table(rows), _Para(_tally(rows)),
        *_position_blocks(kind, rows, nets, store, b),
        _Heading(2, "Source"), _Para(topic.source),
    ]
    stem = f"layers/{kind}"
    if format == "markdown":
        return GeneratedFile(f"{stem}.md", _render_markdown(blocks)), kind
    return GeneratedFile(f"{stem}.tex", _render_latex(blocks, topic.title)), kind


def layer_documents(store: MonteCarloStore, b: Budget, format: Format = "markdown",
                    tick: Callable[[], None] = lambda: None,
                    module: ModuleType = layer_module) -> list[tuple[GeneratedFile, str, str]]:
    """``(file, kind, title)`` of every layer type the installed version has."""
    out = []
    for topic, cls in available_topics(module):
        file, kind = _document(topic, cls, store, b, format, tick, module)
        out.append((file, kind, topic.title))
    return out


def layer_steps_count(module: ModuleType = layer_module) -> int:
    """How many verdict rows (progress ticks) :func:`layer_documents` makes."""
    return sum(len(topic.cases) for topic, _ in available_topics(module))
