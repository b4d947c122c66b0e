r"""The per-layer steps of the MLP derivation, built from the layers' own symbolic rules.

A dense layer contributes its weight moments and the moment map of :math:`z = W a + b`
(:meth:`varprop.layers.Dense.forward_moments`, :meth:`~varprop.layers.Dense.backward_moments`);
a nonlinearity contributes the Gaussian moments of its activation
(:meth:`varprop.layers.Nonlinearity.symbolic_moments`, or the defining integrals
:meth:`~varprop.layers.Nonlinearity.moment_integrals` where there is no closed form).  The
builder of :mod:`varprop.theory.symbolic.recursion` composes these steps with the recursion over
depth, the backward factor and the fixed point.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sympy as sp

from varprop.components.activations import MU, Activation, Q, X
from varprop.components.schemes import InitScheme
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.theory.symbolic._algebra import _eq, _is_zero, _simp
from varprop.theory.symbolic.derivation import Step
from varprop.theory.symbolic.symbols import (
    A_C,
    A_D,
    A_M,
    B_C,
    B_D,
    C_1,
    C_L,
    C_PREV,
    COV_Z,
    D_1,
    D_L,
    D_PREV,
    E_DPHI2,
    E_PHI,
    E_PHI2,
    G_C,
    G_CP,
    G_D,
    G_L,
    GJ_C,
    GJ_D,
    LAYER,
    M_L,
    MU_W,
    N_IN,
    N_OUT,
    Q0,
    Q_1,
    Q_L,
    Q_PREV,
    QT_L,
    QT_PREV,
    SIGMA_W2,
    VAR_A,
    VAR_Z,
    WGRAD_L,
    WIDTH,
)

__all__ = ["SERIES_ORDER", "scheme_text"]

SERIES_ORDER = 5

def scheme_text(scheme: InitScheme) -> str:
    """``"<scheme>: <how its entries are drawn>"`` (the weight law's own sentence) for the
    assumptions and justifications."""
    return f"{scheme!r}: {scheme.family.summary()}"


@lru_cache(maxsize=64)
def _zero_mean_moments(act: Activation) -> tuple[Any, Any, Any]:
    """``(E phi, E phi^2, E phi'^2)`` at ``N(0, q)`` from the registered closed form (or Nones)."""
    rules = Nonlinearity(act).symbolic_moments(0, Q)
    if rules is None:
        return None, None, None
    return tuple(_simp(rules[m]) for m in ("mean", "second", "deriv_second"))


@lru_cache(maxsize=64)
def _series_second(act: Activation) -> tuple[sp.Expr, sp.Expr] | None:
    r"""Small-signal series of :math:`E\phi^2` and :math:`E\phi'^2` at :math:`\mu = 0`, truncated
    where the Taylor polynomial of order :data:`SERIES_ORDER` is still exact."""
    try:
        rules = act.series_rules(SERIES_ORDER)
    except Exception:  # pragma: no cover - activations without a Taylor series at 0
        return None
    out = []
    for expr, degree in ((rules.second, SERIES_ORDER // 2), (rules.deriv_second, (SERIES_ORDER - 1) // 2)):
        poly = sp.Poly(sp.expand(expr.subs(MU, 0)), Q)
        kept = sum((c * Q**p for (p,), c in poly.terms() if p <= degree), sp.Integer(0))
        out.append(kept + sp.O(Q ** (degree + 1)))
    return out[0], out[1]


_MOMENT_LABELS = {"mean": "E[phi]", "second": "E[phi^2]", "deriv_mean": "E[phi']",
                  "deriv_second": "E[phi'^2]"}


@lru_cache(maxsize=64)
def _symmetry_reason(act: Activation) -> str:
    """`` (phi(x) + phi(-x) = 2c, so E[phi(z)] = c by the symmetry of N(0, q))`` when SymPy proves
    the point symmetry, else ``""``."""
    try:
        total = sp.simplify(act.expr + act.expr.subs(X, -X))
    except Exception:  # pragma: no cover - SymPy cannot simplify the expression
        return ""
    if total.free_symbols:
        return ""
    return f" (phi(x) + phi(-x) = {total}, so E[phi(z)] = {sp.nsimplify(total / 2)} by the symmetry of N(0, q))"



class _LayerSteps:
    """The Dense and Nonlinearity steps of the MLP derivation (a mixin of the builder, which
    provides ``act``, ``scheme``, ``rules``, the weight moments and ``add``)."""

    act: Activation
    scheme: InitScheme
    rules: Any
    steps: list[Step]
    sb: Any
    general: bool
    zero_mean: bool
    linear: bool
    n0: Any
    mu1: Any
    v1: Any
    mu_g: Any
    v_g: Any
    v_h: Any
    m0: Any
    s0: Any
    d0: Any

    def add(self, section: str, key: str, title: str, statement: str, equation: sp.Basic,
            justification: str) -> None:
        self.steps.append(Step(key, section, title, statement, equation, justification))

    def scheme_text(self) -> str:
        return scheme_text(self.scheme)

    def moment_justification(self, moment: str = "second") -> str:
        """Where ``moment`` (``"mean"``, ``"second"``, ``"deriv_mean"``, ``"deriv_second"``) comes
        from; an approximate closed form states that moment's own declared error (0: exact)."""
        act, rules = self.act, self.rules
        if rules is None:
            return ("no closed form is registered: the reference is the numerical Gaussian "
                    "quadrature of varprop._math.quadrature (good to about 1e-12)")
        if rules.exact:
            ref = f" ({act.reference})" if act.reference else ""
            return f"exact closed form for z ~ N(0, q){ref}"
        err = rules.max_relative_error.get(moment)
        label = _MOMENT_LABELS[moment]
        if err == 0.0:
            why = _symmetry_reason(act) if moment == "mean" else ""
            return (f"exact for z ~ N(0, q){why}: the approximation {rules.approximation} leaves "
                    f"{label} unchanged (declared error 0)")
        bound = f"; max relative error of {label} {err:.1%} over q > 0" if err else \
            f"; no error bound declared for {label}"
        return f"APPROXIMATION {rules.approximation}{bound}; exact reference: quadrature"


    # ----- Dense -------------------------------------------------------------------------------
    def weights(self) -> None:
        mu_eq = self.mu_g
        self.add("weights", "weight_mean", "Weight mean",
                 "The mean of a weight entry of a layer with fan-in n_in and fan-out n_out.",
                 _eq(MU_W, mu_eq), f"from the scheme {self.scheme_text()}")
        self.add("weights", "weight_variance", "Weight variance",
                 "The variance of a weight entry of a layer with fan-in n_in and fan-out n_out.",
                 _eq(SIGMA_W2, self.v_g), f"from the scheme {self.scheme_text()}")
        if self.general:
            self.add("weights", "weight_variance_layer", "Weight variance of layer l",
                     "Layer l has fan-in n_{l-1} and fan-out n_l.",
                     _eq(SIGMA_W2, self.v_h), "the same formula with n_in = n_{l-1}, n_out = n_l")
        elif not _is_zero(self.v_h - self.v_g):
            self.add("weights", "weight_variance_hidden", "Weight variance of the hidden layers",
                     "Layers 2..L map n_out -> n_out.", _eq(SIGMA_W2, self.v_h),
                     "the same formula with n_in = n_out")

    def dense_forward_zero_mean(self) -> None:
        """The Dense rule with zero-mean weights: mean 0, variance, and the first layer."""
        sb = self.sb
        mean, second, _ = Dense.forward_moments(sp.Integer(0), SIGMA_W2, N_IN, A_M, A_D, A_C, sb)
        self.add("forward", "mean", "Mean of the pre-activation",
                 "E[z_l,i] = sum_j E[W_ij] E[a_{l-1,j}] + E[b_i] = 0.", _eq(M_L, mean),
                 "W_l is independent of a_{l-1} and has zero mean; biases have zero mean")
        just = ("cross terms vanish: E[W_ij W_ij'] = 0 for j != j' (independent zero-mean entries"
                + ("" if self.scheme.is_iid else ", or sign symmetry of the Haar measure")
                + "); the second moment A_D = E[a^2] enters, not Var(a)")
        self.add("forward", "variance", "Variance of the pre-activation",
                 "Var(z_l,i) = E[z_l,i^2] = sum_j E[W_ij^2] E[a_{l-1,j}^2] + sigma_b^2 for a layer "
                 "with fan-in n_in, where A_D = E[a_{l-1,j}^2].",
                 _eq(Q_L, second), just)
        self.q1 = _simp(Dense.forward_moments(self.mu1, self.v1, self.n0, 0, Q0, 0, 0)[1]) + sb
        self.add("forward", "first_layer", "First layer",
                 "The input is not passed through phi: A_D = E[x_j^2] = q_0.",
                 _eq(Q_1, self.q1), "the variance step with sigma_w^2 of layer 1 substituted")

    def dense_forward_nonzero_mean(self) -> None:
        """The Dense rule with a non-zero weight mean: m, D, C, variance, covariance, first layer."""
        sb, n = self.sb, N_IN
        mean, second, cross = Dense.forward_moments(MU_W, SIGMA_W2, n, A_M, A_D, A_C, sb)
        self.add("forward", "mean", "Mean of the pre-activation",
                 "E[z_l,i] = mu_w n_in E[a_{l-1}] with A_m = E[a_{l-1,j}]; m_1 = 0 since the input has zero mean.",
                 _eq(M_L, mean), "linearity of expectation; W_l independent of a_{l-1}")
        self.add("forward", "second_moment", "Second moment D of the pre-activation",
                 "D_l = E[z_l,i^2] with A_D = E[a_j^2], A_C = E[a_j a_j'] (j != j') of the layer below.",
                 _eq(D_L, second),
                 "E[W_ij W_ij'] = mu_w^2 for j != j' and sigma_w^2 + mu_w^2 for j = j'")
        self.add("forward", "cross_moment", "Cross moment C of the pre-activation",
                 "C_l = E[z_l,i z_l,k] for units i != k: a shared weight mean correlates them.",
                 _eq(C_L, cross), "W_ij and W_kj' are independent for i != k: E = mu_w^2")
        self.add("forward", "variance", "Variance of the pre-activation",
                 "Var(z_l,i) = D_l - m_l^2; Cov(z_l,i, z_l,k) = C_l - m_l^2.",
                 _eq(VAR_Z, D_L - M_L**2), "definition of the variance")
        self.add("forward", "covariance", "Covariance of two units",
                 "Cov(z_l,i, z_l,k) = C_l - m_l^2 for i != k: zero only if mu_w = 0.",
                 _eq(COV_Z, C_L - M_L**2), "definition of the covariance")
        _, d1, c1 = Dense.forward_moments(self.mu1, self.v1, self.n0, 0, Q0, 0, sb)
        self.first = sp.ImmutableMatrix([_simp(d1), _simp(c1)])
        self.add("forward", "first_layer", "First layer",
                 "The input has A_m = 0, A_D = q_0, A_C = 0 (independent zero-mean entries).",
                 _eq(sp.ImmutableMatrix([D_1, C_1]), self.first),
                 "the D and C steps with the scheme's moments substituted")

    def dense_backward(self) -> None:
        """The Dense rule backward: the gradient g = W^T delta at the layer's input."""
        n = WIDTH[LAYER] if self.general else N_OUT
        if self.zero_mean:
            grad, _ = Dense.backward_moments(sp.Integer(0), SIGMA_W2, n, QT_L, 0)
            self.add("backward", "backward.gradient", "Gradient at a layer's input",
                     "With g = W_l^T delta_l, E[(dL/da_{l-1,j})^2] = sum_i E[W_ij^2] E[delta_l,i^2] "
                     "(n_l terms; the fan-out of layer l).", _eq(G_L, grad),
                     "zero-mean weights independent of delta_l (gradient independence assumption)")
            return
        h_d, h_c = Dense.backward_moments(MU_W, SIGMA_W2, n, G_D, G_C)
        self.add("backward", "backward.gradient", "Gradient at a layer's input",
                 "With g = W_l^T delta_l and G_D = E[delta_i^2], G_C = E[delta_i delta_k] (n = fan-out n_l): "
                 "H_D = E[g_j^2], H_C = E[g_j g_k]; G_D = 1, G_C = 0 at the last layer.",
                 _eq(sp.ImmutableMatrix([GJ_D, GJ_C]), sp.ImmutableMatrix([h_d, h_c]), evaluate=False),
                 "E[W_ij W_i'j] = mu_w^2 for i != i', sigma_w^2 + mu_w^2 for i = i'")

    def weight_gradient(self) -> None:
        self.add("backward", "backward.weight_gradient", "Weight gradient",
                 "E[(dL/dW_l)_ij^2] = E[delta_l,i^2] E[a_{l-1,j}^2] (with a_0 = x, E[x^2] = q_0).",
                 _eq(WGRAD_L, QT_L * A_D), "dL/dW_ij = delta_i a_j with delta_l independent of a_{l-1}"
                 + ("" if self.linear or self.zero_mean else
                    " given u: the product is averaged over u, E_u[G_D(u) A_D(u)], with E[x_j^2 | u] = "
                    "q_0 (n_in - 1 + u^2) / n_in for the first layer"))

    # ----- Nonlinearity ------------------------------------------------------------------------
    def nonlinearity_moments_zero_mean(self) -> None:
        """The Nonlinearity rule at z ~ N(0, q): closed forms, or the defining integrals."""
        just = self.moment_justification()
        name = self.act.name
        if self.rules is None:
            integrals = Nonlinearity(self.act).moment_integrals(0, Q)
            for key, sym in (("mean", E_PHI), ("second", E_PHI2), ("deriv_second", E_DPHI2)):
                self.add("activation", f"moment.{key}", f"Gaussian moment {sym}",
                         f"For z ~ N(0, q) with z = sqrt(q) t, t ~ N(0, 1) ({name}).",
                         _eq(sym, integrals[key]), just)
            return
        self.add("activation", "moment.mean", "Mean of the activation",
                 f"E[phi(z)] for z ~ N(0, q), phi = {name}.", _eq(E_PHI, self.m0),
                 self.moment_justification("mean"))
        self.add("activation", "moment.second", "Second moment of the activation",
                 "E[phi(z)^2] for z ~ N(0, q): what the next layer's variance uses.",
                 _eq(E_PHI2, self.s0), self.moment_justification("second"))
        self.add("activation", "moment.deriv_second", "Second moment of the derivative",
                 "E[phi'(z)^2] for z ~ N(0, q): what the backward pass uses.",
                 _eq(E_DPHI2, self.d0), self.moment_justification("deriv_second"))
        if not self.rules.exact:
            series = _series_second(self.act)
            if series is not None:
                self.add("activation", "moment.series", "Small-signal series",
                         f"For small q the Taylor polynomial of {name} (order {SERIES_ORDER}) gives "
                         "E[phi(z)^2] exactly up to the stated order in q.",
                         _eq(E_PHI2, series[0]),
                         "Gaussian moments of the Taylor polynomial, E[t^{2k}] = (2k-1)!!")
        self.add("activation", "activation_variance", "Variance of the activation",
                 "Var(a_l) = E[a_l^2] - E[a_l]^2 at q = q_l: it differs from E[a^2] when E[phi] != 0.",
                 _eq(VAR_A, _simp(self.s0 - self.m0**2)), "definition of the variance")


    def nonlinearity_moments_linear(self) -> None:
        """The Nonlinearity rule of the identity: moments pass through exactly."""
        c = Nonlinearity(self.act).linear_slope()
        self.add("activation", "moment.linear", "Moments of the identity",
                 "phi(z) = z: A_m = m_{l-1} = 0, A_D = D_{l-1}, A_C = C_{l-1}; exact, no Gaussianity needed.",
                 _eq(sp.ImmutableMatrix([A_M, A_D, A_C]), sp.ImmutableMatrix([c * 0, c**2 * D_PREV, c**2 * C_PREV]),
                     evaluate=False), "phi is the identity; the mean stays 0 from m_1 = 0")

    def nonlinearity_backward(self) -> None:
        """The Nonlinearity rule backward: delta = phi'(z) * g (gradient independence)."""
        if self.zero_mean:
            d_prev = (E_DPHI2 if self.d0 is None else self.d0).subs(Q, Q_PREV)
            self.add("backward", "backward.delta", "Back-propagated error",
                     "delta_{l-1} = phi'(z_{l-1}) * (W_l^T delta_l), starting from tilde q_L = 1.",
                     _eq(QT_PREV, d_prev * G_L),
                     "gradient independence: phi'(z_{l-1}) independent of W_l^T delta_l, z_{l-1} ~ N(0, q_{l-1})")
            return
        self.add("backward", "backward.delta", "Back-propagated error",
                 "delta_{l-1} = phi'(z_{l-1}) * g: G_D' = B_D H_D and G_C' = B_C H_C with B_D = E[phi'^2], "
                 "B_C = E[phi'(z_i) phi'(z_k)] of layer l-1.",
                 _eq(sp.ImmutableMatrix([QT_PREV, G_CP]), sp.ImmutableMatrix([B_D * GJ_D, B_C * GJ_C])),
                 "gradient independence assumption" + (" (exact for linear layers: B_D = B_C = 1)" if self.linear else
                                                       "; for a nonlinear activation every quantity here is "
                                                       "conditional on the layer-1 shift u (B_D = E[phi'^2 | u], "
                                                       "B_C = E[phi' | u]^2, G and H given u) and the reported "
                                                       "moments are averages over u (varprop.theory.shifted)"))
