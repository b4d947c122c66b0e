r"""The :math:`1/n` expansion of an MLP's ensemble second moments at finite width.

Model and assumptions
---------------------
Widths :math:`n_0, \dots, n_L`; input :math:`x \sim N(0, s_x I_{n_0})` (what
:func:`varprop.simulate` draws); weights of layer :math:`l` i.i.d. zero-mean, symmetric, variance
:math:`\sigma_l^2` (the scheme at fans :math:`(n_{l-1}, n_l)`) and excess kurtosis
:math:`\kappa_l^w`; biases :math:`N(0, \sigma_b^2)`; :math:`C_l = \sigma_l^2 n_{l-1}`.
Given layer :math:`l-1` the pre-activations :math:`z_{l,i} = \sum_j W_{ij} a_{l-1,j} + b_i` are
i.i.d. with variance

.. math:: \hat q_l = \sigma_b^2 + \sigma_l^2 \sum_j a_{l-1,j}^2 \qquad (a_0 = x),

exactly Gaussian for Gaussian weights, otherwise with fourth cumulant
:math:`\hat\kappa_l = \kappa^w_l \sigma_l^4 \sum_j a_{l-1,j}^4 = O(1/n)`.  The per-network object
is the law of :math:`\hat q_l`; with :math:`f, g, \mu` of :mod:`varprop.theory.finite.functions`,

.. math::

    E[\hat q_{l+1} \mid \hat q_l] = \sigma_b^2 + C_{l+1}\big[f(\hat q_l)
        + \tfrac16 \hat\kappa_l f''(\hat q_l)\big], \qquad
    \operatorname{Var}[\hat q_{l+1} \mid \hat q_l] = C_{l+1}^2\, g(\hat q_l)/n_l + O(n^{-2})

(the kurtosis term is the Edgeworth correction :math:`\tfrac{\kappa_4}{24} E F''''
= \tfrac{\kappa_4}{6}\tfrac{d^2}{dq^2}E F`).  The delta method gives the mean :math:`m_l` and
variance :math:`v_l` of :math:`\hat q_l` to :math:`O(1/n)`:

.. math::

    m_{l+1} &= \sigma_b^2 + C_{l+1}\big[f(m_l) + f''(m_l)\,(v_l/2 + \bar\kappa_l/6)\big], \\
    v_{l+1} &= C_{l+1}^2\big[f'(m_l)^2 v_l + g(m_l)/n_l\big], \qquad
    \bar\kappa_{l+1} = \kappa^w_{l+1} C_{l+1}^2\, E\phi(\sqrt{m_l}\xi)^4/n_l,

from :math:`m_1 = \sigma_b^2 + C_1 s_x`, :math:`v_1 = 2 C_1^2 s_x^2/n_0`,
:math:`\bar\kappa_1 = 3\kappa^w_1 C_1^2 s_x^2/n_0`.  This is the recursion of Yaida (2020,
"Non-Gaussian processes and neural networks at finite widths") and Roberts, Yaida & Hanin
(2022, "The Principles of Deep Learning Theory", ch. 4--5) for a single input: their kernel is
:math:`K^{(l)} = ` :attr:`FiniteWidthMoments.q_mean_field`, their :math:`1/n` shift
:math:`K^{\{1\}}/n = m_l - K_l` (to :math:`O(n^{-2})`; we iterate :math:`f(m_l)` rather than
its linearisation :math:`f(K) + f'(K)\,\delta`, which differs at :math:`O(n^{-2})`), and their
four-point vertex :math:`V^{(l)}/n_{l-1} = v_l` (RYH normalise :math:`V` by the previous width:
:math:`E[\hat q^2] - E[\hat q]^2 = V/n`).  For degree-1 positively homogeneous activations
(linear, ReLU, ...) :math:`f` is linear and :math:`m_l = K_l` exactly.  For these
:math:`g = g(1) q^2` and the variance recursion uses :math:`E g(\hat q_l) = g(m_l) + g''(m_l)
v_l/2` exactly, which makes it exact for Gaussian weights (elsewhere that term is
:math:`O(n^{-2})` and left out: for tanh it moved the prediction away from the Monte Carlo).
Ensemble moments: :math:`E z_l^2 = m_l` and

.. math:: E a_l^2 = f(m_l) + f''(m_l)(v_l/2 + \bar\kappa_l/6), \qquad
          E a_l = \mu(m_l) + \mu''(m_l)(v_l/2 + \bar\kappa_l/6).

For degree-1 homogeneous activations :math:`\mu \propto \sqrt q` is not linear, so the second
is only :math:`O(1/n)` there (and useless where :math:`v_l/m_l^2` is not small); with Gaussian
weights and no bias :math:`E a_l` is instead computed exactly from the law of :math:`\hat q_l`
(:func:`varprop.theory.finite.exact.activation_mean`), and with zero bias the ReLU gradient
carries the exact dead-layer factor (:func:`varprop.theory.finite.exact.alive_probability`).

The backward pass (:mod:`varprop.theory.finite.backward`) is expanded under the
gradient-independence assumption and then corrected for the reuse of the forward weights.
Everything is :math:`O(1/n)`: :attr:`FiniteWidthMoments.expansion_parameter`
(:math:`v_l/m_l^2`) must be small; a corrected moment that comes out non-positive is refused
with a :class:`~varprop.VarpropError` (the expansion has broken down).

Next order
----------
The truth is :math:`\theta_1` (the corrected value) up to the next order; its size is estimated
(:meth:`FiniteWidthMoments.next_order`; the checker's allowance for approximate claims,
:mod:`varprop.checking.next_order`) as

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

from dataclasses import dataclass
from typing import Literal

import numpy as np

from varprop._util.validation import (
    check_choice,
    check_nonnegative_real,
    check_positive_int,
    check_widths,
    fail,
)
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.errors import VarpropError
from varprop.theory.finite.backward import backward_moments
from varprop.theory.finite.exact import (
    ExactLayers,
    activation_mean,
    alive_probabilities,
    slopes,
)
from varprop.theory.finite.functions import FunctionValues, gaussian_functions
from varprop.theory.finite.limits import check_finite_width_depth
from varprop.theory.finite.limits import show_widths as _show
from varprop.theory.moments import zero_mean_moments

__all__ = ["EXPANSION_LIMIT", "outside_range_consequence", "NEXT_ORDER_CONSTANT", "QUANTITIES", "REGIME_LIMIT",
           "FiniteWidthMoments", "check_finite_width_init", "finite_width_moments"]

#: The quantities the expansion predicts (names of :func:`varprop.predict_variance`).
QUANTITIES: tuple[str, ...] = ("preactivation", "activation", "activation_second_moment",
                               "gradient", "weight_gradient")
Quantity = Literal["preactivation", "activation", "activation_second_moment", "gradient",
                   "weight_gradient"]
#: :math:`c` of the next-order allowance :math:`c\rho^2` (module docstring, *Next order*:
#: the largest calibrated ratio was 0.150).
NEXT_ORDER_CONSTANT = 0.3
#: Largest :math:`\rho` at which the 1/n expansion decides a claim (module docstring).
REGIME_LIMIT = 0.75

#: Above this squared coefficient of variation of qhat (FiniteWidthMoments.expansion_parameter)
#: the 1/n results warn (predict_variance(finite_width=True) and predict_distribution alike).
#: Measured (tanh/xavier_normal, 40k networks): the predicted variance of the activations' mean
#: square is off by about 0.4 x the parameter -- +3% at 0.09 (width 64, depth 10), +4.5% at 0.10
#: (128, 20), +13% at 0.31 (256, 100), +21% at 0.49 (32, 20); the mean by under 2%.
#: GELU/he_normal at width 64, depth 10 (1.9): mean +4%, variance -46%.
EXPANSION_LIMIT = 0.5



def outside_range_consequence(eps: float) -> str:
    """What a 1/n result is worth at expansion parameter ``eps`` > :data:`EXPANSION_LIMIT` (the
    end of the warnings of ``predict_variance(finite_width=True)`` and ``predict_distribution``).
    Measured: up to 0.5 the mean is within 2% (above); tanh/xavier_normal at width 8, depth 20
    (parameter 16.5) predicts E a^2 = 0.00564 where 2e5 simulated networks give 0.01369 (2.4x)."""
    if eps <= 2.0:
        return "may be off by tens of percent"
    return ("is not reliable: off by a factor of 2 or more has been measured at such values "
            "(tanh, width 8, depth 20: 2.4x)")

@dataclass(frozen=True)
class FiniteWidthMoments:
    r"""Ensemble moments of an MLP to :math:`O(1/n)` (arrays of shape ``(L,)`` for layers
    :math:`1..L`; see :mod:`varprop.theory.finite.expansion` for the recursion).

    Attributes
    ----------
    widths : tuple of int
        :math:`(n_0, \dots, n_L)`.
    q_mean, q_var : ndarray
        :math:`m_l = E\hat q_l` and :math:`v_l = \operatorname{Var}\hat q_l` (leading order) of the
        per-network pre-activation variance :math:`\hat q_l`.
    q_mean_field : ndarray
        The infinite-width kernel :math:`K_l` (the mean field of :func:`varprop.propagate`).
    q_kurtosis : ndarray
        :math:`\bar\kappa_l`: the mean fourth cumulant of :math:`z_{l,i}` given layer
        :math:`l-1` (0 for Gaussian weights).
    preact_second : ndarray
        :math:`E z_l^2 = m_l`.
    act_second, act_second_mean_field : ndarray
        :math:`E a_l^2` with the :math:`1/n` correction, and its mean field.
    act_mean, act_mean_mean_field : ndarray
        :math:`E a_l` and its mean field.  Exact (:attr:`act_mean_order` ``"exact"``) for
        degree-1 homogeneous activations with Gaussian weights and no bias
        (:func:`varprop.theory.finite.exact.activation_mean`, :math:`E\sqrt{\hat q_l}` from the
        exact law of :math:`\hat q_l`); elsewhere the delta method
        :math:`\mu(m_l) + \mu''(m_l)(v_l/2 + \bar\kappa_l/6)`, to :math:`O(1/n)` only (for
        ReLU with a bias or uniform weights :math:`\mu \propto \sqrt q` and the term is
        :math:`-\tfrac18` of the :attr:`expansion_parameter`: meaningless once it is not small).
    grad_second, grad_second_mean_field : ndarray
        :math:`E(\partial\mathcal L/\partial a_{l-1})^2` (element 0: the network input), as
        :func:`varprop.predict_variance`'s ``gradient`` per layer, including the
        :math:`O(1/n)` effect of reusing the forward weights backward
        (:mod:`varprop.theory.finite.backward`; exact in law for Gaussian weights at this order).
    weight_grad_second, weight_grad_second_mean_field : ndarray
        :math:`E(\partial\mathcal L/\partial W_l)_{ij}^2`.
    grad_second_gia, weight_grad_second_gia : ndarray
        The same two under the gradient-independence assumption (fresh weights in the backward
        pass), without the weight-reuse correction.
    grad_mean_square_cv2 : ndarray
        :math:`\operatorname{Var}G_l/(EG_l)^2` over networks of the per-network gradient mean
        square :math:`G_l = \lVert\partial\mathcal L/\partial a_{l-1}\rVert^2/n_{l-1}` (one
        input, one seed :math:`\delta_L`), leading order (:mod:`varprop.theory.finite.backward`).
    order : str
        ``"exact"`` (the second moments -- ``preact_second``, ``act_second``, ``grad_second``,
        ``weight_grad_second`` -- are exact at every width: degree-1 homogeneous activations) or
        ``"1/n"`` (error :math:`O(\sum_l 1/n_l^2)` times depth factors).  It does not cover
        ``act_mean``: see :attr:`act_mean_order`.
    exact : bool
        ``order == "exact"``.
    """

    widths: tuple[int, ...]
    q_mean: np.ndarray
    q_var: np.ndarray
    q_mean_field: np.ndarray
    q_kurtosis: np.ndarray
    preact_second: np.ndarray
    act_second: np.ndarray
    act_second_mean_field: np.ndarray
    act_mean: np.ndarray
    act_mean_mean_field: np.ndarray
    grad_second: np.ndarray
    grad_second_mean_field: np.ndarray
    weight_grad_second: np.ndarray
    weight_grad_second_mean_field: np.ndarray
    grad_second_gia: np.ndarray
    weight_grad_second_gia: np.ndarray
    grad_mean_square_cv2: np.ndarray
    order: str
    exact: bool
    #: :class:`~varprop.theory.finite.functions.FunctionValues` at each :math:`m_l`.
    functions: tuple[FunctionValues, ...] = ()
    #: ``"exact"`` or ``"1/n"``: the order of ``act_mean`` (and so of the activation variance).
    act_mean_order: str = "1/n"

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def relative_shift(self) -> np.ndarray:
        r""":math:`E a_l^2 / E_{\infty} a_l^2 - 1`, the :math:`1/n` shift of the activation's
        second moment relative to the mean field."""
        return _ratio(self.act_second, self.act_second_mean_field)

    def moment_pair(self, quantity: Quantity) -> tuple[np.ndarray, np.ndarray]:
        r"""``(mean field, corrected)`` per layer of ``quantity`` (a name of
        :func:`varprop.predict_variance`): :math:`E z^2`, :math:`E a^2`,
        :math:`\operatorname{Var} a = E a^2 - (E a)^2`, the input-side gradient and the weight
        gradient second moments."""
        quantity = check_choice("quantity", quantity, QUANTITIES)
        if quantity == "preactivation":
            return self.q_mean_field, self.preact_second
        if quantity == "activation_second_moment":
            return self.act_second_mean_field, self.act_second
        if quantity == "activation":
            return (self.act_second_mean_field - self.act_mean_mean_field ** 2,
                    self.act_second - self.act_mean ** 2)
        if quantity == "gradient":
            return self.grad_second_mean_field, self.grad_second
        return self.weight_grad_second_mean_field, self.weight_grad_second

    def path_spread(self, quantity: Quantity = "activation_second_moment") -> np.ndarray:
        r"""Per layer :math:`l`, the largest :attr:`expansion_parameter` :math:`v_k/m_k^2` over
        the layers the quantity at :math:`l` passes through (:math:`k \le l` forward; every
        layer backward, since the gradient passes the whole forward pass)."""
        quantity = check_choice("quantity", quantity, QUANTITIES)
        eps = self.expansion_parameter
        if quantity in ("gradient", "weight_gradient"):
            return np.full(self.depth, eps.max() if eps.size else 0.0)
        return np.maximum.accumulate(eps)

    def expansion_size(self, quantity: Quantity = "activation_second_moment") -> np.ndarray:
        r""":math:`\rho_l = |s_l| + ` :meth:`path_spread`, per layer, with
        :math:`s_l = \theta_1/\theta_0 - 1` the quantity's relative :math:`1/n` shift from the
        mean field: the size of the first-order terms (module docstring, *Next order*)."""
        theta0, theta1 = self.moment_pair(quantity)
        return np.abs(_ratio(theta1, theta0)) + self.path_spread(quantity)

    def next_order(self, quantity: Quantity = "activation_second_moment") -> np.ndarray:
        r"""The allowance for the neglected :math:`O(1/n^2)` terms, relative, per layer:
        :math:`c\,\rho_l^2` with :math:`\rho_l` of :meth:`expansion_size` and
        :math:`c = ` :data:`NEXT_ORDER_CONSTANT` = 0.3 (calibrated by Monte Carlo: module
        docstring, *Next order*).  Meaningful where :math:`\rho_l \le`
        :data:`REGIME_LIMIT`.  Zero where the prediction is exact (the second moments of a
        degree-1 homogeneous net; not the variance of its activation, whose mean is not)."""
        quantity = check_choice("quantity", quantity, QUANTITIES)
        if self.exact and quantity != "activation":
            return np.zeros(self.depth)
        rho = self.expansion_size(quantity)
        return NEXT_ORDER_CONSTANT * rho * rho

    @property
    def expansion_parameter(self) -> np.ndarray:
        r""":math:`v_l/m_l^2`, the squared coefficient of variation of :math:`\hat q_l` over
        networks: the small parameter of the expansion (about :math:`\tfrac23 l/n` for tanh at
        criticality, :math:`5\sum 1/n` for ReLU).  Where it exceeds about 0.3 the next order is
        no longer negligible (measured for tanh in tests/test_finite_expansion.py)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.q_mean > 0, self.q_var / self.q_mean**2, 0.0)

    def mean_square_variance(self, quantity: Literal["preactivation", "activation"] = "preactivation"
                             ) -> np.ndarray:
        r"""Variance over networks of the one-input statistic
        :math:`\frac1{n_l}\sum_i z_{l,i}^2` (``preactivation``) or
        :math:`\frac1{n_l}\sum_i a_{l,i}^2` (``activation``), to leading order:

        .. math::

            \operatorname{Var}\tfrac1n\textstyle\sum_i z_i^2 = \frac{2(m_l^2 + v_l)
            + \bar\kappa_l}{n_l} + v_l, \qquad
            \operatorname{Var}\tfrac1n\textstyle\sum_i a_i^2 = \frac{g(m_l)}{n_l} + f'(m_l)^2 v_l

        (law of total variance: given :math:`\hat q_l` the :math:`n_l` units are i.i.d.).
        """
        quantity = check_choice("quantity", quantity, ("preactivation", "activation"))
        n = np.asarray(self.widths[1:], float)
        if quantity == "preactivation":
            m, v = self.q_mean, self.q_var
            return (2.0 * (m * m + v) + self.q_kurtosis) / n + v
        g = np.array([fv.g + (fv.g2nd * v / 2.0 if self.exact else 0.0)
                      for fv, v in zip(self.functions, self.q_var)])
        f1 = np.array([fv.f1 for fv in self.functions])
        return g / n + f1 * f1 * self.q_var


