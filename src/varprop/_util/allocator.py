"""Allocator settings for the worker processes varprop starts itself (``derive --workers``).

glibc's ``malloc`` serves every block above ``M_MMAP_THRESHOLD`` (128 KiB at start, raised
dynamically up to 32 MiB) with a fresh ``mmap`` and gives it back with ``munmap`` when freed, and
trims the heap top above ``M_TRIM_THRESHOLD``.  The Monte Carlo engines allocate and free arrays
of 0.1-10 MiB thousands of times per simulation, so the kernel maps, zero-fills (a page fault per
4 KiB page) and unmaps the same memory over and over: 8.8-12.3 s of the documents job's
113-129 s of CPU were system time (``docs/performance.md``, "Under a minute").
:func:`retain_freed_memory` keeps freed memory in the process (blocks up to
:data:`MMAP_THRESHOLD` from the heap, no trimming below :data:`TRIM_THRESHOLD`, the heap grown by
:data:`TOP_PAD` at a time), so later arrays reuse pages already mapped.

The settings are process-wide, so varprop applies them only in processes it owns and that exit
when their work is done: the workers of :func:`varprop.documents.parallel.run_tasks`.  A worker's
resident memory then stays near its peak instead of shrinking between simulations.  Numbers are
unchanged (the allocator decides where arrays live, not what they hold).  Measured on the 2-core
machine: ``derive --all`` from scratch with 2 workers (``benchmarks/derive_all.py``), system time
8.8-12.3 s -> 4.1-4.6 s; the leaky ReLU document alone
(``benchmarks/profile_derive.py --task activation/leaky_relu``, settings given as ``MALLOC_*_``
environment variables), 1.92 s -> 0.58 s.

Elsewhere (macOS, Windows; musl's ``mallopt`` is a stub that refuses) :func:`retain_freed_memory`
changes nothing and returns ``False``; a glibc that refuses one setting keeps the others and it
returns ``False`` too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["retain_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "TOP_PAD"]

#: Blocks up to this size come from the heap, not from ``mmap`` (bytes): glibc's documented
#: maximum on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``; some versions refuse more).
MMAP_THRESHOLD = 32 * 2**20
#: Freed memory at the heap top is kept up to this size (bytes).
TRIM_THRESHOLD = 2**30
#: The heap grows by at least this much at a time (bytes).
TOP_PAD = 64 * 2**20

# glibc's <malloc.h> parameter numbers
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def retain_freed_memory() -> bool:
    """Apply the settings of the module docstring to this process (glibc only); ``True`` if the
    C library accepted all three.  Call it only in a process varprop owns (a worker)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (or no C library found)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all([mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1,
                mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1,
                mallopt(_M_TOP_PAD, TOP_PAD) == 1])
