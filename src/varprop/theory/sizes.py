r"""Limits of a prediction: memory refusals, and which zeros are underflows.

- :func:`check_fits` refuses, before allocating, per-layer arrays that cannot fit in the memory
  available now (stating the bytes they would need).
- :func:`source_positive` and :func:`underflowed` decide whether a predicted second moment that is
  exactly 0.0 is an underflow (the exact value is positive) or a genuine zero: the exact moments
  are positive at every layer when the input or a bias feeds a positive variance into the first
  dense layer (and, backward, the last dense layer's weights carry the unit variance at the output down).
"""

from __future__ import annotations

import os

import numpy as np

from varprop._util.lazy import lazy_module
from varprop.errors import VarpropError
from varprop.network.layers.dense import Dense
from varprop.network.model import Network

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): only to tell an exactly zero
#: weight variance from an underflow
sp = lazy_module("sympy")

__all__ = ["check_fits", "available_bytes", "source_positive", "underflowed", "BYTES_PER_LAYER",
           "LAST_ONLY"]

#: Bytes of the per-layer arrays of :class:`~varprop.theory.predict.Propagation` per layer (nine
#: float64 arrays) plus the widths tuple.
BYTES_PER_LAYER = 9 * 8 + 8
LAST_ONLY = "ask for the last layer only (per_layer=False, memory independent of depth) or "


def available_bytes() -> int:
    """Physical memory available now (``sysconf``), or 4 GiB where it cannot be queried."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return 4 << 30


def check_fits(depth: int, per_layer_bytes: int = BYTES_PER_LAYER, what: str = "per-layer arrays",
               advice: str = LAST_ONLY) -> None:
    """Refuse, before allocating, what needs more memory than is available."""
    need = depth * per_layer_bytes
    have = available_bytes()
    if need > have:
        raise VarpropError(
            f"depth={depth}: the {what} would need {need:,} bytes ({need / 2**30:.3g} GiB), more "
            f"than the {have:,} bytes available; {advice}reduce depth")


def _dense_ends(net: Network) -> tuple[tuple[Dense, int] | None, tuple[Dense, int] | None]:
    """The first and last dense layers with their fan-ins (without expanding the runs)."""
    first = last = None
    shape = net.input_shape
    for block, count in net.layers.runs:
        for rep in range(min(count, 2)):
            for layer in block:
                if isinstance(layer, Dense):
                    if first is None:
                        first = (layer, shape[0])
                    last = (layer, shape[0])
                shape = layer.output_shape(shape)
    return first, last


def source_positive(net: Network, backward: bool) -> bool:
    r"""Whether the exact predicted second moments are positive at every layer (a 0.0 is then an
    underflow): the input or the bias feeds a positive variance into the first dense layer and,
    backward, the last dense layer's weights carry :math:`\delta_L`'s unit variance down."""
    first, last = _dense_ends(net)
    if first is None or last is None:
        return net.input_variance > 0 and not backward
    dense, n = first
    forward = (net.input_variance > 0 and _weight_variance_positive(dense, n)) or dense.bias_variance > 0
    if not backward:
        return forward
    return forward and _weight_variance_positive(*last)


def _weight_variance_positive(dense: Dense, fan_in: int) -> bool:
    """Whether a dense layer's weight variance is positive, exactly: a float 0.0 may itself be an
    underflow (``normal(std=1e-300)``: 1e-600), which SymPy's exact value tells apart."""
    v = dense.weight_moments(fan_in)[1]
    if v != 0.0:
        return v > 0.0
    exact_value = sp.sympify(dense.init.weight_variance(fan_in, dense.width))
    if exact_value.is_positive is not None:
        return bool(exact_value.is_positive)
    # undecided symbolically (a truncated normal's 1 - ... cancels): adaptive-precision evalf
    return bool(sp.N(exact_value, 5, maxn=4000) > 0)


def underflowed(seconds: np.ndarray, source_positive: bool) -> bool:
    """A second moment, in propagation order, that is exactly 0.0 where the exact value is
    positive: after a positive layer, or at the first layer from a positive source."""
    zero = seconds == 0.0
    if not zero.any():
        return False
    if source_positive and zero[0]:
        return True
    positive_before = np.maximum.accumulate(seconds > 0.0)
    return bool(np.any(zero[1:] & positive_before[:-1]))
