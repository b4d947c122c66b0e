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
:math:`\sigma^2` is the finite-width theory's squared coefficient of variation of one network's
mean square (:func:`varprop.predict_distribution` with ``statistic="mean_square"``, through
:func:`varprop.checking.distribution_check.replicate_cv2`, the same prediction the checker plans
its own budget from): exact for linear and ReLU-class networks with Gaussian weights
(:math:`(1 + 2/n_0)\prod_{l<L}(1 + 5/n_l)(1 + 2/n_L) - 1` for ReLU pre-activations), the 1/n
expansion elsewhere.  Against a from-scratch NumPy Monte Carlo (20,000 networks; ReLU, tanh,
sigmoid; widths 16 to 64, depths 1 to 10; :math:`E z_L^2`, :math:`E a_L^2` and the input
gradient, 24 cases) it was within 4.7% (median 0.9%); the first-order log-variance sum it
replaced was off by up to +126% (gradients) and +25% (ReLU :math:`E a^2`, depth 3, width 16).
The weight gradient's statistic :math:`\overline{\delta_1^2}\,\overline{x^2}` is the input
gradient's :math:`\overline{\delta_1^2}\,\sigma^2\chi^2_{n_0}/n_0` with
:math:`\overline{x^2}` in place of the :math:`\chi^2` factor, so it takes the gradient's
:math:`\sigma^2`, a conservative planning value (Monte Carlo, 20,000 networks: +2.6% for ReLU
at width 16, depth 3; +19% to +31% for tanh at widths 16-32, depths 3-5, where
:math:`\overline{x^2}` and :math:`\overline{\delta_1^2}` are negatively correlated); the
``activation`` variance scales the :math:`E a^2` one by
:math:`(E a^2/\operatorname{Var} a)^2` (mean field).  It is used by
:func:`varprop.strategies.layer_configs` to draw only configurations that the checker decides
within hypothesis' deadline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from varprop._util.validation import (
    check_positive_int,
    check_positive_real,
    check_probability,
    check_widths,
    fail,
)
from varprop.checking import plan as _plan
from varprop.checking.allowance import dead_layer_gap, is_exact, prediction_allowance
from varprop.checking.distribution_check import replicate_cv2
from varprop.checking.next_order import finite_width_case
from varprop.checking.plan import default_budget
from varprop.checking.stats import _BOOTSTRAP_RESAMPLES, BOOTSTRAP_MAX_WORK
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, resolve_scheme
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
    "claim_allowance",
    "example_bound",
    "plan_check",
    "plan_config",
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
    r"""Replicates for a check at level ``alpha`` (refutation at ``alpha``/2, one look, the
    interval at :math:`z_{\alpha/4}`) to confirm an exact prediction within ``margin`` with
    probability at least :math:`1-\beta` (default :math:`\beta = \alpha/2`): the checker's
    formula :func:`varprop.checking.plan.planned_replicates` at level :math:`\alpha/2`, one look,
    power :math:`1 - \beta/2` and safety factor ``safety``:math:`^2` on the variance,
    :math:`((z_{\alpha/4} + z_{\beta/2})\,\text{safety}\,\sigma/\text{margin})^2`, at least
    ``minimum``; and at least Cochran's :math:`25\,g^2` (the checker's heavy-tail guard) for
    four times the skewness :math:`g = (c + 3)\sqrt c` of a log-normal statistic of squared
    coefficient of variation :math:`c = \sigma^2`, times ``safety``.  The guard takes the
    *sample* skewness, which for a heavier tail runs well above :math:`g`; ``minimum`` = 1024
    replicates tolerate a sample skewness up to 6.4 (two false "heavy-tailed" verdicts in 691
    checks at 64 and 426 replicates before this floor)."""
    if not (isinstance(rel_sd, (int, float)) and math.isfinite(rel_sd) and rel_sd >= 0):
        raise fail("rel_sd", rel_sd, "a finite non-negative relative standard deviation")
    m = check_positive_real("margin", margin)
    a = check_probability("alpha", alpha)
    b = a / 2 if beta is None else check_probability("beta", beta)
    c = rel_sd * rel_sd
    need = _plan.planned_replicates(c, 0.0, 0.0, m, a / 2, 2**62, minimum, power=1.0 - b / 2,
                                    safety=safety * safety, looks=1)
    cochran = 400.0 * (c + 3.0) ** 2 * c * safety
    return max(need, math.ceil(cochran))


