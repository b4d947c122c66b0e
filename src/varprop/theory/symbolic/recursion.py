r"""Building the derivation: :func:`derive`.

The model: :math:`z_l = W_l a_{l-1} + b_l`, :math:`a_l = \phi(z_l)`, :math:`a_0 = x`
with i.i.d. zero-mean entries of second moment :math:`q_0`; widths :math:`n_0 = n_{in}`,
:math:`n_1 = \dots = n_L = n_{out}` (``widths="constant"``) or :math:`n_0, \dots, n_L`
(``widths="general"``); weights i.i.d. with mean :math:`\mu_w` and variance :math:`\sigma_w^2`
from the init scheme; biases i.i.d. :math:`N(0, \sigma_b^2)`.

Zero-mean weights give one variance per layer (Glorot & Bengio 2010; He et al. 2015; Poole et al.
2016; Schoenholz et al. 2017):

.. math::

    q_1 = n_{in}\sigma_w^2 q_0 + \sigma_b^2, \qquad
    q_l = n_{l-1}\sigma_w^2\, E_{z\sim N(0, q_{l-1})}[\phi(z)^2] + \sigma_b^2, \qquad
    \tilde q_{l-1} = E[\phi'(z_{l-1})^2]\; n_l \sigma_w^2\, \tilde q_l .

A non-zero weight mean correlates the units; then :math:`D_l = E z_i^2` and
:math:`C_l = E z_i z_k` are tracked:

.. math::

    D_l = \sigma_w^2 n A_D + \mu_w^2 (n A_D + n(n-1) A_C) + \sigma_b^2, \qquad
    C_l = \mu_w^2 (n A_D + n(n-1) A_C).

For linear layers this is exact.  After a nonlinearity the shared shift :math:`\mu_w\sum_j a_j` is
not Gaussian, so :math:`A_m, A_D, A_C` are derived conditionally on the layer-1 shift
:math:`u = \mu_w\sum_j x_j / \sqrt{\mu_w^2 n_{in} q_0} \sim N(0, 1)`: given :math:`u` the shift
:math:`s_l(u)` and the within-layer variance :math:`r_l(u)` follow a deterministic recursion
(:math:`s_{l+1} = \mu_w n E_\xi\phi(s_l + \sqrt{r_l}\xi)`,
:math:`r_{l+1} = \sigma_w^2 n E_\xi\phi^2 + \sigma_b^2`) and the moments are averages over
:math:`u` (see :mod:`varprop.theory.shifted`).

The Gaussian moments come from the registered closed forms of each activation
(:attr:`varprop.components.activations.Activation.closed_form`), never from generic symbolic integration.

The steps of each layer come from the layers' own symbolic rules
(:mod:`varprop.theory.symbolic.layer_steps`); the zero-mean and non-zero-mean compositions over
depth are :mod:`~varprop.theory.symbolic.zero_mean` and :mod:`~varprop.theory.symbolic.nonzero_mean`.
A :class:`~varprop.Network` that is not a plain MLP is derived by walking its layers
(:mod:`varprop.theory.symbolic.walk`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import sympy as sp

from varprop._util.validation import check_choice, fail, fail_type
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.network.model import Network, refuse_with_network
from varprop.theory.fields import is_general
from varprop.theory.symbolic._algebra import _simp, _weight_moments
from varprop.theory.symbolic.derivation import Derivation, Step
from varprop.theory.symbolic.general import FieldDerivation, derive_general
from varprop.theory.symbolic.layer_steps import _LayerSteps, _zero_mean_moments
from varprop.theory.symbolic.nonzero_mean import _NonzeroMean
from varprop.theory.symbolic.symbols import (
    A_C,
    A_D,
    A_M,
    G_C,
    G_D,
    LAYER,
    N_IN,
    N_OUT,
    SIGMA_B2,
    WIDTH,
    Q,
)
from varprop.theory.symbolic.walk import NetworkDerivation, derive_layers
from varprop.theory.symbolic.zero_mean import _ZeroMean

__all__ = ["WIDTH_MODES", "derive"]

WIDTH_MODES = ("constant", "general")


def derive(activation: Network | Activation | str, init: InitScheme | str | None = None, *,
           bias: bool = True, widths: Literal["constant", "general"] = "constant"
           ) -> Derivation | NetworkDerivation | FieldDerivation:
    r"""Derive, step by step, how variance propagates through a random network.

    Parameters
    ----------
    activation : Network, str or Activation
        ``"relu"``, ``"tanh"``, ... or :func:`varprop.activation` (``leaky_relu`` with its
        ``negative_slope``); or a :class:`~varprop.Network`.  A network that is a plain MLP
        (:meth:`~varprop.Network.as_mlp`) gets the derivation of its activation and scheme
        (``bias`` from its bias variance, ``widths="general"`` unless its hidden widths are
        constant); any other dense chain is derived by walking its layers
        (:func:`~varprop.theory.symbolic.walk.derive_layers`), and a network with other layer
        types (residual, norms, dropout, convolutions, pooling, recurrent) from each layer's
        rules with the general engine's numbers
        (:func:`~varprop.theory.symbolic.general.derive_general`).
    init : str or InitScheme
        ``"he_normal"``, ... or :func:`varprop.init_scheme` (required with an activation; omit
        it with a Network, whose layers carry their schemes; likewise ``bias`` and ``widths``).
    bias : bool
        Include biases :math:`b \sim N(0, \sigma_b^2)` (symbol ``sigma_b^2``); ``False`` sets
        :math:`\sigma_b^2 = 0`.
    widths : {"constant", "general"}
        ``"constant"``: :math:`n_0 = n_{in}` and every hidden width :math:`n_{out}`, so layer 1
        maps :math:`n_{in} \to n_{out}` and layers :math:`2..L` map :math:`n_{out} \to n_{out}`
        (the model of :func:`varprop.predict_variance`).  ``"general"``: per-layer widths
        :math:`n_l`, with closed forms as products over layers.

    Returns
    -------
    Derivation or NetworkDerivation
        Ordered steps (statement, SymPy equation, justification) and summary attributes;
        ``to_markdown()`` and ``to_latex()`` render it.  A network that is not a plain MLP gives
        a :class:`~varprop.theory.symbolic.walk.NetworkDerivation`.

    Notes
    -----
    Infinite-width mean field with the gradient-independence assumption (Schoenholz et al.
    2017); for zero-mean symmetric i.i.d. weights the forward second moments of linear and
    ReLU-type nets are exact at every finite width.  Exact numbers stay exact: a
    ``negative_slope`` of 0.01 enters as 1/100.  Results are cached.

    Examples
    --------
    >>> d = derive("relu", "he_normal", bias=False)
    >>> d.forward_factor, d.hidden_factor, d.backward_factor
    (1, 1, n_out/n_in)
    >>> d.closed_form_depth
    2*q_0
    >>> derive("linear", "xavier_normal").forward_factor
    2*n_in/(n_in + n_out)
    """
    if isinstance(activation, Network):
        if bias is not True or widths != "constant":
            raise fail("bias" if bias is not True else "widths", bias if bias is not True else widths,
                       "the default when the first argument is a Network (its layers give the bias "
                       "variances and widths)")
        return _derive_network(activation, init)
    if init is None:
        raise fail("init", init, "an init scheme (a name such as 'he_normal' or "
                   "varprop.init_scheme(...)) when the first argument is an activation")
    act = resolve_activation(activation)
    scheme = resolve_scheme(init)
    if not isinstance(bias, bool):
        raise fail_type("bias", bias, "True or False")
    widths = check_choice("widths", widths, WIDTH_MODES)  # type: ignore[assignment]
    return _derive_cached(act, scheme, bias, widths)


@lru_cache(maxsize=512)
def _derive_cached(act: Activation, scheme: InitScheme, bias: bool, widths: str) -> Derivation:
    return _Builder(act, scheme, bias, widths).build()


def _derive_network(net: Network, init: object
                    ) -> Derivation | NetworkDerivation | FieldDerivation:
    """A plain MLP gets the derivation of its activation and scheme; any other network the walk."""
    refuse_with_network({"init": (init, None)})
    if is_general(net):
        return derive_general(net)
    mlp = net.as_mlp()
    if mlp is None:
        return derive_layers(net)
    ws = mlp.widths() if mlp.explicit is not None else None
    constant = ws is None or len(set(ws[1:])) == 1
    return _derive_cached(mlp.activation, mlp.init, mlp.bias_variance != 0.0,
                          "constant" if constant else "general")


class _Builder(_ZeroMean, _NonzeroMean, _LayerSteps):
    def __init__(self, act: Activation, scheme: InitScheme, bias: bool, widths: str) -> None:
        self.act, self.scheme, self.bias, self.general = act, scheme, bias, widths == "general"
        self.sb = SIGMA_B2 if bias else sp.Integer(0)
        self.steps: list[Step] = []
        self.closed_form_display = self.gradient_display = None
        self.zero_mean = scheme.is_zero_mean
        self.linear = act.traits.linear and act.traits.slope == 1.0  # the identity
        # generic layer (n_in -> n_out), first and hidden layers
        self.mu_g, self.v_g = _weight_moments(scheme, N_IN, N_OUT)
        if self.general:
            l = LAYER
            self.n0, self.n1 = WIDTH[0], WIDTH[1]
            self.n_prev, self.n_cur = WIDTH[l - 1], WIDTH[l]
        else:
            self.n0, self.n1 = N_IN, N_OUT
            self.n_prev, self.n_cur = N_OUT, N_OUT
        self.mu1, self.v1 = _weight_moments(scheme, self.n0, self.n1)
        self.mu_h, self.v_h = _weight_moments(scheme, self.n_prev, self.n_cur)
        # hidden layer of constant width n_out (fixed points)
        self.v_c = _weight_moments(scheme, N_OUT, N_OUT)[1]
        rules = act.closed_form
        self.rules = rules
        self.m0, self.s0, self.d0 = _zero_mean_moments(act)
        k = None if self.s0 is None else _simp(self.s0 / Q)
        kd = self.d0
        self.homogeneous = (rules is not None and rules.exact and k is not None
                            and Q not in k.free_symbols and Q not in kd.free_symbols)
        self.k, self.kd = (k, kd) if self.homogeneous else (None, None)

    # ------------------------------------------------------------------------------------------
    def assumptions(self) -> tuple[str, ...]:
        out = [
            "Model: z_l = W_l a_{l-1} + b_l, a_l = phi(z_l), l = 1..L; the input a_0 = x has i.i.d. "
            "zero-mean entries of second moment q_0 (input_variance).",
            ("Widths n_0, n_1, ..., n_L (layer l has fan-in n_{l-1} and fan-out n_l)." if self.general else
             "Widths n_0 = n_in and n_1 = ... = n_L = n_out: layer 1 maps n_in -> n_out, layers 2..L "
             "map n_out -> n_out; a generic layer has fan-in n_in and fan-out n_out."),
            f"Weights from {self.scheme_text()}; independent of the input, the biases and other layers.",
            "Biases i.i.d. N(0, sigma_b^2)." if self.bias else "No biases (sigma_b^2 = 0).",
            "Infinite-width mean field: pre-activations are Gaussian with the stated moments.",
            "Backward pass: dL/dz_L has i.i.d. zero-mean unit-variance entries independent of the "
            "forward pass; gradient independence: phi'(z_{l-1}) is independent of W_l^T delta_l.",
        ]
        if not self.zero_mean:
            out.append("Non-zero weight mean: units of a layer are correlated by the shared shift "
                       "mu_w sum_j a_j; D = E[z_i^2] and C = E[z_i z_k] are tracked."
                       + (" Exact for linear layers (second moments need no Gaussianity)." if self.linear else
                          " The shift is not Gaussian after a nonlinearity: moments are conditional on "
                          "the layer-1 shift u (exactly Gaussian) and averaged over it; given u, each "
                          "later shift is deterministic (its O(n^-1/2) fluctuation is neglected) and "
                          "the units are i.i.d. Gaussian.  Backward: gradient independence given u.  "
                          "Measured limits (independent Monte Carlo): the gradient through saturating "
                          "layers is not reliable: each weight's own O(1) share of z_i tilts phi'(z_i), "
                          "which gradient independence ignores (sigmoid, U[-0.1,0.3): +31% at depth 4 "
                          "at widths 64 and 256, about x1.33 per layer), and rare unsaturated networks "
                          "carry the ensemble mean (tanh, erf); ReLU gradients at hidden layers are up to "
                          "+10% at width 64 (+6% at 256)."))
        if self.rules is not None and not self.rules.exact:
            out.append(f"Activation moments use the approximation {self.rules.approximation} "
                       "(exact reference: quadrature).")
        if self.rules is None:
            out.append("The activation has no registered closed form: its moments are defined by "
                       "Gaussian integrals evaluated by quadrature.")
        if self.exact_at_finite_width():
            out.append("Exact at every finite width for the forward second moments (no Gaussian "
                       "assumption is needed for this activation and scheme).")
        return tuple(out)

    def exact_at_finite_width(self) -> bool:
        if self.linear:
            return self.scheme.is_iid or self.zero_mean
        return bool(self.zero_mean and self.homogeneous and self.scheme.is_symmetric)

    # ------------------------------------------------------------------------------------------
    def numeric_plan(self) -> dict[str, Any]:
        args4 = (Q, N_IN, N_OUT, SIGMA_B2)
        exprs: dict[str, tuple[tuple[sp.Symbol, ...], Any]] = {}
        v, mu = self.v_g, self.mu_g
        if self.zero_mean:
            exprs["layer"] = ((A_D, N_IN, N_OUT, SIGMA_B2), N_IN * v * A_D + SIGMA_B2)
            if self.s0 is not None:
                exprs["map"] = (args4, N_IN * v * self.s0 + SIGMA_B2)
            exprs["backward"] = ((G_D, G_C, N_IN, N_OUT), [N_OUT * v * G_D, sp.Integer(0)])
            kind = "zero_mean"
        else:
            s2 = N_IN * A_D + N_IN * (N_IN - 1) * A_C
            exprs["mean_dc"] = ((A_M, A_D, A_C, N_IN, N_OUT, SIGMA_B2),
                                [mu * N_IN * A_M, v * N_IN * A_D + mu**2 * s2 + SIGMA_B2, mu**2 * s2])
            s2b = N_OUT * G_D + N_OUT * (N_OUT - 1) * G_C
            exprs["backward"] = ((G_D, G_C, N_IN, N_OUT), [v * N_OUT * G_D + mu**2 * s2b, mu**2 * s2b])
            kind = "linear_dc" if self.linear else "shifted"  # shifted: varprop.theory.shifted evaluates it
        return {"kind": kind, "expressions": exprs,
                "closed_moments": self.rules is not None}

    def build(self) -> Derivation:
        self.weights()
        if self.zero_mean:
            self.dense_forward_zero_mean()
            self.nonlinearity_moments_zero_mean()
            self.recursion_zero_mean()
            self.depth_zero_mean()
        else:
            self.dense_forward_nonzero_mean()
            self.activation_moments_nonzero_mean()
            self.recursion_nonzero_mean()
            self.depth_nonzero_mean()
        self.dense_backward()
        self.nonlinearity_backward()
        if self.zero_mean:
            self.backward_factors_zero_mean()
            self.weight_gradient()
            self.fixed_point_zero_mean()
            first = self.q1
        else:
            self.backward_factors_nonzero_mean()
            self.weight_gradient()
            self.fixed_point_nonzero_mean()
            first = self.first
        exact = bool(self.rules is not None and self.rules.exact and (self.zero_mean or self.linear))
        return Derivation(
            activation=self.act, init=self.scheme, steps=tuple(self.steps), first_layer=first,
            forward_map=self.forward_map, forward_factor=self.forward_factor,
            hidden_factor=self.hidden_factor, backward_factor=self.backward_factor,
            closed_form_depth=self.closed_form_depth, gradient_depth=self.gradient_depth,
            fixed_point=self.fixed_point, fixed_point_equation=self.fixed_point_equation,
            stability=self.stability, assumptions=self.assumptions(), exact=exact,
            exact_at_finite_width=self.exact_at_finite_width(), zero_mean=self.zero_mean,
            homogeneous=bool(self.homogeneous or (self.linear and not self.zero_mean)),
            bias=self.bias, widths="general" if self.general else "constant",
            numeric_plan=self.numeric_plan(),
            display={"closed_form_depth": self.closed_form_display, "gradient_depth": self.gradient_display})

