"""Run a block of code with NumPy's OpenBLAS limited to one thread (private to the Monte Carlo engine).

The Monte Carlo engine multiplies stacks of small matrices (one per replicate).  OpenBLAS's own
threads do not pay on such products, and on a loaded machine (more runnable threads than cores)
its spinning worker threads make them up to 30 times slower.  :func:`single_threaded_blas` sets
the thread count of the OpenBLAS library that NumPy loaded to 1 and restores it afterwards.

It finds the library among NumPy's bundled libraries (``numpy.libs``, or ``numpy/.dylibs``) or a
system ``libopenblas``, and calls ``*openblas_set_num_threads*`` through :mod:`ctypes`, as
``threadpoolctl`` does.  When no OpenBLAS is found (MKL, Accelerate, ...) it does nothing.  The
setting is process-wide while the block runs.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

__all__ = ["single_threaded_blas"]

_LOCK = threading.Lock()
_DEPTH = 0
_SAVED: int | None = None

_SUFFIXES = ("64_", "64", "")
_PREFIXES = ("scipy_openblas", "openblas")


@lru_cache(maxsize=1)
def _openblas() -> tuple[object, object] | None:
    """``(get_num_threads, set_num_threads)`` of NumPy's OpenBLAS, or ``None``."""
    root = os.path.dirname(np.__file__)
    patterns = [os.path.join(root, os.pardir, "numpy.libs", "*openblas*"),
                os.path.join(root, ".dylibs", "*openblas*")]
    candidates = [p for pat in patterns for p in sorted(glob.glob(pat))]
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)  # already loaded by NumPy: the same handle
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype = ctypes.c_int
                    put.argtypes = [ctypes.c_int]
                    return get, put
    return None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit NumPy's OpenBLAS to one thread inside the ``with`` block (re-entrant)."""
    global _DEPTH, _SAVED
    funcs = _openblas()
    if funcs is None:
        yield
        return
    get, put = funcs
    with _LOCK:
        if _DEPTH == 0:
            _SAVED = int(get())  # type: ignore[operator]
            put(1)  # type: ignore[operator]
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0 and _SAVED is not None:
                put(_SAVED)  # type: ignore[operator]
