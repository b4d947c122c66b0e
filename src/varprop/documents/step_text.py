r"""The prose of the once-for-every-scheme derivation of an activation document, in Markdown with
``$...$`` LaTeX (no ASCII math): each step of :func:`varprop.theory.symbolic.generic.derive_generic`
gets a statement and a justification here, keyed by the step's stable key (and, where a key has
several cases, by its title).  The equations themselves are the builder's SymPy objects.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.parsing.sympy_parser import (
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

from varprop.components.activations import Activation
from varprop.theory.symbolic import Step, latex

__all__ = ["approximation_latex", "step_text", "step_title", "moment_reason"]

_PHI = r"\phi"
_NZ = r"$z \sim N(0, q)$"

#: key -> (statement, justification); a tuple key (key, title) where one key has several cases.
_TEXT: dict[object, tuple[str, str]] = {
    "weight_mean": ("The mean of a weight entry of a layer with fan-in $n_{in}$ and fan-out "
                    "$n_{out}$.", "the scheme's law (tabulated below)"),
    "weight_variance": ("The variance of a weight entry of that layer.",
                        "the scheme's law (tabulated below)"),
    ("mean", True): (r"$E[z_{l,i}] = \sum_j E[W_{ij}]\,E[a_{l-1,j}] + E[b_i]$.",
                     r"$W_l$ is independent of $a_{l-1}$ and has zero mean; biases have zero mean."),
    ("variance", True): (
        r"$\mathrm{Var}(z_{l,i}) = E[z_{l,i}^2] = \sum_j E[W_{ij}^2]\,E[a_{l-1,j}^2] + \sigma_b^2$ "
        r"for a layer with fan-in $n_{in}$, where $A_D = E[a_{l-1,j}^2]$.",
        r"cross terms vanish: $E[W_{ij} W_{ij'}] = 0$ for $j \ne j'$ (independent zero-mean "
        r"entries, or the sign symmetry of the Haar measure for orthogonal weights); the second "
        r"moment $A_D = E[a^2]$ enters, not $\mathrm{Var}(a)$."),
    ("first_layer", True): (r"The input is not passed through $\phi$: $A_D = E[x_j^2] = q_0$.",
                            r"the variance step with $\sigma_w^2$ of layer 1."),
    ("activation_variance", True): (
        r"$\mathrm{Var}(a_l) = E[a_l^2] - E[a_l]^2$ at $q = q_l$: it differs from $E[a^2]$ when "
        r"$E[\phi] \ne 0$.", "definition of the variance."),
    ("recursion", True): (
        r"For $l \ge 2$ the input of layer $l$ is $a_{l-1} = \phi(z_{l-1})$ with "
        r"$z_{l-1} \sim N(0, q_{l-1})$; hidden layers have fan-in $n_{out}$.",
        r"the variance step with the activation moment substituted."),
    ("forward_factor", True): (
        r"$F = (q_l - \sigma_b^2)/q_{l-1} = n_{in}\sigma_{w,1}^2 E[\phi^2]/q$ for a layer with "
        r"fan-in $n_{in}$ and fan-out $n_{out}$ (layer 1).", r"the recursion divided by $q_{l-1}$."),
    "hidden_factor": (r"The same factor for layers $2, \dots, L$ ($n_{in} = n_{out}$).",
                      r"the forward factor with $n_{in} = n_{out}$."),
    ("closed_form_depth", True): (
        r"The pre-activation variance of the last layer as a function of the depth $L$; $c = "
        r"n_{out}\sigma_w^2 E[\phi^2]/q$ is the constant hidden-layer factor.",
        r"the affine recursion $q_l = c\,q_{l-1} + \sigma_b^2$ unrolled from $q_1$ (a geometric "
        r"sum; verified in the tests by substitution and `sympy.rsolve`)."),
    ("backward.gradient", True): (
        r"With $g = W_l^\top \delta_l$, $E[(\partial\mathcal L/\partial a_{l-1,j})^2] = \sum_i "
        r"E[W_{ij}^2]\,E[\delta_{l,i}^2]$ ($n_l$ terms: the fan-out of layer $l$).",
        r"zero-mean weights independent of $\delta_l$ (gradient independence)."),
    ("backward.delta", True): (
        r"$\delta_{l-1} = \phi'(z_{l-1}) \odot (W_l^\top \delta_l)$, starting from "
        r"$\tilde q_L = 1$.",
        r"gradient independence: $\phi'(z_{l-1})$ is independent of $W_l^\top\delta_l$, "
        r"$z_{l-1} \sim N(0, q_{l-1})$."),
    ("backward.chi", True): (
        r"$\tilde q_{l-1} = \chi\,\tilde q_l$ with $\chi = n_{out}\sigma_{w,1}^2 E[\phi'(z)^2]$ "
        r"for a layer with fan-in $n_{in}$ and fan-out $n_{out}$ ($z$ at the layer's input).",
        "the two backward steps combined."),
    "backward.chi_hidden": (r"The same factor for layers $2, \dots, L$ ($n_{in} = n_{out}$).",
                            r"$\chi$ with $n_{in} = n_{out}$."),
    ("backward.input_gradient", True): (
        r"$E[(\partial\mathcal L/\partial x)^2] = n_{out}\sigma_{w,1}^2$ (layer 1) times the product of "
        r"$\chi$ over the layers $2, \dots, L$.",
        r"the product of the per-layer factors $\chi_l$, each at its layer's $q_{l-1}$."),
    "backward.weight_gradient": (
        r"$E[(\partial\mathcal L/\partial W_{l,ij})^2] = E[\delta_{l,i}^2]\,E[a_{l-1,j}^2]$ (with "
        r"$a_0 = x$, $E[x^2] = q_0$).",
        r"$\partial\mathcal L/\partial W_{ij} = \delta_i a_j$ with $\delta_l$ independent of "
        r"$a_{l-1}$ (given the layer-1 shift $u$ for a non-linear activation with $\mu_w \ne 0$, "
        r"then averaged over $u$)."),
    "fixed_point.equation": (
        r"A depth-independent variance $q^*$ of the hidden layers solves $q^* = f(q^*)$.",
        r"the per-layer recursion with $q_l = q_{l-1} = q^*$."),
    ("fixed_point", "Fixed point", True): (
        r"With bias, $q^* = \sigma_b^2/(1 - c)$ exists and attracts when the hidden-layer factor "
        r"$c = n_{out}\sigma_w^2 E[\phi^2]/q$ is below 1; without bias $q^* = 0$ (every $q$ is "
        r"fixed when $c = 1$).", r"solve $c\,q + \sigma_b^2 = q$."),
    ("fixed_point", "No fixed point", True): (
        r"The factor is at least 1 and $\sigma_b^2 > 0$ is added each layer: $q$ grows without "
        r"bound.", r"$q_l = c\,q_{l-1} + \sigma_b^2$ with $c \ge 1$ is increasing."),
    ("fixed_point", "No closed-form fixed point", True): (
        r"With $\sigma_b^2 > 0$ the map does not fix $q = 0$ ($f(0) = \sigma_b^2$; without bias "
        r"$q = 0$ is a fixed point where $\phi(0) = 0$, with slope $\chi(0) = n_{out}\sigma_w^2 "
        r"\phi'(0)^2$); a fixed point $q^* > 0$ solves the transcendental equation above (no "
        r"closed form: found numerically per scheme in the phase table); it attracts iff "
        r"$|f'(q^*)| < 1$, with the slope below.", r"differentiate the hidden-layer map $f$."),
    "stability": (
        r"The fixed point attracts iff the hidden-layer factor (here equal to $\chi$) is below 1; "
        r"$\chi = 1$ is the critical line.",
        r"$f'(q) = c$ and $\chi = c$ for a positively homogeneous $\phi$."),
    ("stability", "Stability of q* = 0", True): (
        r"$f'(0) = \chi(0) = n_{out}\sigma_w^2\phi'(0)^2$: $q^* = 0$ attracts nearby $q$ if "
        r"$\chi(0) < 1$ and repels them if $\chi(0) > 1$.",
        r"$\frac{d}{dq} E[\phi(z)^2]$ at $q = 0$ equals $\phi'(0)^2$."),
    # ---- non-zero weight mean ----
    ("mean", False): (r"$E[z_{l,i}] = \mu_w n_{in} A_m$ with $A_m = E[a_{l-1,j}]$; $m_1 = 0$ "
                      "since the input has zero mean.",
                      r"linearity of expectation; $W_l$ independent of $a_{l-1}$."),
    "second_moment": (r"$D_l = E[z_{l,i}^2]$ with $A_D = E[a_j^2]$ and $A_C = E[a_j a_{j'}]$ "
                      r"($j \ne j'$) of the layer below.",
                      r"$E[W_{ij} W_{ij'}] = \mu_w^2$ for $j \ne j'$ and $\sigma_w^2 + \mu_w^2$ "
                      r"for $j = j'$."),
    "cross_moment": (r"$C_l = E[z_{l,i} z_{l,k}]$ for units $i \ne k$: a shared weight mean "
                     "correlates them.",
                     r"$W_{ij}$ and $W_{kj'}$ are independent for $i \ne k$: $E[W_{ij}W_{kj'}] "
                     r"= \mu_w^2$."),
    ("variance", False): (r"The variance of a unit is $D_l - m_l^2$.", "definition of the variance."),
    "covariance": (r"$\mathrm{Cov}(z_{l,i}, z_{l,k}) = C_l - m_l^2$ for $i \ne k$: zero only if "
                   r"$\mu_w = 0$.", "definition of the covariance."),
    ("first_layer", False): (r"The input has $A_m = 0$, $A_D = q_0$, $A_C = 0$ (independent "
                             "zero-mean entries).", r"the $D$ and $C$ steps for layer 1."),
    "shift.first": (
        r"With $W_{ij} = \mu_{w,1} + \sigma_{w,1}\varepsilon_{ij}$ every unit of layer 1 carries "
        r"the same shift $s_1 = \mu_{w,1}\sum_j x_j \sim N(0, \mu_{w,1}^2 n_{in} q_0)$ (Gaussian "
        r"inputs); $u = s_1/\sqrt{\mu_{w,1}^2 n_{in} q_0} \sim N(0, 1)$.",
        "a sum of independent zero-mean Gaussian inputs."),
    "shift.first_within": (
        r"Given $u$ the units of layer 1 are i.i.d. with variance $\sigma_{w,1}^2 E[\|x\|^2 \mid u] + "
        r"\sigma_b^2$, $E[\|x\|^2 \mid u] = q_0 (n_{in} - 1 + u^2)$.",
        r"$x = \bar x\,\mathbf 1 + x_\perp$ with $\|x_\perp\|^2 \sim q_0\chi^2_{n_{in}-1}$ "
        r"independent of $u$."),
    "shift.recursion": (
        r"At large width, given $u$, the next shift $\mu_w\sum_j\phi(z_{l,j})$ is deterministic "
        r"(its fluctuation is $O(n^{-1/2})$ relative) and the units are i.i.d. "
        r"$N(s_l(u), r_l(u))$; $n$ is the fan-in ($n_{out}$ for layers $2, \dots, L$).",
        r"a sum of $n$ conditionally i.i.d. terms; the shift is not Gaussian after a "
        r"non-linearity, so the units are not jointly Gaussian unconditionally."),
    "shift.moments": (
        r"$m_l = E_u[s_l]$, $D_l = E_u[s_l^2 + r_l]$, $C_l = E_u[s_l^2]$: the same numbers as the "
        r"$(m, D, C)$ steps above.", r"conditioning on $u$."),
    ("moment.linear", False): (
        r"$\phi(z) = z$: $A_m = m_{l-1} = 0$, $A_D = D_{l-1}$, $A_C = C_{l-1}$; exact, no "
        r"Gaussianity needed.", r"$\phi$ is the identity; the mean stays 0 from $m_1 = 0$."),
    ("recursion", "Per-layer recursion of (D, C)", False): (
        r"For linear layers $D' = n(\sigma_w^2 + \mu_w^2) D + n(n-1)\mu_w^2 C\ (+\,\sigma_b^2)$ "
        r"and $C' = \mu_w^2 (n D + n(n-1) C)$, $n$ the fan-in ($n_{out}$ for layers "
        r"$2, \dots, L$).", r"the $D$ and $C$ steps with $A_D = D_{l-1}$, $A_C = C_{l-1}$: exact "
        "at finite width."),
    ("recursion", "Per-layer recursion of (m, D, C)", False): (
        r"With $A_m, A_D, A_C$ of layer $l-1$ from the activation steps (fan-in $n_{out}$ for "
        r"layers $2, \dots, L$).", r"the mean, $D$ and $C$ steps."),
    ("forward_factor", "Forward growth per layer", False): (
        r"At large depth $(D, C)$ grow by the largest eigenvalue $\lambda_F$ of the map of a "
        r"layer with fan-in $n_{in}$ (about $n^2\mu_w^2$ per layer when $\mu_w \ne 0$).",
        r"the eigenvalues of the $2\times 2$ $(D, C)$ matrix."),
    ("forward_factor", "Forward factor of a layer", False): (
        r"$F = (D_l - \sigma_b^2)/D_{l-1}$: it depends on the activation moments $A_D, A_C$ of "
        "the layer below (no constant factor).", r"the $D$ step divided by $D_{l-1}$."),
    "eigenvalues": (r"$M$, the $(D, C)$ matrix of a hidden layer (fan-in $n_{out}$), has two "
                    "real eigenvalues.",
                    r"the roots of $\lambda^2 - \mathrm{tr}(M)\,\lambda + \det M = 0$."),
    ("closed_form_depth", False): (
        r"$(D_L, C_L) = x^* + M^{L-1}\big((D_1, C_1) - x^*\big)$ with the fixed point $x^* = "
        r"(I - M)^{-1}(\sigma_b^2, 0)$ and $M^k = \big(\lambda_+^k (M - \lambda_- I) - \lambda_-^k"
        r" (M - \lambda_+ I)\big)/(\lambda_+ - \lambda_-)$; $\mathrm{Var}(z_L) = D_L$ since the "
        "mean stays 0.",
        r"Sylvester's formula for the power of a $2\times 2$ matrix with distinct eigenvalues."),
    ("backward.gradient", False): (
        r"With $g = W_l^\top\delta_l$, $G_D = E[\delta_i^2]$, $G_C = E[\delta_i\delta_k]$ ($n$ "
        r"the fan-out $n_l$): $H_D = E[g_j^2]$, $H_C = E[g_j g_k]$; $G_D = 1$, $G_C = 0$ at the "
        "last layer.", r"$E[W_{ij}W_{i'j}] = \mu_w^2$ for $i \ne i'$ and $\sigma_w^2 + \mu_w^2$ "
        r"for $i = i'$."),
    ("backward.delta", False): (
        r"$\delta_{l-1} = \phi'(z_{l-1}) \odot g$: $G_D' = B_D H_D$ and $G_C' = B_C H_C$ with "
        r"$B_D = E[\phi'^2]$, $B_C = E[\phi'(z_i)\phi'(z_k)]$ of layer $l-1$.",
        r"gradient independence (exact for linear layers, $B_D = B_C = 1$; for a non-linear "
        r"activation every quantity is conditional on the layer-1 shift $u$ and averaged over "
        r"it)."),
    ("backward.chi", "Backward growth per layer", False): (
        r"At large depth $(G_D, G_C)$ grow by the largest eigenvalue $\lambda_B$ of the backward "
        r"map of a layer with fan-out $n_{out}$.",
        r"the eigenvalues of the $2\times 2$ $(G_D, G_C)$ matrix."),
    ("backward.chi", "Backward factor of a layer", False): (
        r"$G_{D,l-1}/G_{D,l}$: it depends on $B_D$ and on the ratio $G_C/G_D$ (no constant "
        "factor).", "the two backward steps combined."),
    ("backward.input_gradient", False): (
        r"$E[(\partial\mathcal L/\partial x)^2] = H_D$ of layer 1 after $L - 1$ backward steps "
        r"from $(G_D, G_C) = (1, 0)$.", "the matrix power of the linear backward recursion."),
    ("fixed_point", "Fixed point", False): (
        r"The $(D, C)$ recursion is affine: its fixed point $D^*$ (the first component of "
        r"$(I - M)^{-1}(\sigma_b^2, 0)$) attracts iff the largest eigenvalue of the hidden-layer "
        r"matrix is below 1.", r"solve $(D, C) = M(D, C) + (\sigma_b^2, 0)$."),
    ("fixed_point", "No closed-form fixed point", False): (
        r"A fixed point of $(D, C)$ has $A_D, A_C$ evaluated at $(D, C)$ themselves; with "
        "correlated units these need quadrature, so it is found numerically if it exists.",
        r"the recursion with $(D_l, C_l) = (D_{l-1}, C_{l-1})$."),
}

_QUAD = (r"averaged over $u \sim N(0, 1)$ by numerical quadrature (`varprop.theory.shifted`: "
         r"composite Gauss-Legendre in $u$, Gaussian quadrature in $\xi$)")
_SHIFTED_MOMENTS = {"moment.mean": "A_m", "moment.second": "A_D", "moment.cross": "A_C",
                    "moment.deriv_second": "B_D", "moment.deriv_cross": "B_C"}
_MOMENT_TEX = {"mean": r"E[\phi]", "second": r"E[\phi^2]", "deriv_mean": r"E[\phi']",
               "deriv_second": r"E[\phi'^2]"}


def approximation_latex(text: str) -> str:
    r"""A closed form's declared approximation (``"tanh(x) ~ erf(sqrt(pi) x / 2)"``) as inline
    LaTeX (``$\tanh{\left(x \right)} \approx \operatorname{erf}{...}$``); prose such as "Taylor
    polynomial of order 5 at 0" is returned as it is."""
    if "~" not in text:
        return text
    sides = text.split("~")
    if len(sides) != 2:
        return "`" + text + "`"
    transformations = standard_transformations + (implicit_multiplication_application,)
    names = {"x": sp.Symbol("x"), "Phi": sp.Function("Phi"), "sigmoid": sp.Function("sigma"),
             "pi": sp.pi}
    try:
        lhs, rhs = (parse_expr(side.strip(), local_dict=names, transformations=transformations,
                               evaluate=False) for side in sides)
    except (SyntaxError, TypeError, ValueError, sp.SympifyError):
        return "`" + text + "`"
    return f"${latex(lhs)} \\approx {latex(rhs)}$"


