r"""Deriving any :class:`~varprop.Network` by walking its layers: :func:`derive_layers`.

Layer :math:`k = 1..K` maps :math:`y_{k-1}` to :math:`y_k` (:math:`y_0 = x`, i.i.d. zero-mean
entries of second moment :math:`q_0`).  The walk carries the moment state of a layer's output,
:math:`m_k = E y_{k,i}`, :math:`D_k = E y_{k,i}^2`, :math:`C_k = E y_{k,i} y_{k,j}` (:math:`i \ne j`),
forward, and :math:`G_k = E(\partial\mathcal L/\partial y_{k,i})^2` with its cross moment
:math:`G^\times_k` backward from :math:`G_K = 1, G^\times_K = 0`.  Each layer contributes its own
rule:

- ``Dense``: the exact moment map of :math:`z = W y + b`
  (:meth:`varprop.layers.Dense.forward_moments`, :meth:`~varprop.layers.Dense.backward_moments`)
  with the scheme's exact weight moments at the layer's own fans;
- ``Nonlinearity``: a linear :math:`\phi(x) = c x` scales the moments exactly by :math:`c, c^2`;
  any other activation takes the Gaussian moments at :math:`z \sim N(0, D_{k-1})`, in closed form
  where the activation has one (:meth:`varprop.layers.Nonlinearity.symbolic_moments`), else as
  named expectations defined by their integrals (:meth:`~varprop.layers.Nonlinearity.moment_integrals`).

Exact numbers stay exact (widths, scheme moments, ``bias_variance`` and ``input_variance`` as
rationals).  Assumptions: infinite-width mean field (units of a layer independent and Gaussian
given a zero-mean weight layer before the activation) and gradient independence (Schoenholz et al.
2017).  A nonlinear, non-homogeneous activation after a weight layer with a non-zero mean (units
correlated by a shared random shift) is refused: the shift is not Gaussian and the plain MLP
derivation conditions on it (:mod:`varprop.theory.shifted`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import sympy as sp

from varprop._util.exact import exact
from varprop._util.validation import fail
from varprop.components.activations import MOMENTS, Activation
from varprop.errors import VarpropError
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.network.model import Network, refuse_stacked_nonlinearities
from varprop.theory.symbolic._algebra import _eq, _is_zero, _simp, _weight_moments
from varprop.theory.symbolic.derivation import (
    Step,
    StepLookup,
    _latex_document,
    _md_cell,
    _tex_text,
    latex,
)
from varprop.theory.symbolic.layer_steps import scheme_text
from varprop.theory.symbolic.symbols import MU_W, SIGMA_B2, SIGMA_W2

__all__ = ["MAX_WALK_LAYERS", "NetworkDerivation", "derive_layers"]

#: The walk materialises one step per layer: longer networks are refused.
MAX_WALK_LAYERS = 256

MEAN, SECOND, CROSS = sp.IndexedBase("m"), sp.IndexedBase("D"), sp.IndexedBase("C")
GRAD, GRAD_CROSS = sp.IndexedBase("G"), sp.IndexedBase("G^x")
#: Named Gaussian expectations of layer k (activations without a closed form).
EXPECTATIONS = {"mean": sp.IndexedBase("E[phi]"), "second": sp.IndexedBase("E[phi^2]"),
                "deriv_mean": sp.IndexedBase("E[phi']"), "deriv_second": sp.IndexedBase("E[phi'^2]")}


@dataclass(frozen=True)
class _State:
    """Moments of one layer's output: mean, second, cross (exact SymPy numbers or expressions)."""

    mean: Any
    second: Any
    cross: Any
    shifted: bool  # a weight layer with non-zero mean lies upstream (a shared random shift)
    symmetric: bool  # symmetric given the previous layer (after zero-mean symmetric weights)
    exact: bool  # mean, second and cross moments hold at every finite width


