"""Saving matplotlib figures reproducibly (the optional ``plot`` extra): SVG text or PDF bytes
without dates, so that the same figure gives the same file."""

from __future__ import annotations

import io

__all__ = ["save_figure"]


def save_figure(fig: object, kind: str) -> str | bytes:
    """``fig`` as SVG text or PDF bytes with reproducible metadata (no date), then closed."""
    import matplotlib  # optional dependency: the figures are an extra
    import matplotlib.pyplot as plt
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
