"""The depth figure of a worked architecture: second moments against layer position (or time
step), forward and backward, predicted lines and Monte Carlo means with 95% intervals, log scale
(matplotlib, the optional extra ``plot``; ``None`` without it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from varprop._util.figures import plain_log_ticks
from varprop.documents.figures import save_figure

_PLOT_MIN, _PLOT_MAX = 1e-200, 1e200  # what a log axis can tick


@dataclass(frozen=True)
class Series:
    """One curve: predicted values at ``x`` and Monte Carlo mean / 95% bounds (NaN: no point)."""

    label: str
    x: tuple[float, ...]
    predicted: tuple[float, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class Panel:
    title: str
    xlabel: str
    series: tuple[Series, ...]


def _shown(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return np.where((v > _PLOT_MIN) & (v < _PLOT_MAX), v, np.nan)


def depth_figure(title: str, panels: Sequence[Panel], kind: Literal["svg", "pdf"] = "svg"
                 ) -> str | bytes | None:
    """SVG text or PDF bytes, undated (byte-identical on regeneration)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    style = {"svg.hashsalt": "varprop", "svg.fonttype": "none", "font.size": 9,
             "path.simplify": False}
    with matplotlib.rc_context(style):
        fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            for i, s in enumerate(panel.series):
                color = f"C{i}"
                x = np.asarray(s.x, dtype=float)
                ax.plot(x, _shown(s.predicted), color=color, lw=1.2, label=f"{s.label} (predicted)")
                mean, lo, hi = (np.asarray(a, dtype=float) for a in (s.mean, s.low, s.high))
                ok = (mean > _PLOT_MIN) & (mean < _PLOT_MAX) & (hi < _PLOT_MAX) & np.isfinite(lo)
                mean = np.where(ok, mean, np.nan)
                lo = np.where(ok, np.maximum(lo, mean * 1e-3), np.nan)
                ax.errorbar(x + 0.08 * (i - 1), mean, yerr=[mean - lo, np.where(ok, hi, np.nan) - mean],
                            fmt="o", ms=3, color=color, capsize=2, lw=0.8,
                            label=f"{s.label} (Monte Carlo, 95%)")
            ax.set_title(panel.title)
            ax.set_xlabel(panel.xlabel)
            ax.xaxis.get_major_locator().set_params(integer=True)  # layers are whole
            ax.set_yscale("log")
            plain_log_ticks(ax)
            ax.grid(True, which="major", lw=0.3)
        axes[0][0].legend(fontsize=6, loc="best")
        fig.suptitle(title)
        fig.tight_layout()
        return save_figure(fig, kind)