def moment_reason(act: Activation, moment: str) -> str:
    """Where a zero-mean Gaussian moment of ``act`` comes from (exact, the declared error of an
    approximation, or quadrature), as Markdown with LaTeX."""
    rules = act.closed_form
    if rules is None:
        return ("no closed form is registered: the reference is the numerical Gaussian "
                "quadrature of `varprop._math.quadrature` (good to about $10^{-12}$).")
    if rules.exact:
        ref = f" ({act.reference})" if act.reference else ""
        return f"exact closed form for {_NZ}{ref}."
    err = rules.max_relative_error.get(moment)
    label = f"${_MOMENT_TEX[moment]}$"
    approx = approximation_latex(rules.approximation)
    if err == 0.0:
        return f"exact: the approximation {approx} leaves {label} unchanged (declared error 0)."
    bound = (f"; the largest relative error of {label} over $q > 0$ is {100 * err:.3g}%" if err
             else f"; no error bound is declared for {label}")
    return f"**approximation** {approx}{bound}; the exact reference is quadrature."


def _activation_step(step: Step, act: Activation) -> tuple[str, str] | None:
    """The statement and justification of an activation-moment step (they name the activation)."""
    name = f"${act.latex_name}$" if getattr(act, "latex_name", None) else f"`{act.name}`"
    key = step.key
    if key in _SHIFTED_MOMENTS and "Activation moment" in step.title:
        sym = _SHIFTED_MOMENTS[key]
        cross = (r" (two units $i \ne k$ are independent given $u$, so the cross moment is the "
                 "square of the conditional mean)") if "cross" in key else ""
        return (f"${sym[0]}_{{{sym[2]}}}$ of layer $l$: the moment given the layer-1 shift $u$"
                f"{cross}, {_QUAD}.", r"conditioning on $u$ (the law of total expectation).")
    if key.startswith("moment.") and "Gaussian moment" in step.title:
        return (f"For {_NZ} with $z = \\sqrt q\\,t$, $t \\sim N(0, 1)$ ({name}).",
                moment_reason(act, "second"))
    if key == "moment.mean":
        return (f"$E[\\phi(z)]$ for {_NZ}, $\\phi$ = {name}.", moment_reason(act, "mean"))
    if key == "moment.second":
        return (f"$E[\\phi(z)^2]$ for {_NZ}: what the next layer's variance uses.",
                moment_reason(act, "second"))
    if key == "moment.deriv_second":
        return (f"$E[\\phi'(z)^2]$ for {_NZ}: what the backward pass uses.",
                moment_reason(act, "deriv_second"))
    if key == "moment.series":
        order = re.search(r"order (\d+)", step.statement)
        return (f"For small $q$ the Taylor polynomial of {name}"
                + (f" of order {order.group(1)}" if order else "")
                + r" gives $E[\phi(z)^2]$ exactly up to the stated order in $q$.",
                r"the Gaussian moments of the Taylor polynomial, $E[t^{2k}] = (2k-1)!!$.")
    return None


