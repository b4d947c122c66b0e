r"""The statistical checker: :func:`verify` a prediction against simulation, with known error rates.

How a verdict is reached (see ``docs/checker.md`` for the full account and measured numbers)
--------------------------------------------------------------------------------------------
1. **Unit of evidence.** One replicate = one independent network fed a fresh input
   (:func:`varprop.simulation.montecarlo.simulate`).  Its statistic (e.g. the unit average of
   :math:`z_L^2`) is one observation.  Units inside one network share a random scale, so they
   are never treated as independent observations.
2. **Estimand** :math:`\theta` (the ``target``):

   * ``"ensemble"``: the variance of one unit over networks and inputs, the quantity
     :func:`~varprop.theory.predict.predict_variance` predicts.  Second moments (``preactivation`` and
     ``activation`` with zero-mean weights, ``activation_second_moment``, ``gradient``,
     ``weight_gradient``) are the mean of the replicate statistic; a variance
     :math:`E a^2 - (E a)^2` is estimated from the replicate averages of :math:`a` and
     :math:`a^2` by the delta method (:func:`varprop.checking.stats.variance_interval`).
   * ``"unit_spread"``: the spread across the units of one network for one input (what
     ``reduce_std`` over a row prints), :math:`E[\frac{1}{n-1}\sum_i (a_i - \bar a)^2]`, estimated
     from the simulated ``*_unit_std`` (``ddof=0``) times :math:`n/(n-1)`.  The mean-field
     prediction is the same number; at finite width the two targets differ (for ReLU the
     ensemble variance of :math:`a` exceeds the unit spread, because :math:`E[a \mid \text{scale}]`
     varies between networks).
3. **Decision** on :math:`r = \theta/\theta_0 - 1` with an interval :math:`[lo, hi]` that holds
   simultaneously over all looks with probability :math:`\ge 1 - \alpha`:
   ``refuted`` if it lies wholly outside :math:`\pm` ``tol``; ``confirmed`` if it lies inside
   :math:`\pm` ``rtol`` (two one-sided tests); for an approximate claim (``tol > rtol``)
   ``confirmed`` *within the allowance* (``Verdict.within_allowance``) if it lies inside
   :math:`\pm` ``tol`` and either wholly outside :math:`\pm` ``rtol`` (measurably off: no
   number of replicates can change that, so the plan stops; the reason reads "off by +13.1%
   [+6.81%, +20.6%], within the allowance of 65.6% for this approximation") or at the last look;
   ``inconclusive`` otherwise, with the margin the interval contains and the number of
   replicates that would resolve it (the half-width shrinking like :math:`1/\sqrt R`).  ``tol``
   is 0 (plus a floating-point floor) when the prediction claims to be exact; otherwise a
   declared bound (see :func:`prediction_allowance`).  Every reason is built from the verdict's
   own numbers.  A replicate whose values left the float range (overflow, or an underflow whose
   exact zeros would be artefacts) is not a measurement: such a check is ``inconclusive`` with
   no estimate (``None``/``null``).
4. **Intervals** are skewness-corrected t intervals (Hall 1992) with a heavy-tail guard and a
   bootstrap-t cross-check (:mod:`varprop.checking.stats`).
5. **Adaptive sampling** (``replicates=None``): looks after :math:`R_0, 2R_0, 4R_0, \dots`
   replicates up to the budget; with :math:`K` planned looks each look uses level
   :math:`\alpha/K` (Bonferroni over looks), so the sequential error is controlled.

Error guarantees: P(refuted | the prediction holds within ``tol``) :math:`\le \alpha`,
P(confirmed at :math:`\pm` ``rtol`` | :math:`|r| > ` ``rtol``) :math:`\le \alpha/2` and P(confirmed within the
allowance | :math:`|r| >` ``tol``) :math:`\le \alpha/2` (all read off one simultaneous
interval), up to the :math:`O(1/R)` error of the
corrected normal approximation (measured calibration in the docs).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from varprop._util.jsonio import jsonable
from varprop._util.validation import (
    check_choice,
    check_nonnegative_int,
    check_nonnegative_real,
    check_positive_int,
    check_positive_real,
    check_probability,
    check_widths,
    fail,
    fail_type,
)
from varprop.checking import stats as _stats
from varprop.checking.reasons import _decision, _heavy_reason, _range_reason, _relative
from varprop.components.activations import Activation, resolve_activation
from varprop.components.named import build_named
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.errors import VarpropError
from varprop.network.quantities import BACKWARD as _BACKWARD_QUANTITIES
from varprop.network.quantities import QUANTITIES

__all__ = [
    "verify",
    "verify_step",
    "verify_many",
    "check_matrix",
    "default_matrix",
    "Verdict",
    "holm",
    "prediction_allowance",
    "is_exact",
    "config_seed",
    "default_budget",
    "DEFAULT_INITS",
    "TARGETS",
    "STATUSES",
    "FINITE_WIDTH_CONSTANT",
]

Status = Literal["confirmed", "refuted", "inconclusive"]
Target = Literal["ensemble", "unit_spread"]
LOCAL_QUANTITIES: tuple[str, ...] = ("preactivation", "activation_second_moment", "gradient")
METHODS: tuple[str, ...] = ("auto", "exact", "closed_form", "quadrature")
TARGETS: tuple[str, ...] = ("ensemble", "unit_spread")
STATUSES: tuple[str, ...] = ("confirmed", "refuted", "inconclusive")
_BACKWARD = _BACKWARD_QUANTITIES

#: :math:`c` in the finite-width allowance :math:`c \sum_{l \le L} 1/n_l` for predictions that
#: are exact only as the widths grow (see :func:`prediction_allowance`).
FINITE_WIDTH_CONSTANT = 2.0
#: Relative floating-point floor added to every tolerance (float64; float32 uses 1e-4).
_FLOAT_FLOOR = {"float64": 1e-9, "float32": 1e-4}
#: First look and work budgets of the adaptive plan (work = random numbers per replicate).
_FIRST_LOOK = 64
_MAX_REPLICATES = 2**18
_MIN_BUDGET = 1024
_WORK_BUDGET = {"gaussian": 1.2e8, "dense": 1.0e9}


# ----------------------------------------------------------------------------------------------
# the verdict
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    r"""The outcome of :func:`verify` (immutable; ``str()`` for people, :meth:`to_dict` for JSON).

    Attributes
    ----------
    status : {"confirmed", "refuted", "inconclusive"}
    reason : str
        Why, from the verdict's own numbers (e.g. ``"r = +1.2% [-2.1%, +4.4%] lies inside +-5%
        (TOST)"``, ``"off by ..., within the allowance of ..."``, ``"heavy-tailed: ..."``).
    predicted : float
        :math:`\theta_0`.
    estimate : float or None
        :math:`\hat\theta` (unbiased); ``None`` when nothing could be estimated (e.g. the values
        left the float range): then ``interval`` is ``None`` too (``null`` in JSON).
    interval : (float, float) or None
        Simultaneous :math:`1-\alpha` interval for :math:`\theta` (absolute units).
    relative_interval : (float, float) or None
        The same for :math:`r = \theta/\theta_0 - 1` (None when :math:`\theta_0 = 0`: then the
        margins are absolute, see ``atol``).
    relative_error : float or None
        :math:`\hat\theta/\theta_0 - 1`.
    p_refute : float
        p-value of "the prediction holds within ``tol``" (refuted iff ``p_refute <= alpha``).
    p_tost_lower, p_tost_upper : float
        p-values of :math:`r \le -` ``rtol`` and :math:`r \ge` ``rtol`` (confirmed iff both
        ``<= alpha``).  All three are two-sided-equivalent and Bonferroni-adjusted over the looks,
        so they compare with ``alpha`` directly.
    replicates, looks : int
        Replicates used and interim analyses made.
    target : str
        ``"ensemble"`` or ``"unit_spread"`` (or ``"one_step"`` for :func:`verify_step`).
    statistic : str
        Name of the estimand, e.g. ``"E[z_L^2]"``.
    description : str
        What the estimand is, in words.
    assumptions : str
        The prediction's assumptions (and whether it claims exactness here).
    exact : bool
        Whether the prediction claims to be exact for this configuration.
    tol, rtol, atol, alpha : float
    seed : int
    quantity : str
    layer : int
    config : dict
        The configuration (activation, init, widths, variances, method, dtype).
    skewness : float
        Skewness used by the heavy-tail guard.
    bootstrap_interval : (float, float) or None
        Bootstrap-t cross-check interval of the last look (absolute), when computed.
    elapsed : float
        Seconds spent.
    within_allowance : bool
        ``status == "confirmed"`` for an approximate claim through its declared allowance: the
        interval for :math:`r` lies inside :math:`\pm` ``tol`` (``tol > rtol``), so the claim
        "within ``tol``" is confirmed although :math:`\pm` ``rtol`` is not (the deviation may be
        measurably non-zero; ``reason`` gives it with its interval).
    p_tost_allowance : float
        TOST p-value of :math:`|r| \ge` ``tol`` (adjusted over looks): ``<= alpha`` for a
        confirmation within the allowance.
    """

    status: Status
    reason: str
    predicted: float
    estimate: float | None
    interval: tuple[float, float] | None
    relative_interval: tuple[float, float] | None
    relative_error: float | None
    p_refute: float
    p_tost_lower: float
    p_tost_upper: float
    replicates: int
    looks: int
    target: str
    statistic: str
    description: str
    assumptions: str
    exact: bool
    tol: float
    rtol: float
    atol: float | None
    alpha: float
    seed: int
    quantity: str
    layer: int
    config: Mapping[str, Any] = field(default_factory=dict)
    skewness: float = 0.0
    bootstrap_interval: tuple[float, float] | None = None
    heavy_tailed: bool = False
    elapsed: float = 0.0
    within_allowance: bool = False
    p_tost_allowance: float = 1.0

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"

    @property
    def refuted(self) -> bool:
        return self.status == "refuted"

    @property
    def inconclusive(self) -> bool:
        return self.status == "inconclusive"

    @property
    def p_equivalence(self) -> float:
        """``max(p_tost_lower, p_tost_upper)``: confirmed iff ``<= alpha``."""
        return max(self.p_tost_lower, self.p_tost_upper)

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON dictionary (tuples become lists; no NaN; an infinite value, e.g. the
        skewness of a statistic whose log-scale variance overflows, becomes ``"inf"``/``"-inf"``)."""
        out = asdict(self)
        out["config"] = dict(self.config)
        return {k: jsonable(v) for k, v in out.items()}

    def __str__(self) -> str:
        cfg = self.config
        status = self.status.upper() + (" (within the allowance)" if self.within_allowance else "")
        head = (f"{status}: {self.statistic} for {cfg.get('activation')} / "
                f"{cfg.get('init')}, widths {_short_widths(cfg.get('widths'))}, layer {self.layer}")
        level = f"{100 * (1 - self.alpha):g}%"
        if self.estimate is None or self.interval is None:
            estimate, rel = "no estimate", "no interval"
        elif self.relative_interval is not None and self.relative_error is not None:
            estimate = f"estimate {self.estimate:.6g}"
            rel = (f"relative error {self.relative_error:+.4g}, {level} interval "
                   f"[{self.relative_interval[0]:+.4g}, {self.relative_interval[1]:+.4g}]")
        else:
            estimate = f"estimate {self.estimate:.6g}"
            rel = (f"absolute {level} interval [{self.interval[0]:.6g}, {self.interval[1]:.6g}]"
                   + (" (zero prediction)" if self.predicted == 0 else ""))
        if self.predicted == 0 and self.atol is not None:
            margins = f"absolute tol {self.tol:.3g}, atol {self.atol:.3g}"
        else:
            margins = f"tol {self.tol:.3g}, rtol {self.rtol:.3g}"
        return (f"{head}\n"
                f"  predicted {self.predicted:.6g}, {estimate}; {rel}\n"
                f"  {margins}; p_refute {self.p_refute:.3g}, TOST p {self.p_equivalence:.3g}; "
                f"{self.replicates} replicates in {self.looks} look(s), seed {self.seed}\n"
                f"  reason: {self.reason}\n"
                f"  target: {self.target}: {self.description}\n"
                f"  assumptions: {self.assumptions}")


