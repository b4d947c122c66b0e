"""CPU of the documents' 17 figures: layout (``tight_layout``) and saving, with matplotlib's
defaults against varprop's figure helpers (:mod:`varprop._util.figures`).

Run:  python benchmarks/bench_figures.py [--rounds 1]

Every activation document, the layer documents and the worked architectures are rendered from the
committed ``derivations/montecarlo.json`` (no simulation) twice per round:

- ``defaults``: ``plain_log_ticks`` does nothing (mathtext tick labels) and figures are saved
  with a plain ``savefig`` (which draws once more for the layout engine ``tight_layout`` leaves);
- ``varprop``: the helpers as shipped.

Only the time inside ``Figure.tight_layout`` and the save is counted.  Prints the seconds of each
variant (the best round) and their ratio.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure as mfigure  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

import varprop._util.figures as vfig  # noqa: E402
import varprop.documents.figures as dfig  # noqa: E402
import varprop.documents.finite_width as dfw  # noqa: E402
import varprop.documents.netfigure as dnet  # noqa: E402
import varprop.documents.recommend_figure as drec  # noqa: E402
from varprop.documents.common import ACTIVATIONS  # noqa: E402
from varprop.documents.parallel import Task, _run  # noqa: E402
from varprop.documents.store import MonteCarloStore, budget  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODULES = (dfig, dfw, dnet, drec)


def plain_savefig(fig: object, kind: str) -> str | bytes:
    """The save before varprop's helper: ``savefig`` as matplotlib does it."""
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


def run(variant: str) -> tuple[float, int]:
    """CPU seconds of layout and saving over every figure, and how many figures."""
    spent, count = [0.0], [0]
    tight = mfigure.Figure.tight_layout
    save = vfig.save_figure if variant == "varprop" else plain_savefig
    ticks = vfig.plain_log_ticks if variant == "varprop" else (lambda ax: None)

    def timed_tight(self: object, *a: object, **k: object) -> object:
        t0 = time.process_time()
        out = tight(self, *a, **k)  # type: ignore[arg-type]
        spent[0] += time.process_time() - t0
        return out

    def timed_save(fig: object, kind: str) -> str | bytes:
        t0 = time.process_time()
        out = save(fig, kind)
        spent[0] += time.process_time() - t0
        count[0] += 1
        return out

    patched = [(mfigure.Figure, "tight_layout", tight)]
    mfigure.Figure.tight_layout = timed_tight  # type: ignore[method-assign]
    for m in MODULES:
        for name, new in (("save_figure", timed_save), ("plain_log_ticks", ticks)):
            if hasattr(m, name):
                patched.append((m, name, getattr(m, name)))
                setattr(m, name, new)
    try:
        text = (ROOT / "derivations" / "montecarlo.json").read_text()
        b = budget("default")
        for task in ([Task("activation", a) for a in ACTIVATIONS] + [Task("layers"),
                                                                     Task("architectures")]):
            _run(task, MonteCarloStore.from_json(text, frozen=False), b, "markdown", True, (),
                 lambda: None)
    finally:
        for owner, name, old in patched:
            setattr(owner, name, old)
    return spent[0], count[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    best = {"defaults": float("inf"), "varprop": float("inf")}
    for _ in range(args.rounds):
        for variant in best:
            seconds, n = run(variant)
            best[variant] = min(best[variant], seconds)
    print(f"{n} figures, CPU of layout + saving: defaults {best['defaults']:.2f} s, "
          f"varprop {best['varprop']:.2f} s, ratio {best['varprop'] / best['defaults']:.2f}")


if __name__ == "__main__":
    main()
