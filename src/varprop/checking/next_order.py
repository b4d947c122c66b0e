r"""The allowance of an approximate claim: the :math:`O(1/n^2)` remainder of the 1/n expansion.

At finite width the ensemble second moments of a nonlinear net are not the mean field
:math:`\theta_0`: the realised scale :math:`\hat q_l` of a network fluctuates, and the curvature of
:math:`f(q) = E\,\phi(\sqrt q\,\xi)^2` turns the fluctuation into a bias (Yaida 2020; Roberts,
Yaida & Hanin 2022).  :func:`varprop.theory.finite.expansion.finite_width_moments` gives the mean
:math:`m_l` and variance :math:`v_l` of :math:`\hat q_l` to :math:`O(1/n)` and the corrected
value :math:`\theta_1` (that of ``predict_variance(..., finite_width=True)``).  The truth is
:math:`\theta_1` up to the next order, so both claims are judged against the same allowance, an
estimate of that remainder:

.. math::

    s = \frac{\theta_1}{\theta_0} - 1, \qquad
    \rho = |s| + \max_{l \in \mathcal L} \frac{v_l}{m_l^2}, \qquad
    \text{tol}_{fw} = c\,\rho^2, \quad c = 0.3 ,

with :math:`\mathcal L` the layers the statistic passes through (``1..layer`` forward, all layers
backward).  :math:`\rho` is the size of the first-order terms (the relative shift and the
relative variance of :math:`\hat q`, both :math:`O(\sum_l 1/n_l)`); the neglected terms are of
order :math:`\rho^2`.  So the mean-field claim :math:`\theta_0`, off by :math:`s`, is refuted once
the Monte Carlo resolves :math:`|s| - c\rho^2`, and the corrected claim is confirmed.

**Calibration of** :math:`c` (from-scratch NumPy Monte Carlo with the Gaussian shortcut, exact in
law for Gaussian weights; ``tanh``, ``erf``, ``sigmoid`` with ``xavier_normal``, ``gelu`` with
``he_normal``, ``selu`` with ``lecun_normal``; widths 8, 16, 32, 64, 128, 256, 512, 1024; depths 1,
2, 5, 10, 20, 50, 100; 1953 to 40000 networks per width; 435 cases of :math:`E z_l^2` and
:math:`E a_l^2` with :math:`\rho \le 0.5`, 14 more with :math:`0.5 < \rho \le 0.75`).  The
largest measured remainder
:math:`(|\hat\theta/\theta_1 - 1| - 3\,se)/\rho^2` was 0.150 (erf, width 32, depth 100:
:math:`\hat\theta/\theta_1 - 1 = +1.42\% \pm 0.18\%` at :math:`s = -10.1\%`, :math:`\rho = 0.24`),
then 0.137 (the same case's :math:`E z^2`), 0.089 (erf, width 32, depth 50), 0.047 (selu, width
16, depth 100: :math:`+1.50\% \pm 0.27\%`, :math:`\rho = 0.38`); for
:math:`0.5 < \rho \le 0.75` the largest was 0.134 (erf, width 16, depth 20, :math:`\rho = 0.55`;
tanh width 32 depth 20, :math:`\rho = 0.66`: corrected off by :math:`+2.2\% \pm 0.3\%`, ratio
0.026, where the mean field is off by :math:`-15\%`).  :math:`c = 0.3` keeps a margin of 2 over
the largest.  Beyond :math:`\rho = 0.75` the ratio reaches 0.23 (erf, width 16, depth 50,
:math:`\rho = 0.96`: corrected off by +22%).  Examples: tanh width 256 depth 100,
:math:`E a^2`: mean field off by
:math:`-11.8\% \pm 0.6\%`, corrected :math:`s = -12.3\%`, remainder :math:`+0.6\% \pm 0.6\%`
(:math:`\rho = 0.43`, allowance 5.6%); tanh width 32 depth 5: :math:`-0.2\% \pm 0.2\%`.

**Regime.** Where :math:`\rho >` :data:`REGIME_LIMIT` = 0.75 the expansion is not small (e.g. tanh
at depth 50 and width 32, :math:`\rho = 3.6`, where the corrected value is itself off by +27%;
gelu with He weights, whose per-network scale spreads over decades): the claim is not decidable
by the expansion, and the broad allowance :math:`2\sum_l 1/n_l` of the mean-field era applies
(the reason says so).  The same broad allowance applies where no expansion is available
(orthogonal or non-zero-mean weights, the across-unit spread of a non-odd activation, networks
other than dense chains).

**Backward quantities** (the gradient at a layer's input and the weight gradient; the expansion
includes the correlation of the forward and backward passes through the shared weights): measured
with ``simulate(engine="dense")`` (the same weights forward and backward) for tanh, erf, sigmoid
(``xavier_normal``) and selu (``lecun_normal``), widths 8 to 128, depths 5 to 20, 1831 to 20000
networks, 56 cases: the largest :math:`(|\hat\theta/\theta_1 - 1| - 3\,se)/\rho^2` was 0.125
(sigmoid, width 16, depth 5, gradient at the input: :math:`+2.6\% \pm 0.7\%`,
:math:`\rho = 0.18`), then 0.053 (erf, width 32, depth 20, weight gradient: the mean field off
by +18.6%, the corrected value by :math:`-6.4\% \pm 1.8\%` at :math:`\rho = 0.40`): the same
:math:`c` covers them, with :math:`\rho` taken over all layers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.errors import VarpropError
from varprop.network.quantities import spec
from varprop.theory.finite.expansion import FiniteWidthMoments, finite_width_moments

__all__ = ["NEXT_ORDER_CONSTANT", "REGIME_LIMIT", "FiniteWidthCase", "finite_width_case",
           "moment_pair", "refutation_note"]

#: :math:`c` of the next-order allowance :math:`c\rho^2` (calibrated above: largest measured 0.150).
NEXT_ORDER_CONSTANT = 0.3
#: Largest :math:`\rho = |s| + \max_l v_l/m_l^2` at which the 1/n expansion decides a claim.
REGIME_LIMIT = 0.75


@dataclass(frozen=True)
class FiniteWidthCase:
    r"""The 1/n expansion of one claim.

    Attributes
    ----------
    mean_field, corrected : float
        :math:`\theta_0` (infinite width) and :math:`\theta_1` (with the :math:`O(1/n)` term).
    shift : float
        :math:`s = \theta_1/\theta_0 - 1`.
    spread : float
        :math:`\max_l v_l/m_l^2`, the largest relative variance of :math:`\hat q_l` on the path.
    rho : float
        :math:`|s| +` ``spread``.
    remainder : float
        The allowance :math:`c\rho^2`.
    in_regime : bool
        :math:`\rho \le` :data:`REGIME_LIMIT`.
    """

    mean_field: float
    corrected: float
    shift: float
    spread: float
    rho: float
    remainder: float
    in_regime: bool

    def describe(self) -> str:
        """The allowance in words, from its numbers."""
        head = (f"1/n-corrected value {self.corrected:.6g} (shift {100 * self.shift:+.3g}% "
                f"from the "
                f"mean field {self.mean_field:.6g}; max CV^2 of qhat {self.spread:.3g}; "
                f"rho = {self.rho:.3g})")
        if self.in_regime:
            return (f"{head}; next-order allowance {NEXT_ORDER_CONSTANT:g} * rho^2 = "
                    f"{self.remainder:.3g}")
        return (f"{head}; rho > {REGIME_LIMIT:g}: out of the expansion's regime, the claim is "
                "not decidable by the 1/n expansion")


def _no_expansion(act: Activation, scheme: InitScheme, quantity: str, target: str) -> str | None:
    """Why the 1/n expansion does not cover the claim, or ``None`` if it does."""
    if not (scheme.is_zero_mean and scheme.is_iid):
        return "weights that are not zero-mean i.i.d."
    if target == "unit_spread" and quantity == "activation" and not act.traits.odd:
        return "the across-unit spread of a non-odd activation"
    if target not in ("ensemble", "unit_spread"):
        return f"target {target!r}"
    return None


def finite_width_case(act: Activation, scheme: InitScheme, *, widths: Sequence[int], layer: int,
                      quantity: str, input_variance: float, bias_variance: float,
                      target: str = "ensemble"
                      ) -> tuple[FiniteWidthCase | None, str]:
    r"""The expansion of ``quantity`` at ``layer`` (:class:`FiniteWidthCase`), or ``None`` and the
    reason the 1/n expansion does not cover it.

    For ``target="unit_spread"`` the estimand is :math:`E[s^2]` (``ddof=1``): for pre-activations
    (and activations of an odd :math:`\phi`) with zero-mean weights it equals the ensemble second
    moment, since given the previous layer the units are i.i.d. with mean 0.
    """
    why = _no_expansion(act, scheme, quantity, target)
    if why is not None:
        return None, why
    ws = [int(w) for w in widths]
    L = len(ws) - 1
    try:
        fm = _moments(act, scheme, tuple(ws), float(input_variance), float(bias_variance))
    except (VarpropError, ArithmeticError, ValueError) as exc:  # e.g. m_l < 0 deep and narrow
        return None, f"the expansion is not available ({' '.join(str(exc).split())[:160]})"
    theta0, theta1 = (float(np.asarray(values, dtype=float)[layer - 1])
                      for values in moment_pair(fm, quantity))
    path = L if spec(quantity).backward else layer
    m = np.asarray(fm.q_mean, dtype=float)[:path]
    v = np.asarray(fm.q_var, dtype=float)[:path]
    with np.errstate(all="ignore"):
        cv2 = v / (m * m)
    spread = float(np.max(cv2)) if cv2.size else 0.0
    if not (math.isfinite(theta0) and math.isfinite(theta1) and theta0 > 0 and theta1 > 0
            and math.isfinite(spread)):
        return None, (f"the expansion has no finite positive value here (mean field {theta0:.3g}, "
                      f"corrected {theta1:.3g}, max CV^2 of qhat {spread:.3g})")
    shift = theta1 / theta0 - 1.0
    rho = abs(shift) + spread
    return FiniteWidthCase(theta0, theta1, shift, spread, rho, NEXT_ORDER_CONSTANT * rho * rho,
                           rho <= REGIME_LIMIT), ""


@functools.lru_cache(maxsize=64)
def _moments(act: Activation, scheme: InitScheme, widths: tuple[int, ...], input_variance: float,
             bias_variance: float) -> FiniteWidthMoments:
    """:func:`finite_width_moments`, cached (a check, a document table and the plan ask for the
    same network's moments several times; quadrature activations take about a second at depth
    50)."""
    return finite_width_moments(act, scheme, widths=widths, input_variance=input_variance,
                                bias_variance=bias_variance)


def moment_pair(fm: FiniteWidthMoments, quantity: str) -> tuple[np.ndarray, np.ndarray]:
    r"""``(mean field, corrected)`` per layer of ``quantity`` (a name of
    :func:`varprop.predict_variance`) from the moments of the expansion: :math:`E z^2`,
    :math:`E a^2`, :math:`\operatorname{Var} a = E a^2 - (E a)^2`, the input-side gradient and
    the weight gradient second moments."""
    if quantity == "preactivation":
        return fm.q_mean_field, fm.preact_second
    if quantity == "activation_second_moment":
        return fm.act_second_mean_field, fm.act_second
    if quantity == "activation":
        return (fm.act_second_mean_field - fm.act_mean_mean_field ** 2,
                fm.act_second - fm.act_mean ** 2)
    if quantity == "gradient":
        return fm.grad_second_mean_field, fm.grad_second
    return fm.weight_grad_second_mean_field, fm.weight_grad_second


def refutation_note(case: FiniteWidthCase | None, estimate: float | None, theta0: float,
                    corrected_claim: bool) -> str:
    """The sentence a refuted mean-field claim adds to its reason: the measured shift and the
    corrected value (empty for a corrected claim or without an expansion)."""
    if case is None or corrected_claim or estimate is None or theta0 == 0:
        return ""
    return (f"; measured finite-width shift {100 * (estimate / theta0 - 1):+.3g}% from the mean "
            f"field, predicted by the 1/n expansion: {100 * case.shift:+.3g}% (corrected value "
            f"{case.corrected:.6g}; verify with finite_width=True)")

