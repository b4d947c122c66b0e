r"""The sequential plan of a check: looks, budgets, the engine's size limits, p-values, and the
:class:`~varprop.checking.verdict.Verdict` built from the last look.

With ``replicates=None`` the plan looks after :math:`R_0, 2R_0, 4R_0, \dots` replicates up to the
budget; with :math:`K` planned looks each look uses level :math:`\alpha/K` (Bonferroni over
looks), so the sequential error is controlled.  Each look's simulation has its own seed
(:func:`_look_seed`), so a verdict is a function of ``seed`` alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sst

from varprop._util.validation import (
    check_choice,
    check_nonnegative_int,
    check_nonnegative_real,
    check_positive_int,
    check_positive_real,
    check_probability,
    check_widths,
    fail,
)
from varprop.checking import stats as _stats
from varprop.checking.reasons import _decision, _heavy_reason, _range_reason, _relative
from varprop.checking.verdict import Verdict
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.errors import VarpropError
from varprop.network.model import Network, refuse_with_network
from varprop.network.quantities import NETWORK_QUANTITIES
from varprop.simulation.engines import (
    GAUSSIAN,
    check_resources,
    network_batch,
    network_shape,
    select_engine,
)

__all__ = ["default_budget", "network_budget", "plan_network", "planned_replicates",
           "PLAN_SAFETY", "PLAN_POWER"]

#: First look and work budgets of the adaptive plan (work = random numbers per replicate).
_FIRST_LOOK = 64
_MAX_REPLICATES = 2**18
_MIN_BUDGET = 1024
_WORK_BUDGET = {"gaussian": 1.2e8, "dense": 1.0e9, "general": 4.0e8}


def _extract(res: Any, names: Sequence[str], layer: int, backward: bool) -> tuple[list[np.ndarray], str | None]:
    """Columns at ``layer``; an error message instead if some replicate overflowed there."""
    mask_name = "gradient_valid" if backward else "valid"
    valid = np.asarray(getattr(res, mask_name))[:, layer - 1]
    if not np.all(valid):
        return [], _range_reason(res, valid, backward)
    return [np.asarray(res.per_replicate(q, layer), dtype=float) for q in names], None


def plan_network(scheme: InitScheme, widths: Sequence[int], input_variance: float = 1.0,
                 bias_variance: float = 0.0) -> Network:
    """The network a keyword-form check simulates (``Network.mlp``; the activation does not
    change the engine choice or the cost, so a linear one stands in)."""
    return Network.mlp("linear", scheme, widths=tuple(widths), input_variance=input_variance,
                       bias_variance=bias_variance)


def network_budget(net: Network, engine: str = "auto") -> int:
    r"""Default maximum number of replicates for ``net``: a fixed amount of simulation work (a
    few seconds on one core), between 1024 and 2**18 replicates.

    The engine is the one :func:`varprop.simulation.engines.select_engine` picks (the same rule
    as ``simulate(engine="auto")``); its work per replicate is taken as :math:`3\sum_l n_l` for
    the Gaussian shortcut and :math:`\sum_l n_{l-1} n_l + \sum_l n_l` for the dense engine
    (input plus every ``Dense`` output in :math:`\sum_l n_l`).
    """
    batch = network_batch(net)
    chosen = select_engine(net, engine, batch=batch)
    shape = network_shape(net)
    if chosen.name == "general":
        work = chosen.work_per_replicate(net, batch)
    elif chosen is GAUSSIAN:
        work = 3.0 * shape.width_sum
    else:
        work = float(shape.weights) + shape.width_sum
    budget = int(_WORK_BUDGET[chosen.name] / max(work, 1.0))
    return int(min(_MAX_REPLICATES, max(_MIN_BUDGET, budget)))


def default_budget(scheme: InitScheme, widths: Sequence[int], engine: str = "auto") -> int:
    """:func:`network_budget` of the dense chain with ``widths`` and ``scheme``: a fixed amount
    of simulation work (a few seconds on one core), between 1024 and 2**18 replicates."""
    return network_budget(plan_network(scheme, widths), engine)


#: Factor on the replicates the planned budget computes (the CV^2 is itself a prediction, and the
#: skewness correction and the heavy-tail guard widen small-sample intervals).
PLAN_SAFETY = 1.5
#: The probability the planned budget is meant to decide with (power of the last look).
PLAN_POWER = 0.99


def planned_replicates(rel_var: float, expected: float, tol: float, rtol: float, alpha: float,
                       cap: int, first: int = _FIRST_LOOK, *, power: float = PLAN_POWER,
                       safety: float = PLAN_SAFETY, looks: int | None = None) -> int:
    r"""The budget a check plans up front from the predicted relative variance of its replicate
    statistic (:math:`\mathrm{CV}^2 = \operatorname{Var} x / (E x)^2`, from
    :func:`varprop.predict_distribution`), at most ``cap`` (the work budget of
    :func:`network_budget`).  The one replicate formula of varprop: the checker's own plan and
    the test budget of :func:`varprop.checking.budget.planned_replicates` both call it.

    The interval for :math:`r = \theta/\theta_0 - 1` after :math:`R` replicates has half-width
    :math:`\approx z\sqrt{\mathrm{CV}^2/R}` with :math:`z` the normal quantile at
    :math:`1 - \alpha/(2K)` (:math:`K` looks: those of the adaptive schedule from ``first``, or
    ``looks``).  The check decides once the half-width is below
    the distance :math:`d` from the estimate to the margin it must clear, with the estimate
    itself :math:`z_\beta` standard errors from the expected :math:`r` (``expected``: the best
    prediction's relative difference from the claim, e.g. the 1/n shift for a mean-field claim;
    :math:`z_\beta` the normal quantile at ``power``, default :data:`PLAN_POWER` = 0.99):
    :math:`d = |r| - \text{tol}` when a refutation is expected, else :math:`\max(\text{tol},
    \text{rtol}) - |r|`.  So :math:`R = ` ``safety`` :math:`\cdot\,\mathrm{CV}^2 ((z +
    z_\beta)/d)^2` (``safety`` default :data:`PLAN_SAFETY`), solved with :math:`K` the looks of
    that budget, at least ``first``; ``cap`` when :math:`d \le 0` (the claim sits on a margin)
    or the relative variance is unknown.
    """
    if not (rel_var >= 0 and math.isfinite(rel_var)) or (rel_var == 0 and looks is None):
        return cap
    r = abs(expected)
    d = r - tol if r > tol else max(tol, rtol) - r
    if not d > 0:
        return cap
    z_power = float(_sst.norm.isf(1.0 - power))
    budget = first
    for _ in range(64):
        k = looks if looks is not None else len(_look_sizes(None, budget, first))
        z = float(_sst.norm.isf(alpha / (2.0 * k)))
        need = math.ceil(safety * rel_var * ((z + z_power) / d) ** 2)
        if need <= budget:
            break
        budget = need
        if budget >= cap:
            return cap
    return int(min(cap, max(first, budget)))


def _check_size(net: Network, engine: str, replicates: int, dtype: str, name: str) -> None:
    """Refuse up front a plan whose simulations exceed the Monte Carlo engine's memory or time
    limits (:func:`varprop.simulation.engines.check_resources` on the engine ``simulate`` would
    choose), naming ``budget``/``replicates``."""
    batch = network_batch(net)
    check_resources(net, select_engine(net, engine, batch=batch), replicates, batch=batch,
                    dtype=dtype, name=name)


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
                relative: bool = True,
                interval: Callable[[list[np.ndarray], float, np.random.Generator], Any] | None
                = None, confirm_within: bool = True) -> _Outcome:
    """Run the looks; ``draw(n_new, look)`` returns new replicate columns.  ``skewness_floor`` is
    a known lower bound of the replicate statistic's skewness (for the heavy-tail guard);
    ``relative``: the margins are relative (else absolute, for a zero prediction);
    ``interval(columns, level, rng)``, if given, replaces the mean interval (the distributional
    targets: a quantile's or a CV^2's interval with the same interface); ``confirm_within``:
    whether the allowance ``tol`` may confirm (``reasons._decision``)."""
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
        if interval is not None:
            iv = interval(cols, a_k, rng)
        elif kind == "variance":
            iv = _stats.variance_interval(cols[0], cols[1], a_k, rng=rng)
        else:
            iv = _stats.mean_interval(cols[0], a_k, rng=rng, guard_skewness=skewness_floor)
        r_hat, lo, hi = _relative(iv, theta0, scale)
        final = k == K - 1
        status, within, reason = _decision(r_hat, lo, hi, tol, rtol, relative, final, done,
                                           budget, K, confirm_within)
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



@dataclass(frozen=True)
class _Subject:
    """What a check is about: the ``Network`` given (``None`` for the keyword form) and, for an
    MLP-shaped network or the keyword form, its activation, scheme and widths (``None`` else)."""

    net: Network | None
    act: Activation | None
    scheme: InitScheme | None
    widths: tuple[int, ...] | None
    input_variance: object
    bias_variance: object

    def network(self) -> Network:
        """The network checked: the one given, or ``Network.mlp`` of the keyword form."""
        if self.net is not None:
            return self.net
        return Network.mlp(self.act, self.scheme, widths=self.widths,  # type: ignore[arg-type]
                           input_variance=self.input_variance,  # type: ignore[arg-type]
                           bias_variance=self.bias_variance)  # type: ignore[arg-type]

    def mlp(self, quantity: str) -> tuple[Activation, InitScheme, tuple[int, ...]]:
        """``(activation, scheme, widths)`` for an MLP quantity; an error naming ``quantity``
        for a network that is not a dense chain."""
        if self.act is None or self.scheme is None or self.widths is None:
            raise fail("quantity", quantity, f"one of {list(NETWORK_QUANTITIES)} for a network "
                       "that is not a dense chain (the MLP quantities name the l-th dense layer)")
        return self.act, self.scheme, self.widths


_SHAPE_DEFAULTS = (("init", None), ("fan_in", None), ("fan_out", None), ("widths", None),
                   ("depth", 1), ("input_variance", 1.0), ("bias_variance", 0.0))


def _subject(activation: object, init: object, **shape: Any) -> _Subject:
    """The subject of :func:`verify` / :func:`verify_step`: a :class:`~varprop.Network` as first
    argument (then ``init`` and the shape keywords stay unset), or the keyword form (activation,
    init and shape as in :func:`varprop.predict_variance`, which is ``Network.mlp``)."""
    if isinstance(activation, Network):
        refuse_with_network({"init": (init, None),
                             **{name: (shape[name], default) for name, default in _SHAPE_DEFAULTS
                                if name != "init"}})
        net = activation
        mlp = net.as_mlp()
        if mlp is None:
            return _Subject(net, None, None, None, net.input_variance, 0.0)
        ws = mlp.explicit if mlp.explicit is not None else check_widths(mlp.n0, mlp.n, None,
                                                                        mlp.depth)
        return _Subject(net, mlp.activation, mlp.init, ws, mlp.input_variance, mlp.bias_variance)
    if init is None:
        raise fail("init", init, "an init scheme (a name such as 'he_normal', or "
                   "varprop.init_scheme(...)) after an activation, or a Network as the first "
                   "argument")
    act = resolve_activation(activation)  # type: ignore[arg-type]
    scheme = resolve_scheme(init)  # type: ignore[arg-type]
    ws = check_widths(shape["fan_in"], shape["fan_out"], shape["widths"], shape["depth"])
    return _Subject(None, act, scheme, ws, shape["input_variance"], shape["bias_variance"])


def _margins(theta0: float, rtol: float, atol: object) -> tuple[bool, float | None, float, float]:
    """``(zero_pred, atol, scale, margin)``: a zero prediction is judged on absolute margins
    (``atol``, default ``rtol``), any other relative to :math:`|\\theta_0|`; ``atol`` is
    validated either way."""
    zero_pred = theta0 == 0.0
    atol_f = None
    if zero_pred:
        atol_f = rtol if atol is None else check_positive_real("atol", atol)
    elif atol is not None:
        check_positive_real("atol", atol)
    scale = 1.0 if zero_pred else abs(theta0)
    return zero_pred, atol_f, scale, (atol_f if atol_f is not None else rtol)


def _claim(predicted: object, predict: Callable[[str], float], method: str,
           where: str) -> tuple[float, float | None, bool]:
    """``(theta0, reference, user)``: the caller's claim ``predicted`` (a variance or second
    moment: non-negative), else the library's ``predict(method)`` -- refused beyond the float
    range -- with the quadrature ``reference`` of a ``closed_form`` prediction."""
    if predicted is not None:
        # every quantity is a variance or a second moment: a negative claim is a usage error
        return check_nonnegative_real("predicted", predicted), None, True
    theta0 = predict(method)
    if not math.isfinite(theta0):
        raise VarpropError(f"the predicted {where} is {theta0}: beyond the float range; nothing "
                           "to check (reduce depth)")
    return theta0, (predict("quadrature") if method == "closed_form" else None), False
