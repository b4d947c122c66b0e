r"""Families of checks: :func:`verify_many` with family-wise error control (Holm or Bonferroni
over the look-adjusted p-values), the default matrix of ``varprop check`` and
:func:`check_matrix` (the engine of ``varprop check`` and :func:`varprop.sweep`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from varprop._util.validation import (
    check_choice,
    check_nonnegative_int,
    check_probability,
    fail,
    fail_type,
)
from varprop.checking import stats as _stats
from varprop.checking.plan import _look_seed
from varprop.checking.verdict import Verdict
from varprop.checking.verify import verify
from varprop.components.named import build_named
from varprop.errors import VarpropError
from varprop.network.quantities import QUANTITIES

__all__ = ["verify_many", "check_matrix", "default_matrix", "holm", "config_seed",
           "DEFAULT_INITS"]


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

    Defaults: the six original activations (:data:`DEFAULT_ACTIVATIONS`; the framework-named
    ones such as ``selu`` or ``gelu`` run only when named, to keep the default run short); the
    named zero-mean schemes (lecun, xavier, he, normal and uniform, orthogonal,
    torch_linear_default; not ``standard_normal`` or ``uniform(0, 1)``, whose variances explode
    with depth); widths 64 and 256 (``quick``: 64);
    depths 1 and 5 (``quick``: 3); quantities preactivation, activation, gradient.  Any name
    may be given explicitly.  ``common`` is added to every configuration (e.g. ``rtol``).
    """
    acts = list(activations) if activations else list(DEFAULT_ACTIVATIONS)
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


#: The activations ``varprop check`` runs when none is named.
DEFAULT_ACTIVATIONS: tuple[str, ...] = ("linear", "relu", "leaky_relu", "tanh", "sigmoid", "erf")
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
