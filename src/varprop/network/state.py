r"""The moment state of the infinite-width mean field: what one layer's output carries.

The mean-field engine (:mod:`varprop.theory.meanfield`) walks ``network.layers`` and asks each
layer to map the state of its input to the state of its output (forward) and the gradient state
at its output to the one at its input (backward).  This is the role of Neural Tangents'
``Kernel``: one value per layer position, no layer-specific code in the engine.

Forward: :class:`MomentState`
    Units :math:`x_i` of one layer's output are exchangeable; the state holds
    :math:`E x_i` (``mean``), :math:`E x_i^2` (``second``) and :math:`E x_i x_k`, :math:`i \ne k`
    (``cross``).  Two regimes:

    * *unconditional* (floats): zero-mean weights (``centred``: mean and cross moment vanish by
      symmetry, one variance per layer) or the :math:`(m, D, C)` closure of non-zero-mean
      weights with linear layers (exact at every width);
    * *conditional on the layer-1 shift* (arrays over the outer quadrature nodes :math:`u` of
      :mod:`varprop.theory.shifted`): given :math:`u` the units are i.i.d., ``mean`` and
      ``second`` are conditional moments, ``cross`` is ``mean**2`` and a pre-activation keeps its
      conditional variance :math:`q` (``var``) as computed, since ``second - mean**2`` would
      lose its digits.  Reported moments are averages over :math:`u`.

    The output of an elementwise nonlinearity also carries the derivative moments the backward
    pass needs (``deriv_second`` :math:`= E\phi'(z_i)^2`, ``deriv_cross``
    :math:`= E\phi'(z_i)\phi'(z_k)`).  ``gaussian`` says whether the units are (conditionally)
    Gaussian, which the Gaussian expectations of a nonlinearity assume: true for the input
    (assumed Gaussian), for a dense layer's output (central limit theorem at infinite width) and
    after a linear activation (``after`` records the activation that produced the state).

Backward: :class:`GradientState`
    :math:`E\delta_i^2` (``second``) and :math:`E\delta_i\delta_k` (``cross``) of the loss gradient
    with respect to a layer's output, under the gradient-independence assumption (the backward
    weights independent of the forward pass).

Equality of states (:meth:`MomentState.same`, :meth:`GradientState.same`) is numerical equality of
every moment (bitwise up to the sign of zero): an engine that sees the state entering a
repeated block equal to the one entering the block before knows every later block repeats it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Union

import numpy as np

__all__ = ["MomentState", "GradientState", "MomentEvaluator", "input_state", "conditioned_state",
           "NAN_MESSAGE"]

#: A moment: a float (unconditional) or an array over the outer nodes (conditional).
Value = Union[float, np.ndarray]

NAN_MESSAGE = ("a moment is 0 * inf: the variances leave the float range in both directions "
               "(e.g. vanishing derivatives times exploding gradients); reduce depth or rescale")


def _equal(a: Value | None, b: Value | None) -> bool:
    if a.__class__ is float and b.__class__ is float:  # the common case, first
        return a == b
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and bool(np.array_equal(a, b))
    return a == b


@dataclass(eq=False, slots=True)
class MomentState:
    r"""Moments of one layer's output (see the module docstring).

    Attributes
    ----------
    mean, second, cross : float or ndarray
        :math:`E x_i`, :math:`E x_i^2`, :math:`E x_i x_k` (:math:`i \ne k`); arrays are
        conditional on the outer nodes.
    centred : bool
        Mean and cross moment are zero by symmetry (zero-mean symmetric weights upstream).
    after : Activation or None
        The activation whose output this is (``None``: the input or a dense layer's output,
        (conditionally) Gaussian); the output of a linear activation is Gaussian too.
    var : ndarray or None
        Conditional variance :math:`q` of a conditional pre-activation, as computed.
    deriv_second, deriv_cross : float or ndarray or None
        :math:`E\phi'(z_i)^2` and :math:`E\phi'(z_i)\phi'(z_k)` (a nonlinearity's output).
    shift_scale : float or None
        The network input of a conditional recursion only: ``mean`` holds the standardised
        layer-1 shift :math:`u` and :math:`E[\sum_j x_j \mid u] =` ``shift_scale`` :math:`\cdot u`.
    """

    mean: Value
    second: Value
    cross: Value
    centred: bool = False
    after: object = None
    var: Value | None = None
    deriv_second: Value | None = None
    deriv_cross: Value | None = None
    shift_scale: float | None = None

    @property
    def gaussian(self) -> bool:
        """The units are (conditionally) jointly Gaussian (decided by the producing activation's
        traits only when asked)."""
        return self.after is None or bool(self.after.traits.linear)  # type: ignore[attr-defined]

    @property
    def conditional(self) -> bool:
        """Moments conditional on the outer nodes (arrays)."""
        return isinstance(self.second, np.ndarray)

    def same(self, other: MomentState | None) -> bool:
        """Numerically equal moments (what a repeated block's fixed point needs)."""
        return (other is not None and _equal(self.mean, other.mean)
                and _equal(self.second, other.second) and _equal(self.cross, other.cross))

    def reported(self, average: Callable[[np.ndarray], float]) -> tuple[float, float, float]:
        """``(E x, E x^2, E x_i x_k)``: averaged over the outer nodes when conditional."""
        if self.conditional:
            return average(self.mean), average(self.second), average(self.cross)  # type: ignore[arg-type]
        return self.mean, self.second, self.cross  # type: ignore[return-value]


@dataclass(eq=False, slots=True)
class GradientState:
    r""":math:`E\delta_i^2` and :math:`E\delta_i\delta_k` of the gradient at a layer's output."""

    second: Value
    cross: Value

    def same(self, other: GradientState | None) -> bool:
        return other is not None and _equal(self.second, other.second) and _equal(self.cross, other.cross)


def input_state(n0: int, input_variance: float, nodes: np.ndarray | None = None) -> MomentState:
    r"""The state of the network input: i.i.d. zero-mean entries with second moment
    ``input_variance`` (assumed Gaussian where a nonlinearity acts on it directly).

    With ``nodes`` (the standardised layer-1 shift :math:`u \sim N(0, 1)`), the state conditional
    on :math:`u = \sum_j x_j / \sqrt{n_0 \sigma_x^2}`: :math:`E[x_j^2 \mid u] = \sigma_x^2
    (n_0 - 1 + u^2) / n_0` (exact for Gaussian inputs).
    """
    if nodes is None:
        return MomentState(0.0, input_variance, 0.0, centred=True)
    second = input_variance * (n0 - 1.0 + nodes * nodes) / n0
    return MomentState(nodes, second, np.zeros_like(nodes), shift_scale=math.sqrt(n0 * input_variance))


def conditioned_state(state: MomentState, nodes: np.ndarray, fan_in: int) -> MomentState:
    r"""The unconditional state ``state`` entering the first Dense layer with non-zero-mean
    weights (every layer before it has zero-mean weights), made conditional on that layer's
    standardised shift :math:`u = (\sum_j a_j - n A_m) / \sqrt{n (A_D - A_m^2)}` at the outer
    ``nodes``.

    Given the layers before, the :math:`a_j` are i.i.d. at infinite width, so :math:`\sum_j a_j`
    is Gaussian with mean :math:`n A_m` and variance :math:`n (A_D - A_m^2)`: the conditional
    mean :math:`A_m + \sqrt{(A_D - A_m^2)/n}\, u` makes the layer's shift
    :math:`\mu_w \sum_j a_j` exact in law, and :math:`E[a_j^2 \mid u] = A_D + O(1/n)`.  (For the
    network input itself :func:`input_state` keeps the exact :math:`O(1/n)` term.)
    """
    m, d = float(state.mean), float(state.second)  # type: ignore[arg-type]
    spread = math.sqrt(max(d - m * m, 0.0) / fan_in)
    mean = m + spread * nodes
    return MomentState(mean, np.full_like(nodes, d), mean * mean, after=state.after)


class MomentEvaluator(Protocol):
    """Gaussian expectations of an activation, supplied by the engine (the numerics live in
    :mod:`varprop.theory`; the layers state which expectations they need)."""

    def zero_mean(self, act: object) -> Callable[[float], tuple[float, float, float]]:
        r"""``q -> (E phi, E phi^2, E phi'^2)`` for :math:`z \sim N(0, q)`."""
        ...

    def correlated(self, act: object, mean: float, var: float, cov: float
                   ) -> tuple[float, float, float, float, float, float]:
        r"""``(E phi, E phi^2, E phi_i phi_k, E phi', E phi'^2, E phi'_i phi'_k)`` for jointly
        Gaussian units with common mean, variance and covariance."""
        ...

    def conditional(self, act: object, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        r"""``(4, N)``: :math:`E\phi, E\phi^2, E\phi', E\phi'^2` for :math:`z \sim N(m_k, q_k)`."""
        ...
