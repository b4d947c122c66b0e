r"""Errors of an approximate closed form: per moment, and compounded over depth.

An approximate closed form (tanh through the erf match, sigmoid through the probit match) has an
error per Gaussian moment (:attr:`varprop.components.activations.MomentRules.max_relative_error`, one bound
per moment, 0 for a moment that is exact).  Through the recursion the per-layer errors compound:
the relative error of the prediction at depth :math:`L` is

.. math::

    \varepsilon_L = \frac{\text{predict\_variance}(\dots, \text{depth}=L, \text{method}=
    \text{"closed\_form"})}{\text{predict\_variance}(\dots, \text{depth}=L, \text{method}=
    \text{"exact"})} - 1,

computed here for the pre-activation variance of the last layer and the gradient at the input.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.documents.store import fmt
from varprop.errors import VarpropError, VarpropWarning
from varprop.theory.predict import predict_variance

__all__ = ["COMPOUND_DEPTHS", "MOMENT_NAMES", "compounded_error", "moment_error_sentence"]

#: Depths of the compounded-error table.
COMPOUND_DEPTHS: tuple[int, ...] = (1, 2, 5, 10, 30, 100)

#: The four Gaussian moments in the order of ``gaussian_moments``, as the documents write them.
MOMENT_NAMES: dict[str, str] = {"mean": "$E[\\phi]$", "second": "$E[\\phi^2]$",
                                "deriv_mean": "$E[\\phi']$", "deriv_second": "$E[\\phi'^2]$"}


def compounded_error(act: Activation, scheme: InitScheme, quantity: str, *, width: int,
                     depths: Sequence[int] = COMPOUND_DEPTHS) -> list[float]:
    """Relative error closed form / exact - 1 of ``predict_variance`` at each depth (NaN where a
    prediction is not available)."""
    out = []
    for depth in depths:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", VarpropWarning)
                closed = predict_variance(act, scheme, fan_in=width, depth=depth, quantity=quantity,
                                          method="closed_form")
                exact = predict_variance(act, scheme, fan_in=width, depth=depth, quantity=quantity,
                                         method="exact")
        except VarpropError:
            out.append(math.nan)
            continue
        ok = math.isfinite(closed) and math.isfinite(exact) and exact > 0.0
        out.append(closed / exact - 1.0 if ok else math.nan)
    return out


def moment_error_sentence(act: Activation) -> str:
    """The declared error bound of every moment of ``act``'s approximate closed form, each
    separately ("exact" for a bound of 0)."""
    rules = act.closed_form
    if rules is None or rules.exact:
        return ""
    parts = []
    for key, label in MOMENT_NAMES.items():
        bound = rules.max_relative_error.get(key)
        if bound is None:
            parts.append(f"{label}: not declared")
        elif bound == 0.0:
            parts.append(f"{label}: exact (error 0)")
        else:
            parts.append(f"{label}: {fmt(100 * bound, 2)}%")
    return ("Declared maximum relative error of each closed-form moment over $q > 0$ (checked in "
            "the tests against quadrature): " + "; ".join(parts) + ".")
