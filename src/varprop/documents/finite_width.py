r"""The finite-width section of an activation document: the 1/n-corrected recursion in SymPy
steps (:func:`varprop.theory.symbolic.finite_width.finite_width_steps`), a table over widths and
depths of the mean field against the corrected prediction and Monte Carlo (each row with the
checker's verdicts), and a figure of the per-network spread (the predicted 10-90% band of one
network's mean square :math:`\overline{z_l^2}` against depth, simulated networks as points).

The activation document calls :func:`finite_width_section` (Markdown lines) and
:func:`finite_width_figure` (the figure's SVG/PDF, saved with
:func:`varprop.documents.figures.save_figure`).  The Monte Carlo goes through the
:class:`~varprop.documents.store.MonteCarloStore` under keys ``finite_width/...`` (reused by
``derive --all --reuse-montecarlo``): one ``simulate(engine="gaussian")`` run per width to the
largest depth (the exact-in-law :math:`O(n)` shortcut for Gaussian weights), with few replicates
so that the section costs about two seconds per activation.

The verdicts of a row are those of :func:`varprop.verify` on the row's numbers: the 99% normal
interval of the Monte Carlo mean for :math:`r = \hat\theta/\theta - 1` against the allowance of
:func:`varprop.checking.allowance.prediction_allowance` (the next order of the 1/n expansion, or
the broad allowance out of its regime) and ``rtol`` = 5% (:func:`varprop.checking.stats.decide`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import sympy as sp

from varprop._util.figures import plain_log_ticks
from varprop.checking.allowance import prediction_allowance
from varprop.checking.check import verify
from varprop.checking.next_order import REGIME_LIMIT, finite_width_case
from varprop.checking.stats import decide, replicates_needed
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, init_scheme
from varprop.documents.common import _key_seed, _label, _quiet
from varprop.documents.figures import save_figure
from varprop.documents.store import Budget, MonteCarloStore, fmt
from varprop.errors import VarpropError
from varprop.simulation.montecarlo import simulate
from varprop.theory.finite.statistics import predict_distribution
from varprop.theory.predict import predict_variance
from varprop.theory.symbolic.finite_width import FINITE_WIDTH_LATEX, finite_width_steps

__all__ = ["FW_WIDTHS", "FW_DEPTHS", "FIGURE_WIDTH", "finite_width_scheme",
           "finite_width_section", "finite_width_figure", "figure_path", "mc_check"]

#: Widths and depths of the table.
FW_WIDTHS: tuple[int, ...] = (8, 32, 128, 512)
FW_DEPTHS: tuple[int, ...] = (5, 20, 50)
#: The width of the spread figure.
FIGURE_WIDTH = 32
_FIGURE_LAYERS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50)
_FIGURE_NETWORKS = 24
_RTOL = 0.05
_Z99 = 2.5758293035489004
#: Replicates per width of :data:`FW_WIDTHS` under each budget (the cost is :math:`n` per layer and
#: network; the narrow widths, where the shift is large, get enough networks to resolve it).
_REPLICATES = {"default": (2048, 2048, 512, 64), "quick": (64, 64, 32, 16)}


def finite_width_scheme(act: Activation | str) -> InitScheme:
    """The scheme of the section: He normal for degree-1 homogeneous activations (the
    critical one), LeCun normal otherwise (zero-mean Gaussian weights of variance 1/n)."""
    a = resolve_activation(act)
    return init_scheme("he_normal" if a.traits.exact_at_finite_width else "lecun_normal")


def figure_path(act: Activation | str, kind: str = "svg", stem: str | None = None) -> str:
    """Where the activation document puts the spread figure."""
    return f"figures/{stem or resolve_activation(act).name}-finite-width.{kind}"


def mc_check(activation: Any, init: Any, **kwargs: Any) -> dict[str, Any]:
    """Run :func:`varprop.verify` with ``kwargs`` and keep what a document prints (absolute
    interval, margins, status and reason)."""
    v = verify(activation, init, **kwargs)
    out: dict[str, Any] = {"status": str(v.status), "predicted": float(v.predicted),
                           "replicates": int(v.replicates), "tol": float(v.tol),
                           "reason": " ".join(v.reason.split())}
    if v.estimate is not None and v.interval is not None:
        out.update(estimate=float(v.estimate), low=float(v.interval[0]),
                   high=float(v.interval[1]))
    return out


def _simulate_record(act: Activation, scheme: InitScheme, n: int, depth: int, replicates: int,
                     seed: int, keep: int) -> dict[str, Any]:
    """Per layer: mean and standard error over networks of one network's mean squares of
    :math:`a_l` and :math:`z_l` (``None`` where a replicate left the float range), and the
    first ``keep`` networks' :math:`\\overline{z_l^2}` for the figure."""
    res = simulate(act, scheme, fan_in=n, depth=depth, replicates=replicates, seed=seed,
                   engine="gaussian", backward=False)  # forward statistics only: same numbers
    out: dict[str, Any] = {"replicates": replicates}
    for stat, name in (("activation_second", "a2"), ("preactivation_second", "z2")):
        masked = res.masked(stat)
        x = np.asarray(masked.data, dtype=float)
        whole = ~np.ma.getmaskarray(masked).any(axis=0)
        mean = x.mean(axis=0)
        se = x.std(axis=0, ddof=1) / math.sqrt(x.shape[0])
        out[name] = [float(m) if ok else None for m, ok in zip(mean, whole)]
        out[name + "_se"] = [float(s) if ok else None for s, ok in zip(se, whole)]
        if name == "z2" and keep:
            out["networks"] = [[float(v) for v in row] for row in x[:keep]]
    return out