def predicted_cv2(act: Activation, scheme: InitScheme, widths: Sequence[int], quantity: str,
                  input_variance: float = 1.0, bias_variance: float = 0.0) -> float:
    r"""Predicted squared coefficient of variation of one replicate's statistic of
    :func:`varprop.verify` (keyword form, default layer, zero-mean i.i.d. weights) -- the
    finite-width theory's (module docstring).  ``inf`` where it has no finite prediction or
    the 1/n expansion is outside its range."""
    ws = [int(n) for n in widths]
    L = len(ws) - 1
    backward = quantity in ("gradient", "weight_gradient")
    base = "gradient" if backward else quantity
    cv2 = replicate_cv2(act, scheme, ws, quantity=base, layer=1 if backward else L,
                        input_variance=input_variance, bias_variance=bias_variance,
                        in_range=True)
    if cv2 is None:
        return math.inf
    if quantity == "activation" and not act.traits.linear:
        var, second = (float(np.asarray(predict_variance(
            act, scheme, widths=ws, depth=L, quantity=q, input_variance=input_variance,
            bias_variance=bias_variance, per_layer=True), dtype=float)[-1])
            for q in ("activation", "activation_second_moment"))
        cv2 = cv2 * (second / var) ** 2 if var > 0 else math.inf
    return cv2


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


def check_margin(rtol: float, tol: float, deviation: float | None = None) -> float:
    r"""The margin :math:`m` a plan resolves for a claim with declared allowance ``tol`` whose
    true relative deviation is at most ``deviation`` (default ``tol``): with
    :math:`M = \max(\text{rtol}, \text{tol})`, :math:`m = \max(M - \text{deviation}, M/2)`.
    So ``rtol`` for an exact prediction (``tol``, ``deviation`` about 0), ``rtol - tol`` for a
    1/n-corrected one whose next-order allowance is small, and half of :math:`M` once the
    deviation may reach it (confirmed within the larger margin when its true deviation is at
    most the other half)."""
    big = max(rtol, tol)
    dev = tol if deviation is None else deviation
    return max(big - dev, big / 2)


def claim_allowance(act: Activation, scheme: InitScheme, widths: Sequence[int], quantity: str, *,
                    predicted: float | None = None, finite_width: bool | None = None,
                    input_variance: float = 1.0, bias_variance: float = 0.0
                    ) -> tuple[float, float, bool]:
    r"""``(tol, deviation, finite_width)`` of the claim a keyword-form check (default layer,
    ensemble target, zero-mean i.i.d. weights) makes: the declared allowance ``tol``
    (:func:`~varprop.checking.allowance.prediction_allowance`: 0 for an exact prediction, else
    the next order :math:`c\rho^2` of the 1/n expansion,
    :meth:`~varprop.theory.finite.expansion.FiniteWidthMoments.next_order`), the largest
    relative deviation of the truth from the claim that the theory allows (``tol`` plus the
    claim's distance from the corrected value :math:`\theta_1`: the shift :math:`|s|` for the
    mean field), and whether the claim is the corrected one: ``finite_width=None`` chooses it
    where the expansion decides (:math:`\rho \le 0.75`), as the assertion helpers of
    :mod:`varprop.strategies` do."""
    ws = [int(n) for n in widths]
    L = len(ws) - 1
    layer = 1 if quantity in ("gradient", "weight_gradient") else L
    if is_exact(act, scheme, quantity):  # the mean field of ReLU gradients misses dead layers
        gap = dead_layer_gap(act, ws, layer, quantity, bias_variance)
        return 0.0, 0.0, (gap > 0.0) if finite_width is None else bool(finite_width)
    expansion = finite_width_case(act, scheme, widths=ws, layer=layer, quantity=quantity,
                                  input_variance=input_variance, bias_variance=bias_variance)
    case = expansion[0]
    fw = (case is not None and case.in_regime) if finite_width is None else bool(finite_width)
    if predicted is not None:
        value = float(predicted)
    elif fw and case is not None:
        value = case.corrected
    else:
        value = float(np.asarray(predict_variance(
            act, scheme, widths=ws, depth=L, quantity=quantity, per_layer=True,
            input_variance=input_variance, bias_variance=bias_variance))[layer - 1])
    tol, _ = prediction_allowance(act, scheme, widths=ws, layer=layer, quantity=quantity,
                                  method="auto", predicted_value=value, expansion=expansion,
                                  input_variance=input_variance, bias_variance=bias_variance)
    best = case.corrected if case is not None else value
    deviation = tol + abs(best / value - 1.0) if value > 0 else math.inf
    return tol, deviation, fw


