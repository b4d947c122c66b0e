r"""The worked-architectures page (``derivations/architectures.md``): for each architecture of
:mod:`varprop.documents.arch_cases`, a computed paragraph, a depth figure (predicted lines,
Monte Carlo points with 95% intervals, log scale) and Monte Carlo verdicts of the output's second
moment at the last layer position and of the gradient's at the first.

Every number in the prose is a prediction (:func:`varprop.predict_variance`, ``per_layer=True``)
computed when the page is generated; every verdict is :func:`varprop.verify` at a fixed seed,
recorded in the shared Monte Carlo store.  An architecture whose layers the installed version
lacks is listed with the reason instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from varprop.documents import netrows
from varprop.documents.arch_cases import (
    ARCHITECTURES,
    WIDTH,
    Architecture,
    Variant,
    VariantResult,
)
from varprop.documents.blocks import (
    _Block,
    _Figure,
    _Heading,
    _Para,
    _render_latex,
    _render_markdown,
    _Table,
)
from varprop.documents.common import Format, GeneratedFile
from varprop.documents.netfigure import Panel, Series, depth_figure
from varprop.documents.store import Budget, MonteCarloStore, fmt
from varprop.network import layers as layer_module
from varprop.network.model import Network
from varprop.theory.fields import predict_fields

__all__ = ["architectures_page", "architecture_results", "ArchitectureResult", "PAGE",
           "architecture_steps"]

#: The page's path in the derivations folder.
PAGE = "architectures.md"


@dataclass(frozen=True)
class ArchitectureResult:
    """One architecture as computed: per variant its predictions, Monte Carlo curves and the two
    verdict records ``(forward, backward)``."""

    arch: Architecture
    results: tuple[VariantResult, ...]
    curves: tuple[tuple[dict[str, Any] | None, ...], ...]
    verdicts: tuple[tuple[Any, Any], ...]
    positions: tuple[tuple[int, int], ...]
    #: Recurrent architectures: per variant, the gradient at each input step of the longest
    #: sequence (predicted by ``predict_fields``, Monte Carlo per position).
    through_time: tuple[Series, ...] = ()


def _key(arch: Architecture, v: Variant, what: str) -> str:
    return f"architectures/{arch.key}/{v.key}/{what}/n{WIDTH}"


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]


def _variant(arch: Architecture, v: Variant, store: MonteCarloStore, b: Budget,
             module: ModuleType) -> tuple[VariantResult, tuple[dict[str, Any] | None, ...],
                                          tuple[Any, Any], tuple[int, int]]:
    xs = arch.steps or (None,)
    try:
        nets: list[Network] = [v.build(module, t) for t in xs]
    except (TypeError, ValueError, AttributeError) as exc:
        empty = np.array([])
        return VariantResult(v, (), empty, empty, _error(exc)), (), (None, None), (0, 0)
    fwd, bwd, curves = [], [], []
    for t, net in zip(xs, nets):
        f, g, why = netrows.predictions(net)
        if f is None or g is None:
            empty = np.array([])
            return VariantResult(v, (), empty, empty, why), (), (None, None), (0, 0)
        suffix = "curve" if t is None else f"curve/T{t}"
        curves.append(netrows.curve_record(store, _key(arch, v, suffix), net, b))
        if t is None:
            fwd, bwd = list(f), list(g)
        else:
            fwd.append(float(f[-1]))
            bwd.append(float(g[0]))
    last = nets[-1]
    x = tuple(range(1, last.depth + 1)) if arch.steps is None else tuple(arch.steps)
    forward = netrows.verdict_record(store, _key(arch, v, f"output/p{last.depth}"), last,
                                     "output", last.depth, b)
    backward = netrows.verdict_record(store, _key(arch, v, "output_gradient/p1"), last,
                                      "output_gradient", 1, b)
    result = VariantResult(v, x, np.asarray(fwd, dtype=float), np.asarray(bwd, dtype=float))
    return result, tuple(curves), (forward, backward), (last.depth, 1)


def _through_time(arch: Architecture, results: tuple[VariantResult, ...], store: MonteCarloStore,
                  b: Budget, module: ModuleType) -> tuple[Series, ...]:
    """Per variant of a recurrent architecture, :math:`E(\\partial L/\\partial x_t)^2` at every
    input step of the longest sequence: ``predict_fields`` and ``simulate(...).per_position``."""
    if not arch.steps:
        return ()
    T = arch.steps[-1]
    out = []
    for r in results:
        if r.error:
            continue
        net = r.variant.build(module, T)
        pred = np.asarray(predict_fields(net).backward[0].second, dtype=float).ravel()
        rec = netrows.positions_record(store, _key(arch, r.variant, f"steps/T{T}"), net, 1,
                                       "output_gradient_second", b)
        mean, low, high = ((tuple(_nan(x) for x in rec[k]) for k in ("mean", "low", "high"))
                           if rec and "mean" in rec else ((math.nan,) * T,) * 3)
        out.append(Series(r.variant.label, tuple(float(t) for t in range(1, T + 1)),
                          tuple(map(float, pred)), tuple(mean), tuple(low), tuple(high)))
    return tuple(out)


def architecture_results(store: MonteCarloStore, b: Budget, module: ModuleType = layer_module,
                         tick: Callable[[], None] = lambda: None) -> list[ArchitectureResult]:
    """Every architecture, computed (predictions, curves, verdicts)."""
    out = []
    for arch in ARCHITECTURES:
        parts = [_variant(arch, v, store, b, module) for v in arch.variants]
        results = tuple(p[0] for p in parts)
        tick()
        out.append(ArchitectureResult(arch, results, tuple(p[1] for p in parts),
                                      tuple(p[2] for p in parts), tuple(p[3] for p in parts),
                                      _through_time(arch, results, store, b, module)))
    return out


def architecture_steps() -> int:
    """How many progress ticks :func:`architectures_page` makes."""
    return len(ARCHITECTURES)


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


def _series(res: ArchitectureResult, which: str) -> tuple[Series, ...]:
    stat = "output_second" if which == "forward" else "output_gradient_second"
    out = []
    for r, curves in zip(res.results, res.curves):
        if r.error:
            continue
        pred = r.forward if which == "forward" else r.backward
        if res.arch.steps is None:
            rec = (curves[0] or {}).get(stat) if curves else None
            mean, low, high = ((tuple(_nan(x) for x in rec[k]) for k in ("mean", "low", "high"))
                               if rec else ((math.nan,) * len(pred),) * 3)
        else:
            idx = -1 if which == "forward" else 0
            cols = [((c or {}).get(stat) or {}) for c in curves]
            mean, low, high = (tuple(_nan(c[k][idx]) if c else math.nan for c in cols)
                               for k in ("mean", "low", "high"))
        out.append(Series(r.variant.label, tuple(float(x) for x in r.x), tuple(map(float, pred)),
                          tuple(mean), tuple(low), tuple(high)))
    return tuple(out)


def _figure(res: ArchitectureResult, kind: str) -> str | bytes | None:
    xlabel = "time steps $T$" if res.arch.steps else "layer position $k$"
    fwd_title = "forward: $E h_T^2$" if res.arch.steps else "forward: $E y_k^2$"
    bwd_title = ("backward: $E(\\partial L/\\partial x)^2$, mean over steps" if res.arch.steps
                 else "backward: $E(\\partial L/\\partial y_k)^2$")
    panels: tuple[Panel, ...] = (Panel(fwd_title, xlabel, _series(res, "forward")),
                                 Panel(bwd_title, xlabel, _series(res, "backward")))
    if res.through_time:
        T = res.arch.steps[-1] if res.arch.steps else 0
        panels += (Panel(f"through time, $T$ = {T}: $E(\\partial L/\\partial x_t)^2$",
                         "input step $t$", res.through_time),)
    if not panels[0].series:
        return None
    return depth_figure(res.arch.title.replace("$1/\\sqrt{L}$", "1/sqrt(L)"), panels,
                        "svg" if kind == "svg" else "pdf")


def _time_text(res: ArchitectureResult) -> str:
    """The computed sentence of the through-time panel (predictions of ``predict_fields``)."""
    T = len(res.through_time[0].x)
    parts = [f"Back-propagation through time over $T$ = {T} steps (third panel): "]
    for s in res.through_time:
        first, last = s.predicted[0], s.predicted[-1]
        ratio = f" (ratio {fmt(first / last)})" if last > 0 else ""
        parts.append(f"{s.label}: $E(\\partial\\mathcal L/\\partial x_1)^2$ = {fmt(first)} at "
                     f"the first input step, {fmt(last)} at the last{ratio}.  ")
    return "".join(parts).rstrip()


def _rows(res: ArchitectureResult) -> list[tuple[str, ...]]:
    rows = []
    for r, (fwd, bwd), (p_out, p_in) in zip(res.results, res.verdicts, res.positions):
        if r.error:
            rows.append((r.variant.label, "—", f"not predicted: {r.error}", "n/a", "n/a",
                         "not run"))
            continue
        back = r.backward[-1] if res.arch.steps else r.backward[0]
        for what, rec, pos, pred in (("output", fwd, p_out, r.forward[-1]),
                                     ("output_gradient", bwd, p_in, back)):
            claim = netrows.QUANTITY_TEXT[what].replace("_k", f"_{{{pos}}}") + f" = {fmt(pred)}"
            if res.arch.steps:
                claim += f" ($T$ = {r.x[-1]})"
            rows.append((r.variant.label, f"{pos}", claim, netrows.exact_cell(rec),
                         netrows.estimate_cell(rec), netrows.verdict_cell(rec)))
    return rows


def architectures_page(store: MonteCarloStore, b: Budget, format: Format = "markdown",
                       figures: bool = True, tick: Callable[[], None] = lambda: None,
                       module: ModuleType = layer_module) -> list[GeneratedFile]:
    """The page and its figures (``figures/architectures-<key>.svg`` or ``.pdf``)."""
    results = architecture_results(store, b, module, tick)
    kind = "svg" if format == "markdown" else "pdf"
    blocks: list[_Block] = [
        _Heading(1, "Worked architectures"),
        _Para("*Generated by `varprop derive` from `src/varprop/documents/`; do not edit by hand.  "
              f"Predictions recomputed on generation; Monte Carlo at fixed seeds (budget "
              f"`{b.name}`), numbers rounded to 4 significant digits.  Index: "
              "[README.md](README.md); layer documents: [layers/](layers/); user guide: "
              "`docs/architectures.md` of the repository.*"),
        _Para("Each architecture is a `Network`; its second moments are predicted layer by layer "
              "(`predict_variance(net, quantity=\"output\" or \"output_gradient\", "
              "per_layer=True)`: the output $y_k$ of layer position $k$ and the loss gradient "
              "with respect to it, from i.i.d. unit-variance gradients at the network output) "
              "and checked by `verify(net, quantity=..., layer=k)` at the last position (forward) "
              "and the first (backward); *claimed to hold at* says whether the checker holds the "
              "prediction to every finite width (tolerance 0) or allows for finite width.  Figure "
              "points: `simulate(net)`, mean over "
              f"{netrows.CURVE_REPLICATES.get(b.name, 32)} independent networks with a 95% "
              "interval."),
    ]
    files: list[GeneratedFile] = []
    for res in results:
        blocks += [_Heading(2, res.arch.title, anchor=res.arch.key), _Para(res.arch.description)]
        facts = res.arch.facts(res.results)
        if facts:
            blocks.append(_Para("Predicted by the infinite-width mean field (the table below "
                                "says, claim by claim, whether it holds at this finite width): "
                                + facts))
        if res.through_time:
            blocks.append(_Para(_time_text(res)))
        if figures:
            fig = _figure(res, kind)
            if fig is not None:
                path = f"figures/architectures-{res.arch.key}.{kind}"
                files.append(GeneratedFile(path, fig))
                blocks.append(_Figure(path, f"{res.arch.title}: predicted (lines) and Monte Carlo "
                                            "(points, 95%) second moments"))
        blocks.append(_Table(("Variant", "Layer position $k$", "Claim (predicted)",
                              "Claimed to hold at", "Monte Carlo [interval]", "Verdict"),
                             tuple(_rows(res))))
    if format == "markdown":
        files.append(GeneratedFile(PAGE, _render_markdown(blocks)))
    else:
        files.append(GeneratedFile("architectures.tex", _render_latex(blocks, "Worked architectures")))
    return files
