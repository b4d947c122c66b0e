"""``varprop recommend``: the recommended gain and the trade-off table, and with ``--plot`` the
figure of the ratios over depth (:func:`varprop.plot_recommendation`).

Example::

    varprop recommend tanh --width 512 --depth 20
    varprop recommend tanh --width 512 --depth 20 --plot tanh-w512-d20.svg
    varprop recommend relu --width 256 --depth 50 --goal backward --json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import re
import sys
from pathlib import Path

from varprop._util.jsonio import jsonable
from varprop._util.lazy import lazy_module
from varprop.cli._common import parse_named
from varprop.components.activations import activation as build_activation
from varprop.theory.recommend import Recommendation, recommend

# the figure pulls in the documents package: imported only when --plot is given
figure = lazy_module("varprop.documents.recommend_figure")

_SUFFIXES = (".svg", ".pdf")


def run(args: argparse.Namespace) -> int:
    name, params = parse_named(args.activation, "activation")
    act = build_activation(name, **params)
    plot = None
    if args.plot is not None:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", act.name)  # custom expressions: "x*erf(x)"
        plot = Path(args.plot or f"recommend-{stem}-w{args.width}-d{args.depth}.svg")
        problem = _plot_problem(plot)
        if problem:
            print(f"varprop recommend: error: {problem}", file=sys.stderr)
            return 2
    rec = recommend(act, width=args.width, depth=args.depth, bias_variance=args.bias_variance,
                    goal=args.goal)
    if args.json:
        print(json.dumps(jsonable(dataclasses.asdict(rec)), indent=2, allow_nan=False))
    else:
        _print_table(rec)
    if plot is not None:
        try:
            figure.plot_recommendation(rec, plot, activation=act)
        except OSError as exc:  # e.g. the folder became unwritable after the up-front probe
            print(f"varprop recommend: error: --plot={str(plot)!r} could not be written: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"# figure: {plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _plot_problem(path: Path) -> str:
    """Why ``--plot PATH`` cannot be written ('' if it can), checked before the computation."""
    if path.suffix.lower() not in _SUFFIXES:
        return f"--plot={str(path)!r} is not allowed: a file name ending in .svg or .pdf"
    if not path.resolve().parent.is_dir():
        return f"--plot={str(path)!r} is not allowed: its folder does not exist"
    if path.is_dir():
        return f"--plot={str(path)!r} is not allowed: it is a directory, not a file name"
    why = _unwritable(path)
    if why:
        return f"--plot={str(path)!r} cannot be written: {why}"
    if not has_matplotlib():
        return ("--plot needs matplotlib, the optional extra 'plot': "
                ".venv/bin/pip install -e '.[plot]' (or pip install matplotlib)")
    return ""


def _unwritable(path: Path) -> str:
    """Why ``path`` cannot be opened for writing ('' if it can): a real probe (open for append,
    removed again if it did not exist), since permission bits say nothing for root or for
    special file systems such as ``/proc``."""
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    if not existed:
        path.unlink(missing_ok=True)
    return ""


def has_matplotlib() -> bool:
    """Whether the optional extra ``plot`` (matplotlib) is installed, without importing it."""
    return importlib.util.find_spec("matplotlib") is not None


def _print_table(rec: Recommendation) -> None:
    print(f"# {rec.activation}, width {rec.width}, depth {rec.depth}, bias_variance "
          f"{rec.bias_variance:g}, goal {rec.goal}")
    print(f"# recommended gain {rec.gain:.6g}: PyTorch std = gain/sqrt(fan_in) = {rec.std:.6g}; "
          f"Keras VarianceScaling(scale={rec.keras_scale:.6g}, mode='fan_in') (from: {rec.source})")
    low, high = rec.band
    print(f"# band: {_GOAL_TEXT[rec.goal]} (first to last layer) within [{low:.4g}, {high:.4g}]")
    if rec.at_bound:
        print("# note: the search ended at the end of its range (the objective still decreases)")
    print(f"{'row':<28}{'gain':>10}{'std':>12}{'q_L/q_1':>14}{'grad ratio':>14}  phase")
    for r in rec.table:
        print(f"{r.name:<28}{r.gain:>10.5g}{r.std:>12.5g}{r.forward_ratio:>14.5g}"
              f"{r.backward_ratio:>14.5g}  {r.phase}")


_GOAL_TEXT = {"forward": "q_L/q_1", "backward": "the gradient ratio",
              "both": "q_L/q_1 and the gradient ratio"}