def plan_check(act: Activation, scheme: InitScheme, widths: Sequence[int], quantity: str, *,
               alpha: float, rtol: float = 0.05, input_variance: float = 1.0,
               bias_variance: float = 0.0, predicted: float | None = None,
               finite_width: bool | None = None, safety: float = 1.05,
               max_cv2: float = math.inf) -> tuple[int, float]:
    r"""``(replicates, predicted seconds)`` of a keyword-form check (default layer, ensemble
    target, zero-mean i.i.d. weights) at level ``alpha``: :func:`planned_replicates` from
    :func:`predicted_cv2` at the margin :func:`check_margin` of the claim's allowance and
    deviation (:func:`claim_allowance`; ``finite_width=None``: the corrected claim where the
    1/n expansion decides), made :func:`cheapest_replicates`.  ``safety`` = 1.05 on the
    standard deviation covers a 10% error of the predicted :math:`\sigma^2` (measured: at most
    4.7%, module docstring).  ``(2**62, inf)`` when the
    spread is not predicted finite or its squared coefficient of variation exceeds
    ``max_cv2``."""
    ws = [int(n) for n in widths]
    cv2 = predicted_cv2(act, scheme, ws, quantity, input_variance, bias_variance)
    if not math.isfinite(cv2) or cv2 > max_cv2:
        return 2**62, math.inf
    tol, deviation, _ = claim_allowance(act, scheme, ws, quantity, predicted=predicted,
                                        finite_width=finite_width,
                                        input_variance=input_variance,
                                        bias_variance=bias_variance)
    reps = planned_replicates(math.sqrt(cv2), check_margin(rtol, tol, deviation), alpha,
                              safety=safety)
    reps = cheapest_replicates(scheme, ws, reps, quantity)
    return reps, predicted_seconds(scheme, ws, reps, quantity)


def plan_config(act: Any, init: Any, config: dict[str, Any], *, alpha: float,
                quantities: Sequence[str]) -> int | None:
    r"""Replicates of the assertion helpers' check of ``config`` (:func:`varprop.verify` keyword
    arguments besides ``activation`` and ``init``) at level ``alpha``, for a keyword-form check
    of one of ``quantities`` at the default layer and target with zero-mean i.i.d. weights:
    without the caller's ``predicted`` or ``finite_width`` it is the 1/n-corrected claim where
    the expansion decides it (:func:`claim_allowance`; ``config`` gets ``finite_width=True``),
    planned by :func:`plan_check`.  ``None`` for any other check or where the spread has no
    prediction (the caller sizes it by a pilot); a ``ValueError`` naming the configuration when
    the plan exceeds the checker's budget (width-1 and deep narrow nets)."""
    if not (isinstance(act, (str, Activation)) and init is not None
            and config.get("quantity") in quantities and config.get("layer") is None
            and config.get("target", "ensemble") == "ensemble"
            and config.get("method", "auto") == "auto"):
        return None
    a, s = resolve_activation(act), resolve_scheme(init)
    if not (s.is_zero_mean and s.is_iid):
        return None
    ws = check_widths(config.get("fan_in"), config.get("fan_out"), config.get("widths"),
                      config.get("depth", 1))
    shape = {"input_variance": config.get("input_variance", 1.0),
             "bias_variance": config.get("bias_variance", 0.0)}
    quantity = config["quantity"]
    if config.get("predicted") is None and "finite_width" not in config and \
            claim_allowance(a, s, ws, quantity, **shape)[2]:
        config["finite_width"] = True
    reps, seconds = plan_check(a, s, ws, quantity, alpha=alpha,
                               rtol=float(config.get("rtol", 0.05)),
                               predicted=config.get("predicted"),
                               finite_width=config.get("finite_width", False), **shape)
    if not math.isfinite(seconds):
        return None
    cap = max(default_budget(s, ws), BOOTSTRAP_REPLICATES + 1)
    if reps > cap:
        raise fail("config", {k: config[k] for k in sorted(config)}, "a configuration the "
                   f"checker decides at level {alpha:.3g} within its budget of {cap} "
                   f"replicates (it needs {reps}; width-1 and deep narrow nets are too "
                   "heavy-tailed): draw it from varprop.strategies.layer_configs(), or pass "
                   "alpha= or replicates=")
    return reps