def _records(act: Activation, scheme: InitScheme, store: MonteCarloStore, b: Budget,
             tick: Callable[[], None]) -> dict[int, Any]:
    reps = _REPLICATES.get(b.name, _REPLICATES["default"])
    depth = max(FW_DEPTHS)
    out = {}
    for n, r in zip(FW_WIDTHS, reps):
        key = f"finite_width/{act.name}/{_label(scheme)}/n{n}/L{depth}"
        keep = _FIGURE_NETWORKS if n == FIGURE_WIDTH else 0
        out[n] = store.get(key, lambda n=n, r=r, k=key, keep=keep: _quiet(
            lambda: _simulate_record(act, scheme, n, depth, r, _key_seed(k), keep)))
        tick()
    return out


def _verdict(estimate: float | None, se: float | None, predicted: float, tol: float,
             decidable: bool) -> str:
    """The checker's rule on the row's 99% interval; a broad allowance (not ``decidable``: out of
    the expansion's regime) refutes but never confirms."""
    if estimate is None or se is None or not predicted > 0:
        return "no estimate"
    lo, hi = ((estimate - _Z99 * se) / predicted - 1, (estimate + _Z99 * se) / predicted - 1)
    status = decide(lo, hi, tol=tol, rtol=_RTOL)
    if status == "inconclusive" and -tol <= lo and hi <= tol and tol > _RTOL:
        return ("confirmed (within the allowance)" if decidable else
                "inconclusive (inside the broad allowance, which cannot confirm)")
    return status


def _case(act: Activation, scheme: InitScheme, n: int, total: int, layer: int) -> Any:
    """The expansion at ``layer`` of the ``total``-layer net of width ``n`` (the moments of the
    expansion are cached by :func:`~varprop.checking.next_order.finite_width_case`)."""
    return _quiet(lambda: finite_width_case(
        act, scheme, widths=[n] * (total + 1), layer=layer, quantity="activation_second_moment",
        input_variance=1.0, bias_variance=0.0))


