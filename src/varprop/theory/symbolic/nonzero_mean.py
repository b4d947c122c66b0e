r"""Non-zero weight mean: the :math:`(m, D, C)` recursion, the moments conditional on the
layer-1 shift for a nonlinear activation (:mod:`varprop.theory.shifted`), the closed form over
depth and the backward growth for linear networks, and the fixed point.

A mixin of the builder in :mod:`varprop.theory.symbolic.recursion`: the per-layer steps it
composes come from :mod:`varprop.theory.symbolic.layer_steps`.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from varprop.components.activations import Activation, X
from varprop.theory.symbolic._algebra import (
    _dominant_eigenvalue,
    _eigenvalues,
    _eq,
    _simp,
    _sylvester_component,
)
from varprop.theory.symbolic.symbols import (
    A_C,
    A_D,
    A_M,
    B_C,
    B_D,
    C_DEPTH,
    C_L,
    C_PREV,
    CHI,
    D_DEPTH,
    D_L,
    D_PREV,
    DEPTH,
    FWD,
    G_C,
    G_D,
    GRAD_IN,
    LAMBDA_B,
    LAMBDA_F,
    LAMBDA_M,
    LAMBDA_P,
    M_L,
    N_IN,
    N_OUT,
    Q0,
    Q_STAR,
)

__all__: list[str] = []

# non-zero-mean nonlinear nets: the standardised layer-1 shift, a standard normal, the shift and
# the within-layer variance given u (see varprop.theory.shifted)
_U = sp.Symbol("u", real=True)
_XI = sp.Symbol("xi", real=True)
_SHIFT = sp.Function("s_l", real=True)
_WITHIN = sp.Function("r_l", positive=True)
_SHIFT_1 = sp.Function("s_1", real=True)
_WITHIN_1 = sp.Function("r_1", positive=True)
_SHIFT_NEXT = sp.Function("s_l+1", real=True)
_WITHIN_NEXT = sp.Function("r_l+1", positive=True)


class _NonzeroMean:
    """(m, D, C) recursion, depth, backward growth and fixed point for a non-zero weight mean."""

    act: Activation
    sb: Any
    bias: bool
    general: bool
    linear: bool
    first: Any
    n0: Any
    mu1: Any
    v1: Any
    n_prev: Any
    mu_g: Any
    v_g: Any
    mu_h: Any
    v_h: Any
    v_c: Any
    add: Any
    nonlinearity_moments_linear: Any

    def activation_moments_nonzero_mean(self) -> None:
        if self.linear:
            self.nonlinearity_moments_linear()
            return
        self.shifted_moments()

    def shifted_moments(self) -> None:
        r"""Non-zero weight mean, nonlinear activation: the moments conditional on the layer-1
        shared shift (:mod:`varprop.theory.shifted`), replacing a jointly-Gaussian closure that fails
        from layer 3 on (the shift is not Gaussian after a nonlinearity)."""
        u, xi = _U, _XI
        dens_u = sp.exp(-u**2 / 2) / sp.sqrt(2 * sp.pi)
        dens_xi = sp.exp(-xi**2 / 2) / sp.sqrt(2 * sp.pi)
        s_l, r_l = _SHIFT(u), _WITHIN(u)
        phi, dphi = self.act.expr, self.act.derivative
        z = s_l + sp.sqrt(r_l) * xi
        self.add("activation", "shift.first", "Shared shift of layer 1",
                 "z_1,i = s_1 + sigma_w sum_j eps_ij x_j + b_i with W_ij = mu_w + sigma_w eps_ij: every "
                 "unit carries s_1 = mu_w sum_j x_j, exactly N(0, mu_w^2 n_in q_0) (Gaussian inputs); "
                 "u = s_1 / sqrt(mu_w^2 n_in q_0) ~ N(0, 1).",
                 _eq(_SHIFT_1(u), _simp(self.mu1 * sp.sqrt(self.n0 * Q0)) * u),
                 "sum of independent zero-mean Gaussian inputs")
        self.add("activation", "shift.first_within", "Within-layer variance of layer 1",
                 "Given u the units of layer 1 are i.i.d. with variance sigma_w^2 E[|x|^2 | u] + sigma_b^2, "
                 "E[|x|^2 | u] = q_0 (n_in - 1 + u^2).",
                 _eq(_WITHIN_1(u), _simp(self.v1 * Q0 * (self.n0 - 1 + u**2)) + self.sb),
                 "x = (sum_j x_j / n_in) 1 + x_perp with |x_perp|^2 ~ q_0 chi^2_{n_in - 1} independent of u")
        n, v, mu = self.n_prev, self.v_h, self.mu_h
        rhs = sp.ImmutableMatrix([
            _simp(mu * n) * sp.Integral(phi.subs(X, z) * dens_xi, (xi, -sp.oo, sp.oo)),
            _simp(v * n) * sp.Integral(phi.subs(X, z)**2 * dens_xi, (xi, -sp.oo, sp.oo)) + self.sb])
        self.add("activation", "shift.recursion", "Shift and within-layer variance, given u",
                 "At large width, given u, the next shift mu_w sum_j phi(z_l,j) is deterministic (its "
                 "fluctuation is O(n^-1/2) relative) and the units are i.i.d. N(s_l(u), r_l(u)) "
                 "(central limit theorem in the weights' random part); n is the fan-in"
                 + (" n_{l-1}." if self.general else " (n_out for layers 2..L)."),
                 _eq(sp.ImmutableMatrix([_SHIFT_NEXT(u), _WITHIN_NEXT(u)]), rhs),
                 "sum of n conditionally i.i.d. terms; the shift is NOT Gaussian after a nonlinearity, "
                 "so units are not jointly Gaussian unconditionally")
        quad = ("averaged over u ~ N(0, 1) by numerical quadrature (varprop.theory.shifted: composite "
                "Gauss-Legendre in u, vectorised Gaussian quadrature in xi)")

        def over_u(expr: sp.Expr) -> sp.Integral:
            return sp.Integral(expr * dens_u, (u, -sp.oo, sp.oo))

        def given_u(expr: sp.Expr) -> sp.Integral:
            return sp.Integral(expr.subs(X, z) * dens_xi, (xi, -sp.oo, sp.oo))

        for key, sym, e in (("mean", A_M, given_u(phi)), ("second", A_D, given_u(phi**2)),
                            ("cross", A_C, given_u(phi)**2), ("deriv_second", B_D, given_u(dphi**2)),
                            ("deriv_cross", B_C, given_u(dphi)**2)):
            self.add("activation", f"moment.{key}", f"Activation moment {sym}",
                     f"{sym} of layer l: the conditional moment given the layer-1 shift u, "
                     "averaged over u" + (" (two units i != k are independent given u, so the cross "
                                          "moment is the square of the conditional mean)" if "cross" in key else "")
                     + "; " + quad + ".",
                     _eq(sym, over_u(e)), "conditioning on u (law of total expectation)")
        self.add("activation", "shift.moments", "Pre-activation moments",
                 "m_l = E_u[s_l], D_l = E_u[s_l^2 + r_l], C_l = E_u[s_l^2]; the (m, D, C) steps above are "
                 "the same numbers (identities given A_m, A_D, A_C).",
                 _eq(sp.ImmutableMatrix([M_L, D_L, C_L]),
                     sp.ImmutableMatrix([over_u(s_l), over_u(s_l**2 + r_l), over_u(s_l**2)])),
                 "conditioning on u")

    def recursion_nonzero_mean(self) -> None:
        sb = self.sb
        n, v, mu = self.n_prev, self.v_h, self.mu_h
        if self.linear:
            M_h = sp.ImmutableMatrix([[n * (v + mu**2), n * (n - 1) * mu**2], [n * mu**2, n * (n - 1) * mu**2]]).applyfunc(_simp)
            b = sp.ImmutableMatrix([sb, 0])
            rhs = sp.MatAdd(sp.MatMul(M_h, sp.ImmutableMatrix([D_PREV, C_PREV])), b) if self.bias else \
                sp.MatMul(M_h, sp.ImmutableMatrix([D_PREV, C_PREV]))
            self.add("recursion", "recursion", "Per-layer recursion of (D, C)",
                     "For linear layers D' = n(sigma_w^2 + mu_w^2) D + n(n-1) mu_w^2 C (+ sigma_b^2) and "
                     "C' = mu_w^2 (n D + n(n-1) C), with n the fan-in"
                     + (" n_{l-1}." if self.general else " (n_out for layers 2..L)."),
                     _eq(sp.ImmutableMatrix([D_L, C_L]), rhs),
                     "the D and C steps with A_D = D_{l-1}, A_C = C_{l-1}: exact at finite width")
            ng, vg, mg = N_IN, self.v_g, self.mu_g
            M_g = sp.Matrix([[ng * (vg + mg**2), ng * (ng - 1) * mg**2], [ng * mg**2, ng * (ng - 1) * mg**2]])
            self.forward_map = sp.ImmutableMatrix(M_g * sp.Matrix([D_PREV, C_PREV]) + sp.Matrix([sb, 0]))
            self.forward_factor = _dominant_eigenvalue(M_g)
            mc = mg.subs(N_IN, N_OUT)  # a hidden layer n_out -> n_out
            self.hidden_factor = _dominant_eigenvalue(sp.Matrix(
                [[N_OUT * (self.v_c + mc**2), N_OUT * (N_OUT - 1) * mc**2],
                 [N_OUT * mc**2, N_OUT * (N_OUT - 1) * mc**2]]))
            self.add("recursion", "forward_factor", "Forward growth per layer",
                     "At large depth (D, C) grow by the largest eigenvalue lambda_F of the map of a "
                     "layer with fan-in n_in (U[0,1) weights: about n^2 mu_w^2 per layer).",
                     _eq(LAMBDA_F, self.forward_factor), "eigenvalues of the 2x2 (D, C) matrix")
            self.M_h, self.b_vec = M_h, b
        else:
            s2 = n * A_D + n * (n - 1) * A_C
            d_new = _simp(v * n * A_D + mu**2 * s2 + sb)
            c_new = _simp(mu**2 * s2)
            self.add("recursion", "recursion", "Per-layer recursion of (m, D, C)",
                     "With A_m, A_D, A_C of layer l-1 from the activation steps"
                     + (" (fan-in n_{l-1})." if self.general else " (fan-in n_out for layers 2..L)."),
                     _eq(sp.ImmutableMatrix([M_L, D_L, C_L]), sp.ImmutableMatrix([_simp(mu * n * A_M), d_new, c_new]),
                           evaluate=False), "the mean, D and C steps with the scheme's moments substituted")
            ng, vg, mg = N_IN, self.v_g, self.mu_g
            s2g = ng * A_D + ng * (ng - 1) * A_C
            self.forward_map = sp.ImmutableMatrix([_simp(mg * ng * A_M), _simp(vg * ng * A_D + mg**2 * s2g + sb), _simp(mg**2 * s2g)])
            self.forward_factor = _simp((vg * ng * A_D + mg**2 * s2g) / D_PREV)
            self.hidden_factor = _simp(self.forward_factor.subs(N_IN, N_OUT)) if not self.general else self.forward_factor
            self.add("recursion", "forward_factor", "Forward factor of a layer",
                     "F = (D_l - sigma_b^2) / D_{l-1}: it depends on the activation moments A_D, A_C "
                     "of the layer below (no constant factor).", _eq(FWD, self.forward_factor),
                     "the D step divided by D_{l-1}")

    def depth_nonzero_mean(self) -> None:
        self.closed_form_depth = None
        if not self.linear or self.general:
            return
        M = sp.Matrix(self.M_h)
        x1 = sp.Matrix(self.first)
        if self.bias:
            x_star = ((sp.eye(2) - M).inv() * sp.Matrix(self.b_vec)).applyfunc(_simp)
        else:
            x_star = sp.zeros(2, 1)
        lam_p, lam_m = _eigenvalues(M)
        self.eigen_subs = {LAMBDA_P: lam_p, LAMBDA_M: lam_m}
        self.add("depth", "eigenvalues", "Eigenvalues of the hidden-layer matrix",
                 "M (the (D, C) matrix of a hidden layer, fan-in n_out) has two real eigenvalues.",
                 _eq(sp.ImmutableMatrix([LAMBDA_P, LAMBDA_M]), sp.ImmutableMatrix([lam_p, lam_m])),
                 "roots of lambda^2 - tr(M) lambda + det(M) = 0")
        d_compact, c_compact = (_sylvester_component(M, x1 - x_star, i, DEPTH - 1) + x_star[i]
                                for i in range(2))
        self.closed_form_display = d_compact
        self.closed_form_depth = d_compact.subs(self.eigen_subs)
        self.add("depth", "closed_form_depth", "Closed form over depth",
                 "(D_L, C_L) = x* + M^(L-1) ((D_1, C_1) - x*) with the fixed point x* = (I - M)^-1 (sigma_b^2, 0) "
                 "and M^k = (lambda_+^k (M - lambda_- I) - lambda_-^k (M - lambda_+ I)) / (lambda_+ - lambda_-); "
                 "Var(z_L) = D_L since the mean stays 0.",
                 _eq(sp.ImmutableMatrix([D_DEPTH, C_DEPTH]), sp.ImmutableMatrix([d_compact, c_compact])),
                 "Sylvester's formula for the power of a 2x2 matrix with distinct eigenvalues")

    def backward_factors_nonzero_mean(self) -> None:
        ng, vg, mg = N_OUT, self.v_g, self.mu_g
        if self.linear:
            M_b = sp.Matrix([[ng * (vg + mg**2), ng * (ng - 1) * mg**2], [ng * mg**2, ng * (ng - 1) * mg**2]])
            self.backward_factor = _dominant_eigenvalue(M_b)
            self.add("backward", "backward.chi", "Backward growth per layer",
                     "At large depth (G_D, G_C) grow by the largest eigenvalue lambda_B of the backward "
                     "map of a layer with fan-out n_out.", _eq(LAMBDA_B, self.backward_factor),
                     "eigenvalues of the 2x2 (G_D, G_C) matrix")
            self.gradient_depth = None
            if not self.general:
                mu1, v1, mh, vh = self.mu1, self.v1, self.mu_h, self.v_h
                row1 = sp.Matrix([[N_OUT * (v1 + mu1**2), N_OUT * (N_OUT - 1) * mu1**2]])
                Mh = sp.Matrix([[N_OUT * (vh + mh**2), N_OUT * (N_OUT - 1) * mh**2], [N_OUT * mh**2, N_OUT * (N_OUT - 1) * mh**2]])
                lam_p, lam_m = _eigenvalues(Mh)
                g = _sylvester_component(Mh, sp.Matrix([1, 0]), 0, DEPTH - 1, row=row1)
                self.gradient_display = g
                self.gradient_depth = g.subs({LAMBDA_P: lam_p, LAMBDA_M: lam_m})
                self.add("backward", "backward.input_gradient", "Gradient at the network input",
                         "E[(dL/dx)^2] = H_D of layer 1 after L - 1 backward steps from (G_D, G_C) = (1, 0).",
                         _eq(GRAD_IN, g), "matrix power of the linear backward recursion")
        else:
            self.backward_factor = _simp(B_D * (ng * (vg + mg**2) + ng * (ng - 1) * mg**2 * G_C / G_D))
            self.gradient_depth = None
            self.add("backward", "backward.chi", "Backward factor of a layer",
                     "G_{D,l-1} / G_{D,l}: it depends on B_D and on the ratio G_C / G_D (no constant factor).",
                     _eq(CHI, self.backward_factor), "the two backward steps combined")

    def fixed_point_nonzero_mean(self) -> None:
        self.fixed_point, self.stability = None, None
        if self.linear:
            M = sp.Matrix(self.M_h) if not self.general else None
            if M is None:
                self.fixed_point_equation = None
                return
            lam = _dominant_eigenvalue(M)
            self.fixed_point_equation = _eq(sp.ImmutableMatrix([D_L, C_L]), sp.MatMul(self.M_h, sp.ImmutableMatrix([D_L, C_L]))
                                              if not self.bias else sp.MatAdd(sp.MatMul(self.M_h, sp.ImmutableMatrix([D_L, C_L])), self.b_vec),
                                              evaluate=False)
            if self.bias:
                sol = (sp.eye(2) - M).inv() * sp.Matrix(self.b_vec)
                self.fixed_point = _simp(sol[0])
            else:
                self.fixed_point = sp.Integer(0)
            self.stability = sp.Lt(lam, 1, evaluate=False)
            self.add("fixed_point", "fixed_point", "Fixed point",
                     "The (D, C) recursion is affine: its fixed point D* (first component of (I - M)^-1 (sigma_b^2, 0)) "
                     "attracts iff the largest eigenvalue of the hidden-layer matrix is < 1.",
                     _eq(Q_STAR, self.fixed_point), "solve (D, C) = M (D, C) + (sigma_b^2, 0)")
            return
        s2 = N_OUT * A_D + N_OUT * (N_OUT - 1) * A_C
        self.fixed_point_equation = _eq(sp.ImmutableMatrix([D_L, C_L]),
                                          sp.ImmutableMatrix([_simp(self.v_c * N_OUT * A_D + self.mu_h.subs(self.n_prev, N_OUT)**2 * s2 + self.sb),
                                                              _simp(self.mu_h.subs(self.n_prev, N_OUT)**2 * s2)]))
        self.add("fixed_point", "fixed_point", "No closed-form fixed point",
                 "A fixed point of (D, C) has A_D, A_C evaluated at (D, C) themselves; with correlated "
                 "units these need quadrature, so it is found numerically if it exists.",
                 self.fixed_point_equation, "the recursion with (D_l, C_l) = (D_{l-1}, C_{l-1})")

