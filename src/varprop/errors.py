"""One exception family for varprop.

Every error raised at a public entry point is a :class:`VarpropError`.  Bad values raise
:class:`InvalidArgument` (a :class:`ValueError`), values of the wrong type raise
:class:`InvalidArgumentType` (a :class:`TypeError`), so callers may catch either the builtin
or the varprop class.
"""

from __future__ import annotations

__all__ = [
    "VarpropError",
    "InvalidArgument",
    "InvalidArgumentType",
    "SimulationOverflowError",
    "VarpropWarning",
]


class VarpropError(Exception):
    """Base class of every exception varprop raises on purpose."""


class InvalidArgument(VarpropError, ValueError):
    """An argument has an impossible value (names the argument, the value and what is allowed)."""


class InvalidArgumentType(VarpropError, TypeError):
    """An argument has the wrong type (names the argument, its type and what is allowed)."""


class SimulationOverflowError(VarpropError):
    """Simulated statistics were requested past the layer where values left the dtype's finite
    range (see ``SimulationResult.overflow_layer``) without ``valid_only=True``."""


class VarpropWarning(UserWarning):
    """Warnings about results, e.g. a variance beyond the float range returned as ``inf``."""