def _short_widths(ws: object) -> str:
    if not isinstance(ws, (list, tuple)) or not ws:
        return str(ws)
    if len(set(ws[1:])) == 1:
        return f"{ws[0]}->{ws[1]} x {len(ws) - 1}"
    return "[" + ",".join(map(str, ws)) + "]"


# ----------------------------------------------------------------------------------------------
# what the prediction claims
# ----------------------------------------------------------------------------------------------

def _is_linear(act: Activation) -> bool:
    from varprop.components.activations import X
    return bool(act.expr == X)


def _is_relu_like(act: Activation) -> bool:
    return act.name in ("relu", "leaky_relu")


def is_exact(activation: Activation | str, init: InitScheme | str, quantity: str, *,
             target: str = "ensemble") -> bool:
    r"""Whether the library's prediction of ``quantity`` is exact at every finite width.

    True for the second moments (``preactivation``, ``activation_second_moment``, ``gradient``,
    ``weight_gradient``, and ``activation`` for linear nets) of linear, ReLU and leaky-ReLU nets
    with zero-mean symmetric i.i.d. weights, and for linear nets with orthogonal weights.  For the
    ``unit_spread`` target, the pre-activation spread is exact in the same cases and the
    activation spread of (leaky) ReLU nets with zero-mean Gaussian weights is exact too (given
    the previous layer the units are i.i.d. Gaussian).  Everything else is exact only as the
    widths grow.
    """
    act = resolve_activation(activation)
    scheme = resolve_scheme(init)
    linear = _is_linear(act)
    homogeneous = linear or _is_relu_like(act)
    iid_symmetric = scheme.is_zero_mean and scheme.is_symmetric and scheme.is_iid
    orthogonal_linear = linear and scheme.distribution == "orthogonal"
    if not (homogeneous and (iid_symmetric or orthogonal_linear)):
        return False
    if target == "unit_spread":
        if quantity == "preactivation" or linear:
            return True
        return quantity == "activation" and scheme.is_gaussian and not orthogonal_linear
    if quantity == "activation":
        return linear
    return True


