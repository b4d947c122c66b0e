r"""Derivation documents: one per activation, an index, the seeds' claims, figures.

``varprop derive --all`` writes into ``derivations/``:

* ``<activation>.md`` (``relu``, ``linear``, ``tanh``, ``sigmoid``, ``leaky_relu``, ``erf``) covering
  every init scheme of :data:`SCHEMES`: model and assumptions, a summary per scheme, which scheme
  keeps the variance steady and the critical condition, closed forms over depth or the recursion
  and its fixed point, the backward pass, the error of the closed-form approximation against
  quadrature (tanh, sigmoid), a Monte Carlo verification table with verdicts, figures, and the
  step-by-step derivation of every scheme from :func:`varprop.derive`;
* ``README.md``, the index (activation x scheme -> forward factor, backward factor, verdicts);
* ``seed-claims.md`` (:mod:`varprop.documents.seed_claims`);
* ``figures/<activation>.svg`` (matplotlib, optional extra ``plot``);
* ``montecarlo.json``, the record of every Monte Carlo number the documents quote.

Everything is deterministic: fixed seeds, fixed budgets, numbers rounded to 4 significant
digits, sorted iteration, no timestamps, SVG with a fixed hash salt and no date.  The module sits
on top of the library and calls only its public API (``derive``, ``predict_variance`` /
``propagate``, ``simulate``, ``verify``).

Checking that committed documents are current (:func:`check`) has two modes: the full check
re-runs every simulation (minutes); with ``reuse_montecarlo=True`` it re-renders every file from
the committed ``montecarlo.json`` (derivations, predictions, tables, figures: seconds) and re-runs a
sample of the recorded simulations to confirm they still reproduce the record exactly.
"""

from __future__ import annotations

import difflib
import io
import math
import re
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from varprop._util.validation import check_choice, fail
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, init_scheme, resolve_scheme
from varprop.documents import phases as _phases
from varprop.documents.approx_error import (
    COMPOUND_DEPTHS,
    compounded_error,
    moment_error_sentence,
)
from varprop.documents.store import (
    Budget,
    MonteCarloStore,
    fmt,
    mc_per_layer,
    mc_verify,
)
from varprop.documents.store import budget as _budget
from varprop.errors import VarpropError, VarpropWarning
from varprop.theory.predict import predict_variance, propagate

__all__ = ["ACTIVATIONS", "SCHEMES", "VERIFY_WIDTH", "VERIFY_DEPTH", "GeneratedFile", "file_stem",
           "CheckReport", "activation_document", "generate", "write", "check", "compare", "schemes_for",
           "critical_nsw2", "default_output_dir"]

Format = Literal["markdown", "latex"]

#: Activations with a document, in index order.
ACTIVATIONS: tuple[str, ...] = ("linear", "relu", "leaky_relu", "tanh", "erf", "sigmoid")

#: Init schemes every document covers (the seeds' naive ones first).
SCHEMES: tuple[str, ...] = ("standard_normal", "uniform", "lecun_normal", "lecun_uniform",
                            "xavier_normal", "xavier_uniform", "he_normal", "he_uniform",
                            "variance_scaling", "orthogonal", "torch_linear_default")

#: Shape of the Monte Carlo verification (width n_0 = n_1 = ... and depth L).
VERIFY_WIDTH = 64
VERIFY_DEPTH = 5
#: Figures: width and depth of the curves, and the schemes drawn.
FIGURE_WIDTH = 64
FIGURE_DEPTH = 20
FIGURE_SCHEMES: tuple[str, ...] = ("lecun_normal", "xavier_uniform", "he_normal")
#: The "steady" table: width and depth of the prediction.
STEADY_WIDTH = 256
STEADY_DEPTH = 30
#: Variances q at which the approximation error table is evaluated.
ERROR_TABLE_Q: tuple[float, ...] = (0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0, 1e4)

_TITLES = {"linear": "Linear (identity)", "relu": "ReLU", "leaky_relu": "Leaky ReLU",
           "tanh": "tanh", "erf": "erf", "sigmoid": "Sigmoid"}

_MODEL = (
    "A network of depth $L$ maps an input $x = a_0$ (zero-mean entries, second moment "
    "`input_variance` $= q_0$) through $z_l = W_l a_{l-1} + b_l$, $a_l = \\phi(z_l)$, "
    "$l = 1..L$.  Widths $n_0$ = `fan_in`, $n_1..n_L$ = `fan_out` (default: `fan_in`), or an "
    "explicit `widths=[n_0, ..., n_L]`.  Weights are drawn i.i.d. from the init scheme, biases "
    "i.i.d. $N(0, \\sigma_b^2)$ (`bias_variance`).  The backward pass starts from "
    "$\\partial\\mathcal L/\\partial z_L$ with i.i.d. zero-mean unit-variance entries, independent "
    "of the forward pass.")


