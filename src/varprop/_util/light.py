"""The mixin of varprop's light (catalogued) classes: built from a generated catalogue, they are
private subclasses of a public frozen dataclass (``Activation``, ``InitScheme``,
``MomentRules``) that fill in their fields without calling its ``__init__``.  Called the
dataclass way (``dataclasses.replace(obj, ...)``, ``cls(**fields)``) they must behave as the
full class does, so :class:`Light` makes that call build an instance of the full class.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Light"]


class Light:
    """Mixin, listed after the full class: ``class _Catalogued(Full, Light)`` (so the type's
    public name stays ``Full``).  ``cls(...)`` returns ``Full(...)``; light instances are made
    with ``object.__new__(cls)`` by the class's own constructor method.

    >>> from dataclasses import dataclass, replace
    >>> @dataclass(frozen=True)
    ... class Full:
    ...     x: int
    >>> class _Catalogued(Full, Light):
    ...     pass
    >>> light = object.__new__(_Catalogued); light.__dict__["x"] = 1
    >>> type(replace(light, x=2)).__name__
    'Full'
    """

    def __new__(cls, *args: Any, **fields: Any) -> Any:
        return cls.__mro__[1](*args, **fields)
