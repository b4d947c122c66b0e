r"""From measurements and predictions to the rows of an :class:`~varprop.torch.report.AuditReport`:
the verdicts (varprop's checker on the replicate values, Bonferroni over the report) and the
warnings (a signal or gradient changing by more than 10x across the model; a parameter law that
differs from what the re-initialisation draws).

Each prediction's allowance ``tol`` is :func:`varprop.checking.allowance.network_allowance` of
the mapped network at the top-level position that contains the site: 0 (plus the float floor:
:math:`10^{-4}` for a float32 model) where every layer the statistic passes through keeps the
second-moment identity exact at finite width, else :math:`2\sum 1/n` over the weight layers it
passes (their channel counts for convolutions) plus
:data:`~varprop.checking.allowance.APPROXIMATION_ALLOWANCE` per declared approximation.  A site
nested in a block is judged with the allowance of the whole block (it passes through no more
layers than that), a conservative choice.

A broad allowance (the :math:`2\sum 1/n` rule, where no 1/n expansion decides the claim) can
refute a prediction but not confirm it: an interval inside it but not inside :math:`\pm` ``rtol``
is ``inconclusive`` (``verify_replicates(..., confirm_within=False)``), so ``confirmed`` means
inside :math:`\pm` ``rtol`` or inside an allowance that decides the claim (exact, or the next
order of the 1/n expansion in its regime).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from varprop.checking.allowance import BROAD_ALLOWANCE, network_allowance
from varprop.checking.replicates import verify_replicates
from varprop.checking.stats import mean_interval
from varprop.torch.report import AuditRow, PassResult

__all__ = ["build_rows", "change_warnings", "law_warnings", "GROWTH_WARNING"]

#: A forward signal or gradient second moment that changes by more than this factor between the
#: first and the last site (or ranges over more than it) gets a warning.
GROWTH_WARNING = 10.0

def _interval(x: np.ndarray, alpha: float, seed: int) -> tuple[float, float] | None:
    if x.size < 2 or not np.all(np.isfinite(x)):
        return None
    iv = mean_interval(x, alpha, rng=np.random.default_rng([seed, 7]))
    return float(iv.lo), float(iv.hi)


def _verdict_pass(x: np.ndarray, predicted: float, *, net: Any, position: int, backward: bool,
                  alpha: float, rtol: float, seed: int, dtype: str, name: str) -> PassResult:
    tol, why = network_allowance(net, position, backward, method="auto",
                                 predicted_value=predicted, dtype=dtype)
    sym = "(dL/dy)^2" if backward else "y^2"
    v = verify_replicates(x, predicted, tol=tol, rtol=rtol, alpha=alpha, seed=seed,
                          confirm_within=BROAD_ALLOWANCE not in why,
                          statistic=f"E[mean {sym}] at {name}",
                          description=f"ensemble mean over re-initialisations of the mean of "
                                      f"{sym} over all entries of {name}'s output",
                          assumptions=why, quantity="output_gradient" if backward else "output",
                          layer=position)
    measured = float(np.mean(x)) if np.all(np.isfinite(x)) else None
    iv = None if v.interval is None else (float(v.interval[0]), float(v.interval[1]))
    return PassResult(float(predicted), measured, iv, v.status, v.reason, float(tol))


def build_rows(sites: Sequence[Any], predictions: Sequence[tuple[float | None, float | None]],
               data: Any, *, net: Any, backward: bool, alpha: float, rtol: float, seed: int,
               dtype: str, unmeasured: Sequence[int]) -> tuple[tuple[AuditRow, ...], int]:
    """The rows and the number of verdicts ``alpha`` was split over (Bonferroni)."""
    missing = set(unmeasured)

    def column(kind: str, i: int) -> np.ndarray | None:
        return None if i in missing else data.column(kind, i)

    tests = 0
    for i, site in enumerate(sites):
        for b, kind in ((0, "forward"), (1, "backward")):
            if b and not backward:
                continue
            if predictions[i][b] is not None and site.path is not None and not site.measured \
                    and column(kind, i) is not None:
                tests += 1
    each = alpha / max(tests, 1)
    rows = []
    for i, site in enumerate(sites):
        passes = []
        for b, kind in ((0, "forward"), (1, "backward")):
            x = column(kind, i)
            pred = predictions[i][b]
            if b and not backward:
                passes.append(PassResult(None, None, None, "not run", "backward=False"))
            elif x is None:
                passes.append(PassResult(pred, None, None, "not measured",
                                         "the site's output was not seen in the replicates"))
            elif site.measured:
                passes.append(PassResult(None, float(np.mean(x)), _interval(x, each, seed),
                                         "measured", "unsupported module: its moments were "
                                         "measured in the replicates and passed through"))
            elif pred is None or site.path is None:
                passes.append(PassResult(None, float(np.mean(x)), _interval(x, each, seed),
                                         "no prediction", site.note or "no prediction here"))
            else:
                passes.append(_verdict_pass(x, pred, net=net, position=int(site.path[0]) + 1,
                                            backward=bool(b), alpha=each, rtol=rtol, seed=seed,
                                            dtype=dtype, name=site.name))
        rows.append(AuditRow(site.name, site.kind, tuple(site.shape), passes[0], passes[1],
                             site.note or ""))
    return tuple(rows), tests


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def change_warnings(rows: Sequence[AuditRow]) -> list[str]:
    r"""A warning per pass and source (predicted, measured) where the second moment changes by
    more than :data:`GROWTH_WARNING` between the first and the last site that has a value (for
    the gradient: from the last site back to the first), or ranges over more than it."""
    out = []
    for which in ("forward", "backward"):
        for source in ("predicted", "measured"):
            pts = [(r.name, getattr(getattr(r, which), source)) for r in rows]
            pts = [(n, v) for n, v in pts if v is not None and math.isfinite(v) and v > 0]
            if len(pts) < 2:
                continue
            (n0, v0), (n1, v1) = pts[0], pts[-1]
            what = ("forward signal E[y^2]" if which == "forward" else
                    "gradient E[(dL/dy)^2]")
            if which == "forward":
                change, a, b, va, vb = v1 / v0, n0, n1, v0, v1
                path = f"from the first site `{a}` ({_fmt(va)}) to the last `{b}` ({_fmt(vb)})"
            else:
                change, a, b, va, vb = v0 / v1, n1, n0, v1, v0
                path = (f"from the last site `{a}` ({_fmt(va)}) back to the first `{b}` "
                        f"({_fmt(vb)})")
            lo = min(pts, key=lambda p: p[1])
            hi = max(pts, key=lambda p: p[1])
            if change > GROWTH_WARNING or change < 1 / GROWTH_WARNING:
                verb = "grows" if change > 1 else "shrinks"
                factor = change if change > 1 else 1 / change
                out.append(f"the {what} {verb} {factor:.3g}x {path} ({source})")
            elif hi[1] / lo[1] > GROWTH_WARNING:
                out.append(f"the {what} ranges over {hi[1] / lo[1]:.3g}x across the model: "
                           f"smallest at `{lo[0]}` ({_fmt(lo[1])}), largest at `{hi[0]}` "
                           f"({_fmt(hi[1])}) ({source})")
    return out


def law_warnings(before: Sequence[tuple[str, tuple[int, float, float]]],
                 after: dict[str, tuple[int, float, float]], how: str) -> list[str]:
    r"""A warning when the model's parameters (``before``) look drawn from another law than the
    re-initialisation (``after``, one replicate): the variances of a tensor of :math:`n` entries
    differ by more than :math:`\max(1.5, e^{6\sqrt{2/n}})` (six standard errors of a Gaussian
    log-variance), one of them is constant and the other is not, or constant tensors differ.
    Each tensor is given by its :math:`(n, \text{mean}, \text{variance})` (population variance;
    :func:`varprop.torch.audit` computes them streaming, without a copy of the tensor)."""
    odd = []
    for name, (n, mx, vx) in before:
        found = after.get(name)
        if found is None or n < 2 or found[0] != n:
            continue
        _, my, vy = found
        if vx > 0 and vy > 0:
            if abs(math.log(vx / vy)) > max(math.log(1.5), 6 * math.sqrt(2.0 / n)):
                odd.append((name, f"variance {vx:.3g} now, {vy:.3g} after {how}"))
        elif (vx > 0) != (vy > 0):
            odd.append((name, f"variance {vx:.3g} now, {vy:.3g} after {how}"))
        elif mx != my:
            odd.append((name, f"constant {mx:.3g} now, {my:.3g} after {how}"))
    if not odd:
        return []
    examples = "; ".join(f"`{n}`: {w}" for n, w in odd[:3])
    return [f"{len(odd)} parameter tensor(s) of the model follow another law than {how} draws "
            f"(e.g. {examples}): the audit predicts and measures the model as {how} "
            "initialises it, not as it is now; to audit the model's own init, pass "
            "reinit=... (for a Hugging Face transformers model: "
            "reinit=lambda m: m.apply(m._init_weights))"]
