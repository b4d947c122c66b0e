r"""The distributional targets of :func:`varprop.verify`: a quantile (``target="quantile"``, with
``p``) and the :math:`\mathrm{CV}^2` (``target="cv2"``) of one network's statistic, against
:func:`varprop.predict_distribution`.

The replicate statistic is one network's value for one input (``simulate(..., batch=1)``):
``"mean_square"`` is ``preactivation_second`` / ``activation_second`` / ``gradient_second`` at the
layer, ``"unit_std"`` is ``*_unit_std`` (``ddof=0``; times :math:`\sqrt{n/(n-1)}` for
``ddof=1``), ``"log_mean_square"`` the logarithm of the mean square (its quantiles are those of the
mean square, logged: the check runs on the mean square with :math:`\theta_0 = e^{Q_p}`).  The
interval of the estimand is distribution-free for a quantile and a log-scale delta method for the
:math:`\mathrm{CV}^2` (:mod:`varprop.checking.distribution_stats`); looks, margins and the
decision are those of :func:`varprop.verify` (relative :math:`r = \theta/\theta_0 - 1`).

Allowance (:func:`distribution_allowance`):

* exact laws (``Distribution.method == "exact"``: linear and ReLU-class nets with Gaussian
  weights): :math:`10^{-3}` for a quantile (the numerical inversion of the exact CDF),
  :math:`10^{-6}` for the :math:`\mathrm{CV}^2` (closed form);
* exact moments with a fitted law (degree-1 homogeneous nets, any other method): the
  :math:`\mathrm{CV}^2` as exact, a quantile :math:`c_s\,\mathrm{CV}^2` for the shape of the
  fitted law;
* the 1/n expansion (every other activation; :math:`\rho` of
  :meth:`~varprop.theory.finite.expansion.FiniteWidthMoments.expansion_size`): :math:`\mathrm{CV}^2` relative error
  :math:`c_d\rho + 0.05`, a quantile :math:`c\rho^2 + \tfrac12 (c_d\rho + 0.05)
  |Q_p/\mu - 1| + c_s\,\mathrm{CV}^2` (mean, spread and shape of the fitted law);
* out of the expansion's regime, or without an expansion (backward quantities): a broad
  allowance of 100%, and the reason says the claim is not decidable by the expansion.

The constants are calibrated in :data:`CV2_CONSTANT` and :data:`SHAPE_CONSTANT`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from varprop._util.validation import (
    check_choice,
    check_nonnegative_real,
    check_probability,
    fail,
)
from varprop.checking.allowance import is_exact
from varprop.checking.distribution_stats import (
    cv2_interval,
    lognormal_influence_skewness,
    quantile_interval,
)
from varprop.checking.next_order import NEXT_ORDER_CONSTANT, finite_width_case
from varprop.checking.plan import (
    _check_size,
    _extract,
    _look_seed,
    _look_sizes,
    _margins,
    _Outcome,
    _sequential,
    _verdict_from,
    network_budget,
    plan_network,
)
from varprop.checking.stats import replicates_needed
from varprop.checking.verdict import Verdict
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.errors import VarpropError, VarpropWarning
from varprop.simulation.montecarlo import simulate
from varprop.theory.finite.statistics import predict_distribution

__all__ = ["DISTRIBUTION_TARGETS", "STATISTICS", "DIST_QUANTITIES", "CV2_CONSTANT",
           "CV2_FLOOR", "SHAPE_CONSTANT", "BROAD_ALLOWANCE", "distribution_allowance",
           "verify_distribution", "replicate_cv2"]

#: The distributional targets of :func:`varprop.verify`.
DISTRIBUTION_TARGETS: tuple[str, ...] = ("quantile", "cv2")
#: The per-network statistics (as :func:`varprop.predict_distribution`).
STATISTICS: tuple[str, ...] = ("mean_square", "unit_std", "log_mean_square")
#: The quantities whose per-network statistic is checked.
DIST_QUANTITIES: tuple[str, ...] = ("preactivation", "activation", "gradient")
#: :math:`c_d`: relative error of the 1/n :math:`\mathrm{CV}^2` per unit of :math:`\rho`.
#: Calibrated with the Monte Carlo of :mod:`varprop.theory.finite.expansion` (448 cases with
#: :math:`\rho \le 0.75`, per-network :math:`\overline{z_l^2}` and :math:`\overline{a_l^2}`): the
#: largest :math:`(|\widehat{\mathrm{CV}^2}/\mathrm{CV}^2_{1/n} - 1| - 3\,se)/\rho` was 0.55 (gelu,
#: width 8, layer 1: +18% at :math:`\rho = 0.25`), then 0.46, 0.46 (gelu), 0.37 (erf width 16 depth
#: 20: -22% at :math:`\rho = 0.55`); :math:`c_d = 1` keeps a margin near 2.  :data:`CV2_FLOOR`
#: covers the :math:`O(1/n)` relative error left where :math:`\rho` is tiny (erf width 1024 depth
#: 50: -9.5% +- 2.9%).
CV2_CONSTANT = 1.0
CV2_FLOOR = 0.05
#: :math:`c_s`: quantile error of the fitted law per unit of the statistic's
#: :math:`\mathrm{CV}^2`.  Calibrated with a from-scratch NumPy Monte Carlo (Gaussian shortcut;
#: tanh, erf, sigmoid with ``xavier_normal``, selu with ``lecun_normal``; widths 8, 32, 128, 512;
#: depths 1 to 100; 1953 to 40000 networks): over 970 quantiles (:math:`p` = 0.05, 0.1, 0.5, 0.9,
#: 0.95 of :math:`\overline{z_l^2}` and :math:`\overline{a_l^2}`, cases in the expansion's
#: regime) the largest :math:`(|\hat Q/Q - 1| - \text{mean and spread terms} - 3\,se)/
#: \mathrm{CV}^2` was 0.60 (erf, width 8, layer 1, :math:`p = 0.05`: :math:`-19.1\% \pm
#: 0.35\%` at :math:`\mathrm{CV}^2 = 0.119`: the activation's mean square is bounded, its lower
#: tail shorter than the log-normal's), then 0.56 (tanh, the same case) and 0.55; :math:`c_s =
#: 1.2` keeps a margin of 2.
SHAPE_CONSTANT = 1.2
#: Allowance where the expansion does not decide a distributional claim.
BROAD_ALLOWANCE = 1.0
_EXACT_QUANTILE = 1e-3
_EXACT_CV2 = 1e-6

_SIM_NAME = {("preactivation", "mean_square"): "preactivation_second",
             ("activation", "mean_square"): "activation_second",
             ("gradient", "mean_square"): "gradient_second",
             ("preactivation", "unit_std"): "preactivation_unit_std",
             ("activation", "unit_std"): "activation_unit_std"}
_EXPANSION_QUANTITY = {"preactivation": "preactivation", "activation": "activation_second_moment",
                       "gradient": "gradient"}


def distribution_allowance(act: Activation, scheme: InitScheme, dist: Any, *, target: str,
                           theta0: float, moments: Any, widths: Sequence[int], layer: int,
                           quantity: str, input_variance: float, bias_variance: float
                           ) -> tuple[float, str]:
    r"""``(tol, reason)`` of a distributional claim (module docstring).  ``dist`` is the
    predicted law, ``moments`` the law of the statistic whose mean and :math:`\mathrm{CV}^2`
    scale the allowance (the mean square's for ``log_mean_square``)."""
    method = str(getattr(dist, "method", ""))
    if method == "exact":
        tol = _EXACT_QUANTILE if target == "quantile" else _EXACT_CV2
        return tol, f"exact law (method 'exact'): numerical tolerance {tol:g}"
    cv2 = float(moments.cv2)
    shape = SHAPE_CONSTANT * cv2
    if is_exact(act, scheme, "preactivation") and quantity != "gradient" and \
            getattr(dist, "statistic", "mean_square") != "unit_std":
        if target == "cv2":
            return _EXACT_CV2, f"exact moments (method {method!r}): tolerance {_EXACT_CV2:g}"
        return shape, (f"exact moments, quantile of the fitted law (method {method!r}): shape "
                       f"allowance {SHAPE_CONSTANT:g} * CV^2 = {shape:.3g}")
    case, why = finite_width_case(act, scheme, widths=widths, layer=layer,
                                  quantity=_EXPANSION_QUANTITY[quantity],
                                  input_variance=input_variance, bias_variance=bias_variance)
    if case is None or not case.in_regime:
        head = case.describe() if case is not None else f"no 1/n expansion for {why}"
        return BROAD_ALLOWANCE, (f"{head}; not decidable by the expansion: broad allowance "
                                 f"{100 * BROAD_ALLOWANCE:g}%")
    spread_err = CV2_CONSTANT * case.rho + CV2_FLOOR
    if target == "cv2":
        return spread_err, (f"1/n law (method {method!r}, rho = {case.rho:.3g}): CV^2 allowance "
                            f"{CV2_CONSTANT:g} * rho + {CV2_FLOOR:g} = {spread_err:.3g}")
    mean = float(moments.mean)
    deviation = abs(theta0 / mean - 1.0) if mean > 0 else 1.0
    tol = NEXT_ORDER_CONSTANT * case.rho ** 2 + 0.5 * spread_err * deviation + shape
    return tol, (f"1/n law (method {method!r}, rho = {case.rho:.3g}): mean {NEXT_ORDER_CONSTANT:g}"
                 f" * rho^2 + spread {spread_err:.3g}/2 * |Q/mean - 1| ({deviation:.3g}) + shape "
                 f"{SHAPE_CONSTANT:g} * CV^2 ({cv2:.3g}) = {tol:.3g}")


_REPLICATE_QUANTITY = {"preactivation": "preactivation", "activation": "activation",
                       "activation_second_moment": "activation", "gradient": "gradient"}


def replicate_cv2(act: Activation, scheme: InitScheme, ws: Sequence[int], *, quantity: str,
                  layer: int, input_variance: float, bias_variance: float,
                  in_range: bool = False) -> float | None:
    r"""The predicted :math:`\mathrm{CV}^2` over networks of the replicate statistic of an
    ensemble check of ``quantity`` (one network's mean square for one input:
    ``predict_distribution(statistic="mean_square").cv2``), or ``None`` where there is no
    prediction (the weight gradient, non-zero-mean or orthogonal weights, ...) and, with
    ``in_range``, where the 1/n expansion is outside its range (``Distribution.order`` says so:
    there its :math:`\mathrm{CV}^2` may be off by a factor 2 or more, e.g. 3.5 predicted, 1.3
    simulated for :math:`E a^2` of tanh at width 32, depth 50)."""
    name = _REPLICATE_QUANTITY.get(quantity)
    if name is None:
        return None
    try:
        with warnings.catch_warnings():
            if in_range:
                warnings.simplefilter("ignore", VarpropWarning)
            dist = predict_distribution(act, scheme, widths=list(ws), depth=len(ws) - 1,
                                        input_variance=input_variance,
                                        bias_variance=bias_variance, statistic="mean_square",
                                        quantity=name, layer=layer)
        cv2 = float(dist.cv2)
    except (VarpropError, ArithmeticError, ValueError):
        return None
    if in_range and "outside the expansion's range" in dist.order:
        return None
    return cv2 if math.isfinite(cv2) and cv2 > 0 else None


def _check_target_args(target: str, p: object, statistic: object, ddof: object, quantity: str
                       ) -> tuple[float | None, str, int]:
    stat = check_choice("statistic", statistic, STATISTICS)
    if quantity not in DIST_QUANTITIES:
        raise fail("quantity", quantity, f"one of {list(DIST_QUANTITIES)} with "
                   f"target={target!r} (the per-network statistics of predict_distribution)")
    if isinstance(ddof, bool) or ddof not in (0, 1):
        raise fail("ddof", ddof, "0 or 1")
    if target == "quantile":
        if p is None:
            raise fail("p", p, "a probability in (0, 1) with target='quantile'")
        p_f = check_probability("p", p)
    else:
        if p is not None:
            raise fail("p", p, "None unless target='quantile'")
        p_f = None
        if stat == "log_mean_square":
            raise fail("statistic", stat, "'mean_square' or 'unit_std' with target='cv2' (the "
                       "CV^2 of a logarithm is not scale-free: its mean can be 0)")
    if stat == "unit_std" and quantity == "gradient":
        raise fail("statistic", stat, "'mean_square' or 'log_mean_square' for the gradient "
                   "(the simulation records the across-unit std of the forward pass only)")
    if stat != "unit_std" and ddof != 0:
        raise fail("ddof", ddof, "0 unless statistic='unit_std'")
    return p_f, stat, int(ddof)  # type: ignore[arg-type]


def verify_distribution(act: Activation, scheme: InitScheme, ws: tuple[int, ...], *,
                        input_variance: float, bias_variance: float, target: str, p: object,
                        statistic: object, ddof: object, quantity: str, layer: int | None,
                        rtol_f: float, alpha_f: float, predicted: object, reps: int | None,
                        seed_i: int, tol: object, bud: int | None, dt: str, engine: str,
                        t0: float) -> Verdict:
    """:func:`varprop.verify` for ``target`` in :data:`DISTRIBUTION_TARGETS` (the common
    arguments already validated by it)."""
    p_f, stat, dd = _check_target_args(target, p, statistic, ddof, quantity)
    L = len(ws) - 1
    lay = layer if layer is not None else (1 if quantity == "gradient" else L)
    n_lay = ws[lay - 1] if quantity == "gradient" else ws[lay]
    if stat == "unit_std" and n_lay < 2 + dd:
        raise fail("statistic", stat, f"'mean_square': layer {lay} has {n_lay} unit(s)")
    shape = dict(widths=list(ws), depth=L, input_variance=input_variance,
                 bias_variance=bias_variance, quantity=quantity, layer=lay)
    dist = predict_distribution(act, scheme, statistic=stat, ddof=dd, **shape)
    moments = dist if stat != "log_mean_square" else predict_distribution(
        act, scheme, statistic="mean_square", **shape)
    if target == "quantile":
        claim = float(dist.quantile(p_f))
        library = math.exp(claim) if stat == "log_mean_square" else claim
    else:
        library = float(dist.cv2)
    user = predicted is not None
    if user:
        value = float(predicted)  # type: ignore[arg-type]
        if not math.isfinite(value) or (stat != "log_mean_square" and value < 0):
            raise fail("predicted", predicted, "a finite value (non-negative for this statistic)")
        theta0 = math.exp(value) if stat == "log_mean_square" else value
    else:
        theta0 = library
    if tol is None:
        tol_f, tol_reason = distribution_allowance(
            act, scheme, dist, target=target, theta0=theta0, moments=moments, widths=ws,
            layer=lay, quantity=quantity, input_variance=input_variance,
            bias_variance=bias_variance)
    else:
        tol_f, tol_reason = check_nonnegative_real("tol", tol), "tol given by the caller"
    zero_pred, atol_f, scale, margin = _margins(theta0, rtol_f, None)
    sim = _SIM_NAME[(quantity, "unit_std" if stat == "unit_std" else "mean_square")]
    factor = math.sqrt(n_lay / (n_lay - 1.0)) if (stat == "unit_std" and dd == 1) else 1.0
    backward = quantity == "gradient"

    def draw(n_new: int, look: int) -> tuple[list[np.ndarray], str | None]:
        res = simulate(act, scheme, widths=list(ws), input_variance=input_variance,
                       bias_variance=bias_variance, replicates=n_new, batch=1,
                       seed=_look_seed(seed_i, look, salt=7), dtype=dt, engine=engine,
                       backward=backward)
        cols, err = _extract(res, (sim,), lay, backward)
        return ([cols[0] * factor] if err is None else cols), err

    guard = lognormal_influence_skewness(theta0) if target == "cv2" else 0.0

    def interval(cols: list[np.ndarray], a: float, rng: np.random.Generator) -> Any:
        if target == "quantile":
            return quantile_interval(cols[0], p_f, a)  # type: ignore[arg-type]
        return cv2_interval(cols[0], a, rng=rng, guard_skewness=guard)

    sim_net = plan_network(scheme, ws, input_variance, bias_variance)
    bud_eff = bud if bud is not None else network_budget(sim_net, engine)
    sizes = _look_sizes(reps, bud_eff)
    _check_size(sim_net, engine, sizes[-1], dt, "replicates" if reps is not None else "budget")
    need = replicates_needed(guard)
    if need > sizes[-1]:
        # the claimed law's tails make a sample CV^2 untrustworthy at any affordable budget
        out = _Outcome("inconclusive", (
            f"heavy-tailed: under the claimed CV^2 {theta0:.4g} (log-normal tails) the influence "
            f"values of the sample CV^2 have skewness {guard:.3g}, so the interval needs "
            f"{need:.3g} replicates by Cochran's rule (25 skewness^2) and the budget is "
            f"{sizes[-1]}: not simulated (check a quantile, target='quantile', instead)"),
            None, 0, 0, len(sizes), True)
    else:
        out = _sequential(draw, "mean", theta0, scale, tol_f, margin, alpha_f, sizes, seed_i,
                          relative=not zero_pred, interval=interval)
    sym = {"preactivation": "z", "activation": "a", "gradient": "dL/da"}[quantity]
    where = f"{sym}_{lay - 1 if backward else lay}"
    stat_name = {"mean_square": f"mean_square({where})", "unit_std": f"unit_std({where})",
                 "log_mean_square": f"mean_square({where})"}[stat]
    name = (f"Q_{p_f:g}[{stat_name}]" if target == "quantile" else f"CV^2[{stat_name}]")
    what = (f"the {p_f:g}-quantile" if target == "quantile" else "the CV^2 (variance / mean^2)")
    log_note = ("; log_mean_square checked as exp(Q) on the mean square"
                if stat == "log_mean_square" else "")
    description = (f"{what} "
                   f"over networks of one network's {stat.replace('_', ' ')} of {where} for one "
                   f"input (statistic {sim}{', ddof=1' if factor != 1.0 else ''}"
                   f"{log_note})")
    exact = str(getattr(dist, "method", "")) == "exact"
    who = ("user-supplied prediction judged against" if user else
           f"library prediction (predict_distribution, method {getattr(dist, 'method', '?')!r}),")
    assumptions = (f"{who} the law of one network's statistic; inputs i.i.d. N(0, "
                   f"input_variance), biases N(0, bias_variance); "
                   + str(getattr(dist, "order", "")))
    config = {"activation": repr(act), "init": repr(scheme), "widths": list(ws),
              "input_variance": input_variance, "bias_variance": bias_variance, "dtype": dt,
              "engine": engine, "budget": bud_eff, "tol_reason": tol_reason, "p": p_f,
              "statistic": stat, "ddof": dd, "method": str(getattr(dist, "method", ""))}
    return _verdict_from(out, theta0=theta0, scale=scale, zero_pred=zero_pred, tol=tol_f,
                         rtol=rtol_f, atol=atol_f, alpha=alpha_f, seed=seed_i, quantity=quantity,
                         layer=lay, target=target, name=name, description=description,
                         assumptions=assumptions, exact=exact, config=config, t0=t0)
