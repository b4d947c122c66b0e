"""Pages a source checkout adds to the derivations folder (``varprop derive --all``).

A project that keeps evidence of its own next to the library -- for example a catalogue of
claims from the texts it grew from, each checked against the library -- generates it with the
derivation documents (same Monte Carlo record, same budget, same up-to-date check) without
putting that evidence in the installed package.  It lists the generators in its
``pyproject.toml``::

    [tool.varprop]
    derive-pages = ["package.module:PAGE"]

Each entry names a module importable from the repository root and a :class:`Page` in it.  The
generators are found from the checkout this package runs from (:func:`repository_root`, an
editable install); an installed wheel has none, and ``varprop derive --all`` then writes the
activation documents, the index and ``montecarlo.json`` only.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from varprop.documents.common import repository_root
from varprop.documents.store import Budget, MonteCarloStore
from varprop.errors import InvalidArgument, InvalidArgumentType

__all__ = ["Page", "repository_pages", "import_from_repository", "CONFIG_KEY"]

#: The ``[tool.varprop]`` key of ``pyproject.toml`` that lists the page generators.
CONFIG_KEY = "derive-pages"


@dataclass(frozen=True)
class Page:
    """One extra file of the derivations folder.

    Attributes
    ----------
    path : str
        The file written, relative to the output folder (e.g. ``"claims.md"``).
    index_note : str
        A Markdown clause the index (``README.md``) adds after "One document per activation,
        each covering every init scheme;" to link the page, e.g.
        ``"[claims.md](claims.md) checks ..."``.
    steps : int
        How many times :attr:`build` calls its ``tick`` argument (for the progress bar).
    build : callable
        ``build(store, budget, tick) -> str``: the file's text.  Every Monte Carlo number goes
        through ``store.get(key, compute)`` (keys prefixed by the page's own name) so that it is
        recorded in ``montecarlo.json`` and re-rendered by ``varprop derive --check
        --reuse-montecarlo`` without simulating again.
    """

    path: str
    index_note: str
    steps: int
    build: Callable[[MonteCarloStore, Budget, Callable[[], None]], str]


def import_from_repository(module: str, root: Path | None = None) -> ModuleType:
    """Import ``module`` (dotted name) from the repository root ``root`` (default
    :func:`repository_root`), which is put on ``sys.path`` only for the import."""
    root = repository_root() if root is None else root
    if root is None:
        raise InvalidArgument(f"module={module!r} is not allowed: varprop does not run from a "
                              "source checkout, so there is no repository to import it from")
    entry = str(root)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        return importlib.import_module(module)
    finally:
        if added:
            sys.path.remove(entry)


@lru_cache(maxsize=8)
def _pages(root: Path) -> tuple[Page, ...]:
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    specs = config.get("tool", {}).get("varprop", {}).get(CONFIG_KEY, [])
    where = f"tool.varprop.{CONFIG_KEY} in {root / 'pyproject.toml'}"
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise InvalidArgumentType(f"{where}={specs!r} is not allowed: a list of strings "
                                  "'module:attribute'")
    pages = []
    for spec in specs:
        module, sep, attribute = spec.partition(":")
        if not (sep and module and attribute):
            raise InvalidArgument(f"{where}: {spec!r} is not allowed: 'module:attribute', e.g. "
                                  "'claims.page:PAGE'")
        page = getattr(import_from_repository(module, root), attribute, None)
        if not isinstance(page, Page):
            raise InvalidArgumentType(f"{where}: {spec!r} is {type(page).__name__}, not allowed: "
                                      "a varprop.documents.pages.Page")
        pages.append(page)
    return tuple(pages)


def repository_pages(root: Path | None = None) -> tuple[Page, ...]:
    """The pages listed in the ``pyproject.toml`` of ``root`` (default :func:`repository_root`),
    in the order listed; ``()`` when there is no checkout or nothing is listed."""
    root = repository_root() if root is None else root
    return () if root is None else _pages(Path(root).resolve())