def prediction_allowance(activation: Activation | str, init: InitScheme | str, *,
                         widths: Sequence[int], layer: int, quantity: str, method: str,
                         predicted_value: float, reference_value: float | None = None,
                         target: str = "ensemble", dtype: str = "float64") -> tuple[float, str]:
    r"""The declared bound ``tol`` on :math:`|r|` for the library's prediction, and its reason.

    .. math::

        \text{tol} = \underbrace{\left|\frac{\theta_{quad}}{\theta_{method}} - 1\right|}_{
        \text{closed-form approximation}}
        + \underbrace{c \sum_{l \in \mathcal L} \frac{1}{n_l}}_{\text{finite width}}
        + \epsilon_{float}

    * The first term is the difference between the requested ``method`` (e.g. the erf-matched
      closed form of tanh) and numerical quadrature of the same mean-field recursion; it is 0 for
      ``method`` in auto/exact/quadrature.
    * The second term is 0 when :func:`is_exact` holds.  Otherwise the mean-field recursion is
      exact only as the widths grow, with an :math:`O(1/n)` error per layer: the realised scale
      :math:`\hat q_l` of a network fluctuates with relative variance
      :math:`\approx \kappa/n_l` per layer (:math:`\kappa = 5` for ReLU with Gaussian weights,
      smaller for bounded activations), and a one-step map :math:`f` with relative curvature
      :math:`|q^2 f''/f| \le 1/2` turns it into a bias of at most :math:`\kappa/(4n)` per
      layer; non-Gaussian weights add a kurtosis term of the same order; the finite-width
      bias of :math:`(E a)^2` in ``activation`` is :math:`\le \mathrm{CV}^2(\hat q)/4`.  The
      constant :math:`c` = :data:`FINITE_WIDTH_CONSTANT` = 2 covers these with a margin of about 5 over the largest deviation measured (0.42 L/n)
      (measured deviations are in ``docs/checker.md``); :math:`\mathcal L` is the set of layers
      the quantity passes through (``1..layer`` forward, all layers for backward quantities).
    * :math:`\epsilon_{float}` is :math:`10^{-9}` (float64) or :math:`10^{-4}` (float32).
    """
    act = resolve_activation(activation)
    floor = _FLOAT_FLOOR.get(dtype, 1e-9)
    parts: list[str] = []
    tol = floor
    if reference_value is not None and predicted_value != 0 and math.isfinite(reference_value):
        gap = abs(reference_value / predicted_value - 1.0)
        if gap > 0:
            tol += gap
            parts.append(f"method={method!r} differs from quadrature by {gap:.3g}")
    if not is_exact(act, init, quantity, target=target):
        L = len(widths) - 1
        layers = range(1, L + 1) if quantity in _BACKWARD else range(1, layer + 1)
        fw = FINITE_WIDTH_CONSTANT * sum(1.0 / widths[l] for l in layers)
        if quantity in _BACKWARD:
            fw += FINITE_WIDTH_CONSTANT / widths[0]
        tol += fw
        parts.append(f"finite-width allowance {FINITE_WIDTH_CONSTANT:g} * sum(1/n_l) = {fw:.3g}")
    else:
        parts.append("exact at finite width: tol = 0 (+ float floor)")
    return tol, "; ".join(parts)


def _assumptions(act: Activation, scheme: InitScheme, quantity: str, target: str, exact: bool,
                 method: str, user: bool) -> str:
    base = ("infinite-width mean field (Gaussian pre-activations), gradient independence for "
            "backward quantities; inputs i.i.d. zero-mean, biases N(0, bias_variance), "
            "dL/dz_L i.i.d. unit variance independent of the forward pass")
    claim = ("claims exactness at every finite width here (second moments of linear/ReLU nets with "
             "zero-mean symmetric i.i.d. weights)" if exact else
             "exact only as the widths grow here (finite-width allowance applies)")
    who = "user-supplied prediction judged against" if user else f"library prediction (method={method!r}),"
    return f"{who} {base}; {claim}"


# ----------------------------------------------------------------------------------------------
# statistics of a simulation
# ----------------------------------------------------------------------------------------------

def _statistic_spec(act: Activation, scheme: InitScheme, quantity: str, target: str,
                    widths: tuple[int, ...], layer: int) -> tuple[str, str, str, tuple[str, ...]]:
    """(kind, name, description, simulate quantities) of the estimand."""
    L = len(widths) - 1
    zero_mean = scheme.is_zero_mean
    l = layer
    if target == "unit_spread":
        n = widths[l]
        sym = "z" if quantity == "preactivation" else "a"
        return ("spread", f"E[s^2({sym}_{l})]",
                f"expected across-unit variance (ddof=1) of {sym}_{l} within one network for one "
                f"input (n_{l} = {n} units; from reduce_std**2 * n/(n-1))",
                (f"{'preactivation' if sym == 'z' else 'activation'}_unit_std",))
    if quantity == "preactivation":
        if zero_mean:
            return ("mean", f"E[z_{l}^2]", f"ensemble second moment of one pre-activation of layer "
                    f"{l} (= its variance: zero-mean weights)", ("preactivation_second",))
        return ("variance", f"Var[z_{l}]", f"ensemble variance E z^2 - (E z)^2 of one "
                f"pre-activation of layer {l} (delta method)",
                ("preactivation_mean", "preactivation_second"))
    if quantity == "activation":
        if zero_mean and _is_linear(act):
            return ("mean", f"E[a_{l}^2]", f"ensemble variance of one activation of layer {l} "
                    "(linear, zero mean: the second moment)", ("activation_second",))
        return ("variance", f"Var[a_{l}]", f"ensemble variance E a^2 - (E a)^2 of one activation "
                f"of layer {l} over networks and inputs (delta method)",
                ("activation_mean", "activation_second"))
    if quantity == "activation_second_moment":
        return ("mean", f"E[a_{l}^2]", f"ensemble second moment of one activation of layer {l}",
                ("activation_second",))
    if quantity == "gradient":
        return ("mean", f"E[(dL/da_{l - 1})^2]", f"ensemble second moment (= variance) of one "
                f"entry of the gradient at layer {l}'s input, after back-propagating through "
                f"layers {L}..{l}", ("gradient_second",))
    return ("mean", f"E[(dL/dW_{l})^2]", f"ensemble second moment (= variance) of one entry of "
            f"the weight gradient of layer {l}", ("weight_gradient_second",))


def _extract(res: Any, names: Sequence[str], layer: int, backward: bool) -> tuple[list[np.ndarray], str | None]:
    """Columns at ``layer``; an error message instead if some replicate overflowed there."""
    mask_name = "gradient_valid" if backward else "valid"
    valid = np.asarray(getattr(res, mask_name))[:, layer - 1]
    if not np.all(valid):
        return [], _range_reason(res, valid, backward)
    return [np.asarray(res.per_replicate(q, layer), dtype=float) for q in names], None


# ----------------------------------------------------------------------------------------------
# the sequential plan
# ----------------------------------------------------------------------------------------------

def _engine_kind(scheme: InitScheme, engine: str) -> str:
    if engine == "dense":
        return "dense"
    if engine == "gaussian":
        return "gaussian"
    return "gaussian" if scheme.is_gaussian else "dense"


def default_budget(scheme: InitScheme, widths: Sequence[int], engine: str = "auto") -> int:
    """Default maximum number of replicates: a fixed amount of simulation work (a few seconds on
    one core), between 1024 and 2**18 replicates."""
    kind = _engine_kind(scheme, engine)
    if kind == "gaussian":
        work = 3.0 * sum(widths)
    else:
        work = float(sum(a * b for a, b in zip(widths, widths[1:]))) + sum(widths)
    budget = int(_WORK_BUDGET[kind] / max(work, 1.0))
    return int(min(_MAX_REPLICATES, max(_MIN_BUDGET, budget)))


