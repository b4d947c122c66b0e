r"""Argument validation of the property-based test helpers (:mod:`varprop.strategies`), kept
free of hypothesis: the keywords the assertion helpers pass on to :func:`varprop.verify`, the
fixed values of a :func:`~varprop.strategies.layer_configs` strategy (checked when the strategy
is built, not when an example is drawn), and the items :func:`~varprop.strategies.prepare`
accepts (whatever :func:`varprop.activation` and :func:`varprop.init_scheme` accept).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from varprop._util.validation import (
    MAX_LAYERS,
    check_choice,
    check_nonnegative_real,
    check_positive_int,
    check_width,
    did_you_mean,
    fail,
)
from varprop.checking.check import QUANTITIES
from varprop.checking.verify import verify
from varprop.components.activations import (
    Activation,
    activation_names,
    resolve_activation,
)
from varprop.components.schemes import InitScheme, resolve_scheme, scheme_names
from varprop.errors import InvalidArgument, InvalidArgumentType

__all__ = ["VERIFY_KEYWORDS", "check_fixed_config", "check_keywords", "resolve_item"]

#: The keyword arguments of :func:`varprop.verify` (the assertion helpers' configuration keys).
VERIFY_KEYWORDS: tuple[str, ...] = tuple(inspect.signature(verify).parameters)


def check_keywords(keys: Iterable[str], allowed: Iterable[str] = VERIFY_KEYWORDS,
                   where: str = "verify") -> None:
    """Raise :class:`~varprop.errors.InvalidArgumentType` (a ``TypeError``, as Python's own for
    an unexpected keyword) naming the first key not in ``allowed``, with "did you mean"."""
    pool = list(allowed)
    for key in keys:
        if key not in pool:
            raise InvalidArgumentType(
                f"keyword argument {key!r} is not allowed: a keyword of {where}(), one of "
                f"{pool}{did_you_mean(str(key), pool)}")


def check_fixed_config(fixed: Mapping[str, Any]) -> None:
    """Validate the fixed (non-strategy) values of a ``layer_configs`` strategy: an activation
    and an init scheme the library accepts, a width (``fan_in``) and a depth that are positive
    integers (not bools; depth at most ``MAX_LAYERS``), a quantity of ``verify``, non-negative
    finite variances."""
    for name, value in fixed.items():
        if name == "activation":
            resolve_activation(value)
        elif name == "init":
            resolve_scheme(value)
        elif name == "fan_in":
            check_width(name, value)
        elif name == "depth":
            if check_positive_int(name, value) > MAX_LAYERS:
                raise fail(name, value, f"a positive integer at most {MAX_LAYERS}")
        elif name == "quantity":
            check_choice(name, value, list(QUANTITIES))
        elif name in ("bias_variance", "input_variance"):
            check_nonnegative_real(name, value)


def resolve_item(item: object) -> Activation | InitScheme:
    """An init scheme or an activation, by object or by anything :func:`varprop.init_scheme`
    (registered and framework-qualified names such as ``"torch:default"``) or
    :func:`varprop.activation` (registered names, custom expressions such as ``"x*sin(x)"``)
    accepts; an init scheme name wins (no name is both)."""
    if isinstance(item, (Activation, InitScheme)):
        return item
    if not isinstance(item, str):
        raise InvalidArgumentType(
            f"items={item!r} has type {type(item).__name__}: expected activations and init "
            "schemes (objects, names or activation expressions)")
    try:
        return resolve_scheme(item)
    except InvalidArgument:
        pass
    try:
        return resolve_activation(item)
    except InvalidArgument as exc:
        raise fail("items", item, "an init scheme (a name init_scheme() accepts, e.g. "
                   "'he_normal' or 'keras:he_normal') or an activation (a name or an expression "
                   "in x that activation() accepts)"
                   + did_you_mean(item, [*scheme_names(), *activation_names()])) from exc
