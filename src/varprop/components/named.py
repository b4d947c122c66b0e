"""Build a component from its name with parameters as text (``"he_normal:mode=fan_out"``), the
form the command line and plain-data configurations use (:mod:`varprop._util.named` parses it).

A framework-qualified init scheme keeps its prefix: ``"torch:kaiming_normal:mode=fan_out"`` is
``init_scheme("torch:kaiming_normal", mode="fan_out")`` (:mod:`varprop.components.frameworks`)."""

from __future__ import annotations

from typing import Any

from varprop._util.named import parse_named
from varprop.components.activation import activation
from varprop.components.scheme import init_scheme

__all__ = ["build_named"]


def build_named(kind: str, value: Any) -> Any:
    """``"he_normal:mode=fan_out"`` -> ``init_scheme("he_normal", mode="fan_out")`` (``kind`` is
    ``"init"`` or ``"activation"``); ``"keras:he_normal"`` -> ``init_scheme("keras:he_normal")``;
    the call form of a repr, ``"torch:kaiming_normal(mode='fan_out')"``, likewise; anything else
    without parameters is returned unchanged."""
    if not isinstance(value, str) or (":" not in value and "(" not in value):
        return value
    name, params = parse_named(value, kind)  # keeps a framework prefix in the name
    return init_scheme(name, **params) if kind == "init" else activation(name, **params)