def _check_size(scheme: InitScheme, widths: Sequence[int], engine: str, replicates: int,
                dtype: str, name: str) -> None:
    """Refuse up front a plan whose simulations exceed the Monte Carlo engine's memory or time
    limits (:func:`varprop.simulation.montecarlo.resource_estimate`), naming ``budget``/``replicates``."""
    from varprop.simulation.montecarlo import _check_resources, _gaussian_pays

    ws = tuple(widths)
    kind = _engine_kind(scheme, engine)
    if engine == "auto" and kind == "gaussian" and not _gaussian_pays(ws, 1):
        kind = "dense"
    _check_resources(kind, ws, 1, replicates, np.dtype(dtype).itemsize, name=name)


def _look_sizes(replicates: int | None, budget: int, first: int = _FIRST_LOOK) -> list[int]:
    """Cumulative replicate counts at each look."""
    if replicates is not None:
        return [replicates]
    sizes = [min(first, budget)]
    while sizes[-1] < budget:
        sizes.append(min(2 * sizes[-1], budget))
    return sizes


def _look_seed(seed: int, look: int, salt: int = 0) -> int:
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(salt, look))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _p_values(iv: _stats.MeanInterval, theta0: float, scale: float, tol: float, rtol: float,
              looks: int) -> tuple[float, float, float, float]:
    """(p_refute, p_tost_lower, p_tost_upper, p_tost_allowance), two-sided-equivalent and
    adjusted over looks."""
    def adj(p: float) -> float:
        return float(min(1.0, 2.0 * looks * p))

    with np.errstate(over="ignore"):  # a margin beyond the float range is +-inf: p is 0 or 1
        up_tol, lo_tol = theta0 + tol * scale, theta0 - tol * scale
        up_r, lo_r = theta0 + rtol * scale, theta0 - rtol * scale
    # refutation: evidence that theta > theta0 + tol*scale or theta < theta0 - tol*scale
    p_ref = min(iv.p_greater(up_tol), iv.p_less(lo_tol))
    p_low = iv.p_greater(lo_r)   # H0: r <= -rtol
    p_up = iv.p_less(up_r)       # H0: r >= +rtol
    p_allow = max(iv.p_greater(lo_tol), iv.p_less(up_tol))  # H0: |r| >= tol
    return adj(p_ref), adj(p_low), adj(p_up), adj(p_allow)


@dataclass
class _Outcome:
    status: str
    reason: str
    iv: _stats.MeanInterval | None
    replicates: int
    looks: int
    planned: int
    heavy: bool
    within: bool = False


def _sequential(draw: Callable[[int, int], tuple[list[np.ndarray], str | None]], kind: str,
                theta0: float, scale: float, tol: float, rtol: float, alpha: float,
                sizes: list[int], seed: int, skewness_floor: float = 0.0,
                relative: bool = True) -> _Outcome:
    """Run the looks; ``draw(n_new, look)`` returns new replicate columns.  ``skewness_floor`` is
    a known lower bound of the replicate statistic's skewness (for the heavy-tail guard);
    ``relative``: the margins are relative (else absolute, for a zero prediction)."""
    K = len(sizes)
    a_k = alpha / K
    cols: list[np.ndarray] | None = None
    done = 0
    iv = None
    budget = sizes[-1]
    previous: tuple[int, float] | None = None  # (replicates, skewness) of the previous look
    for k, target_n in enumerate(sizes):
        new, err = draw(target_n - done, k)
        if err is not None:
            return _Outcome("inconclusive", err, iv, done, k, K, False)
        cols = new if cols is None else [np.concatenate([c, n]) for c, n in zip(cols, new)]
        done = target_n
        rng = np.random.default_rng([seed, 104729, k])
        if kind == "variance":
            iv = _stats.variance_interval(cols[0], cols[1], a_k, rng=rng)
        else:
            iv = _stats.mean_interval(cols[0], a_k, rng=rng, guard_skewness=skewness_floor)
        r_hat, lo, hi = _relative(iv, theta0, scale)
        final = k == K - 1
        status, within, reason = _decision(r_hat, lo, hi, tol, rtol, relative, final, done,
                                           budget, K)
        if iv.heavy_tailed:
            if final:
                x = cols[-1] if kind == "variance" else cols[0]
                verdict = status + (" within the allowance" if within else "")
                reason = _heavy_reason(iv, x, done, budget, verdict, K > 1, previous)
                return _Outcome("inconclusive", reason, iv, done, K, K, True)
            previous = (done, iv.skewness)
            continue
        if status != "inconclusive" or final:
            return _Outcome(status, reason, iv, done, k + 1, K, False, within)
        previous = (done, iv.skewness)
    raise AssertionError("unreachable: the last look returns")


def _verdict_from(out: _Outcome, *, theta0: float, scale: float, zero_pred: bool, tol: float,
                  rtol: float, atol: float | None, alpha: float, seed: int, quantity: str,
                  layer: int, target: str, name: str, description: str, assumptions: str,
                  exact: bool, config: dict[str, Any], t0: float) -> Verdict:
    iv = out.iv
    if iv is None:  # failed before the first look: nothing was estimated (null in JSON)
        return Verdict("inconclusive", out.reason, theta0, None, None, None, None, 1.0, 1.0,
                       1.0, out.replicates, out.looks, target, name, description, assumptions,
                       exact, tol, rtol, atol, alpha, seed, quantity, layer, config,
                       elapsed=time.perf_counter() - t0)
    p_ref, p_lo, p_up, p_allow = _p_values(iv, theta0, scale, tol, rtol, out.planned)
    if zero_pred:
        rel_iv = None
        rel_err = None
    else:
        rel_err, r_lo, r_hi = _relative(iv, theta0, scale)
        rel_iv = (r_lo, r_hi)
    return Verdict(out.status, out.reason, theta0, iv.estimate, (iv.lo, iv.hi), rel_iv, rel_err,
                   p_ref, p_lo, p_up, out.replicates, out.looks, target, name, description,
                   assumptions, exact, tol, rtol, atol, alpha, seed, quantity, layer, config,
                   iv.skewness, iv.bootstrap, out.heavy, time.perf_counter() - t0,
                   out.within, p_allow)


# ----------------------------------------------------------------------------------------------
# argument handling shared by verify / verify_step
# ----------------------------------------------------------------------------------------------

def _check_layer(layer: object, depth: int) -> int | None:
    if layer is None:
        return None
    l = check_positive_int("layer", layer) if not (isinstance(layer, int) and not isinstance(
        layer, bool) and layer < 0) else layer
    if l < 0:
        l = depth + 1 + l
    if not 1 <= l <= depth:
        raise fail("layer", layer, f"None or a layer 1..{depth} (negative counts from the end)")
    return l


def _check_common(rtol: object, alpha: object, replicates: object, seed: object, budget: object,
                  dtype: object) -> tuple[float, float, int | None, int, int | None, str]:
    rtol_f = check_probability("rtol", rtol)
    alpha_f = check_probability("alpha", alpha)
    reps = None if replicates is None else check_positive_int("replicates", replicates)
    if reps is not None and reps < 8:
        raise fail("replicates", replicates, "None (adaptive) or an integer >= 8")
    seed_i = check_nonnegative_int("seed", seed)
    bud = None if budget is None else check_positive_int("budget", budget)
    if bud is not None and bud < 8:
        raise fail("budget", budget, "None (default) or a number of replicates >= 8")
    dt = check_choice("dtype", dtype, ("float64", "float32"))
    return rtol_f, alpha_f, reps, seed_i, bud, dt


# ----------------------------------------------------------------------------------------------
# verify
# ----------------------------------------------------------------------------------------------

