"""Turning user numbers into exact SymPy numbers (``0.05 -> 1/20``), so derivations stay exact."""

from __future__ import annotations

import numbers

import sympy as sp

__all__ = ["exact"]


def exact(value: object) -> sp.Expr:
    """Return ``value`` as an exact SymPy number.

    Integers become :class:`sympy.Integer`; floats become the rational number of their shortest
    decimal representation (``0.05 -> 1/20``, ``1/3 -> 3333333333333333/10000000000000000``);
    SymPy expressions are returned unchanged.
    """
    if isinstance(value, sp.Basic):
        return value
    if isinstance(value, numbers.Integral):
        return sp.Integer(int(value))
    if isinstance(value, numbers.Real):
        return sp.Rational(repr(float(value)))
    raise TypeError(f"cannot turn {value!r} into an exact number")