def default_output_dir() -> Path:
    """The repository's ``derivations/`` folder (next to ``src/``), else ``./derivations``."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "varprop").is_dir():
            return parent / "derivations"
    return Path.cwd() / "derivations"


_SAFE_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def file_stem(act: Activation | str) -> str:
    """The file name (without suffix) of ``act``'s document: its name when that is a safe file
    name (letters, digits, ``_ . -``; not starting with ``.`` or ``-``), else the name with every
    other run of characters replaced by ``_`` plus 8 hex digits of its CRC-32, so that custom
    expressions (``"x/2"``, ``"abs(x-1)/2"``) give distinct, portable names without a path
    separator."""
    name = resolve_activation(act).name
    if _SAFE_STEM.fullmatch(name) and len(name) <= 100:
        return name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-")[:60] or "activation"
    return f"{slug}-{zlib.crc32(name.encode()):08x}"


def schemes_for(act: Activation | str) -> list[InitScheme]:
    """The schemes of ``act``'s document: :data:`SCHEMES`, plus He with the matching negative
    slope for leaky ReLU."""
    a = resolve_activation(act)
    out = [init_scheme(s) for s in SCHEMES]
    slope = a.params.get("negative_slope")
    if slope:
        out.append(init_scheme("he_normal", negative_slope=float(slope)))  # type: ignore[arg-type]
    return out


def _label(scheme: InitScheme) -> str:
    """``he_normal`` or ``he_normal(negative_slope=0.01)``: the name plus non-default params."""
    defaults = init_scheme(scheme.name).params
    extra = {k: v for k, v in scheme.params.items() if defaults.get(k) != v}
    return scheme.name + ("(" + ", ".join(f"{k}={v!r}" for k, v in extra.items()) + ")" if extra else "")


def _key_seed(key: str) -> int:
    return zlib.crc32(key.encode()) % (2**31)


# ----------------------------------------------------------------------------------------------
# a tiny document model rendered to Markdown or LaTeX
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class _Para:
    text: str


@dataclass(frozen=True)
class _Math:
    latex: str


@dataclass(frozen=True)
class _Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class _Figure:
    path: str
    caption: str


@dataclass(frozen=True)
class _Raw:
    markdown: str
    latex: str


_Block = _Heading | _Para | _Math | _Table | _Figure | _Raw

_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}


def _tex_plain(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def _tex_inline(text: str) -> str:
    """Markdown inline text -> LaTeX: keep ``$...$``, ``code`` -> texttt, ``**b**`` -> textbf."""
    out = []
    for part in re.split(r"(\$[^$]+\$|`[^`]+`)", text):
        if part.startswith("$") and part.endswith("$") and len(part) > 1:
            out.append(part)
        elif part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(r"\texttt{" + _tex_plain(part[1:-1]) + "}")
        else:
            plain = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", part)  # links -> their text
            pieces = re.split(r"(\*\*[^*]+\*\*|\*[^*]+\*)", plain)
            out.append("".join(
                r"\textbf{" + _tex_plain(p[2:-2]) + "}" if p.startswith("**") and len(p) > 4
                else r"\emph{" + _tex_plain(p[1:-1]) + "}" if p.startswith("*") and len(p) > 2
                else _tex_plain(p) for p in pieces))
    return "".join(out)


def _md_cell(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def _render_markdown(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            if b.anchor:
                out += [f'<a id="{b.anchor}"></a>', ""]
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, _Para):
            out += [b.text, ""]
        elif isinstance(b, _Math):
            out += ["$$", b.latex, "$$", ""]
        elif isinstance(b, _Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, _Figure):
            out += [f"![{b.caption}]({b.path})", "", f"*{b.caption}*", ""]
        else:
            out += [b.markdown.rstrip("\n"), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _render_latex(blocks: Sequence[_Block], title: str) -> str:
    out = ["\\documentclass{article}", "\\usepackage{amsmath,amssymb,graphicx,longtable}",
           "\\usepackage[margin=2cm]{geometry}", "\\begin{document}",
           f"\\title{{{_tex_plain(title)}}}", "\\date{}", "\\maketitle", ""]
    sections = {1: None, 2: "section", 3: "subsection", 4: "subsubsection", 5: "paragraph"}
    for b in blocks:
        if isinstance(b, _Heading):
            cmd = sections.get(b.level, "paragraph")
            if cmd:
                out += [f"\\{cmd}*{{{_tex_inline(b.text)}}}", ""]
        elif isinstance(b, _Para):
            t = b.text
            if t.startswith("*") and t.endswith("*") and not t.startswith("**") and len(t) > 2:
                out += [r"\emph{" + _tex_inline(t[1:-1]) + "}", ""]
            else:
                out += [_tex_inline(t), ""]
        elif isinstance(b, _Math):
            out += ["\\begin{equation*}", b.latex, "\\end{equation*}", ""]
        elif isinstance(b, _Table):
            out += ["\\begin{longtable}{" + "l" * len(b.header) + "}",
                    " & ".join(_tex_inline(h) for h in b.header) + " \\\\ \\hline"]
            out += [" & ".join(_tex_inline(c) for c in row) + " \\\\" for row in b.rows]
            out += ["\\end{longtable}", ""]
        elif isinstance(b, _Figure):
            out += ["\\begin{figure}[h]", "\\centering",
                    f"\\includegraphics[width=\\textwidth]{{{b.path}}}",
                    f"\\caption{{{_tex_inline(b.caption)}}}", "\\end{figure}", ""]
        else:
            out += [b.latex.rstrip("\n"), ""]
    out.append("\\end{document}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# numbers for the documents
# ----------------------------------------------------------------------------------------------

def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VarpropWarning)
        with np.errstate(all="ignore"):
            return fn()


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
    from varprop.theory.criticality import edge_of_chaos

    p = edge_of_chaos(resolve_activation(act), 0.0)
    return float(p.sigma_w2), (0.0 if math.isnan(p.q_star) else float(p.q_star))


def _nsw2(scheme: InitScheme, width: int) -> float:
    r""":math:`n\sigma_w^2` of a hidden layer of width ``width`` (fan-in = fan-out)."""
    return float(width * scheme.weight_variance(width, width))


def _facts(act: Activation, scheme: InitScheme) -> _phases.PhaseFacts:
    """The computed fixed points, phase and growth of a zero-mean scheme at the steady table's
    width, without bias, from the steady table's input variance 1."""
    return _quiet(lambda: _phases.phase_facts(act, _nsw2(scheme, STEADY_WIDTH), 0.0, 1.0))


def _verify_key(act: Activation, scheme: InitScheme, quantity: str) -> str:
    return f"verify/{act.name}/{_label(scheme)}/{quantity}/n{VERIFY_WIDTH}/L{VERIFY_DEPTH}"


