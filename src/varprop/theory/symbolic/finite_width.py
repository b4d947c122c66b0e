r"""The finite-width (:math:`1/n`) recursion as SymPy equations, for the documents.

:func:`finite_width_steps` states the recursion of :mod:`varprop.theory.finite.expansion` (Yaida
2020; Roberts, Yaida & Hanin 2022, ch. 4--5) step by step for one activation, with
:math:`f(q) = E\phi(\sqrt q\xi)^2`, :math:`g(q) = \operatorname{Var}\phi(\sqrt q\xi)^2`,
:math:`u(q) = E\phi(\sqrt q\xi)^4` and :math:`h(q) = E\phi'(\sqrt q\xi)^2` in closed form where
the activation has one (degree-1 positively homogeneous activations: all four, exactly, from
:math:`\phi(\pm 1)`; activations with an exact closed-form second moment such as ``erf``,
``gelu``, ``elu``: :math:`f`), as undetermined functions otherwise.

Symbols: :math:`m_l = E\hat q_l`, :math:`v_l = \operatorname{Var}\hat q_l` (the per-network
pre-activation variance :math:`\hat q_l`), :math:`\kappa_l` the mean fourth cumulant of a
pre-activation given the previous layer, :math:`\kappa_w` the weights' excess kurtosis,
:math:`n_l` the width of layer :math:`l` (the fan-in of layer :math:`l+1`), :math:`\sigma_w^2`
the weight variance of layer :math:`l+1`, :math:`\sigma_b^2` the bias variance, :math:`s_x` the
input variance, :math:`S_l` the weight-reuse mode ratio of :mod:`varprop.theory.finite.backward`.
"""

from __future__ import annotations

import sympy as sp

from varprop.components.activations import MU, Activation, X, resolve_activation

__all__ = ["FINITE_WIDTH_LATEX", "FINITE_WIDTH_SYMBOLS", "finite_width_steps"]

Q = sp.Symbol("q", positive=True)
M, M_NEXT = sp.Symbol("m_l", positive=True), sp.Symbol("m_{l+1}", positive=True)
V, V_NEXT = sp.Symbol("v_l", nonnegative=True), sp.Symbol("v_{l+1}", nonnegative=True)
KAPPA, KAPPA_NEXT = sp.Symbol("kappa_l", real=True), sp.Symbol("kappa_{l+1}", real=True)
KAPPA_W = sp.Symbol("kappa_w", real=True)
N, N0 = sp.Symbol("n_l", positive=True, integer=True), sp.Symbol("n_0", positive=True, integer=True)
SIGMA_W2 = sp.Symbol("sigma_w^2", positive=True)
SIGMA_B2 = sp.Symbol("sigma_b^2", nonnegative=True)
S_X = sp.Symbol("s_x", positive=True)
M1, V1, KAPPA1 = sp.Symbol("m_1", positive=True), sp.Symbol("v_1"), sp.Symbol("kappa_1")
A2 = sp.Symbol("E[a_l^2]", nonnegative=True)
A_MEAN = sp.Symbol("E[a_l]", real=True)
MS_VAR = sp.Symbol("Var[mean_i z_{l,i}^2]", nonnegative=True)
S_L, S_NEXT = sp.Symbol("S_l", real=True), sp.Symbol("S_{l+1}", real=True)
H_COND = sp.Symbol("E[H_{l+1} | q_l]", nonnegative=True)
E_COND = sp.Symbol("E[q_{l+1} | q_l]", positive=True)
VAR_COND = sp.Symbol("Var[q_{l+1} | q_l]", nonnegative=True)

#: The symbols of :func:`finite_width_steps` and their meaning.
FINITE_WIDTH_SYMBOLS: dict[sp.Symbol, str] = {
    M: "mean over networks of the pre-activation variance q_l (per network)",
    V: "variance over networks of q_l (leading order, O(1/n))",
    KAPPA: "mean fourth cumulant of z_{l,i} given layer l-1 (0 for Gaussian weights)",
    KAPPA_W: "excess kurtosis of one weight entry",
    N: "width of layer l",
    SIGMA_W2: "weight variance of layer l+1",
    SIGMA_B2: "bias variance",
    S_X: "input variance",
    S_L: "weight-reuse mode ratio (1 under gradient independence)",
}

#: LaTeX names of the symbols whose plain names SymPy cannot typeset (``sp.latex(eq,
#: symbol_names=FINITE_WIDTH_LATEX)``).
FINITE_WIDTH_LATEX: dict[sp.Symbol, str] = {
    KAPPA: r"\kappa_l", KAPPA_NEXT: r"\kappa_{l+1}", KAPPA_W: r"\kappa_w", KAPPA1: r"\kappa_1",
    SIGMA_W2: r"\sigma_w^2", SIGMA_B2: r"\sigma_b^2",
    A2: r"E[a_l^2]", A_MEAN: r"E[a_l]",
    MS_VAR: r"\operatorname{Var}\Bigl[\tfrac{1}{n_l}\textstyle\sum_i z_{l,i}^2\Bigr]",
    H_COND: r"E[H_{l+1} \mid q_l]",
    E_COND: r"E[q_{l+1} \mid q_l]", VAR_COND: r"\operatorname{Var}[q_{l+1} \mid q_l]",
}

_f, _g, _u, _h, _mu = (sp.Function(name) for name in ("f", "g", "u", "h", "mu"))


