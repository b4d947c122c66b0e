r"""The one mean-field recursion: a walk over ``network.layers`` applying each layer's rules.

Forward, the state of the network input (:func:`varprop.network.state.input_state`) is mapped by
each layer's ``mean_field`` rule to the state of its output; backward, a gradient state started at
one layer's output (i.i.d. zero-mean unit-variance entries, independent of the forward pass) is
mapped by each layer's ``mean_field_backward`` rule down to the network input.  The layers hold
the mathematics (:mod:`varprop.network.layers`); this module only walks them, records what is
asked for and stops recomputing what repeats:

- **Fixed points.** The layers are stored as runs ``(block, count)``.  Once the state entering a
  repetition of a block is numerically the state entering the repetition before (with the same
  input shape), every later repetition computes the same numbers, so the walk records that the
  remaining repetitions repeat the last one and moves on to the next run; backward likewise
  once the gradient state at a block's output repeats in the region where the forward data
  repeat.  The numbers are those of the full loop, bit for bit.
- **Memory.** ``keep="all"`` records every computed position's moments (8 bytes per moment),
  ``"backward"`` only what the backward pass needs, ``"last"`` only the last repetition of each
  run (memory independent of depth).
- **Underflow.** Each recorded series (dense outputs, nonlinearity outputs, every output; the
  gradients) notes a value that is exactly 0.0 after a positive one or from a positive source:
  an underflow, since the exact moments stay positive.
- **Time.** A walk that has not settled re-estimates its time every :data:`PROBE_LAYERS` layers
  and is refused beyond :data:`TIME_LIMIT` seconds (:func:`refuse_slow`).
"""

from __future__ import annotations

import contextlib
import math
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from varprop._util.validation import fail
from varprop.network.layers.base import Layer, Shape
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.network.model import Network
from varprop.network.state import (
    GradientState,
    MomentEvaluator,
    MomentState,
    conditioned_state,
    input_state,
)

__all__ = ["ForwardWalk", "BackwardWalk", "walk_forward", "walk_backward", "refuse_slow",
           "Underflow", "PROBE_LAYERS", "TIME_LIMIT"]

#: Layers after which a walk that has not settled estimates its remaining time.
PROBE_LAYERS = 100_000
#: The longest a prediction may take by that estimate (seconds).
TIME_LIMIT = 60.0

Average = Callable[[np.ndarray], float]


def refuse_slow(depth: int, done: int, elapsed: float, rate: float) -> None:
    """Refuse a walk that has not reached a fixed point after ``done`` layers and would take
    longer than :data:`TIME_LIMIT` in all for ``depth`` layers, at the rate of the last
    :data:`PROBE_LAYERS` layers (checked every :data:`PROBE_LAYERS` layers: the rate can change
    with the variance, e.g. below the verified table's range)."""
    remaining = depth - done
    estimate = elapsed + rate * (float(remaining) if remaining < 2**1000 else math.inf)
    if estimate > TIME_LIMIT:
        shown = f"{depth:,}" if depth < 10**30 else f"about 10^{len(str(depth)) - 1}"
        raise fail("depth", depth if depth < 10**30 else shown, f"a depth this recursion can walk in about {TIME_LIMIT:.0f} s: "
                   f"it has not reached a fixed point after {done:,} layers ({elapsed:.2g} s), and "
                   f"{shown} layers would take about {estimate:.2g} s at the current rate")


class Underflow:
    """A series of second moments in walk order: ``under`` once a value is exactly 0.0 after a
    positive one, or first from a positive source (never when not ``active``)."""

    __slots__ = ("positive", "under", "active")

    def __init__(self, source_positive: bool, active: bool = True) -> None:
        self.positive = source_positive
        self.under = False
        self.active = active

    def see(self, value: float) -> None:
        if not self.active:
            return
        self.under = self.under or (self.positive and value == 0.0)
        self.positive = self.positive or value > 0.0