def verify(
    activation: Activation | str,
    init: InitScheme | str,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: Sequence[int] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    quantity: str = "activation",
    layer: int | None = None,
    rtol: float = 0.05,
    alpha: float = 0.01,
    predicted: float | None = None,
    replicates: int | None = None,
    seed: int = 0,
    target: Target = "ensemble",
    method: str = "auto",
    tol: float | None = None,
    atol: float | None = None,
    budget: int | None = None,
    local: bool = False,
    dtype: str = "float64",
    engine: str = "auto",
) -> Verdict:
    r"""Check a variance prediction against Monte Carlo simulation.

    Parameters
    ----------
    activation, init, fan_in, fan_out, widths, depth, input_variance, bias_variance
        The network (as in :func:`varprop.predict_variance`).
    quantity : {"preactivation", "activation", "activation_second_moment", "gradient", "weight_gradient"}
        As in :func:`~varprop.predict_variance`.
    layer : int, optional
        Layer :math:`1..L` (negative counts from the end).  ``None``: the layer
        ``predict_variance`` reports, the last for forward quantities, the first (the gradient
        at the network input, or :math:`\partial\mathcal L/\partial W_1`) for backward ones.
    rtol : float
        Relative margin for ``confirmed``: the interval for :math:`r = \theta/\theta_0 - 1` must
        lie inside :math:`\pm` ``rtol``.
    alpha : float
        Error level: P(refuted | true within ``tol``) and P(confirmed | :math:`|r| >` ``rtol``)
        are at most ``alpha`` over the whole sequential procedure.
    predicted : float, optional
        A user's claim :math:`\theta_0` (default: the library's prediction).
    replicates : int, optional
        Fixed number of replicates (one look); ``None``: adaptive doubling looks.
    seed : int
        Seeds everything (simulation of each look and the bootstrap): same seed, same verdict.
    target : {"ensemble", "unit_spread"}
        ``ensemble``: variance of one unit over networks and inputs; ``unit_spread``: the
        expected spread across the units of one network for one input (forward quantities
        ``preactivation``/``activation`` only).
    method : {"auto", "exact", "closed_form", "quadrature"}
        How the library's prediction is computed (see :func:`~varprop.predict_variance`).
    tol : float, optional
        Override the declared bound for refutation (default :func:`prediction_allowance`).
    atol : float, optional
        Absolute margin replacing ``rtol`` when :math:`\theta_0 = 0` (default ``rtol``).
    budget : int, optional
        Maximum replicates of the adaptive plan (default: a fixed amount of work, see
        :func:`default_budget`).
    local : bool
        Run the sharper one-step check :func:`verify_step` instead.
    dtype : {"float64", "float32"}
    engine : {"auto", "dense", "gaussian"}
        Passed to :func:`varprop.simulate`.

    Returns
    -------
    Verdict

    Examples
    --------
    >>> v = verify("relu", "he_normal", fan_in=64, depth=5, quantity="preactivation")
    >>> v.status
    'confirmed'
    """
    if not isinstance(local, bool):
        raise fail_type("local", local, "True or False")
    if local:
        # the one-step check tests the library's exact conditional map (mean ratio 1): a claim
        # of the caller's, another target or method, or an absolute margin has no meaning there
        for arg, value, default in (("predicted", predicted, None), ("target", target, "ensemble"),
                                    ("method", method, "auto"), ("atol", atol, None)):
            if not (value is None if default is None else (isinstance(value, str)
                                                           and value == default)):
                allowed = "left unset" if default is None else f"{default!r}"
                raise fail(arg, value, f"{allowed} with local=True (the one-step check tests "
                           "the library's conditional map, whose mean ratio is exactly 1); use "
                           "local=False to check it")
        return verify_step(activation, init, fan_in=fan_in, fan_out=fan_out, widths=widths,
                           depth=depth, input_variance=input_variance,
                           bias_variance=bias_variance, quantity=quantity, layer=layer, rtol=rtol,
                           alpha=alpha, replicates=replicates, seed=seed, tol=tol, budget=budget,
                           dtype=dtype, engine=engine)
    t0 = time.perf_counter()
    from varprop.simulation.montecarlo import simulate
    from varprop.theory.predict import predict_variance

    act = resolve_activation(activation)
    scheme = resolve_scheme(init)
    ws = check_widths(fan_in, fan_out, widths, depth)
    L = len(ws) - 1
    quantity = check_choice("quantity", quantity, QUANTITIES)
    target = check_choice("target", target, TARGETS)  # type: ignore[assignment]
    method = check_choice("method", method, METHODS)
    engine = check_choice("engine", engine, ("auto", "dense", "gaussian"))
    rtol_f, alpha_f, reps, seed_i, bud, dt = _check_common(rtol, alpha, replicates, seed, budget,
                                                           dtype)
    in_var = check_nonnegative_real("input_variance", input_variance)
    b_var = check_nonnegative_real("bias_variance", bias_variance)
    lay = _check_layer(layer, L)
    if lay is None:
        lay = 1 if quantity in _BACKWARD else L
    if target == "unit_spread":
        if quantity not in ("preactivation", "activation"):
            raise fail("quantity", quantity, "'preactivation' or 'activation' with "
                       "target='unit_spread' (the across-unit spread is a forward statistic)")
        if ws[lay] < 2:
            raise fail("target", target, f"'ensemble': layer {lay} has a single unit, so it has "
                       "no across-unit spread")
        if not scheme.is_zero_mean and predicted is None:
            raise fail("target", target, "'ensemble' for a non-zero-mean scheme, or pass your "
                       "own predicted= spread: with weight mean mu_w every unit shares the shift "
                       "mu_w * sum_j a_j, which the spread across units leaves out, so the "
                       "library's (ensemble) variance is not a prediction of it")
    user = predicted is not None
    shape = dict(widths=list(ws), input_variance=in_var, bias_variance=b_var)
    pred_kwargs = dict(widths=list(ws), depth=L, input_variance=in_var, bias_variance=b_var,
                       quantity=quantity, per_layer=True)
    if user:
        # every quantity is a variance or a second moment: a negative claim is a usage error
        theta0 = check_nonnegative_real("predicted", predicted)
    else:
        theta0 = float(np.asarray(predict_variance(act, scheme, method=method, **pred_kwargs))[lay - 1])
        if not math.isfinite(theta0):
            raise VarpropError(f"the predicted {quantity} at layer {lay} is {theta0}: beyond the "
                               "float range; nothing to check (reduce depth)")
    reference = None
    if method == "closed_form" and not user:
        reference = float(np.asarray(predict_variance(act, scheme, method="quadrature",
                                                      **pred_kwargs))[lay - 1])
    exact = is_exact(act, scheme, quantity, target=target)
    if tol is None:
        tol_f, tol_reason = prediction_allowance(
            act, scheme, widths=ws, layer=lay, quantity=quantity, method=method,
            predicted_value=theta0, reference_value=reference, target=target, dtype=dt)
    else:
        tol_f = check_nonnegative_real("tol", tol)
        tol_reason = "tol given by the caller"
    zero_pred = theta0 == 0.0
    atol_f = None
    if zero_pred:
        atol_f = rtol_f if atol is None else check_positive_real("atol", atol)
    elif atol is not None:
        check_positive_real("atol", atol)
    scale = 1.0 if zero_pred else abs(theta0)
    margin = atol_f if zero_pred else rtol_f
    kind, name, description, sim_names = _statistic_spec(act, scheme, quantity, target, ws, lay)
    backward = quantity in _BACKWARD
    n_lay = ws[lay]

    def draw(n_new: int, look: int) -> tuple[list[np.ndarray], str | None]:
        res = simulate(act, scheme, **shape, replicates=n_new, seed=_look_seed(seed_i, look),
                       dtype=dt, engine=engine)
        cols, err = _extract(res, sim_names, lay, backward)
        if err is None and kind == "spread":
            cols = [cols[0] ** 2 * (n_lay / (n_lay - 1.0))]
        return cols, err

    bud_eff = bud if bud is not None else default_budget(scheme, ws, engine)
    sizes = _look_sizes(reps, bud_eff)
    _check_size(scheme, ws, engine, sizes[-1], dt, "replicates" if reps is not None else "budget")
    out = _sequential(draw, "variance" if kind == "variance" else "mean", theta0, scale, tol_f,
                      margin, alpha_f, sizes, seed_i, relative=not zero_pred)  # type: ignore[arg-type]
    config = {"activation": repr(act), "init": repr(scheme), **shape, "method": method,
              "dtype": dt, "engine": engine, "budget": bud_eff, "tol_reason": tol_reason}
    assumptions = _assumptions(act, scheme, quantity, target, exact, method, user)
    return _verdict_from(out, theta0=theta0, scale=scale, zero_pred=zero_pred, tol=tol_f,
                         rtol=rtol_f, atol=atol_f, alpha=alpha_f, seed=seed_i, quantity=quantity,
                         layer=lay, target=target, name=name, description=description,
                         assumptions=assumptions, exact=exact, config=config, t0=t0)