def _functions(act: Activation) -> dict[str, sp.Expr]:
    """``f, g, u, h, mu`` as expressions in ``Q`` (closed forms where known)."""
    if act.traits.exact_at_finite_width:
        p, m = sp.nsimplify(act.expr.subs(X, 1)), sp.nsimplify(-act.expr.subs(X, -1))
        f = Q * (p**2 + m**2) / 2
        u = 3 * Q**2 * (p**4 + m**4) / 2
        mu = sp.sqrt(Q) * (p - m) / sp.sqrt(2 * sp.pi)
        return {"f": f, "u": u, "g": sp.expand(u - f**2), "h": (p**2 + m**2) / 2, "mu": mu}
    rules = act.closed_form
    out = {"f": _f(Q), "u": _u(Q), "h": _h(Q), "mu": _mu(Q)}
    if rules is not None and rules.exact:
        out["f"] = rules.second.subs(MU, 0).subs(sp.Symbol("q", positive=True), Q)
        out["mu"] = rules.mean.subs(MU, 0).subs(sp.Symbol("q", positive=True), Q)
    out["g"] = out["u"] - out["f"] ** 2 if act.traits.exact_at_finite_width else _g(Q)
    return out


#: Expressions with more operations than this are left as ``sp.diff`` returns them: ``simplify``
#: of GELU's closed-form derivatives alone took 30 s.
_SIMPLIFY_OPS = 60


def _simplified(expr: sp.Expr) -> sp.Expr:
    """``sp.simplify(expr)`` for small expressions, ``expr`` itself otherwise (a bounded cost)."""
    return sp.simplify(expr) if sp.count_ops(expr) <= _SIMPLIFY_OPS else expr


def _at(expr: sp.Expr, q: sp.Expr, order: int = 0) -> sp.Expr:
    """``d^order expr / dq^order`` at ``q`` (an unevaluated derivative for an unknown function)."""
    d = sp.diff(expr, Q, order) if order else expr
    return _simplified(d.subs(Q, q)) if not d.has(sp.Function) else d.subs(Q, q)


def finite_width_steps(activation: Activation | str) -> list[tuple[str, sp.Eq]]:
    r"""The :math:`1/n` recursion for ``activation`` as ``(statement, equation)`` pairs.

    >>> steps = finite_width_steps("relu")
    >>> [eq.rhs for text, eq in steps if text.startswith("Mean recursion")]
    [m_l*n_l*sigma_w^2/2 + sigma_b^2]
    """
    act = resolve_activation(activation)
    fn = _functions(act)
    C = SIGMA_W2 * N
    spread = V / 2 + KAPPA / 6
    f, f1, f2 = (_at(fn["f"], M, k) for k in (0, 1, 2))
    tidy = sp.expand if act.traits.exact_at_finite_width else (lambda e: e)
    g = _at(fn["g"], M)
    if act.traits.exact_at_finite_width:  # g(q) = g(1) q^2: E g(q_l) = g(1)(m^2 + v), exactly
        g = sp.expand(g + _at(fn["g"], M, 2) * V / 2)
    steps: list[tuple[str, sp.Eq]] = [
        (r"First layer (exact for a Gaussian input $x \sim N(0, s_x)$): $q_1 = \sigma_b^2 + \sigma_w^2 \lVert x\rVert^2$",
         sp.Eq(M1, SIGMA_B2 + SIGMA_W2 * N0 * S_X)),
        (r"Its variance over inputs ($\lVert x\rVert^2 / s_x$ is $\chi^2$ with $n_0$ degrees of freedom)",
         sp.Eq(V1, 2 * SIGMA_W2**2 * N0 * S_X**2)),
        (r"Fourth cumulant of $z_1$ given $x$, averaged (Gaussian input: $E x^4 = 3 s_x^2$)",
         sp.Eq(KAPPA1, 3 * KAPPA_W * SIGMA_W2**2 * N0 * S_X**2)),
        (r"Conditional mean of the next layer's variance (Edgeworth term $\kappa f''/6$)",
         sp.Eq(E_COND,
               SIGMA_B2 + C * (_at(fn["f"], Q) + KAPPA * _at(fn["f"], Q, 2) / 6))),
        (r"Conditional variance of the next layer's variance ($n_l$ i.i.d. units)",
         sp.Eq(VAR_COND, _simplified(C**2 * _at(fn["g"], Q) / N))),
        (r"Mean recursion (delta method to $O(1/n)$)",
         sp.Eq(M_NEXT, tidy(SIGMA_B2 + C * (f + f2 * spread)))),
        ((r"Variance recursion (the four-point vertex $V/n$ of Roberts-Yaida-Hanin; exact for "
          "degree-1 homogeneous activations and Gaussian weights)"),
         sp.Eq(V_NEXT, tidy(C**2 * (f1**2 * V + g / N)))),
        ("Kurtosis recursion",
         sp.Eq(KAPPA_NEXT, sp.expand(KAPPA_W * SIGMA_W2**2 * N * _at(fn["u"], M)))),
        ("Ensemble second moment of the activation",
         sp.Eq(A2, tidy(f + f2 * spread))),
        ("Ensemble mean of the activation",
         sp.Eq(A_MEAN, tidy(_at(fn["mu"], M) + _at(fn["mu"], M, 2) * spread))),
        (r"Variance over networks of one input's mean square $\frac{1}{n_l}\sum_i z_{l,i}^2$",
         sp.Eq(MS_VAR, (2 * (M**2 + V) + KAPPA) / N + V)),
        ("Backward factor given the forward pass (gradient independence)",
         sp.Eq(H_COND, _simplified(C * _at(fn["h"], M)))),
        (r"Weight-reuse mode ratio ($S_L = 1$)",
         sp.Eq(S_L, _simplified(1 + 2 * (M - SIGMA_B2) * _at(fn["h"], M, 1) / _at(fn["h"], M)
                                + (S_NEXT - 1) * (M - SIGMA_B2) * f1**2 / (f * _at(fn["h"], M))))),
    ]
    return steps
