r"""From a recorded graph (:mod:`varprop.torch.record`) to the layers of a varprop ``Network``.

The graph of the calls that lead to the model's output is series-parallel: a chain of calls,
where a residual addition :math:`a + b` closes two paths opened at a common tensor :math:`f`
(the latest tensor both operands descend from).  :func:`build` walks back from the output:

* a call with one data input is a layer (or none, for calls that keep their input's values);
* an addition of two tracked tensors is a ``Residual`` block: the path that is empty (the
  identity) or has no weight layer is the shortcut, the other the branch (both with weight
  layers: the longer one is the branch, e.g. ResNet's ``conv-bn-relu-conv-bn`` against its
  ``1x1 conv-bn`` projection).

Each call becomes an :class:`Item` with its place in the network (``path``, see
:func:`varprop.theory.fields.walk_nested`): ``(p,)`` at the top level, ``(p, "branch", j)`` and
``(p, "shortcut", j)`` inside a block, the block's own path for its addition.  A call mapped to
no layer (``nn.Identity``) has the path of the layer before it (the same tensor), ``()`` when that
is the network input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from varprop.errors import VarpropError
from varprop.network.layers import Flatten, Residual
from varprop.network.layers.base import Layer
from varprop.torch.record import INPUT, Node

__all__ = ["Item", "build", "ancestors"]


@dataclass
class Item:
    """A call on the path to the output: its ``node``, ``layers``, place (``path``), whether it
    is a residual addition (``add``) with its ``branch``/``shortcut`` items."""

    node: Node
    layers: tuple[Layer, ...] = ()
    path: tuple | None = None
    add: bool = False
    branch: list[Item] | None = None
    shortcut: list[Item] | None = None


def data_inputs(node: Node, is_add: Callable[[Node], bool]) -> tuple:
    """The producers a node's value flows from: both operands of a residual addition, else the
    first tracked argument (a measured module's other arguments, such as masks, are not data)."""
    if is_add(node):
        return node.inputs[:2]
    return node.inputs[:1]


def ancestors(node: object, is_add: Callable[[Node], bool]) -> set[int]:
    """Indices of ``node`` and every node it descends from (``-1`` for the input)."""
    seen: set[int] = set()
    todo = [node]
    while todo:
        n = todo.pop()
        key = -1 if n is INPUT else n.index  # type: ignore[union-attr]
        if key in seen:
            continue
        seen.add(key)
        if n is not INPUT:
            todo.extend(data_inputs(n, is_add))  # type: ignore[arg-type]
    return seen


def _fork(a: object, b: object, is_add: Callable[[Node], bool], nodes: list[Node]) -> object:
    common = ancestors(a, is_add) & ancestors(b, is_add)
    last = max(common)
    return INPUT if last < 0 else nodes[last]


def _chain(end: object, stop: object, is_add: Callable[[Node], bool],
           layers_of: Callable[[Node], tuple[Layer, ...]], nodes: list[Node]) -> list[Item]:
    items: list[Item] = []
    t = end
    while t is not stop:
        if t is INPUT:
            raise VarpropError("the recorded graph is not series-parallel (a residual path does "
                               "not start at its block's input)")
        node: Node = t  # type: ignore[assignment]
        if is_add(node):
            a, b = node.inputs[:2]
            f = _fork(a, b, is_add, nodes)
            pa = _chain(a, f, is_add, layers_of, nodes)
            pb = _chain(b, f, is_add, layers_of, nodes)
            branch, shortcut = _split(pa, pb, node)
            items.append(Item(node, add=True, branch=branch, shortcut=shortcut))
            t = f
        else:
            items.append(Item(node, layers_of(node)))
            t = node.inputs[0]
    items.reverse()
    return items


def _weights(items: list[Item]) -> bool:
    return any(getattr(x, "init", None) is not None or getattr(x, "decorrelates", False)
               for it in items for x in it.layers) or any(it.add for it in items)


def _size(items: list[Item]) -> int:
    return sum(len(it.layers) + (_size(it.branch or []) + _size(it.shortcut or []) if it.add
                                 else 0) for it in items)


def _split(pa: list[Item], pb: list[Item], node: Node) -> tuple[list[Item], list[Item]]:
    wa, wb = _weights(pa), _weights(pb)
    if not wa and not wb:
        raise VarpropError(f"{node.name}: neither operand of the addition passes through a weight "
                           "layer (varprop's Residual needs a branch with one)")
    if wa and (not wb or _size(pa) >= _size(pb)):
        return pa, pb
    return pb, pa


def place(items: list[Item], prefix: tuple, before: tuple | None, shape: tuple[int, ...]
          ) -> tuple[list[Layer], tuple | None, tuple[int, ...]]:
    """Give every item its path (module docstring); the layers of this chain, the path of its
    last tensor and its shape.  ``before`` and ``shape`` are the path and varprop shape of the
    tensor the chain starts from (a ``Flatten`` of a tensor that is a vector for varprop
    already, as after ``GlobalAvgPool``, is dropped)."""
    layers: list[Layer] = []
    last = before

    def at(k: int) -> tuple:
        return prefix[:-1] + (prefix[-1] + k,) if prefix else (k,)

    for it in items:
        if it.add:
            here = at(len(layers))
            branch, _, _ = place(it.branch or [], here + ("branch", 0), last, shape)
            shortcut, _, _ = place(it.shortcut or [], here + ("shortcut", 0), last, shape)
            if not branch:
                raise VarpropError(f"{it.node.name}: the residual branch maps to no layer")
            block = Residual(branch, shortcut=shortcut or None)
            shape = block.output_shape(shape)
            layers.append(block)
            it.path = last = here
            continue
        for layer in it.layers:
            if isinstance(layer, Flatten) and len(shape) == 1:
                continue
            shape = layer.output_shape(shape)
            layers.append(layer)
            last = at(len(layers) - 1)
        it.path = last
    return layers, last, shape


def build(output: object, nodes: list[Node], is_add: Callable[[Node], bool],
          layers_of: Callable[[Node], tuple[Layer, ...]], start: object = INPUT) -> list[Item]:
    """The items from ``start`` (the input, or the node whose output is the network input) to
    ``output`` (module docstring); paths are set by :func:`place`."""
    return _chain(output, start, is_add, layers_of, nodes)


def walk_items(items: list[Item]) -> list[Item]:
    """Every item, nested ones included."""
    out: list[Item] = []
    for it in items:
        if it.add:
            out += walk_items(it.branch or []) + walk_items(it.shortcut or [])
        out.append(it)
    return out