@dataclass
class Segment:
    """One run ``(block, count)`` as walked: ``computed`` repetitions were computed, the others
    repeat the last computed one; ``shapes[r]`` are the input shapes of the block's layers in
    repetition ``min(r, 1)``; ``start`` is the position of the run's first layer."""

    block: tuple[Layer, ...]
    count: int
    start: int
    shapes: tuple[tuple[Shape, ...], tuple[Shape, ...]]
    computed: int = 0
    bw_start: int = 0
    bw_per_rep: int = 0
    #: offset of each block position's data within its repetition's backward data
    bw_offsets: tuple[int, ...] = ()
    #: reported (mean, second, cross) of the last computed repetition, per block position
    last: list[tuple[float, float, float]] = field(default_factory=list)
    #: per input-shape variant (repetition 0, later ones): each layer's backward rule, prepared
    #: by the first backward walk that needs it (:func:`_backward_rules`)
    rules: list[tuple[object, ...] | None] = field(default_factory=lambda: [None, None])

    @property
    def same_shapes(self) -> bool:
        """Repetition 0 takes the same input shapes as the later ones."""
        return self.shapes[0] == self.shapes[1]


@dataclass
class ForwardWalk:
    """What :func:`walk_forward` recorded (see the module docstring)."""

    segments: list[Segment]
    positions: int
    keep: str
    #: ``keep="all"``: reported moments per computed position (segment by segment)
    mean: array
    second: array
    cross: array
    #: backward data per computed position: a dense layer's input second moment, a
    #: nonlinearity's (deriv_second, deriv_cross); floats or node arrays
    bw: array | list
    under: dict[str, Underflow]
    input_second: object
    average: Average | None

    def expand(self, column: array) -> np.ndarray:
        """A per-position column over all positions (repeated repetitions filled in)."""
        if self.positions > _SHORT_FILL:
            return self._expand_in_place(column)
        out = array("d")
        done = 0
        for seg in self.segments:
            size = len(seg.block)
            got = column[done:done + seg.computed * size]
            out += got
            if seg.count > seg.computed:
                out += got[-size:] * (seg.count - seg.computed)
            done += len(got)
        return np.frombuffer(out, dtype=float)

    def _expand_in_place(self, column: array) -> np.ndarray:
        out = np.empty(self.positions)
        done = 0
        for seg in self.segments:
            size = len(seg.block)
            got = np.frombuffer(column, dtype=float, count=seg.computed * size, offset=done * 8) \
                if seg.computed else np.empty(0)
            lo = seg.start
            out[lo:lo + got.size] = got
            rest = seg.count - seg.computed
            if rest:
                out[lo + got.size:lo + seg.count * size].reshape(rest, size)[:] = got[-size:]
            done += got.size
        return out

    def last_reported(self, offset: int = 1) -> tuple[float, float, float]:
        """The reported moments of position ``positions - offset`` (``offset <= block size`` of
        the last run)."""
        seg = self.segments[-1]
        return seg.last[len(seg.block) - offset]


def _input_shapes(block: tuple[Layer, ...], shape: Shape) -> tuple[tuple[Shape, ...], Shape]:
    shapes = []
    for layer in block:
        shapes.append(shape)
        shape = layer.output_shape(shape)
    return tuple(shapes), shape


def _bw_size(layer: Layer) -> int:
    return 1 if isinstance(layer, Dense) else 2


def _apply(layer: Layer, state: MomentState, shape: Shape, moments: MomentEvaluator) -> MomentState:
    if isinstance(layer, Dense):
        return layer.mean_field(state, shape[0])
    if isinstance(layer, Nonlinearity):
        return layer.mean_field(state, moments)
    raise fail("layers", layer, "layers with mean-field rules (Dense, Nonlinearity)")


def _nonzero_mean_dense(layer: Layer) -> bool:
    return isinstance(layer, Dense) and not layer.init.is_zero_mean


