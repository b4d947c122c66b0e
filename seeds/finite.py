r"""Finite-width predictions for the seeds' claims (issue 13): the law over networks of the
statistic a cell prints, from :func:`varprop.predict_distribution`, tested by Monte Carlo through
:func:`varprop.verify`'s distributional and finite-width targets.

* :func:`std_average`: the law of a cell's *average over runs* of the across-unit standard
  deviation of one sample (``tf.math.reduce_std``, ``ddof=0``): mean :math:`E s` of one run and
  the 99% range of an average over ``runs`` runs, :math:`E s \pm 2.576\sqrt{\operatorname{Var}
  s/\text{runs}}` (central limit theorem).  :math:`E s` is below :math:`\sqrt{E s^2}` (Jensen;
  an :math:`O(1/n)` effect the mean field leaves out).
* :func:`deep_tanh_checks`: Xavier-uniform tanh at width 256 and depth 100: the predicted 10%,
  50%, 90% quantiles of one network's printed ``x.std()`` (``ddof=1``), the percentile where a
  printed value falls, each quantile checked on one simulation of the cell's networks (the
  order-statistic interval and the allowance of ``verify(target="quantile")``), and the ensemble
  bias of :math:`E a_{100}^2` below the mean field (``verify(finite_width=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from varprop.checking.distribution_check import distribution_allowance
from varprop.checking.distribution_stats import quantile_interval
from varprop.checking.stats import decide
from varprop.components.activations import resolve_activation
from varprop.components.schemes import resolve_scheme
from varprop.documents.finite_width import mc_check
from varprop.documents.store import mc_per_replicate
from varprop.errors import VarpropError
from varprop.theory.finite.statistics import predict_distribution

__all__ = ["std_average", "deep_tanh_checks", "QUANTILES", "Z99"]

#: The quantiles of the printed statistic that are predicted and checked.
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
Z99 = 2.5758293035489004
_RTOL = 0.05


def std_average(act: Any, init: Any, *, fan_in: int, runs: int, depth: int = 1
                ) -> dict[str, Any] | None:
    """``{"mean", "sd", "low", "high", "method"}``: one run's expected across-unit std of the
    activations, its spread over runs, and the 99% range of an average over ``runs`` runs; ``None``
    where there is no finite-width law (e.g. weights with a non-zero mean)."""
    try:
        d = predict_distribution(act, init, fan_in=fan_in, depth=depth, statistic="unit_std",
                                 quantity="activation", ddof=0)
    except (VarpropError, ArithmeticError, ValueError):
        return None
    mean, sd = float(d.mean), math.sqrt(float(d.variance))
    half = Z99 * sd / math.sqrt(runs)
    return {"mean": mean, "sd": sd, "low": mean - half, "high": mean + half,
            "method": str(d.method)}


def _quantile_status(values: Any, p: float, theta: float, tol: float, alpha: float
                     ) -> dict[str, Any]:
    """The checker's decision for the ``p``-quantile of ``values`` against ``theta`` (the
    order-statistic interval of :func:`varprop.checking.distribution_stats.quantile_interval`,
    margins ``tol`` and 5% as in :func:`varprop.verify`)."""
    iv = quantile_interval(values, p, alpha)
    lo, hi = iv.lo / theta - 1.0, iv.hi / theta - 1.0
    status = decide(lo, hi, tol=tol, rtol=_RTOL)
    if status == "inconclusive" and -tol <= lo and hi <= tol:
        status = "confirmed"  # within the allowance at the last (only) look
    return {"status": status, "predicted": theta, "estimate": iv.estimate, "low": iv.lo,
            "high": iv.hi, "replicates": int(iv.n), "tol": tol}


def deep_tanh_checks(montecarlo: Callable[[str, Callable[[], Any]], Any], *, printed: float,
                     replicates: int, budget: int | None, seed: Callable[[str], int],
                     alpha: float = 0.01) -> dict[str, Any]:
    """The predictions and Monte Carlo checks of the deep tanh cell (module docstring).

    ``montecarlo(key, compute)`` records each simulation; one ``simulate`` run of
    ``replicates`` networks (dense engine: the weights are uniform) serves the three quantile
    checks (each at level ``alpha/3``); ``budget`` bounds the adaptive ensemble checks."""
    n, depth = 256, 100
    act, scheme = resolve_activation("tanh"), resolve_scheme("xavier_uniform")
    law = predict_distribution(act, scheme, fan_in=n, depth=depth, statistic="unit_std",
                               quantity="activation", ddof=1)
    ws = (n,) * (depth + 1)
    out: dict[str, Any] = {"method": str(law.method), "mean": float(law.mean),
                           "percentile": float(law.cdf(printed)),
                           "quantiles": {p: float(law.quantile(p)) for p in QUANTILES},
                           "checks": {}, "bias": {}}
    key = "003.5/std"
    rec = montecarlo(key, lambda: {"std": [float(v) * math.sqrt(n / (n - 1.0)) for v in
                                           mc_per_replicate(
                                               act, scheme, fan_in=n, depth=depth,
                                               statistics=("activation_unit_std",),
                                               replicates=replicates,
                                               seed=seed(key))["activation_unit_std"][:, -1]]})
    for p in QUANTILES:
        theta = out["quantiles"][p]
        tol, _ = distribution_allowance(act, scheme, law, target="quantile", theta0=theta,
                                        moments=law, widths=ws, layer=depth,
                                        quantity="activation", input_variance=1.0,
                                        bias_variance=0.0)
        out["checks"][p] = (None if rec is None else
                            _quantile_status(rec["std"], p, theta, tol, alpha / len(QUANTILES)))
    for name, fw in (("mean_field", False), ("corrected", True)):
        key = f"003.5/bias/xavier_normal/{name}"
        kwargs: dict[str, Any] = {} if budget is None else {"budget": budget}
        out["bias"][name] = montecarlo(key, lambda fw=fw, key=key: mc_check(
            "tanh", "xavier_normal", fan_in=n, depth=depth, quantity="activation_second_moment",
            finite_width=fw, seed=seed(key), **kwargs))
    return out