def _curve_key(act: Activation, scheme: InitScheme) -> str:
    return f"curve/{act.name}/{_label(scheme)}/n{FIGURE_WIDTH}/L{FIGURE_DEPTH}"


_VERIFY_QUANTITIES = ("preactivation", "gradient")


def _verify_records(act: Activation, schemes: Sequence[InitScheme], store: MonteCarloStore,
                    b: Budget, tick: Callable[[], None]) -> dict[tuple[str, str], Any]:
    out = {}
    for scheme in schemes:
        for quantity in _VERIFY_QUANTITIES:
            key = _verify_key(act, scheme, quantity)
            out[(_label(scheme), quantity)] = store.get(key, lambda s=scheme, qn=quantity, k=key: _quiet(
                lambda: _safe_verify(act, s, qn, b, k)))
            tick()
    return out


def _safe_verify(act: Activation, scheme: InitScheme, quantity: str, b: Budget, key: str
                 ) -> dict[str, Any]:
    """:func:`mc_verify`, or ``{"status": "error", "message": ...}`` if the checker refuses."""
    try:
        return mc_verify(act, scheme, fan_in=VERIFY_WIDTH, depth=VERIFY_DEPTH, quantity=quantity,
                         replicates=b.replicates, budget=b.verify_budget, seed=_key_seed(key))
    except (VarpropError, ArithmeticError) as exc:  # recorded and shown, never hidden
        text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return {"status": "error", "message": text[:160]}


def _curve_records(act: Activation, store: MonteCarloStore, b: Budget,
                   tick: Callable[[], None]) -> dict[str, Any]:
    out = {}
    for name in FIGURE_SCHEMES:
        scheme = init_scheme(name)
        key = _curve_key(act, scheme)
        out[name] = store.get(key, lambda s=scheme, k=key: _quiet(lambda: mc_per_layer(
            act, s, fan_in=FIGURE_WIDTH, depth=FIGURE_DEPTH,
            statistics=("preactivation_second", "gradient_second"),
            replicates=b.curve_replicates, seed=_key_seed(k))))
        tick()
    return out


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------

_PLOT_MIN, _PLOT_MAX = 1e-200, 1e200  # what a log axis can tick