def check_finite_width_init(scheme: InitScheme) -> None:
    """Refuse weights the expansion does not cover (it needs zero-mean symmetric i.i.d. entries)."""
    if not (scheme.is_iid and scheme.is_zero_mean and scheme.is_symmetric):
        raise fail("init", scheme, "zero-mean symmetric i.i.d. weights for finite_width "
                   "(normal, uniform, truncated normal schemes); non-zero-mean and orthogonal "
                   "weights have no 1/n expansion in varprop")


def finite_width_moments(
    activation: Activation | str,
    init: InitScheme | str,
    *,
    widths: list[int] | tuple[int, ...] | None = None,
    fan_in: int | None = None,
    fan_out: int | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
) -> FiniteWidthMoments:
    r"""The ensemble moments of the MLP ``widths`` (or, as for :func:`varprop.predict_variance`,
    ``fan_in`` with ``fan_out`` and ``depth``) to :math:`O(1/n)` (module docstring).  Depth is
    limited (:func:`check_finite_width_depth`).

    >>> fw = finite_width_moments("relu", "he_normal", widths=[8, 8, 8])
    >>> fw.order, fw.act_second.tolist() == fw.act_second_mean_field.tolist()
    ('exact', True)
    """
    act = resolve_activation(activation)
    scheme = resolve_scheme(init)
    check_finite_width_init(scheme)
    if widths is None and fan_in is None:
        raise fail("widths", widths, "the layer widths [n_0, n_1, ..., n_L] (at least two "
                   "positive ints), or fan_in= (and fan_out=, depth=) as for predict_variance")
    if widths is None:
        check_finite_width_depth(act, check_positive_int("depth", depth))
    ws = check_widths(fan_in, fan_out, widths, depth)
    s_x = check_nonnegative_real("input_variance", input_variance)
    b2 = check_nonnegative_real("bias_variance", bias_variance)
    return _moments(act, scheme, ws, s_x, b2)


