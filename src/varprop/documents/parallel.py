"""Building the documents of ``varprop derive --all`` on several cores.

The folder splits into independent tasks: one per activation document, the layer documents, the
worked architectures and each extra page of the checkout.  An extra page is one opaque
``build`` (the longest task may be one), so it is split by its Monte Carlo records:
part ``k`` of ``n`` runs the page with a store that computes only every ``n``-th record it has
not seen (:class:`PartStore`), and the page is then rendered once from the merged record.  Every Monte Carlo record has its own
seed (a hash of its key), so a task gives the same numbers in any process and in any order:
:func:`run_tasks` runs the tasks in a :class:`concurrent.futures.ProcessPoolExecutor` (the
longest first), each worker on a copy of the shared record, and merges the records the workers
computed back into the one :class:`~varprop.documents.store.MonteCarloStore`; the output is byte
for byte that of one process.  The workers keep freed memory mapped
(:func:`varprop._util.allocator.retain_freed_memory`, a process-wide allocator setting applied
only in them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from varprop._util.allocator import retain_freed_memory
from varprop._util.validation import check_positive_int
from varprop.documents.activation import _activation_document
from varprop.documents.architectures import architectures_page
from varprop.documents.common import Format, GeneratedFile
from varprop.documents.layers import layer_documents
from varprop.documents.pages import Page, repository_pages
from varprop.documents.store import Budget, MonteCarloStore

__all__ = ["Task", "TaskResult", "default_workers", "run_tasks"]

#: CPU seconds of each task from scratch (default budget, measured on a busy 2-core machine by
#: running the tasks one by one), to start the longest first.
_COST = {"page": 25.0, "page-part": 11.0, "activation/leaky_relu": 26.0, "activation/tanh": 20.0,
         "activation/relu": 17.0, "activation/erf": 14.0, "activation/linear": 12.0,
         "architectures": 12.0, "activation/sigmoid": 9.0, "layers": 5.0}


def default_workers() -> int:
    """The cores this process may use (``os.sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class PartStore(MonteCarloStore):
    """A store for part ``part`` of ``parts`` of a page's Monte Carlo: of the records it does not
    hold, it computes those whose position among them (in the order the page asks) is ``part``
    modulo ``parts`` and answers ``None`` for the others, as a frozen store would."""

    def __init__(self, records: dict[str, Any], *, budget_name: str, part: int,
                 parts: int) -> None:
        super().__init__(records, budget_name=budget_name)
        self.part, self.parts, self.asked = part, parts, 0

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.records:
            mine = self.asked % self.parts == self.part
            self.asked += 1
            if not mine:
                self.used.add(key)
                return None
        return super().get(key, compute)


def page_part(page: Page, records: dict[str, Any], b: Budget, part: int, parts: int
              ) -> dict[str, Any]:
    """The records part ``part`` of ``parts`` of ``page`` computes (the page's text is dropped:
    it is rendered once all parts are merged).  A page that cannot run without the records of
    other parts stops early; the final rendering computes whatever is still missing."""
    store = PartStore(dict(records), budget_name=b.name, part=part, parts=parts)
    try:
        page.build(store, b, lambda: None)
    except Exception:  # noqa: BLE001 - a page may need records another part computes
        pass
    return {k: v for k, v in store.records.items() if k not in records}


@dataclass(frozen=True)
class Task:
    """One independent part of the folder: ``kind`` is ``"activation"`` (``name`` the
    activation), ``"layers"``, ``"architectures"``, ``"page"`` (``name`` its index in the
    checkout's pages) or ``"page-part"`` (``name`` ``"i/k/n"``: part ``k`` of ``n`` of page
    ``i``'s Monte Carlo records, no file)."""

    kind: str
    name: str = ""

    @property
    def cost(self) -> float:
        return _COST.get(f"{self.kind}/{self.name}", _COST.get(self.kind, 5.0))


@dataclass
class TaskResult:
    """What a task made: files, index rows (activations), layer links, and its Monte Carlo
    bookkeeping (records computed, keys used, keys missing from a frozen record)."""

    files: list[GeneratedFile] = field(default_factory=list)
    index_rows: list[tuple[str, ...]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    computed: dict[str, Any] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)


def _run(task: Task, store: MonteCarloStore, b: Budget, format: Format, figures: bool,
         pages: Sequence[Page], tick: Callable[[], None]) -> TaskResult:
    """Run ``task`` against ``store`` (which it extends)."""
    out = TaskResult()
    if task.kind == "activation":
        res = _activation_document(task.name, None, store=store, budget=b, format=format,
                                   figures=figures, progress=tick, index=True)
        out.files, out.index_rows = res.files, res.index_rows
    elif task.kind == "layers":
        made = layer_documents(store, b, format, tick)
        out.files = [f for f, _, _ in made]
        out.links = [(title, f.path) for f, _, title in made]
    elif task.kind == "architectures":
        out.files = architectures_page(store, b, format, figures, tick)
    elif task.kind == "page-part":
        i, k, n = (int(x) for x in task.name.split("/"))
        computed = {} if store.frozen else page_part(pages[i], store.records, b, k, n)
        store.records.update(computed)
        store.used |= set(computed)
        tick()
    else:
        page = pages[int(task.name)]
        out.files = [GeneratedFile(page.path, page.build(store, b, tick))]
    return out


def _in_worker(task: Task, records: dict[str, Any], budget: Budget, frozen: bool, format: Format,
               figures: bool) -> TaskResult:
    """A task in a worker process: on a copy of the record; returns what it computed."""
    store = MonteCarloStore(records, budget_name=budget.name, frozen=frozen)
    before = set(records)
    res = _run(task, store, budget, format, figures, repository_pages(), lambda: None)
    res.computed = {k: v for k, v in store.records.items() if k not in before}
    res.used, res.missing = set(store.used), list(store.missing)
    return res


def run_tasks(tasks: Sequence[Task], store: MonteCarloStore, b: Budget, *, format: Format,
              figures: bool, pages: Sequence[Page], workers: int = 1,
              tick: Callable[[], None] = lambda: None) -> dict[Task, TaskResult]:
    """Run ``tasks`` and merge their Monte Carlo records into ``store``.

    With ``workers`` > 1 the tasks run in that many processes (pages must then be the checkout's
    own, which each worker imports again); the result does not depend on ``workers``.
    """
    workers = check_positive_int("workers", workers)
    if workers == 1 or len(tasks) < 2:
        return {t: _run(t, store, b, format, figures, pages, tick) for t in tasks}
    results: dict[Task, TaskResult] = {}
    order = sorted(tasks, key=lambda t: -t.cost)
    # the workers keep freed memory mapped (varprop._util.allocator: system time halved)
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)),
                             initializer=retain_freed_memory) as pool:
        futures = {pool.submit(_in_worker, t, dict(store.records), b, store.frozen, format,
                               figures): t for t in order}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            tick()
    for task in tasks:  # merged in task order: the record does not depend on completion order
        res = results[task]
        for key, value in res.computed.items():
            store.records.setdefault(key, value)
        store.used |= res.used
        store.missing += [k for k in res.missing if k not in store.missing]
    return {t: results[t] for t in tasks}
