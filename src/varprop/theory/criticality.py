r"""Critical gains and the edge of chaos (mean-field signal propagation).

Model and notation
------------------
Zero-mean i.i.d. weights with :math:`\operatorname{Var} W_{ij} = \sigma_w^2 / n_{l-1}` (so
:math:`\sigma_w^2 = n\,\operatorname{Var} W` is the *per-fan-in* weight variance and the gain
:math:`g = \sigma_w`), biases :math:`N(0, \sigma_b^2)` with :math:`\sigma_b^2` = ``bias_variance``.
In the infinite-width (mean-field) limit the pre-activation variance obeys the **length map**

.. math::

    q_l = f(q_{l-1}), \qquad f(q) = \sigma_w^2\, E[\phi(z)^2]_{z \sim N(0, q)} + \sigma_b^2 ,

(:math:`E\phi^2`, not :math:`\operatorname{Var}\phi`: a sigmoid's mean counts), and the
correlation :math:`c_l` of two inputs' pre-activations obeys the **correlation map**

.. math::

    c_{l} = \frac{\sigma_w^2\, E[\phi(u_1)\phi(u_2)] + \sigma_b^2}{q^*}, \qquad
    u_1 = \sqrt{q^*} z_1,\; u_2 = \sqrt{q^*}\,(c_{l-1} z_1 + \sqrt{1 - c_{l-1}^2}\, z_2)

at the fixed point :math:`q^* = f(q^*)` (Poole et al. 2016; Schoenholz et al. 2017).

* :func:`critical_gain` -- the gain :math:`g` that makes a prescribed variance a fixed point.
* :func:`mean_field` -- :math:`q^*`, :math:`\chi_1`, :math:`c^*`, :math:`\chi_c` and the depth
  scales :math:`\xi_q, \xi_c` at any :math:`(\sigma_w^2, \sigma_b^2)`.
* :func:`edge_of_chaos` -- the :math:`\sigma_w^2` with :math:`\chi_1 = 1`.

All Gaussian expectations use the activation's *exact* moments
(``Activation.gaussian_moments(0, q, method="exact")``: closed forms where they are exact,
Gauss--Legendre quadrature otherwise, good to about :math:`10^{-12}`).

References
----------
B. Poole, S. Lahiri, M. Raghu, J. Sohl-Dickstein, S. Ganguli, "Exponential expressivity in deep
neural networks through transient chaos", NeurIPS 2016.
S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein, "Deep Information Propagation",
ICLR 2017.
S. Hayou, A. Doucet, J. Rousseau, "On the Impact of the Activation Function on Deep Neural
Networks Training", ICML 2019 (ReLU-like activations: the edge of chaos is the single point
:math:`\sigma_b^2 = 0`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import brentq

from varprop._util.validation import (
    check_float_range,
    check_nonnegative_real,
    check_positive_real,
    fail,
)
from varprop.components.activations import Activation, resolve_activation
from varprop.errors import InvalidArgument, VarpropWarning
from varprop.theory.lengthmap import (
    _chaotic_correlation,
    _depth_scale,
    _dsecond_dq,
    _fixed_point,
    _moments,
    _second,
    _second_over_q,
    _zero_fixed_point_slope,
)

__all__ = ["critical_gain", "edge_of_chaos", "mean_field", "MeanFieldPoint"]

_CRITICAL_TOL = 1e-9
_SIGMA_W2_MIN = 1e-3  # edge_of_chaos scans [min(this, sigma_w2_max / 1000), sigma_w2_max]
_TINY_TARGET = 1e-100  # below, critical_gain divides E[phi^2] by q inside the integral
_SMALLEST_NORMAL = 2.2250738585072014e-308


# ----------------------------------------------------------------------------------------------
# moments
# ----------------------------------------------------------------------------------------------

def _homogeneous(act: Activation) -> bool:
    r""":math:`\phi(c x) = c\,\phi(x)` for :math:`c > 0` (linear, ReLU, leaky ReLU, ``abs``), from
    ``act.traits`` (the documents' phase analysis asks the same question)."""
    return act.traits.homogeneous_degree == 1.0


# ----------------------------------------------------------------------------------------------
# critical gain
# ----------------------------------------------------------------------------------------------

def critical_gain(activation: Activation | str, *, target_variance: float = 1.0,
                  bias_variance: float = 0.0) -> float:
    r"""The gain :math:`g` that makes ``target_variance`` a fixed point of the forward recursion.

    With weights of variance :math:`\sigma_w^2 / n_{in} = g^2 / n_{in}` (e.g.
    ``init_scheme("normal", std=g / sqrt(fan_in))`` or ``variance_scaling(scale=g**2)``), the
    infinite-width pre-activation variance obeys :math:`q_l = g^2 E[\phi(z)^2]_{z\sim N(0, q_{l-1})}
    + \sigma_b^2`.  The target :math:`q^* =` ``target_variance`` is a fixed point iff

    .. math::

        g = \sqrt{\frac{q^* - \sigma_b^2}{E[\phi(z)^2]_{z \sim N(0, q^*)}}} .

    Since :math:`q^*` is prescribed no root finding is needed.  Closed forms: linear :math:`g = 1`,
    ReLU :math:`g = \sqrt 2`, leaky ReLU :math:`g = \sqrt{2/(1+\alpha^2)}` (at
    :math:`\sigma_b^2 = 0`, for every target; these are the familiar LeCun / He gains), erf
    :math:`g = \sqrt{q^* / (\tfrac{2}{\pi}\arcsin\frac{2q^*}{1+2q^*})}`; tanh at
    :math:`q^* = 1`: :math:`g = 1.5925...` (PyTorch's ``calculate_gain('tanh')`` is
    :math:`5/3`, a heuristic), sigmoid at :math:`q^* = 1`: :math:`g = 1.846...` (PyTorch: 1).

    Parameters
    ----------
    activation : str or Activation
        A registered name, an :class:`~varprop.Activation`, or a custom expression in ``x``.
    target_variance : float, keyword-only
        The desired fixed point :math:`q^* > 0` of the pre-activation variance.
    bias_variance : float, keyword-only
        :math:`\sigma_b^2 \ge 0`.

    Returns
    -------
    float
        :math:`g > 0`.

    Raises
    ------
    ValueError
        If ``target_variance <= bias_variance`` (the recursion adds :math:`\sigma_b^2` to a
        non-negative term, so no gain :math:`g > 0` reaches such a target -- in particular a
        bounded activation can never bring the variance down to below its bias variance), or if
        :math:`E\phi^2` is zero or not finite at the target.

    Warns
    -----
    VarpropWarning
        If the fixed point is unstable, :math:`f'(q^*) = g^2\,\frac{d}{dq}E\phi^2 > 1`: the
        recursion then moves away from the target.

    Notes
    -----
    The first layer sees the raw input, :math:`q_1 = g^2\,` ``input_variance`` :math:`+ \sigma_b^2`,
    so the network *starts* at the target only if ``input_variance`` :math:`= E\phi^2(q^*)`;
    for a stable fixed point (:math:`f'(q^*) < 1`) it converges to it over
    :math:`\xi_q = -1/\ln f'(q^*)` layers (see :func:`mean_field`).

    Examples
    --------
    >>> round(critical_gain("relu"), 12) == round(2 ** 0.5, 12)
    True
    >>> round(critical_gain("tanh"), 4)
    1.5925
    """
    act = resolve_activation(activation)
    target = check_positive_real("target_variance",
                                 check_float_range("target_variance", target_variance))
    b2 = check_nonnegative_real("bias_variance", check_float_range("bias_variance", bias_variance))
    if target <= b2:
        raise fail("target_variance", target_variance,
                   f"a variance > bias_variance={bias_variance!r}: q_l = g^2 E[phi(z)^2] + "
                   "bias_variance >= bias_variance for every gain g, so no g > 0 reaches it")
    if target >= _TINY_TARGET:
        second = _second(act, target)
        if not (math.isfinite(second) and second > 0.0):
            raise fail("target_variance", target_variance,
                       f"a variance at which E[phi(z)^2] is finite and > 0 (got {second!r} for "
                       f"{act.name!r}): no gain reaches it")
        ratio = second / target
    else:  # E[phi^2] itself may be subnormal there: work with E[phi^2] / q
        ratio = _second_over_q(act, target)
        if not (math.isfinite(ratio) and ratio > 0.0) and ratio != 0.0:
            raise fail("target_variance", target_variance,
                       f"a variance at which E[phi(z)^2] / q can be computed in floating point "
                       f"(got {ratio!r} for {act.name!r})")
    if not ratio >= _SMALLEST_NORMAL:
        raise fail("target_variance", target_variance,
                   f"a variance at which E[phi(z)^2] / q = {ratio!r} does not underflow "
                   f"(below the smallest normal float): the gain of {act.name!r} for it (about (q / E[phi^2])^(1/2)) cannot "
                   "be computed in floating point")
    g2 = (1.0 - b2 / target) / ratio
    if not math.isfinite(g2):
        raise fail("target_variance", target_variance,
                   f"a variance whose gain is within the float range (g^2 = (q - bias_variance) "
                   f"/ E[phi(z)^2] overflows for {act.name!r})")
    slope = g2 * _dsecond_dq(act, target)
    if slope > 1.0 + 1e-9:
        warnings.warn(f"the fixed point q*={target!r} of {act.name!r} with gain {math.sqrt(g2):.6g} "
                      f"is unstable (slope f'(q*) = {slope:.6g} > 1): the recursion moves away "
                      "from it", VarpropWarning, stacklevel=2)
    return math.sqrt(g2)


# ----------------------------------------------------------------------------------------------
# mean-field fixed points
# ----------------------------------------------------------------------------------------------

Phase = Literal["ordered", "critical", "chaotic", "unbounded"]


@dataclass(frozen=True)
class MeanFieldPoint:
    r"""Mean-field signal-propagation quantities at one :math:`(\sigma_w^2, \sigma_b^2)`.

    Attributes
    ----------
    activation : str
        The activation's name.
    sigma_w2 : float
        :math:`\sigma_w^2 = n\,\operatorname{Var} W` (weight variance times fan-in).
    bias_variance : float
        :math:`\sigma_b^2`.
    gain : float
        :math:`g = \sqrt{\sigma_w^2}` (weights :math:`N(0, g^2/n_{in})`).
    q_star : float
        The fixed point of the length map that the recursion reaches from :math:`q_0 = 1` (a
        standardised input; the map is increasing, so this is the nearest fixed point in the
        direction of :math:`f(1) - 1`).  ``inf`` if the variance grows without bound, ``nan`` if every :math:`q` is a
        fixed point (positively homogeneous :math:`\phi` at :math:`\sigma_w^2 E\phi'^2 = 1`,
        :math:`\sigma_b^2 = 0`).
    chi : float
        :math:`\chi_1 = \sigma_w^2 E[\phi'(z)^2]_{z\sim N(0,q^*)}`: the per-layer factor of the
        gradient's second moment, and the slope of the correlation map at :math:`c = 1`.
    slope_q : float
        :math:`f'(q^*) = \chi_1 + \sigma_w^2 E[\phi(z)\phi''(z)]`, the slope of the length map.
    c_star : float
        The stable fixed point of the correlation map: 1 in the ordered/critical phase, < 1 in
        the chaotic phase; ``nan`` when :math:`q^* \in \{0, \infty\}` (degenerate map).
    chi_c : float
        :math:`\chi_c = \sigma_w^2 E[\phi'(u_1)\phi'(u_2)]` at :math:`c^*` (equals :math:`\chi_1`
        when :math:`c^* = 1`).
    xi_q : float
        :math:`\xi_q = -1/\ln f'(q^*)`: :math:`|q_l - q^*| \sim e^{-l/\xi_q}` (``inf`` at
        :math:`f'(q^*) \ge 1`).
    xi_c : float
        :math:`\xi_c = -1/\ln \chi_c`: :math:`|c_l - c^*| \sim e^{-l/\xi_c}`; diverges at the edge
        of chaos, where correlations (and gradients) propagate over arbitrarily many layers.
    phase : {"ordered", "critical", "chaotic", "unbounded"}
        :math:`\chi_1 < 1`, :math:`= 1` (within 1e-9) or :math:`> 1`; ``"unbounded"`` when
        :math:`q^* = \infty` (the variance of large inputs grows without bound; then
        ``chi``, ``slope_q``, ``c_star``, ``chi_c`` and the depth scales are ``nan``).
    """

    activation: str
    sigma_w2: float
    bias_variance: float
    gain: float
    q_star: float
    chi: float
    slope_q: float
    c_star: float
    chi_c: float
    xi_q: float
    xi_c: float
    phase: Phase


def _point(act: Activation, s: float, b2: float, q_star: float | None = None) -> MeanFieldPoint:
    homogeneous = _homogeneous(act)
    if homogeneous:
        kappa = _second(act, 1.0)  # E phi^2(q) = kappa q; E phi'^2 = kappa too
        chi = s * _moments(act, 1.0)[3]
        slope = s * kappa
        if q_star is None:
            if abs(slope - 1.0) <= 1e-12:
                q_star = math.nan if b2 == 0.0 else math.inf
            elif slope < 1.0:
                q_star = b2 / (1.0 - slope)
            else:
                q_star = math.inf
    else:
        if q_star is None:
            q_star = _fixed_point(act, s, b2)
        if math.isinf(q_star):
            chi, slope = math.nan, math.nan
        else:
            chi = s * _moments(act, q_star)[3]
            slope = s * _dsecond_dq(act, q_star)
    phase: Phase = ("unbounded" if math.isinf(q_star) or math.isnan(chi) else
                    "critical" if abs(chi - 1.0) <= _CRITICAL_TOL else
                    "ordered" if chi < 1.0 else "chaotic")
    if math.isfinite(q_star) and q_star > 0.0 and phase == "chaotic":
        c_star, chi_c = _chaotic_correlation(act, s, b2, q_star)
    elif math.isfinite(q_star) and q_star > 0.0:
        c_star, chi_c = 1.0, chi
    else:
        c_star, chi_c = math.nan, chi
    xi_c = math.inf if phase == "critical" else _depth_scale(chi_c)
    return MeanFieldPoint(act.name, s, b2, math.sqrt(s), q_star, chi, slope, c_star, chi_c,
                          _depth_scale(slope), xi_c, phase)


def mean_field(activation: Activation | str, sigma_w2: float, *,
               bias_variance: float = 0.0) -> MeanFieldPoint:
    r"""Fixed points, slopes and depth scales of the mean-field maps at :math:`(\sigma_w^2, \sigma_b^2)`.

    .. math::

        q^* &= \sigma_w^2 E[\phi(z)^2]_{z\sim N(0,q^*)} + \sigma_b^2, \\
        \chi_1 &= \sigma_w^2 E[\phi'(z)^2], \qquad
        f'(q^*) = \chi_1 + \sigma_w^2 E[\phi(z)\phi''(z)], \\
        \xi_q &= -1/\ln f'(q^*), \qquad
        \chi_c = \sigma_w^2 E[\phi'(u_1)\phi'(u_2)]_{c^*}, \qquad \xi_c = -1/\ln\chi_c

    (Schoenholz et al. 2017, eqs. 3--9; :math:`f'(q^*)` is computed as
    :math:`\sigma_w^2 E[\phi(z)^2 (z^2 - q^*)]/(2 q^{*2})`, which needs no second derivative).
    The fixed point :math:`q^*` is the one the recursion reaches from :math:`q_0 = 1` (bracketed
    by a geometric scan, then :func:`scipy.optimize.brentq`);
    for positively homogeneous :math:`\phi` (linear, ReLU, leaky ReLU) it is
    :math:`\sigma_b^2 / (1 - \sigma_w^2 E\phi'^2)`.

    Parameters
    ----------
    activation : str or Activation
    sigma_w2 : float
        :math:`\sigma_w^2 > 0` (weight variance times fan-in).
    bias_variance : float, keyword-only
        :math:`\sigma_b^2 \ge 0`.

    Returns
    -------
    MeanFieldPoint

    Examples
    --------
    >>> p = mean_field("tanh", 1.0)
    >>> (p.q_star, p.chi, p.phase)
    (0.0, 1.0, 'critical')
    """
    act = resolve_activation(activation)
    s = check_positive_real("sigma_w2", check_float_range("sigma_w2", sigma_w2))
    b2 = check_nonnegative_real("bias_variance", check_float_range("bias_variance", bias_variance))
    return _point(act, s, b2)


def edge_of_chaos(activation: Activation | str, bias_variance: float = 0.0, *,
                  sigma_w2_max: float = 1e4) -> MeanFieldPoint:
    r"""The critical weight variance: :math:`\sigma_w^2` with :math:`\chi_1 = 1` at the fixed point.

    Solves

    .. math::

        \chi_1(\sigma_w^2) = \sigma_w^2\, E[\phi'(z)^2]_{z \sim N(0, q^*(\sigma_w^2, \sigma_b^2))} = 1,

    where :math:`q^*` is the fixed point of the length map (see :func:`mean_field`), by a
    geometric scan of :math:`\sigma_w^2 \in [\min(10^{-3}, \text{sigma\_w2\_max}/1000), \text{sigma\_w2\_max}]` for the first sign
    change of :math:`\chi_1 - 1` and :func:`scipy.optimize.brentq`.  At the critical point the
    ordered (:math:`\chi_1 < 1`: inputs' correlations converge to 1, gradients vanish) and chaotic
    (:math:`\chi_1 > 1`: correlations decorrelate, gradients explode) phases meet, the correlation
    depth scale :math:`\xi_c = -1/\ln\chi_c` diverges and signals propagate over
    :math:`\xi_q = -1/\ln f'(q^*)`-independent depths (Schoenholz et al. 2017).

    Known values: tanh with :math:`\sigma_b^2 = 0`: :math:`\sigma_w^2 = 1`, :math:`q^* = 0`
    (at :math:`\sigma_b^2 = 0.05`: :math:`\sigma_w^2 \approx 1.76`); for positively homogeneous
    :math:`\phi` (linear, ReLU, leaky ReLU) :math:`\chi_1 = \sigma_w^2 E\phi'^2` does not depend
    on :math:`q`, so :math:`\sigma_w^2 = 1/E\phi'^2` (1, 2, :math:`2/(1+\alpha^2)`) and every
    :math:`q` is a fixed point (``q_star`` is ``nan``, :math:`\xi_q = \infty`).

    Parameters
    ----------
    activation : str or Activation
    bias_variance : float
        :math:`\sigma_b^2 \ge 0`.
    sigma_w2_max : float, keyword-only
        Upper end of the search.

    Returns
    -------
    MeanFieldPoint
        With ``phase == "critical"``, ``chi == 1`` (to ~1e-12) and ``xi_c == inf``.

    Raises
    ------
    ValueError
        If no critical point exists in the search range (e.g. :math:`\chi_1 < 1` everywhere), or
        for a positively homogeneous activation with ``bias_variance > 0`` (then the only
        :math:`\sigma_w^2` with :math:`\chi_1 = 1` makes the variance grow without bound,
        :math:`q_l = q_0 + l\sigma_b^2`: the edge of chaos of ReLU-like activations is the single
        point :math:`\sigma_b^2 = 0`, Hayou et al. 2019).

    Examples
    --------
    >>> p = edge_of_chaos("tanh")
    >>> (round(p.sigma_w2, 9), p.q_star)
    (1.0, 0.0)
    """
    act = resolve_activation(activation)
    b2 = check_nonnegative_real("bias_variance", check_float_range("bias_variance", bias_variance))
    s_max = check_positive_real("sigma_w2_max", check_float_range("sigma_w2_max", sigma_w2_max))
    s_min = min(_SIGMA_W2_MIN, s_max / 1e3)
    if s_min < 1e-290:
        raise fail("sigma_w2_max", sigma_w2_max, "a number >= 1e-287 (the search covers "
                   "[min(1e-3, sigma_w2_max / 1000), sigma_w2_max])")
    if _homogeneous(act):
        d2 = _moments(act, 1.0)[3]
        if not d2 > 0.0:
            raise fail("activation", act.name, "an activation with E[phi'(z)^2] > 0")
        if b2 > 0.0:
            raise fail("bias_variance", bias_variance,
                       f"0 for the positively homogeneous activation {act.name!r}: chi = "
                       f"sigma_w^2 E[phi'^2] = 1 forces sigma_w^2 = {1.0 / d2:.6g}, where the "
                       "variance grows without bound (q_l = q_0 + l * bias_variance); its edge of "
                       "chaos is the single point bias_variance = 0 (Hayou et al. 2019)")
        return _point(act, 1.0 / d2, 0.0)

    def excess(s: float) -> float:
        q = _fixed_point(act, s, b2)
        if math.isinf(q):
            return math.inf
        return s * _moments(act, q)[3] - 1.0

    grid = np.geomspace(s_min, s_max, int(8 * (math.log10(s_max) - math.log10(s_min))) + 1)
    prev_s, prev_v = None, None
    diverges = None
    for s in grid:
        v = excess(float(s))
        if math.isinf(v):
            # f(q) grows with sigma_w^2: once the variance diverges it does so for every larger one
            diverges = float(s)
            break
        if v == 0.0:
            return _point(act, float(s), b2)
        if prev_v is not None and math.isfinite(v) and (prev_v < 0.0) != (v < 0.0):
            root = brentq(excess, prev_s, float(s), xtol=1e-14, rtol=1e-13, maxiter=200)
            zero = _zero_fixed_point_slope(act, b2)
            if zero is not None and abs(root * zero - 1.0) < 1e-6:
                # q = 0 is a fixed point and the transition is where it loses stability:
                # sigma_w^2 = 1 / phi'(0)^2 exactly (q* -> 0 there; brentq only gets close)
                return _point(act, 1.0 / zero, b2, q_star=0.0)
            return _point(act, root, b2)
        if math.isfinite(v):
            prev_s, prev_v = float(s), v
    why = (f"; from sigma_w^2 = {diverges:.4g} on the variance of large inputs grows without "
           "bound (no finite fixed point q*) before chi reaches 1" if diverges is not None else
           "; raise sigma_w2_max?")
    raise InvalidArgument(
        f"activation={act.name!r} is not allowed: with bias_variance={bias_variance!r} "
        f"chi = sigma_w^2 E[phi'(z)^2] at the fixed point never crosses 1 for sigma_w^2 in "
        f"[{s_min:g}, {s_max:g}] (no edge of chaos there{why})")