def walk_forward(net: Network, moments: MomentEvaluator, *, keep: str = "all",
                 nodes: np.ndarray | None = None, average: Average | None = None,
                 source_positive: bool = False, layers_per_unit: int = 1) -> ForwardWalk:
    """The forward walk (see the module docstring).  ``nodes`` and ``average``: the outer nodes
    and their average for the recursion conditional on the layer-1 shift.  ``layers_per_unit``:
    positions that count as one layer in the time estimate (2 for an MLP)."""
    conditional = nodes is not None
    # conditional walks condition on the shift of the first Dense layer with non-zero-mean
    # weights; before it (zero-mean layers only) the walk is unconditional
    pending = conditional and not _nonzero_mean_dense(net.layers[0])
    state = input_state(net.input_shape[0], net.input_variance, None if pending else nodes)
    cols = [array("d") for _ in range(3)]
    bw: array | list = [] if conditional else array("d")
    under = {k: Underflow(source_positive) for k in ("dense", "nonlinearity", "output")}
    segments: list[Segment] = []
    shape = net.input_shape
    position = 0
    computed_positions = 0
    total = net.layers.size
    started = probed = time.perf_counter()
    probe_every = PROBE_LAYERS * layers_per_unit
    next_probe = probe_every
    record_all, record_bw = keep == "all", keep in ("all", "backward")
    track = not record_all
    with np.errstate(all="ignore"):
        for block, count in net.layers.runs:
            shapes0, out0 = _input_shapes(block, shape)
            shapes1, out1 = _input_shapes(block, out0) if count > 1 else (shapes0, out0)
            sizes = [_bw_size(layer) for layer in block]
            seg = Segment(block, count, position, (shapes0, shapes1), bw_start=len(bw),
                          bw_per_rep=sum(sizes),
                          bw_offsets=tuple(sum(sizes[:i]) for i in range(len(block))))
            segments.append(seg)
            entering: MomentState | None = None
            for r in range(count):
                if r >= 1 and (r >= 2 or seg.same_shapes) and state.same(entering):
                    break
                entering = state
                shapes = shapes1 if r else shapes0
                reports = []
                for layer, s in zip(block, shapes):
                    if pending and _nonzero_mean_dense(layer):
                        state, pending = conditioned_state(state, nodes, s[0]), False  # type: ignore[arg-type]
                    before = state
                    state = _apply(layer, state, s, moments)
                    rep = state.reported(average) if conditional else (state.mean, state.second, state.cross)  # type: ignore[arg-type]
                    reports.append(rep)
                    if track:  # (with keep="all" the recorded arrays tell underflows)
                        under["dense" if isinstance(layer, Dense) else "nonlinearity"].see(rep[1])
                        under["output"].see(rep[1])
                    if record_all:
                        for col, v in zip(cols, rep):
                            col.append(v)
                    if record_bw:
                        if isinstance(layer, Dense):
                            bw.append(before.second)
                        else:
                            bw.append(state.deriv_second)
                            bw.append(state.deriv_cross)
                seg.last = reports
                seg.computed += 1
                computed_positions += len(block)
                if computed_positions >= next_probe and total > position + seg.computed * len(block):
                    now = time.perf_counter()
                    refuse_slow(total // layers_per_unit, computed_positions // layers_per_unit,
                                now - started, (now - probed) / PROBE_LAYERS)
                    probed, next_probe = now, next_probe + probe_every
            position += count * len(block)
            shape = out1
    return ForwardWalk(segments, position, keep, *cols, bw, under,  # type: ignore[arg-type]
                       input_state(net.input_shape[0], net.input_variance, nodes).second, average)


@dataclass
class BackwardWalk:
    """What :func:`walk_backward` recorded: per position (with ``per_position``) the gradient
    second moment at the layer's output (``out_second``) and, for dense layers, the weight
    gradient's (``weight_second``, NaN elsewhere); the gradient at the network input
    (``input_second``), and the last values seen in walk order of the dense layers' input
    gradient and weight gradient (``dense_input``, ``weight``), with their underflow flags."""

    out_second: np.ndarray | None
    weight_second: np.ndarray | None
    input_second: float
    dense_input: float
    weight: float
    dense_out: float
    first_output: float
    under: dict[str, Underflow]


