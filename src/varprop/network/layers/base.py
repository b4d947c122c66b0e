r"""The layer protocol: what every layer of a :class:`~varprop.Network` knows about itself.

A layer is an immutable, hashable value (a frozen dataclass) validated when it is built.  Each
layer type is one class holding its rules, grouped by concern; the engines walk
``network.layers`` and call, per layer type (their signatures still differ between ``Dense`` and
``Nonlinearity``, see ``docs/architecture.md``):

- ``output_shape(input_shape)``: the shape it produces (raises for an input it cannot take);
- mean field (:mod:`varprop.theory`): its forward and backward maps of the per-layer moment state;
- symbolic (:func:`varprop.derive`): the SymPy steps of its derivation;
- sampling (:mod:`varprop.simulation`): how to draw and apply it for the Monte Carlo engines;
- checking (:func:`varprop.verify_step`): its one-step check.

Shapes exclude the batch: ``(n,)`` for vectors (later ``(C, H, W)`` and ``(T, n)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from varprop._util.validation import fail
from varprop.errors import InvalidArgument
from varprop.network.field import Field, FieldNeeds, GradField, Shape

__all__ = ["Layer", "Shape"]


@dataclass(frozen=True)
class Layer:
    """Base class of the layers in :mod:`varprop.layers`."""

    #: Short lower-case name used in tables and reports (``"dense"``, ``"nonlinearity"``).
    kind = "layer"
    #: The batch size a simulation of this layer must use (``BatchNorm(mode="train",
    #: batch_size=B)``: ``B``), or ``None`` when any batch works.
    required_batch = None  # not a dataclass field: a class default a layer may override

    def output_shape(self, input_shape: Shape) -> Shape:  # pragma: no cover - abstract
        raise self._missing("output_shape", "an output shape")

    # --- general engine (networks beyond the dense chain; see varprop.network.field) ----------
    def channel_axis_for(self, input_shape: Shape) -> int | None:
        """The channel axis this layer reads its input with (``0`` for ``(C, ...)`` images,
        ``-1`` for ``(T, n)`` sequences and vectors), or ``None`` if it does not care (elementwise
        layers).  The engine lays out the network input for the first layer that cares."""
        return None

    def field_needs(self) -> FieldNeeds:
        """What this layer needs tracked in the fields it sees (position covariances, between-
        sample moments); the engine tracks the union over the network."""
        return FieldNeeds()

    def field_forward(self, field: Field) -> Field:  # pragma: no cover - abstract
        """The mean-field moments of this layer's output from those of its input."""
        raise self._missing("field_forward", "a mean-field forward rule")

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field
                       ) -> GradField:  # pragma: no cover - abstract
        """The gradient moments at this layer's input from those at its output (gradient
        independence); ``field_in``/``field_out`` are the forward fields of this layer."""
        raise self._missing("field_backward", "a mean-field backward rule")

    def field_exact(self, field_in: Field) -> bool:
        """Whether :meth:`field_forward` (and :meth:`field_backward`) give the second moments
        exactly at every finite width for this input field (not only in the infinite-width
        limit).  ``False`` unless a layer states otherwise; a prediction is exact at a position
        when every layer up to it (backward: every layer) is exact (see ``docs/architecture.md``)."""
        return False

    def mc_parameter_count(self, input_shape: Shape) -> int:
        """Random numbers drawn per replicate by :meth:`mc_draw` (the general engine's cost
        estimate; 0 for a layer without parameters)."""
        return 0

    def field_steps(self) -> list[tuple[str, object]]:
        """The forward and backward rules as ``(sentence, sympy.Eq)`` pairs for the documents."""
        return []

    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> object:  # pragma: no cover - abstract
        """Draw this layer's random parameters for ``replicates`` independent networks (leading
        axis ``replicates`` on every array); ``None`` for a layer without parameters."""
        raise self._missing("mc_draw, mc_forward and mc_backward", "Monte Carlo sampling")

    def mc_forward(self, params: object, x: np.ndarray
                   ) -> tuple[np.ndarray, object]:  # pragma: no cover - abstract
        """Apply the layer to ``x`` of shape ``(replicates, batch, *input_shape)``: ``(y, cache)``."""
        raise self._missing("mc_draw, mc_forward and mc_backward", "Monte Carlo sampling")

    def mc_backward(self, params: object, cache: object,
                    grad: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """The gradient at the input from ``grad`` at the output (vector-Jacobian product)."""
        raise self._missing("mc_draw, mc_forward and mc_backward", "Monte Carlo sampling")

    def _missing(self, methods: str, what: str) -> InvalidArgument:
        """The error for a layer type that lacks part of the general protocol."""
        return fail("layers", self, f"layers implementing the general protocol of "
                    f"varprop.layers.Layer: {type(self).__name__} lacks {what} ({methods})")

    def _require_vector(self, input_shape: Shape) -> int:
        """The width ``n`` of a vector input ``(n,)``; a clear error for any other shape."""
        if len(input_shape) != 1:
            raise fail("input_shape", input_shape, f"a vector shape (n,) for {self!r} (the shape "
                       "reaching it; put Flatten() or GlobalAvgPool() before it for a tensor)")
        return input_shape[0]