def _figure(act: Activation, curves: dict[str, Any], kind: Literal["svg", "pdf"] = "svg"
            ) -> str | bytes | None:
    """Variance against depth, forward and backward: predicted lines, Monte Carlo points with 95%
    intervals; SVG text (Markdown documents) or PDF bytes (LaTeX documents), both without dates
    so that regeneration is byte-identical.  ``None`` if matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    style = {"svg.hashsalt": "varprop", "svg.fonttype": "none", "font.size": 9,
             "path.simplify": False}
    layers = np.arange(1, FIGURE_DEPTH + 1)
    with matplotlib.rc_context(style):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for i, name in enumerate(FIGURE_SCHEMES):
            scheme = init_scheme(name)
            color = f"C{i}"
            p = _quiet(lambda: propagate(act, scheme, fan_in=FIGURE_WIDTH, depth=FIGURE_DEPTH))
            rec = curves.get(name)
            for ax, pred, stat in ((axes[0], p.preact_second, "preactivation_second"),
                                   (axes[1], p.grad_second, "gradient_second")):
                # values near or beyond the float range (x**2 at depth) are not drawn:
                # matplotlib's log axis cannot place ticks at or next to inf
                shown = np.where((pred > _PLOT_MIN) & (pred < _PLOT_MAX), pred, np.nan)
                ax.plot(layers, shown, color=color, lw=1.2, label=f"{name} (predicted)")
                if rec is not None:
                    r = rec[stat]
                    mean, lo, hi = (np.asarray(r[k], dtype=float) for k in ("mean", "low", "high"))
                    mean = np.where((lo > -_PLOT_MAX) & (hi < _PLOT_MAX) & (mean > _PLOT_MIN)
                                    & (mean < _PLOT_MAX), mean, np.nan)
                    ax.errorbar(layers + 0.15 * (i - 1), mean, yerr=[mean - lo, hi - mean], fmt="o", ms=3,
                                color=color, capsize=2, lw=0.8,
                                label=f"{name} (Monte Carlo, 95%)")
        axes[0].set_title(f"forward: $E[z_l^2]$, width {FIGURE_WIDTH}")
        axes[1].set_title(f"backward: $E[(\\partial L/\\partial a_{{l-1}})^2]$, width {FIGURE_WIDTH}")
        for ax in axes:
            ax.set_yscale("log")
            ax.set_xlabel("layer $l$")
            ax.grid(True, which="major", lw=0.3)
        axes[0].legend(fontsize=6, loc="best")
        fig.suptitle(f"{_TITLES.get(act.name, act.name)}: variance against depth")
        fig.tight_layout()
        maker = f"varprop with matplotlib {matplotlib.__version__}"
        buf: io.StringIO | io.BytesIO
        if kind == "svg":
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": maker})
        else:
            buf = io.BytesIO()
            fig.savefig(buf, format="pdf", metadata={"CreationDate": None, "Creator": maker})
        plt.close(fig)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# one activation's document
# ----------------------------------------------------------------------------------------------

@dataclass
class GeneratedFile:
    """A file the generator writes (path relative to the output folder)."""

    path: str
    content: str | bytes  # bytes for binary files (PDF figures)


@dataclass
class _ActivationResult:
    files: list[GeneratedFile]
    index_rows: list[tuple[str, ...]] = field(default_factory=list)


def _derive(act: Activation, scheme: InitScheme) -> Any:
    from varprop.theory.symbolic import derive

    return derive(act, scheme)


def _latex(expr: Any) -> str:
    from varprop.theory.symbolic import latex

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


def activation_document(act: Activation | str, schemes: Sequence[InitScheme | str] | None = None,
                        *, store: MonteCarloStore | None = None, budget: str | Budget = "default",
                        format: Format = "markdown", figures: bool = True,
                        progress: Callable[[], None] | None = None) -> list[GeneratedFile]:
    """Build one activation's document (and its figure) for ``schemes`` (default: all).

    Returns the files (``<name>.md`` or ``.tex``, ``figures/<name>.svg``) without writing them.
    """
    return _activation_document(act, schemes, store=store, budget=budget, format=format,
                                figures=figures, progress=progress).files


def _activation_document(act: Activation | str, schemes: Sequence[InitScheme | str] | None, *,
                         store: MonteCarloStore | None, budget: str | Budget, format: Format,
                         figures: bool, progress: Callable[[], None] | None) -> _ActivationResult:
    a = resolve_activation(act)
    format = check_choice("format", format, ("markdown", "latex"))  # type: ignore[assignment]
    b = _budget(budget)
    store = store if store is not None else MonteCarloStore(budget_name=b.name)
    tick = progress or (lambda: None)
    scheme_list = schemes_for(a) if schemes is None else [resolve_scheme(s) for s in schemes]
    if not scheme_list:
        raise fail("schemes", schemes, "at least one init scheme")
    name = a.name
    stem = file_stem(a)
    title = f"{_TITLES.get(name, name)}: variance propagation under every init scheme"
    derivations = {_label(s): _derive(a, s) for s in scheme_list}
    for _ in scheme_list:
        tick()
    blocks: list[_Block] = [_Heading(1, title)]
    blocks.append(_Para(
        "*Generated by `varprop derive` from `src/varprop/documents.py`; do not edit by hand.  "
        f"Every prediction is recomputed on generation; Monte Carlo at fixed seeds (budget "
        f"`{b.name}`), numbers rounded to 4 significant digits.  Index: "
        "[derivations/README.md](README.md).*"))
    blocks.append(_Para("Contents: [model](#model) · [summary](#summary) · "
                        "[steady variance](#steady) · [phases](#phases) · [depth](#depth) · "
                        "[backward](#backward) · "
                        + ("[approximation error](#approximation) · " if _approximated(a) else "")
                        + "[verification](#verification) · [figures](#figures) · "
                        "[derivations](#derivations)"))

    # -- model --------------------------------------------------------------------------------
    blocks.append(_Heading(2, "Model and assumptions", "model"))
    blocks.append(_Para(_MODEL))
    blocks.append(_Math(f"\\phi(x) = {_latex(a.expr)}, \\qquad \\phi'(x) = {_latex(a.derivative)}"))
    rules = a.closed_form
    if rules is not None and rules.exact:
        moments = "The Gaussian moments have exact closed forms (used by `method=\"auto\"`)."
    elif rules is not None:
        moments = (f"The closed form uses the approximation {rules.approximation}; "
                   "`predict_variance(method=\"auto\")` uses exact quadrature instead.  "
                   + moment_error_sentence(a) + "  The [approximation error](#approximation) "
                   "section tables the errors per moment and compounded over depth.")
    else:
        moments = "No closed form: moments by numerical quadrature."
    blocks.append(_Para(
        "Predictions are the infinite-width mean field with the gradient-independence assumption "
        "(pre-activations Gaussian; with a non-zero weight mean the units share the shift "
        "$\\mu_w\\sum_j a_j$: both $D = E z_i^2$ and $C = E z_i z_k$ are tracked, and for a "
        "non-linear activation the moments are conditional on the layer-1 shift and averaged over "
        "it, see the derivation). " + moments + " " +
        ("For zero-mean symmetric i.i.d. weights the second moments of this network are exact at "
         "every finite width." if name in ("linear", "relu", "leaky_relu") else
         "At finite width they are approximations (the random scale of each layer feeds the "
         "non-linearity).")))

    # -- summary ------------------------------------------------------------------------------
    blocks.append(_Heading(2, "Summary: every scheme", "summary"))
    blocks.append(_Para(
        "Per-layer factors of a generic layer with fan-in $n_{in}$ and fan-out $n_{out}$ "
        "(`forward_factor` $= (q_l - \\sigma_b^2)/q_{l-1}$ of a hidden layer, `backward_factor` "
        "$\\chi = n_{out}\\sigma_w^2 E[\\phi'(z)^2]$); for non-homogeneous activations they depend "
        "on $q$.  Non-zero-mean schemes: the factors of the $(D, C)$ moment identities, in the "
        "moments $A_D, A_C$ (and $G_D, G_C$) of the layer below."))
    rows = []
    for label, d in derivations.items():
        s = d.init
        rows.append((f"`{label}`", f"${_latex(s.weight_mean())}$", f"${_latex(s.weight_variance())}$",
                     f"${_latex(d.hidden_factor)}$", f"${_latex(d.backward_factor)}$"))
    blocks.append(_Table(("Scheme", "$\\mu_w$", "$\\sigma_w^2$", "forward factor (hidden layer)",
                          "backward factor $\\chi$"), tuple(rows)))
    blocks.append(_Para("Fixed points, their stability and the phase of each scheme are computed "
                        "numerically in [fixed points and phases](#phases)."))

    # -- steady -------------------------------------------------------------------------------
    blocks.append(_Heading(2, "Which scheme keeps the variance steady", "steady"))
    blocks.append(_Para(_critical_text(a)))
    steady_rows = []
    steady_names = []
    for label, d in derivations.items():
        fwd, bwd = _steady_row(a, d.init)
        ok = _steady(fwd) and _steady(bwd)
        if ok:
            steady_names.append(f"`{label}`")
        steady_rows.append((f"`{label}`", _ratio_text(fwd), _ratio_text(bwd), "yes" if ok else "no"))
    blocks.append(_Para(
        f"Predicted over {STEADY_DEPTH} layers of width {STEADY_WIDTH} (`propagate`, "
        "`method=\"auto\"`): forward $q_{L}/q_1$ and backward $g_1/g_L$ (gradient at the input "
        "over gradient at the last layer's input); *steady* means both stay within a factor 2."))
    blocks.append(_Table(("Scheme", f"forward $q_{{{STEADY_DEPTH}}}/q_1$",
                          f"backward $g_1/g_{{{STEADY_DEPTH}}}$", "steady"), tuple(steady_rows)))
    if steady_names:
        blocks.append(_Para("Steady (within a factor 2 both ways): " + ", ".join(steady_names) + "."))
    else:
        def distance(row: tuple[str, ...]) -> float:
            try:
                return abs(math.log(float(row[1]))) + abs(math.log(float(row[2])))
            except (ValueError, ZeroDivisionError):
                return math.inf
        best = min(steady_rows, key=distance)
        best_scheme = derivations[best[0].strip("`")].init
        if best_scheme.is_zero_mean:
            f = _facts(a, best_scheme)
            why = _phases.phase_sentence(f) + " " + _phases.growth_sentence(f)
        else:
            why = (f"its weights have a non-zero mean (moments conditional on the layer-1 shift); "
                   f"over {STEADY_DEPTH} "
                   f"layers forward $q_L/q_1$ = {best[1]} and backward $g_1/g_L$ = {best[2]}.")
        blocks.append(_Para(
            f"No scheme keeps both passes within a factor 2 over {STEADY_DEPTH} layers; the "
            f"closest is {best[0]} ($n\\sigma_w^2$ = {fmt(_nsw2(best_scheme, STEADY_WIDTH))} at "
            f"width {STEADY_WIDTH}, no bias). {why}"))

    # -- phases -------------------------------------------------------------------------------
    blocks.append(_Heading(2, "Fixed points and phases", "phases"))
    blocks.append(_Para(
        f"Computed for each zero-mean scheme at width {STEADY_WIDTH} (hidden layer, $n\\sigma_w^2$ "
        f"with $n$ = {STEADY_WIDTH}), no bias, from $q_0 = 1$: every fixed point $q^* \\ge 0$ of "
        "$F(q) = n\\sigma_w^2 E[\\phi(z)^2]$ with its slope $F'(q^*)$ (attracting iff $|F'| < 1$), "
        "the limit $q_\\infty$ of the iteration from $q_1$, $\\chi = n\\sigma_w^2 E[\\phi'(z)^2]$ "
        "there, the phase (ordered $\\chi < 1$, critical $= 1$, chaotic $> 1$, unbounded if "
        f"$q_\\infty = \\infty$) and the behaviour over depth (power-law exponents measured over "
        f"{_phases.LAYERS} layers).  Exact moments throughout."))
    phase_rows = []
    for label, d in derivations.items():
        if d.zero_mean:
            phase_rows.append((f"`{label}`",) + _phases.table_cells(_facts(a, d.init)))
        else:
            phase_rows.append((f"`{label}`", "non-zero weight mean: not a map of $q$ alone", "", "", "",
                               "", "", ""))
    blocks.append(_Table(("Scheme", "$n\\sigma_w^2$", "fixed points $q^*$", "$q_\\infty$ from $q_1$",
                          "$\\chi(q_\\infty)$", "phase", "forward", "backward"), tuple(phase_rows)))

    # -- depth --------------------------------------------------------------------------------
    blocks.append(_Heading(2, "Depth: closed form or recursion and fixed point", "depth"))
    blocks.append(_Para("Symbolic, with a bias of variance $\\sigma_b^2$ (the derivations below); "
                        "the numbers without bias are in [fixed points and phases](#phases)."))
    depth_rows = []
    for label, d in derivations.items():
        if d.closed_form_depth is not None:
            what = f"$q_L = {_latex(d.closed_form_depth)}$"
        else:
            what = f"recursion: ${_latex(d.forward_map)}$" if not hasattr(d.forward_map, "shape") \
                else ("recursion on $(D_l, C_l)$ (see the derivation)" if name == "linear" else
                      "recursion conditional on the layer-1 shift (see the derivation)")
        fp = (f"$q^* = {_latex(d.fixed_point)}$" if d.fixed_point is not None else
              "no closed form (numerical: [phases](#phases))" if d.zero_mean else "—")
        st = _stability_cell(d.stability)
        if d.fixed_point is None and d.stability is None and d.homogeneous and d.zero_mean:
            c = d.hidden_factor
            fp = "none"
            st = (f"no fixed point; factor ${_latex(c)}$"
                  + (" (critical)" if not getattr(c, "free_symbols", None) and c == 1 else ""))
        depth_rows.append((f"`{label}`", what, fp, st))
    blocks.append(_Table(("Scheme", "last layer / recursion", "fixed point (with bias)", "stability"),
                         tuple(depth_rows)))

    # -- backward -----------------------------------------------------------------------------
    blocks.append(_Heading(2, "Backward pass", "backward"))
    blocks.append(_Para(
        "$E(\\partial\\mathcal L/\\partial a_{l-1})^2 = n_l\\sigma_w^2\\,E(\\partial\\mathcal L/"
        "\\partial z_l)^2$ (plus $\\mu_w^2$ terms for non-zero-mean weights) and "
        "$E(\\partial\\mathcal L/\\partial z_{l-1})^2 = E[\\phi'(z_{l-1})^2]\\,"
        "E(\\partial\\mathcal L/\\partial a_{l-1})^2$: one factor $\\chi$ per layer."))
    back_rows = []
    for label, d in derivations.items():
        gd = "—" if d.gradient_depth is None else f"${_latex(d.gradient_depth)}$"
        back_rows.append((f"`{label}`", f"${_latex(d.backward_factor)}$", gd))
    blocks.append(_Table(("Scheme", "$\\chi$ per layer", "$E(\\partial\\mathcal L/\\partial x)^2$ "
                          "after $L$ layers"), tuple(back_rows)))

    # -- approximation error ------------------------------------------------------------------
    if _approximated(a):
        blocks.append(_Heading(2, "Approximation error against quadrature", "approximation"))
        blocks.append(_Para(
            f"Closed form ({rules.approximation}) against exact Gauss-Legendre quadrature "  # type: ignore[union-attr]
            "(`Activation.gaussian_moments(0, q, method=...)`), $z \\sim N(0, q)$; relative "
            "error = closed form / quadrature - 1."))
        err_rows = []
        for q in ERROR_TABLE_Q:
            c = a.gaussian_moments(0.0, q, method="closed_form")
            e = a.gaussian_moments(0.0, q, method="quadrature")
            err_rows.append((fmt(q), fmt(c[1]), fmt(e[1]), _rel(c[1], e[1]),
                             fmt(c[3]), fmt(e[3]), _rel(c[3], e[3])))
        blocks.append(_Table(("$q$", "$E\\phi^2$ closed", "$E\\phi^2$ quadrature", "rel. error",
                              "$E\\phi'^2$ closed", "$E\\phi'^2$ quadrature", "rel. error"),
                             tuple(err_rows)))
        blocks.append(_Para(moment_error_sentence(a) + "  The errors of $E\\phi^2$ (forward) and "
                            "$E\\phi'^2$ (backward) enter every layer, so they compound over "
                            "depth: relative error of `predict_variance(..., method=\"closed_form\")` "
                            "against `method=\"exact\"` at width "
                            f"{STEADY_WIDTH}, no bias, for the last layer's pre-activation variance "
                            "and the gradient at the input."))
        comp_rows = []
        for label, d in derivations.items():
            if not d.zero_mean:
                continue
            for quantity in ("preactivation", "gradient"):
                errs = compounded_error(a, d.init, quantity, width=STEADY_WIDTH)
                comp_rows.append((f"`{label}`", quantity) + tuple(_signed_pct(e) for e in errs))
        blocks.append(_Table(("Scheme", "Quantity") + tuple(f"$L$ = {L}" for L in COMPOUND_DEPTHS),
                             tuple(comp_rows)))

    # -- verification -------------------------------------------------------------------------
    records = _verify_records(a, list(derivations[label].init for label in derivations), store, b, tick)
    blocks.append(_Heading(2, "Verification (Monte Carlo)", "verification"))
    blocks.append(_Para(
        f"`verify(...)` at width {VERIFY_WIDTH}, depth {VERIFY_DEPTH}: *preactivation* is "
        f"$\\mathrm{{Var}}\\,z_{VERIFY_DEPTH}$, *gradient* is $E(\\partial\\mathcal L/\\partial x)^2$ "
        "at the network input.  The estimate is the mean over independent networks (replicates) "
        "with the checker's simultaneous interval; verdicts as in [docs/checker.md]"
        "(../docs/checker.md).  Seeds are fixed (a hash of the row's key)."))
    ver_rows = []
    for label, d in derivations.items():
        for quantity in _VERIFY_QUANTITIES:
            rec = records[(label, quantity)]
            predicted = fmt(rec["predicted"]) if rec is not None and "predicted" in rec else fmt(_quiet(
                lambda: predict_variance(a, d.init, fan_in=VERIFY_WIDTH, depth=VERIFY_DEPTH,
                                         quantity=quantity)))
            ver_rows.append((f"`{label}`", str(VERIFY_WIDTH), str(VERIFY_DEPTH), quantity,
                             predicted, _estimate_cell(rec), _verdict_cell(rec)))
    blocks.append(_Table(("Scheme", "Width", "Depth", "Quantity", "Predicted",
                          "Monte Carlo [interval]", "Verdict"), tuple(ver_rows)))
    counts: dict[str, int] = {}
    for (label, quantity), rec in sorted(records.items()):
        status = "not run" if rec is None else rec["status"]
        counts[status] = counts.get(status, 0) + 1
    blocks.append(_Para("Verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                        + "."))

    def labelled(status: str) -> list[str]:
        return sorted({label for (label, _), rec in records.items()
                       if rec is not None and rec["status"] == status})

    refuted, inconclusive = labelled("refuted"), labelled("inconclusive")
    if refuted or inconclusive:
        notes = []  # each row's own reason, as the checker computed it
        for (label, quantity), rec in sorted(records.items()):
            if rec is not None and rec["status"] in ("refuted", "inconclusive"):
                notes.append(f"`{label}` {quantity} ({rec['status']}): "
                             + rec.get("reason", "no reason recorded."))
        heads = [f"{title}: " + ", ".join(f"`{r}`" for r in labels) + "."
                 for title, labels in (("Refuted", refuted), ("Inconclusive", inconclusive))
                 if labels]
        blocks.append(_Para("  ".join(heads + notes)))

    # -- figures ------------------------------------------------------------------------------
    files: list[GeneratedFile] = []
    blocks.append(_Heading(2, "Figures", "figures"))
    curves = _curve_records(a, store, b, tick) if figures else {}
    kind = "svg" if format == "markdown" else "pdf"  # pdflatex's graphicx cannot read SVG
    image = _figure(a, curves, kind) if figures else None
    if image is not None:
        files.append(GeneratedFile(f"figures/{stem}.{kind}", image))
        blocks.append(_Figure(f"figures/{stem}.{kind}",
                              f"{_TITLES.get(name, name)}, width {FIGURE_WIDTH}: predicted "
                              f"$E[z_l^2]$ and $E[(\\partial\\mathcal L/\\partial a_{{l-1}})^2]$ "
                              f"(lines) and Monte Carlo means with 95% intervals (points) for "
                              + ", ".join(FIGURE_SCHEMES)))
    else:
        blocks.append(_Para("(Figures need the optional extra `plot`: `pip install "
                            "'varprop[plot]'`.)"))

    # -- derivations --------------------------------------------------------------------------
    blocks.append(_Heading(2, "Derivations, scheme by scheme", "derivations"))
    blocks.append(_Para("Each derivation is `varprop.derive(activation, scheme)`; its steps are "
                        "statement, equation and justification.  Symbols: "
                        "[docs/symbols.md](../docs/symbols.md)."))
    for label, d in derivations.items():
        blocks.append(_Raw(d.to_markdown(level=3, symbols=False), d.to_latex()))

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


def _critical_text(a: Activation) -> str:
    """The critical condition of ``a`` without bias, with the facts there, all computed
    (:func:`varprop.edge_of_chaos` and :mod:`varprop.documents.phases`)."""
    parts = []
    if _phases._crit._homogeneous(a):
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
    slope0 = _quiet(lambda: _phases._crit._dsecond_dq(a, 0.0))
    phi0 = float(np.asarray(a.function(np.zeros(1)), dtype=float)[0])
    if (phi0 == 0.0 and slope0 > 0.0 and not _phases._crit._homogeneous(a)
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
    import sympy as sp

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


# ----------------------------------------------------------------------------------------------
# the whole folder
# ----------------------------------------------------------------------------------------------

def _index(rows: Iterable[tuple[str, ...]], format: Format, b: Budget) -> GeneratedFile:
    blocks: list[_Block] = [
        _Heading(1, "Derivations"),
        _Para("Generated by `varprop derive --all --out derivations` (do not edit by hand; CI "
              "checks these files are current with `varprop derive --all --check`).  One "
              "document per activation, each covering every init scheme; "
              "[seed-claims.md](seed-claims.md) checks the claims of the texts varprop grew "
              f"from.  Monte Carlo budget: `{b.name}`, fixed seeds; numbers rounded to 4 "
              "significant digits."),
        _Para("Forward factor: $(q_l - \\sigma_b^2)/q_{l-1}$ of a hidden layer; backward factor: "
              "$\\chi = n_{out}\\sigma_w^2 E[\\phi'(z)^2]$ of a layer with fan-in $n_{in}$ and "
              "fan-out $n_{out}$, $\\sigma_w^2$ the scheme's variance at those fans (for a hidden "
              "layer set $n_{in} = n_{out}$; functions of $q$ for tanh, erf, "
              "sigmoid; of the $(D, C)$ moments for non-zero-mean weights).  Verdicts: "
              f"`verify` at width {VERIFY_WIDTH}, depth {VERIFY_DEPTH}, forward (pre-activation "
              "variance at the last layer) and backward (gradient at the input)."),
        _Table(("Activation", "Scheme", "Forward factor", "Backward factor", "Verdict forward",
                "Verdict backward"), tuple(rows)),
        _Para("Documents: " + ", ".join(f"[{a}]({a}.md)" for a in ACTIVATIONS) +
              ".  User documentation: [docs/index.md](../docs/index.md)."),
    ]
    if format == "markdown":
        return GeneratedFile("README.md", _render_markdown(blocks))
    return GeneratedFile("README.tex", _render_latex(blocks, "Derivations"))


@dataclass
class _Progress:
    total: int
    label: str
    enabled: bool
    _bar: Any = None

    def __post_init__(self) -> None:
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=self.total, desc=self.label, unit="step", leave=False)

    def tick(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _steps(activations: Sequence[Activation], all_: bool) -> int:
    n = 0
    for act in activations:
        k = len(schemes_for(act))
        n += k + 2 * k + len(FIGURE_SCHEMES)
    if all_:
        from varprop.documents.seed_claims import CLAIMS

        n += len(CLAIMS)
    return n


def generate(activations: Sequence[str] | None = None, schemes: Sequence[str | InitScheme] | None = None,
             *, budget: str | Budget = "default", format: Format = "markdown",
             store: MonteCarloStore | None = None, progress: bool = False,
             figures: bool = True) -> list[GeneratedFile]:
    """Build the documents in memory.

    ``activations=None`` builds the whole folder (:data:`ACTIVATIONS`, the index, the seeds'
    claims and ``montecarlo.json``); a list builds only those activations' documents (with
    ``schemes``, default all).
    """
    from varprop.documents.seed_claims import assess_claims, seed_claims_markdown

    b = _budget(budget)
    format = check_choice("format", format, ("markdown", "latex"))  # type: ignore[assignment]
    all_ = activations is None
    acts = [resolve_activation(a) for a in (ACTIVATIONS if all_ else activations)]  # type: ignore[union-attr]
    store = store if store is not None else MonteCarloStore(budget_name=b.name)
    bar = _Progress(_steps(acts, all_), "varprop derive", progress)
    files: list[GeneratedFile] = []
    index_rows: list[tuple[str, ...]] = []
    try:
        for act in acts:
            res = _activation_document(act, None if all_ else schemes, store=store, budget=b,
                                       format=format, figures=figures, progress=bar.tick)
            files += res.files
            index_rows += res.index_rows
        if all_:
            files.append(_index(index_rows, format, b))
            assessed = assess_claims(store=store, budget=b, progress=lambda _k: bar.tick())
            files.append(GeneratedFile("seed-claims.md", seed_claims_markdown(assessed, budget_name=b.name)))
            files.append(GeneratedFile("montecarlo.json", store.to_json()))
    finally:
        bar.close()
    return sorted(files, key=lambda f: f.path)


def write(files: Iterable[GeneratedFile], out: str | Path) -> list[Path]:
    """Write ``files`` under ``out`` (creating folders); returns the paths written."""
    root = Path(out)
    written = []
    for f in files:
        path = root / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(f.content, bytes):
            path.write_bytes(f.content)
        else:
            path.write_text(f.content, encoding="utf-8")
        written.append(path)
    return written


@dataclass
class CheckReport:
    """Result of :func:`check`: the files that differ, are missing or are extra."""

    stale: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.stale or self.missing or self.extra)


def check(out: str | Path | None = None, *, budget: str | Budget | None = None,
          reuse_montecarlo: bool = False, spot_check: int = 2, progress: bool = False,
          figures: bool | None = None) -> CheckReport:
    """Compare the committed folder ``out`` with what the code writes now.

    Parameters
    ----------
    out : path, optional
        The folder (default :func:`default_output_dir`).
    budget : {"default", "quick"}, optional
        Budget of the regeneration (default: the one recorded in ``montecarlo.json``).
    reuse_montecarlo : bool
        Re-render from the committed ``montecarlo.json`` (no new simulations except the
        ``spot_check`` sample), so the check takes seconds instead of minutes.  A record the code
        no longer produces, or one it needs and the record lacks, makes the check fail.
    spot_check : int
        With ``reuse_montecarlo``, how many recorded simulations (spread evenly over the sorted
        keys) to re-run and compare with the record.
    figures : bool, optional
        Compare the SVG figures (default: if matplotlib is installed).
    """
    root = Path(out) if out is not None else default_output_dir()
    report = CheckReport()
    record_path = root / "montecarlo.json"
    recorded = record_path.read_text(encoding="utf-8") if record_path.is_file() else None
    if figures is None:
        try:
            import matplotlib  # noqa: F401
            figures = True
        except ImportError:
            figures = False
            report.notes.append("matplotlib not installed: figures not compared")
    if reuse_montecarlo:
        if recorded is None:
            report.missing.append("montecarlo.json")
            return report
        store = MonteCarloStore.from_json(recorded, frozen=True)
        b = _budget(budget or store.budget_name)
    else:
        b = _budget(budget or (MonteCarloStore.from_json(recorded).budget_name if recorded else "default"))
        store = MonteCarloStore(budget_name=b.name)
    files = generate(budget=b, store=store, progress=progress, figures=figures)
    if reuse_montecarlo:
        if store.missing:
            report.notes.append(f"{len(store.missing)} Monte Carlo records missing from "
                                f"montecarlo.json (e.g. {store.missing[0]})")
            report.stale.append("montecarlo.json")
        _spot_check(store, b, spot_check, report)
    compare(root, files, figures=figures, report=report)
    return report


def compare(out: str | Path, files: Iterable[GeneratedFile], *, figures: bool = True,
            report: CheckReport | None = None) -> CheckReport:
    """Compare generated ``files`` with the folder ``out`` (stale, missing, extra files)."""
    root = Path(out)
    report = report if report is not None else CheckReport()
    expected = {f.path: f.content for f in files}
    if not figures:
        expected = {p: c for p, c in expected.items() if not p.startswith("figures/")}
    for path, content in sorted(expected.items()):
        target = root / path
        if not target.is_file():
            report.missing.append(path)
            continue
        if isinstance(content, bytes):
            if target.read_bytes() != content:
                report.stale.append(path)
            continue
        current = target.read_text(encoding="utf-8")
        if path.startswith("figures/") and _svg_maker(current) != _svg_maker(content):
            report.notes.append(f"{path}: made with {_svg_maker(current)}, this machine has "
                                f"{_svg_maker(content)}: not compared (its numbers are in "
                                "montecarlo.json, which is)")
            continue
        if current != content:
            if path not in report.stale:
                report.stale.append(path)
            report.diffs[path] = "".join(difflib.unified_diff(
                current.splitlines(keepends=True), content.splitlines(keepends=True),
                fromfile=f"committed/{path}", tofile=f"generated/{path}", n=1))[:4000]
    for path in _listing(root):
        if path not in expected and not (not figures and path.startswith("figures/")):
            report.extra.append(path)
    return report


def _svg_maker(svg: str) -> str:
    """The matplotlib version recorded in a figure's metadata (SVG output differs between
    matplotlib versions, so figures are compared byte for byte only within one version)."""
    match = re.search(r"matplotlib (\d[\w.+-]*)", svg)
    return f"matplotlib {match.group(1)}" if match else "an unknown matplotlib"


def _listing(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and p.suffix in (".md", ".svg", ".json", ".tex"))


def _spot_check(store: MonteCarloStore, b: Budget, k: int, report: CheckReport) -> None:
    """Re-run ``k`` recorded verifications (the cheapest, of different activations) and compare
    them with the record."""
    # the cheapest recorded verifications (fewest replicates), one per activation, in key order
    keys = sorted((rec.get("replicates", 0), key) for key, rec in store.records.items()
                  if key.startswith("verify/") and rec.get("status") != "error")
    chosen: list[str] = []
    for _, key in keys:
        if len(chosen) >= k:
            break
        if key.split("/")[1] not in {c.split("/")[1] for c in chosen}:
            chosen.append(key)
    fresh = MonteCarloStore(budget_name=b.name)
    for key in chosen:
        _, act_name, label, quantity, _, _ = key.split("/")
        act = resolve_activation(act_name)
        scheme = next(s for s in schemes_for(act) if _label(s) == label)
        value = fresh.get(key, lambda: _quiet(lambda: _safe_verify(act, scheme, quantity, b, key)))
        if value != store.records[key]:
            report.stale.append("montecarlo.json")
            report.notes.append(f"re-running {key} gives {value}, the record has {store.records[key]}")
            return
        report.notes.append(f"re-ran {key}: matches the record")
