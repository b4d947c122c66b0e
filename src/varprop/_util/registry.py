"""A small registry of named factories with aliases and "did you mean" suggestions.

varprop has exactly two: one for init schemes (:mod:`varprop.components.schemes`) and one for
activations (:mod:`varprop.components.activations`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from varprop._util.validation import did_you_mean, fail, fail_type

T = TypeVar("T")

__all__ = ["Registry", "typed_cache_key"]


@dataclass
class Registry(Generic[T]):
    """Map canonical names (and aliases) to factories ``factory(**params) -> T``."""

    kind: str
    _factories: dict[str, Callable[..., T]] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)
    _replaced: set[str] = field(default_factory=set)

    def register(self, name: str, *aliases: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name`` and ``aliases``."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            for key in (name, *aliases):
                if key in self._aliases:
                    raise RuntimeError(f"{self.kind} {key!r} registered twice")
                self._aliases[key] = name
            self._factories[name] = factory
            return factory

        return deco

    def unregister(self, name: str) -> None:
        """Remove the entry ``name`` (canonical) and its aliases, e.g. after a test registered
        a temporary one; unknown names raise ``KeyError``."""
        del self._factories[name]
        self._replaced.add(name)
        for key in [k for k, v in self._aliases.items() if v == name]:
            del self._aliases[key]

    def replaced(self, name: str) -> bool:
        """True if the canonical name ``name`` was ever unregistered (and so perhaps registered
        again with another factory): sticky, so that a generated catalogue of the original
        factories is never used for it, whatever the new factory's module or qualified name."""
        return name in self._replaced

    def canonical(self, name: object, *, argument: str | None = None) -> str:
        """The canonical name for ``name`` or an alias; ``ValueError`` with a suggestion."""
        argument = argument or self.kind
        if not isinstance(name, str):
            raise fail_type(argument, name, f"a {self.kind} name (one of {self.names()})")
        key = name.strip().lower().replace("-", "_")
        if key not in self._aliases:
            raise fail(
                argument,
                name,
                f"a known {self.kind}: one of {self.names(aliases=True)}"
                + did_you_mean(key, self._aliases),
            )
        return self._aliases[key]

    def is_known(self, name: str) -> bool:
        """True if ``name`` (normalised) is a canonical name or alias."""
        return name.strip().lower().replace("-", "_") in self._aliases

    def suggestion(self, name: str) -> str:
        """The "did you mean" suffix for ``name`` (empty if nothing is close)."""
        return did_you_mean(name.strip().lower().replace("-", "_"), self._aliases)

    def build(self, name: str, *, argument: str | None = None, **params: object) -> T:
        """Build the entry ``name`` with ``params`` (validated by the factory)."""
        return self._factories[self.canonical(name, argument=argument)](**params)

    def names(self, *, aliases: bool = False) -> list[str]:
        """Canonical names in registration order (with aliases if asked)."""
        return list(self._aliases) if aliases else list(self._factories)

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name`` (canonical or alias), e.g. to read its
        parameters with :func:`inspect.signature` (``varprop list``)."""
        return self._factories[self.canonical(name)]

    def aliases_of(self, name: str) -> list[str]:
        """The aliases of the canonical name ``name`` (not ``name`` itself), in registration
        order."""
        canonical = self.canonical(name)
        return [k for k, v in self._aliases.items() if v == canonical and k != canonical]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.is_known(name)


def typed_cache_key(params: Mapping[str, object]
                    ) -> tuple[tuple[str, type, object, bool], ...]:
    """A cache key for factory parameters that includes each value's type and sign.

    ``True == 1 == 1.0`` with equal hashes, so a key of the values alone would hand
    ``negative_slope=True`` the object cached for ``negative_slope=1.0`` and skip the factory's
    validation (which refuses booleans); likewise ``-0.0 == 0.0``, so each entry also records
    whether the value is a negative float (``math.copysign``), and ``mean=-0.0`` keeps its sign.
    Entries are ``(name, type, value, negative)``.
    """
    return tuple(sorted((k, type(v), v, _negative_float(v)) for k, v in params.items()))


def _negative_float(value: object) -> bool:
    """True for a real number with its sign bit set (``-0.0`` included, also NumPy's float32 and
    longdouble zeros; False for NaN's sign too)."""
    if isinstance(value, (bool, int)) or not isinstance(value, numbers.Real):
        return False
    try:
        as_float = float(value)
    except (OverflowError, TypeError, ValueError):
        return False
    return not math.isnan(as_float) and math.copysign(1.0, as_float) < 0
