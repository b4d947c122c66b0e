r"""The result of :func:`varprop.torch.audit`: :class:`AuditReport`, one :class:`AuditRow` per site.

A row holds, for the forward pass and (when run) the backward pass, a :class:`PassResult`: the
predicted second moment of the site's output (of the loss gradient with respect to it, backward),
the measured one (the mean over the replicate networks of the mean square over all entries), the
simultaneous interval for the ensemble mean, and the verdict of varprop's checker (``status``:
``confirmed``, ``refuted``, ``inconclusive``; ``measured`` for a site whose moments were measured
and passed through instead of predicted; ``no prediction`` where the mapped network has none;
``not run`` for the backward pass with ``backward=False``).

The flat attributes ``row.predicted``, ``row.measured``, ``row.interval``, ``row.status`` (and
``row.reason``) are those of the forward pass; ``row.forward`` / ``row.backward`` hold both.
:meth:`AuditReport.to_json` is strict JSON (no ``NaN``) and :meth:`AuditReport.from_json` reads
it back into an equal report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from varprop._util.figures import save_figure
from varprop._util.validation import fail, fail_type
from varprop.errors import VarpropError

__all__ = ["AuditReport", "AuditRow", "PassResult", "STATUSES"]

#: The statuses a pass of a row can have.
STATUSES = ("confirmed", "refuted", "inconclusive", "measured", "no prediction", "not measured",
            "not run")
#: matplotlib settings of the figure (a fixed SVG hash salt: the same report, the same file)
_STYLE = {"svg.hashsalt": "varprop", "svg.fonttype": "none", "font.size": 9,
          "path.simplify": False}
_MARK = {"confirmed": "confirmed", "refuted": "**REFUTED**", "inconclusive": "inconclusive",
         "measured": "measured", "no prediction": "-", "not measured": "not measured", "not run": "-"}


@dataclass(frozen=True)
class PassResult:
    """One pass (forward or backward) of one site.

    Attributes
    ----------
    predicted : float or None
        The predicted second moment (``None``: no prediction).
    measured : float or None
        The mean over replicates of the per-network mean square (``None``: not run).
    interval : (float, float) or None
        Simultaneous interval for the ensemble mean (Bonferroni over the report's verdicts).
    status : str
        One of :data:`STATUSES`.
    reason : str
        Why (the checker's reason, or what was measured).
    tol : float or None
        The prediction's declared allowance on the relative error (``None`` without a verdict).
    """

    predicted: float | None
    measured: float | None
    interval: tuple[float, float] | None
    status: str
    reason: str = ""
    tol: float | None = None

    @property
    def ratio(self) -> float | None:
        """measured / predicted (``None`` when either is missing or the prediction is 0)."""
        if self.predicted is None or self.measured is None or self.predicted == 0:
            return None
        return self.measured / self.predicted


@dataclass(frozen=True)
class AuditRow:
    """One site of the model: a module's output (qualified name) or a residual sum
    (``"<block>.add"``).

    ``forward``/``backward`` are :class:`PassResult`; ``predicted``, ``measured``, ``interval``,
    ``status`` and ``reason`` are the forward pass's."""

    name: str
    kind: str
    shape: tuple[int, ...]
    forward: PassResult
    backward: PassResult
    note: str = ""

    @property
    def predicted(self) -> float | None:
        return self.forward.predicted

    @property
    def measured(self) -> float | None:
        return self.forward.measured

    @property
    def interval(self) -> tuple[float, float] | None:
        return self.forward.interval

    @property
    def status(self) -> str:
        return self.forward.status

    @property
    def reason(self) -> str:
        return self.forward.reason


@dataclass(frozen=True)
class AuditReport:
    """Per-site predictions, measurements and verdicts of one audit.

    Attributes
    ----------
    rows : tuple of AuditRow
        In the order the model computes them.
    warnings : tuple of str
        Signal or gradient changing by more than 10x, an init law that differs from what the
        replicates draw, modules that are not re-initialised, ...
    model : str
        The model's class name.
    input_shape : tuple of int
    replicates, seed : int
    alpha : float
        Family-wise error level: the probability that any verdict of the report is a false
        refutation is at most ``alpha`` (Bonferroni over the ``tests`` verdicts).
    rtol : float
        Confirmation margin.
    tests : int
        The number of verdicts ``alpha`` is split over.
    reinit : str
        How the replicates were re-initialised.
    timings : dict
        Seconds spent (``"replicates"``, ``"trace"``, ``"predict"``, ``"verdicts"``, ``"total"``).
    """

    rows: tuple[AuditRow, ...]
    warnings: tuple[str, ...]
    model: str
    input_shape: tuple[int, ...]
    replicates: int
    seed: int
    alpha: float
    rtol: float
    tests: int
    reinit: str
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def refuted(self) -> tuple[AuditRow, ...]:
        """The rows refuted in either pass."""
        return tuple(r for r in self.rows if "refuted" in (r.forward.status, r.backward.status))

    def counts(self) -> dict[str, int]:
        """How many passes have each status."""
        out = {s: 0 for s in STATUSES}
        for r in self.rows:
            out[r.forward.status] += 1
            out[r.backward.status] += 1
        return out

    # ------------------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """A GitHub table: site, kind, shape, then predicted / measured [interval] / verdict for
        the forward and the backward pass; warnings below."""
        level = f"{100 * (1 - self.alpha):g}%"
        head = (f"Audit of `{self.model}` on input {tuple(self.input_shape)}: {self.replicates} "
                f"re-initialisations ({self.reinit}), seed {self.seed}; intervals are "
                f"simultaneous {level} intervals for the ensemble mean (Bonferroni over "
                f"{self.tests} verdicts), confirmation margin +-{100 * self.rtol:g}%.")
        lines = [head, "",
                 "| # | site | kind | shape | forward predicted | forward measured [interval] "
                 "| forward | backward predicted | backward measured [interval] | backward |",
                 "|---:|---|---|---|---:|---:|---|---:|---:|---|"]
        for i, r in enumerate(self.rows, 1):
            cells = [str(i), f"`{r.name}`", r.kind, "x".join(map(str, r.shape))]
            for p in (r.forward, r.backward):
                cells += [_num(p.predicted), _measured(p), _verdict(p, self.rtol)]
            lines.append("| " + " | ".join(cells) + " |")
        counts = {k: v for k, v in self.counts().items() if v}
        lines += ["", "Verdicts: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + "."]
        if self.warnings:
            lines += ["", "Warnings:", ""] + [f"- {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON dictionary (no ``NaN``: missing values are ``null``)."""
        out = asdict(self)
        out["format"] = "varprop.audit/1"
        return _strict(out)

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string (``allow_nan=False``)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> AuditReport:
        """The report :meth:`to_json` wrote (equal to the original); text that is not such a
        report (not JSON, or JSON without the report's fields) raises
        :class:`~varprop.errors.VarpropError`."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise fail_type("text", text, "a str holding the JSON that AuditReport.to_json wrote")
        try:
            data = json.loads(text)
        except ValueError as exc:  # json.JSONDecodeError, or bytes that are not UTF-8
            raise VarpropError(f"not an audit report: the text is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != "varprop.audit/1":
            raise VarpropError("not an audit report written by AuditReport.to_json "
                               "(format 'varprop.audit/1' missing)")
        try:
            rows = tuple(AuditRow(r["name"], r["kind"], tuple(r["shape"]), _pass(r["forward"]),
                                  _pass(r["backward"]), r.get("note", "")) for r in data["rows"])
            return cls(rows, tuple(data["warnings"]), data["model"], tuple(data["input_shape"]),
                       data["replicates"], data["seed"], data["alpha"], data["rtol"],
                       data["tests"], data["reinit"], dict(data.get("timings", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise VarpropError(f"not a complete audit report: {type(exc).__name__}: {exc} (a "
                               "field AuditReport.to_json writes is missing or malformed)") from None

    # ------------------------------------------------------------------------------------------
    def plot(self, path: str | Path | None = None) -> Any:
        """Second moment against site index (log scale), forward and backward: the predicted
        line, measured points with their intervals (measured-through sites as open marks).

        Returns the matplotlib ``Figure``; with ``path``, also writes it (SVG and PDF without
        dates, so the same report gives the same file) and returns the path.  Needs matplotlib
        (the ``plot`` extra)."""
        try:
            import matplotlib
        except ImportError:
            raise VarpropError("AuditReport.plot needs matplotlib: pip install 'varprop[plot]' "
                               "(or pip install matplotlib)") from None
        out = None if path is None else _check_path(path)
        if out is not None:
            matplotlib.use("Agg", force=True)
        with matplotlib.rc_context(_STYLE):
            fig = self._figure()
            if out is None:
                return fig
            try:
                _save(fig, out)
            except OSError as exc:
                raise VarpropError(f"cannot write the figure to {str(out)!r}: {exc}") from None
        return out

    def _figure(self) -> Any:
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        panels = [("forward", "forward: E[y^2] of the site's output")]
        if any(r.backward.status != "not run" for r in self.rows):  # backward=False: no panel
            panels.append(("backward", "backward: E[(dL/dy)^2]"))
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), sharex=True,
                                 squeeze=False)
        axes = list(axes[0])
        x = list(range(1, len(self.rows) + 1))
        for ax, (which, title) in zip(axes, panels):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            passes = [getattr(r, which) for r in self.rows]
            _draw_pass(ax, x, passes)
            ax.set_title(title, fontsize=9)
            ax.set_yscale("log")
            ax.set_xlabel("site (in computation order)")
            ax.grid(True, which="major", lw=0.3)
        for ax in axes:
            ax.legend(fontsize=7, loc="best")
        fig.suptitle(f"{self.model}: {self.replicates} re-initialisations", fontsize=10)
        fig.tight_layout()
        return fig


#: The figure formats :meth:`AuditReport.plot` writes (by the path's suffix; none: SVG).
FORMATS = ("svg", "pdf", "png", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def _check_path(path: str | Path) -> Path:
    """``path`` as a :class:`~pathlib.Path` whose folder exists and whose suffix is a format of
    :data:`FORMATS`, else an error naming it."""
    if not isinstance(path, (str, Path)):
        raise fail_type("path", path, "None, a str or a pathlib.Path")
    out = Path(path)
    suffix = out.suffix.lower().lstrip(".")
    if suffix and suffix not in FORMATS:
        raise fail("path", str(path), f"a file name ending in one of {', '.join(FORMATS)} "
                   "(or no suffix: SVG)")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise fail("path", str(path), f"a file in an existing folder ({str(folder)!r} is not one)")
    return out


def _draw_pass(ax: Any, x: Sequence[int], passes: Sequence[PassResult]) -> None:
    pred = [p.predicted if _positive(p.predicted) else math.nan for p in passes]
    ax.plot(x, pred, color="C0", lw=1.2, label="predicted")
    for measured_through, style in ((False, dict(fmt="o", color="C1", label="measured")),
                                    (True, dict(fmt="s", color="C2", mfc="none",
                                                label="measured (passed through)"))):
        pts = [(i, p) for i, p in zip(x, passes) if _positive(p.measured)
               and (p.status == "measured") == measured_through]
        if not pts:
            continue
        xs = [i for i, _ in pts]
        ys = [p.measured for _, p in pts]
        lo = [max(p.measured - p.interval[0], 0.0) if p.interval else 0.0 for _, p in pts]
        hi = [max(p.interval[1] - p.measured, 0.0) if p.interval else 0.0 for _, p in pts]
        ax.errorbar(xs, ys, yerr=[lo, hi], ms=3, capsize=2, lw=0.8, **style)
    bad = [(i, p.measured) for i, p in zip(x, passes) if p.status == "refuted"]
    if bad:
        ax.plot([i for i, _ in bad], [m for _, m in bad], "x", color="C3", ms=8, label="refuted")


def _save(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` by its suffix: SVG and PDF without dates
    (:func:`varprop._util.figures.save_figure`), other formats by matplotlib."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("", "svg", "pdf"):
        data = save_figure(fig, suffix or "svg")
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        return
    import matplotlib.pyplot as plt
    fig.savefig(path, format=suffix)
    plt.close(fig)


def _positive(v: float | None) -> bool:
    return v is not None and math.isfinite(v) and v > 0


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _measured(p: PassResult) -> str:
    if p.measured is None:
        return "-"
    if p.interval is None:
        return _num(p.measured)
    return f"{p.measured:.4g} [{p.interval[0]:.4g}, {p.interval[1]:.4g}]"


def _verdict(p: PassResult, rtol: float) -> str:
    """The verdict cell: the status, with the allowance when it exceeds the confirmation
    margin (an approximate prediction), marked *broad* when it is one that can refute the
    prediction but not confirm it (the reason of an ``inconclusive`` row says so)."""
    mark = _MARK[p.status]
    if p.status in ("confirmed", "refuted", "inconclusive") and p.tol is not None \
            and p.tol > rtol:
        broad = "broad " if "can refute this claim but not confirm it" in (p.reason or "") \
            else ""
        return f"{mark} ({broad}allowance +-{100 * p.tol:.3g}%)"
    return mark


def _pass(d: dict[str, Any]) -> PassResult:
    iv = d.get("interval")
    return PassResult(d.get("predicted"), d.get("measured"),
                      None if iv is None else (float(iv[0]), float(iv[1])), d["status"],
                      d.get("reason", ""), d.get("tol"))


def _strict(v: Any) -> Any:
    """Tuples to lists, non-finite floats to ``None`` (JSON ``null``; the report never holds
    one on purpose: a value that left the float range is reported as missing)."""
    if isinstance(v, dict):
        return {str(k): _strict(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x) for x in v]
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return v