@dataclass(frozen=True, eq=False)
class NetworkDerivation(StepLookup):
    r"""The derivation of a :class:`~varprop.Network` walked layer by layer (:func:`derive_layers`).

    Attributes
    ----------
    network : Network
    steps : tuple of Step
        Per layer: its weight moments (``Dense``), its forward map, then the backward pass from
        the last layer down.  Keys ``"layer<k>.weights"``, ``"layer<k>.forward"``,
        ``"layer<k>.<moment>"`` (named expectations), ``"layer<k>.backward"``.
    output_mean, output_second, output_cross : tuple of sympy.Expr
        :math:`m_k, D_k, C_k` of each layer's output, :math:`k = 1..K` (exact; in the named
        expectations where an activation has no closed form).
    output_gradient_second : tuple of sympy.Expr
        :math:`G_k = E(\partial\mathcal L/\partial y_{k,i})^2`, :math:`G_K = 1`.
    input_gradient_second : sympy.Expr
        :math:`E(\partial\mathcal L/\partial x_j)^2`.
    expectations : dict
        Named expectation -> ``(activation, moment, variance)``: what :meth:`evaluate` integrates.
    assumptions : tuple of str
    exact : bool
        True if no approximate closed form and no named expectation is used.
    exact_at_finite_width : bool
        True if the forward second moments hold at every finite width (linear and positively
        homogeneous degree-1 activations after zero-mean symmetric weights, or linear ones only).
    """

    network: Network
    steps: tuple[Step, ...]
    output_mean: tuple[Any, ...]
    output_second: tuple[Any, ...]
    output_cross: tuple[Any, ...]
    output_gradient_second: tuple[Any, ...]
    input_gradient_second: Any
    expectations: Mapping[sp.Basic, tuple[Activation, str, Any]] = field(repr=False)
    assumptions: tuple[str, ...]
    exact: bool
    exact_at_finite_width: bool

    def summary_rows(self) -> list[tuple[str, str, str, str]]:
        """``(layer, kind, E[y_k^2], E[(dL/dy_k)^2])`` per layer (LaTeX values)."""
        return [(str(k), repr(layer), latex(d), latex(g)) for k, (layer, d, g) in enumerate(
            zip(self.network.layers, self.output_second, self.output_gradient_second), start=1)]

    def to_markdown(self, *, level: int = 1) -> str:
        """GitHub Markdown with ``$$`` display math (model, steps by section, summary table)."""
        h, out = self._markdown_head(level)
        out += [f"{h}# Summary", "", "| Layer | Type | $E[y_k^2]$ | $E[(dL/dy_k)^2]$ |", "|---|---|---|---|"]
        out += [f"| {k} | `{_md_cell(kind)}` | ${_md_cell(d)}$ | ${_md_cell(g)}$ |"
                for k, kind, d, g in self.summary_rows()]
        out += [f"| input | | | ${_md_cell(latex(self.input_gradient_second))}$ |", "",
                (f"Closed forms exact: {'yes' if self.exact else 'no'}; exact at finite width: "
                 f"{'yes' if self.exact_at_finite_width else 'no (infinite-width limit)'}.")]
        return "\n".join(out) + "\n"

    def to_latex(self, *, document: bool = False) -> str:
        r"""LaTeX: a fragment needing ``amsmath``, or with ``document=True`` a whole ``article``."""
        out = self._latex_head()
        out += [r"\subsection*{Summary}", r"\begin{tabular}{llll}",
                r"Layer & Type & $E[y_k^2]$ & $E[(dL/dy_k)^2]$ \\ \hline"]
        out += [rf"{k} & {_tex_text(kind)} & ${d}$ & ${g}$ \\" for k, kind, d, g in self.summary_rows()]
        out += [rf"input & & & ${latex(self.input_gradient_second)}$ \\", r"\end{tabular}"]
        return _latex_document(out, document)

    def _repr_markdown_(self) -> str:  # Jupyter
        return self.to_markdown()

    @cached_property
    def _values(self) -> dict[sp.Basic, float]:
        """The named expectations as floats, by Gaussian quadrature, in layer order."""
        values: dict[sp.Basic, float] = {}
        for sym, (act, moment, variance) in self.expectations.items():
            q = float(sp.N(sp.sympify(variance).subs(values), 30))
            values[sym] = float(act.gaussian_moments(0.0, q, method="quadrature")[MOMENTS.index(moment)])
        return values

    def evaluate(self) -> dict[str, np.ndarray]:
        """The derived moments as floats: ``output_mean``, ``output_second``, ``output_cross``,
        ``output_gradient`` (per layer) and ``input_gradient`` (a 0-d array); named
        expectations are evaluated by the activation's Gaussian quadrature."""
        def num(exprs: tuple[Any, ...]) -> np.ndarray:
            out = np.array([float(sp.N(sp.sympify(e).subs(self._values), 30)) for e in exprs])
            if np.isnan(out).any():
                raise VarpropError(f"the derived moments of {self.network!r} evaluate to NaN: {out}")
            return out
        return {"output_mean": num(self.output_mean), "output_second": num(self.output_second),
                "output_cross": num(self.output_cross),
                "output_gradient": num(self.output_gradient_second),
                "input_gradient": num((self.input_gradient_second,))[0]}


