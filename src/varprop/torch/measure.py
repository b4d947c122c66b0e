r"""Measuring a PyTorch model's sites over re-initialisations (the replicates of
:func:`varprop.torch.audit`), and leaving the model exactly as it was (:class:`Snapshot`).

Per replicate :math:`r` and site :math:`s` (a module's output, or a residual sum of the traced
graph) the statistics are per-network mean squares over *all* entries of the batch,

.. math::

    x_{r,s} = \frac{1}{N_s}\sum_{i=1}^{N_s} y_{s,i}^2, \qquad
    g_{r,s} = \frac{1}{N_s}\sum_{i=1}^{N_s} \Big(\frac{\partial L}{\partial y_{s,i}}\Big)^2,

with :math:`\partial L/\partial y_{out}` drawn i.i.d. :math:`N(0, 1)` at the model output (the
seed of varprop's backward model), accumulated in float64 (``torch.linalg.vector_norm``).  The
gradients are computed by ``torch.autograd.grad`` with respect to the sites' outputs (and the
input), so no parameter gradient is computed or accumulated; tensor hooks registered when a site
computes its output record them (also when a later in-place operation changes the tensor).
Module sites are read by forward hooks when the module computes its output; residual sums and
other function calls from the traced model's recorded run (``TracedModel.site_tensors``).
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from varprop.errors import VarpropError

__all__ = ["Snapshot", "Recorder", "Measurements", "replicate_seeds", "reinitialise",
           "first_tensor"]


def replicate_seeds(seed: int, replicates: int) -> list[int]:
    r"""The ``torch.manual_seed`` of each replicate: 63-bit integers from
    ``numpy.random.SeedSequence(seed)`` (replicate :math:`r` uses the :math:`r`-th word of
    ``generate_state``), so the same ``seed`` gives the same replicates."""
    words = np.random.SeedSequence(seed).generate_state(replicates, np.uint64)
    return [int(w >> np.uint64(1)) for w in words]


def default_reinit(model: torch.nn.Module) -> None:
    """Call every module's ``reset_parameters()`` in ``model.modules()`` order."""
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


def reinitialise(model: torch.nn.Module, reinit: Callable[[torch.nn.Module], Any] | None,
                 seed: int) -> None:
    """Seed torch's global generator with ``seed`` and re-initialise ``model`` (``reinit(model)``
    or :func:`default_reinit`) without recording gradients; an exception the user's ``reinit``
    raises is a :class:`~varprop.errors.VarpropError` naming it (the caller restores the model)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        if reinit is None:
            default_reinit(model)
            return
        try:
            reinit(model)
        except VarpropError:
            raise
        except Exception as exc:
            raise VarpropError(f"reinit(model) raised {type(exc).__name__}: {exc} (the model is "
                               "restored to its state before the audit)") from exc


def first_tensor(value: Any) -> torch.Tensor | None:
    """``value`` if it is a tensor, else the first tensor in it (tuples, lists, dicts and
    Hugging Face output objects, in order), else ``None``."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict) or hasattr(value, "values") and callable(value.values):
        items: Sequence[Any] = list(value.values())
    elif isinstance(value, (tuple, list)):
        items = value
    else:
        return None
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def mean_square(t: torch.Tensor) -> float:
    """Mean of the squares of the entries of ``t``, accumulated in float64."""
    t = t.detach()
    if t.numel() == 0:
        return 0.0
    return float(torch.linalg.vector_norm(t, dtype=torch.float64) ** 2) / t.numel()


class Snapshot:
    """Everything :func:`audit` may change in a model, copied so that :meth:`restore` puts it
    back bit for bit: parameter and buffer values (BatchNorm running statistics and counters
    included), parameters' ``.grad`` (kept or absent) and ``requires_grad``, every module's
    ``training`` flag, and every module's registries as they were: which Parameter and buffer
    *objects* it holds (a ``reinit`` that replaces ``m.weight`` by a new ``nn.Parameter`` or
    registers a buffer is undone: the original objects are put back, the added names removed),
    its child modules, and its forward/backward hook dictionaries (hooks a ``reinit`` added are
    removed).  Attributes a ``reinit`` sets outside these registries (plain Python attributes) are
    not restored."""

    _REGISTRIES = ("_parameters", "_buffers", "_modules", "_forward_hooks",
                   "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                   "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
                   "_forward_hooks_always_called", "_state_dict_hooks",
                   "_load_state_dict_pre_hooks", "_non_persistent_buffers_set")

    def __init__(self, model: torch.nn.Module) -> None:
        self.params = [(p, p.detach().clone(), p.requires_grad,
                        None if p.grad is None else p.grad) for p in
                       _unique(model.parameters())]
        self.buffers = [(b, b.detach().clone()) for b in _unique(model.buffers())]
        self.training = [(m, m.training) for m in model.modules()]
        self.registries = [(m, name, copy.copy(getattr(m, name)))
                           for m in model.modules() for name in self._REGISTRIES
                           if hasattr(m, name)]

    def restore(self) -> None:
        for m, name, saved in self.registries:
            current = getattr(m, name)
            current.clear()
            current.update(saved)
        with torch.no_grad():
            for p, value, flag, grad in self.params:
                p.copy_(value)
                p.requires_grad_(flag)
                p.grad = grad
            for b, value in self.buffers:
                b.copy_(value)
        for m, mode in self.training:
            m.training = mode


def _unique(tensors: Any) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for t in tensors:
        if t is not None and id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