#: Titles of the builder with math in them, typeset.
_TITLES = {"Backward factor chi": r"Backward factor $\chi$",
           "Second moment D of the pre-activation": "Second moment $D$ of the pre-activation",
           "Cross moment C of the pre-activation": "Cross moment $C$ of the pre-activation",
           "Shift and within-layer variance, given u": "Shift and within-layer variance, given $u$",
           "Stability of q* = 0": "Stability of $q^* = 0$"}


def step_title(step: Step) -> str:
    """The step's title with its math typeset (``A_m`` -> ``$A_m$``, ``(D, C)`` -> ``$(D, C)$``)."""
    if step.title.startswith("Gaussian moment ") and hasattr(step.equation, "lhs"):
        return f"Gaussian moment ${latex(step.equation.lhs)}$"
    title = _TITLES.get(step.title, step.title)
    title = re.sub(r"\((?:m, )?D, C\)", lambda m: f"${m.group(0)}$", title)
    title = re.sub(r"(?<![\w$\\])([A-Za-z]_[A-Za-z0-9]+)(?![\w$])", r"$\1$", title)
    return title.replace("E[phi(z)^2]", r"$E[\phi(z)^2]$").replace("E[phi'(z)^2]", r"$E[\phi'(z)^2]$")


def step_text(step: Step, act: Activation, zero_mean: bool) -> tuple[str, str]:
    """``(statement, justification)`` of ``step`` in Markdown with LaTeX; ``("", "")`` when no
    prose is written for it (the title and the equation then stand alone)."""
    special = _activation_step(step, act)
    if special is not None:
        return special
    for key in ((step.key, step.title, zero_mean), (step.key, step.title), (step.key, zero_mean),
                step.key):
        if key in _TEXT:
            return _TEXT[key]
    return "", ""
