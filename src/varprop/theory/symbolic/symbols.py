r"""The symbols of the derivations: one SymPy symbol per quantity, its LaTeX, meaning and code name.

The same name is used for the same thing in code, docstrings and LaTeX: ``fan_in`` is
:math:`n_{in}`, ``q`` the pre-activation variance, ``sigma_w2`` the weight variance.  Widths are
declared ``positive=True, integer=True`` and variances ``positive=True`` (the bias variance
``nonnegative=True``) so that SymPy simplifies results exactly.

:data:`SYMBOL_TABLE` lists every symbol with its meaning; :data:`LATEX_NAMES` maps each symbol to
the LaTeX used by :meth:`varprop.theory.symbolic.Derivation.to_latex` and ``to_markdown``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from varprop.components.activations import MU, Q, X
from varprop.components.schemes import FAN_IN, FAN_OUT

__all__ = [
    "A_C",
    "A_D",
    "A_M",
    "B_C",
    "B_D",
    "CHI",
    "COV_Z",
    "C_1",
    "C_DEPTH",
    "C_L",
    "C_PREV",
    "DEPTH",
    "DF_STAR",
    "D_1",
    "D_DEPTH",
    "D_L",
    "D_PREV",
    "E_DPHI2",
    "E_PHI",
    "E_PHI2",
    "FWD",
    "GJ_C",
    "GJ_D",
    "GRAD_IN",
    "G_C",
    "G_CP",
    "G_D",
    "G_L",
    "K_INDEX",
    "LAMBDA_B",
    "LAMBDA_F",
    "LAMBDA_M",
    "LAMBDA_P",
    "LATEX_NAMES",
    "LAYER",
    "MU",
    "MU_W",
    "MU_W1",
    "M_L",
    "N_IN",
    "N_OUT",
    "PSI",
    "Q0",
    "QT_L",
    "QT_PREV",
    "Q_1",
    "Q_DEPTH",
    "Q_L",
    "Q_PREV",
    "Q_SEQ",
    "Q_STAR",
    "SIGMA_B2",
    "SIGMA_W2",
    "SIGMA_W2_1",
    "SYMBOL_TABLE",
    "VAR_A",
    "VAR_Z",
    "WGRAD_L",
    "WIDTH",
    "Q",
    "SymbolInfo",
    "X",
]

#: Widths: fan-in :math:`n_{in}` (also :math:`n_0`) and fan-out :math:`n_{out}` (also the
#: hidden width :math:`n_1 = \dots = n_L`); re-exported from :mod:`varprop.components.schemes`.
N_IN = FAN_IN
N_OUT = FAN_OUT
DEPTH = sp.Symbol("L", positive=True, integer=True)
LAYER = sp.Symbol("l", positive=True, integer=True)
K_INDEX = sp.Symbol("k", positive=True, integer=True)
#: Per-layer widths :math:`n_l` (``widths="general"``).
WIDTH = sp.IndexedBase("n", positive=True, integer=True)
#: Per-layer pre-activation variances :math:`q_l` (in products over layers).
Q_SEQ = sp.IndexedBase("q", positive=True)

MU_W = sp.Symbol("mu_w", real=True)
SIGMA_W2 = sp.Symbol("sigma_w^2", positive=True)
SIGMA_B2 = sp.Symbol("sigma_b^2", nonnegative=True)
Q0 = sp.Symbol("q_0", positive=True)

Q_PREV = sp.Symbol("q_prev", positive=True)
Q_L = sp.Symbol("q_l", positive=True)
Q_1 = sp.Symbol("q_1", positive=True)
Q_DEPTH = sp.Symbol("q_L", positive=True)
Q_STAR = sp.Symbol("q_star", nonnegative=True)
DF_STAR = sp.Symbol("fprime_star", real=True)

M_L = sp.Symbol("m_l", real=True)
D_L = sp.Symbol("D_l", positive=True)
C_L = sp.Symbol("C_l", real=True)
D_PREV = sp.Symbol("D_prev", positive=True)
C_PREV = sp.Symbol("C_prev", real=True)
D_1 = sp.Symbol("D_1", positive=True)
C_1 = sp.Symbol("C_1", real=True)
D_DEPTH = sp.Symbol("D_L", positive=True)
C_DEPTH = sp.Symbol("C_L", real=True)

A_M = sp.Symbol("A_m", real=True)
A_D = sp.Symbol("A_D", nonnegative=True)
A_C = sp.Symbol("A_C", real=True)
B_D = sp.Symbol("B_D", nonnegative=True)
B_C = sp.Symbol("B_C", real=True)

E_PHI = sp.Symbol("E_phi", real=True)
E_PHI2 = sp.Symbol("E_phi2", nonnegative=True)
E_DPHI2 = sp.Symbol("E_dphi2", nonnegative=True)
VAR_A = sp.Symbol("Var_a", nonnegative=True)
VAR_Z = sp.Symbol("Var_z", nonnegative=True)
COV_Z = sp.Symbol("Cov_z", real=True)

G_L = sp.Symbol("g_l", nonnegative=True)
QT_L = sp.Symbol("qtilde_l", nonnegative=True)
QT_PREV = sp.Symbol("qtilde_prev", nonnegative=True)
G_D = sp.Symbol("G_D", nonnegative=True)
G_C = sp.Symbol("G_C", real=True)
G_CP = sp.Symbol("G_C_prev", real=True)
GJ_D = sp.Symbol("H_D", nonnegative=True)
GJ_C = sp.Symbol("H_C", real=True)
GRAD_IN = sp.Symbol("g_1", nonnegative=True)
WGRAD_L = sp.Symbol("w_l", nonnegative=True)
CHI = sp.Symbol("chi", nonnegative=True)
FWD = sp.Symbol("F", nonnegative=True)
LAMBDA_F = sp.Symbol("lambda_F", positive=True)
LAMBDA_B = sp.Symbol("lambda_B", positive=True)
LAMBDA_P = sp.Symbol("lambda_+", positive=True)
LAMBDA_M = sp.Symbol("lambda_-", real=True)
PSI = sp.Function("psi")


@dataclass(frozen=True)
class SymbolInfo:
    """One row of the symbols table."""

    symbol: sp.Basic
    latex: str
    meaning: str
    code: str

    def as_row(self) -> tuple[str, str, str]:
        return self.latex, self.meaning, self.code


#: Every symbol used by :func:`varprop.derive`, in reading order.
SYMBOL_TABLE: tuple[SymbolInfo, ...] = (
    SymbolInfo(N_IN, r"n_{in}", "fan-in of a layer; the input width n_0", "fan_in"),
    SymbolInfo(N_OUT, r"n_{out}", "fan-out of a layer; the hidden width n_1 = ... = n_L", "fan_out"),
    SymbolInfo(WIDTH, r"n_l", "width of layer l (widths=\"general\")", "widths[l]"),
    SymbolInfo(DEPTH, r"L", "depth (number of layers)", "depth"),
    SymbolInfo(LAYER, r"l", "layer index, 1..L", "l"),
    SymbolInfo(MU_W, r"\mu_w", "weight mean E[W_ij]", "InitScheme.weight_mean()"),
    SymbolInfo(SIGMA_W2, r"\sigma_w^2", "weight variance Var(W_ij)", "sigma_w2 = InitScheme.weight_variance()"),
    SymbolInfo(SIGMA_B2, r"\sigma_b^2", "bias variance", "bias_variance"),
    SymbolInfo(Q0, r"q_0", "second moment E[x_j^2] of the zero-mean input entries", "input_variance"),
    SymbolInfo(Q, r"q", "pre-activation variance Var(z) fed to the activation (q = q_{l-1} in maps)", "q"),
    SymbolInfo(Q_PREV, r"q_{l-1}", "pre-activation variance of layer l-1", "Propagation.preact_second[l-2]"),
    SymbolInfo(Q_L, r"q_l", "pre-activation variance Var(z_l,i) of layer l", "Propagation.preact_second[l-1]"),
    SymbolInfo(Q_1, r"q_1", "pre-activation variance of the first layer", "Propagation.preact_second[0]"),
    SymbolInfo(Q_DEPTH, r"q_L", "pre-activation variance of the last layer", "Propagation.preact_second[-1]"),
    SymbolInfo(Q_STAR, r"q^*", "fixed point of the forward map, f(q*) = q*", "Derivation.fixed_point"),
    SymbolInfo(DF_STAR, r"f'(q^*)", "slope of the hidden-layer map at the fixed point (stable iff abs(f'(q*)) < 1)", "Derivation.stability"),
    SymbolInfo(MU, r"\mu", "pre-activation mean fed to the activation", "mu"),
    SymbolInfo(X, r"x", "argument of the activation phi(x)", "x"),
    SymbolInfo(M_L, r"m_l", "pre-activation mean E[z_l,i]", "Propagation.preact_mean"),
    SymbolInfo(D_L, r"D_l", "E[z_l,i^2], pre-activation second moment (non-zero-mean weights)", "Propagation.preact_second"),
    SymbolInfo(C_L, r"C_l", "E[z_l,i z_l,k] for i != k (units correlated by a non-zero weight mean)", "Propagation.preact_cross"),
    SymbolInfo(D_PREV, r"D_{l-1}", "D of layer l-1", "Propagation.preact_second[l-2]"),
    SymbolInfo(C_PREV, r"C_{l-1}", "C of layer l-1", "Propagation.preact_cross[l-2]"),
    SymbolInfo(D_1, r"D_1", "D of the first layer", "Propagation.preact_second[0]"),
    SymbolInfo(C_1, r"C_1", "C of the first layer", "Propagation.preact_cross[0]"),
    SymbolInfo(D_DEPTH, r"D_L", "D of the last layer", "Propagation.preact_second[-1]"),
    SymbolInfo(C_DEPTH, r"C_L", "C of the last layer", "Propagation.preact_cross[-1]"),
    SymbolInfo(A_M, r"A_m", "E[phi(z_i)], activation mean of the layer below", "Propagation.act_mean"),
    SymbolInfo(A_D, r"A_D", "E[phi(z_i)^2], activation second moment of the layer below", "Propagation.act_second"),
    SymbolInfo(A_C, r"A_C", "E[phi(z_i) phi(z_k)], i != k", "Propagation.act_cross"),
    SymbolInfo(B_D, r"B_D", "E[phi'(z_i)^2]", "Activation.gaussian_moments(...)[3]"),
    SymbolInfo(B_C, r"B_C", "E[phi'(z_i) phi'(z_k)], i != k", "Activation.correlated_moments(...)[1]"),
    SymbolInfo(E_PHI, r"\mathbb{E}[\phi(z)]", "activation mean for z ~ N(0, q)", "MomentRules.mean"),
    SymbolInfo(E_PHI2, r"\mathbb{E}[\phi(z)^2]", "activation second moment for z ~ N(0, q)", "MomentRules.second"),
    SymbolInfo(E_DPHI2, r"\mathbb{E}[\phi'(z)^2]", "squared-derivative moment for z ~ N(0, q)", "MomentRules.deriv_second"),
    SymbolInfo(VAR_A, r"\operatorname{Var}(a_l)", "activation variance E[a^2] - E[a]^2", "quantity=\"activation\""),
    SymbolInfo(VAR_Z, r"\operatorname{Var}(z_l)", "pre-activation variance D_l - m_l^2", "quantity=\"preactivation\""),
    SymbolInfo(COV_Z, r"\operatorname{Cov}(z_{l,i}, z_{l,k})", "pre-activation covariance C_l - m_l^2", "-"),
    SymbolInfo(G_L, r"g_l", "E[(dL/da_{l-1})^2], gradient at the input of layer l", "Propagation.grad_second[l-1]"),
    SymbolInfo(QT_L, r"\tilde q_l", "E[(dL/dz_l)^2], back-propagated error of layer l (tilde q_L = 1)", "Propagation.delta_second[l-1]"),
    SymbolInfo(QT_PREV, r"\tilde q_{l-1}", "E[(dL/dz_{l-1})^2]", "Propagation.delta_second[l-2]"),
    SymbolInfo(G_D, r"G_D", "E[delta_i^2] of dL/dz_l (= tilde q_l) (non-zero-mean weights)", "Propagation.delta_second"),
    SymbolInfo(G_C, r"G_C", "E[delta_i delta_k], i != k", "-"),
    SymbolInfo(G_CP, r"G_{C,l-1}", "E[delta_i delta_k] of dL/dz_{l-1}, i != k", "-"),
    SymbolInfo(GJ_D, r"H_D", "E[g_j^2] for g = W_l^T delta_l", "Propagation.grad_second"),
    SymbolInfo(GJ_C, r"H_C", "E[g_j g_k], j != k", "-"),
    SymbolInfo(GRAD_IN, r"g_1", "E[(dL/dx)^2], gradient at the network input", "quantity=\"gradient\""),
    SymbolInfo(WGRAD_L, r"w_l", "E[(dL/dW_l)_ij^2], weight gradient", "quantity=\"weight_gradient\""),
    SymbolInfo(CHI, r"\chi", "backward factor n_out sigma_w^2 E[phi'(z)^2] per layer", "Derivation.backward_factor"),
    SymbolInfo(FWD, r"F", "forward factor (q_l - sigma_b^2) / q_{l-1} per layer", "Derivation.forward_factor"),
    SymbolInfo(LAMBDA_F, r"\lambda_F", "largest eigenvalue of the forward (D, C) map", "Derivation.forward_factor"),
    SymbolInfo(LAMBDA_P, r"\lambda_+", "larger eigenvalue of the hidden-layer (D, C) matrix M", "-"),
    SymbolInfo(LAMBDA_M, r"\lambda_-", "smaller eigenvalue of the hidden-layer (D, C) matrix M", "-"),
    SymbolInfo(LAMBDA_B, r"\lambda_B", "largest eigenvalue of the backward (G_D, G_C) map", "Derivation.backward_factor"),
)

#: LaTeX for each symbol (``sympy.latex(..., symbol_names=LATEX_NAMES)``).
LATEX_NAMES: dict[sp.Basic, str] = {
    info.symbol: info.latex for info in SYMBOL_TABLE if isinstance(info.symbol, sp.Symbol)
}

#: The weight moments of layer 1 (fans :math:`n_{in} \to n_{out}`) in the derivation for any
#: scheme (:mod:`varprop.theory.symbolic.generic`), where :data:`MU_W` and :data:`SIGMA_W2` are
#: those of a hidden layer (:math:`n_{out} \to n_{out}`).
MU_W1 = sp.Symbol("mu_w1", real=True)
SIGMA_W2_1 = sp.Symbol("sigma_w1^2", positive=True)
LATEX_NAMES[MU_W1] = r"\mu_{w,1}"
LATEX_NAMES[SIGMA_W2_1] = r"\sigma_{w,1}^2"
