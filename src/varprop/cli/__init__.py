"""The ``varprop`` command line: parse, call the public API, print.

Parsing is cheap (:mod:`varprop.cli.parsers`); each subcommand runs in its own module of this
package (``run(args) -> int``), listed in :data:`COMMANDS` and imported after parsing, only for the
command given, so that ``varprop --help`` and usage errors do not wait for NumPy, SciPy or SymPy.

Exit codes: 0 success, 1 a check refuted something (or ``--check`` found stale documents), 2 bad
usage (one line ``varprop CMD: error: ...`` on stderr, never a traceback), 141 the reader of the
output went away (``varprop ... | head``: the rest of the output is dropped silently, as by
SIGPIPE).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from varprop.cli.parsers import PARSERS
from varprop.errors import VarpropError, VarpropWarning

#: subcommand -> the module that runs it (imported when that command runs)
COMMANDS: dict[str, str] = {"predict": "varprop.cli.predict_cmd",
                            "check": "varprop.cli.check_cmd",
                            "derive": "varprop.cli.derive_cmd",
                            "recommend": "varprop.cli.recommend_cmd",
                            "critical-gain": "varprop.cli.criticality_cmd",
                            "edge-of-chaos": "varprop.cli.criticality_cmd",
                            "overflow-depth": "varprop.cli.criticality_cmd",
                            "list": "varprop.cli.list_cmd",
                            "audit": "varprop.cli.audit_cmd"}
SUBCOMMANDS = tuple(COMMANDS)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line ``PROG: error: MESSAGE`` (exit 2); subcommand
    parsers inherit the class."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="varprop",
        description="Derive, predict and Monte-Carlo-check variance propagation in random networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        PARSERS[name](sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader closed the pipe (``| head``): drop the rest of the output, no traceback
        # (also none at interpreter exit, when Python flushes stdout again)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage error (2, message printed) or --help (0)
        return exc.code if isinstance(exc.code, int) else 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VarpropWarning)
        try:
            status = int(importlib.import_module(COMMANDS[args.command]).run(args) or 0)
        except VarpropError as exc:
            message = " ".join(str(exc).split())  # one line
            print(f"varprop {args.command}: error: {message}", file=sys.stderr)
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
