r"""Verdict decisions and their reasons, built from each verdict's own numbers (for
:mod:`varprop.checking.check`).

A look's interval :math:`[lo, hi]` for :math:`r = \theta/\theta_0 - 1` (or for :math:`\theta`
when the prediction is 0) gives the status (:func:`_decision`) and a reason that quotes the
numbers it rests on: the deviation and its interval, the margin the interval contains and the
replicates that would resolve it, the skewness and the replicates the heavy-tail guard asks
for (:func:`_heavy_reason`), or how many replicates left the float range and where
(:func:`_range_reason`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from varprop.checking import stats as _stats

__all__: list[str] = []


def _range_reason(res: Any, valid: np.ndarray, backward: bool) -> str:
    """Why replicates are invalid: how many overflowed / underflowed, and where (from the
    per-replicate layers of the invalid replicates only)."""
    bad = ~valid
    over_f = np.asarray(res.nonfinite_layer_per_replicate)[bad]
    under_f = np.asarray(res.underflow_layer_per_replicate)[bad]
    parts = []
    n_over = int(np.count_nonzero(over_f > 0))
    n_under = int(np.count_nonzero((under_f > 0) & (over_f == 0)))
    if n_over:
        parts.append(f"{n_over} overflowed in the forward pass (first at layer "
                     f"{int(over_f[over_f > 0].min())})")
    if n_under:
        parts.append(f"{n_under} underflowed in the forward pass (first at layer "
                     f"{int(under_f[(under_f > 0) & (over_f == 0)].min())})")
    if backward:
        fwd_ok = (over_f == 0) & (under_f == 0)
        g_over = np.asarray(res.gradient_nonfinite_layer_per_replicate)[bad]
        g_under = np.asarray(res.gradient_underflow_layer_per_replicate)[bad]
        b_over = fwd_ok & (g_over > 0)
        b_under = fwd_ok & (g_under > 0) & ~b_over
        if b_over.any():
            parts.append(f"{int(b_over.sum())} overflowed in the backward pass (first at layer "
                         f"{int(g_over[b_over].max())})")
        if b_under.any():
            parts.append(f"{int(b_under.sum())} underflowed in the backward pass (first at layer "
                         f"{int(g_under[b_under].max())}): their values would be exact zeros "
                         "from underflow, not measurements")
    detail = "; ".join(parts) if parts else "invalid"
    fix = ("use dtype='float64' or a smaller depth" if res.dtype == "float32" else
           "float64 cannot represent these networks' values: a smaller depth, input or weight "
           "variance avoids it")
    return (f"values left the finite/normal range of {res.dtype} in {int(bad.sum())} of "
            f"{bad.size} replicates at this layer ({detail}): the statistic cannot be estimated "
            f"({fix})")


def _relative(iv: _stats.MeanInterval, theta0: float, scale: float) -> tuple[float, float, float]:
    """``(r_hat, lo, hi)`` of :math:`r = \\theta/\\theta_0 - 1` (or of :math:`\\theta` itself for a
    zero prediction, ``scale = 1``); a ratio beyond the float range is :math:`\\pm\\infty`."""
    with np.errstate(over="ignore", invalid="ignore"):
        return tuple(float((np.float64(x) - theta0) / scale)  # type: ignore[return-value]
                     for x in (iv.estimate, iv.lo, iv.hi))


def _fmt_r(x: float, relative: bool) -> str:
    """A deviation for a reason: ``+13.9%`` (relative) or ``+0.0123`` (absolute margins)."""
    if not relative:
        return f"{x:+.3g}"
    return f"{100 * x:+.3g}%" if math.isfinite(x) else ("+inf" if x > 0 else "-inf")


def _decision(r_hat: float, lo: float, hi: float, tol: float, rtol: float, relative: bool,
              final: bool, done: int, budget: int, planned_looks: int,
              confirm_within: bool = True) -> tuple[str, bool, str]:
    r"""``(status, within_allowance, reason)`` of one look, the reason built from its numbers.

    ``refuted`` if :math:`[lo, hi]` lies outside :math:`\pm` ``tol``; ``confirmed`` if inside
    :math:`\pm` ``rtol``; for an approximate claim (``tol > rtol``) ``confirmed`` *within the
    allowance* if inside :math:`\pm` ``tol`` and either wholly outside :math:`\pm` ``rtol``
    (measurably off: no number of replicates can change that) or at the last look (``final``);
    else ``inconclusive`` ("more replicates needed" with the estimated number, which assumes the
    half-width shrinks like :math:`1/\sqrt R`).  With ``confirm_within=False`` (a broad allowance
    that bounds the claim's error without deciding it, e.g. a finite-width claim out of the 1/n
    expansion's regime) the allowance can refute but not confirm: inside it and outside
    :math:`\pm` ``rtol`` is ``inconclusive``.
    """
    f = lambda x: _fmt_r(x, relative)  # noqa: E731
    what = "r" if relative else "theta"
    iv_text = f"{f(r_hat)} [{f(lo)}, {f(hi)}]"
    allow = f"{100 * tol:.3g}%" if relative else f"{tol:.3g}"
    status = _stats.decide(lo, hi, tol=tol, rtol=rtol)
    if status == "refuted":
        return status, False, (f"{what} = {iv_text} lies wholly outside the allowance "
                               f"+-{allow} of this prediction")
    if status == "confirmed":
        return status, False, (f"{what} = {iv_text} lies inside +-{_fmt_r(rtol, relative).lstrip('+')}"
                               " (TOST)")
    inside_tol = -tol <= lo and hi <= tol
    off = lo > rtol or hi < -rtol
    if tol > rtol and inside_tol and (off or final) and not confirm_within:
        return "inconclusive", False, (
            f"{what} = {iv_text}: inside the broad allowance +-{allow}, which can refute this "
            "claim but not confirm it (no prediction decides it here: see the allowance's "
            f"reason); +-{_fmt_r(rtol, relative).lstrip('+')} "
            + ("is excluded" if off else f"not resolved with {done} replicates"))
    if tol > rtol and inside_tol and (off or final):
        if off:
            return "confirmed", True, (f"off by {iv_text}, within the allowance of {allow} for "
                                       "this approximation")
        return "confirmed", True, (f"{what} = {iv_text}: within the allowance of {allow} for this "
                                   f"approximation; +-{_fmt_r(rtol, relative).lstrip('+')} not "
                                   f"resolved with {done} replicates")
    # inconclusive: the interval contains a margin; it decides once its half-width is below the
    # distance from the estimate to the nearest margin it contains
    margins = [m for m in (-tol, tol, -rtol, rtol) if lo <= m <= hi]
    half = max(r_hat - lo, hi - r_hat)
    gap = min(abs(r_hat - m) for m in margins) if margins else 0.0
    where = ", ".join(sorted({_fmt_r(m, relative) for m in margins}))
    if gap > 0 and math.isfinite(half) and half > 0:
        need = math.ceil(done * (half / gap) ** 2)
        more = (f"about {need} replicates would resolve it" if need < 1e15 else
                f"resolving it would take ~{need:.2g} replicates (the estimate sits practically on "
                "the margin)")
    else:
        more = "the estimate sits on the margin: no number of replicates is sure to resolve it"
    ended = (f"the budget of {budget} replicates is exhausted" if planned_looks > 1 else
             f"all {done} replicates given were used in one look")
    return "inconclusive", False, (f"{what} = {iv_text} contains the margin(s) {where}; {ended}; "
                                   f"{more} (more replicates needed)")


def _heavy_reason(iv: _stats.MeanInterval, x: np.ndarray, done: int, budget: int,
                  verdict_if_trusted: str, adaptive: bool,
                  previous: tuple[int, float] | None = None) -> str:
    r"""Why a heavy-tailed interval is not trusted, from its own numbers.

    ``previous`` is ``(replicates, skewness)`` of the look before.  If the shortfall
    ``need / replicates`` of Cochran's rule did not shrink between the two looks (the skewness
    estimate grows like :math:`\sqrt R`, as when the largest values dominate it), the reason says
    that more replicates are not expected to decide, instead of promising it."""
    need = _stats.replicates_needed(iv.skewness)
    share = ""
    if x.size and np.all(x >= 0) and float(np.sum(x)) > 0:
        share = (f"; the largest of {x.size} replicate values is "
                 f"{100 * float(np.max(x) / np.sum(x)):.3g}% of their sum")
    if math.isfinite(need):
        knob = "a larger budget=" if adaptive else "more replicates="
        prompt = f"{knob} may decide (more replicates needed)"
        if need > done and previous is not None:
            n0, g0 = previous
            need0 = _stats.replicates_needed(g0)
            rho0, rho = need0 / n0, need / done  # the shortfall factor of Cochran's rule
            if math.isfinite(need0) and rho >= rho0:
                prompt = (f"more replicates are not expected to decide: from {n0} to {done} "
                          f"replicates the skewness estimate went from {g0:.3g} to "
                          f"{iv.skewness:.3g} and the replicates it asks for from {need0:.0f} to "
                          f"{need:.0f}, keeping ahead of the sample (the largest values dominate it)")
            elif math.isfinite(need0) and done > n0:
                beta = math.log(rho0 / rho) / math.log(done / n0)
                log_projected = math.log(done) + math.log(rho) / beta
                projected = (f"about {math.exp(log_projected):.2g}" if log_projected < 50.0
                             else "more than 1e21")
                prompt = (f"the shortfall need/replicates fell from {rho0:.3g} (at {n0}) to "
                          f"{rho:.3g}; if it keeps falling at that rate, {projected} "
                          f"replicates would decide: {knob} may decide (more replicates needed)")
        tail = (f"skewness {iv.skewness:.3g} needs {need:.0f} replicates by Cochran's rule "
                f"(25 skewness^2), {done} were run" + (f" (budget {budget}); " if adaptive else "; ")
                + (prompt if need > done else
                   f"the bootstrap-t interval disagrees with it; {knob} may decide "
                   "(more replicates needed)"))
    else:
        tail = ("the log-scale variance of the statistic exceeds 700, so the guard's log-normal "
                "bound on its skewness is infinite and it would need more than any finite "
                "budget: no number of replicates makes this mean interval trusted by the guard")
    return (f"heavy-tailed: the interval (which alone would say {verdict_if_trusted}) cannot be "
            f"trusted: {tail}{share}")
