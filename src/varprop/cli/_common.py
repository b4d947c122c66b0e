"""Argument helpers shared by the subcommands (parameterised names, lists)."""

from __future__ import annotations

import argparse
import ast

from .._validation import fail

__all__ = ["parse_named", "comma_list"]


def parse_named(text: str, argument: str) -> tuple[str, dict[str, object]]:
    """Split ``"he_normal:mode=fan_out,negative_slope=0.1"`` into a name and literal parameters.

    Values are read with :func:`ast.literal_eval` (numbers, strings, booleans only; never ``eval``).
    """
    name, _, rest = text.partition(":")
    params: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise fail(argument, text, "NAME or NAME:key=value,key=value (e.g. he_normal:mode=fan_out)")
        try:
            params[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            params[key.strip()] = value.strip()  # a bare word such as fan_out
    return name.strip(), params


def comma_list(text: str) -> list[str]:
    """``"relu,tanh"`` -> ``["relu", "tanh"]`` (for argparse ``type=`` with ``action="extend"``)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a non-empty comma-separated list")
    return items
