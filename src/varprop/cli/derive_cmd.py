"""``varprop derive``: write the derivation documents (and check that committed ones are current).

Examples::

    varprop derive --all                          # regenerate derivations/ (a few minutes)
    varprop derive --all --quick --out /tmp/draft # smaller Monte Carlo budget, for drafts
    varprop derive tanh xavier_normal he_normal --out /tmp/docs
    varprop derive relu --format latex --out /tmp/tex
    varprop derive --all --check                  # exit 1 if derivations/ is stale (full re-run)
    varprop derive --all --check --reuse-montecarlo   # seconds: re-render from montecarlo.json

Exit status: 0 written / up to date, 1 stale (``--check``), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from varprop.cli._common import parse_named


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "derive", help="write derivation documents (Markdown/LaTeX) with Monte Carlo verdicts",
        description="Write one document per activation covering every init scheme (or the "
                    "schemes given), the index derivations/README.md and derivations/"
                    "seed-claims.md; --check compares the committed files with what the code "
                    "writes now.")
    p.add_argument("activation", nargs="?", help="activation name, e.g. tanh or "
                   "leaky_relu:negative_slope=0.2 (omit with --all)")
    p.add_argument("init", nargs="*", help="init schemes (default: every scheme)")
    p.add_argument("--all", action="store_true", dest="all_",
                   help="every activation, the index, the seeds' claims and montecarlo.json")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: the repository's derivations/)")
    p.add_argument("--format", choices=("markdown", "latex"), default="markdown")
    p.add_argument("--quick", action="store_true",
                   help="small Monte Carlo budget for drafts (under a minute)")
    p.add_argument("--check", action="store_true",
                   help="do not write: exit 1 if the files in --out differ from what the code "
                        "writes now (with --all)")
    p.add_argument("--reuse-montecarlo", action="store_true",
                   help="with --check: re-render from the committed montecarlo.json and re-run "
                        "only a sample of its simulations (fast); with --all: re-render after a "
                        "text-only change, simulating only what montecarlo.json lacks")
    p.add_argument("--spot-check", type=int, default=2, metavar="K",
                   help="with --reuse-montecarlo: simulations to re-run (default 2)")
    p.add_argument("--no-figures", action="store_true", help="skip the matplotlib figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _usage(message: str) -> int:
    print(f"varprop derive: error: {message}", file=sys.stderr)
    return 2


def _not_a_folder(out: Path) -> Path | None:
    """``out`` or the first of its ancestors that exists and is not a folder (else None)."""
    for path in (out, *out.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def run(args: argparse.Namespace) -> int:
    from varprop.components.activations import activation as build_activation
    from varprop.components.schemes import init_scheme
    from varprop.documents import render as documents

    if args.all_ and (args.activation or args.init):
        return _usage("give either ACTIVATION [INIT ...] or --all, not both")
    if not args.all_ and not args.activation:
        return _usage("give ACTIVATION [INIT ...] or --all")
    if args.check and not args.all_:
        return _usage("--check needs --all (it compares the whole folder)")
    if args.check and args.format != "markdown":
        return _usage("--check compares the committed Markdown: drop --format latex")
    if args.reuse_montecarlo and not args.all_:
        return _usage("--reuse-montecarlo needs --all (montecarlo.json covers the whole folder)")
    out = args.out if args.out is not None else documents.default_output_dir()
    blocker = _not_a_folder(Path(out))
    if blocker is not None:
        return _usage(f"--out {out}: {blocker} is not a folder (give a folder to write into)")
    budget = "quick" if args.quick else None
    progress = not args.no_progress and sys.stderr.isatty()
    start = time.perf_counter()

    if args.check:
        report = documents.check(out, budget=budget, reuse_montecarlo=args.reuse_montecarlo,
                                 spot_check=args.spot_check, progress=progress,
                                 figures=False if args.no_figures else None)
        for note in report.notes:
            print(f"note: {note}")
        for label, paths in (("stale", report.stale), ("missing", report.missing),
                             ("not generated by the code", report.extra)):
            for path in paths:
                print(f"{label}: {Path(out) / path}")
        for path, diff in report.diffs.items():
            print(diff, end="" if diff.endswith("\n") else "\n")
        if report.ok:
            print(f"{out}: up to date ({time.perf_counter() - start:.1f} s)")
            return 0
        print(f"{out}: stale; regenerate with `varprop derive --all --out {out}`"
              + (" --quick" if budget == "quick" else ""))
        return 1

    if args.all_:
        store = None
        record = Path(out) / "montecarlo.json"
        if args.reuse_montecarlo and record.is_file():
            from varprop.documents.store import MonteCarloStore

            store = MonteCarloStore.from_json(record.read_text(encoding="utf-8"), frozen=False)
            if store.budget_name != (budget or "default"):
                return _usage(f"{record} was made with the {store.budget_name!r} budget; "
                              f"pass {'--quick' if store.budget_name == 'quick' else 'no --quick'}")
        files = documents.generate(budget=budget or "default", format=args.format,
                                   progress=progress, figures=not args.no_figures, store=store)
    else:
        name, params = parse_named(args.activation, "activation")
        act = build_activation(name, **params)
        schemes = []
        for text in args.init:
            s_name, s_params = parse_named(text, "init")
            schemes.append(init_scheme(s_name, **s_params))
        files = documents.generate([act], schemes or None, budget=budget or "default",
                                   format=args.format, progress=progress,
                                   figures=not args.no_figures)
    try:
        written = documents.write(files, out)
    except OSError as exc:
        return _usage(f"--out {out}: cannot write there ({exc.strerror or exc})")
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} files in {time.perf_counter() - start:.1f} s")
    return 0
