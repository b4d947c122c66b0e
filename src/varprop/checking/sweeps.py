r"""Sweeps that outgrow one machine: many :func:`~varprop.checking.check.verify` runs through any executor.

:func:`sweep` is the public face of :func:`varprop.checking.check.check_matrix` (the engine of
``varprop check``; one implementation): it expands a grid (activations x schemes x widths x
depths x quantities, ...) or takes a list of configurations, runs ``verify`` for each through a
:class:`concurrent.futures.Executor` -- local processes by default, in-process with
``workers=1``, or anything with ``submit`` such as a Dask cluster's
``distributed.Client(address).get_executor()`` -- and applies family-wise error control over
the whole sweep (Holm by default).

Reproducibility
---------------
Each configuration without an explicit ``seed`` is verified with
:func:`varprop.checking.check.config_seed(config, seed) <varprop.checking.check.config_seed>`, a seed derived from
the sweep's ``seed`` and a stable hash of the configuration itself (its sorted ``repr`` items).  It
does not depend on the executor, the number of workers, the order in which results arrive or the
position of the configuration in the sweep, so the verdicts are bit-identical however the sweep is
run.  (A configuration's verdict does depend on the family size through the family-wise level
``alpha / m``; pass ``correction="none"`` to check every configuration at ``alpha`` alone.)  The
hash sees the configuration as written: ``"he_normal"`` and ``init_scheme("he_normal")`` are
different keys, hence different (equally valid) streams.

Configurations cross process and machine boundaries by pickling; activations and init schemes
pickle by name and parameters (their ``__reduce__``) and are rebuilt on the worker.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from varprop._util.validation import (
    check_choice,
    check_nonnegative_int,
    check_positive_int,
    check_probability,
    did_you_mean,
    fail,
    fail_type,
)
from varprop.checking.check import Verdict, check_matrix, config_seed, verify

__all__ = ["sweep", "SweepResult", "expand_grid", "config_seed"]

_VERIFY_KEYS = tuple(inspect.signature(verify).parameters)


# ----------------------------------------------------------------------------------------------
# configurations
# ----------------------------------------------------------------------------------------------

def _is_alternatives(key: str, value: object) -> bool:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        return False
    if key == "widths":  # a grid of widths is a list of width lists
        items = list(value)  # type: ignore[call-overload]
        if items and all(isinstance(w, (int, np.integer)) for w in items):
            raise fail("widths", value, "in a grid, a list of width lists, e.g. "
                       "{'widths': [[64, 64, 64], [64, 128, 64]]}")
    return True


def expand_grid(grid: Mapping[str, object]) -> list[dict[str, object]]:
    """Cartesian product of a grid, in a stable order (keys as given, values as given).

    Each value is a sequence of alternatives (a string, number or scheme is a single value);
    ``widths`` takes a list of width lists.

    >>> grid = {"activation": ["relu", "tanh"], "init": "he_normal", "fan_in": [16, 32]}
    >>> expand_grid(grid)  # doctest: +NORMALIZE_WHITESPACE
    [{'activation': 'relu', 'init': 'he_normal', 'fan_in': 16},
     {'activation': 'relu', 'init': 'he_normal', 'fan_in': 32},
     {'activation': 'tanh', 'init': 'he_normal', 'fan_in': 16},
     {'activation': 'tanh', 'init': 'he_normal', 'fan_in': 32}]
    """
    if not isinstance(grid, Mapping):
        raise fail_type("configs", grid, "a grid mapping or a list of configuration mappings")
    keys = list(grid)
    axes = [list(v) if _is_alternatives(k, v) else [v]  # type: ignore[call-overload]
            for k, v in grid.items()]
    for k, axis in zip(keys, axes):
        if not axis:
            raise fail(f"configs[{k!r}]", grid[k], "a non-empty list of alternatives")
    return [dict(zip(keys, combo)) for combo in itertools.product(*axes)]


def _check_config(i: int, config: object, common: Mapping[str, object]) -> dict[str, object]:
    if not isinstance(config, Mapping):
        raise fail_type(f"configs[{i}]", config, "a mapping of verify() keyword arguments")
    merged = {**common, **config}
    for key in merged:
        if key == "alpha":
            raise fail(f"configs[{i}]['alpha']", merged[key],
                       "no per-configuration alpha: the level is family-wise, sweep(alpha=...)")
        if key not in _VERIFY_KEYS:
            raise fail(f"configs[{i}]", key, f"keys among verify()'s arguments {list(_VERIFY_KEYS)}"
                       f"{did_you_mean(str(key), _VERIFY_KEYS)}")
    for key in ("activation", "init"):
        if key not in merged:
            raise fail(f"configs[{i}]", dict(config), f"a configuration with an {key!r} entry")
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in merged.items()}


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------

def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": strict JSON
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _label(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


@dataclass(frozen=True, eq=False)
class SweepResult(Sequence["Verdict | str"]):
    """Verdicts of a sweep, in configuration order (a sequence of :class:`~varprop.checking.check.Verdict`;
    a configuration that could not be checked, e.g. because its prediction overflows, holds an
    error string instead).

    Two results are equal (``==``) when everything but the timings is equal: the bit-identity
    of sweeps run on different executors is ``serial == parallel``.

    Attributes
    ----------
    configs : tuple of dict
        The configurations (with the sweep's common arguments merged in).
    verdicts : tuple of Verdict or str
    seed : int
        The sweep's root seed (configuration seeds: ``verdict.seed``).
    alpha : float
        Family-wise error level.
    correction : str
        ``"holm"``, ``"bonferroni"`` or ``"none"``.
    elapsed : float
        Wall-clock seconds.
    executor : str
        What ran it (``"serial"``, ``"ProcessPoolExecutor(2)"``, ``"ClientExecutor"``, ...).
    """

    configs: tuple[dict[str, object], ...]
    verdicts: tuple[Verdict | str, ...]
    seed: int
    alpha: float
    correction: str
    elapsed: float = field(default=0.0)
    executor: str = field(default="serial")

    def __len__(self) -> int:
        return len(self.verdicts)

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self.verdicts[index]

    def __iter__(self) -> Iterator[Verdict | str]:
        return iter(self.verdicts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SweepResult):
            return NotImplemented
        return self.to_dict(timing=False) == other.to_dict(timing=False)

    __hash__ = None  # type: ignore[assignment]

    def counts(self) -> dict[str, int]:
        """Number of verdicts per status (and ``error`` for configurations that failed)."""
        out = {"confirmed": 0, "refuted": 0, "inconclusive": 0, "error": 0}
        for v in self.verdicts:
            key = v.status if isinstance(v, Verdict) else "error"
            out[key] = out.get(key, 0) + 1
        return out

    @property
    def any_refuted(self) -> bool:
        """True if some configuration was refuted (``varprop check`` exits with status 1)."""
        return any(isinstance(v, Verdict) and v.status == "refuted" for v in self.verdicts)

    def to_dict(self, *, timing: bool = True) -> dict[str, object]:
        """Plain data; with ``timing=False`` only what is reproducible bit for bit."""
        results = []
        for c, v in zip(self.configs, self.verdicts):
            if isinstance(v, Verdict):
                d = v.to_dict()
                if not timing:
                    d.pop("elapsed", None)
                results.append({"config": _jsonable(c), "verdict": _jsonable(d)})
            else:
                results.append({"config": _jsonable(c), "error": v})
        out: dict[str, object] = {"seed": self.seed, "alpha": self.alpha,
                                  "correction": self.correction, "counts": self.counts(),
                                  "results": results}
        if timing:
            out["elapsed"] = self.elapsed
            out["executor"] = self.executor
        return out

    def to_json(self, *, timing: bool = True, indent: int | None = None) -> str:
        """JSON text (strict: non-finite numbers as strings)."""
        return json.dumps(self.to_dict(timing=timing), indent=indent)

    def table(self) -> str:
        """A plain-text table, one row per configuration."""
        rows = [("status", "activation", "init", "shape", "quantity", "estimate", "predicted",
                 "rel. error [interval]")]
        for c, v in zip(self.configs, self.verdicts):
            if c.get("widths") is not None:
                shape = f"widths={list(c['widths'])}"  # type: ignore[call-overload]
            else:
                n_in, n_out = c.get("fan_in"), c.get("fan_out") or c.get("fan_in")
                shape = f"n={n_in}->{n_out} L={c.get('depth', 1)}"
            base = (_label(c["activation"]), _label(c["init"]), shape,
                    str(c.get("quantity", "activation")))
            if not isinstance(v, Verdict):
                rows.append(("error",) + base + ("", "", v))
                continue
            if v.relative_interval is not None and v.relative_error is not None:
                lo, hi = v.relative_interval
                rel = f"{v.relative_error:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            elif v.interval is not None:
                rel = f"abs. [{v.interval[0]:.3g}, {v.interval[1]:.3g}]"
            else:
                rel = "no estimate"
            est = "-" if v.estimate is None else f"{v.estimate:.4g}"
            rows.append((v.status,) + base + (est, f"{v.predicted:.4g}", rel))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n or s != "error")
        lines.append(f"{len(self)} configurations: {counts} ({self.correction} at family-wise "
                     f"alpha={self.alpha:g}; {self.elapsed:.2f} s, {self.executor})")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------------------

def sweep(
    configs: Mapping[str, object] | Iterable[Mapping[str, object]],
    *,
    executor: Executor | None = None,
    workers: int | None = None,
    seed: int = 0,
    alpha: float = 0.01,
    correction: Literal["holm", "bonferroni", "none"] = "holm",
    progress: bool | Callable[[int, int], object] = False,
    **common: object,
) -> SweepResult:
    r"""Run :func:`~varprop.checking.check.verify` over many configurations, on any executor.

    Parameters
    ----------
    configs : mapping or iterable of mappings
        Either a grid, e.g. ``{"activation": ["relu", "tanh"], "init": ["he_normal",
        "orthogonal"], "fan_in": [64, 256], "depth": [1, 10], "quantity": ["activation",
        "gradient"]}`` (the Cartesian product in the order given, see :func:`expand_grid`), or a
        list of configurations, each a mapping of ``verify`` keyword arguments (``activation`` and
        ``init`` required; ``fan_in``, ``fan_out``, ``widths``, ``depth``, ``quantity``,
        ``layer``, ``rtol``, ``replicates``, ``target``, ...; not ``alpha``).
    executor : concurrent.futures.Executor, optional
        Where to run: anything with ``submit`` returning futures, e.g. ``ProcessPoolExecutor(4)``
        or a Dask cluster's ``distributed.Client(address).get_executor()``.  It is used, not shut
        down.  Default: a local ``ProcessPoolExecutor`` with ``workers`` processes, or
        in-process when ``workers == 1`` or there is a single configuration.
    workers : int, optional
        Local processes when ``executor`` is None (default ``os.cpu_count()``).
    seed : int, default 0
        Root seed; a configuration gets :func:`config_seed(config, seed) <config_seed>` unless it
        has its own ``seed``.
    alpha : float, default 0.01
        Family-wise error level: the probability that any true prediction of the sweep is refuted
        is at most ``alpha`` (each check runs at ``alpha / m``, then ``correction`` applies).
    correction : {"holm", "bonferroni", "none"}
    progress : bool or callable, default False
        ``True``: a ``tqdm`` progress bar (if tqdm is installed); a callable is called as
        ``progress(done, total)``.
    **common
        ``verify`` keyword arguments added to every configuration (a configuration's own entries
        win), e.g. ``rtol=0.05, replicates=200``.

    Returns
    -------
    SweepResult
        The verdicts in configuration order, with ``counts()``, ``table()`` and ``to_json()``;
        bit-identical for every executor and number of workers.

    Examples
    --------
    >>> res = sweep({"activation": ["relu", "linear"], "init": "he_normal", "fan_in": 16,
    ...              "depth": [1, 2]}, workers=1, replicates=200)  # doctest: +SKIP
    >>> print(res.table())  # doctest: +SKIP
    """
    seed = check_nonnegative_int("seed", seed)
    alpha = check_probability("alpha", alpha)
    correction = check_choice(  # type: ignore[assignment]
        "correction", correction, ("holm", "bonferroni", "none"))
    if workers is not None:
        workers = check_positive_int("workers", workers)
    if executor is not None:
        if workers is not None:
            raise fail("workers", workers,
                       "None when an executor is given (it has its own workers)")
        if not callable(getattr(executor, "submit", None)):
            raise fail_type("executor", executor, "a concurrent.futures.Executor (with submit())")
    if isinstance(configs, Mapping):
        raw: list[object] = list(expand_grid(configs))
    elif isinstance(configs, (str, bytes)) or not isinstance(configs, Iterable):
        raise fail_type("configs", configs, "a grid mapping or a list of configuration mappings")
    else:
        raw = list(configs)
    if not raw:
        raise fail("configs", configs, "at least one configuration")
    cfgs = [_check_config(i, c, common) for i, c in enumerate(raw)]

    bar, callback = _progress(progress, len(cfgs))
    start = time.perf_counter()
    try:
        if executor is None:
            n_workers = min(workers if workers is not None else (os.cpu_count() or 1), len(cfgs))
            if n_workers == 1:
                results = check_matrix(cfgs, alpha=alpha, correction=correction, seed=seed,
                                       progress=callback)
                name = "serial"
            else:
                with ProcessPoolExecutor(max_workers=n_workers) as pool:
                    results = check_matrix(cfgs, executor=pool, alpha=alpha,
                                           correction=correction, seed=seed, progress=callback)
                name = f"ProcessPoolExecutor({n_workers})"
        else:
            results = check_matrix(cfgs, executor=executor, alpha=alpha, correction=correction,
                                   seed=seed, progress=callback)
            name = type(executor).__name__
    finally:
        if bar is not None:
            bar.close()
    return SweepResult(configs=tuple(cfgs), verdicts=tuple(results), seed=seed, alpha=alpha,
                       correction=correction, elapsed=time.perf_counter() - start, executor=name)


def _progress(progress: object, total: int) -> tuple[Any, Callable[[int, int], object] | None]:
    if callable(progress):
        return None, progress  # type: ignore[return-value]
    if progress is False or progress is None:
        return None, None
    if progress is not True:
        raise fail_type("progress", progress, "a bool or a callable progress(done, total)")
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - optional dependency
        return None, None
    bar = tqdm(total=total, desc="varprop sweep", unit="config")

    def update(done: int, _total: int) -> None:
        bar.n = done
        bar.refresh()

    return bar, update
