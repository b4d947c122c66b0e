r"""Finite-width theory (issue 13): the :math:`1/n` expansion of the ensemble second moments
(:mod:`varprop.theory.finite.expansion`, backward pass in :mod:`varprop.theory.finite.backward`,
the Gaussian functions and their :math:`q`-derivatives in :mod:`varprop.theory.finite.functions`).
"""

from varprop.theory.finite.expansion import FiniteWidthMoments as FiniteWidthMoments
from varprop.theory.finite.expansion import finite_width_moments as finite_width_moments
from varprop.theory.finite.functions import FunctionValues as FunctionValues
from varprop.theory.finite.functions import gaussian_functions as gaussian_functions

__all__ = ["FiniteWidthMoments", "FunctionValues", "finite_width_moments", "gaussian_functions"]
