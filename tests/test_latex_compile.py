"""The LaTeX output of ``varprop derive`` typesets cleanly with pdflatex.

Compiles the tanh document (its widest tables and longest formulas) where ``pdflatex`` is
installed (texlive from the system packages; skipped otherwise, so CI needs no TeX): the run
succeeds and no box overflows by more than 1pt (an overfull box runs past the margin and clips
what is there, e.g. the verdict column of a wide table).  Rendered from the committed Monte Carlo
record: no simulation runs.  The steady table's predictions (the slowest part of the document,
a quadrature over the layer-1 shift for the non-zero-mean scheme) are replaced by fixed numbers
of the same form: this file tests the typesetting, test_documents.py the numbers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from varprop import documents
from varprop.documents.store import MonteCarloStore

PDFLATEX = shutil.which("pdflatex")
RECORD = Path(__file__).resolve().parents[1] / "derivations" / "montecarlo.json"

pytestmark = pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed")


def _overfull(log: str) -> list[float]:
    """Widths (pt) of the overfull boxes pdflatex reports."""
    return [float(w) for w in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too (?:wide|high)", log)]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("tex")
    store = MonteCarloStore.from_json(RECORD.read_text(encoding="utf-8"), frozen=True)
    try:
        import matplotlib  # noqa: F401  (the PDF figure needs the plot extra)
        figures = True
    except ImportError:  # pragma: no cover
        figures = False
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("varprop.documents.scheme_tables._steady_row",
                      lambda act, scheme: (8.539e+40, 1.903e+27))
        files = documents.activation_document("tanh", store=store, format="latex",
                                              figures=figures)
    documents.write(files, out)
    proc = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "tanh.tex"],
                          cwd=out, capture_output=True, text=True, timeout=300)
    log = (out / "tanh.log").read_text(encoding="latin-1") if (out / "tanh.log").exists() else ""
    return proc, log, (out / "tanh.tex").read_text(encoding="utf-8"), out


def test_pdflatex_succeeds(compiled):
    proc, log, _, out = compiled
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (out / "tanh.pdf").stat().st_size > 0
    assert "Output written on tanh.pdf" in log


def test_no_box_overflows_the_margin(compiled):
    _, log, _, _ = compiled
    assert [w for w in _overfull(log) if w > 1.0] == []


def test_no_ascii_math_in_the_text(compiled):
    _, _, tex, _ = compiled
    assert "tanh(x) ~" not in tex and "sqrt(" not in tex
    assert r"\approx \operatorname{erf}" in tex