# ----------------------------------------------------------------------------------------------
# the one-step (local) check
# ----------------------------------------------------------------------------------------------

def _second_moment_map(act: Activation) -> Callable[[np.ndarray], np.ndarray]:
    r""":math:`v \mapsto E[\phi(\sqrt v\, \xi)^2]`, :math:`\xi \sim N(0,1)`, vectorised over ``v``."""
    rules = act.closed_form
    if _is_linear(act):
        return lambda v: np.asarray(v, dtype=float)
    if rules is not None and rules.exact and not rules.zero_mean_only:
        import scipy.special
        import sympy as sp

        from varprop.components.activations import MU, Q
        f = sp.lambdify(Q, sp.simplify(rules.second.subs(MU, 0)),
                        modules=[{"erf": scipy.special.erf}, "numpy"])
        return lambda v: np.broadcast_to(np.asarray(f(np.asarray(v, dtype=float)), dtype=float),
                                         np.shape(v)).astype(float)

    def by_quadrature(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        lo, hi = float(v.min()), float(v.max())
        if lo <= 0 or hi / lo < 1 + 1e-12:
            uniq = np.unique(v)
            vals = {float(u): act.gaussian_moments(0.0, float(u), method="quadrature")[1]
                    for u in uniq[:64]}
            if len(uniq) <= 64:
                return np.array([vals[float(x)] for x in v])
        from scipy.interpolate import CubicSpline
        grid = np.geomspace(lo, hi, 129)
        vals = np.array([act.gaussian_moments(0.0, float(g), method="quadrature")[1] for g in grid])
        spline = CubicSpline(np.log(grid), vals)
        return spline(np.log(v))

    return by_quadrature


def verify_step(
    activation: Activation | str,
    init: InitScheme | str,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: Sequence[int] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    quantity: str = "preactivation",
    layer: int | None = None,
    rtol: float = 0.05,
    alpha: float = 0.01,
    replicates: int | None = None,
    seed: int = 0,
    tol: float | None = None,
    budget: int | None = None,
    dtype: str = "float64",
    engine: str = "auto",
) -> Verdict:
    r"""The sharper local check: test the one-step map at ``layer`` given the realised previous layer.

    For zero-mean i.i.d. weights with variance :math:`\sigma_w^2`, conditionally on the realised
    activations :math:`a_{l-1}` of a network (statistic :math:`\hat q_{l-1} = \frac{1}{n_{l-1}}
    \sum_j a_{l-1,j}^2`, averaged over the batch),

    .. math::

        E[\overline{z_l^2} \mid a_{l-1}] = v_l := \sigma_w^2 n_{l-1} \hat q_{l-1} + \sigma_b^2 ,
        \qquad
        E[\overline{a_l^2} \mid a_{l-1}] = E[\phi(\sqrt{v_l}\,\xi)^2] \ (\text{Gaussian weights}),

    and backward :math:`E[\overline{g_l^2} \mid \delta_l] = \sigma_w^2 n_l \overline{\delta_l^2}`
    when :math:`W_l` is independent of :math:`\delta_l` (the top layer, or linear nets).  So the
    replicate ratio :math:`\rho = \text{statistic} / \text{one-step prediction}` has mean exactly 1
    and coefficient of variation :math:`\approx\sqrt{2/n_l}` at any depth: this tests the map itself
    with great power, without the heavy tails of the compounded statistic.  The decision is on
    :math:`r = E\rho - 1` exactly as in :func:`verify` (``tol`` 0 where the conditional identity is
    exact, :math:`c/n_l` otherwise).

    ``quantity`` is ``"preactivation"`` (any zero-mean i.i.d. scheme: exact),
    ``"activation_second_moment"`` (exact for Gaussian weights) or ``"gradient"``.  ``layer=None``
    means the last layer (forward) or the first (``gradient``).

    Orthogonal weights (gain :math:`g`) are allowed for ``preactivation`` and ``gradient``: for a
    Haar-orthogonal :math:`W` independent of :math:`a`, :math:`E\lVert Wa\rVert^2 = g^2
    \lVert a\rVert^2 \min(n_{in}, n_{out})/n_{in}`, the same map with
    :math:`\sigma_w^2 = g^2/\max(n_{in}, n_{out})`; when :math:`n_{out} \ge n_{in}` it holds
    exactly for every draw (:math:`W^\top W = g^2 I`), so without biases the ratio is 1 with zero
    variance and is compared directly.
    """
    t0 = time.perf_counter()
    from varprop.simulation.montecarlo import simulate

    act = resolve_activation(activation)
    scheme = resolve_scheme(init)
    ws = check_widths(fan_in, fan_out, widths, depth)
    L = len(ws) - 1
    quantity = check_choice("quantity", quantity, LOCAL_QUANTITIES)
    engine = check_choice("engine", engine, ("auto", "dense", "gaussian"))
    rtol_f, alpha_f, reps, seed_i, bud, dt = _check_common(rtol, alpha, replicates, seed, budget,
                                                           dtype)
    in_var = check_nonnegative_real("input_variance", input_variance)
    b_var = check_nonnegative_real("bias_variance", bias_variance)
    lay = _check_layer(layer, L)
    if lay is None:
        lay = 1 if quantity == "gradient" else L
    orthogonal_map = scheme.distribution == "orthogonal" and quantity != "activation_second_moment"
    if not (scheme.is_zero_mean and (scheme.is_iid or orthogonal_map)):
        raise fail("init", repr(scheme), "a zero-mean i.i.d. scheme for the one-step check, or "
                   "orthogonal with quantity 'preactivation' or 'gradient' (the conditional map "
                   "of non-zero-mean weights is not a function of the previous layer's second "
                   "moment, and orthogonal pre-activations are not exactly Gaussian)")
    n_prev, n_l = ws[lay - 1], ws[lay]
    _, var_w = scheme.moments(n_prev, n_l)
    if quantity == "preactivation":
        exact = True
        name = f"E[z_{lay}^2 / (s_w^2 |a_{lay - 1}|^2 + s_b^2)]"
        description = (f"ratio of layer {lay}'s realised mean z^2 to the one-step map of layer "
                       f"{lay - 1}'s realised activations (mean exactly 1)")
    elif quantity == "activation_second_moment":
        exact = scheme.is_gaussian
        name = f"E[a_{lay}^2 / E_phi(v_{lay})]"
        description = (f"ratio of layer {lay}'s realised mean a^2 to E[phi(z)^2] with z ~ "
                       f"N(0, v), v the one-step map of layer {lay - 1}'s realised activations")
    else:
        exact = lay == L or _is_linear(act)
        name = f"E[(dL/da_{lay - 1})^2 / (s_w^2 n_{lay} |delta_{lay}|^2)]"
        description = (f"ratio of the realised mean squared gradient at layer {lay}'s input to "
                       f"the one-step map of the realised delta_{lay}")
    if tol is None:
        tol_f = _FLOAT_FLOOR[dt] + (0.0 if exact else FINITE_WIDTH_CONSTANT / n_l)
        tol_reason = ("conditional identity exact: tol = 0 (+ float floor)" if exact else
                      f"one-step allowance {FINITE_WIDTH_CONSTANT:g}/n_{lay}")
    else:
        tol_f = check_nonnegative_real("tol", tol)
        tol_reason = "tol given by the caller"
    second_map = _second_moment_map(act)
    shape = dict(widths=list(ws), input_variance=in_var, bias_variance=b_var)

    def draw(n_new: int, look: int) -> tuple[list[np.ndarray], str | None]:
        res = simulate(act, scheme, **shape, replicates=n_new, seed=_look_seed(seed_i, look, 1),
                       dtype=dt, engine=engine)
        if quantity == "gradient":
            cols, err = _extract(res, ("gradient_second", "delta_second"), lay, True)
            if err:
                return cols, err
            denom = var_w * n_l * cols[1]
            num = cols[0]
        else:
            cols, err = _extract(res, ("preactivation_second", "activation_second"), lay, False)
            if err:
                return cols, err
            if lay == 1:
                prev = res.input_second  # the realised input, not its expectation (Jensen)
            else:
                prev_cols, err = _extract(res, ("activation_second",), lay - 1, False)
                if err:
                    return prev_cols, err
                prev = prev_cols[0]
            v = var_w * n_prev * prev + b_var
            if quantity == "preactivation":
                num, denom = cols[0], v
            else:
                num, denom = cols[1], second_map(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0),
                             np.where(num == 0, 1.0, np.inf))
        if not np.all(np.isfinite(ratio)):
            return [], "a one-step prediction is 0 while the statistic is not (degenerate layer)"
        return [ratio], None

    bud_eff = bud if bud is not None else default_budget(scheme, ws, engine)
    sizes = _look_sizes(reps, bud_eff)
    _check_size(scheme, ws, engine, sizes[-1], dt, "replicates" if reps is not None else "budget")
    floor = _one_step_skewness(act, scheme, quantity, ws, lay, in_var, b_var)
    out = _sequential(draw, "mean", 1.0, 1.0, tol_f, rtol_f, alpha_f, sizes, seed_i + 1, floor)
    config = {"activation": repr(act), "init": repr(scheme), **shape, "dtype": dt,
              "engine": engine, "budget": bud_eff, "tol_reason": tol_reason}
    assumptions = ("one-step map conditional on the realised previous layer: zero-mean i.i.d. "
                   "weights" + (", Gaussian weights (z | a_{l-1} is exactly Gaussian)"
                                if quantity == "activation_second_moment" else "")
                   + (", W_l independent of delta_l (top layer or linear net)"
                      if quantity == "gradient" else "")
                   + ("; exact here" if exact else "; approximate here (allowance c/n)"))
    return _verdict_from(out, theta0=1.0, scale=1.0, zero_pred=False, tol=tol_f, rtol=rtol_f,
                         atol=None, alpha=alpha_f, seed=seed_i, quantity=quantity, layer=lay,
                         target="one_step", name=name, description=description,
                         assumptions=assumptions, exact=exact, config=config, t0=t0)


