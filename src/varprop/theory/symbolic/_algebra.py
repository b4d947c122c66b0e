r"""Exact algebra shared by the derivation builders: unevaluated equations, cheap exact normal
forms, zero/one tests that SymPy can decide, weight moments at symbolic fans, and the 2x2
eigen-machinery of the non-zero-mean :math:`(D, C)` recursion."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sympy as sp

from varprop.components.schemes import InitScheme
from varprop.theory.symbolic.symbols import LAMBDA_M, LAMBDA_P, N_IN, N_OUT

__all__: list[str] = []


def _eq(lhs: Any, rhs: Any, **_: Any) -> sp.Eq:
    """An unevaluated equation (``q* = q*`` must not collapse to ``True``)."""
    return sp.Eq(lhs, rhs, evaluate=False)


def _simp(expr: Any) -> Any:
    """Cheap exact normal form (``cancel``; ``simplify`` is far too slow to call per step)."""
    if not isinstance(expr, sp.Expr) or expr.has(sp.Piecewise, sp.Product, sp.Sum, sp.Integral):
        return expr
    return _normal_form(expr)


@lru_cache(maxsize=8192)
def _normal_form(expr: sp.Expr) -> sp.Expr:
    out = sp.cancel(expr)
    if isinstance(out, sp.Mul) or (out.is_rational_function() and not isinstance(out, sp.Add)):
        return sp.factor(out)
    return out


def _is_zero(expr: sp.Expr) -> bool:
    """True if ``expr`` is identically 0 (``cancel`` first, ``simplify`` for constants)."""
    e = sp.cancel(expr)
    if e == 0:
        return True
    if e.free_symbols:
        return False
    return abs(complex(sp.N(e, 30))) < 1e-25 and sp.simplify(e) == 0


def _is_one(expr: sp.Expr) -> bool:
    return _is_zero(expr - 1)


@lru_cache(maxsize=1024)
def _weight_moments(scheme: InitScheme, fan_in: Any, fan_out: Any) -> tuple[sp.Expr, sp.Expr]:
    """``(mu_w, sigma_w^2)`` of ``scheme`` at symbolic fans (cached: the scheme simplifies)."""
    return _simp(scheme.weight_mean(fan_in, fan_out)), _simp(scheme.weight_variance(fan_in, fan_out))


def _truth(rel: Any) -> bool | None:
    """``True``/``False`` if SymPy can decide a relational, else ``None``."""
    if rel is sp.true or rel is True:
        return True
    if rel is sp.false or rel is False:
        return False
    return None




def _below_one_for_some_width(c: sp.Expr) -> bool | None:
    """Whether the hidden-layer factor ``c`` (a function of ``n_in = n_out = n``) is < 1 for some
    width ``n >= 2`` (SymPy's ``solveset`` over the reals); ``None`` if undecided."""
    n = sp.Symbol("n", positive=True)
    expr = sp.simplify(c.subs({N_IN: n, N_OUT: n}))
    if expr.free_symbols - {n}:
        return None
    try:
        sol = sp.solveset(sp.Lt(expr, 1), n, sp.Interval(2, sp.oo))
    except Exception:  # pragma: no cover - SymPy cannot solve the inequality
        return None
    if isinstance(sol, sp.ConditionSet):
        return None
    return sol is not sp.S.EmptySet


def _eigenvalues(M: sp.Matrix) -> tuple[sp.Expr, sp.Expr]:
    """Both eigenvalues of a 2x2 matrix, larger first (real: the matrices here are non-negative)."""
    T = sp.cancel(M.trace())
    root = sp.sqrt(sp.factor(sp.expand(T**2 - 4 * M.det())))
    return (T + root) / 2, (T - root) / 2



def _sylvester_component(M: sp.Matrix, x: sp.Matrix, i: int, k: sp.Expr,
                         row: sp.Matrix | None = None) -> sp.Expr:
    r"""Component ``i`` of :math:`M^k x` (or ``row`` :math:`\cdot M^k x`) as
    :math:`(a_+ \lambda_+^k - a_- \lambda_-^k)/(\lambda_+ - \lambda_-)` in the eigenvalue symbols."""
    r = sp.eye(2)[i, :] if row is None else row
    a_p = sp.factor((r * (M - LAMBDA_M * sp.eye(2)) * x)[0])
    a_m = sp.factor((r * (M - LAMBDA_P * sp.eye(2)) * x)[0])
    return (a_p * LAMBDA_P**k - a_m * LAMBDA_M**k) / (LAMBDA_P - LAMBDA_M)


def _dominant_eigenvalue(M: sp.Matrix) -> sp.Expr:
    r"""Largest eigenvalue of a 2x2 matrix with non-negative entries (Perron root):
    :math:`(T + \sqrt{T^2 - 4\Delta})/2`."""
    T = sp.cancel(M.trace())
    det = M.det()
    return (T + sp.sqrt(sp.factor(sp.expand(T**2 - 4 * det)))) / 2
