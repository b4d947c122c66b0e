"""Saving matplotlib figures reproducibly (the optional ``plot`` extra): SVG text or PDF bytes
without dates, so that the same figure gives the same file."""

from __future__ import annotations

import functools
import io
import re

__all__ = ["save_figure", "plain_log_ticks", "unicode_tick"]

_SUPERSCRIPT = str.maketrans("0123456789-", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b")
_MATHDEFAULT = re.compile(r"\$\\mathdefault\{(-?)(?:([0-9.]+)\\times)?([0-9.]+)(?:\^\{(-?[0-9]+)\})?\}\$")


def unicode_tick(label: str) -> str:
    r"""A log axis' mathtext tick label as plain Unicode text: ``$\mathdefault{10^{-3}}$`` ->
    ``10⁻³``, ``$\mathdefault{6\times10^{-1}}$`` -> ``6×10⁻¹``, ``$\mathdefault{0.5}$`` -> ``0.5``
    (minus signs as U+2212); any other label unchanged."""
    m = _MATHDEFAULT.fullmatch(label)
    if m is None:
        return label
    sign, coeff, base, exponent = m.groups()
    text = (f"{coeff}\u00d7" if coeff else "") + base
    if exponent is not None:
        text += exponent.translate(_SUPERSCRIPT)
    return ("\u2212" if sign else "") + text


@functools.cache
def _plain_log_formatter() -> type:
    from matplotlib.ticker import (
        LogFormatterSciNotation,  # optional dependency (plot extra)
    )

    class PlainLogFormatter(LogFormatterSciNotation):
        """matplotlib's log tick labels, written as Unicode text instead of mathtext."""

        def __call__(self, x: float, pos: int | None = None) -> str:
            return unicode_tick(super().__call__(x, pos))

    return PlainLogFormatter


#: The characters :func:`unicode_tick` writes besides digits and ".".
_TICK_CHARACTERS = "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b\u00d7\u2212"


@functools.cache
def _font_has_tick_characters(path: str) -> bool:
    from matplotlib import ft2font  # optional dependency (plot extra)
    font = ft2font.FT2Font(path)
    return all(font.get_char_index(ord(c)) != 0 for c in _TICK_CHARACTERS)


def plain_log_ticks(ax: object) -> None:
    """Give the log-scaled y axis of ``ax`` tick labels as Unicode text (``10⁻³``): matplotlib's
    default labels are mathtext, parsed again on every draw (measured over the documents' 17
    figures: 21-33% of their layout and saving).  Same ticks, same labelling rules (the
    formatters' settings are kept).  Only matplotlib's default log formatter is replaced (a
    formatter the user chose stays), and nothing is when a tick label's font (major or minor,
    either side) lacks a superscript glyph (e.g. STIX, Computer Modern), when ``text.usetex`` is
    on (LaTeX would not take the characters), or when the PDF/PS backends write with their core
    fonts (``pdf.use14corefonts``, ``ps.useafm``: no superscripts)."""
    import matplotlib  # optional dependency (plot extra)
    from matplotlib import font_manager
    from matplotlib.ticker import LogFormatterSciNotation
    axis = ax.yaxis  # type: ignore[attr-defined]
    rc = matplotlib.rcParams
    if rc["text.usetex"] or rc["pdf.use14corefonts"] or rc["ps.useafm"]:
        return
    labels = [label for tick in axis.get_major_ticks(1) + axis.get_minor_ticks(1)
              for label in (tick.label1, tick.label2)]
    if not all(_font_has_tick_characters(font_manager.findfont(label.get_fontproperties()))
               for label in labels):
        return
    cls = _plain_log_formatter()
    for get, put in ((axis.get_major_formatter, axis.set_major_formatter),
                     (axis.get_minor_formatter, axis.set_minor_formatter)):
        old = get()
        if type(old) is LogFormatterSciNotation:
            put(cls(base=old._base, labelOnlyBase=old.labelOnlyBase,
                    minor_thresholds=old.minor_thresholds, linthresh=old._linthresh))


def save_figure(fig: object, kind: str) -> str | bytes:
    """``fig`` as SVG text or PDF bytes with reproducible metadata (no date), then closed."""
    import matplotlib  # optional dependency: the figures are an extra
    import matplotlib.pyplot as plt
    from matplotlib.layout_engine import PlaceHolderLayoutEngine
    if isinstance(fig.get_layout_engine(), PlaceHolderLayoutEngine):  # type: ignore[attr-defined]
        # the layout is final (``tight_layout`` leaves this placeholder behind): without an
        # engine ``savefig`` skips a second, layout-only draw of the figure (same file, about
        # 40% less time to save: every label's mathtext is parsed again on each draw).  ``None`` would pick
        # the rc's automatic layout if one is set: pin it off, the layout is done.
        with matplotlib.rc_context({"figure.autolayout": False,
                                    "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)  # type: ignore[attr-defined]
    maker = f"varprop with matplotlib {matplotlib.__version__}"
    buf: io.StringIO | io.BytesIO
    if kind == "svg":
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": maker})  # type: ignore[attr-defined]
    else:
        buf = io.BytesIO()
        fig.savefig(buf, format="pdf", metadata={"CreationDate": None, "Creator": maker})  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return buf.getvalue()
