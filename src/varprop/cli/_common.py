"""Argument helpers shared by the subcommands (parameterised names, lists)."""

from __future__ import annotations

import argparse

from .._named import parse_named, split_list

__all__ = ["parse_named", "comma_list"]


def comma_list(text: str) -> list[str]:
    """``"relu,tanh"`` -> ``["relu", "tanh"]`` (for argparse ``type=`` with ``action="extend"``;
    commas inside parentheses or between a name's parameters stay, see :func:`split_list`)."""
    items = split_list(text)
    if not items:
        raise argparse.ArgumentTypeError("expected a non-empty comma-separated list")
    return items
