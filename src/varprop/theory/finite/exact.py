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

exactly, for any zero-mean Gaussian bias and any input (the backward law does not see them),
with one exception: with zero bias a ReLU-type layer below :math:`l` whose units are all off
(probability :math:`2^{-n_j}`) makes every later :math:`z` exactly 0, where the coins are not
fair but all off, and the gradient is then exactly 0 (:func:`alive_probability`; for ReLU
:math:`E G_l = 2\prod_{j<l}(1 - 2^{-n_j})` at He init, :math:`l < L`, not 2).

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
    "activation_mean",
    "alive_probability",
    "alive_probabilities",
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
        # Satterthwaite: the across-unit variance of n i.i.d. phi(xi) as a scaled chi-square with
        # its exact mean and variance -- given that not every unit is off (ReLU-type: the atom
        # 2^-n where the variance is exactly 0), so that the unconditional moments stay exact
        u, var_s2 = _sample_variance_moments(lay.act, n)
        p0 = 2.0 ** -n if lay.alpha * lay.beta == 0.0 else 0.0
        u1, second = u / (1.0 - p0), (var_s2 + u * u) / (1.0 - p0)
        nu = 2 * u1 * u1 / (second - u1 * u1)
        law = _sum(pieces, shift + math.log(u1 / nu) + math.log((n - 1) / (n - ddof)), lay)
        last = (ChiSquareMixture((p0, 1.0 - p0), (1.0, 1.0), (0, nu)) if p0 > 0.0 else
                ChiSquareMixture.single(1.0, nu))
        return None if law is None else LogChiSquareSum(law.terms + ((last, 1),), law.shift)
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
    r"""The exact law of :math:`\log(|\partial\mathcal L/\partial a_{l-1}|^2 / n_{l-1})`,
    including the dead-layer atom of ReLU (:func:`alive_probability`): with probability
    :math:`1 - P_{\rm alive}` the gradient is exactly 0, otherwise it has the law of the module
    docstring (given that no layer below :math:`l` died, :math:`z_l \ne 0` has a non-zero
    variance and the sign coins of layers :math:`l..L-1` are fair and independent of the past)."""
    ws, s2 = lay.widths, lay.sigma2
    L = len(ws) - 1
    shift = sum(math.log(s) for s in s2[layer - 1:]) - math.log(ws[layer - 1])
    pieces = [("chi2", ws[L])] + [("ratio", n) for n in ws[layer:L]]
    law = _sum(pieces, shift, lay)
    alive = alive_probability(lay, layer)
    first = ChiSquareMixture((1.0 - alive, alive), (1.0, 1.0), (0, ws[layer - 1]))
    if alive == 1.0:
        first = ChiSquareMixture.single(1.0, ws[layer - 1])
    return LogChiSquareSum(law.terms + ((first, 1),), law.shift)


def alive_probability(lay: ExactLayers, layer: int) -> float:
    r"""The probability that the gradient at layer :math:`l`'s input is not killed by a dead
    layer below it.  With zero bias and a ReLU-type activation (one slope 0), a layer :math:`j`
    whose :math:`n_j` units are all off (probability :math:`2^{-n_j}` given a non-zero input, for
    any symmetric continuous weight law) makes every later :math:`z_k = 0` and so every later
    derivative :math:`\phi'(0) = 0` (the convention of PyTorch and varprop's simulator); the
    gradient at :math:`a_{l-1}` passes through :math:`\phi'(z_l), \dots, \phi'(z_{L-1})`, so

    .. math:: P_{\rm alive} = \prod_{j=1}^{l-1}(1 - 2^{-n_j}) \quad (l < L), \qquad
              P_{\rm alive} = 1 \quad (l = L),

    and 1 for linear, ``abs`` and leaky ReLU (no dead layers).  Dead layers at or above
    :math:`l` are the atoms :math:`K_k = 0` of the :math:`R_k` factors already."""
    return float(alive_probabilities(lay)[layer - 1])


def alive_probabilities(lay: ExactLayers) -> np.ndarray:
    """:func:`alive_probability` for every layer :math:`l = 1..L` (a cumulative product: linear
    in depth)."""
    L = len(lay.widths) - 1
    out = np.ones(L)
    if lay.alpha * lay.beta != 0.0:
        return out
    alive = -np.expm1(-np.asarray(lay.widths[1:L], dtype=float) * math.log(2.0))
    out[1:L - 1] = np.cumprod(alive)[:L - 2] if L > 2 else out[1:L - 1]
    return out


def activation_mean(lay: ExactLayers) -> np.ndarray:
    r"""The exact ensemble mean :math:`E a_{l,i}`, :math:`l = 1..L` (Gaussian weights, zero bias).
    Given layer :math:`l-1`, :math:`z_{l,i} = \sqrt{\hat q_l}\,\xi` with :math:`\xi` standard
    normal independent of :math:`\hat q_l`, so

    .. math:: E a_{l,i} = \frac{\alpha - \beta}{\sqrt{2\pi}}\,E\sqrt{\hat q_l}, \qquad
              E\sqrt{\hat q_l} = \sqrt{v\textstyle\prod_{k\le l}\sigma_k^2}\;
              E\sqrt{\chi^2_{n_0}}\prod_{k=1}^{l-1} E\sqrt{R_k},

    a product over the independent factors of the module docstring, with
    :math:`E\sqrt{c\chi^2_k} = \sqrt{2c}\,\Gamma(\tfrac{k+1}2)/\Gamma(\tfrac k2)` (binomial
    mixtures for ReLU, :math:`K = 0` contributing 0; a Gauss--Jacobi quadrature for the leaky
    ReLU's Beta factor).  Not the delta method :math:`\mu(m) + \mu''(m)v/2`, which for
    :math:`\mu \propto \sqrt q` is useless once :math:`\operatorname{Var}\hat q/(E\hat q)^2`
    is not small."""
    ws, s2 = lay.widths, lay.sigma2
    c = (lay.alpha - lay.beta) / math.sqrt(2.0 * math.pi)
    out = np.zeros(len(ws) - 1)
    if lay.input_variance == 0.0 or c == 0.0:
        return out
    # log E sqrt(qhat_l) is a sum over the independent factors: accumulate it layer by layer
    # (linear in depth; one law per distinct width)
    factor: dict[tuple[str, int], float] = {}

    def log_root_moment(kind: str, n: int) -> float:
        if (kind, n) not in factor:
            factor[(kind, n)] = _sum([(kind, n)], 0.0, lay).log_moment(0.5)
        return factor[(kind, n)]

    total = 0.5 * math.log(lay.input_variance) + log_root_moment("chi2", ws[0])
    for layer in range(1, len(ws)):
        total += 0.5 * math.log(s2[layer - 1])
        if layer > 1:
            total += log_root_moment("ratio", ws[layer - 1])
        out[layer - 1] = c * math.exp(total)
    return out


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