def _heavy(act: Activation, scheme: InitScheme, ws: list[int], depth: int, rec: Any) -> str:
    r"""``"inconclusive (heavy-tailed)"`` when the replicates are too few for a normal interval of
    the mean by Cochran's rule (:math:`R \ge 25\gamma^2`, :math:`\gamma` the skewness of the
    log-normal with the predicted :math:`\mathrm{CV}^2` of one network's mean square, as the
    checker's guard), else ``""``."""
    if rec is None:
        return ""
    try:
        cv2 = float(_quiet(lambda: predict_distribution(
            act, scheme, widths=ws, depth=depth, statistic="mean_square",
            quantity="activation").cv2))
    except (VarpropError, ArithmeticError, ValueError):
        return ""
    if not (math.isfinite(cv2) and cv2 > 0):
        return ""
    if cv2 > 1e3:
        return "inconclusive (heavy-tailed)"
    e = 1.0 + cv2  # exp(s^2) of the log-normal with this CV^2
    gamma = (e + 2.0) * math.sqrt(e - 1.0)
    return "inconclusive (heavy-tailed)" if rec["replicates"] < replicates_needed(gamma) else ""


def _pct(x: float) -> str:
    return f"{100 * x:+.3g}%"


def _rows(act: Activation, scheme: InitScheme, recs: dict[int, Any]) -> tuple[list[list[str]],
                                                                              list[dict[str, Any]]]:
    rows, facts = [], []
    exact = bool(act.traits.exact_at_finite_width)
    for n in FW_WIDTHS:
        rec = recs.get(n)
        for depth in FW_DEPTHS:
            ws = [n] * (depth + 1)
            # the forward moments at layer l depend on layers 1..l only: one expansion of the
            # deepest net serves every depth (unless it breaks down before the deepest layer)
            case, why = full if (full := _case(act, scheme, n, max(FW_DEPTHS), depth))[0] \
                is not None else _case(act, scheme, n, depth, depth)
            mf = float(_quiet(lambda ws=ws, depth=depth: predict_variance(
                act, scheme, widths=ws, depth=depth, quantity="activation_second_moment")))
            corrected = case.corrected if case is not None else None
            tol, _ = _quiet(lambda ws=ws, depth=depth, c=case, w=why, mf=mf: prediction_allowance(
                act, scheme, widths=ws, layer=depth, quantity="activation_second_moment",
                method="auto", predicted_value=mf, expansion=(c, w)))
            est = se = None
            if rec is not None and rec["a2"][depth - 1] is not None:
                est, se = float(rec["a2"][depth - 1]), float(rec["a2_se"][depth - 1])
            decidable = exact or (case is not None and case.in_regime)
            # the heavy-tail label needs a trustworthy predicted CV^2: in the expansion's regime
            heavy = _heavy(act, scheme, ws, depth, rec) if decidable else ""
            v_mf = heavy or _verdict(est, se, mf, tol, decidable)
            v_fw = (heavy or _verdict(est, se, corrected, tol, decidable)) if corrected is not None \
                else "n/a"
            facts.append({"n": n, "depth": depth, "mf": mf, "case": case, "est": est, "se": se,
                          "v_mf": v_mf, "v_fw": v_fw, "tol": tol, "why": why})
            rows.append([str(n), str(depth), fmt(mf),
                         fmt(corrected) if corrected is not None else "n/a",
                         f"{fmt(est)} ± {fmt(se, 2)}" if est is not None else "n/a",
                         _pct(case.shift) if case is not None else "n/a",
                         _pct(est / mf - 1) if est is not None and mf > 0 else "n/a",
                         ("0 (exact)" if exact else f"{fmt(100 * tol, 2)}%" + (
                             "" if case is not None and case.in_regime else " (broad)")),
                         v_mf, v_fw])
    return rows, facts


