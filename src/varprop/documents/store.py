r"""Budgets, number formatting and the Monte Carlo record shared by the document generators.

Generating the documents has two phases:

1. **Monte Carlo** (:class:`MonteCarloStore`): every simulation the documents quote is run once,
   with a fixed seed and a fixed budget, through the public :func:`varprop.simulate` and
   :func:`varprop.verify`; the results are rounded to :data:`SIGNIFICANT` significant digits and
   kept in a JSON record (``derivations/montecarlo.json``).
2. **Rendering**: the Markdown, LaTeX and figures are a pure function of the code (derivations and
   predictions, recomputed every time) and of that record.

So ``varprop derive --all --check`` can either re-run everything (the full check) or re-render
from the committed record and re-run only a sample of the simulations (the cheap check the test
suite uses); both compare byte for byte.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from varprop._util.validation import check_choice
from varprop.checking.check import verify
from varprop.network.quantities import BACKWARD
from varprop.simulation.montecarlo import simulate
from varprop.simulation.result import BACKWARD_QUANTITIES

__all__ = ["Budget", "BUDGETS", "budget", "SIGNIFICANT", "sig", "fmt", "MonteCarloStore",
           "mc_verify", "mc_per_layer", "mc_per_replicate", "mc_verify_network",
           "mc_network_curves", "mc_network_positions"]

#: Significant digits of every number the documents print (and of the stored record).
SIGNIFICANT = 4


@dataclass(frozen=True)
class Budget:
    """How much Monte Carlo the documents buy.

    Attributes
    ----------
    name : {"default", "quick"}
    replicates : int or None
        Replicates per :func:`varprop.verify` call (``None``: the checker's adaptive sampling).
    verify_budget : int or None
        With adaptive sampling, the most replicates one verification may use (``None``: the
        checker's default budget).
    curve_replicates : int
        Replicates per figure curve (one :func:`varprop.simulate` call per activation and scheme).

    Extra pages (:mod:`varprop.documents.pages`) size their own simulations from :attr:`name`.
    """

    name: str
    replicates: int | None
    verify_budget: int | None
    curve_replicates: int


BUDGETS: dict[str, Budget] = {
    "default": Budget("default", replicates=None, verify_budget=None, curve_replicates=400),
    "quick": Budget("quick", replicates=None, verify_budget=256, curve_replicates=40),
}


def budget(name: str | Budget) -> Budget:
    """The :class:`Budget` called ``name`` (``"default"`` or ``"quick"``)."""
    if isinstance(name, Budget):
        return name
    return BUDGETS[check_choice("budget", name, tuple(BUDGETS))]


def sig(x: float, digits: int = SIGNIFICANT) -> float:
    """``x`` rounded to ``digits`` significant digits (inf and NaN unchanged, -0.0 -> 0.0)."""
    x = float(x)
    if not math.isfinite(x) or x == 0.0:
        return 0.0 if x == 0.0 else x
    return float(f"{x:.{digits - 1}e}") + 0.0


def fmt(x: float | None, digits: int = SIGNIFICANT) -> str:
    """Fixed formatting of a number for the documents (``4.066e+17``, ``22.63``, ``0.0452``)."""
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0.0:
        return "0"
    text = f"{x:.{digits}g}"
    if "e" in text:
        mant, exp = text.split("e")
        return f"{mant}e{int(exp):+d}"
    return text


def _round_tree(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _round_tree(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [_round_tree(v) for v in obj]
    if isinstance(obj, (bool, str)) or obj is None:
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return sig(float(obj))
    raise TypeError(f"cannot store {type(obj).__name__} in the Monte Carlo record")


class MonteCarloStore:
    """The Monte Carlo results the documents quote, keyed by a stable string.

    ``get(key, compute)`` returns the stored record or computes, rounds and stores it.  A store
    built with ``frozen=True`` (re-rendering from a committed record) never computes: a missing
    key is reported in :attr:`missing` and answered with ``None`` so the caller can say the record
    is stale.
    """

    def __init__(self, records: dict[str, Any] | None = None, *, budget_name: str = "default",
                 frozen: bool = False) -> None:
        self.records: dict[str, Any] = dict(records or {})
        self.budget_name = budget_name
        self.frozen = frozen
        self.used: set[str] = set()
        self.missing: list[str] = []

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        self.used.add(key)
        if key in self.records:
            return self.records[key]
        if self.frozen:
            self.missing.append(key)
            return None
        value = _round_tree(compute())
        self.records[key] = value
        return value

    def to_json(self) -> str:
        used = {k: self.records[k] for k in sorted(self.used) if k in self.records}
        return json.dumps({"budget": self.budget_name, "significant_digits": SIGNIFICANT,
                           "records": used}, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, frozen: bool = True) -> MonteCarloStore:
        data = json.loads(text)
        return cls(data.get("records", {}), budget_name=data.get("budget", "default"),
                   frozen=frozen)


# ----------------------------------------------------------------------------------------------
# adapters to the public Monte Carlo API (the only place that calls simulate / verify)
# ----------------------------------------------------------------------------------------------

def mc_verify(activation: Any, init: Any, *, fan_in: int, depth: int, quantity: str,
              replicates: int | None, seed: int, layer: int | None = None,
              predicted: float | None = None, budget: int | None = None) -> dict[str, Any]:
    """Run :func:`varprop.verify` and keep what the documents print."""
    kwargs: dict[str, Any] = dict(fan_in=fan_in, depth=depth, quantity=quantity, seed=seed,
                                  replicates=replicates)
    if layer is not None:
        kwargs["layer"] = layer
    if predicted is not None:
        kwargs["predicted"] = predicted
    if budget is not None:
        kwargs["budget"] = budget
    v = verify(activation, init, **kwargs)
    if v.estimate is None:  # nothing was estimated (the values left the float range)
        return {"status": "error", "message": " ".join(v.reason.split())[:160]}
    lo, hi = _estimate_interval(v)
    return {"status": str(v.status), "predicted": float(v.predicted), "estimate": float(v.estimate),
            "low": lo, "high": hi, "replicates": int(v.replicates),
            "reason": " ".join(v.reason.split())}


def _estimate_interval(v: Any) -> tuple[float, float]:
    """The verdict's interval for the estimated quantity (not for the relative error)."""
    lo, hi = (float(x) for x in v.interval)
    kind = getattr(v, "interval_kind", None)
    if kind == "relative_error" or (kind is None and getattr(v, "interval_is_relative", False)):
        return float(v.predicted) * (1 + lo), float(v.predicted) * (1 + hi)
    return lo, hi


def mc_per_replicate(activation: Any, init: Any, *, fan_in: int, depth: int,
                     statistics: Iterable[str], replicates: int, seed: int,
                     dtype: str = "float64") -> dict[str, np.ndarray]:
    """Per-replicate statistics, each of shape ``(replicates, depth)``, from one
    :func:`varprop.simulate` run (names as in ``SimulationResult.per_replicate``; forward only
    when none is a backward statistic: the same numbers, less time)."""
    statistics = list(statistics)
    backward = any(_is_backward(s) for s in statistics)
    res = simulate(activation, init, fan_in=fan_in, depth=depth, replicates=replicates,
                   seed=seed, dtype=dtype, backward=backward)
    return {s: np.asarray(res.per_replicate(s), dtype=float) for s in statistics}


def _is_backward(statistic: str) -> bool:
    """Whether a ``per_replicate`` name (a statistic or a ``predict_variance`` quantity) needs
    the backward pass."""
    return statistic in BACKWARD_QUANTITIES or statistic in BACKWARD or statistic.startswith(
        "output_gradient")


def mc_per_layer(activation: Any, init: Any, *, fan_in: int, depth: int,
                 statistics: Iterable[str], replicates: int, seed: int) -> dict[str, Any]:
    """Per-layer mean over replicates and a 95% normal interval of that mean, per statistic.

    One simulation serves every statistic.  The interval is ``mean +- 1.96 sd / sqrt(R)`` (the
    replicate is the unit of evidence); it is for display in the figures, the verdicts come from
    :func:`varprop.verify`.
    """
    res = simulate(activation, init, fan_in=fan_in, depth=depth, replicates=replicates, seed=seed)
    out: dict[str, Any] = {}
    for stat in statistics:
        # a layer where any replicate left the float range has no ensemble mean: no point there
        masked = res.masked(stat)
        x = np.asarray(masked.data, dtype=float)
        whole = ~np.ma.getmaskarray(masked).any(axis=0)
        with np.errstate(all="ignore"):
            mean = x.mean(axis=0)
            half = 1.96 * x.std(axis=0, ddof=1) / math.sqrt(x.shape[0])
        out[stat] = {key: [float(v) if ok else None for v, ok in zip(arr, whole)]
                     for key, arr in (("mean", mean), ("low", mean - half), ("high", mean + half))}
    return out


def mc_first_nonfinite(activation: Any, init: Any, *, fan_in: int, depth: int, replicates: int,
                       seed: int, dtype: str = "float32") -> dict[str, int]:
    """Distribution of the first non-finite layer per replicate (``simulate``), zero-based index
    -> count (``"never"`` for replicates that stay finite)."""
    res = simulate(activation, init, fan_in=fan_in, depth=depth, replicates=replicates,
                   seed=seed, dtype=dtype, backward=False)
    layers = np.asarray(res.nonfinite_layer_per_replicate)
    values, counts = np.unique(layers, return_counts=True)
    return {("never" if v == 0 else str(int(v) - 1)): int(c) for v, c in zip(values, counts)}


# ----------------------------------------------------------------------------------------------
# adapters for any Network (the layer documents and the worked architectures)
# ----------------------------------------------------------------------------------------------

def mc_verify_network(net: Any, *, quantity: str, layer: int, seed: int,
                      budget: int | None = None) -> dict[str, Any]:
    """Run :func:`varprop.verify` on a :class:`~varprop.Network` (``quantity`` ``"output"`` or
    ``"output_gradient"`` at layer position ``layer``) and keep what the documents print, plus
    the margins (``rtol``, ``tol``) and the relative interval the verdict was decided on, so that
    a reader (and the tests) can re-derive the status from the row's own numbers."""
    v = verify(net, quantity=quantity, layer=layer, seed=seed, budget=budget)
    if v.estimate is None:
        return {"status": "inconclusive" if v.status == "inconclusive" else "error",
                "predicted": float(v.predicted), "replicates": int(v.replicates),
                "message": " ".join(v.reason.split())[:200]}
    lo, hi = (float(x) for x in v.interval)  # absolute units for a Network's output quantities
    out: dict[str, Any] = {
        "status": str(v.status), "predicted": float(v.predicted), "estimate": float(v.estimate),
        "low": lo, "high": hi, "replicates": int(v.replicates), "rtol": float(v.rtol),
        "tol": float(v.tol), "exact": bool(v.exact), "reason": " ".join(v.reason.split())}
    if v.relative_interval is not None:
        out["r_low"], out["r_high"] = (float(x) for x in v.relative_interval)
    return out


def mc_network_curves(net: Any, *, replicates: int, seed: int) -> dict[str, Any]:
    """Per layer position: the mean over replicates of the output's and of the output gradient's
    second moment (``simulate(net).per_replicate``), with a 95% normal interval of the mean
    (``mean +- 1.96 sd / sqrt(R)``; for display, the verdicts come from :func:`varprop.verify`).
    A position where some replicate left the float range has no point (``None``)."""
    res = simulate(net, replicates=replicates, seed=seed)
    out: dict[str, Any] = {}
    for stat in ("output_second", "output_gradient_second"):
        masked = res.masked(stat)
        x = np.asarray(masked.data, dtype=float)
        whole = ~np.ma.getmaskarray(masked).any(axis=0)
        with np.errstate(all="ignore"):
            mean = x.mean(axis=0)
            half = 1.96 * x.std(axis=0, ddof=1) / math.sqrt(x.shape[0])
        out[stat] = {key: [float(v) if ok and math.isfinite(v) else None
                           for v, ok in zip(arr, whole)]
                     for key, arr in (("mean", mean), ("low", mean - half), ("high", mean + half))}
    return out


def mc_network_positions(net: Any, *, layer: int, statistic: str, replicates: int,
                         seed: int) -> dict[str, Any]:
    """Per tensor position of layer position ``layer``: the mean over replicates of
    ``statistic`` (``"output_second"`` or ``"output_gradient_second"``,
    ``simulate(net, engine="general").per_position``) with a 95% normal interval of the mean;
    replicates that left the float range are left out (``count`` says how many remain)."""
    res = simulate(net, replicates=replicates, seed=seed, engine="general")
    x = np.asarray(res.per_position(statistic, layer, valid_only=True), dtype=float)
    x = x.reshape(x.shape[0], -1)
    with np.errstate(all="ignore"):
        mean = x.mean(axis=0)
        half = 1.96 * x.std(axis=0, ddof=1) / math.sqrt(max(x.shape[0], 1))
    return {"count": int(x.shape[0]), "mean": [float(v) for v in mean],
            "low": [float(v) for v in mean - half], "high": [float(v) for v in mean + half]}
