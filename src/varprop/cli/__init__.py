"""The ``varprop`` command line: parse, call the public API, print.

Each subcommand lives in its own module of this package exposing ``add_parser(subparsers)``
(which sets ``func`` on its parser) so that commands stay independent.  Exit codes: 0 success,
1 a check refuted something (or ``--check`` found stale documents), 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from ..errors import VarpropError, VarpropWarning

SUBCOMMANDS = ("predict", "check", "derive")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="varprop",
        description="Derive, predict and Monte-Carlo-check variance propagation in random networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"varprop.cli.{name}_cmd")
        except ModuleNotFoundError as exc:  # a subcommand whose module is not built yet
            if exc.name != f"varprop.cli.{name}_cmd":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VarpropWarning)
        try:
            status = int(args.func(args) or 0)
        except VarpropError as exc:
            print(f"varprop {args.command}: error: {exc}", file=sys.stderr)
            status = 2
    _report_warnings(args.command, caught)
    return status


def _report_warnings(command: str, caught: list[warnings.WarningMessage]) -> None:
    """Print varprop's own warnings once each as ``varprop CMD: warning: ...`` (no source lines);
    re-emit any other warning unchanged."""
    seen: set[str] = set()
    for w in caught:
        if not issubclass(w.category, VarpropWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
            continue
        text = str(w.message)
        if text not in seen:
            seen.add(text)
            print(f"varprop {command}: warning: {text}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