def _summary(act: Activation, facts: list[dict[str, Any]], exact: bool) -> str:
    """The sentences under the table, from its numbers."""
    if exact:
        off = [f for f in facts if f["est"] is not None and f["v_mf"] == "refuted"]
        return (f"For {act.name} the second moments are exact at every width (degree-1 "
                f"homogeneous: "
                f"$f(q)$ is linear in $q$), so the correction is zero; the Monte Carlo refutes the "
                f"mean field in {len(off)} of {len(facts)} rows.")
    measured = [f for f in facts if f["est"] is not None]
    refuted = [f for f in measured if f["v_mf"] == "refuted"]
    fw_ok = [f for f in measured if f["v_fw"].startswith("confirmed")]
    fw_bad = [f for f in measured if f["v_fw"] == "refuted"]
    broad = [f for f in facts if f["case"] is None or not f["case"].in_regime]
    parts = [f"Of {len(measured)} rows with a Monte Carlo estimate, the mean field is refuted in "
             f"{len(refuted)} and the 1/n-corrected prediction confirmed in {len(fw_ok)} "
             f"(refuted in {len(fw_bad)})."]
    shifted = [f for f in measured if f["mf"] > 0]  # a zero mean field has no relative shift
    if shifted:
        worst = max(shifted, key=lambda f: abs(f["est"] / f["mf"] - 1))
        parts.append(f"The largest measured shift from the mean field is "
                     f"{_pct(worst['est'] / worst['mf'] - 1)} (width {worst['n']}, depth "
                     f"{worst['depth']}).")
    if broad:
        where = ", ".join(f"{f['n']}/{f['depth']}" for f in broad)
        parts.append(f"Out of the expansion's regime ($\\rho > {REGIME_LIMIT:g}$) or without an "
                     f"expansion (width/depth {where}) the broad allowance applies and the rows do "
                     "not decide the expansion.")
    return " ".join(parts)


