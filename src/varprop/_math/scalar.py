r"""Scalar evaluation of closed forms that never raises :class:`OverflowError`.

:func:`sympy.lambdify` with ``modules="math"`` is the fastest way to evaluate a closed form at one
point, but Python floats raise :class:`OverflowError` where NumPy would return ``inf``:
``q**3`` with :math:`q^3 > 1.8 \cdot 10^{308}` (a polynomial activation's moments deep in a
network, e.g. :math:`E[z^4] = 3q^2`), or a huge integer coefficient converted to float.
:func:`lambdify_scalar` evaluates with ``math`` and, only when that overflows, again with
``mpmath`` (arbitrary exponent range, so no ``inf - inf`` either), then rounds each value to the
nearest float: :math:`\pm\infty` beyond the float range, the exact limit rather than an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mpmath
import sympy as sp

from varprop._util.rounding import float_or_inf

__all__ = ["lambdify_scalar"]


def lambdify_scalar(args: Sequence[sp.Symbol], exprs: Sequence[sp.Expr]
                    ) -> Callable[..., tuple[float, ...]]:
    """``f(*values) -> tuple of float`` for the list ``exprs`` in the symbols ``args``.

    >>> x = sp.Symbol("x")
    >>> f = lambdify_scalar([x], [x**2, -3 * x**3 + x])
    >>> f(2.0)
    (4.0, -22.0)
    >>> f(1e200)
    (inf, -inf)
    """
    fast = sp.lambdify(args, list(exprs), modules="math")
    precise: list[Callable[..., list[object]]] = []

    def evaluate(*values: float) -> tuple[float, ...]:
        try:
            return tuple(float(v) for v in fast(*values))
        except (OverflowError, ZeroDivisionError, ValueError):
            # a power or a coefficient beyond the float range (or an intermediate 0 or inf
            # from one): mpmath has no exponent limit
            if not precise:
                precise.append(sp.lambdify(args, list(exprs), modules="mpmath"))
            try:
                with mpmath.workdps(30):
                    out = precise[0](*(mpmath.mpf(v) for v in values))
                return tuple(float(v) for v in out)
            except (ZeroDivisionError, ValueError):  # a removable singularity: exact limits
                at = dict(zip(args, (sp.nsimplify(v, rational=True) for v in values)))
                return tuple(float_or_inf(sp.N(e.subs(at), 20)) for e in exprs)

    return evaluate
