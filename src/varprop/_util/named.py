"""Names with parameters as text: ``"he_normal:mode=fan_out,negative_slope=0.1"``.

Shared by the command line and by configurations that cross process boundaries as plain data
(:func:`varprop.checking.check.verify_many`); :func:`varprop.components.named.build_named` builds
the component a text names.  Values are read with :func:`ast.literal_eval` (numbers,
strings, booleans; never ``eval``); a bare word such as ``fan_out`` stays a string.
"""

from __future__ import annotations

import ast
import re

from varprop._util.validation import fail

__all__ = ["parse_named", "split_list"]

_PARAMETER = re.compile(r"^\s*[A-Za-z_]\w*\s*=")
_CALL = re.compile(r"^\s*([A-Za-z_]\w*(?::[A-Za-z_]\w*)?)\s*\((.*)\)\s*$", re.DOTALL)


def parse_named(text: str, argument: str) -> tuple[str, dict[str, object]]:
    """Split ``"he_normal:mode=fan_out,negative_slope=0.1"`` into a name and literal parameters.

    >>> parse_named("he_normal:mode=fan_out,negative_slope=0.1", "init")
    ('he_normal', {'mode': 'fan_out', 'negative_slope': 0.1})

    A qualified name keeps its prefix (a first item without ``=`` is part of the name):

    >>> parse_named("torch:kaiming_normal:nonlinearity=tanh", "init")
    ('torch:kaiming_normal', {'nonlinearity': 'tanh'})

    The call form of a repr, keyword arguments only, is the same (so a verdict's ``init``
    text names its scheme again):

    >>> parse_named("torch:kaiming_normal(a=0.0, mode='fan_out')", "init")
    ('torch:kaiming_normal', {'a': 0.0, 'mode': 'fan_out'})
    """
    called = _call_form(text, argument)
    if called is not None:
        return called
    name, _, rest = text.partition(":")
    head, sep, tail = rest.partition(":")
    if head.strip().isidentifier():  # "keras:he_normal[:key=value,...]"
        name, rest = f"{name.strip()}:{head.strip()}", tail
    params: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise fail(argument, text, "NAME or NAME:key=value,key=value (e.g. he_normal:mode=fan_out)")
        try:
            params[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            params[key.strip()] = value.strip()  # a bare word such as fan_out
    return name.strip(), params


def _call_form(text: str, argument: str) -> tuple[str, dict[str, object]] | None:
    """``NAME(key=literal, ...)`` (``NAME`` possibly ``prefix:name``) as a name and parameters;
    ``None`` for anything else (an expression such as ``max(x, 0)`` has positional arguments)."""
    match = _CALL.match(text)
    if match is None:
        return None
    name, inner = match.groups()
    try:
        call = ast.parse(f"f({inner})", mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if not isinstance(call, ast.Call) or call.args or not isinstance(call.func, ast.Name):
        return None
    params: dict[str, object] = {}
    for keyword in call.keywords:
        try:
            if keyword.arg is None:
                raise ValueError("**")
            value = keyword.value  # a bare word such as fan_out stays a string, as after "="
            params[keyword.arg] = value.id if isinstance(value, ast.Name) else ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise fail(argument, text, "NAME(key=literal, ...) with literal values (numbers, "
                       "strings, booleans)") from None
    return name, params


def split_list(text: str) -> list[str]:
    """Split a comma list of names, keeping each item's own commas: those inside parentheses
    (``max(x,0)``) and those between a name's parameters (``normal:std=0.1,mean=0.0``).

    >>> split_list("relu,max(x,0),normal:std=0.1,mean=0.0,he_normal")
    ['relu', 'max(x,0)', 'normal:std=0.1,mean=0.0', 'he_normal']
    """
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    items: list[str] = []
    for piece in pieces:
        if items and ":" in items[-1] and _PARAMETER.match(piece):
            items[-1] += "," + piece  # another parameter of the previous name
        else:
            items.append(piece)
    return [item.strip() for item in items if item.strip()]
