r"""Per-position tables of the layer documents: where a layer's output second moment depends on
the position (a zero-padded convolution's edges), the document lists it position by position.

Predicted: the layer's own mean-field rule applied to the network input's field
(``layer.field_forward(input_field(...))``, :math:`E y_t^2` per position).  Hand count: for a
stride-1 1-D convolution with LeCun init on an input of second moment :math:`q`,
:math:`E y_t^2 = q\,|\{j : 0 \le t + j - \mathrm{pad} < L\}|/k` (the taps that fall inside the
input; every tap for ``valid`` and ``circular`` padding).  Monte Carlo: the layer's sampling
protocol (``mc_draw``/``mc_forward``) on i.i.d. :math:`N(0, q)` inputs, the mean over replicates
of the per-position average of :math:`y^2` over channels, with a 95% normal interval.  The
checker's verdicts (:func:`varprop.verify`) are on the position averages, in the verdict table;
these intervals are for reading the edge effect.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from varprop.documents.common import _key_seed, _quiet
from varprop.documents.store import MonteCarloStore
from varprop.network.field import input_field
from varprop.network.layers.base import Layer

__all__ = ["predicted_positions", "taps_in_bounds", "mc_positions", "position_record"]

#: Replicates of a per-position Monte Carlo, per budget name.
POSITION_REPLICATES = {"default": 2000, "quick": 200}


def predicted_positions(layer: Layer, input_shape: tuple[int, ...], input_variance: float
                        ) -> np.ndarray:
    """:math:`E y_t^2` per output position (flattened, row-major) from the layer's field rule."""
    axis = layer.channel_axis_for(input_shape)
    field = input_field(input_shape, 0 if axis is None else axis, input_variance,
                        layer.field_needs())
    return np.asarray(layer.field_forward(field).second, dtype=float).ravel()


def taps_in_bounds(length: int, kernel: int, padding: str) -> list[int]:
    """Per output position of a stride-1 1-D convolution, how many of the ``kernel`` taps read
    the input (not the zero padding); ``"same"`` pads ``(kernel - 1) // 2`` on the left."""
    if padding in ("valid", "circular"):
        n_out = length - kernel + 1 if padding == "valid" else length
        return [kernel] * n_out
    pad = (kernel - 1) // 2
    return [sum(0 <= t + j - pad < length for j in range(kernel)) for t in range(length)]


def mc_positions(layer: Layer, input_shape: tuple[int, ...], input_variance: float,
                 replicates: int, seed: int) -> dict[str, list[float]]:
    """Monte Carlo of :math:`E y_t^2` per output position (see the module docstring)."""
    rng = np.random.default_rng(seed)
    params = layer.mc_draw(rng, input_shape, replicates, np.dtype("float64"))
    x = rng.standard_normal((replicates, 1) + tuple(input_shape)) * math.sqrt(input_variance)
    y, _ = layer.mc_forward(params, x)
    axis = layer.channel_axis_for(input_shape)
    ch = 2 + (0 if axis is None else axis % (y.ndim - 2))
    per_rep = (y ** 2).mean(axis=(1, ch)).reshape(replicates, -1)  # (R, positions)
    mean = per_rep.mean(axis=0)
    half = 1.96 * per_rep.std(axis=0, ddof=1) / math.sqrt(replicates)
    return {"mean": mean.tolist(), "low": (mean - half).tolist(), "high": (mean + half).tolist()}


def position_record(store: MonteCarloStore, key: str, layer: Layer, input_shape: tuple[int, ...],
                    input_variance: float, budget_name: str) -> Any:
    """The stored per-position Monte Carlo (computed once, seed from ``key``)."""
    reps = POSITION_REPLICATES.get(budget_name, 200)
    return store.get(key, lambda: _quiet(lambda: mc_positions(layer, input_shape, input_variance,
                                                              reps, _key_seed(key))))
