r"""Monte Carlo engines as objects: what each supports, what a run costs, and the one "auto" rule.

An engine walks ``network.layers`` for a block of replicates (:mod:`varprop.simulation.walk`).
Two engines exist:

``dense`` (:data:`DENSE`)
    Draws every weight matrix (any init scheme: uniform, truncated, orthogonal, non-zero mean)
    and multiplies: :math:`O(n_{in} n_{out})` random numbers per ``Dense`` layer and replicate.
``gaussian`` (:data:`GAUSSIAN`)
    The exact-in-law shortcut for i.i.d. normal weights (any mean): only the projections of the
    weights on the signal are drawn, :math:`O((n_{in} + n_{out}) B)` random numbers per layer (see
    :mod:`varprop.simulation.gaussian`).

Each engine has a ``name``, ``supports(network)`` (``None`` if it can run the network, else the
reason) and ``cost(network, replicates, batch, dtype)`` (a :class:`Cost`: bytes of the smallest
working set plus the results, work units and seconds at :data:`WORK_RATE`).
:func:`select_engine` is the one rule behind ``engine="auto"`` (used by
:func:`varprop.simulate` and by the checker), and :func:`check_resources` the one refusal of
oversize runs (:data:`MEMORY_LIMIT`, :data:`TIME_LIMIT`: module attributes a caller may raise).

The cost model counts, per replicate, the activations (input plus every ``Dense`` output, times
the batch, in ``dtype`` for the signal, its pre-image and its gradient, plus float64
temporaries), the dense engine's weights, and the work: random numbers plus multiply-adds.  It is
an estimate (exact up to a small factor), computed in floating point so that no size overflows,
from the network's run-length encoded layers (a depth of :math:`10^9` costs nothing to assess).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from varprop._util.validation import check_choice, fail
from varprop.errors import InvalidArgument
from varprop.network.layers.base import Layer
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.network.model import Network

__all__ = [
    "Engine",
    "DenseEngine",
    "GaussianEngine",
    "Cost",
    "DENSE",
    "GAUSSIAN",
    "GENERAL",
    "GeneralEngine",
    "ENGINE_OBJECTS",
    "ENGINES",
    "select_engine",
    "network_batch",
    "check_resources",
    "resource_estimate",
    "BLOCK_SIZE",
    "MEMORY_BUDGET",
    "DENSE_BLOCK_BYTES",
    "MEMORY_LIMIT",
    "TIME_LIMIT",
    "WORK_RATE",
]

#: Replicates per random stream (Gaussian engine; the dense engine may use fewer).
BLOCK_SIZE = 64
#: Bytes of working memory a chunk may use (approximately), when ``chunk_size`` is not given
#: (the dense engine uses :data:`DENSE_BLOCK_BYTES`, or one block if that is larger).  Smaller
#: chunks keep the Gaussian engine's working set in cache (64 MiB ran 10-30% faster than 256 MiB
#: at n = 512, L = 20); the result does not depend on it.
MEMORY_BUDGET = 64 * 2**20
#: Bytes of weights one dense block may hold (fixes the dense engine's block size).
DENSE_BLOCK_BYTES = 64 * 2**20
#: Working set of one dense chunk: blocks at least this big run one per chunk (weights kept in
#: cache, drawn in place), smaller ones are grouped up to it.  The result does not depend on it.
DENSE_CHUNK_BYTES = 4 * 2**20
#: Largest memory a simulation may need (bytes): the smallest working set (one block of
#: replicates) plus the per-replicate results.  Beyond it :func:`check_resources` refuses.
MEMORY_LIMIT = 4 * 2**30
#: Longest estimated run time (seconds) accepted; beyond it :func:`check_resources` refuses.
TIME_LIMIT = 3600.0
#: Work units per second assumed by the time estimate (one work unit ~ one random number or one
#: multiply-add; about one core's speed, measured 0.5-2e8/s on the development machine).
WORK_RATE = 2.0e8

#: The ``engine`` argument's values.
ENGINES = ("auto", "dense", "gaussian", "general")


@dataclass(frozen=True)
class NetworkShape:
    """What the cost model needs of a network: the ``Dense`` fan pairs with their multiplicities,
    the sum of the activation widths (input plus every ``Dense`` output), the number of ``Dense``
    layers and of layer positions, and the largest width -- all from the runs."""

    pairs: tuple[tuple[int, int, int], ...]  # (n_in, n_out, count)
    width_sum: int
    dense_layers: int
    positions: int
    max_width: int

    @property
    def weights(self) -> int:
        r""":math:`\sum_l n_{l-1} n_l` (weight entries of one replicate)."""
        return sum(i * o * c for i, o, c in self.pairs)


@lru_cache(maxsize=256)
def network_shape(network: Network) -> NetworkShape:
    """The :class:`NetworkShape` of ``network`` (each run is walked until its shape repeats)."""
    shape = network.input_shape
    counts: dict[tuple[int, int], int] = {}
    for block, count in network.layers.runs:
        for rep in range(count):
            before, seen = shape, []
            for layer in block:
                out = layer.output_shape(shape)
                if isinstance(layer, Dense):
                    seen.append((shape[0], out[0]))
                shape = out
            times = count - rep if shape == before else 1  # later repetitions repeat this one
            for pair in seen:
                counts[pair] = counts.get(pair, 0) + times
            if times > 1:
                break
    pairs = tuple((i, o, c) for (i, o), c in counts.items())
    n0 = network.input_shape[0]
    return NetworkShape(pairs, n0 + sum(o * c for _, o, c in pairs), sum(c for _, _, c in pairs),
                        network.layers.size, max([n0] + [o for _, o, _ in pairs]))


@dataclass(frozen=True)
class Cost:
    """What a simulation needs at least: ``bytes`` (one block of replicates plus the results),
    ``work`` (work units: random numbers and multiply-adds), ``seconds`` (``work`` at
    :data:`WORK_RATE`) and the engine's ``block`` size (replicates per random stream)."""

    bytes: float
    work: float
    seconds: float
    block: int


