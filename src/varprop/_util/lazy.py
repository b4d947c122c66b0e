"""Modules imported on first use, for heavy dependencies that only some code paths need.

``stats = lazy_module("scipy.stats")`` at module level binds a stand-in whose first attribute
access imports ``scipy.stats`` (about 0.3 s) and forwards to it; later accesses are a dictionary
look-up.  varprop uses it for SciPy's statistics and quasi-Monte Carlo submodules, which the
Monte Carlo engines need and ``varprop predict`` does not, so that the command starts faster
(docs/performance.md, benchmarks/bench_startup.py).  Import statements stay at module level (the
layout rule), and a missing module fails at first use with the usual ``ImportError``.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule:
    """Stand-in for the module ``name``, imported at the first attribute access."""

    __slots__ = ("_lazy_name",)

    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._lazy_name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


def lazy_module(name: str) -> Any:
    """The module ``name`` if it is already imported, else a stand-in importing it at first use.

    >>> lazy_module("json").dumps([1])
    '[1]'
    """
    module = sys.modules.get(name)
    return module if isinstance(module, ModuleType) else _LazyModule(name)
