"""The figure of an activation document: variance against depth, forward and backward,
predicted lines and Monte Carlo points (matplotlib, the optional extra ``plot``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from varprop._util.figures import plain_log_ticks, save_figure
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.documents.common import (
    _TITLES,
    FIGURE_DEPTH,
    FIGURE_WIDTH,
    _label,
    _quiet,
)
from varprop.theory.predict import propagate

_PLOT_MIN, _PLOT_MAX = 1e-200, 1e200  # what a log axis can tick


def _figure(act: Activation, schemes: Sequence[InitScheme], curves: dict[str, Any],
            kind: Literal["svg", "pdf"] = "svg") -> str | bytes | None:
    """Variance against depth, forward and backward, for ``schemes``: predicted lines, Monte
    Carlo points (``curves``, keyed by scheme label) with 95% intervals; SVG text (Markdown documents) or PDF bytes (LaTeX documents), both without dates
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
        offset = (len(schemes) - 1) / 2
        for i, scheme in enumerate(schemes):
            name = _label(scheme)
            color = f"C{i % 10}"
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
                    ax.errorbar(layers + 0.15 * (i - offset), mean, yerr=[mean - lo, hi - mean], fmt="o", ms=3,
                                color=color, capsize=2, lw=0.8,
                                label=f"{name} (Monte Carlo, 95%)")
        axes[0].set_title(f"forward: $E[z_l^2]$, width {FIGURE_WIDTH}")
        axes[1].set_title(f"backward: $E[(\\partial L/\\partial a_{{l-1}})^2]$, width {FIGURE_WIDTH}")
        for ax in axes:
            ax.set_yscale("log")
            plain_log_ticks(ax)
            ax.set_xlabel("layer $l$")
            ax.xaxis.get_major_locator().set_params(integer=True)  # layers are whole
            ax.grid(True, which="major", lw=0.3)
        axes[0].legend(fontsize=6, loc="best")
        fig.suptitle(f"{_TITLES.get(act.name, act.name)}: variance against depth")
        fig.tight_layout()
        return save_figure(fig, kind)

