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

import dataclasses
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np

from varprop._util.validation import (
    check_choice,
    check_nonnegative_real,
    fail,
    fail_type,
)
from varprop.checking.allowance import _assumptions, is_exact, prediction_allowance
from varprop.checking.distribution_check import (
    DISTRIBUTION_TARGETS,
    replicate_cv2,
    verify_distribution,
)
from varprop.checking.next_order import finite_width_case, refutation_note
from varprop.checking.outputs import OUTPUT_QUANTITIES, verify_outputs
from varprop.checking.plan import (
    _check_common,
    _check_layer,
    _check_size,
    _claim,
    _extract,
    _look_seed,
    _look_sizes,
    _margins,
    _sequential,
    _subject,
    _verdict_from,
    network_budget,
    plan_network,
    planned_replicates,
)
from varprop.checking.step import verify_step
from varprop.checking.verdict import Verdict
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.network.model import Network, default_quantity
from varprop.network.quantities import BACKWARD as _BACKWARD
from varprop.network.quantities import QUANTITIES
from varprop.simulation.montecarlo import simulate
from varprop.theory.predict import predict_variance

__all__ = ["verify", "METHODS", "TARGETS"]

Target = Literal["ensemble", "unit_spread", "quantile", "cv2"]
METHODS: tuple[str, ...] = ("auto", "exact", "closed_form", "quadrature")
TARGETS: tuple[str, ...] = ("ensemble", "unit_spread", *DISTRIBUTION_TARGETS)


#: The least budget a planned check gets: the heavy-tail guard needs 25 skewness^2 replicates
#: (Cochran's rule) before it trusts an interval, which the CV^2 alone does not plan for (ReLU
#: preactivation at width 64, depth 5: skewness 2.7 needs 183, the CV^2 planned 164, and a claim
#: 50% off came out "inconclusive (heavy-tailed)").
PLAN_FLOOR = 1024

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
        if zero_mean and act.traits.linear:
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