def walk_backward(fw: ForwardWalk, origin: int, *, per_position: bool = False,
                  source_positive: bool = False) -> BackwardWalk:
    """Back-propagate a unit gradient started at the output of position ``origin`` down to the
    network input, through the layers' backward rules and the forward data of ``fw`` (recorded
    with ``keep="backward"`` or ``"all"``)."""
    avg = fw.average
    conditional = avg is not None
    nan = math.nan
    # per position, written one float at a time into flat buffers (NumPy views at the end)
    out = array("d", (nan,)) * fw.positions if per_position else None
    wout = array("d", (nan,)) * fw.positions if per_position else None
    # backward from an identically zero forward pass, phi'(0) may be exactly 0: zeros are then
    # exact, so only a positive source makes a zero an underflow
    # (per position, the recorded arrays tell underflows)
    track = source_positive and not per_position
    under = {"dense_input": Underflow(source_positive, track),
             "weight": Underflow(source_positive, track), "output": Underflow(source_positive, track)}
    see_output, see_weight, see_input = under["output"].see, under["weight"].see, under["dense_input"].see
    g = GradientState(np.ones_like(fw.input_second), np.zeros_like(fw.input_second)) \
        if conditional else GradientState(1.0, 0.0)
    dense_input = weight = dense_out = output = 0.0
    # unconditional moments are Python floats already (the forward data are a float array)
    value: Callable[[object], float] = avg if conditional else float  # type: ignore[assignment]
    nonlinearity_rule = Nonlinearity.mean_field_backward
    data = fw.bw
    # Python floats overflow to inf silently; only node arrays need NumPy's error state
    with np.errstate(all="ignore") if conditional else contextlib.nullcontext():
        for seg in reversed(fw.segments):
            if seg.start > origin:
                continue
            B = len(seg.block)
            rules = seg.rules
            offsets = seg.bw_offsets
            if origin >= seg.start + seg.count * B:
                top, first = seg.count - 1, B - 1
            else:  # the run holding the origin: start at its block index in its repetition
                top = (origin - seg.start) // B
                first = origin - (seg.start + top * B)
            low = max(seg.computed - 1, 0 if seg.same_shapes else 1)
            above: GradientState | None = None  # gradient at the output of rep r + 1 (if full)
            above_vals: list[tuple[float, float, float]] = []
            r = top
            while r >= 0:
                if r >= low and g.same(above):
                    # reps low..r repeat rep r + 1: identical maps and incoming state, so the
                    # gradient leaving rep ``low`` is the one entering rep r + 1, i.e. ``g``
                    _fill(out, wout, seg, low, r)
                    for o, w, dn in reversed(above_vals) if track else ():
                        see_output(o)
                        if not math.isnan(dn):  # a dense position
                            see_weight(w)
                            see_input(dn)
                    r, above = low - 1, None
                    continue
                g_top = g
                variant = 1 if r else 0
                block_rules = rules[variant]
                if block_rules is None:
                    block_rules = rules[variant] = _backward_rules(seg.block, seg.shapes[variant])
                base = seg.bw_start + (r if r < seg.computed else seg.computed - 1) * seg.bw_per_rep
                vals: list[tuple[float, float, float]] = [(nan, nan, nan)] * B if track else []
                pos = seg.start + r * B
                for i in range(first if r == top else B - 1, -1, -1):
                    rule = block_rules[i]
                    at = base + offsets[i]
                    o = value(g.second) if conditional else g.second
                    if rule is not None:
                        w = g.second * data[at]  # type: ignore[operator]
                        g = rule(g)  # type: ignore[operator]
                        if conditional:
                            w = value(w)
                            dn = value(g.second)
                        else:
                            dn = g.second
                        dense_out, dense_input, weight = o, dn, w
                        if track:
                            see_weight(w)
                            see_input(dn)
                    else:
                        w = dn = nan
                        g = nonlinearity_rule(g, data[at], data[at + 1])
                    if track:
                        see_output(o)
                        vals[i] = (o, w, dn)
                    output = o
                    if out is not None:
                        out[pos + i] = o
                        wout[pos + i] = w  # type: ignore[index]
                full = r != top or first == B - 1
                above, above_vals = (g_top, vals) if full else (None, [])
                r -= 1
    return BackwardWalk(_view(out), _view(wout), value(g.second), dense_input, weight, dense_out,
                        output, under)


def _backward_rules(block: tuple[Layer, ...], shapes: tuple[Shape, ...]) -> tuple[object, ...]:
    """Each dense layer's backward rule for its input shape (None for a nonlinearity)."""
    return tuple(layer.backward_rule(shape[0]) if isinstance(layer, Dense) else None
                 for layer, shape in zip(block, shapes))


def _view(buffer: array | None) -> np.ndarray | None:
    return None if buffer is None else np.frombuffer(buffer, dtype=float)


def _fill(out: array | None, wout: array | None, seg: Segment, low: int, r: int) -> None:
    """Repetitions ``low..r`` repeat repetition ``r + 1`` (already written): short fills by
    array repetition, long ones in place through NumPy views (no temporary)."""
    if out is None:
        return
    B = len(seg.block)
    lo, hi = seg.start + low * B, seg.start + (r + 1) * B
    for buffer in (out, wout):
        if hi - lo <= _SHORT_FILL:
            buffer[lo:hi] = buffer[hi:hi + B] * (r + 1 - low)  # type: ignore[index]
        else:
            view = np.frombuffer(buffer, dtype=float)  # type: ignore[arg-type]
            view[lo:hi].reshape(r + 1 - low, B)[:] = view[hi:hi + B]


#: Positions up to which :func:`_fill` repeats through a temporary array.
_SHORT_FILL = 1 << 12