def _moments(act: Activation, scheme: InitScheme, ws: tuple[int, ...], s_x: float, b2: float
             ) -> FiniteWidthMoments:
    L = len(ws) - 1
    check_finite_width_depth(act, L)
    sigma2 = np.array([scheme.moments(ws[l - 1], ws[l])[1] for l in range(1, L + 1)])
    kurt = np.array([scheme.law(ws[l - 1], ws[l]).kurtosis() for l in range(1, L + 1)])
    n_prev = np.asarray(ws[:-1], float)
    C = sigma2 * n_prev
    mf = zero_mean_moments(act, "exact")
    homogeneous = act.traits.exact_at_finite_width
    m, v, kap, K = (np.empty(L) for _ in range(4))
    a2, a2_mf, a1, a1_mf = (np.empty(L) for _ in range(4))
    fns: list[FunctionValues] = []
    with np.errstate(over="ignore", invalid="ignore"):
        m[0] = K[0] = b2 + C[0] * s_x
        v[0] = 2.0 * C[0] ** 2 * s_x * s_x / ws[0]
        kap[0] = 3.0 * kurt[0] * C[0] ** 2 * s_x * s_x / ws[0]
    with np.errstate(over="ignore", invalid="ignore"):
        for l in range(L):
            fv = gaussian_functions(act, m[l])
            fns.append(fv)
            e_phi, e_phi2, _ = mf(float(m[l]))
            spread = v[l] / 2.0 + kap[l] / 6.0
            a2[l] = e_phi2 + (fv.f2 * spread if fv.f2 != 0.0 else 0.0)  # exact: f linear
            a1[l] = e_phi + (fv.mu2 * spread if fv.mu2 != 0.0 else 0.0)
            k_phi, k_phi2, _ = mf(float(K[l]))
            a1_mf[l], a2_mf[l] = k_phi, k_phi2
            if l + 1 < L:
                n = ws[l + 1]  # n_l for layer l + 1 (0-based index l)
                if not (homogeneous or np.isfinite(v[l]) or np.isfinite(m[l] * m[l])):
                    raise VarpropError(
                        f"the 1/n expansion cannot be evaluated at layer {l + 1}: E(q) = "
                        f"{m[l]:.3g}, and Var(q), of order E(q)^2/n, is beyond the float range; "
                        "rescale the input and bias variances")
                if not (homogeneous or np.isfinite(v[l])):  # (exact moments never use v)
                    raise VarpropError(
                        f"the 1/n expansion breaks down at layer {l + 1} of widths "
                        f"{_show(ws)}: the variance over networks of the pre-activation "
                        f"variance, Var(q), left the float range (E(q) = {m[l]:.3g}); it grows "
                        "geometrically with depth/width, and the expansion needs depth much "
                        "smaller than width (see FiniteWidthMoments.expansion_parameter)")
                m[l + 1] = b2 + C[l + 1] * a2[l]
                if not m[l + 1] > 0.0 and K[l] > 0.0:
                    raise VarpropError(
                        f"the 1/n expansion breaks down at layer {l + 2} of widths {_show(ws)}: "
                        f"the corrected mean variance is {m[l + 1]:.3g} (mean field "
                        f"{b2 + C[l + 1] * k_phi2:.3g}) with Var(q)/E(q)^2 = "
                        f"{v[l] / m[l] ** 2:.3g} at layer {l + 1}; the expansion needs depth "
                        "much smaller than width (see FiniteWidthMoments.expansion_parameter)")
                K[l + 1] = b2 + C[l + 1] * k_phi2
                g = fv.g + (fv.g2nd * v[l] / 2.0 if homogeneous and fv.g2nd else 0.0)  # exact
                v[l + 1] = C[l + 1] ** 2 * (fv.f1 ** 2 * v[l] + g / n)
                kap[l + 1] = kurt[l + 1] * C[l + 1] ** 2 * fv.u4 / n
    if not np.all(np.isfinite(m)) or not (homogeneous or np.all(np.isfinite(v))):
        # the exact second moments never use v (it may overflow where they do not)
        raise VarpropError("the finite-width moments left the float range; reduce depth or rescale")
    # degree-1 homogeneous: v enters the backward pass only times h' = 0 (0 * inf would be NaN)
    v_used = np.where(np.isfinite(v), v, 0.0) if homogeneous else v
    bw = backward_moments(ws, sigma2, C, b2, m, v_used, kap, K, fns,
                          [mf(float(k))[2] for k in K], kurt)
    ab = slopes(act) if homogeneous else None
    mean_order = "1/n"
    if ab is not None and b2 == 0.0:
        lay = ExactLayers(ws, tuple(sigma2.tolist()), ab[0], ab[1], s_x, act)
        # the dead-layer atom (ReLU, zero bias): alive_probability
        bw.grad[:] = bw.grad * alive_probabilities(lay)
        if scheme.is_gaussian:
            a1, mean_order = activation_mean(lay), "exact"
    for name, values in (("E a^2", a2), ("the gradient", bw.grad), ("the weight gradient", bw.weight)):
        if not np.all(values >= 0.0):
            with np.errstate(divide="ignore", invalid="ignore"):
                worst = float(np.nanmax(np.where(m > 0, v / m**2, 0.0)))
            raise VarpropError(
                f"the 1/n expansion breaks down for widths {_show(ws)}: {name} comes out negative "
                f"(the largest Var(q)/E(q)^2 is {worst:.3g}); the expansion needs depth much "
                "smaller than width (see FiniteWidthMoments.expansion_parameter)")
    exact = bool(homogeneous)
    ro = _readonly
    return FiniteWidthMoments(
        ws, ro(m), ro(v), ro(K), ro(kap), ro(m.copy()), ro(a2), ro(a2_mf), ro(a1), ro(a1_mf),
        ro(bw.grad), ro(bw.grad_mf), ro(bw.weight), ro(bw.weight_mf), ro(bw.grad_gia),
        ro(bw.weight_gia), ro(bw.grad_cv2),
        "exact" if exact else "1/n", exact, tuple(fns), mean_order)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / b - 1.0, 0.0)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, float)
    a.setflags(write=False)
    return a