def _one_step_skewness(act: Activation, scheme: InitScheme, quantity: str, ws: tuple[int, ...],
                       lay: int, input_variance: float, bias_variance: float) -> float:
    r"""The skewness of the one-step ratio for Gaussian weights (batch 1), a floor for the guard.

    Given the previous layer, the :math:`n` units of the ratio are i.i.d.: :math:`z^2/v \sim
    \chi^2_1` (``preactivation``; ``gradient`` likewise over the :math:`n_{l-1}` input units),
    skewness :math:`\sqrt{8/n}`; for ``activation_second_moment`` the skewness of
    :math:`\phi(z)^2`, :math:`z \sim N(0, q_l)` at the mean-field :math:`q_l`, over
    :math:`\sqrt{n_l}`.  Small widths (1, 2) make the ratio strongly skewed, and its sample
    skewness at the first looks is biased low: without this floor the interval trusted 64
    replicates and refuted true maps ~5x more often than ``alpha``.
    """
    if quantity == "preactivation":
        return math.sqrt(8.0 / ws[lay])
    if quantity == "gradient":
        return math.sqrt(8.0 / ws[lay - 1])
    from varprop._math.quadrature import gaussian_expectations
    from varprop.theory.predict import propagate

    q = float(propagate(act, scheme, widths=ws, input_variance=input_variance,
                        bias_variance=bias_variance).preact_second[lay - 1])
    if not (math.isfinite(q) and q > 0):
        return 0.0
    f = act.function

    def powers(x: np.ndarray) -> np.ndarray:
        y = f(x) ** 2
        return np.stack([y, y * y, y * y * y])

    try:
        m1, m2, m3 = gaussian_expectations([powers], 0.0, q, act.kinks)[0]
    except VarpropError:
        return math.inf
    var = m2 - m1 * m1
    if not (var > 0 and math.isfinite(m3)):
        return 0.0 if var == 0 else math.inf
    return abs(m3 - 3 * m1 * var - m1**3) / var**1.5 / math.sqrt(ws[lay])


# ----------------------------------------------------------------------------------------------
# families of checks
# ----------------------------------------------------------------------------------------------

def holm(p_values: Sequence[float], alpha: float = 0.01) -> np.ndarray:
    """Holm's step-down procedure (family-wise error <= ``alpha``): True where rejected."""
    alpha_f = check_probability("alpha", alpha)
    try:
        p = np.asarray(p_values, dtype=float)
    except (TypeError, ValueError):
        raise fail_type("p_values", p_values, "a sequence of p-values") from None
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise fail("p_values", p_values, "a one-dimensional sequence of numbers in [0, 1]")
    return _stats.holm(p, alpha_f)


def config_seed(config: Mapping[str, Any], seed: int = 0) -> int:
    """A seed derived from ``seed`` and a stable hash of ``config`` (independent of ordering,
    worker count and process: CRC-32 of the sorted ``repr`` items)."""
    key = repr(sorted((str(k), repr(v)) for k, v in config.items() if k != "seed"))
    return _look_seed(seed, zlib.crc32(key.encode()), 2)


def _run_one(kwargs: dict[str, Any]) -> Verdict | str:
    try:
        kwargs = dict(kwargs)
        act = build_named("activation", kwargs.pop("activation"))
        init = build_named("init", kwargs.pop("init"))
        return verify(act, init, **kwargs)
    except VarpropError as exc:  # an impossible configuration is reported, not fatal
        return f"{type(exc).__name__}: {exc}"


