r"""Binary floating-point formats and the law of a real number rounded to one of them.

A weight drawn from a continuous law :math:`F` and stored in a format with :math:`p` significand
bits (bfloat16: 8, float16: 11, float32: 24) is :math:`Y = \operatorname{rd}(X)`, round to
nearest.  :math:`Y` is discrete: for a representable :math:`y` with neighbours :math:`y^-, y^+`,

.. math::

    P(Y \le y) = F\bigl(\tfrac{y + y^+}{2}\bigr), \qquad P(Y < y) = F\bigl(\tfrac{y^- + y}{2}\bigr)

(the midpoints themselves have probability 0 under a continuous :math:`F`), and its support is
the rounded support of :math:`F`.  With :math:`2^e \le |y| < 2^{e+1}` the spacing above
:math:`|y|` is :math:`2^{\max(e, e_{min}) - p + 1}` (subnormals below :math:`2^{e_{min}}`) and
below :math:`|y|` the same, halved when :math:`|y| = 2^e` is a normal power of two.  Every
operation is exact in float64 (:math:`p \le 53`, powers of two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["FloatFormat", "FORMATS", "format_of", "float_or_inf"]


@dataclass(frozen=True)
class FloatFormat:
    """A binary format: ``precision`` significand bits (with the implicit one) and ``min_exp``,
    the exponent of the smallest normal number :math:`2^{e_{min}}`."""

    name: str
    precision: int
    min_exp: int

    @property
    def eps(self) -> float:
        """Machine epsilon :math:`2^{1-p}`."""
        return 2.0 ** (1 - self.precision)

    @property
    def exact_in_float64(self) -> bool:
        """True for float64 itself (no rounding model needed)."""
        return self.precision >= 53

    def spacing(self, v: np.ndarray) -> np.ndarray:
        """Distance from ``|v|`` to the next representable number above it."""
        v = np.asarray(v, dtype=np.float64)
        _, f = np.frexp(np.abs(v))  # |v| = m 2^f, 1/2 <= m < 1, so e = f - 1
        e = np.where(v == 0, self.min_exp, np.maximum(f - 1, self.min_exp))
        return np.ldexp(1.0, e - self.precision + 1)

    def round(self, v: np.ndarray | float) -> np.ndarray:
        """Round float64 values to the nearest representable number (ties to even)."""
        v = np.asarray(v, dtype=np.float64)
        if self.exact_in_float64:
            return v
        s = self.spacing(v)
        return np.round(v / s) * s

    def midpoints(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)`` midpoints to the neighbours of representable values ``y``."""
        y = np.asarray(y, dtype=np.float64)
        if self.exact_in_float64:
            return y, y
        a = np.abs(y)
        up = self.spacing(a)
        m, _ = np.frexp(a)
        power_of_two = (m == 0.5) & (a > np.ldexp(1.0, self.min_exp))
        down = np.where(power_of_two, up / 2, up)
        down = np.where(a == 0, up, down)
        # for y < 0 the neighbour above |y| is the one below y
        lower = np.where(y >= 0, y - down / 2, y - up / 2)
        upper = np.where(y >= 0, y + up / 2, y + down / 2)
        return lower, upper


FORMATS = {
    "float64": FloatFormat("float64", 53, -1022),
    "float32": FloatFormat("float32", 24, -126),
    "float16": FloatFormat("float16", 11, -14),
    "bfloat16": FloatFormat("bfloat16", 8, -126),
}


def format_of(dtype: object) -> FloatFormat | None:
    """The format of a NumPy or PyTorch dtype (by name: torch is never imported), or None."""
    name = str(dtype).rsplit(".", 1)[-1]
    return FORMATS.get(name)


def float_or_inf(value: object) -> float:
    """``float(value)``, with exact numbers (Python or SymPy) beyond the float range mapped to
    +-inf (``float(10**400 / 3)`` raises ``OverflowError``)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]