def verify(
    activation: Network | Activation | str,
    init: InitScheme | str | None = None,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: Sequence[int] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    quantity: str | None = None,
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
    finite_width: bool = False,
    p: float | None = None,
    statistic: str = "mean_square",
    ddof: int = 0,
) -> Verdict:
    r"""Check a variance prediction against Monte Carlo simulation.

    Parameters
    ----------
    activation : Network, str or Activation
        A :class:`~varprop.Network` (then ``init`` and the shape arguments stay unset: the
        network carries them), or the activation of the keyword form.
    init, fan_in, fan_out, widths, depth, input_variance, bias_variance
        The keyword form (as in :func:`varprop.predict_variance`): exactly
        ``Network.mlp(activation, init, ...)``, with bit-identical verdicts.
    quantity : {"preactivation", "activation", "activation_second_moment", "gradient", "weight_gradient", "output", "output_gradient"}
        As in :func:`~varprop.predict_variance`.  The MLP quantities need an MLP-shaped network
        (``net.as_mlp()``; "layer l" is the l-th dense layer); ``"output"`` (second moment of a
        layer's output) and ``"output_gradient"`` (of the loss gradient with respect to it) work
        for any network, per layer position (:mod:`varprop.checking.outputs`).
    layer : int, optional
        Layer :math:`1..L` (negative counts from the end).  ``None``: the layer
        ``predict_variance`` reports, the last for forward quantities, the first (the gradient
        at the network input, or :math:`\partial\mathcal L/\partial W_1`) for backward ones.
        For ``"output"``/``"output_gradient"``: a layer position :math:`1..P` (``None``: the
        last for ``"output"``, the first for ``"output_gradient"``).
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
    target : {"ensemble", "unit_spread", "quantile", "cv2"}
        ``ensemble``: variance of one unit over networks and inputs; ``unit_spread``: the
        expected spread across the units of one network for one input (forward quantities
        ``preactivation``/``activation`` only).  ``quantile`` (with ``p``) and ``cv2``: the
        law over networks of one network's ``statistic`` for one input, against
        :func:`varprop.predict_distribution` (quantities ``preactivation``, ``activation``,
        ``gradient``; :mod:`varprop.checking.distribution_check`): a quantile through a
        distribution-free order-statistic interval, the :math:`\mathrm{CV}^2` through a
        log-scale delta-method interval.
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
    engine : {"auto", "dense", "gaussian", "general"}
        Passed to :func:`varprop.simulate`.
    finite_width : bool
        ``False`` (default): check the infinite-width mean field.  ``True``: check the
        prediction with its :math:`O(1/n)` correction (``predict_variance(...,
        finite_width=True)``; MLP quantities, zero-mean i.i.d. weights).  Both claims get the
        same allowance, the next order of the 1/n expansion
        (:func:`~varprop.checking.allowance.prediction_allowance`), so the mean field is refuted
        where its finite-width shift is resolved (the reason names the measured shift and the
        corrected value) and the corrected value is confirmed.

    p : float, optional
        The probability of ``target="quantile"`` (in (0, 1); ``None`` otherwise).
    statistic : {"mean_square", "unit_std", "log_mean_square"}
        The per-network statistic of the distributional targets (as
        :func:`varprop.predict_distribution`).
    ddof : {0, 1}
        For ``statistic="unit_std"``.

    Returns
    -------
    Verdict

    Examples
    --------
    >>> v = verify("relu", "he_normal", fan_in=64, depth=5, quantity="preactivation")
    >>> v.status
    'confirmed'
    """
    if quantity is None:
        quantity = default_quantity(activation)
    if not isinstance(local, bool):
        raise fail_type("local", local, "True or False")
    if not isinstance(finite_width, bool):
        raise fail_type("finite_width", finite_width, "True or False")
    if finite_width and (local or predicted is not None):
        raise fail("finite_width", finite_width, "False with " + ("local=True (the one-step "
                   "check tests the exact conditional map)" if local else "predicted= (the claim "
                   "is then yours; the allowance is the same either way)"))
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
    subject = _subject(activation, init, fan_in=fan_in, fan_out=fan_out, widths=widths,
                       depth=depth, input_variance=input_variance, bias_variance=bias_variance)
    quantity = check_choice("quantity", quantity, QUANTITIES)
    target = check_choice("target", target, TARGETS)  # type: ignore[assignment]
    method = check_choice("method", method, METHODS)
    engine = check_choice("engine", engine, ("auto", "dense", "gaussian", "general"))
    rtol_f, alpha_f, reps, seed_i, bud, dt = _check_common(rtol, alpha, replicates, seed, budget,
                                                           dtype)
    if quantity in OUTPUT_QUANTITIES:
        if finite_width:
            raise fail("finite_width", finite_width, f"False for quantity {quantity!r} (the 1/n "
                       "expansion covers the MLP quantities of dense chains)")
        net = subject.network()
        return verify_outputs(net, quantity=quantity, layer=layer, rtol_f=rtol_f,
                              alpha_f=alpha_f, predicted=predicted, reps=reps, seed_i=seed_i,
                              target=target, method=method, tol=tol, atol=atol, bud=bud, dt=dt,
                              engine=engine, t0=t0)
    act, scheme, ws = subject.mlp(quantity)
    input_variance, bias_variance = subject.input_variance, subject.bias_variance  # type: ignore[assignment]
    L = len(ws) - 1
    in_var = check_nonnegative_real("input_variance", input_variance)
    b_var = check_nonnegative_real("bias_variance", bias_variance)
    lay = _check_layer(layer, L)
    if target in DISTRIBUTION_TARGETS:
        if finite_width:
            raise fail("finite_width", finite_width, f"False with target={target!r} (the law "
                       "of predict_distribution already carries its finite-width order)")
        return verify_distribution(act, scheme, ws, input_variance=in_var, bias_variance=b_var,
                                   target=target, p=p, statistic=statistic, ddof=ddof,
                                   quantity=quantity, layer=lay, rtol_f=rtol_f, alpha_f=alpha_f,
                                   predicted=predicted, reps=reps, seed_i=seed_i, tol=tol,
                                   bud=bud, dt=dt, engine=engine, t0=t0)
    if p is not None or statistic != "mean_square" or ddof != 0:
        raise fail("target", target, "'quantile' or 'cv2' when p=, statistic= or ddof= is "
                   "given (they describe a per-network statistic's law)")
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
    shape = dict(widths=list(ws), input_variance=in_var, bias_variance=b_var)
    pred_kwargs = dict(widths=list(ws), depth=L, input_variance=in_var, bias_variance=b_var,
                       quantity=quantity, per_layer=True)

    exact = is_exact(act, scheme, quantity, target=target)
    expansion = (None, "an exact claim") if exact else finite_width_case(
        act, scheme, widths=ws, layer=lay, quantity=quantity, input_variance=in_var,
        bias_variance=b_var, target=target)
    if finite_width and not exact and expansion[0] is None:
        raise fail("finite_width", finite_width, f"False here: no 1/n expansion for {expansion[1]}")

    def predict(how: str) -> float:
        if finite_width and not exact and expansion[0] is not None:
            return expansion[0].corrected
        if finite_width and quantity == "gradient":  # exact, with the dead-layer atom of ReLU
            return float(np.asarray(predict_variance(act, scheme, finite_width=True,
                                                     **pred_kwargs))[lay - 1])
        return float(np.asarray(predict_variance(act, scheme, method=how, **pred_kwargs))[lay - 1])

    theta0, reference, user = _claim(predicted, predict, method, f"{quantity} at layer {lay}")
    if tol is None:
        tol_f, tol_reason = prediction_allowance(
            act, scheme, widths=ws, layer=lay, quantity=quantity, method=method,
            predicted_value=theta0, reference_value=reference, target=target, dtype=dt,
            input_variance=in_var, bias_variance=b_var, expansion=expansion,
            finite_width=finite_width)
    else:
        tol_f = check_nonnegative_real("tol", tol)
        tol_reason = "tol given by the caller"
    zero_pred, atol_f, scale, margin = _margins(theta0, rtol_f, atol)
    kind, name, description, sim_names = _statistic_spec(act, scheme, quantity, target, ws, lay)
    backward = quantity in _BACKWARD
    n_lay = ws[lay]

    def draw(n_new: int, look: int) -> tuple[list[np.ndarray], str | None]:
        res = simulate(act, scheme, **shape, replicates=n_new, seed=_look_seed(seed_i, look),
                       dtype=dt, engine=engine, backward=backward)  # forward quantities: forward pass only
        cols, err = _extract(res, sim_names, lay, backward)
        if err is None and kind == "spread":
            cols = [cols[0] ** 2 * (n_lay / (n_lay - 1.0))]
        return cols, err

    sim_net = plan_network(scheme, ws, in_var, b_var)
    bud_eff = bud if bud is not None else network_budget(sim_net, engine)
    plan_note = None
    decidable = exact or (expansion[0] is not None and expansion[0].in_regime)
    if (bud is None and reps is None and kind == "mean" and target == "ensemble" and decidable
            and not zero_pred):
        cv2 = replicate_cv2(act, scheme, ws, quantity=quantity, layer=lay, input_variance=in_var,
                            bias_variance=b_var)
        case = expansion[0]
        best = case.corrected if case is not None else predict(method) if user else theta0
        expected = best / theta0 - 1.0
        if cv2 is not None:
            work = bud_eff
            bud_eff = min(work, max(PLAN_FLOOR, planned_replicates(cv2, expected, tol_f, margin,
                                                                   alpha_f, work)))
            plan_note = (f"budget {bud_eff} planned from the predicted CV^2 {cv2:.3g} of the "
                         f"replicate statistic and the expected r {100 * expected:+.3g}% (at "
                         f"least {PLAN_FLOOR}; work cap {work})")
    sizes = _look_sizes(reps, bud_eff)
    _check_size(sim_net, engine, sizes[-1], dt, "replicates" if reps is not None else "budget")
    out = _sequential(draw, "variance" if kind == "variance" else "mean", theta0, scale, tol_f,
                      margin, alpha_f, sizes, seed_i, relative=not zero_pred,  # type: ignore[arg-type]
                      confirm_within=decidable or tol is not None)
    config = {"activation": repr(act), "init": repr(scheme), **shape, "method": method,
              "dtype": dt, "engine": engine, "budget": bud_eff, "tol_reason": tol_reason,
              "finite_width": finite_width, "plan": plan_note}
    assumptions = _assumptions(act, scheme, quantity, target, exact, method, user, finite_width)
    verdict = _verdict_from(out, theta0=theta0, scale=scale, zero_pred=zero_pred, tol=tol_f,
                            rtol=rtol_f, atol=atol_f, alpha=alpha_f, seed=seed_i,
                            quantity=quantity, layer=lay, target=target, name=name,
                            description=description, assumptions=assumptions, exact=exact,
                            config=config, t0=t0)
    if verdict.status == "refuted":
        note = refutation_note(expansion[0], verdict.estimate, theta0, finite_width or user)
        if note:
            verdict = dataclasses.replace(verdict, reason=verdict.reason + note)
    return verdict