@dataclass
class Measurements:
    """Per site (by index in the site list) the per-replicate statistics."""

    forward: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    backward: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    mean: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    input_grad: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    model_seconds: float = 0.0

    def column(self, kind: str, index: int) -> np.ndarray | None:
        values = getattr(self, kind).get(index)
        return None if not values else np.asarray(values, dtype=float)


class Recorder:
    """Hooks on the sites of a traced model; :meth:`run` does one replicate's forward and
    backward pass and appends its statistics; :meth:`remove` takes every hook out.

    A site that is a module's output is read by a forward hook when the module computes it;
    the others (residual sums, function calls) are read by the recorded run
    ``traced.site_tensors(model, x, on_produce=...)`` when each is produced, before a later
    in-place change (``out += x`` then ``relu(inplace=True)``); the gradient hooks are registered
    then too, so they receive the gradient of the value as produced."""

    def __init__(self, model: torch.nn.Module, sites: Sequence[Any], traced: Any,
                 measure_inputs: Sequence[int] = ()) -> None:
        self.model = model
        self.traced = traced
        self.backward = True
        self.data = Measurements()
        self.handles: list[Any] = []
        self.captured: list[torch.Tensor] = []
        modules = dict(model.named_modules())
        by_module: dict[str, list[int]] = defaultdict(list)
        self.others: dict[str, int] = {}
        for i, site in enumerate(sites):
            if site.name in modules and site.kind != "add":
                by_module[site.name].append(i)
            else:
                self.others[site.name] = i
        self.seen: set[int] = set()
        self.pairs: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.grads: dict[int, torch.Tensor] = {}
        self.main_pass = True
        self.calls: dict[str, int] = defaultdict(int)
        want_inputs = set(measure_inputs)
        for name, indices in by_module.items():
            self.handles.append(modules[name].register_forward_hook(
                self._module_hook(name, indices, want_inputs)))

    @property
    def unmeasured(self) -> list[int]:
        """Sites whose output no replicate saw."""
        return [i for i in range(len(self.traced.sites)) if i not in self.seen]

    def _module_hook(self, name: str, indices: list[int], want_inputs: set[int]) -> Callable:
        def hook(module: torch.nn.Module, args: Any, out: Any) -> None:
            k = self.calls[name]
            self.calls[name] += 1
            if k >= len(indices):
                return  # called more often than the trace listed it: not a site
            i = indices[k]
            y = first_tensor(out)
            if y is not None:
                self._record(i, y)
            if i in want_inputs and self.backward and y is not None and y.requires_grad:
                x = first_tensor(args)
                if x is not None and x.requires_grad:
                    self.pairs.append((i, x, y))
        return hook

    def _produced(self, name: str, y: torch.Tensor) -> None:
        i = self.others.get(name)
        if i is not None:
            self._record(i, y)

    def _record(self, i: int, y: torch.Tensor) -> None:
        self.seen.add(i)
        self.data.forward[i].append(mean_square(y))
        if y.is_floating_point() and y.numel():
            self.data.mean[i].append(float(y.detach().mean(dtype=torch.float64)))
        else:
            self.data.mean[i].append(0.0)
        if self.backward and y.requires_grad:
            y.register_hook(lambda g, i=i: self._gradient(i, g))
            self.captured.append(y)

    def _gradient(self, i: int, g: torch.Tensor) -> None:
        if self.main_pass:  # not the pull-backs of _input_gradients, which pass here too
            self.data.backward[i].append(mean_square(g))
            self.grads[i] = g

    # -- one replicate -------------------------------------------------------------------------
    def run(self, example_input: torch.Tensor, backward: bool) -> None:
        self.backward = backward
        self.calls.clear()
        self.captured = []
        self.pairs: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.grads: dict[int, torch.Tensor] = {}
        self.main_pass = True
        x = example_input.detach().clone()
        if backward and x.is_floating_point():
            x.requires_grad_(True)
        t0 = time.perf_counter()
        with torch.set_grad_enabled(backward):
            if self.others:  # read when produced: the model may change them in place later
                ret, _ = self.traced.site_tensors(self.model, x, on_produce=self._produced)
            else:
                ret = self.model(x)
            out = _output_tensor(self.traced.output, ret)
        if out is None:
            raise VarpropError("the model returned no tensor: nothing to audit")
        if backward:
            leaves = [t for t in self.captured if t.requires_grad]
            if x.requires_grad:
                leaves.append(x)
            if out.requires_grad and leaves:
                torch.autograd.grad(out, leaves, grad_outputs=torch.randn_like(out),
                                    allow_unused=True, retain_graph=bool(self.pairs))
            self._input_gradients()
        self.data.model_seconds += time.perf_counter() - t0
        self.captured = []

    def _input_gradients(self) -> None:
        r"""For the measured modules: :math:`E|\partial L/\partial x|^2` per entry of the
        gradient through the module alone (its output's gradient pulled back by its own
        Jacobian; the input's full gradient also carries other paths, e.g. a residual shortcut)."""
        self.main_pass = False
        for i, x, y in self.pairs:
            g = self.grads.get(i)
            if g is None:
                continue
            (gx,) = torch.autograd.grad(y, x, g, retain_graph=True, allow_unused=True)
            if gx is not None:
                self.data.input_grad[i].append(mean_square(gx))
        self.pairs, self.grads = [], {}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def _output_tensor(output: Callable[[Any], Any], ret: Any) -> torch.Tensor | None:
    """The model's output tensor: ``output(ret)`` (the traced model's rule), else the first
    tensor of ``ret`` (a traced graph may return a dict where the model returns an object)."""
    try:
        out = output(ret)
    except (AttributeError, KeyError, TypeError, IndexError):
        out = None
    return first_tensor(out) if out is not None else first_tensor(ret)
