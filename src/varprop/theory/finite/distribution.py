r"""The :class:`Distribution` of one network's statistic across random networks.

A statistic :math:`X > 0` (a mean square, an across-unit standard deviation) or its logarithm is
described by the law of a log variable :math:`L` (:mod:`varprop.theory.finite.loglaw`):
:math:`X = e^{L}` (``"mean_square"``), :math:`X = e^{L/2}` (``"unit_std"``, :math:`L` the log of
the across-unit variance) or :math:`X = L` (``"log_mean_square"``).  Quantiles map through the
monotone transform; the mean and variance are the law's (exact for the exact laws, or the
exact / :math:`1/n` moments the fitted law was matched to).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from varprop._util.validation import check_probability, check_real, fail
from varprop.theory.finite.loglaw import LogChiSquareSum, LogNormal

__all__ = ["METHODS", "Distribution"]

#: How a Distribution was obtained.
METHODS = {
    "exact": "the exact law (closed-form characteristic function, numerically inverted)",
    "exact moments": "exact mean and variance; quantiles from a law with that mean and variance "
                     "(an approximation): without bias the product of l + 1 i.i.d. scaled "
                     "chi-squares (the exact Gaussian-weight law's shape), otherwise the log-normal "
                     "law",
    "1/n": "mean and variance to O(1/n) (delta method on the law of qhat); quantiles from a law "
           "with that mean and variance (an approximation): exp(N) * chi2_nu / nu for a mean "
           "square (a log-normal network-to-network factor times a scaled chi-square over units; "
           "the log-normal law where the within-network term is 0), for gradients a product of "
           "i.i.d. scaled chi-squares",
    "lognormal": "the log-normal limit: log X normal with its exact mean and variance",
    "moment-matched": "log of the mean square whose exact mean and variance are known: the mean "
                      "and variance of the log, and its quantiles, are those of the law matched "
                      "to them (product of scaled chi-squares, or log-normal) -- an "
                      "approximation, not exact",
}


@dataclass(frozen=True)
class Distribution:
    r"""The law across networks of one network's statistic (:func:`varprop.predict_distribution`).

    Attributes
    ----------
    statistic : str
        ``"mean_square"``, ``"unit_std"`` or ``"log_mean_square"``.
    quantity : str
        ``"preactivation"``, ``"activation"`` or ``"gradient"``.
    layer : int
        The dense layer :math:`l` (for ``"gradient"``: the gradient at layer :math:`l`'s input).
    method : str
        ``"exact"``, ``"exact moments"``, ``"moment-matched"``, ``"1/n"`` or ``"lognormal"``
        (:data:`METHODS`).
    order : str
        What is neglected, in a sentence.
    assumptions : tuple of str
        The model the law holds in.
    mean, variance : float
        :math:`EX`, :math:`\operatorname{Var}X`.
    law : LogChiSquareSum or LogNormal
        The law of :math:`L` with :math:`X = e^{\text{power}\cdot L}` (``power`` 1 for
        ``mean_square``, 1/2 for ``unit_std``, None for ``log_mean_square``: :math:`X = L`);
        :mod:`varprop.theory.finite.loglaw`.
    relative_variance : float or None
        :math:`CV^2` computed from the log-moments (finite where the moments overflow).
    zero_probability : float
        :math:`P(X = 0)` (a narrow ReLU network can switch every unit of a layer off); for
        ``log_mean_square`` the probability of :math:`-\infty`, which is at most
        ``LOG_ATOM_TOLERANCE`` (:mod:`varprop.theory.finite.statistics`: beyond it
        ``log_mean_square`` is refused) and 0 for the ``"lognormal"`` method (whose law of
        :math:`\log X` is normal).
    """

    statistic: str
    quantity: str
    layer: int
    method: str
    order: str
    assumptions: tuple[str, ...]
    mean: float
    variance: float
    law: LogChiSquareSum | LogNormal = field(repr=False)
    power: float | None = field(default=1.0, repr=False)
    relative_variance: float | None = field(default=None, repr=False)

    @property
    def cv2(self) -> float:
        r""":math:`\operatorname{Var}X / (EX)^2` (computed from the log-moments where the law is
        exact, so finite even where the mean and variance overflow).  Not defined for
        ``log_mean_square`` (the mean of a logarithm can be 0 or negative: use ``.variance``)."""
        if self.statistic == "log_mean_square":
            raise fail("statistic", self.statistic, "'mean_square' or 'unit_std' for .cv2 (the "
                       "CV^2 of a logarithm is not scale-free; use .variance)")
        if self.relative_variance is not None:
            return self.relative_variance
        if self.mean == 0.0:
            return math.inf
        return self.variance / self.mean ** 2

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    @property
    def zero_probability(self) -> float:
        return float(self.law.zero_probability)

    def _to_x(self, ell: float) -> float:
        if self.power is None:
            return ell
        return 0.0 if ell == -math.inf else math.exp(self.power * ell)

    def quantile(self, p: float) -> float:
        """The ``p``-quantile, ``0 < p < 1``."""
        p = check_probability("p", p)
        return self._to_x(self.law.quantile(p))

    def cdf(self, x: float) -> float:
        """:math:`P(X \\le x)`."""
        x = check_real("x", x)
        if self.power is None:
            return self.law.cdf(x)
        if x < 0:
            return 0.0
        return self.law.cdf(-math.inf if x == 0 else math.log(x) / self.power)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The central interval holding probability ``level`` (``0 < level < 1``)."""
        level = check_probability("level", level)
        return self.quantile((1 - level) / 2), self.quantile((1 + level) / 2)

    def __repr__(self) -> str:
        return (f"Distribution({self.statistic} of {self.quantity} at layer {self.layer}: "
                f"mean={self.mean:.6g}, variance={self.variance:.6g}, method={self.method!r})")
