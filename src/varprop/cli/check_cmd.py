"""``varprop check``: Monte-Carlo-check the predictions over a matrix of configurations.

Examples::

    varprop check --activation relu --init he_normal --fan-in 64 --depth 5
    varprop check --quick --json
    varprop check --activation tanh,sigmoid --quantity gradient --workers 2
    varprop check --scheduler tcp://127.0.0.1:8786        # a Dask cluster (needs distributed)

Exit status: 0 nothing refuted, 1 something refuted, 2 bad usage (or a configuration that could
not be checked at all).  The family-wise error (Holm
over the whole matrix) is at most ``--alpha``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from varprop._util.validation import check_choice
from varprop.checking.check import QUANTITIES, Verdict, check_matrix, default_matrix
from varprop.components.activations import resolve_activation
from varprop.components.named import build_named
from varprop.components.schemes import resolve_scheme
from varprop.errors import InvalidArgument


class _Progress:
    """tqdm if installed, else a counter on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc="varprop check", unit="check", file=sys.stderr)
            except ImportError:  # pragma: no cover - tqdm is installed in CI
                self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        else:  # pragma: no cover
            print(f"\r{done}/{total}", end="" if done < total else "\n", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _executor(args: argparse.Namespace) -> tuple[Any, Any]:
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise InvalidArgument(
                f"scheduler={args.scheduler!r} is not allowed: the Dask 'distributed' package is "
                "not installed (pip install distributed)") from None
        try:
            client = Client(args.scheduler, timeout=30)
        except (OSError, TimeoutError) as exc:
            raise InvalidArgument(f"scheduler={args.scheduler!r} is not allowed: no Dask scheduler "
                                  f"answered there ({type(exc).__name__}: {exc})") from None
        return client.get_executor(), client
    if args.workers < 1:
        raise InvalidArgument(f"workers={args.workers!r} is not allowed: an integer >= 1")
    if args.workers == 1:
        return None, None
    pool = ProcessPoolExecutor(max_workers=args.workers)
    return pool, pool


def run(args: argparse.Namespace) -> int:
    common: dict[str, Any] = {"rtol": args.rtol}
    if args.budget is not None:
        common["budget"] = args.budget
    elif args.quick:
        common["budget"] = 4096
    # bad options are usage errors (exit 2) before any simulation, not rows of errors (rtol,
    # alpha, seed and budget are checked by their parsers)
    for name in args.activation or []:
        resolve_activation(build_named("activation", name))
    for name in args.init or []:
        resolve_scheme(build_named("init", name))
    for name in args.quantity or []:
        check_choice("quantity", name, QUANTITIES)
    configs = default_matrix(activations=args.activation, inits=args.init,
                             fan_ins=args.fan_in, depths=args.depth, quantities=args.quantity,
                             quick=args.quick, **common)
    executor, owner = _executor(args)
    bar = _Progress(len(configs), enabled=not args.no_progress)
    try:
        results = check_matrix(configs, executor=executor, alpha=args.alpha, seed=args.seed,
                               progress=bar)
    finally:
        bar.close()
        if owner is not None:
            (owner.shutdown if hasattr(owner, "shutdown") else owner.close)()
    if args.json:
        rows = [{"config": cfg, "verdict": r.to_dict() if isinstance(r, Verdict) else None,
                 "error": None if isinstance(r, Verdict) else r}
                for cfg, r in zip(configs, results)]
        counts = {s: sum(isinstance(r, Verdict) and r.status == s for r in results)
                  for s in ("confirmed", "refuted", "inconclusive")}
        print(json.dumps({"alpha": args.alpha, "seed": args.seed, "correction": "holm",
                          "counts": counts, "errors": sum(not isinstance(r, Verdict) for r in results),
                          "results": rows}, indent=2))
        return _status(results)
    if args.csv:
        _print_csv(configs, results)
        return _status(results)
    header = (f"{'activation':<11} {'init':<21} {'n':>5} {'L':>3} {'quantity':<15} "
              f"{'predicted':>11} {'estimate':>11} {'rel. interval':>21} {'reps':>7}  verdict")
    print(header)
    print("-" * len(header))
    for cfg, r in zip(configs, results):
        left = (f"{cfg['activation']:<11} {cfg['init']:<21} {cfg['fan_in']:>5} {cfg['depth']:>3} "
                f"{cfg['quantity']:<15}")
        if not isinstance(r, Verdict):
            print(f"{left} {'':>11} {'':>11} {'':>21} {'':>7}  error: {r}")
            continue
        if r.relative_interval is not None:
            rel = f"[{r.relative_interval[0]:+.3f}, {r.relative_interval[1]:+.3f}]"
        elif r.interval is not None:
            rel = f"abs [{r.interval[0]:.2g}, {r.interval[1]:.2g}]"
        else:
            rel = "no estimate"
        extra = (" (within the allowance)" if r.within_allowance else "") if r.status == "confirmed" \
            else f" ({r.reason.split(':')[0]})"
        est = "-" if r.estimate is None else f"{r.estimate:.5g}"
        print(f"{left} {r.predicted:>11.5g} {est:>11} {rel:>21} {r.replicates:>7}  "
              f"{r.status}{extra}")
    counts = {s: sum(isinstance(r, Verdict) and r.status == s for r in results)
              for s in ("confirmed", "refuted", "inconclusive")}
    print(f"\n{counts['confirmed']} confirmed, {counts['refuted']} refuted, "
          f"{counts['inconclusive']} inconclusive of {len(results)} "
          f"(Holm family-wise alpha={args.alpha}, seed={args.seed})")
    return _status(results)


#: the columns of ``--csv``
CSV_COLUMNS = ("activation", "init", "fan_in", "depth", "quantity", "predicted", "estimate",
               "relative_low", "relative_high", "replicates", "status", "error")


def _print_csv(configs: list[dict[str, Any]], results: list[Verdict | str]) -> None:
    """One CSV row per configuration (empty cells where there is no value)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for cfg, r in zip(configs, results):
        left = [cfg["activation"], cfg["init"], cfg["fan_in"], cfg["depth"], cfg["quantity"]]
        if not isinstance(r, Verdict):
            writer.writerow(left + [""] * 6 + [r])
            continue
        rel = r.relative_interval or ("", "")
        writer.writerow(left + [repr(r.predicted), "" if r.estimate is None else repr(r.estimate),
                                rel[0], rel[1], r.replicates, r.status, ""])


def _status(results: list[Verdict | str]) -> int:
    """1 if anything is refuted, else 2 if some configuration could not be checked, else 0."""
    if any(isinstance(r, Verdict) and r.refuted for r in results):
        return 1
    return 2 if any(not isinstance(r, Verdict) for r in results) else 0
