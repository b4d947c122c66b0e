"""Turning user numbers into exact SymPy numbers (``0.05 -> 1/20``), so derivations stay exact.

SymPy is bound lazily (:mod:`varprop._util.lazy`): importing this module costs nothing, and
SymPy is imported at the first call of :func:`exact` (the symbolic paths that need it).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

from varprop._util.lazy import lazy_module

if TYPE_CHECKING:
    import sympy

#: SymPy, imported at the first call (:mod:`varprop._util.lazy`)
sp = lazy_module("sympy")

__all__ = ["exact"]


def exact(value: object) -> sympy.Expr:
    """Return ``value`` as an exact SymPy number.

    Integers become :class:`sympy.Integer`; floats become the rational number of their shortest
    decimal representation (``0.05 -> 1/20``, ``1/3 -> 3333333333333333/10000000000000000``);
    SymPy expressions are returned unchanged.

    >>> exact(0.05), exact(3)
    (1/20, 3)
    """
    if isinstance(value, sp.Basic):
        return value
    if isinstance(value, numbers.Integral):
        return sp.Integer(int(value))
    if isinstance(value, numbers.Real):
        return sp.Rational(repr(float(value)))
    raise TypeError(f"cannot turn {value!r} into an exact number")
