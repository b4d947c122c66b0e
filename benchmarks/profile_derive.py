"""Where ``varprop derive --all`` spends its time: every task of the folder
(:mod:`varprop.documents.parallel`) run one after the other in this process, from scratch, with
the CPU and wall seconds of each task and of each Monte Carlo record it computes.

Run:  python benchmarks/profile_derive.py [--json out.json] [--top 25] [--task KIND[/NAME]]

The records are listed most expensive first, then the tasks; the sum of the task times is the
CPU the folder costs on one worker (start-up excluded), the largest task the least wall time two
workers can reach without splitting it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from varprop.documents.common import ACTIVATIONS
from varprop.documents.pages import repository_pages
from varprop.documents.parallel import Task, _run
from varprop.documents.store import MonteCarloStore, budget


class TimedStore(MonteCarloStore):
    """A store that times each record it computes (CPU and wall seconds)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.times: dict[str, tuple[float, float]] = {}

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        if key in self.records:
            return super().get(key, compute)
        c0, w0 = time.process_time(), time.perf_counter()
        value = super().get(key, compute)
        self.times[key] = (time.process_time() - c0, time.perf_counter() - w0)
        return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the timings to this file")
    parser.add_argument("--top", type=int, default=25, help="how many records to list")
    parser.add_argument("--task", action="append", default=None,
                        help="only these tasks (e.g. activation/tanh, page/0, layers)")
    args = parser.parse_args()
    b = budget("default")
    pages = repository_pages()
    tasks = ([Task("activation", a) for a in ACTIVATIONS] + [Task("layers"), Task("architectures")]
             + [Task("page", str(i)) for i in range(len(pages))])
    if args.task:
        tasks = [t for t in tasks if (f"{t.kind}/{t.name}" if t.name else t.kind) in args.task]
    report: dict[str, Any] = {"tasks": {}, "records": {}}
    for task in tasks:
        store = TimedStore(budget_name=b.name)
        c0, w0 = time.process_time(), time.perf_counter()
        _run(task, store, b, "markdown", True, pages, lambda: None)
        name = f"{task.kind}/{task.name}" if task.name else task.kind
        report["tasks"][name] = (time.process_time() - c0, time.perf_counter() - w0)
        for key, t in store.times.items():
            report["records"][f"{name} :: {key}"] = t
        print(f"{name:<28} cpu {report['tasks'][name][0]:7.1f}  wall {report['tasks'][name][1]:7.1f}"
              f"  records {len(store.times)}", flush=True)
    total = sum(c for c, _ in report["tasks"].values())
    print(f"{'total':<28} cpu {total:7.1f}")
    print("most expensive records (cpu, wall):")
    for key, (c, w) in sorted(report["records"].items(), key=lambda kv: -kv[1][0])[:args.top]:
        print(f"  {c:7.2f} {w:7.2f}  {key}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
