"""Modules imported on first use, for heavy dependencies that only some code paths need.

``stats = lazy_module("scipy.stats")`` at module level binds a stand-in whose first attribute
access imports ``scipy.stats`` (about 0.3 s) and forwards to it; later accesses are a dictionary
look-up.  varprop binds every SciPy submodule this way (``stats``, ``stats.qmc``,
``interpolate``, ``special``, ``sparse``): the Monte Carlo engines, some layers and some
activations need them, ``varprop predict`` with a closed-form activation needs none, so the
command imports no SciPy at all and starts faster (docs/performance.md,
benchmarks/bench_startup.py).  Bind with attribute access at call time (``special.erf(x)``), not
at import (``erf = special.erf`` at module level would import at once).  Import statements stay at module level (the
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