class Engine(abc.ABC):
    """A Monte Carlo engine (see the module docstring); instances are :data:`DENSE`,
    :data:`GAUSSIAN` and :data:`GENERAL`."""

    name: str = ""

    def supports(self, network: Network) -> str | None:
        """``None`` if this engine can simulate ``network``, else the reason it cannot."""
        if len(network.input_shape) != 1:
            return f"the {self.name} engine simulates vector inputs only"
        for layer in _distinct_layers(network):
            if not isinstance(layer, (Dense, Nonlinearity)):
                return f"the {self.name} engine cannot sample {layer!r}"
        return None

    def block_size(self, network: Network, itemsize: int) -> int:
        """Replicates per random stream (a function of the configuration only)."""
        return BLOCK_SIZE

    @abc.abstractmethod
    def bytes_per_replicate(self, network: Network, batch: int, itemsize: int) -> float:
        """Working bytes of one replicate (chunk sizing)."""

    @abc.abstractmethod
    def work_per_replicate(self, network: Network, batch: int) -> float:
        """Work units of one replicate, forward and backward."""

    def cost(self, network: Network, replicates: int, batch: int = 1,
             dtype: str | np.dtype = "float64") -> Cost:
        r"""``Cost`` of ``replicates`` replicates with ``batch`` inputs each, in ``dtype``.

        Bytes: one block of replicates (``block * bytes_per_replicate``) plus the results, about
        116 bytes per replicate and layer position (statistics, masks and their concatenation;
        232 per layer of an MLP).  Work: :meth:`work_per_replicate` times ``replicates``.
        """
        itemsize = np.dtype(dtype).itemsize
        shp = network_shape(network)
        block = self.block_size(network, itemsize)
        per = self.bytes_per_replicate(network, batch, itemsize)
        results = float(replicates) * (116.0 * shp.positions + 64.0)
        work = float(replicates) * self.work_per_replicate(network, batch)
        return Cost(min(float(replicates), float(block)) * per + results, work, work / WORK_RATE,
                    block)


