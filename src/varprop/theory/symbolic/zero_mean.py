r"""Zero-mean weights: the per-layer recursion of :math:`q_l`, its closed form over depth, the
backward factor :math:`\chi` and the fixed point (Poole et al. 2016; Schoenholz et al. 2017).

A mixin of the builder in :mod:`varprop.theory.symbolic.recursion`: the per-layer steps it
composes come from :mod:`varprop.theory.symbolic.layer_steps`.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from varprop.components.activations import Activation, Q, X
from varprop.theory.symbolic._algebra import (
    _below_one_for_some_width,
    _eq,
    _is_one,
    _is_zero,
    _simp,
    _truth,
)
from varprop.theory.symbolic.symbols import (
    CHI,
    DEPTH,
    DF_STAR,
    E_DPHI2,
    E_PHI2,
    FWD,
    GRAD_IN,
    K_INDEX,
    LAYER,
    N_IN,
    N_OUT,
    Q_DEPTH,
    Q_L,
    Q_PREV,
    Q_SEQ,
    Q_STAR,
    WIDTH,
)

__all__: list[str] = []


class _ZeroMean:
    """Recursion, depth, backward factor and fixed point for zero-mean weights."""

    act: Activation
    sb: Any
    bias: bool
    general: bool
    homogeneous: bool
    k: Any
    kd: Any
    q1: Any
    n1: Any
    v1: Any
    n_prev: Any
    n_cur: Any
    v_g: Any
    v_h: Any
    v_c: Any
    s0: Any
    d0: Any
    add: Any

    def recursion_zero_mean(self) -> None:
        sb = self.sb
        second_prev = (E_PHI2 if self.s0 is None else self.s0).subs(Q, Q_PREV)
        f_h = _simp(self.n_prev * self.v_h * second_prev) + sb
        self.add("recursion", "recursion", "Per-layer recursion",
                 ("For l >= 2 the input of layer l is a_{l-1} = phi(z_{l-1}) with z_{l-1} ~ N(0, q_{l-1}); "
                  + ("layer l has fan-in n_{l-1}." if self.general else "hidden layers have fan-in n_out.")),
                 _eq(Q_L, f_h), "the variance step with the activation moment and sigma_w^2 substituted")
        s0 = E_PHI2 if self.s0 is None else self.s0
        self.forward_map = _simp(N_IN * self.v_g * s0) + sb
        self.forward_factor = _simp(N_IN * self.v_g * s0 / Q)
        self.hidden_factor = _simp(N_OUT * self.v_c * s0 / Q)
        fwd_display = self.forward_factor.subs(Q, Q_PREV)
        self.add("recursion", "forward_factor", "Forward factor of a layer",
                 "F = (q_l - sigma_b^2) / q_{l-1} = n_in sigma_w^2 E[phi^2] / q for a layer with fan-in "
                 "n_in and fan-out n_out" + (" (independent of q: phi is positively homogeneous)."
                                            if self.homogeneous else " (it depends on q)."),
                 _eq(FWD, fwd_display), "the recursion divided by q_{l-1}")
        if not self.general and not _is_zero(self.hidden_factor - self.forward_factor):
            self.add("recursion", "hidden_factor", "Forward factor of a hidden layer",
                     "The same factor for layers 2..L (n_in = n_out).",
                     _eq(FWD, self.hidden_factor.subs(Q, Q_PREV)), "forward factor with n_in = n_out")

    def depth_zero_mean(self) -> None:
        self.closed_form_depth = None
        if not self.homogeneous:
            return
        L, sb, q1 = DEPTH, self.sb, self.q1
        if self.general:
            l, k = LAYER, K_INDEX
            c_l = _simp(self.n_prev * self.v_h * self.k)
            prod = sp.Product(c_l, (l, 2, L))
            expr = q1 * prod
            if self.bias:
                expr += sb * sp.Sum(sp.Product(c_l, (l, k + 1, L)), (k, 2, L))
            if not c_l.has(WIDTH):  # a constant factor: the products are powers, the sum geometric
                expr = _simp(expr.doit())
            just = "unrolling the affine recursion q_l = c_l q_{l-1} + sigma_b^2 from q_1"
        else:
            c = _simp(N_OUT * self.v_c * self.k)
            geo = q1 * c ** (L - 1)
            if not self.bias:
                expr = geo
            elif _is_one(c):
                expr = q1 + (L - 1) * sb
            else:
                affine = geo + sb * (c ** (L - 1) - 1) / (c - 1)
                decided = _truth(sp.Eq(c, 1))
                expr = affine if decided is False or c.is_number else sp.Piecewise(
                    (q1 + (L - 1) * sb, sp.Eq(c, 1)), (affine, True))
            # not normalised as a whole: cancel() would split c^(L-1) into integer powers
            # (10001^(L-1) 20000^(1-L)) that overflow floats when lambdified
            just = ("geometric recursion q_l = c q_{l-1}" + (" + sigma_b^2 (geometric sum)" if self.bias else "")
                    + " with c the hidden-layer factor; solves the recursion (verified in the tests by "
                    "substitution and sympy.rsolve)")
        self.closed_form_depth = expr
        self.add("depth", "closed_form_depth", "Closed form over depth",
                 "The pre-activation variance of the last layer as a function of the depth L.",
                 _eq(Q_DEPTH, expr), just)

    def backward_factors_zero_mean(self) -> None:
        d0 = E_DPHI2 if self.d0 is None else self.d0
        self.backward_factor = _simp(N_OUT * self.v_g * d0)
        self.hidden_backward = _simp(N_OUT * self.v_c * d0)
        self.add("backward", "backward.chi", "Backward factor chi",
                 "tilde q_{l-1} = chi tilde q_l with chi = n_out sigma_w^2 E[phi'(z)^2] for a layer with "
                 "fan-in n_in and fan-out n_out (z at the layer's input).",
                 _eq(CHI, self.backward_factor.subs(Q, Q_PREV)), "the two backward steps combined")
        if not self.general and not _is_zero(self.hidden_backward - self.backward_factor):
            self.add("backward", "backward.chi_hidden", "Backward factor of a hidden layer",
                     "The same factor for layers 2..L (n_in = n_out).",
                     _eq(CHI, self.hidden_backward.subs(Q, Q_PREV)), "chi with n_in = n_out")
        first = _simp(self.n1 * self.v1)
        L, l = DEPTH, LAYER
        if self.homogeneous:
            if self.general:
                expr = first * sp.Product(_simp(self.n_cur * self.v_h * self.kd), (l, 2, L))
            else:
                expr = first * self.hidden_backward ** (L - 1)
            just = "product of the per-layer factors (constant: phi' has a q-independent second moment)"
        else:
            chi_l = (self.n_cur * self.v_h * d0).subs(Q, Q_SEQ[l - 1])
            expr = first * sp.Product(chi_l, (l, 2, L))
            just = "product of the per-layer factors chi_l, each at its layer's q_{l-1}"
        self.gradient_depth = expr
        self.add("backward", "backward.input_gradient", "Gradient at the network input",
                 "E[(dL/dx)^2] = n_1 sigma_w^2 (layer 1) times the product of chi over layers 2..L.",
                 _eq(GRAD_IN, expr), just)

    def fixed_point_zero_mean(self) -> None:
        sb = self.sb
        s0 = E_PHI2 if self.s0 is None else self.s0
        self.fixed_point_equation = _eq(Q_STAR, _simp(N_OUT * self.v_c * s0.subs(Q, Q_STAR)) + sb)
        self.fixed_point, self.stability = None, None
        self.add("fixed_point", "fixed_point.equation", "Fixed-point equation",
                 "A depth-independent variance q* of the hidden layers (n_out -> n_out) solves q* = f(q*).",
                 self.fixed_point_equation, "the per-layer recursion with q_l = q_{l-1} = q*")
        if self.homogeneous:
            c = _simp(N_OUT * self.v_c * self.k)
            if not self.bias:
                self.fixed_point = sp.Integer(0)
                self.stability = sp.Le(c, 1, evaluate=False)
                every = _is_one(c)
                text = ("q* = 0; the factor is exactly 1, so every q is a fixed point (variance preserved)."
                        if every else "q* = 0 is the only fixed point unless the factor equals 1 "
                        "(then every q is fixed); it attracts if the factor is < 1.")
                self.add("fixed_point", "fixed_point", "Fixed point", text, _eq(Q_STAR, 0),
                         "f(q) = c q is linear: c q = q forces q = 0 unless c = 1")
            else:
                cond = sp.Lt(c, 1, evaluate=False)
                never_below = _truth(sp.Lt(c, 1)) is None and _below_one_for_some_width(c) is False
                if _is_one(c) or _truth(sp.Lt(c, 1)) is False or never_below:
                    self.stability = None  # no fixed point: nothing to attract
                    self.add("fixed_point", "fixed_point", "No fixed point",
                             "The factor is >= 1" + (" for every width n_in = n_out >= 2" if never_below else "")
                             + " and sigma_b^2 > 0 is added each layer: q grows without "
                             "bound, there is no fixed point.", _eq(FWD, c),
                             "q_l = c q_{l-1} + sigma_b^2 with c >= 1 is increasing")
                else:
                    self.fixed_point = _simp(sb / (1 - c))
                    self.stability = cond
                    self.add("fixed_point", "fixed_point", "Fixed point",
                             "With bias, q* = sigma_b^2 / (1 - c) exists (and attracts) when the "
                             "hidden-layer factor c < 1.", _eq(Q_STAR, self.fixed_point),
                             "solve c q + sigma_b^2 = q")
            text = ("The fixed point attracts iff the hidden-layer factor (here also chi) is below 1; "
                    "chi = 1 is the critical line." if self.fixed_point is not None else
                    "There is no fixed point to attract; chi (here also the forward factor) says how "
                    "fast signals grow: chi = 1 is the critical line.")
            self.add("fixed_point", "stability", "Stability", text,
                     _eq(CHI, _simp(N_OUT * self.v_c * self.kd)), "f'(q) = c and chi = c for homogeneous phi")
            return
        f0 = None if self.s0 is None else sp.limit(self.s0, Q, 0, "+")
        if f0 == 0 and not self.bias:
            slope = _simp(self.act.derivative.subs(X, 0) ** 2)
            chi0 = _simp(N_OUT * self.v_c * slope)
            self.fixed_point = sp.Integer(0)
            self.stability = sp.Le(chi0, 1, evaluate=False)
            self.add("fixed_point", "fixed_point", "Fixed point",
                     "phi(0) = 0, so q* = 0 is a fixed point; any other fixed point solves the "
                     "transcendental fixed-point equation (no closed form: whether one exists, and "
                     "where, is computed numerically for given widths).", _eq(Q_STAR, 0),
                     "E[phi(z)^2] = 0 at q = 0")
            self.add("fixed_point", "stability", "Stability of q* = 0",
                     "f'(0) = chi(0) = n_out sigma_w^2 phi'(0)^2: q* = 0 attracts nearby q if chi(0) < 1 "
                     "and repels them if chi(0) > 1; at chi(0) = 1 the next order in q decides "
                     "(for tanh it attracts, algebraically).",
                     _eq(CHI, chi0),
                     "d/dq E[phi(z)^2] at q = 0 equals phi'(0)^2, the small-signal slope")
            return
        reason = ("E[phi(z)^2] > 0 at q = 0 (phi(0) != 0)" if f0 not in (None, 0) else
                  "with sigma_b^2 > 0 the map does not fix q = 0 (f(0) = sigma_b^2; without bias, "
                  "sigma_b^2 = 0, q = 0 is a fixed point with slope chi(0) = n_out sigma_w^2 phi'(0)^2)")
        self.stability = sp.Lt(sp.Abs(DF_STAR), 1, evaluate=False)
        if self.s0 is None:
            self.add("fixed_point", "fixed_point", "No closed-form fixed point",
                     "E[phi(z)^2] has no closed form: q* solves the fixed-point equation with the moment "
                     "evaluated by quadrature; it attracts iff |f'(q*)| < 1.",
                     self.fixed_point_equation, "the fixed-point equation has no elementary solution")
            return
        slope = _simp(sp.diff(self.fixed_point_equation.rhs, Q_STAR))
        self.add("fixed_point", "fixed_point", "No closed-form fixed point",
                 f"{reason}; a fixed point q* > 0 solves the transcendental fixed-point equation "
                 "(no closed form: whether one exists, and where, is computed numerically for given "
                 "widths); it attracts iff |f'(q*)| < 1, with the slope of the map below.",
                 _eq(DF_STAR, slope), "differentiate the hidden-layer map f")

