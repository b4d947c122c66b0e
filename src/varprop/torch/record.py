r"""Recording a PyTorch model's forward pass as a graph of module and function calls.

``torch.fx.symbolic_trace`` cannot trace models whose forward branches on tensor shapes
(Hugging Face's ``ResNetModel`` checks its input's channels), and ``transformers`` 5 no longer
ships its own fx tracer.  :func:`record` therefore runs the model once on the example input and
records, as it happens, which call produced which tensor:

* forward pre/post hooks on every sub-module: an *atomic* module (one the caller's predicate
  accepts: a module varprop maps, a module without children, or an unsupported container to be
  measured whole) becomes one node whose inputs are the tracked tensors among its arguments;
  nothing inside it is recorded;
* a :class:`torch.overrides.TorchFunctionMode` for the calls between atomic modules
  (``x + f(x)``, ``torch.relu``, ``torch.flatten``, ...): a call with a tracked tensor argument
  becomes a node named ``<enclosing module>.<function>`` (``encoder.layer.0.add``; a second
  ``add`` in the same module is ``add_1``), its tensor results tracked.

A module called more than once gives one node a call: ``fc``, ``fc (call 2)``, ...; a name is
never given twice (a function's ``add_1`` skips a name already taken).

A tensor is tracked when it is the model input or a node's result (by object identity; the
recording keeps every tracked tensor alive, so identities are not reused).  Calls on untracked
tensors only (masks built from constants, position ids) are not recorded: for the graph they
are constants.  Control flow runs as the model runs it, so the graph is that of this input.
Names are deterministic for a given model and input shape, so a later run with the same
predicate finds the same sites (:func:`site_tensors`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from varprop.torch.modules import function_kind

__all__ = ["INPUT", "Node", "Recording", "record", "tensors_in"]

#: The producer of the model input.
INPUT = "<input>"


def tensors_in(obj: object) -> Iterator[torch.Tensor]:
    """The tensors in ``obj`` (nested tuples, lists, dicts and model-output objects), in order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for x in obj:
            yield from tensors_in(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from tensors_in(x)
    elif hasattr(obj, "to_tuple"):  # transformers' ModelOutput
        yield from tensors_in(obj.to_tuple())


@dataclass(eq=False)
class Node:
    """One recorded call: ``module`` (or ``None`` for a function call ``kind``), the producers
    of its tracked tensor arguments (``inputs``: :class:`Node` or :data:`INPUT`), the tensors
    (``tensors``) and per-sample shapes (no batch axis) of those arguments and of its primary
    result ``output`` (the first tensor it returns), and the enclosing modules ``stack``."""

    index: int
    name: str
    kind: str
    module: nn.Module | None
    args: tuple
    kwargs: dict
    inputs: tuple
    tensors: tuple
    output: torch.Tensor
    stack: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.output.shape[1:])

    def in_shape(self, k: int = 0) -> tuple[int, ...]:
        return tuple(self.tensors[k].shape[1:])


@dataclass
class Recording:
    """A recorded forward: its ``nodes`` in completion order (inputs before users), the model's
    return value ``ret``, the ``input`` and the tracked tensors' producers."""

    nodes: list[Node]
    ret: object
    input: torch.Tensor
    producer: dict[int, object] = field(repr=False)
    #: Detached copies of the named nodes' outputs taken when they were produced (a model may
    #: change a tensor in place afterwards: Hugging Face's ResNet adds its shortcut with ``+=``).
    values: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def producer_of(self, t: torch.Tensor) -> object:
        return self.producer.get(id(t))


