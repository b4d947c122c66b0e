"""``check_*`` helpers used once, at the public boundary.

Each helper returns the validated (and normalised) value or raises an
:class:`~varprop.errors.InvalidArgument` / :class:`~varprop.errors.InvalidArgumentType`
whose message follows one template::

    <name>=<value!r> is not allowed: <what is allowed>
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np

from varprop.errors import InvalidArgument, InvalidArgumentType

__all__ = [
    "fail",
    "fail_type",
    "public_type_name",
    "check_positive_int",
    "check_nonnegative_int",
    "check_real",
    "check_positive_real",
    "check_nonnegative_real",
    "check_probability",
    "check_choice",
    "check_width",
    "check_widths",
    "did_you_mean",
]


def fail(name: str, value: object, allowed: str) -> InvalidArgument:
    """Build (not raise) the standard ``ValueError`` for argument ``name``."""
    return InvalidArgument(f"{name}={value!r} is not allowed: {allowed}")


def fail_type(name: str, value: object, allowed: str) -> InvalidArgumentType:
    """Build (not raise) the standard ``TypeError`` for argument ``name``."""
    return InvalidArgumentType(
        f"{name}={value!r} has type {public_type_name(value)}: expected {allowed}"
    )


def public_type_name(value: object) -> str:
    """The name of ``type(value)``, or for varprop's own private classes of the first public class
    above it in the MRO: ``InitScheme`` for the private catalogued subclass, not
    ``_CataloguedScheme``; a user's private class keeps its own name."""
    def hidden(cls: type) -> bool:
        return cls.__name__.startswith("_") and cls.__module__.split(".")[0] == "varprop"
    return next((c.__name__ for c in type(value).__mro__ if not hidden(c)), type(value).__name__)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(str(word).lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_))


def check_positive_int(name: str, value: object) -> int:
    """A strictly positive integer (``bool`` is refused)."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise fail_type(name, value, "a positive integer")
    if value < 1:
        raise fail(name, value, "a positive integer (>= 1)")
    return int(value)


def check_nonnegative_int(name: str, value: object) -> int:
    """An integer >= 0 (``bool`` is refused)."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise fail_type(name, value, "a non-negative integer")
    if value < 0:
        raise fail(name, value, "a non-negative integer (>= 0)")
    return int(value)


def check_real(name: str, value: object) -> float:
    """A finite real number."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise fail_type(name, value, "a real number")
    check_float_range(name, value)
    out = float(value)
    if not math.isfinite(out):
        raise fail(name, value, "a finite real number (not NaN or inf)")
    return out


def check_positive_real(name: str, value: object) -> float:
    """A finite real number > 0."""
    out = check_real(name, value)
    if out <= 0:
        raise fail(name, value, "a finite real number > 0")
    return out


def check_nonnegative_real(name: str, value: object) -> float:
    """A finite real number >= 0 (variances)."""
    out = check_real(name, value)
    if out < 0:
        raise fail(name, value, "a finite real number >= 0")
    return out


def check_probability(name: str, value: object) -> float:
    """A number strictly between 0 and 1 (significance levels, tolerances)."""
    out = check_real(name, value)
    if not 0 < out < 1:
        raise fail(name, value, "a number strictly between 0 and 1")
    return out


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    """One of ``allowed`` (a string), with a "did you mean" suggestion."""
    if not isinstance(value, str):
        raise fail_type(name, value, f"one of the strings {list(allowed)}")
    if value not in allowed:
        raise fail(name, value, f"one of {list(allowed)}{did_you_mean(value, allowed)}")
    return value


#: The largest width: every width enters float arithmetic (``n sigma_w^2``), exact up to 2^53.
MAX_WIDTH = 2**53
#: The largest depth for which a tuple of per-layer widths is built (the CLI's limit too); predictions of the
#: last layer of deeper constant-width networks do not build it (see varprop.theory.predict).
MAX_LAYERS = 10**6


def _shown(value: object) -> str:
    """An integer as an error message shows it: a 401-digit one abbreviated with its length."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:12]}...({len(text)} digits)"


def check_width(name: str, value: object) -> int:
    """A layer width: a positive integer at most :data:`MAX_WIDTH`."""
    out = check_positive_int(name, value)
    if out > MAX_WIDTH:
        raise InvalidArgument(f"{name}={_shown(out)} is not allowed: a positive integer at most "
                              f"2**53 = {MAX_WIDTH:,} (widths enter float arithmetic)")
    return out


def check_widths(
    fan_in: object, fan_out: object = None, widths: object = None, depth: object = 1
) -> tuple[int, ...]:
    """Normalise the network shape to ``(n_0, n_1, ..., n_L)``.

    Either ``widths=[n_0, ..., n_L]`` is given (then ``depth`` must be ``len(widths) - 1`` or
    left at 1 / ``None`` and ``fan_in``/``fan_out`` must agree with it when given), or
    ``n_0 = fan_in`` and ``n_1 = ... = n_L = fan_out`` (default ``fan_in``).
    """
    if widths is not None:
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Iterable):
            raise fail_type("widths", widths, "a sequence of positive integers [n_0, ..., n_L]")
        ws = tuple(check_width(f"widths[{i}]", w) for i, w in enumerate(widths))
        if len(ws) < 2:
            raise fail("widths", widths, "at least two widths [n_0, n_1] (input and one layer)")
        if depth is not None and depth != 1 and depth != len(ws) - 1:
            raise fail("depth", depth, f"len(widths) - 1 = {len(ws) - 1} when widths is given")
        if fan_in is not None and check_width("fan_in", fan_in) != ws[0]:
            raise fail("fan_in", fan_in, f"widths[0] = {ws[0]} when both are given")
        if fan_out is not None and any(w != check_width("fan_out", fan_out) for w in ws[1:]):
            raise fail("fan_out", fan_out, f"every layer width widths[1:] = {list(ws[1:])} when "
                       "both are given (or omit fan_out)")
        return ws
    if fan_in is None:
        raise fail("fan_in", fan_in, "a positive integer (or pass widths=[n_0, ..., n_L])")
    n0 = check_width("fan_in", fan_in)
    n = n0 if fan_out is None else check_width("fan_out", fan_out)
    L = check_positive_int("depth", depth)
    if L > MAX_LAYERS:
        raise fail("depth", depth, f"at most {MAX_LAYERS:,} layers for a simulation or a "
                   "per-layer computation (refused before building anything); predict_variance "
                   "answers for the last layer of deeper constant-width networks")
    return (n0,) + (n,) * L


def check_float_range(name: str, value: object) -> object:
    """``value`` unchanged, unless it is an integer too large for a float (a 401-digit ``int``):
    then the standard ``ValueError`` instead of Python's ``OverflowError`` in ``float(value)``.
    Call before :func:`check_real` and friends."""
    if isinstance(value, numbers.Integral) and not _is_bool(value):
        try:
            float(value)
        except OverflowError:
            raise InvalidArgument(f"{name}={_shown(value)} is not allowed: a number within the float "
                                  "range (at most about 1.8e308)") from None
    return value