def derive_layers(net: Network) -> NetworkDerivation:
    r"""Derive the moments of every layer of ``net`` by walking its layers (module docstring).

    Parameters
    ----------
    net : Network
        ``Dense`` and ``Nonlinearity`` layers, at most :data:`MAX_WALK_LAYERS` of them.

    Returns
    -------
    NetworkDerivation

    Raises
    ------
    InvalidArgument
        For a layer type without symbolic rules, too many layers, or a nonlinear activation
        (other than positively homogeneous of degree 1) downstream of a weight layer with a
        non-zero mean.

    Examples
    --------
    >>> from varprop import Network, layers
    >>> net = Network([layers.Dense(64, "he_normal"), "relu", layers.Dense(10, "xavier_normal")],
    ...               input_shape=(32,))
    >>> derive_layers(net).output_second
    (2, 1, 64/37)
    """
    if not isinstance(net, Network):
        raise fail("net", net, "a varprop.Network")
    if net.layers.size > MAX_WALK_LAYERS:
        raise fail("net", f"a network of {net.layers.size} layers",
                   f"at most {MAX_WALK_LAYERS} layers for the layer walk (the plain-MLP derivation, "
                   "derive(activation, init), covers any depth)")
    refuse_stacked_nonlinearities(net)
    return _Walk(net).run()