class _Recorder(TorchFunctionMode):
    def __init__(self, atomic: Callable[[str, nn.Module], bool],
                 snapshot: frozenset[str] = frozenset(),
                 on_produce: Callable[[str, torch.Tensor], None] | None = None) -> None:
        super().__init__()
        self.atomic = atomic
        self.snapshot = snapshot
        self.on_produce = on_produce
        self.quiet = False  # our own calls on tracked tensors are not the model's
        self.values: dict[str, torch.Tensor] = {}
        self.nodes: list[Node] = []
        self.producer: dict[int, object] = {}
        self.keep: list[torch.Tensor] = []
        self.stack: list[tuple[str, bool, tuple, tuple]] = []
        self.depth = 0  # inside an atomic module
        self.counts: dict[str, int] = {}
        self.used: set[str] = set()

    def _track(self, node: object, out: object) -> list[torch.Tensor]:
        outs = list(tensors_in(out))
        for t in outs:
            self.producer[id(t)] = node
            self.keep.append(t)
        return outs

    def _add(self, node: Node, out: object) -> None:
        self.nodes.append(node)
        self._track(node, out)
        self.quiet = True
        try:
            if node.name in self.snapshot:
                self.values[node.name] = node.output.detach().clone()
            if self.on_produce is not None:
                self.on_produce(node.name, node.output)
        finally:
            self.quiet = False

    def _unique(self, name: str, module: bool = False) -> str:
        """``name`` the first time; a module's later calls ``"fc (call 2)"``, a function's
        ``"block.add_1"``; never a name already given (a module may be called ``fc_1``)."""
        n = self.counts.get(name, 0)
        while True:
            self.counts[name] = n + 1
            out = name if n == 0 else (f"{name} (call {n + 1})" if module else f"{name}_{n}")
            if out not in self.used:
                self.used.add(out)
                return out
            n += 1

    def _tracked(self, args: tuple, kwargs: dict) -> tuple[tuple, tuple]:
        ts = [t for t in tensors_in((args, kwargs)) if id(t) in self.producer]
        return tuple(self.producer[id(t)] for t in ts), tuple(ts)

    def _enclosing(self) -> tuple[str, ...]:
        return tuple(name for name, _, _, _ in self.stack)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if self.quiet:
            return func(*args, **kwargs)
        producers, ts = ((), ()) if self.depth else self._tracked(args, kwargs)
        out = func(*args, **kwargs)
        if self.depth or not producers:
            return out
        outs = list(tensors_in(out))
        if not outs:
            return out
        kind = function_kind(func)
        where = self._enclosing()
        name = self._unique(f"{where[-1]}.{kind}" if where else kind)
        node = Node(len(self.nodes), name, kind, None, args, kwargs, producers, ts, outs[0], where)
        self._add(node, out)
        return out

    def pre(self, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.depth:
            self.depth += 1
            return
        atomic = self.atomic(name, module)
        producers, ts = self._tracked(args, kwargs) if atomic else ((), ())
        self.stack.append((name, atomic, producers, ts))
        if atomic:
            self.depth += 1

    def post(self, name: str, module: nn.Module, args: tuple, kwargs: dict, out: object) -> None:
        if self.depth > 1 or (self.depth == 1 and not self.stack[-1][1]):
            self.depth -= 1
            return
        _, atomic, producers, ts = self.stack.pop()
        if not atomic:
            return
        self.depth -= 1
        outs = list(tensors_in(out))
        if not producers or not outs:
            return
        node = Node(len(self.nodes), self._unique(name, module=True), type(module).__name__, module, args,
                    kwargs, producers, ts, outs[0], self._enclosing())
        self._add(node, out)


def record(model: nn.Module, example_input: torch.Tensor,
           atomic: Callable[[str, nn.Module], bool],
           snapshot: frozenset[str] = frozenset(),
           on_produce: Callable[[str, torch.Tensor], None] | None = None) -> Recording:
    """Run ``model(example_input)`` once and record its graph (module docstring).  ``atomic(name,
    module)`` says which sub-modules are recorded whole; the outputs of the nodes named in
    ``snapshot`` are copied as they are produced, and ``on_produce(name, tensor)`` is called for
    every node at that moment (before the model can change the tensor in place: a tensor hook
    registered then receives the gradient of that version).  Hooks and the mode are removed
    also when the forward raises."""
    rec = _Recorder(atomic, snapshot, on_produce)
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        handles.append(module.register_forward_pre_hook(
            lambda m, a, k, _n=name: rec.pre(_n, m, a, k), with_kwargs=True))
        handles.append(module.register_forward_hook(
            lambda m, a, k, o, _n=name: rec.post(_n, m, a, k, o), with_kwargs=True,
            always_call=True))
    rec.producer[id(example_input)] = INPUT
    rec.keep.append(example_input)
    try:
        with rec:
            ret = model(example_input)
    finally:
        for h in handles:
            h.remove()
    return Recording(rec.nodes, ret, example_input, rec.producer, rec.values)
