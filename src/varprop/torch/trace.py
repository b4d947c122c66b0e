r"""Read a PyTorch model into a varprop :class:`~varprop.Network`: :func:`to_network`,
:func:`trace_model`, :func:`predict_sites`.

The model is run once on ``example_input`` and its calls recorded (:mod:`varprop.torch.record`:
module hooks and a ``TorchFunctionMode``; ``torch.fx`` cannot trace shape-dependent control flow
such as Hugging Face's ``ResNetModel``), each call on the path to the output mapped by the table of
:mod:`varprop.torch.modules` and the residual additions made ``Residual`` blocks
(:mod:`varprop.torch.graph`).  Each weight layer's law comes from the model's own tensors
(:mod:`varprop.torch.inits`).

**Unsupported calls.**  A module without a mapping is one *site* as a whole.  A function call
without one (``matmul``, ``softmax``, an addition of a constant) makes its innermost enclosing
module (below the model itself) a site as a whole: the model is recorded again with that module
atomic (so ``BertSelfAttention`` and ``GPT2Attention`` are one site each, not a sea of ops).
With ``unsupported="error"`` the first such site raises a :class:`~varprop.errors.VarpropError`
naming it; with ``unsupported="measure"`` it becomes a
:class:`~varprop.network.layers.measured.Measured` layer carrying measured moments: those of
``measured[name]`` when given (the audit measures them over re-initialisations), else those of
this one forward pass (the model's current parameters; the gradient gain from one backward pass
with unit Gaussian output gradients), and the site's note says which.  A *leading* unsupported
site on an integer input (``nn.Embedding`` on token ids) becomes the network's input: its output
shape and measured second moment are ``input_shape`` and ``input_variance``.

**Output.**  :attr:`TracedModel.output` gets the output tensor from the model's return value: the
tensor itself, ``.last_hidden_state`` for Hugging Face model outputs, else the first tensor in it.

**Input.**  The network input is i.i.d. with the example input's mean square per entry (varprop's
model: a fixed input enters the first weight layer only through it, exactly for ``Dense``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from varprop._util.validation import check_choice, fail_type
from varprop.errors import VarpropError
from varprop.network.layers.measured import Measured, MeasuredMoments
from varprop.network.model import Network
from varprop.theory.fields import walk_fields, walk_nested
from varprop.torch.graph import Item, ancestors, build, place, walk_items
from varprop.torch.inits import MAX_DRAWS, draws_needed, pooled_draws
from varprop.torch.modules import (
    IDENTITY,
    Mapped,
    Unsupported,
    is_mapped_type,
    map_function,
    map_module,
)
from varprop.torch.record import INPUT, Node, Recording, record, tensors_in

__all__ = ["Site", "TracedModel", "trace_model", "to_network", "predict_sites", "output_of",
           "site_tensors", "MeasuredMoments"]

_CHOICES = ("error", "measure")
_MAX_PASSES = 4


@dataclass(frozen=True)
class Site:
    """One call of the model whose output the audit compares (module docstring of
    :mod:`varprop.torch.trace`): qualified ``name``, ``kind`` (module class or ``"add"``),
    per-sample ``shape``, ``path`` in the network (``()`` is the network input, ``None``: no
    prediction), ``measured``, the weights' ``init`` and ``init_source``, a ``note``."""

    name: str
    kind: str
    shape: tuple[int, ...]
    path: tuple | None
    measured: bool = False
    init: str | None = None
    init_source: str | None = None
    note: str = ""


@dataclass(frozen=True)
class TracedModel:
    """A traced model: its ``network``, ``sites`` (forward order), ``output`` (return value ->
    output tensor), ``batch``, and ``atomic`` (the module names recorded whole, for
    :func:`site_tensors`)."""

    network: Network
    sites: tuple[Site, ...]
    output: Callable[[object], torch.Tensor]
    batch: int
    atomic: frozenset[str] = frozenset()

    def site_tensors(self, model: nn.Module, example_input: torch.Tensor, *,
                     snapshot: bool = False,
                     on_produce: Callable[[str, torch.Tensor], None] | None = None
                     ) -> tuple[object, dict[str, torch.Tensor]]:
        """:func:`site_tensors` of this trace."""
        return site_tensors(self, model, example_input, snapshot=snapshot,
                            on_produce=on_produce)