def finite_width_section(activation: Activation | str, *, store: MonteCarloStore,
                         budget: Budget, tick: Callable[[], None] = lambda: None,
                         figure: str | None = None, level: int = 2) -> list[str]:
    """The section's Markdown lines (``figure``: the relative path of the spread figure to show,
    e.g. :func:`figure_path`; ``None`` for none)."""
    act = resolve_activation(activation)
    scheme = finite_width_scheme(act)
    h = "#" * level
    exact = bool(act.traits.exact_at_finite_width)
    lines = [f"{h} Finite width", "",
             f"At width $n$ a network's layer scale $\\hat q_l = \\sigma_b^2 + \\sigma_w^2 "
             f"\\sum_j a_{{l-1,j}}^2$ fluctuates across networks; the delta method in $\\hat q_l$ "
             f"gives the ensemble moments to $O(1/n)$ (Yaida 2020; Roberts, Yaida & Hanin 2022). "
             f"Scheme here: {_label(scheme)}, zero bias, input variance 1.", "",
             f"{h}# The corrected recursion", ""]
    for text, eq in _quiet(lambda: finite_width_steps(act)):
        lines.append(f"- {text}: $${sp.latex(eq, symbol_names=FINITE_WIDTH_LATEX)}$$")
    lines.append("")
    recs = _records(act, scheme, store, budget, tick)
    rows, facts = _rows(act, scheme, recs)
    lines += [f"{h}# Mean field, corrected and Monte Carlo: $E[a_L^2]$", "",
              "| width | depth | mean field | 1/n corrected | Monte Carlo (± se) "
              "| predicted shift "
              "| measured shift | allowance | mean field | corrected |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    reps = {n: (recs[n] or {}).get("replicates") for n in FW_WIDTHS}
    lines += ["", _summary(act, facts, exact) + " Monte Carlo: "
              + ", ".join(f"{r} networks at width {n}" for n, r in reps.items() if r)
              + " (`simulate`, Gaussian shortcut); verdicts from the 99% interval of the mean "
              "against the allowance and $\\pm 5\\%$.", ""]
    if figure is not None:
        lines += [f"{h}# Per-network spread", "",
                  f"![spread of one network's mean square]({figure})",
                  "", _figure_sentence(act, scheme, recs.get(FIGURE_WIDTH)), ""]
    return lines


def _band(act: Activation, scheme: InitScheme) -> dict[str, list[float]]:
    """Predicted 10%, 50%, 90% quantiles of one network's mean square of :math:`z_l` at
    :data:`FIGURE_WIDTH` for the figure's layers (NaN where there is no prediction): computed
    once for the figure and its sentence (a few seconds of quantiles)."""
    return {p: list(v) for p, v in _band_cached(act, scheme).items()}


@lru_cache(maxsize=16)
def _band_cached(act: Activation, scheme: InitScheme) -> dict[str, tuple[float, ...]]:
    out: dict[str, list[float]] = {"0.1": [], "0.5": [], "0.9": []}
    for layer in _FIGURE_LAYERS:
        try:
            d = _quiet(lambda layer=layer: predict_distribution(
                act, scheme, fan_in=FIGURE_WIDTH, depth=max(_FIGURE_LAYERS), layer=layer))
            for p in out:
                out[p].append(float(d.quantile(float(p))))
        except (VarpropError, ArithmeticError, ValueError):
            for p in out:
                out[p].append(math.nan)
    return {p: tuple(v) for p, v in out.items()}


def _figure_sentence(act: Activation, scheme: InitScheme, rec: Any) -> str:
    if rec is None or "networks" not in rec:
        return "(no Monte Carlo record for the figure)"
    band = _band(act, scheme)
    nets = np.asarray(rec["networks"], dtype=float)
    inside = total = 0
    for i, layer in enumerate(_FIGURE_LAYERS):
        lo, hi = band["0.1"][i], band["0.9"][i]
        if math.isfinite(lo) and math.isfinite(hi):
            col = nets[:, layer - 1]
            inside += int(np.sum((col >= lo) & (col <= hi)))
            total += col.size
    share = f"{100 * inside / total:.3g}%" if total else "n/a"
    return (f"Width {FIGURE_WIDTH}: predicted 10-90% band of one network's $\\overline{{z_l^2}}$ "
            f"(`predict_distribution`) and {nets.shape[0]} simulated networks; {share} of their "
            f"{total} points at the shown layers fall inside the band (80% expected).")


def finite_width_figure(activation: Activation | str, *, store: MonteCarloStore, budget: Budget,
                        kind: str = "svg") -> str | bytes | None:
    """The spread figure (SVG text or PDF bytes), ``None`` without matplotlib or a record."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    act = resolve_activation(activation)
    scheme = finite_width_scheme(act)
    rec = _records(act, scheme, store, budget, lambda: None).get(FIGURE_WIDTH)
    if rec is None or "networks" not in rec:
        return None
    band = _band(act, scheme)
    nets = np.asarray(rec["networks"], dtype=float)
    layers = np.arange(1, nets.shape[1] + 1)
    style = {"svg.hashsalt": "varprop", "svg.fonttype": "none", "font.size": 9,
             "path.simplify": False}
    with matplotlib.rc_context(style):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for row in nets:
            shown = np.where(row > 0, row, np.nan)
            ax.plot(layers, shown, "o", ms=1.5, color="0.45", alpha=0.6)
        ax.fill_between(_FIGURE_LAYERS, band["0.1"], band["0.9"], color="C0", alpha=0.25,
                        label="predicted 10-90%")
        ax.plot(_FIGURE_LAYERS, band["0.5"], color="C0", lw=1.2, label="predicted median")
        ax.set_yscale("log")
        plain_log_ticks(ax)
        ax.set_xlabel("layer $l$")
        ax.xaxis.get_major_locator().set_params(integer=True)  # layers are whole
        ax.set_ylabel("$\\overline{z_l^2}$ of one network")
        ax.set_title(f"{act.name}, {_label(scheme)}, width {FIGURE_WIDTH}: one network per point")
        ax.grid(True, which="major", lw=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        return save_figure(fig, kind)
