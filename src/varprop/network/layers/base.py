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

from varprop._util.validation import fail

__all__ = ["Layer", "Shape"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Layer:
    """Base class of the layers in :mod:`varprop.layers`."""

    #: Short lower-case name used in tables and reports (``"dense"``, ``"nonlinearity"``).
    kind = "layer"

    def output_shape(self, input_shape: Shape) -> Shape:  # pragma: no cover - abstract
        raise NotImplementedError

    def _require_vector(self, input_shape: Shape) -> int:
        """The width ``n`` of a vector input ``(n,)``; a clear error for any other shape."""
        if len(input_shape) != 1:
            raise fail("input_shape", input_shape, f"a vector shape (n,) for {self!r}")
        return input_shape[0]