def verify_many(
    configs: Iterable[Mapping[str, Any]],
    *,
    alpha: float = 0.01,
    correction: Literal["holm", "bonferroni", "none"] = "holm",
    seed: int = 0,
    executor: Executor | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> list[Verdict | str]:
    r"""Verify several configurations with family-wise error control.

    Each config is a mapping of :func:`verify` keyword arguments (``activation`` and ``init``
    required).  Each check runs at level :math:`\alpha/m` (:math:`m` configurations; its
    sequential plan stops as soon as it is decisive at that level), then Holm's step-down
    procedure is applied to the look-adjusted p-values at level :math:`\alpha`: ``refuted``
    where Holm rejects "holds within tol", else ``confirmed`` where Holm rejects "outside
    +-rtol" (TOST p-value), else ``inconclusive``.  So the probability that *any* true
    prediction is refuted is at most ``alpha``.  Heavy-tailed or failed checks take part with
    p-value 1.

    Configurations without a ``seed`` get :func:`config_seed` (``seed``, config): results do not
    depend on the executor or the number of workers.  A configuration that cannot be checked
    (e.g. its prediction overflows) yields an error string in its place.
    """
    alpha_f = check_probability("alpha", alpha)
    correction = check_choice("correction", correction, ("holm", "bonferroni", "none"))
    seed_i = check_nonnegative_int("seed", seed)
    if executor is not None and not isinstance(executor, Executor) and not hasattr(executor, "submit"):
        raise fail_type("executor", executor, "a concurrent.futures.Executor or None")
    items: list[dict[str, Any]] = []
    for i, cfg in enumerate(configs):
        if not isinstance(cfg, Mapping):
            raise fail_type(f"configs[{i}]", cfg, "a mapping of verify() keyword arguments")
        if "activation" not in cfg or "init" not in cfg:
            raise fail(f"configs[{i}]", dict(cfg), "a mapping with at least 'activation' and 'init'")
        if "alpha" in cfg:
            raise fail(f"configs[{i}]", dict(cfg), "a mapping without 'alpha': the family-wise "
                       "level is verify_many's alpha= (each check runs at its share of it)")
        items.append(dict(cfg))
    m = len(items)
    if m == 0:
        return []
    level = alpha_f / m if correction != "none" else alpha_f
    jobs = []
    for cfg in items:
        kw = dict(cfg)
        kw.setdefault("seed", config_seed(cfg, seed_i))
        kw["alpha"] = level
        jobs.append(kw)
    results: list[Verdict | str] = [""] * m
    if executor is None:
        for i, kw in enumerate(jobs):
            results[i] = _run_one(kw)
            if progress is not None:
                progress(i + 1, m)
    else:
        from concurrent.futures import as_completed
        futures = {executor.submit(_run_one, kw): i for i, kw in enumerate(jobs)}
        for done, fut in enumerate(as_completed(futures), 1):
            results[futures[fut]] = fut.result()
            if progress is not None:
                progress(done, m)
    if correction == "none":
        return results
    verdicts = [(i, v) for i, v in enumerate(results) if isinstance(v, Verdict)]
    usable = [(not v.heavy_tailed and v.replicates > 0) for _, v in verdicts]
    p_ref = [v.p_refute if ok else 1.0 for (_, v), ok in zip(verdicts, usable)]
    p_eq = [v.p_equivalence if ok else 1.0 for (_, v), ok in zip(verdicts, usable)]
    p_al = [v.p_tost_allowance if ok and v.tol > v.rtol else 1.0
            for (_, v), ok in zip(verdicts, usable)]
    # the p-values are already adjusted over looks; pad the family with failed configs (p = 1)
    pad = [1.0] * (m - len(verdicts))
    rule = _stats.holm if correction == "holm" else _stats.bonferroni
    rej_ref = rule(np.array(p_ref + pad), alpha_f)[: len(verdicts)]
    rej_eq = rule(np.array(p_eq + pad), alpha_f)[: len(verdicts)]
    rej_al = rule(np.array(p_al + pad), alpha_f)[: len(verdicts)]
    for (i, v), r_ref, r_eq, r_al, ok in zip(verdicts, rej_ref, rej_eq, rej_al, usable):
        within = False
        if not ok:
            status = "inconclusive"
        elif r_ref:
            status = "refuted"
        elif r_eq and v.status != "refuted":
            status = "confirmed"
        elif r_al and v.status == "confirmed":
            status, within = "confirmed", True
        else:
            status = "inconclusive"
        same = status == v.status and within == v.within_allowance
        reason = v.reason if same else (
            f"{v.reason}; {correction} over {m} checks gives {status}"
            + (" within the allowance" if within else ""))
        results[i] = replace(v, status=status, reason=reason, alpha=alpha_f,
                             within_allowance=within,
                             config={**dict(v.config), "family_size": m,
                                     "correction": correction})
    return results


def default_matrix(
    *,
    activations: Sequence[str] | None = None,
    inits: Sequence[str] | None = None,
    fan_ins: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    quantities: Sequence[str] | None = None,
    quick: bool = False,
    **common: Any,
) -> list[dict[str, Any]]:
    """The configurations ``varprop check`` runs: activations x init schemes x widths x depths x
    quantities (forward and backward).

    Defaults: every registered activation; the named zero-mean schemes (lecun, xavier, he,
    normal and uniform, orthogonal, torch_linear_default; not ``standard_normal`` or
    ``uniform(0, 1)``, whose variances explode with depth); widths 64 and 256 (``quick``: 64);
    depths 1 and 5 (``quick``: 3); quantities preactivation, activation, gradient.  Any name
    may be given explicitly.  ``common`` is added to every configuration (e.g. ``rtol``).
    """
    from varprop.components.activations import activation_names
    acts = list(activations) if activations else list(activation_names())
    schemes = list(inits) if inits else list(DEFAULT_INITS)
    widths_ = list(fan_ins) if fan_ins else ([64] if quick else [64, 256])
    depths_ = list(depths) if depths else ([3] if quick else [1, 5])
    qs = list(quantities) if quantities else ["preactivation", "activation", "gradient"]
    for q in qs:
        check_choice("quantity", q, QUANTITIES)
    out = []
    for a in acts:
        for s in schemes:
            for n in widths_:
                for L in depths_:
                    for q in qs:
                        out.append({"activation": a, "init": s, "fan_in": int(n), "depth": int(L),
                                    "quantity": q, **common})
    return out


DEFAULT_INITS: tuple[str, ...] = ("lecun_normal", "lecun_uniform", "xavier_normal",
                                  "xavier_uniform", "he_normal", "he_uniform", "orthogonal",
                                  "torch_linear_default")


def check_matrix(
    configs: Iterable[Mapping[str, Any]] | None = None,
    *,
    executor: Executor | None = None,
    alpha: float = 0.01,
    correction: Literal["holm", "bonferroni", "none"] = "holm",
    seed: int = 0,
    progress: Callable[[int, int], object] | None = None,
) -> list[Verdict | str]:
    """Run a matrix of checks (default :func:`default_matrix`) through an optional executor, with
    family-wise control; the engine of ``varprop check`` and :func:`varprop.sweep`.

    Results are in the order of ``configs`` and bit-identical for any executor / worker count.
    """
    cfgs = default_matrix() if configs is None else list(configs)
    return verify_many(cfgs, alpha=alpha, correction=correction, seed=seed, executor=executor,
                       progress=progress)
