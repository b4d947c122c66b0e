r"""How the general engines lay a network's tensors out: the expanded layer positions and, for the
input and every layer's output, its shape and channel axis (shared by the mean-field walk of
:mod:`varprop.theory.fields` and the Monte Carlo engine of :mod:`varprop.simulation.fields`)."""

from __future__ import annotations

import math

from varprop._util.validation import fail
from varprop.network.field import Shape
from varprop.network.layers.base import Layer
from varprop.network.model import Network

__all__ = ["MAX_POSITIONS", "channel_axes", "expanded_layers", "input_channel_axis"]

#: Largest number of layer positions the general engines expand.
MAX_POSITIONS = 10_000


def expanded_layers(net: Network) -> list[Layer]:
    """The layers of every position, refused beyond :data:`MAX_POSITIONS`."""
    if net.layers.size > MAX_POSITIONS:
        raise fail("network", f"<a network of {net.layers.size:,} layers>",
                   f"at most {MAX_POSITIONS:,} layer positions for the general engine (it walks "
                   "every position)")
    return list(net.layers)


def input_channel_axis(net: Network) -> int:
    """The channel axis of the network input: the one the first layer that cares asks for
    (``channel_axis_for``), else 0 for tensors and -1 for vectors."""
    shape: Shape = net.input_shape
    for layer in expanded_layers(net):
        axis = layer.channel_axis_for(shape)
        if axis is not None:
            return axis
        shape = layer.output_shape(shape)
    return 0 if len(net.input_shape) > 1 else -1


def channel_axes(net: Network) -> tuple[tuple[Shape, Shape, int], ...]:
    """``(tensor_shape, field_shape, channel_axis)`` of the input and of every layer position's
    output, as the fields lay them out: a vector's axis is -1; a layer that reads its input with a
    channel axis keeps it for an output of the same rank; elementwise layers keep their input's.
    A layer that flattens a tensor into a vector of the same entries (``Flatten``) keeps its
    input's field layout (its field carries the per-position moments on): ``field_shape`` is then
    the tensor's shape before flattening, in the same (row-major) order."""
    shape, axis = net.input_shape, input_channel_axis(net)
    fshape = shape
    out = [(shape, fshape, axis)]
    for layer in expanded_layers(net):
        asked = layer.channel_axis_for(shape)
        new = layer.output_shape(shape)
        if len(new) == 1 and len(fshape) > 1 and new[0] == math.prod(fshape):
            pass  # a flatten: the field keeps the tensor layout it had
        elif len(new) == 1:
            axis, fshape = -1, new
        else:
            if asked is not None and len(new) == len(shape):
                axis = asked
            elif len(new) != len(shape):
                axis = 0
            fshape = new
        shape = new
        out.append((shape, fshape, axis))
    return tuple(out)
