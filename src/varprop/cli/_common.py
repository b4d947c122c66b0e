"""Argument helpers shared by the subcommands (parameterised names, lists, integers).

Every integer option goes through :func:`integer` (argparse ``type=``): plain decimal digits,
at most :data:`MAX_DIGITS` of them, so that a 401-digit ``--fan-in`` is a usage error (exit 2)
rather than an ``OverflowError`` deep in the arithmetic; ``--depth`` is at most
:data:`MAX_DEPTH` (the per-layer arrays are built in memory).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from varprop._util.named import parse_named, split_list
from varprop._util.validation import check_probability

__all__ = ["parse_named", "comma_list", "integer", "int_list", "probability", "MAX_DIGITS",
           "MAX_DEPTH"]

#: Integer options have at most this many digits (any width, seed or budget that makes sense).
MAX_DIGITS = 18
#: Largest ``--depth`` (a prediction of a million layers takes a few seconds).
MAX_DEPTH = 1_000_000

_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


def comma_list(text: str) -> list[str]:
    """``"relu,tanh"`` -> ``["relu", "tanh"]`` (for argparse ``type=`` with ``action="extend"``;
    commas inside parentheses or between a name's parameters stay, see :func:`split_list`)."""
    items = split_list(text)
    if not items:
        raise argparse.ArgumentTypeError("expected a non-empty comma-separated list")
    return items


def _parse_int(text: str, minimum: int, maximum: int | None) -> int:
    shown = text if len(text) <= 40 else text[:20] + "..." + text[-10:]
    if not _INTEGER.match(text):
        raise argparse.ArgumentTypeError(f"{shown!r} is not an integer")
    digits = len(text.strip().lstrip("+-"))
    if digits > MAX_DIGITS:
        raise argparse.ArgumentTypeError(
            f"{shown!r} has {digits} digits: an integer of at most {MAX_DIGITS} digits")
    value = int(text)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: an integer <= {maximum}")
    return value


def integer(minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` for integers in ``[minimum, maximum]``.

    >>> integer()("16")
    16
    """
    def parse(text: str) -> int:
        return _parse_int(text, minimum, maximum)

    parse.__name__ = "integer"
    return parse


def int_list(minimum: int = 1, maximum: int | None = None, *, at_least: int = 1
             ) -> Callable[[str], list[int]]:
    """An argparse ``type=`` for a comma list of integers: ``"16,8,8"`` -> ``[16, 8, 8]``.
    Empty items (``16,,8``), brackets (``[16,8]``) and non-integers are refused.

    >>> int_list(at_least=2)("16,8,8")
    [16, 8, 8]
    """
    def parse(text: str) -> list[int]:
        items = text.split(",")
        if any(not item.strip() for item in items):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not allowed: integers separated by single commas, e.g. 16,8,8 "
                "(no empty items, spaces or brackets)")
        values = [_parse_int(item, minimum, maximum) for item in items]
        if len(values) < at_least:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: at least {at_least} "
                                             "comma-separated integers")
        return values

    parse.__name__ = "integer list"
    return parse


def probability(name: str) -> Callable[[str], float]:
    """An argparse ``type=`` for a number strictly between 0 and 1 (``--alpha``, ``--rtol``),
    refused with the library's own message (:func:`varprop._util.validation.check_probability`).

    >>> probability("alpha")("0.01")
    0.01
    """
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        try:
            return check_probability(name, value)
        except ValueError as exc:  # InvalidArgument: names the option, the value, what is allowed
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "probability"
    return parse
