r"""Predictions and Monte Carlo verdict rows of a :class:`~varprop.Network` for the layer documents
and the worked-architectures page.

A row is a claim about one layer position: "the second moment of the output (or of the loss
gradient with respect to it) at position :math:`p` is :math:`\theta_0`", :math:`\theta_0` from
:func:`varprop.predict_variance` (``per_layer=True``), checked by :func:`varprop.verify` at a
seed that is a hash of the row's record key; the record goes through the shared
:class:`~varprop.documents.store.MonteCarloStore`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from varprop.documents.common import _key_seed, _quiet
from varprop.documents.store import (
    Budget,
    MonteCarloStore,
    fmt,
    mc_network_curves,
    mc_network_positions,
    mc_verify_network,
)
from varprop.errors import VarpropError
from varprop.network.model import Network
from varprop.theory.predict import predict_variance

__all__ = ["predictions", "verdict_record", "curve_record", "positions_record", "estimate_cell",
           "exact_cell", "verdict_cell", "QUANTITY_TEXT", "status_agrees"]

#: How a row names its quantity.
QUANTITY_TEXT = {"output": "$E y_k^2$",
                 "output_gradient": "$E(\\partial\\mathcal L/\\partial y_k)^2$"}

#: Replicates of a figure curve (one ``simulate`` run per network), per budget name.
CURVE_REPLICATES = {"default": 128, "quick": 32}
#: The most replicates one row's ``verify`` may use, per budget name: a cap on the checker's
#: plan, so that the Monte Carlo of every layer document and the architectures page together
#: stays near a minute (a row the cap leaves undecided says so: inconclusive, with the number of
#: replicates that would decide it).
VERIFY_BUDGET: dict[str, int | None] = {"default": 4096, "quick": 256}

_ERRORS = (VarpropError, NotImplementedError, ArithmeticError)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]


def predictions(net: Network) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Per layer position, the predicted output and output-gradient second moments; ``None``
    (with the error's text) for what the installed engine cannot predict."""
    out: list[np.ndarray | None] = []
    why = ""
    for quantity in ("output", "output_gradient"):
        try:
            out.append(np.asarray(_quiet(lambda q=quantity: predict_variance(
                net, quantity=q, per_layer=True)), dtype=float))
        except _ERRORS as exc:
            out.append(None)
            why = why or _error_text(exc)
    return out[0], out[1], why


def verdict_record(store: MonteCarloStore, key: str, net: Network, quantity: str, position: int,
                   b: Budget) -> Any:
    """The stored verdict of ``quantity`` at ``position`` (computed once, seed from ``key``)."""
    def compute() -> dict[str, Any]:
        try:
            return mc_verify_network(net, quantity=quantity, layer=position, seed=_key_seed(key),
                                     budget=VERIFY_BUDGET.get(b.name))
        except _ERRORS as exc:  # recorded and shown, never hidden
            return {"status": "error", "message": _error_text(exc)}
    return store.get(key, lambda: _quiet(compute))


def curve_record(store: MonteCarloStore, key: str, net: Network, b: Budget) -> Any:
    """The stored per-position Monte Carlo means of a figure (``None`` if it cannot run)."""
    def compute() -> dict[str, Any]:
        try:
            return mc_network_curves(net, replicates=CURVE_REPLICATES.get(b.name, 32),
                                     seed=_key_seed(key))
        except _ERRORS as exc:
            return {"error": _error_text(exc)}
    return store.get(key, lambda: _quiet(compute))


def positions_record(store: MonteCarloStore, key: str, net: Network, layer: int, statistic: str,
                     b: Budget) -> Any:
    """The stored per-tensor-position Monte Carlo of ``statistic`` at ``layer`` (seed from
    ``key``; ``{"error": ...}`` if it cannot run)."""
    def compute() -> dict[str, Any]:
        try:
            return mc_network_positions(net, layer=layer, statistic=statistic,
                                        replicates=CURVE_REPLICATES.get(b.name, 32),
                                        seed=_key_seed(key))
        except _ERRORS as exc:
            return {"error": _error_text(exc)}
    return store.get(key, lambda: _quiet(compute))


def estimate_cell(rec: Any) -> str:
    if rec is None:
        return "(no Monte Carlo record)"
    if "estimate" not in rec:
        return "n/a"
    return f"{fmt(rec['estimate'])} [{fmt(rec['low'])}, {fmt(rec['high'])}] (R = {rec['replicates']})"


def exact_cell(rec: Any) -> str:
    """Where the prediction claims to hold: at this finite width (the checker's tolerance 0) or
    as the width grows (the checker's allowance for the layers on the statistic's path)."""
    if rec is None or "exact" not in rec:
        return "n/a"
    if rec["exact"]:
        return "every width (tolerance 0)"
    return f"infinite width (allowance {100 * rec['tol']:.3g}%)"


def verdict_cell(rec: Any) -> str:
    if rec is None:
        return "not run"
    if rec["status"] == "error":
        return f"not checked: {rec['message']}"
    why = rec.get("reason") or rec.get("message", "")
    return f"**{rec['status']}**: {why}"


def status_agrees(rec: dict[str, Any]) -> bool:
    """Whether a record's status follows from its own numbers: ``confirmed`` needs the relative
    interval inside :math:`\\pm\\max(rtol, tol)`, ``refuted`` wholly outside :math:`\\pm tol`,
    ``inconclusive`` not wholly outside (the checker's decision rule, :func:`varprop.verify`;
    an interval inside the margins can still be inconclusive at a budget's end) unless the
    checker's heavy-tail guard declared the interval untrustworthy (its reason says so, and then
    the interval decides nothing)."""
    if rec.get("status") == "error" or "r_low" not in rec:
        return rec.get("status") in ("error", "inconclusive")
    lo, hi = rec["r_low"], rec["r_high"]
    allowed = max(rec["rtol"], rec["tol"])
    inside = -allowed <= lo and hi <= allowed
    outside = lo > rec["tol"] or hi < -rec["tol"]
    untrusted = str(rec.get("reason", "")).startswith("heavy-tailed")
    return {"confirmed": inside and not untrusted, "refuted": outside and not untrusted,
            "inconclusive": untrusted or not outside}.get(rec["status"], False)


def at(values: np.ndarray | None, position: int) -> float:
    """``values[position - 1]`` as a float (NaN when there is no prediction)."""
    return math.nan if values is None else float(values[position - 1])
