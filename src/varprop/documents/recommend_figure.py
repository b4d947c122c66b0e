r"""The figure of :func:`varprop.recommend`: the forward and backward ratios over depth of every
row of the trade-off table (the recommendation, the variance-preserving gain, the edge of chaos,
the framework defaults), log scale, with the recommendation's band shaded.

Left panel: :math:`q_l / q_1`, :math:`q_l = E z_l^2`; right panel:
:math:`E(\partial\mathcal L/\partial a_{l-1})^2 / E(\partial\mathcal L/\partial a_{L-1})^2`,
both for :math:`l = 1, \dots, L` (:func:`varprop.theory.recommend.ratio_curves`, infinite-width
mean field, gradient independence).  The shaded band is the one the recommendation states for
its end-to-end ratios,
:attr:`Recommendation.band <varprop.theory.recommend.Recommendation.band>`,
:math:`[e^{-J}, e^{J}]`.  matplotlib is the optional extra ``plot``; the file is written by
:func:`varprop.documents.figures.save_figure` (SVG or PDF without dates: byte-identical on
regeneration).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from varprop._util.figures import plain_log_ticks
from varprop._util.validation import fail, fail_type
from varprop.components.activations import Activation, resolve_activation
from varprop.documents.figures import save_figure
from varprop.theory.recommend import Recommendation, ratio_curves, row_scheme

__all__ = ["plot_recommendation", "recommendation_curves", "KINDS", "MISSING_MATPLOTLIB"]

#: file suffix -> what :func:`save_figure` writes
KINDS = {".svg": "svg", ".pdf": "pdf"}
#: the message when the optional extra is not installed
MISSING_MATPLOTLIB = ("the figure needs matplotlib, the optional extra 'plot': "
                      ".venv/bin/pip install -e '.[plot]' (or pip install matplotlib)")
_PLOT_MIN, _PLOT_MAX = 1e-200, 1e200  # what a log axis can tick
_MATCH_RTOL = 1e-9  # recomputed end ratios against the table (a std's rounding moves ~1e-15)


def recommendation_curves(rec: Recommendation, activation: Activation | str | None = None
                          ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    r"""Row name -> (forward, backward) ratio curves over :math:`l = 1..L`, recomputed from the
    table's schemes; their ends are checked against the table's ratios.

    ``activation`` is the :class:`~varprop.Activation` the recommendation was made for; ``None``
    resolves ``rec.activation`` by name (enough unless the activation has parameters, which the
    recommendation does not record: then the check refuses it).
    """
    if not isinstance(rec, Recommendation):
        raise fail_type("recommendation", rec, "a Recommendation (the result of varprop.recommend)")
    act = resolve_activation(rec.activation if activation is None else activation)
    if act.name != rec.activation:
        raise fail("activation", act.name, f"the activation of the recommendation "
                   f"({rec.activation!r})")
    out = {}
    for row in rec.table:
        fw, bw = ratio_curves(act, row_scheme(row), rec.width, rec.depth, rec.bias_variance)
        for got, table in ((fw[-1], row.forward_ratio), (bw[0], row.backward_ratio)):
            if not _close(float(got), table):
                raise fail("activation", activation, f"the Activation (with its parameters) "
                           f"that {rec.activation!r} was recommended for: its {row.name!r} "
                           f"ratios differ from the table ({got!r} != {table!r})")
        out[row.name] = (fw, bw)
    return out


def _close(a: float, b: float) -> bool:
    if math.isfinite(a) and math.isfinite(b):
        return math.isclose(a, b, rel_tol=_MATCH_RTOL, abs_tol=0.0)
    return a == b or (math.isnan(a) and math.isnan(b))


def _shown(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where((values > _PLOT_MIN) & (values < _PLOT_MAX), values, np.nan)


def plot_recommendation(recommendation: Recommendation, path: str | Path | None = None, *,
                        activation: Activation | str | None = None) -> str | Path:
    r"""Draw the ratios over depth of :func:`varprop.recommend`'s trade-off table.

    Parameters
    ----------
    recommendation : Recommendation
    path : str or Path, optional
        Where to write the figure, ``.svg`` or ``.pdf``; ``None`` returns the SVG text.
    activation : Activation or str, keyword-only, optional
        The activation the recommendation was made for, needed when it has parameters
        (``rec.activation`` is only its name); checked against the table.

    Returns
    -------
    str or Path
        The SVG text (``path=None``) or the path written.

    Raises
    ------
    ImportError
        matplotlib (the extra ``plot``) is not installed.
    """
    kind = "svg"
    if path is not None:
        if not isinstance(path, (str, Path)):
            raise fail_type("path", path, "a str or pathlib.Path ending in .svg or .pdf")
        path = Path(path)
        kind = KINDS.get(path.suffix.lower(), "")
        if not kind:
            raise fail("path", str(path), "a file name ending in .svg or .pdf")
    curves = recommendation_curves(recommendation, activation)
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rec = recommendation
    low, high = rec.band
    layers = np.arange(1, rec.depth + 1)
    style = {"svg.hashsalt": "varprop", "svg.fonttype": "none", "font.size": 9,
             "path.simplify": False}
    with matplotlib.rc_context(style):
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
        for ax in axes:
            ax.axhspan(low, high, color="0.85", lw=0, label=f"band [{low:.3g}, {high:.3g}]")
            ax.axhline(1.0, color="0.5", lw=0.6)
        for i, row in enumerate(rec.table):
            last = i == len(rec.table) - 1
            look = ({"color": "k", "lw": 2.2, "zorder": 3} if last else
                    {"color": f"C{i}", "lw": 1.1, "ls": "-" if i < 2 else "--"})
            label = f"{row.name} (g={row.gain:.4g}, {row.phase})"
            for ax, values in zip(axes, curves[row.name]):
                ax.plot(layers, _shown(values), label=label, **look)
        axes[0].set_title(r"forward: $q_l / q_1$")
        axes[1].set_title(r"backward: $E(\partial L/\partial a_{l-1})^2 / "
                          r"E(\partial L/\partial a_{L-1})^2$")
        for ax in axes:
            ax.set_yscale("log")
            plain_log_ticks(ax)
            ax.set_xlabel("layer $l$")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(True, which="major", lw=0.3)
        axes[1].legend(fontsize=6, loc="best")
        fig.suptitle(f"{rec.activation}, width {rec.width}, depth {rec.depth}, "
                     f"$\\sigma_b^2$ = {rec.bias_variance:g}, goal {rec.goal}: "
                     f"recommended gain {rec.gain:.5g}")
        fig.tight_layout()
        data = save_figure(fig, kind)
    if path is None:
        return data  # type: ignore[return-value]
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path
