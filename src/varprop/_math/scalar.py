r"""Scalar evaluation of closed forms that never raises :class:`OverflowError`.

:func:`sympy.lambdify` with ``modules="math"`` is the fastest way to evaluate a closed form at one
point, but Python floats raise :class:`OverflowError` where NumPy would return ``inf``:
``q**3`` with :math:`q^3 > 1.8 \cdot 10^{308}` (a polynomial activation's moments deep in a
network, e.g. :math:`E[z^4] = 3q^2`), or a huge integer coefficient converted to float.
:func:`lambdify_scalar` evaluates with ``math`` and, only when that overflows, again with
``mpmath`` (arbitrary exponent range, so no ``inf - inf`` either), then rounds each value to the
nearest float: :math:`\pm\infty` beyond the float range, the exact limit rather than an error.

:func:`guarded_scalar` is that guard for code compiled elsewhere (the generated catalogues of
:mod:`varprop._math.codegen` hold ``lambdify``'s text): the same fast path, and a fallback built
only when it overflows.  SymPy and mpmath are bound lazily (:mod:`varprop._util.lazy`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from varprop._util.lazy import lazy_module
from varprop._util.rounding import float_or_inf

#: SymPy and mpmath, imported at first use (only to compile, and on overflow)
sp = lazy_module("sympy")
mpmath = lazy_module("mpmath")

__all__ = ["lambdify_scalar", "guarded_scalar"]

Evaluator = Callable[..., tuple[float, ...]]


def guarded_scalar(fast: Callable[..., Sequence[object]], fallback: Callable[[], Evaluator]
                   ) -> Evaluator:
    """``f(*values) -> tuple of float``: ``fast(*values)`` rounded to floats, or where it raises
    :class:`OverflowError`, :class:`ZeroDivisionError` or :class:`ValueError` (a power beyond the
    float range, an intermediate 0 or inf, a math domain error), ``fallback()(*values)``
    (``fallback`` is called once per failing evaluation, so it should be cached).

    >>> f = guarded_scalar(lambda x: [x * x], lambda: lambda x: (float("inf"),))
    >>> f(3.0), f(1e200)
    ((9.0,), (inf,))
    """

    def evaluate(*values: float) -> tuple[float, ...]:
        try:
            return tuple(float(v) for v in fast(*values))
        except (OverflowError, ZeroDivisionError, ValueError):
            return fallback()(*values)

    return evaluate


def lambdify_scalar(args: Sequence[sp.Symbol], exprs: Sequence[sp.Expr]) -> Evaluator:
    """``f(*values) -> tuple of float`` for the list ``exprs`` in the symbols ``args``.

    >>> x = sp.Symbol("x")
    >>> f = lambdify_scalar([x], [x**2, -3 * x**3 + x])
    >>> f(2.0)
    (4.0, -22.0)
    >>> f(1e200)
    (inf, -inf)
    """
    fast = sp.lambdify(args, list(exprs), modules="math")
    precise: list[Evaluator] = []

    def fallback() -> Evaluator:
        if not precise:
            precise.append(_precise(args, exprs))
        return precise[0]

    return guarded_scalar(fast, fallback)


def _precise(args: Sequence[sp.Symbol], exprs: Sequence[sp.Expr]) -> Evaluator:
    """Evaluation with mpmath (no exponent limit), rounded to floats; at a removable
    singularity, SymPy's exact limit."""
    compiled = sp.lambdify(args, list(exprs), modules="mpmath")

    def evaluate(*values: float) -> tuple[float, ...]:
        try:
            with mpmath.workdps(30):
                out = compiled(*(mpmath.mpf(v) for v in values))
            return tuple(float(v) for v in out)
        except (ZeroDivisionError, ValueError):  # a removable singularity: exact limits
            at = dict(zip(args, (sp.nsimplify(v, rational=True) for v in values)))
            return tuple(float_or_inf(sp.N(e.subs(at), 20)) for e in exprs)

    return evaluate