def output_of(ret: object) -> torch.Tensor:
    """The output tensor of a model's return value (module docstring)."""
    if isinstance(ret, torch.Tensor):
        return ret
    hidden = getattr(ret, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    for t in tensors_in(ret):
        return t
    raise VarpropError(f"the model returned {type(ret).__name__}, which holds no tensor")


def _is_add(node: Node) -> bool:
    return (node.module is None and node.kind == "add" and len(node.inputs) >= 2
            and all(t.is_floating_point() for t in node.tensors[:2]))


def _classify(node: Node, batch: int) -> Mapped | str:
    """The node's mapping, or why it has none."""
    if _is_add(node):
        return IDENTITY
    try:
        if node.module is not None:
            return map_module(node.module, node.in_shape(), node.shape, batch=batch)
        if node.kind == "add":
            return "an addition of a constant (not a residual sum of two paths)"
        return map_function(node.kind, node.args, node.kwargs, node.in_shape(), node.shape)
    except Unsupported as err:
        return str(err)
    except VarpropError as err:  # a weight law varprop cannot model (a non-zero mean)
        raise VarpropError(f"{node.name} ({type(node.module).__name__}): {err}") from err


def _record(model: nn.Module, x: torch.Tensor, whole: set[str],
            snapshot: frozenset[str] = frozenset(),
            on_produce: Callable[[str, torch.Tensor], None] | None = None) -> Recording:
    def atomic(name: str, module: nn.Module) -> bool:
        return name in whole or not any(True for _ in module.children()) or is_mapped_type(module)
    return record(model, x, atomic, snapshot, on_produce)


def _relevant(rec: Recording) -> list[Node]:
    out = rec.producer_of(output_of(rec.ret))
    if out is None:
        raise VarpropError("the model's output does not depend on its input")
    if out is INPUT:
        raise VarpropError("the model returns its input unchanged")
    keep = ancestors(out, _is_add)
    return [n for n in rec.nodes if n.index in keep]


def _converge(model: nn.Module, x: torch.Tensor, batch: int
              ) -> tuple[Recording, list[Node], dict[int, Mapped | str], set[str]]:
    """Record until no unsupported call sits inside a module that could be measured whole."""
    whole: set[str] = set()
    for _ in range(_MAX_PASSES):
        with torch.no_grad():
            rec = _record(model, x, whole)
        nodes = _relevant(rec)
        mapping = {n.index: _classify(n, batch) for n in nodes}
        grow = {n.stack[-1] for n in nodes if isinstance(mapping[n.index], str)
                and n.module is None and n.stack}
        if grow <= whole:
            return rec, nodes, mapping, whole
        whole |= grow
    raise VarpropError("the model's unsupported calls did not settle into whole modules")


def _moments_once(model: nn.Module, x: torch.Tensor, whole: set[str], names: set[str]
                  ) -> dict[str, MeasuredMoments]:
    """Moments of the named sites in one forward and backward pass (current parameters)."""
    gen = torch.Generator().manual_seed(0)
    result = {}
    with torch.enable_grad():
        rec = _record(model, x, whole, frozenset(names))
        byname = {n.name: n for n in rec.nodes if n.name in names}
        out = output_of(rec.ret)
        seed = torch.randn(out.shape, generator=gen, dtype=out.dtype)
        outs = [n.output for n in byname.values()]
        grads: list = [None] * len(outs)
        diff = [i for i, t in enumerate(outs) if t.requires_grad]
        if out.requires_grad and diff:
            got = torch.autograd.grad(out, [outs[i] for i in diff], seed, allow_unused=True,
                                      retain_graph=True)
            for i, g in zip(diff, got):
                grads[i] = g
        for k, (name, node) in enumerate(byname.items()):
            y = rec.values[name].double()  # as produced (not changed in place later)
            gain = 1.0
            x_in = node.tensors[0]
            g_out = grads[k]
            if g_out is not None and x_in.requires_grad and float(g_out.pow(2).mean()) > 0:
                (g_in,) = torch.autograd.grad(node.output, x_in, g_out, allow_unused=True,
                                              retain_graph=True)  # through this module alone
                if g_in is not None:
                    gain = float(g_in.double().pow(2).mean() / g_out.double().pow(2).mean())
            mean = float(y.mean())
            result[name] = MeasuredMoments(max(float(y.pow(2).mean()), mean * mean), mean, gain)
    return result


Draws = Callable[[int], object] | Sequence[Mapping[str, torch.Tensor]]


def _collect(model: nn.Module, draws: Draws) -> dict[int, list[torch.Tensor]]:
    """Other draws of each parameter, keyed by ``id`` of the model's parameter: from the given
    state dicts, or by calling ``draws(k)`` for ``k = 0, 1, ...`` (each call re-initialises the
    model in place) until every parameter has ``draws_needed`` of them; the parameters' values
    are restored afterwards, also on an error."""
    params = dict(model.named_parameters())
    pool: dict[int, list[torch.Tensor]] = {id(p): [] for p in params.values()}
    if callable(draws):
        need = {n: draws_needed(p.numel()) - 1 for n, p in params.items()}
        saved = {n: p.detach().clone() for n, p in params.items()}
        try:
            for k in range(max(need.values(), default=0)):
                draws(k)
                now = dict(model.named_parameters())
                for n, p in params.items():
                    if len(pool[id(p)]) < need[n] and n in now:
                        pool[id(p)].append(now[n].detach().clone())
        finally:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in saved and p.shape == saved[n].shape:
                        p.copy_(saved[n])
        return pool
    if isinstance(draws, (str, bytes)) or not isinstance(draws, Sequence) or not all(
            isinstance(d, Mapping) for d in draws):
        raise fail_type("draws", draws, "a callable draws(k) re-initialising the model, or a "
                        "list of state dicts")
    for d in list(draws)[:MAX_DRAWS]:
        for n, p in params.items():
            t = d.get(n)
            if isinstance(t, torch.Tensor) and t.shape == p.shape:
                pool[id(p)].append(t.detach())
    return pool


def trace_model(model: nn.Module, example_input: torch.Tensor, *, unsupported: str = "error",
                measured: dict[str, MeasuredMoments] | None = None,
                draws: Draws | None = None) -> TracedModel:
    """Trace ``model`` on ``example_input`` (module docstring): the network, its sites, how to
    read the output, the batch size.  The model's buffers (BatchNorm running statistics, which
    a train-mode forward updates) and torch's CPU random state are restored afterwards, also on
    an error; its parameters are not changed and no ``.grad`` is left (the gradients use
    ``torch.autograd.grad``).  A model on the meta device raises a
    :class:`~varprop.errors.VarpropError`.

    ``draws`` gives the weight laws more than one draw to be recognised from
    (:mod:`varprop.torch.inits`, "Several draws"): a callable ``draws(k)`` that re-initialises
    ``model`` in place for draw ``k`` (called as often as the smallest parameter needs, at most
    ``MAX_DRAWS - 1`` times; the parameters are restored afterwards), or a list of state dicts
    of other initialisations."""
    if not isinstance(model, nn.Module):
        raise fail_type("model", model, "a torch.nn.Module")
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
        raise fail_type("example_input", example_input, "a torch.Tensor with a batch axis first")
    check_choice("unsupported", unsupported, _CHOICES)
    if measured is not None and not isinstance(measured, dict):
        raise fail_type("measured", measured, "a dict name -> MeasuredMoments")
    if any(t.is_meta for t in (*model.parameters(), *model.buffers(), example_input)):
        raise VarpropError("the model or example_input is on the meta device (no values): "
                           "materialise it first (model.to_empty(device='cpu') and initialise)")
    saved = [(b, b.detach().clone()) for b in model.buffers()]  # BN running statistics
    try:
        with torch.random.fork_rng(devices=[]):  # train-mode Dropout, draws(k): RNG restored
            pool = _collect(model, draws) if draws is not None else {}
            with pooled_draws(pool):
                return _trace(model, example_input, unsupported, measured)
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def _trace(model: nn.Module, example_input: torch.Tensor, unsupported: str,
           measured: dict[str, MeasuredMoments] | None) -> TracedModel:
    batch = int(example_input.shape[0])
    rec, nodes, mapping, whole = _converge(model, example_input, batch)
    bad = [n for n in nodes if isinstance(mapping[n.index], str)]
    if bad and unsupported == "error":
        n = bad[0]
        what = type(n.module).__name__ if n.module is not None else f"call {n.kind}"
        raise VarpropError(f"{n.name} ({what}) has no varprop mapping: {mapping[n.index]}; pass "
                           "unsupported='measure' to measure its output instead")
    given = dict(measured or {})
    missing = {n.name for n in bad} - set(given)
    once = _moments_once(model, example_input, whole, missing) if missing else {}
    moments = {**once, **{k: v for k, v in given.items() if k in {n.name for n in bad}}}

    def layers_of(node: Node) -> tuple:
        m = mapping[node.index]
        if isinstance(m, str):
            return (Measured(node.shape, moments[node.name], name=node.name),)
        return m.layers

    out_node = rec.producer_of(output_of(rec.ret))
    items = build(out_node, rec.nodes, _is_add, layers_of)
    start: object = INPUT
    x = example_input
    input_shape = tuple(x.shape[1:])
    input_variance = float(x.double().pow(2).mean()) if x.is_floating_point() else None
    if not x.is_floating_point():
        while items and not items[0].add and not items[0].layers:
            items.pop(0)  # calls keeping the token ids' values (a view)
        first = items[0].node if items and not items[0].add else None
        if first is None or not isinstance(mapping[first.index], str):
            raise VarpropError("an integer input must enter through a module measured whole (an "
                               "nn.Embedding): pass unsupported='measure'")
        items.pop(0)
        start, input_shape = first, first.shape
        input_variance = moments[first.name].second
    layers, _, _ = place(items, (), (), input_shape)
    if not layers:
        raise VarpropError("the model maps to no layer (its output is its input's values)")
    net = Network(layers, input_shape=input_shape, input_variance=input_variance)
    sites = _sites(items, start, mapping, once, given)
    return TracedModel(net, tuple(sites), output_of, batch, frozenset(whole))


def _note(node: Node, m: Mapped | str, once: dict, given: dict) -> tuple[bool, str]:
    if isinstance(m, str):
        how = ("measured over re-initialisations (given)" if node.name in given else
               "measured in one forward/backward pass of the model as it is (pass measured= "
               "for averages over re-initialisations)")
        return True, f"unsupported ({m}): {how}"
    return False, m.note


def _sites(items: list[Item], start: object, mapping: dict, once: dict, given: dict) -> list[Site]:
    out = []
    if start is not INPUT:
        node: Node = start  # type: ignore[assignment]
        _, how = _note(node, mapping[node.index], once, given)
        out.append(Site(node.name, node.kind, node.shape, (), True, None, None,
                        f"the network input: its shape and measured second moment; {how}"))
    for it in sorted(walk_items(items), key=lambda i: i.node.index):
        node = it.node
        m = mapping[node.index]
        if not it.add and not isinstance(m, str) and not m.layers and node.module is None:
            continue  # a call keeping its input's values: no site of its own
        measured, note = _note(node, m, once, given)
        init = None if isinstance(m, str) else m.init
        source = None if isinstance(m, str) else m.init_source
        if it.add:
            note = "residual addition"
        out.append(Site(node.name, "add" if it.add else node.kind, node.shape, it.path, measured,
                        init, source, note))
    return out


def to_network(model: nn.Module, example_input: torch.Tensor, *, unsupported: str = "error",
               measured: dict[str, MeasuredMoments] | None = None) -> Network:
    """The varprop :class:`~varprop.Network` of ``model`` at ``example_input``
    (:func:`trace_model`'s ``.network``)."""
    return trace_model(model, example_input, unsupported=unsupported, measured=measured).network


def predict_sites(traced: TracedModel) -> list[tuple[float | None, float | None]]:
    r"""Per site of ``traced``: the predicted :math:`E y^2` of its output (averaged over its
    entries) and :math:`E(\partial L/\partial y)^2` (i.i.d. unit-variance gradients at the
    output), from :func:`varprop.theory.fields.walk_nested`; ``None`` without a prediction."""
    if not isinstance(traced, TracedModel):
        raise fail_type("traced", traced, "a TracedModel (from trace_model)")
    fields = walk_nested(traced.network)
    out: list[tuple[float | None, float | None]] = []
    for site in traced.sites:
        if site.path is None:
            out.append((None, None))
        elif site.path == ():
            grad = walk_fields(traced.network).input_gradient
            out.append((float(traced.network.input_variance), grad.average_second()))
        else:
            f, g = fields[site.path]
            out.append((f.average_second(), g.average_second()))
    return out


def site_tensors(traced: TracedModel, model: nn.Module, example_input: torch.Tensor, *,
                 snapshot: bool = False,
                 on_produce: Callable[[str, torch.Tensor], None] | None = None
                 ) -> tuple[object, dict[str, torch.Tensor]]:
    """Run ``model(example_input)`` recorded as when ``traced`` was made: the return value and
    the output tensor of every site by name (in the autograd graph, so a tensor hook or
    ``retain_grad`` on them gives the gradients; the names of additions and other calls are
    those of the recording).  A model may change a site's tensor in place later in the forward
    (Hugging Face's ResNet adds the shortcut with ``hidden_state += residual``, so the tensor of
    the last BatchNorm of a block ends up holding the sum; its gradient is unaffected, the sum
    passing it through): with ``snapshot=True`` the values are detached copies taken when each
    site's output was produced -- use those for forward statistics; ``on_produce(name,
    tensor)`` is called for each site when its output is produced (read its value and register
    a gradient hook there: a hook registered before an in-place change receives the gradient of
    the value as produced).  Hooks are removed afterwards, also on an exception."""
    if not isinstance(traced, TracedModel):
        raise fail_type("traced", traced, "a TracedModel (from trace_model)")
    names = frozenset(s.name for s in traced.sites)
    def produced(name: str, t: torch.Tensor) -> None:
        if name in names:
            on_produce(name, t)  # type: ignore[misc]
    rec = _record(model, example_input, set(traced.atomic), names if snapshot else frozenset(),
                  produced if on_produce is not None else None)
    if snapshot:
        return rec.ret, dict(rec.values)
    return rec.ret, {n.name: n.output for n in rec.nodes if n.name in names}
