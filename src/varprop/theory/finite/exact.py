r"""Exact finite-width laws of linear and ReLU-class networks.

Setting: an MLP with widths :math:`n_0, \dots, n_L`, Gaussian input :math:`x \sim N(0, v\,I)`,
i.i.d. zero-mean weights of variance :math:`\sigma_l^2` (excess kurtosis :math:`\kappa_l`),
biases :math:`N(0, \sigma_b^2)`, and a positively homogeneous activation of degree 1,
:math:`\phi(z) = \alpha z` for :math:`z > 0`, :math:`\beta z` for :math:`z < 0` (linear:
:math:`\alpha = \beta`; ReLU: :math:`\beta = 0`; ``abs``: :math:`\beta = -\alpha`; only
:math:`\alpha^2, \beta^2` matter).

The exact law (Gaussian weights, zero bias)
-------------------------------------------
Given layer :math:`l-1`, :math:`z_l \sim N(0, \hat q_l I)` with :math:`\hat q_l = \sigma_l^2
|a_{l-1}|^2` (:math:`a_0 = x`), so :math:`z_l = \sqrt{\hat q_l}\,\xi` with :math:`\xi` standard
normal and independent of the past, and

.. math:: |a_l|^2 = \hat q_l R_l, \qquad R_l = \alpha^2 \chi^2_{K_l} + \beta^2\chi^2_{n_l - K_l},
          \qquad K_l \sim \mathrm{Binomial}(n_l, 1/2),

independent across layers (Hanin 2018; Hanin & Nica 2019).  Hence
:math:`\log\hat q_l = \log(\sigma_1^2 v) + \log\chi^2_{n_0} + \sum_{k<l}(\log\sigma_{k+1}^2 + \log R_k)`
is a sum of independent terms, and so are the logs of the statistics:
:math:`\tfrac1{n}\sum_i z_{l,i}^2 = \hat q_l\chi^2_{n_l}/n_l`,
:math:`\tfrac1{n-d}\sum_i (z_{l,i} - \bar z_l)^2 = \hat q_l\chi^2_{n_l-1}/(n_l - d)` (``ddof`` :math:`d`),
:math:`\tfrac1{n}\sum_i a_{l,i}^2 = \hat q_l R_l / n_l`.  :math:`R_l` is a single
:math:`\alpha^2\chi^2_{n_l}` when :math:`\alpha^2 = \beta^2` and a binomial mixture
when one slope is 0 (with the atom :math:`K_l = 0`, :math:`a_l = 0`, of probability :math:`2^{-n_l}`);
for the general leaky ReLU (two non-zero slopes of different size)
:math:`R_l = \chi^2_{n_l}\,(\beta^2 + (\alpha^2 - \beta^2)B_l)` with
:math:`B_l \sim \mathrm{Beta}(K_l/2, (n_l - K_l)/2)` independent of the :math:`\chi^2_{n_l}`
(the fraction of a sum of independent chi-squares is independent of the sum), a bounded term
whose characteristic function is a Gauss--Jacobi quadrature
(:class:`~varprop.theory.finite.loglaw.AffineBetaMixture`).

Gradients (same weights forward and backward, :math:`\delta_L \sim N(0, I)` independent): with
:math:`J` the Jacobian from :math:`a_{l-1}` to :math:`z_L`, :math:`|J^\top\delta_L|^2` has the law
of :math:`|J u|^2` for :math:`u \sim N(0, I_{n_{l-1}})` (the same non-zero singular values), and
for a fixed direction the reflection :math:`W_{k,i} \to -W_{k,i}` (which flips unit :math:`i`'s
derivative between :math:`\alpha` and :math:`\beta` and keeps :math:`(W_{k,i} u)^2`) makes the
active sets fair coins independent of everything else (Hanin & Nica 2019), so

.. math:: |\partial\mathcal L/\partial a_{l-1}|^2 \overset{d}{=} \chi^2_{n_{l-1}}\,\sigma_L^2\chi^2_{n_L}
          \prod_{k=l}^{L-1}\sigma_k^2 R_k ,

exactly, for any zero-mean Gaussian bias and any input (the backward law does not see them).

Exact moments (any i.i.d. zero-mean weights, biases)
----------------------------------------------------
Conditionally on :math:`a = a_{l-1}`, the :math:`z_{l,i}` are i.i.d., symmetric (for a symmetric
weight law), with :math:`Q = E[z^2 \mid a] = \sigma^2|a|^2 + \sigma_b^2` and
:math:`E[z^4 \mid a] = 3Q^2 + \kappa\sigma^4\sum_j a_j^4`.  With :math:`c_2 = (\alpha^2+\beta^2)/2`,
:math:`c_4 = (\alpha^4 + \beta^4)/2` the three moments :math:`m = E|a|^2`, :math:`A = E|a|^4`,
:math:`B = E\sum_j a_j^4` close:

.. math::

    EQ &= \sigma^2 m + \sigma_b^2, \quad EQ^2 = \sigma^4 A + 2\sigma^2\sigma_b^2 m + \sigma_b^4,
    \quad E_4 = 3EQ^2 + \kappa\sigma^4 B, \\
    m' &= n c_2 EQ, \quad B' = n c_4 E_4, \quad A' = B' + n(n-1)c_2^2 EQ^2,

from :math:`m = n_0 v`, :math:`A = n_0(n_0+2)v^2`, :math:`B = 3n_0v^2`.  These give the exact
mean and variance of the mean squares (and of the pre-activations' across-unit variance,
through :math:`\operatorname{Var}s^2 = (\mu_4 - \sigma^4\tfrac{n-3}{n-1})/n`); the weight kurtosis
enters through :math:`B` (PyTorch's uniform defaults have :math:`\kappa = -1.2`).  For ReLU
:math:`\operatorname{Var}\log|a_L|^2 \approx 5\sum_l 1/n_l`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from varprop.components.activations import Activation
from varprop.theory.finite.conditional import powers
from varprop.theory.finite.loglaw import (
    AffineBetaMixture,
    ChiSquareMixture,
    LogChiSquareSum,
)

__all__ = [
    "ExactLayers",
    "ExactMoments",
    "exact_moments",
    "forward_law",
    "gradient_law",
    "jacobian_law",
    "ratio_terms",
    "slopes",
]


def slopes(act: Activation) -> tuple[float, float] | None:
    r""":math:`(\alpha, \beta)` of a positively homogeneous activation of degree 1, else None."""
    if act.traits.homogeneous_degree != 1.0:
        return None
    f = act.function
    up, down = (float(np.asarray(f(np.array([s])), dtype=float)[0]) for s in (1.0, -1.0))
    return up, -down


def ratio_terms(alpha: float, beta: float, n: int
                ) -> tuple[ChiSquareMixture | AffineBetaMixture, ...]:
    r"""The law of :math:`\log R`, :math:`R = \alpha^2\chi^2_K + \beta^2\chi^2_{n-K}`, as
    independent terms: one chi-square (:math:`\alpha^2 = \beta^2`), a binomial mixture (one slope
    zero), or :math:`\log\chi^2_n + \log(\beta^2 + (\alpha^2 - \beta^2)B)` (leaky ReLU)."""
    a2, b2 = alpha * alpha, beta * beta
    if a2 == b2:
        return (ChiSquareMixture.single(a2, n),)
    if a2 == 0.0 or b2 == 0.0:
        return (ChiSquareMixture.binomial(a2 + b2, n),)
    return ChiSquareMixture.single(1.0, n), AffineBetaMixture(a2, b2, n)


@dataclass(frozen=True)
class ExactLayers:
    """What the exact law needs: widths, weight variances, slopes, input variance."""

    widths: tuple[int, ...]
    sigma2: tuple[float, ...]
    alpha: float
    beta: float
    input_variance: float
    act: Activation


def _sum(pieces: list[tuple[str, int]], shift: float, lay: ExactLayers) -> LogChiSquareSum | None:
    """Group the terms ``("chi2", dof)`` / ``("ratio", n)`` by kind and width."""
    out: Counter = Counter()
    for (kind, n), count in Counter(pieces).items():
        terms = ((ChiSquareMixture.single(1.0, n),) if kind == "chi2" else
                 ratio_terms(lay.alpha, lay.beta, n))
        for term in terms:
            out[term] += count
    return LogChiSquareSum(tuple(out.items()), shift)


def forward_law(lay: ExactLayers, quantity: str, statistic: str, layer: int, ddof: int
                ) -> LogChiSquareSum | None:
    r"""The exact law of :math:`\log X` for the forward statistic (``statistic`` ``"mean_square"``
    or ``"variance"``: the across-unit variance with ``ddof``) at ``layer``; None where it is not
    a chi-square sum."""
    ws, s2 = lay.widths, lay.sigma2
    shift = math.log(s2[0]) + math.log(lay.input_variance) + sum(math.log(s) for s in s2[1:layer])
    pieces = [("chi2", ws[0])] + [("ratio", n) for n in ws[1:layer]]
    n = ws[layer]
    if quantity == "preactivation" and statistic == "mean_square":
        pieces.append(("chi2", n))
        shift -= math.log(n)
    elif quantity == "preactivation":
        pieces.append(("chi2", n - 1))
        shift -= math.log(n - ddof)
    elif statistic == "mean_square":
        pieces.append(("ratio", n))
        shift -= math.log(n)
    else:
        u, var_s2 = _sample_variance_moments(lay.act, n)
        nu = 2 * u * u / var_s2
        law = _sum(pieces, shift + math.log(u / nu) + math.log((n - 1) / (n - ddof)), lay)
        return None if law is None else LogChiSquareSum(
            law.terms + ((ChiSquareMixture.single(1.0, nu), 1),), law.shift)
    return _sum(pieces, shift, lay)


def _sample_variance_moments(act: Activation, n: int) -> tuple[float, float]:
    r"""Mean :math:`u = \operatorname{Var}\phi(\xi)` and variance
    :math:`\mu_4/n - u^2(n-3)/(n(n-1))` of the unbiased sample variance of :math:`n` i.i.d.
    :math:`\phi(\xi)`, :math:`\xi \sim N(0, 1)`."""
    p1, p2, p3, p4 = powers(act, 1.0)
    u = p2 - p1 * p1
    mu4 = p4 - 4 * p1 * p3 + 6 * p1 * p1 * p2 - 3 * p1 ** 4
    return u, mu4 / n - u * u * (n - 3) / (n * (n - 1))


def gradient_law(lay: ExactLayers, layer: int) -> LogChiSquareSum | None:
    r"""The exact law of :math:`\log(|\partial\mathcal L/\partial a_{l-1}|^2 / n_{l-1})`."""
    ws, s2 = lay.widths, lay.sigma2
    L = len(ws) - 1
    shift = sum(math.log(s) for s in s2[layer - 1:]) - math.log(ws[layer - 1])
    pieces = [("chi2", ws[layer - 1]), ("chi2", ws[L])] + [("ratio", n) for n in ws[layer:L]]
    return _sum(pieces, shift, lay)


def jacobian_law(lay: ExactLayers) -> LogChiSquareSum | None:
    r"""The exact law of :math:`\log J_{ij}^2`, :math:`J_{ij} = \partial z_{L,i}/\partial x_j`:
    given :math:`v = D_{L-1}W_{L-1}\cdots D_1W_1 e_j`, :math:`J_{ij} \sim N(0, \sigma_L^2|v|^2)`
    and :math:`|v|^2 \overset{d}{=} \prod_{l<L}\sigma_l^2 R_l` (fixed direction :math:`e_j`), so
    :math:`J_{ij}^2 \overset{d}{=} \chi^2_1 \prod_{l \le L}\sigma_l^2 \prod_{l<L} R_l`."""
    ws = lay.widths
    shift = sum(math.log(s) for s in lay.sigma2)
    return _sum([("chi2", 1)] + [("ratio", n) for n in ws[1:-1]], shift, lay)


@dataclass(frozen=True)
class ExactMoments:
    """Mean and second moment of a statistic (exact)."""

    mean: float
    second: float

    @property
    def variance(self) -> float:
        return max(self.second - self.mean ** 2, 0.0)


def exact_moments(widths: tuple[int, ...], sigma2: tuple[float, ...], kurtosis: tuple[float, ...],
                  alpha: float, beta: float, input_variance: float, bias_variance: float,
                  quantity: str, statistic: str, layer: int, ddof: int) -> ExactMoments:
    r"""Exact :math:`EX`, :math:`EX^2` by the moment recursion of the module docstring
    (``statistic`` ``"mean_square"`` or ``"variance"``; the latter for pre-activations only)."""
    v, b2 = input_variance, bias_variance
    n0 = widths[0]
    m, A, B = n0 * v, n0 * (n0 + 2) * v * v, 3 * n0 * v * v
    c2 = (alpha ** 2 + beta ** 2) / 2
    c4 = (alpha ** 4 + beta ** 4) / 2
    for l in range(1, layer + 1):
        s2, kap, n = sigma2[l - 1], kurtosis[l - 1], widths[l]
        EQ = s2 * m + b2
        EQ2 = s2 * s2 * A + 2 * s2 * b2 * m + b2 * b2
        E4 = 3 * EQ2 + kap * s2 * s2 * B
        if l == layer and quantity == "preactivation":
            if statistic == "mean_square":
                return ExactMoments(EQ, (n * E4 + n * (n - 1) * EQ2) / (n * n))
            c = (n - 1) / (n - ddof)
            var_s2 = E4 / n - EQ2 * (n - 3) / (n * (n - 1))
            return ExactMoments(c * EQ, c * c * (var_s2 + EQ2))
        m, B = n * c2 * EQ, n * c4 * E4
        A = B + n * (n - 1) * c2 * c2 * EQ2
    n = widths[layer]
    return ExactMoments(m / n, A / (n * n))
