"""Strict JSON for results: no ``NaN``/``Infinity`` tokens, which most JSON parsers reject."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["jsonable"]


def jsonable(v: object) -> object:
    """``v`` as strict JSON: mappings and sequences recursed, NumPy scalars and arrays unwrapped,
    non-finite floats spelt ``"inf"``, ``"-inf"`` (and ``"nan"``, which varprop never returns on
    purpose), anything else unknown as its ``repr``.

    >>> jsonable({"q": [1.5, float("inf")], "n": np.int64(3)})
    {'q': [1.5, 'inf'], 'n': 3}
    """
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [jsonable(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
    if isinstance(v, (str, int)) or v is None:
        return v
    return repr(v)
