r"""Monte Carlo simulation: ``simulate(net, ...)`` runs random networks forward and backward and records per-replicate statistics.

A :class:`~varprop.Network` is simulated by walking its layers (:mod:`varprop.simulation.walk`):
the statistics of every layer position are :data:`OUTPUT_QUANTITIES` (backward pass seeded with
i.i.d. :math:`N(0, 1)` loss gradients at the last output).  For an MLP-shaped network
(``Network.mlp``, the model of :mod:`varprop.theory.predict`) with layers :math:`l = 1, \dots, L` with
widths :math:`n_0, \dots, n_L`,

.. math::

    a_0 = x, \qquad z_l = W_l a_{l-1} + b_l, \qquad a_l = \phi(z_l),

with input entries :math:`x_j \overset{iid}{\sim} N(0, \sigma_x^2)` (``input_variance``; zero mean),
weights :math:`W_l \in \mathbb{R}^{n_l \times n_{l-1}}` drawn from the init scheme, biases
:math:`b_{l,i} \overset{iid}{\sim} N(0, \sigma_b^2)` (``bias_variance``; one bias vector per
network, shared by the samples of a batch).  The backward pass starts from
:math:`\delta_L = \partial L / \partial z_L` with i.i.d. :math:`N(0, 1)` entries independent of the
forward pass, and runs

.. math::

    g_l = \frac{\partial L}{\partial a_{l-1}} = W_l^\top \delta_l, \qquad
    \delta_{l-1} = \phi'(z_{l-1}) \odot g_l, \qquad
    \frac{\partial L}{\partial W_l} = \delta_l a_{l-1}^\top .

A **replicate** is one independent network (fresh weights and biases in every layer) fed a fresh
batch of ``batch`` inputs.  Per replicate and layer :func:`simulate` records the averages over
units *and* batch samples of :math:`z_l, z_l^2, a_l, a_l^2, g_l^2, \delta_l^2` and of the squared
entries of the per-example weight gradient :math:`\delta_{l,b} a_{l-1,b}^\top` (for a batch the
per-example gradients are averaged in square, not summed first), plus the across-unit standard
deviation (``ddof=0``, as ``tf.math.reduce_std``) of :math:`z_l` and :math:`a_l` for the first
sample of the batch.  See :data:`QUANTITIES`.

Engines
-------
:mod:`varprop.simulation.engines`: ``engine="dense"`` draws every weight matrix with the init
scheme (any scheme: uniform, truncated, orthogonal, non-zero mean) and multiplies;
``engine="gaussian"`` is the exact-in-law :math:`O(n)` shortcut for i.i.d. normal weights of
:mod:`varprop.simulation.gaussian`; ``"auto"`` is :func:`~varprop.simulation.engines.select_engine`.
Biases are added independently in both engines.

Reproducibility and memory
--------------------------
Replicates are grouped in fixed **blocks** of ``block_size`` replicates (64 for the Gaussian
engine; for the dense engine at most 64 and small enough that one block's weights fit in
:data:`DENSE_BLOCK_BYTES`) -- a function of the configuration only.  Block :math:`j` draws all its
random numbers, in a fixed order, from its own stream
``numpy.random.SeedSequence(seed).spawn(n_blocks)[j]``.  Chunks of whole blocks (sized from
:data:`MEMORY_BUDGET` for the Gaussian engine, :data:`DENSE_CHUNK_BYTES` for the dense engine, or
``chunk_size``) are processed one after the other; every per-replicate
reduction runs along the last axis of a contiguous per-replicate row, so the same ``seed`` gives
bit-identical results for every chunking.

Parallelism: none inside :func:`simulate`; NumPy's OpenBLAS is limited to one thread while it
runs (:mod:`varprop.simulation.blas`): the products are small and per replicate, and OpenBLAS threads
make them many times slower on a loaded machine.  Run independent seeds in separate processes to
use several cores.

Overflow and underflow
----------------------
Values are computed in ``dtype``; statistics are accumulated in float64.  A replicate's forward pass
becomes **invalid** at the first layer where a value of :math:`z_l` or :math:`a_l` is not finite in
``dtype`` (detected through the float64 sums, which a non-finite value always makes non-finite;
a float64 statistic that overflows counts too), or where the signal **underflows**: every
:math:`|z_{l,i}|` is below the smallest normal number of ``dtype`` (``finfo(dtype).tiny``: the
whole layer is subnormal or zero, as in :mod:`varprop.theory.overflow`) -- or the float64 mean square
:math:`\overline{z_l^2}` is below float64's smallest normal number, so that the statistic itself
flushes -- although the layer's input was not identically zero (:math:`\overline{a_{l-1}^2} > 0`;
dead ReLU layers are not underflow).  That layer and all later ones are masked.  The backward
pass runs from :math:`L` down to 1; it becomes invalid at the first layer (in that order) where a
backward statistic is not finite or :math:`g_l` underflows (same rule) while
:math:`\delta_l \ne 0`, or -- for activations whose derivative vanishes only on a null set (no
kinks and :math:`\phi' \not\equiv 0`: tanh, sigmoid, erf, ...) -- where
:math:`\delta_{l-1} = \phi'(z_{l-1}) \odot g_l` underflows while :math:`g_l \ne 0` (its exact
zeros would be artefacts, e.g. :math:`\tanh'(z)` below :math:`10^{-308}` at :math:`|z| > 355`;
the derivatives themselves are computed without cancellation), and all its statistics are invalid if the forward pass was invalid
anywhere.  Invalid entries are stored as 0 behind the masks, never NaN: see
:meth:`SimulationResult.per_replicate` and :meth:`SimulationResult.masked`.

The output statistics of any network follow the same rules per layer position, each layer saying
what a flush to zero means (its sampling section): an all-zero ``Dense`` output from a non-zero
input, or an all-zero input gradient from a non-zero output gradient, is an underflow; a
``Nonlinearity``'s zero output never is (ReLU), and its zero input gradient is one when
``activation.traits.derivative_nonvanishing``.

References
----------
Poole et al. (2016), *Exponential expressivity in deep neural networks through transient chaos*;
Schoenholz et al. (2017), *Deep information propagation*; Hanin & Rolnick (2018), *How to start
training: the effect of initialization and architecture* (finite-width fluctuations of
:math:`\|a_L\|^2`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

import numpy as np

from varprop._util.validation import (
    MAX_LAYERS,
    check_choice,
    check_nonnegative_int,
    check_nonnegative_real,
    check_positive_int,
    check_widths,
    did_you_mean,
    fail,
    fail_type,
)
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.errors import SimulationOverflowError, VarpropError
from varprop.network.layers.dense import Dense
from varprop.network.model import Network, refuse_with_network
from varprop.simulation.blas import single_threaded_blas
from varprop.simulation.engines import (
    BLOCK_SIZE,
    DENSE_BLOCK_BYTES,
    DENSE_CHUNK_BYTES,
    ENGINES,
    GENERAL,
    MEMORY_BUDGET,
    MEMORY_LIMIT,
    TIME_LIMIT,
    WORK_RATE,
    Engine,
    check_resources,
    format_bytes,
    network_batch,
    resource_estimate,
    select_engine,
)
from varprop.simulation.fields import run_general
from varprop.simulation.result import (
    BACKWARD_QUANTITIES,
    ESTIMATES,
    FORWARD_QUANTITIES,
    OUTPUT_QUANTITIES,
    QUANTITIES,
    SimulationResult,
)
from varprop.simulation.statistics import Draws, finish
from varprop.simulation.walk import Plan, run_chunk

__all__ = [
    "simulate",
    "SimulationResult",
    "SimulationOverflowError",
    "QUANTITIES",
    "FORWARD_QUANTITIES",
    "BACKWARD_QUANTITIES",
    "OUTPUT_QUANTITIES",
    "ESTIMATES",
    "ENGINES",
    "DTYPES",
    "DEFAULT_REPLICATES",
    "BLOCK_SIZE",
    "MEMORY_BUDGET",
    "DENSE_BLOCK_BYTES",
    "MEMORY_LIMIT",
    "TIME_LIMIT",
    "WORK_RATE",
    "resource_estimate",
]

#: Default number of replicates (independent networks).
DEFAULT_REPLICATES = 1000
DTYPES = ("float32", "float64")

EngineName = Literal["auto", "dense", "gaussian", "general"]
DType = Literal["float32", "float64"]


def simulate(
    net: Network | str | Activation | None = None,
    init: str | InitScheme | None = None,
    *,
    activation: str | Activation | None = None,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: list[int] | tuple[int, ...] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    replicates: int = DEFAULT_REPLICATES,
    batch: int | None = None,
    seed: int | None = 0,
    dtype: DType = "float64",
    engine: EngineName | Engine = "auto",
    chunk_size: int | None = None,
    progress: bool | Callable[[int, int], object] = False,
    backward: bool = True,
) -> SimulationResult:
    r"""Simulate ``replicates`` independent random networks, forward and backward (or forward
    only: ``backward=False``).

    Parameters
    ----------
    net : Network, or str or Activation
        The network (:class:`~varprop.Network`; inputs :math:`x_j \sim N(0,` ``input_variance``
        :math:`)` i.i.d., biases of each ``Dense`` layer :math:`N(0,` ``bias_variance`` :math:`)`
        i.i.d., one vector per network).  Keyword form: an activation :math:`\phi`
        (``varprop.activation_names()``) with ``init`` and the shape arguments, which is
        ``simulate(Network.mlp(activation, init, fan_in=..., fan_out=..., widths=..., depth=...,
        bias_variance=..., input_variance=...), ...)`` with bit-identical results.
    init, fan_in, fan_out, widths, depth, input_variance, bias_variance
        Keyword form only: the arguments of :meth:`varprop.Network.mlp`.
    activation : str or Activation, optional
        Keyword form only: the activation passed by name (instead of as ``net``).
    replicates : int
        Number of independent networks (default :data:`DEFAULT_REPLICATES` = 1000).
    batch : int, optional
        Inputs per network; statistics average over them (per-example weight gradients).
        Default: the batch size the network's layers require (``BatchNorm(mode="train",
        batch_size=B)``: ``B``; another value is refused), else 1.
    seed : int or None
        Seed of ``numpy.random.SeedSequence``; ``None`` draws fresh entropy (recorded in
        ``result.seed``).  The same seed gives bit-identical results for any ``chunk_size``.
    dtype : {"float64", "float32"}
        Arithmetic precision of the network (statistics are accumulated in float64).
    engine : {"auto", "dense", "gaussian", "general"}
        ``"dense"`` samples full weight matrices (any scheme); ``"gaussian"`` the exact
        :math:`O(n)` shortcut for normal weights (any mean); ``"general"`` any network whose
        layers have ``mc_*`` methods (:mod:`varprop.simulation.fields`: convolutions, residual
        blocks, norms, ...); ``"auto"``: ``"gaussian"`` when every scheme is normal and the batch
        is small against the widths, else ``"dense"``, and ``"general"`` for networks neither
        supports (:func:`~varprop.simulation.engines.select_engine`).
    chunk_size : int, optional
        Replicates processed at once (rounded up to a multiple of ``block_size``); default from
        :data:`MEMORY_BUDGET`.  Does not change the result.  (The general engine processes one
        block at a time, sized from :data:`MEMORY_BUDGET`, and ignores it.)
    progress : bool or callable
        ``True`` shows a ``tqdm`` bar (if installed); a callable is called as
        ``progress(done, total)`` after every chunk.
    backward : bool
        ``False`` runs the forward pass only: the forward statistics are bit-identical to those
        of ``backward=True`` with the same seed (each block draws every forward random number
        before any backward one), the backward pass and its draws are skipped (measured: 3-65% less
        CPU, most on the Gaussian shortcut, least on normalised residual networks; see
        ``docs/performance.md``), and the backward statistics (``gradient_second``, ``delta_second``,
        ``weight_gradient_second``, ``output_gradient_second``) are not recorded: asking the
        result for them raises :class:`~varprop.InvalidArgument`.

    Returns
    -------
    SimulationResult
        See :data:`OUTPUT_QUANTITIES`, :data:`QUANTITIES` (MLP-shaped networks) and
        :meth:`SimulationResult.per_replicate`.

    Raises
    ------
    InvalidArgument, InvalidArgumentType
        For a bad argument (named in the message, with the allowed values), including
        an engine that does not support the network (``engine="gaussian"`` with a non-normal
        scheme), and -- before anything is allocated --
        for a run that would need more than :data:`MEMORY_LIMIT` bytes (its smallest working
        set, one block of replicates, plus the results) or an estimated run time above
        :data:`TIME_LIMIT` seconds (work at :data:`WORK_RATE` units per second, see
        :meth:`~varprop.simulation.engines.Engine.cost`): the message gives the estimate and the
        limit.  Both limits are attributes of :mod:`varprop.simulation.engines` a caller may raise.

    Notes
    -----
    Assumptions: the model of the module docstring (i.i.d. zero-mean Gaussian inputs, independent
    Gaussian biases, backward seed independent of the forward pass).  The dense engine draws
    non-normal weights with :meth:`~varprop.components.schemes.InitScheme.sample`; for normal schemes it
    draws the same standard normals and applies :math:`W = \mu_w + s W_0` to the products
    :math:`W_0 a`, :math:`W_0^\top\delta` (equal in law, one pass over the weights fewer).
    Memory: about :data:`MEMORY_BUDGET` bytes per chunk; the dense engine keeps each replicate's
    weight matrices for the backward pass, one block at a time by default (at most
    :data:`DENSE_BLOCK_BYTES` of weights).

    Examples
    --------
    >>> res = simulate("relu", "he_normal", fan_in=64, depth=5, replicates=256, seed=1)
    >>> res.per_replicate("preactivation_second").shape
    (256, 5)
    >>> res.engine
    'gaussian'
    >>> from varprop import Network, layers
    >>> net = Network([layers.Dense(32), "tanh", layers.Dense(8)], input_shape=(16,))
    >>> simulate(net, replicates=128, seed=2).per_replicate("output_gradient_second").shape
    (128, 3)
    """
    if activation is not None:
        if net is not None:
            raise fail("activation", activation, "omitted when the first argument is given "
                       f"({net!r})")
        net = activation
    if isinstance(net, Network):
        refuse_with_network({"init": (init, None), "fan_in": (fan_in, None),
                             "fan_out": (fan_out, None), "widths": (widths, None),
                             "depth": (depth, 1), "input_variance": (input_variance, 1.0),
                             "bias_variance": (bias_variance, 0.0)})
        network = net
        if network.layers.size > 2 * MAX_LAYERS:
            raise fail("net", f"<a network of {network.layers.size:,} layers>",
                       f"at most {2 * MAX_LAYERS:,} layers for a simulation")
    else:
        if net is None:
            raise fail("net", net, "a Network, or an activation with init and the shape "
                       "arguments (the keyword form)")
        act = resolve_activation(net)
        if init is None:
            raise fail("init", init, "an init scheme (varprop.scheme_names()) with an activation, "
                       "or pass a Network as the first argument")
        scheme = resolve_scheme(init)
        check_widths(fan_in, fan_out, widths, depth)  # the keyword form's messages and limits
        check_nonnegative_real("input_variance", input_variance)
        check_nonnegative_real("bias_variance", bias_variance)
        network = Network.mlp(act, scheme, fan_in=fan_in, fan_out=fan_out, widths=widths,
                              depth=depth, bias_variance=bias_variance,
                              input_variance=input_variance)
    replicates = check_positive_int("replicates", replicates)
    need = network_batch(network)
    if batch is None:
        batch = need
    else:
        batch = check_positive_int("batch", batch)
        if need != 1 and batch != need:
            raise fail("batch", batch, f"{need} (or left unset): the batch size the network's "
                       "layers were built with (train-mode BatchNorm normalises by the statistics "
                       "of that many samples)")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    else:
        seed = check_nonnegative_int("seed", seed)
    dtype_name = _check_dtype(dtype)
    engine_req = engine.name if isinstance(engine, Engine) else check_choice("engine", engine, ENGINES)
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)
    if not (isinstance(progress, (bool, np.bool_)) or callable(progress)):
        raise fail_type("progress", progress, "a bool or a callable progress(done, total)")
    if not isinstance(backward, (bool, np.bool_)):
        raise fail_type("backward", backward, "True (forward and backward passes) or False "
                        "(the forward pass only)")
    backward = bool(backward)

    used = select_engine(network, engine, batch=batch)
    dt = np.dtype(dtype_name)
    check_resources(network, used, replicates, batch=batch, dtype=dt)
    if used is GENERAL:
        return _simulate_general(network, replicates, batch, seed, dt, engine_req, progress,
                                 backward)
    plan = _plan(network, used, batch, dt, output_gradient=isinstance(net, Network),
                 backward=backward)
    block = used.block_size(network, dt.itemsize)
    n_blocks = -(-replicates // block)
    if chunk_size is None:
        per = int(used.bytes_per_replicate(network, batch, dt.itemsize))
        # dense: blocks of at least DENSE_CHUNK_BYTES run one per chunk, their weights drawn in
        # place and kept in cache (30% faster than 64 MiB chunks at n = 64, L = 5, uniform
        # weights); smaller blocks are grouped up to it (one 64-replicate block of a width-4
        # network is a few kB: per-chunk Python overhead made it 3x slower alone)
        budget = DENSE_CHUNK_BYTES if used.name == "dense" else MEMORY_BUDGET
        blocks_per_chunk = max(1, budget // (per * block))
    else:
        blocks_per_chunk = -(-chunk_size // block)
    blocks_per_chunk = min(blocks_per_chunk, n_blocks)
    chunk = blocks_per_chunk * block

    children = np.random.SeedSequence(seed).spawn(n_blocks)
    bar = None
    if progress is True:
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=replicates, desc="simulate", unit="replicate")
        except ImportError:  # optional dependency
            bar = None
    t0 = time.perf_counter()
    try:
        parts = _run_chunks(plan, children, replicates, block, blocks_per_chunk, n_blocks, bar,
                            progress)
    except MemoryError:  # the estimate of check_resources was too optimistic for this machine
        need = used.cost(network, replicates, batch, dt).bytes
        raise VarpropError(
            f"the simulation ran out of memory (estimated need {format_bytes(need)}, chunks of "
            f"{chunk} replicates): pass a smaller chunk_size, or reduce replicates, widths or batch"
        ) from None
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    stats = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
    mlp = network.as_mlp()
    return SimulationResult(
        activation=mlp.activation if mlp else None, init=mlp.init if mlp else None,
        widths=plan.widths[::2] if mlp else None, input_variance=network.input_variance,
        bias_variance=mlp.bias_variance if mlp else 0.0, replicates=replicates, batch=batch,
        seed=seed, dtype=dtype_name, engine=used.name, engine_requested=engine_req,
        chunk_size=chunk, block_size=block, elapsed=elapsed, network=network,
        output_gradient_recorded=plan.output_gradient and backward, backward_recorded=backward,
        **finish(plan.layers, plan.mlp, stats, backward))


def _simulate_general(network: Network, replicates: int, batch: int, seed: int, dt: np.dtype,
                      engine_req: str, progress: bool | Callable[[int, int], object],
                      backward: bool = True) -> SimulationResult:
    """``simulate`` on the general engine (:mod:`varprop.simulation.fields`)."""
    block = GENERAL.block_size(network, dt.itemsize, batch)
    done = [0]

    def report(n: int) -> None:
        done[0] += n
        if callable(progress) and not isinstance(progress, (bool, np.bool_)):
            progress(done[0], replicates)

    t0 = time.perf_counter()
    with single_threaded_blas():
        fields = run_general(network, replicates, batch, seed, dt, block, report, backward)
    return SimulationResult(
        activation=None, init=None, widths=None, input_variance=network.input_variance,
        bias_variance=0.0, replicates=replicates, batch=batch, seed=seed, dtype=dt.name,
        engine=GENERAL.name, engine_requested=engine_req, chunk_size=block, block_size=block,
        elapsed=time.perf_counter() - t0, network=network, backward_recorded=backward,
        output_gradient_recorded=backward, **fields)


def _check_dtype(dtype: object) -> str:
    if isinstance(dtype, str):
        return check_choice("dtype", dtype, DTYPES)
    try:
        name = np.dtype(dtype).name  # type: ignore[arg-type]
    except TypeError:
        raise fail_type("dtype", dtype, f"one of {list(DTYPES)} (or the NumPy dtype)") from None
    if name not in DTYPES:
        raise fail("dtype", dtype, f"one of {list(DTYPES)}{did_you_mean(name, DTYPES)}")
    return name


def _plan(network: Network, engine: Engine, batch: int, dt: np.dtype,
          output_gradient: bool = True, backward: bool = True) -> Plan:
    """The walk's plan: the expanded layers, their input widths and the Gaussian laws."""
    layers = tuple(network.layers)
    widths = [network.input_shape[0]]
    laws: list[tuple[float, float] | None] = []
    checked: set[tuple[object, int]] = set()
    for layer in layers:
        n_in = widths[-1]
        law = None
        if isinstance(layer, Dense):
            if engine.name == "gaussian":
                law = layer.gaussian_law(n_in)
            elif (layer.init, n_in) not in checked:
                layer.init.moments(n_in, layer.width)  # validates early (and warms the cache)
                checked.add((layer.init, n_in))
        laws.append(law)
        widths.append(layer.output_shape((n_in,))[0])
    mlp = network.as_mlp()
    identity = mlp is not None and mlp.activation.traits.slope == 1.0
    return Plan(layers, tuple(widths), batch, dt, engine.name == "gaussian", tuple(laws),
                math.sqrt(network.input_variance), mlp is not None, identity,
                output_gradient or mlp is None or identity, backward)


def _run_chunks(plan: Plan, children: list[np.random.SeedSequence], replicates: int, block: int,
                blocks_per_chunk: int, n_blocks: int, bar: object,
                progress: bool | Callable[[int, int], object]) -> list[dict[str, np.ndarray]]:
    """Simulate the chunks one after the other (block ``j`` from stream ``children[j]``)."""
    parts: list[dict[str, np.ndarray]] = []
    done = 0
    with np.errstate(all="ignore"), single_threaded_blas():
        for first in range(0, n_blocks, blocks_per_chunk):
            gens: list[tuple[np.random.Generator, slice]] = []
            start = 0
            for j in range(first, min(first + blocks_per_chunk, n_blocks)):
                size = min(block, replicates - j * block)
                gens.append((np.random.default_rng(children[j]), slice(start, start + size)))
                start += size
            parts.append(run_chunk(plan, Draws(gens)))
            done += start
            if bar is not None:
                bar.update(start)  # type: ignore[attr-defined]
            elif callable(progress) and not isinstance(progress, (bool, np.bool_)):
                progress(done, replicates)
    return parts
