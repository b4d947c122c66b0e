r"""The error budget of a test run: how a false-failure probability of at most
:data:`RUN_ALPHA` per run is split over the checks a property-based test makes, and how many
replicates each check needs to decide within it.

The arithmetic (no dependence on hypothesis here: :mod:`varprop.strategies` reads the running
test's settings and calls these functions)
--------------------------------------------------------------------------------------------
A hypothesis test run executes the test function on at most :math:`E` examples *before its
first failure*: hypothesis stops generating after ``max_examples`` valid examples (the replays
of its database in the *reuse* phase are counted among them), plus the ``@example`` cases.  Its
other calls -- shrinking, the replay of the minimal failing example, the *explain* phase -- only
happen after a failure was found, so they cannot cause a first false failure.  The
:math:`k`-th check inside one example gets

.. math::
    \alpha_{e,k} = \frac{\alpha_{\text{run}}}{E}\,\frac{6}{\pi^2 k^2},
    \qquad \sum_{e=1}^{E}\sum_{k\ge1}\alpha_{e,k} = \alpha_{\text{run}},

(:func:`call_alpha`), so by the union bound the probability that *any* check of the run fails
falsely is at most :math:`\alpha_{\text{run}}`, however many checks each example makes.

A check that must be *confirmed* can also fail by being inconclusive; its replicate count is
planned so that both failure modes share its level: refutation at :math:`\alpha/2` and
"not confirmed although the prediction is exact" at probability :math:`\beta = \alpha/2`.  With
a relative standard deviation :math:`\sigma` of one replicate's statistic, the interval
:math:`\hat r \pm z_{\alpha/4}\,\sigma/\sqrt R` lies inside :math:`\pm m` unless
:math:`|\hat r| > m - z_{\alpha/4}\sigma/\sqrt R`, which has probability :math:`\le \beta`
once

.. math::
    R \ge \Big(\frac{(z_{\alpha/4} + z_{\beta/2})\,\sigma}{m}\Big)^2

(:func:`planned_replicates`; normal approximation, with a safety factor for the estimated
:math:`\sigma`, and at least Cochran's :math:`25 g^2` for the statistic's skewness :math:`g`,
the checker's heavy-tail guard).  The margin :math:`m` (:func:`check_margin`) is ``rtol`` for
an exact prediction and :math:`\max(\text{rtol}, \text{tol})/2` for an approximate one with
declared allowance ``tol`` (confirmed within the larger margin when its true deviation is
within the other half).  :func:`plan_check` puts it together, :func:`predicted_seconds` prices
it (engine work per replicate, calibrated on the 2-core reference machine).

The replicate statistic's spread, predicted (:func:`predicted_cv2`)
------------------------------------------------------------------
For a dense chain with zero-mean i.i.d. weights, given the layer below, the :math:`n_l`
pre-activations of layer :math:`l` are i.i.d. :math:`N(0, s_l^2)` with
:math:`s_l^2 = \sigma_w^2 \overline{a_{l-1}^2} + \sigma_b^2` (exactly so for Gaussian weights),
so :math:`\overline{z_l^2} = s_l^2\,\chi^2_{n_l}/n_l` and, to first order in :math:`1/n`, the
log-variances add:

.. math::
    V_{z,l} = V_{s,l} + \frac{2}{n_l}, \quad
    V_{a,l} = \gamma_l^2 V_{s,l} + \frac{\kappa_l}{n_l}, \quad
    V_{s,l+1} = \rho_{l+1}^2 V_{a,l},\quad V_{s,1} = \rho_1^2\,\frac{2}{n_0},

with :math:`\kappa_l = \operatorname{Var}\phi(z)^2/(E\phi(z)^2)^2` and the elasticity
:math:`\gamma_l = d\log E\phi^2/d\log q` at the predicted :math:`q_l` (Gauss-Hermite
quadrature), and :math:`\rho = \sigma_w^2 \overline{a^2}/(\sigma_w^2\overline{a^2} +
\sigma_b^2)` the share of the signal in :math:`s^2`.  For ReLU :math:`\kappa = 5`,
:math:`\gamma = 1`: :math:`V_{z,L} = 2/n_0 + \sum_{l<L} 5/n_l + 2/n_L`.  Backwards (gradient
independence: :math:`g_i \sim N(0, S_l)` given the scale :math:`S_l`, independent of
:math:`z`) :math:`V_{g,0} = 2/n_0 + \sum_l (\kappa'_l/n_l + \gamma_l'^2 V_{s,l})` with
:math:`\kappa'_l = 3E\phi'^4/(E\phi'^2)^2 - 1` (5 for ReLU); the weight gradient adds the
input's :math:`2/n_0`, the ``activation`` variance scales :math:`V_{a,L}` by
:math:`(E\phi^2/\operatorname{Var}\phi)^2`.  The squared coefficient of variation is
:math:`e^V - 1`.  It is a planning estimate (first order; Gaussian weights, whose :math:`\chi^2` factor bounds the
lighter-tailed uniform and truncated laws'), used by :func:`varprop.strategies.layer_configs`
to draw only configurations that the checker decides within hypothesis' deadline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from scipy.stats import norm

from varprop._util.validation import (
    check_positive_int,
    check_positive_real,
    check_probability,
    fail,
)
from varprop.checking.allowance import is_exact, prediction_allowance
from varprop.checking.stats import _BOOTSTRAP_RESAMPLES, BOOTSTRAP_MAX_WORK
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.theory.predict import predict_variance

__all__ = [
    "BOOTSTRAP_REPLICATES",
    "MAX_CV2",
    "NS_PER_WORK",
    "RUN_ALPHA",
    "TRUNCATED_FACTOR",
    "call_alpha",
    "cheapest_replicates",
    "check_margin",
    "example_bound",
    "plan_check",
    "planned_replicates",
    "predicted_cv2",
    "predicted_seconds",
]

#: The false-failure probability a whole test run may spend.
RUN_ALPHA = 1e-6

#: Largest predicted squared coefficient of variation of a drawn configuration's statistic:
#: beyond it the statistic is too heavy-tailed to decide within the deadline.
MAX_CV2 = 0.5

#: Nanoseconds per unit of simulation work (random numbers plus multiply-adds per replicate, the
#: work model of :func:`varprop.checking.plan.network_budget`) and per replicate, per engine,
#: measured on the 2-core reference machine shared with other jobs (load average 2-4; a quiet
#: machine is about twice as fast, one at load 9 twice as slow), plus a fixed overhead per check
#: and the bootstrap-t cross-check's cost per replicate and resample
#: (:func:`varprop.checking.stats.mean_interval` runs it up to :data:`BOOTSTRAP_REPLICATES`
#: replicates).  Truncated normal weights cost ``TRUNCATED_FACTOR`` times uniform ones to draw.
NS_PER_WORK = {"gaussian": 20.0, "dense": 10.0}
TRUNCATED_FACTOR = 4.0
_NS_PER_REPLICATE = {"gaussian": 2000.0, "dense": 1500.0}
_NS_PER_BOOTSTRAP = 12.0
_OVERHEAD_S = 0.012

#: The largest replicate count at which the interval runs its bootstrap-t cross-check.
BOOTSTRAP_REPLICATES = int(BOOTSTRAP_MAX_WORK // _BOOTSTRAP_RESAMPLES)

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(96)
_GH_W = _GH_W / _GH_W.sum()


def example_bound(max_examples: int, explicit: int = 0) -> int:
    """Examples a hypothesis run executes before its first failure: ``max_examples`` plus the
    ``explicit`` (``@example``) ones (see the module docstring)."""
    m = check_positive_int("max_examples", max_examples)
    if not isinstance(explicit, int) or isinstance(explicit, bool) or explicit < 0:
        raise fail("explicit", explicit, "a non-negative integer (the @example count)")
    return m + explicit


def call_alpha(run_alpha: float, examples: int, call: int) -> float:
    r"""Level of the ``call``-th check (1, 2, ...) of one example in a run of at most
    ``examples`` examples: :math:`\alpha_{run}\,6/(\pi^2 k^2)/E`."""
    a = check_probability("run_alpha", run_alpha)
    e = check_positive_int("examples", examples)
    k = check_positive_int("call", call)
    return a * 6.0 / (math.pi ** 2 * k * k) / e


def planned_replicates(rel_sd: float, margin: float, alpha: float, beta: float | None = None,
                       safety: float = 1.25, minimum: int = 1024) -> int:
    r"""Replicates for a check at level ``alpha`` (refutation at ``alpha``/2, the interval at
    :math:`z_{\alpha/4}`) to confirm an exact prediction within ``margin`` with probability at
    least :math:`1-\beta` (default :math:`\beta = \alpha/2`): :math:`((z_{\alpha/4} +
    z_{\beta/2})\,\text{safety}\,\sigma/\text{margin})^2`, at least ``minimum``; and at
    least Cochran's :math:`25\,g^2` (the checker's heavy-tail guard) for four times the
    skewness :math:`g = (c + 3)\sqrt c` of a log-normal statistic of squared coefficient of
    variation :math:`c = \sigma^2`, times ``safety``.  The guard takes the *sample* skewness,
    which for a heavier tail runs well above :math:`g`; ``minimum`` = 1024 replicates tolerate
    a sample skewness up to 6.4 (two false "heavy-tailed" verdicts in 691 checks at 64 and 426
    replicates before this floor)."""
    if not (isinstance(rel_sd, (int, float)) and math.isfinite(rel_sd) and rel_sd >= 0):
        raise fail("rel_sd", rel_sd, "a finite non-negative relative standard deviation")
    m = check_positive_real("margin", margin)
    a = check_probability("alpha", alpha)
    b = a / 2 if beta is None else check_probability("beta", beta)
    z = float(norm.isf(a / 4) + norm.isf(b / 2))
    c = rel_sd * rel_sd
    cochran = 400.0 * (c + 3.0) ** 2 * c * safety
    return max(minimum, math.ceil(max((z * safety * rel_sd / m) ** 2, cochran)))


def _moments(fn: object, q: float) -> tuple[float, float]:
    """(E f^2, E f^4) of ``f(sqrt(q) xi)``, xi ~ N(0, 1), by Gauss-Hermite quadrature."""
    with np.errstate(all="ignore"):
        v = np.asarray(fn(math.sqrt(q) * _GH_X), dtype=float) ** 2  # type: ignore[operator]
    return float(_GH_W @ v), float(_GH_W @ (v * v))


def _kappa(m2: float, m4: float) -> float:
    return max(m4 / (m2 * m2) - 1.0, 0.0) if m2 > 0 else 0.0


def predicted_cv2(act: Activation, scheme: InitScheme, widths: Sequence[int], quantity: str,
                  input_variance: float = 1.0, bias_variance: float = 0.0) -> float:
    r"""Predicted squared coefficient of variation of one replicate's statistic of
    :func:`varprop.verify` (keyword form, default layer) -- see the module docstring.
    ``inf`` when a predicted moment vanishes or leaves the float range."""
    ws = [int(n) for n in widths]
    L = len(ws) - 1
    q = np.asarray(predict_variance(act, scheme, widths=ws, depth=L, quantity="preactivation",
                                    input_variance=input_variance, bias_variance=bias_variance,
                                    per_layer=True), dtype=float)
    if not np.all(np.isfinite(q)) or np.any(q <= 0):
        return math.inf
    sb = float(bias_variance)
    v_s = 2.0 / ws[0] * ((q[0] - sb) / q[0]) ** 2
    v_z = v_a = 0.0
    back: list[tuple[float, float]] = []  # (kappa', gamma'^2 V_s) per layer, for the gradient
    for l in range(1, L + 1):
        ql = float(q[l - 1])
        m2, m4 = _moments(act.function, ql)
        m2h, _ = _moments(act.function, ql * 1.01)
        gamma = math.log(m2h / m2) / math.log(1.01) if m2 > 0 and m2h > 0 else 0.0
        d2, d4 = _moments(act.derivative_function, ql)
        d2h, _ = _moments(act.derivative_function, ql * 1.01)
        gamma_d = math.log(d2h / d2) / math.log(1.01) if d2 > 0 and d2h > 0 else 0.0
        v_z = v_s + 2.0 / ws[l]
        v_a = gamma ** 2 * v_s + _kappa(m2, m4) / ws[l]
        back.append((3.0 * (d4 / (d2 * d2) if d2 > 0 else 1.0) - 1.0, gamma_d ** 2 * v_s))
        if l < L:
            q_next = float(q[l])
            v_s = v_a * ((q_next - sb) / q_next) ** 2
    if quantity == "preactivation":
        v = v_z
    elif quantity == "activation_second_moment":
        v = v_a
    elif quantity == "activation":
        m2, _ = _moments(act.function, float(q[-1]))
        mean = float(_GH_W @ np.asarray(act.function(math.sqrt(q[-1]) * _GH_X), dtype=float))
        var = m2 - mean * mean
        v = v_a * (m2 / var) ** 2 if var > 0 else math.inf
    elif quantity in ("gradient", "weight_gradient"):
        v = 2.0 / ws[0]  # the chi^2 of the input gradient's n_0 entries given their scale
        for l in range(L, 0, -1):
            kappa_d, forward = back[l - 1]
            v += kappa_d / ws[l] + forward
        if quantity == "weight_gradient":
            v += 2.0 / ws[0]
    else:
        raise fail("quantity", quantity, "an MLP quantity of varprop.verify")
    return math.expm1(v) if math.isfinite(v) else math.inf


def predicted_seconds(scheme: InitScheme, widths: Sequence[int], replicates: int,
                      quantity: str = "preactivation") -> float:
    r"""Predicted time of a check with ``replicates`` replicates on the reference machine under
    load: per replicate, ``NS_PER_WORK`` times the work of the engine ``simulate`` picks
    (Gaussian shortcut :math:`3\sum_l n_l` for i.i.d. normal weights, dense
    :math:`\sum_l n_{l-1}n_l + \sum_l n_l` otherwise) plus a fixed cost, plus the bootstrap
    cross-check (499 resamples) up to :data:`BOOTSTRAP_REPLICATES` replicates, plus a fixed
    overhead.  A backward ``quantity`` costs twice the work (a forward and a backward pass), the
    ``activation`` variance 1.5 times (two statistics)."""
    ws = [int(n) for n in widths]
    if scheme.is_gaussian and scheme.is_iid:
        engine, work = "gaussian", 3.0 * sum(ws)
    else:
        engine, work = "dense", float(sum(a * b for a, b in pairwise(ws)) + sum(ws))
    factor = (2.0 if quantity in ("gradient", "weight_gradient") else
              1.5 if quantity == "activation" else 1.0)
    if engine == "dense" and scheme.family.__name__ == "TruncatedNormal":
        factor *= TRUNCATED_FACTOR
    per = factor * (NS_PER_WORK[engine] * work + _NS_PER_REPLICATE[engine])
    if replicates <= BOOTSTRAP_REPLICATES:
        per += _NS_PER_BOOTSTRAP * _BOOTSTRAP_RESAMPLES
    return _OVERHEAD_S + replicates * per * 1e-9


def cheapest_replicates(scheme: InitScheme, widths: Sequence[int], replicates: int,
                        quantity: str = "preactivation") -> int:
    """``replicates``, or more when that is faster: just past :data:`BOOTSTRAP_REPLICATES` the
    bootstrap cross-check is skipped (more replicates never weaken a check's guarantees)."""
    past = BOOTSTRAP_REPLICATES + 1
    if replicates < past and predicted_seconds(scheme, widths, past, quantity) < \
            predicted_seconds(scheme, widths, replicates, quantity):
        return past
    return replicates


def check_margin(rtol: float, tol: float) -> float:
    r"""The margin :math:`m` a plan resolves: ``rtol`` for an exact prediction (``tol`` about 0);
    :math:`\max(\text{rtol}, \text{tol})/2` for an approximate one, confirmed within the
    larger of its margins when its true deviation is at most the other half."""
    return rtol if tol < 1e-6 else max(rtol, tol) / 2


def plan_check(act: Activation, scheme: InitScheme, widths: Sequence[int], quantity: str, *,
               alpha: float, rtol: float = 0.05, input_variance: float = 1.0,
               bias_variance: float = 0.0, predicted: float | None = None,
               safety: float = 1.1, max_cv2: float = math.inf) -> tuple[int, float]:
    r"""``(replicates, predicted seconds)`` of a keyword-form check (default layer, ensemble
    target, zero-mean i.i.d. weights) at level ``alpha``: :func:`planned_replicates` from
    :func:`predicted_cv2` at the margin :func:`check_margin` of the declared allowance
    (:func:`~varprop.checking.allowance.prediction_allowance`), made
    :func:`cheapest_replicates`.  ``(2**62, inf)`` when the spread is not predicted finite or
    its squared coefficient of variation exceeds ``max_cv2``."""
    ws = [int(n) for n in widths]
    cv2 = predicted_cv2(act, scheme, ws, quantity, input_variance, bias_variance)
    if not math.isfinite(cv2) or cv2 > max_cv2:
        return 2**62, math.inf
    L = len(ws) - 1
    layer = 1 if quantity in ("gradient", "weight_gradient") else L
    if is_exact(act, scheme, quantity):
        tol = 0.0
    else:
        value = predicted
        if value is None:
            value = float(np.asarray(predict_variance(
                act, scheme, widths=ws, depth=L, quantity=quantity, per_layer=True,
                input_variance=input_variance, bias_variance=bias_variance))[layer - 1])
        tol, _ = prediction_allowance(act, scheme, widths=ws, layer=layer, quantity=quantity,
                                      method="auto", predicted_value=value)
    reps = planned_replicates(math.sqrt(cv2), check_margin(rtol, tol), alpha, safety=safety)
    reps = cheapest_replicates(scheme, ws, reps, quantity)
    return reps, predicted_seconds(scheme, ws, reps, quantity)
