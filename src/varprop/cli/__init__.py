"""The ``varprop`` command line: parse, call the public API, print.

Each subcommand lives in its own module of this package exposing ``add_parser(subparsers)``
(which sets ``func`` on its parser) so that commands stay independent.  Exit codes: 0 success,
1 a check refuted something (or ``--check`` found stale documents), 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import VarpropError

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
    try:
        return int(args.func(args) or 0)
    except VarpropError as exc:
        print(f"varprop {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