class _Walk:
    def __init__(self, net: Network) -> None:
        self.net = net
        self.steps: list[Step] = []
        self.expectations: dict[sp.Basic, tuple[Activation, str, Any]] = {}
        self.factors: list[tuple[Any, Any]] = []  # per layer: backward data (Dense) or (B_D, B_C)
        self.approximated: dict[int, str] = {}  # layer k -> how its derivative moments are approximated
        self.fans: list[int] = []
        self.exact = True
        self.finite = True

    def add(self, section: str, key: str, title: str, statement: str, equation: sp.Basic,
            justification: str) -> None:
        self.steps.append(Step(key, section, title, statement, equation, justification))

    def run(self) -> NetworkDerivation:
        net = self.net
        q0 = exact(net.input_variance)
        state = _State(sp.Integer(0), q0, sp.Integer(0), False, False, True)
        width = net.input_shape[0]
        states = []
        for k, layer in enumerate(net.layers, start=1):
            self.fans.append(width)
            if isinstance(layer, Dense):
                state = self.dense(k, layer, width, state)
                width = layer.width
            elif isinstance(layer, Nonlinearity):
                state = self.nonlinearity(k, layer, state)
            else:
                raise fail(f"layers[{k - 1}]", layer, "a Dense or Nonlinearity layer (the layer walk "
                           "has no symbolic rules for other layer types)")
            states.append(state)
        grads, g_in = self.backward()
        return NetworkDerivation(
            network=net, steps=tuple(self.steps), output_mean=tuple(s.mean for s in states),
            output_second=tuple(s.second for s in states), output_cross=tuple(s.cross for s in states),
            output_gradient_second=grads, input_gradient_second=g_in, expectations=self.expectations,
            assumptions=self.assumptions(), exact=self.exact, exact_at_finite_width=self.finite)

    # --- Dense ---------------------------------------------------------------------------------
    def dense(self, k: int, layer: Dense, n: int, a: _State) -> _State:
        mu, v = _weight_moments(layer.init, n, layer.width)
        sb = exact(layer.bias_variance)
        self.factors.append((mu, v))
        self.add("weights", f"layer{k}.weights", f"Layer {k}: weight moments",
                 f"Dense layer {k} maps width {n} -> {layer.width}: weight mean and variance at "
                 f"fan-in {n}, fan-out {layer.width}; bias variance sigma_b^2.",
                 _eq(sp.ImmutableMatrix([MU_W, SIGMA_W2, SIGMA_B2]), sp.ImmutableMatrix([mu, v, sb])),
                 f"from the scheme {scheme_text(layer.init)}")
        m, d, c = (_simp(e) for e in Dense.forward_moments(mu, v, n, a.mean, a.second, a.cross, sb))
        zero_mean = _is_zero(mu)
        if zero_mean:
            rhs, lhs = d, SECOND[k]
            text = (f"z = W y_{k - 1} + b with zero-mean weights: m_{k} = C_{k} = 0 and "
                    f"D_{k} = n sigma_w^2 D_{k - 1} + sigma_b^2 with n = {n}.")
        else:
            lhs = sp.ImmutableMatrix([MEAN[k], SECOND[k], CROSS[k]])
            rhs = sp.ImmutableMatrix([m, d, c])
            text = (f"z = W y_{k - 1} + b with weight mean mu_w != 0: m_{k} = mu_w n m_{k - 1}, "
                    f"D_{k} = sigma_w^2 n D_{k - 1} + mu_w^2 S + sigma_b^2, C_{k} = mu_w^2 S with "
                    f"S = n D_{k - 1} + n(n-1) C_{k - 1}, n = {n}.")
        self.add("forward", f"layer{k}.forward", f"Layer {k}: dense", text, _eq(lhs, rhs),
                 "Dense.forward_moments: weights independent of the layer's input"
                 + ("" if layer.init.is_iid else "; orthogonal entries are uncorrelated (sign symmetry)")
                 + "; exact at every width")
        if not (zero_mean or a.exact):
            self.finite = False  # uses an infinite-width mean and cross moment of its input
        return _State(m, d, c, a.shifted or not zero_mean, layer.init.is_symmetric, a.exact or zero_mean)

    # --- Nonlinearity ----------------------------------------------------------------------------
    def nonlinearity(self, k: int, layer: Nonlinearity, z: _State) -> _State:
        act = layer.activation
        c = layer.linear_slope()
        if c is not None:
            self.factors.append((c**2, c**2))
            out = _State(_simp(c * z.mean), _simp(c**2 * z.second), _simp(c**2 * z.cross), z.shifted,
                         z.symmetric, z.exact)
            self.add("forward", f"layer{k}.forward", f"Layer {k}: {act.name}",
                     f"phi(x) = {c} x is linear: m_{k} = c m_{k - 1}, D_{k} = c^2 D_{k - 1}, "
                     f"C_{k} = c^2 C_{k - 1}.",
                     _eq(sp.ImmutableMatrix([MEAN[k], SECOND[k], CROSS[k]]),
                         sp.ImmutableMatrix([out.mean, out.second, out.cross])),
                     "Nonlinearity.linear_slope: exact, no Gaussianity needed")
            return out
        homogeneous = act.traits.exact_at_finite_width and z.symmetric
        if z.shifted and not (homogeneous and _is_zero(z.mean) and _is_zero(z.cross)):
            raise fail(f"layers[{k - 1}]", layer,
                       "a linear activation here: its input units carry a shared random shift from "
                       "a Dense layer with non-zero-mean weights, which the layer walk does not "
                       "integrate out (a plain MLP gets the shift-conditioned derivation: "
                       "derive(activation, init))")
        if not (_is_zero(z.mean) and _is_zero(z.cross)):
            raise fail(f"layers[{k - 1}]", layer,
                       "a nonlinearity whose input is Gaussian (a Dense layer's output or the "
                       "network input): its input here is the output of another nonlinearity "
                       "(non-zero mean or cross moment), which is not Gaussian")
        if not homogeneous:
            self.finite = False
        q = z.second
        moments = layer.symbolic_moments(0, q)
        if moments is not None and any(sp.sympify(e).has(sp.nan, sp.zoo) for e in moments.values()):
            moments = None  # the closed form is undefined at this variance (e.g. q = 0): integrals
        if moments is None:
            self.exact = False
            integrals = layer.moment_integrals(0, q)
            moments = {}
            for name in MOMENTS:
                sym = EXPECTATIONS[name][k]
                self.expectations[sym] = (act, name, q)
                moments[name] = sym
                self.add("forward", f"layer{k}.{name}", f"Layer {k}: named expectation {sym}",
                         f"No closed form for {act.name}: the Gaussian moment at z ~ N(0, D_{k - 1}).",
                         _eq(sym, integrals[name]),
                         "definition; evaluated by Gaussian quadrature (varprop._math.quadrature)")
            why = "named expectations (Gaussian integrals)"
        else:
            moments = {name: _simp(e) for name, e in moments.items()}
            rules = act.closed_form
            if rules is not None and not rules.exact:
                self.exact = False
            why = ("exact closed form" if rules is not None and rules.exact else
                   f"APPROXIMATION {rules.approximation if rules is not None else ''}; exact "
                   "reference: quadrature")
            if rules is not None and not rules.exact:
                self.approximated[k] = (f"E[phi'(z)^2] from the APPROXIMATION {rules.approximation} "
                                        "(exact reference: quadrature)")
        m, d = moments["mean"], moments["second"]
        self.factors.append((moments["deriv_second"], _simp(moments["deriv_mean"] ** 2)))
        out = _State(m, d, _simp(m**2), z.shifted, False, False)
        self.add("forward", f"layer{k}.forward", f"Layer {k}: {act.name}",
                 f"y_{k} = phi(z) with z ~ N(0, D_{k - 1}), units independent: m_{k} = E[phi(z)], "
                 f"D_{k} = E[phi(z)^2], C_{k} = m_{k}^2.",
                 _eq(sp.ImmutableMatrix([MEAN[k], SECOND[k], CROSS[k]]), sp.ImmutableMatrix([m, d, out.cross])),
                 f"Nonlinearity.symbolic_moments: {why}"
                 + (" (exact at every width for this positively homogeneous phi)" if homogeneous else
                    "; infinite-width mean field (Gaussian pre-activations)"))
        return out

    # --- backward ----------------------------------------------------------------------------
    def backward(self) -> tuple[tuple[Any, ...], Any]:
        layers = list(self.net.layers)
        K = len(layers)
        g_d, g_c = sp.Integer(1), sp.Integer(0)
        grads: list[Any] = [sp.Integer(0)] * K
        for k in range(K, 0, -1):
            grads[k - 1] = g_d
            layer, (f1, f2) = layers[k - 1], self.factors[k - 1]
            if isinstance(layer, Dense):
                g_d, g_c = (_simp(e) for e in Dense.backward_moments(f1, f2, layer.width, g_d, g_c))
                text = (f"g = W^T delta (fan-out {layer.width}): G_{k - 1} = n sigma_w^2 G_{k} + "
                        f"mu_w^2 S, G^x_{k - 1} = mu_w^2 S, S = n G_{k} + n(n-1) G^x_{k}.")
                why = "Dense.backward_moments: gradient independence (delta independent of W)"
            else:
                g_d, g_c = _simp(f1 * g_d), _simp(f2 * g_c)
                text = (f"delta = phi'(z) g: G_{k - 1} = E[phi'(z)^2] G_{k}, "
                        f"G^x_{k - 1} = E[phi'(z_i) phi'(z_j)] G^x_{k}.")
                why = ("exact for a linear phi" if layer.linear_slope() is not None else
                       "gradient independence: phi'(z) independent of g")
                if k in self.approximated:
                    why += "; " + self.approximated[k]
            self.add("backward", f"layer{k}.backward", f"Layer {k}: backward", text,
                     _eq(sp.ImmutableMatrix([GRAD[k - 1], GRAD_CROSS[k - 1]]), sp.ImmutableMatrix([g_d, g_c])),
                     why)
        return tuple(grads), g_d

    def assumptions(self) -> tuple[str, ...]:
        return (
            ("Layers k = 1..K map y_{k-1} to y_k; the input y_0 = x has i.i.d. zero-mean entries of "
             f"second moment q_0 = {exact(self.net.input_variance)} (input_variance)."),
            ("Weights of each Dense layer from its own init scheme at its own fans, independent of "
             "the input, the biases and other layers; biases i.i.d. N(0, sigma_b^2)."),
            ("Infinite-width mean field: pre-activations entering a nonlinear activation are "
             "Gaussian and independent across units (given a zero-mean weight layer before it)."),
            ("Backward pass: dL/dy_K has i.i.d. zero-mean unit-variance entries independent of the "
             "forward pass (G_K = 1); gradient independence at every layer."),
        )