class DenseEngine(Engine):
    """Full weight matrices drawn with each ``Dense`` layer's init scheme (any scheme)."""

    name = "dense"

    def block_size(self, network: Network, itemsize: int) -> int:
        per_replicate = itemsize * network_shape(network).weights
        return int(min(BLOCK_SIZE, max(1, DENSE_BLOCK_BYTES // max(per_replicate, 1))))

    def bytes_per_replicate(self, network: Network, batch: int, itemsize: int) -> float:
        shp = network_shape(network)
        return float(shp.width_sum) * batch * (3 * itemsize + 24) + float(itemsize) * shp.weights

    def work_per_replicate(self, network: Network, batch: int) -> float:
        shp = network_shape(network)
        return float(shp.weights) * (1.0 + 2.0 * batch) + 8.0 * batch * shp.width_sum


class GaussianEngine(Engine):
    r"""The exact :math:`O(n)` shortcut for i.i.d. normal weights (:mod:`varprop.simulation.gaussian`)."""

    name = "gaussian"

    def supports(self, network: Network) -> str | None:
        reason = super().supports(network)
        if reason is not None:
            return reason
        for layer in _distinct_layers(network):
            if isinstance(layer, Dense) and not layer.init.is_gaussian:
                return (f"the Gaussian shortcut needs i.i.d. normal weights, not the non-Gaussian scheme "
                        f"{layer.init!r}")
        return None

    def bytes_per_replicate(self, network: Network, batch: int, itemsize: int) -> float:
        shp = network_shape(network)
        return (float(shp.width_sum) * batch * (3 * itemsize + 24)
                + 16.0 * min(batch, shp.max_width) * shp.width_sum)

    def work_per_replicate(self, network: Network, batch: int) -> float:
        shp = network_shape(network)
        if batch == 1:
            return 8.0 * shp.width_sum
        total = 0.0
        for i, o, c in shp.pairs:  # draws, two thin QRs and the products of the conditional law
            k, kp = min(batch, i), min(batch, o)
            total += c * ((k * o + kp * i) + 2.0 * (i * k * k + o * kp * kp)
                          + 4.0 * batch * (i * k + o * k))
        return total + 8.0 * batch * shp.width_sum

    def pays(self, network: Network, batch: int) -> bool:
        """The shortcut draws ``k n_out + k' n_in`` normals per layer instead of ``n_out n_in``
        (``k = min(B, n_in)``, ``k' = min(B, n_out)``): it pays when that is at most half, in
        every ``Dense`` layer."""
        for n_in, n_out, _ in network_shape(network).pairs:
            if 2 * (min(batch, n_in) * n_out + min(batch, n_out) * n_in) > n_in * n_out:
                return False
        return True


class GeneralEngine(Engine):
    r"""Any network whose layers implement ``mc_draw``/``mc_forward``/``mc_backward``
    (:mod:`varprop.simulation.fields`): per replicate every layer's parameters are drawn and
    applied to a tensor ``(R, B, *shape)``.  Chosen by ``"auto"`` only for networks the dense and
    Gaussian engines do not support (so their results stay bit-identical)."""

    name = "general"

    def supports(self, network: Network) -> str | None:
        for layer in _distinct_layers(network):
            if type(layer).mc_forward is Layer.mc_forward or type(layer).mc_draw is Layer.mc_draw:
                return f"the general engine cannot sample {layer!r} (it has no mc_* methods)"
        return None

    def block_size(self, network: Network, itemsize: int, batch: int = 1) -> int:
        """Replicates per random stream: as many as fit in :data:`MEMORY_BUDGET` with ``batch``
        inputs each (at most :data:`BLOCK_SIZE`), a function of the configuration only."""
        per = self.bytes_per_replicate(network, batch, itemsize)
        return int(min(BLOCK_SIZE, max(1, MEMORY_BUDGET // max(per, 1.0))))

    def bytes_per_replicate(self, network: Network, batch: int, itemsize: int) -> float:
        entries, params, _ = general_shape(network)
        return (float(entries) * batch * (3 * itemsize + 24) + float(itemsize) * params
                + 8.0 * batch * general_workspace(network))

    def work_per_replicate(self, network: Network, batch: int) -> float:
        entries, params, _ = general_shape(network)
        return float(params) * (1.0 + 4.0 * batch) + 12.0 * batch * entries

    def cost(self, network: Network, replicates: int, batch: int = 1,
             dtype: str | np.dtype = "float64") -> Cost:
        itemsize = np.dtype(dtype).itemsize
        block = self.block_size(network, itemsize, batch)
        per = self.bytes_per_replicate(network, batch, itemsize)
        results = float(replicates) * (116.0 * network.layers.size + 64.0
                                       + 16.0 * general_shape(network)[2])  # + per-position arrays
        work = float(replicates) * self.work_per_replicate(network, batch)
        return Cost(min(float(replicates), float(block)) * per + results, work, work / WORK_RATE,
                    block)


@lru_cache(maxsize=256)
def general_shape(network: Network) -> tuple[int, int, int]:
    """``(entries, parameters, positions)`` of one replicate of ``network`` for one sample:
    entries of the input and of every layer's output, random parameters drawn
    (``mc_parameter_count``), and tensor positions over all outputs (channels excluded, for the
    per-position statistics; an upper bound: the largest axis is taken as the channels)."""
    shape = network.input_shape
    entries, params, positions = math.prod(shape), 0, 0
    for layer in network.layers:
        params += layer.mc_parameter_count(shape)
        shape = layer.output_shape(shape)
        entries += math.prod(shape)
        positions += math.prod(shape) // max(shape)
    return entries, params, positions


@lru_cache(maxsize=256)
def general_workspace(network: Network) -> int:
    """The largest per-sample temporary of one layer's sampling (``mc_workspace``, e.g. a
    convolution's patches; 0 for layers without one), counted in float64 entries."""
    shape, most = network.input_shape, 0
    for block, _ in network.layers.runs:
        for layer in block:
            workspace = getattr(layer, "mc_workspace", None)
            if workspace is not None:
                most = max(most, int(workspace(shape)))
            shape = layer.output_shape(shape)
    return most


#: The engines.
DENSE = DenseEngine()
GAUSSIAN = GaussianEngine()
GENERAL = GeneralEngine()
ENGINE_OBJECTS: dict[str, Engine] = {"dense": DENSE, "gaussian": GAUSSIAN, "general": GENERAL}


def _distinct_layers(network: Network) -> list[object]:
    seen: list[object] = []
    for block, _ in network.layers.runs:
        for layer in block:
            if layer not in seen:
                seen.append(layer)
    return seen


def network_batch(network: Network) -> int:
    """The batch size a simulation of ``network`` uses by default: the one its layers require
    (``Layer.required_batch``, e.g. ``BatchNorm(mode="train", batch_size=B)``), else 1.
    Layers requiring different batch sizes are refused."""
    required = {layer.required_batch for layer in _distinct_layers(network)  # type: ignore[attr-defined]
                if getattr(layer, "required_batch", None) is not None}
    if len(required) > 1:
        raise fail("network", network, f"layers that agree on the batch size (they require "
                   f"{sorted(required)})")
    return required.pop() if required else 1


def select_engine(network: Network, engine: str | Engine = "auto", *, batch: int = 1) -> Engine:
    """The engine that simulates ``network``: the one named by ``engine``, or for ``"auto"`` the
    Gaussian shortcut when it supports the network and pays (:meth:`GaussianEngine.pays`), else
    the dense engine.  This is the one rule of :func:`varprop.simulate` and of the checker.

    Raises
    ------
    InvalidArgument
        ``engine`` is not one of :data:`ENGINES`, or the named engine does not support the
        network (the message gives the reason).
    """
    if isinstance(engine, Engine):
        chosen: Engine = engine
    else:
        name = check_choice("engine", engine, ENGINES)
        if name == "auto":
            if GAUSSIAN.supports(network) is None and GAUSSIAN.pays(network, batch):
                return GAUSSIAN
            chosen = DENSE if DENSE.supports(network) is None else GENERAL
        else:
            chosen = ENGINE_OBJECTS[name]
    reason = chosen.supports(network)
    if reason is not None:
        allowed = [n for n, e in ENGINE_OBJECTS.items() if e.supports(network) is None]
        raise fail("engine", engine if isinstance(engine, str) else chosen.name,
                   f"'auto' or one of {allowed} for this network ({reason})")
    return chosen


def check_resources(network: Network, engine: Engine, replicates: int, *, batch: int = 1,
                    dtype: str | np.dtype = "float64", name: str = "replicates") -> Cost:
    """Refuse (before allocating) a run beyond :data:`MEMORY_LIMIT` or :data:`TIME_LIMIT`;
    return its :class:`Cost` otherwise.  ``name`` is the argument the message blames."""
    cost = engine.cost(network, replicates, batch, dtype)
    shape = f"{describe(network)}, batch {batch}, {replicates} replicates"
    if cost.bytes > MEMORY_LIMIT:
        raise InvalidArgument(
            f"{name}={replicates} is not allowed: the simulation ({shape}, {engine.name} engine) "
            f"would need about {format_bytes(cost.bytes)} of memory, more than "
            f"varprop.simulation.engines.MEMORY_LIMIT = {format_bytes(MEMORY_LIMIT)}: reduce the "
            f"widths, batch or {name} (or raise the limit if the machine has the memory)")
    if cost.seconds > TIME_LIMIT:
        raise InvalidArgument(
            f"{name}={replicates} is not allowed: the simulation ({shape}, {engine.name} engine) "
            f"would take about {cost.seconds:.3g} s ({cost.seconds / 3600:.3g} h at "
            f"{WORK_RATE:.2g} work units/s), more than varprop.simulation.engines.TIME_LIMIT = "
            f"{TIME_LIMIT:g} s: use fewer replicates, or run several seeds separately")
    return cost


def describe(network: Network) -> str:
    """Short description of a network's shape for messages (``"64->64 x 10"`` for an MLP)."""
    mlp = network.as_mlp()
    if mlp is not None:
        if mlp.explicit is None or (len(mlp.explicit) > 2 and len(set(mlp.explicit[1:])) == 1):
            return f"widths {mlp.n0}->{mlp.n} x {mlp.depth}"
        return f"widths {list(mlp.explicit)}"
    return f"{network.layers.size} layers, input {network.input_shape}"


def format_bytes(n: float) -> str:
    """``n`` bytes in TiB, GiB, MiB or bytes (3 significant digits)."""
    for unit, size in (("TiB", 2.0**40), ("GiB", 2.0**30), ("MiB", 2.0**20)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.3g} bytes"


def resource_estimate(engine: str, widths: tuple[int, ...], batch: int, replicates: int,
                      itemsize: int = 8) -> tuple[float, float]:
    r"""``(bytes, seconds)`` of a simulation of the MLP with ``widths`` :math:`(n_0, \dots, n_L)`
    on the engine named ``engine`` (``"dense"`` or ``"gaussian"``): :meth:`Engine.cost` of
    ``Network.mlp("linear", "lecun_normal", widths=widths)`` (activation and scheme do not change
    the cost)."""
    name = check_choice("engine", engine, ("dense", "gaussian"))
    net = Network.mlp("linear", "lecun_normal", widths=tuple(widths))
    cost = ENGINE_OBJECTS[name].cost(net, replicates, batch, np.dtype(f"f{itemsize}"))
    return cost.bytes, cost.seconds
