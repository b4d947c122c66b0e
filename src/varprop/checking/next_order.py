r"""The allowance of an approximate claim: the :math:`O(1/n^2)` remainder of the 1/n expansion.

At finite width the ensemble second moments of a nonlinear net are not the mean field
:math:`\theta_0` but the 1/n-corrected :math:`\theta_1` (that of
``predict_variance(..., finite_width=True)``) up to the next order.  Both claims are judged
against the same allowance, the theory's estimate of that remainder,
:meth:`varprop.theory.finite.expansion.FiniteWidthMoments.next_order`:
:math:`c\rho^2` with :math:`\rho = |s| + \max_{l\in\mathcal L} v_l/m_l^2` (relative 1/n shift
plus the largest relative variance of the layers' scale :math:`\hat q_l` on the statistic's
path) and :math:`c = 0.3`; its definition, calibration by Monte Carlo and regime
(:math:`\rho \le 0.75`) are documented with it in :mod:`varprop.theory.finite.expansion`.  So
the mean-field claim, off by :math:`s`, is refuted once the Monte Carlo resolves
:math:`|s| - c\rho^2`, and the corrected claim is confirmed.  This module turns the expansion
into the checker's :class:`FiniteWidthCase` (with the reasons where the expansion does not
cover a claim: orthogonal or non-zero-mean weights, the across-unit spread of a non-odd
activation, networks other than dense chains, :math:`\rho > 0.75`).
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
from varprop.theory.finite.expansion import (
    NEXT_ORDER_CONSTANT,
    REGIME_LIMIT,
    FiniteWidthMoments,
    finite_width_moments,
)

__all__ = ["NEXT_ORDER_CONSTANT", "REGIME_LIMIT", "FiniteWidthCase", "finite_width_case",
           "refutation_note"]

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
    try:
        fm = _moments(act, scheme, tuple(ws), float(input_variance), float(bias_variance))
    except (VarpropError, ArithmeticError, ValueError) as exc:  # e.g. m_l < 0 deep and narrow
        return None, f"the expansion is not available ({' '.join(str(exc).split())[:160]})"
    theta0, theta1 = (float(np.asarray(values, dtype=float)[layer - 1])
                      for values in fm.moment_pair(quantity))
    spread = float(fm.path_spread(quantity)[layer - 1])
    if not (math.isfinite(theta0) and math.isfinite(theta1) and theta0 > 0 and theta1 > 0
            and math.isfinite(spread)):
        return None, (f"the expansion has no finite positive value here (mean field {theta0:.3g}, "
                      f"corrected {theta1:.3g}, max CV^2 of qhat {spread:.3g})")
    shift = theta1 / theta0 - 1.0
    rho = abs(shift) + spread  # FiniteWidthMoments.expansion_size at this layer
    return FiniteWidthCase(theta0, theta1, shift, spread, rho,
                           float(fm.next_order(quantity)[layer - 1]), rho <= REGIME_LIMIT), ""


@functools.lru_cache(maxsize=64)
def _moments(act: Activation, scheme: InitScheme, widths: tuple[int, ...], input_variance: float,
             bias_variance: float) -> FiniteWidthMoments:
    """:func:`finite_width_moments`, cached (a check, a document table and the plan ask for the
    same network's moments several times; quadrature activations take about a second at depth
    50)."""
    return finite_width_moments(act, scheme, widths=widths, input_variance=input_variance,
                                bias_variance=bias_variance)


def refutation_note(case: FiniteWidthCase | None, estimate: float | None, theta0: float,
                    corrected_claim: bool) -> str:
    """The sentence a refuted mean-field claim adds to its reason: the measured shift and the
    corrected value (empty for a corrected claim or without an expansion)."""
    if case is None or corrected_claim or estimate is None or theta0 == 0:
        return ""
    return (f"; measured finite-width shift {100 * (estimate / theta0 - 1):+.3g}% from the mean "
            f"field, predicted by the 1/n expansion: {100 * case.shift:+.3g}% (corrected value "
            f"{case.corrected:.6g}; verify with finite_width=True)")

