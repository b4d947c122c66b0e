r"""``Network``: an immutable, hashable, validated-once description of a network.

A network is a sequence of layers (:mod:`varprop.layers`) applied to an input of shape
``input_shape`` whose entries are i.i.d., zero-mean, with second moment ``input_variance``.
``Network.mlp`` builds the dense chain :math:`z_l = W_l a_{l-1} + b_l,\ a_l = \phi(z_l)` that the
keyword form of :func:`varprop.predict_variance` describes.

The layers are stored run-length encoded (:class:`LayerSequence`): a constant-width MLP of depth
:math:`10^9` costs two runs, not :math:`2\cdot 10^9` objects, and the engines use the runs to stop
recomputing once a repeated block reaches a fixed point.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from varprop._util.validation import (
    check_nonnegative_real,
    check_positive_int,
    check_width,
    check_widths,
    fail,
    fail_type,
)
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.network.layers.base import Layer, Shape
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity

__all__ = ["Network", "LayerSequence", "MLP", "refuse_with_network", "default_quantity",
           "refuse_stacked_nonlinearities"]

Run = tuple[tuple[Layer, ...], int]


class LayerSequence(Sequence[Layer]):
    """An immutable sequence of layers stored as runs ``(block, count)``: ``block`` (a tuple of
    layers) repeated ``count`` times.  Indexing, iteration and ``len`` see the expanded sequence;
    :attr:`runs` gives the compressed form to engines that exploit repetition."""

    __slots__ = ("_runs", "_len")

    def __init__(self, runs: Iterable[Run]) -> None:
        merged: list[Run] = []
        for block, count in runs:
            if count <= 0 or not block:
                continue
            block, count = _primitive(tuple(block), count)
            if merged and merged[-1][0] == block:
                merged[-1] = (block, merged[-1][1] + count)
            else:
                merged.append((tuple(block), count))
        self._runs: tuple[Run, ...] = tuple(merged)
        self._len = sum(len(b) * c for b, c in self._runs)

    @property
    def runs(self) -> tuple[Run, ...]:
        return self._runs

    @property
    def size(self) -> int:
        """The number of layers (a Python int: unlike ``len``, not limited to ``sys.maxsize``)."""
        return self._len

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> Layer: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Layer, ...]: ...

    def __getitem__(self, index: int | slice) -> Layer | tuple[Layer, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self._len)))
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"layer index {index} out of range for {self._len} layers")
        for block, count in self._runs:
            size = len(block) * count
            if index < size:
                return block[index % len(block)]
            index -= size
        raise IndexError(index)  # pragma: no cover - unreachable

    def __iter__(self) -> Iterator[Layer]:
        for block, count in self._runs:
            for _ in range(count):
                yield from block

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerSequence):
            return NotImplemented
        if self._runs == other._runs:
            return True
        return self._len == other._len and _runs_equal(self._runs, other._runs)

    def __hash__(self) -> int:
        return hash((self._len, tuple(itertools.islice(self, 8))))

    def __repr__(self) -> str:
        parts = [(f"{list(b)!r} * {c}" if c > 1 else ", ".join(map(repr, b))) for b, c in self._runs]
        return "[" + ", ".join(parts) + "]"


def _primitive(block: tuple[Layer, ...], count: int) -> Run:
    """``(block, count)`` with ``block`` reduced to its shortest period (``(D, f, D, f) * 1`` is
    ``(D, f) * 2``), so that equal sequences built two ways mostly get equal runs."""
    n = len(block)
    for p in range(1, n):
        if n % p == 0 and block == block[:p] * (n // p):
            return block[:p], count * (n // p)
    return block, count


def _runs_equal(a: tuple[Run, ...], b: tuple[Run, ...]) -> bool:
    """Equality of two expanded run sequences of the same length, skipping whole repetitions
    where both sides repeat the same block (time proportional to the runs, not the depth, for
    sequences that differ in a few places)."""
    i = j = 0  # run indices
    ri, rj = (a[0][1] if a else 0), (b[0][1] if b else 0)  # repetitions left in the current runs
    oi = oj = 0  # offsets inside the current blocks
    while i < len(a) and j < len(b):
        ba, bb = a[i][0], b[j][0]
        if oi == 0 and oj == 0 and ba == bb:
            k = min(ri, rj)
            ri, rj = ri - k, rj - k
        else:
            if ba[oi] != bb[oj]:
                return False
            oi, oj = oi + 1, oj + 1
            if oi == len(ba):
                oi, ri = 0, ri - 1
            if oj == len(bb):
                oj, rj = 0, rj - 1
        if ri == 0:
            i += 1
            ri = a[i][1] if i < len(a) else 0
        if rj == 0:
            j += 1
            rj = b[j][1] if j < len(b) else 0
    return i == len(a) and j == len(b)


@dataclass(frozen=True)
class MLP:
    r"""A network recognised as the dense chain of :meth:`Network.mlp`: widths
    :math:`(n_0, n_1, \dots, n_L)`, explicit (``widths``) or ``(n0, n, depth)`` with a constant
    tail that is never materialised."""

    activation: Activation
    init: InitScheme
    n0: int
    n: int
    depth: int
    explicit: tuple[int, ...] | None
    bias_variance: float
    input_variance: float

    def widths(self) -> tuple[int, ...]:
        """:math:`(n_0, \\dots, n_L)` (materialised: mind huge depths)."""
        return self.explicit if self.explicit is not None else (self.n0,) + (self.n,) * self.depth


def _as_layer(item: object, index: int) -> Layer:
    if isinstance(item, Layer):
        return item
    if isinstance(item, (str, Activation)):
        return Nonlinearity(item)
    raise fail_type(f"layers[{index}]", item, "a layer from varprop.layers, or an activation (a "
                    "name such as 'relu', an expression string in x, or varprop.activation(...))")


def _check_shape(input_shape: object) -> Shape:
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Iterable):
        raise fail_type("input_shape", input_shape, "a tuple of positive integers, e.g. (n,)")
    shape = tuple(check_width(f"input_shape[{i}]", n) for i, n in enumerate(input_shape))
    if not 1 <= len(shape) <= 3:
        raise fail("input_shape", input_shape, "a shape of 1 to 3 positive integers: (n,) for "
                   "vectors, (C, L) or (T, n) for sequences, (C, H, W) for images")
    return shape


@dataclass(frozen=True, init=False)
class Network:
    r"""A network: ``layers`` applied in order to an input of shape ``input_shape``.

    Parameters
    ----------
    layers : sequence
        Layers from :mod:`varprop.layers`; a plain activation (a name such as ``"relu"``, an
        expression string in ``x``, or :func:`varprop.activation`) means ``Nonlinearity(...)``.
    input_shape : tuple of int
        Shape of one input sample: ``(n,)`` for vectors, ``(C, L)`` for 1-D signals (``Conv``),
        ``(T, n)`` for sequences (``Recurrent``), ``(C, H, W)`` for images.
    input_variance : float
        :math:`E x_j^2` of the i.i.d. zero-mean input entries.

    Examples
    --------
    >>> from varprop import Network, layers
    >>> net = Network([layers.Dense(64, init="he_normal"), "relu"], input_shape=(32,))
    >>> net.output_shape
    (64,)
    >>> net == Network.mlp("relu", "he_normal", fan_in=32, fan_out=64)
    True
    """

    layers: LayerSequence
    input_shape: Shape
    input_variance: float

    def __init__(self, layers: Sequence[object] | LayerSequence, *, input_shape: Sequence[int],
                 input_variance: float = 1.0) -> None:
        if isinstance(layers, LayerSequence):
            seq = layers
        else:
            if isinstance(layers, (str, bytes, Layer, Activation)) or not isinstance(layers, Iterable):
                raise fail_type("layers", layers, "a sequence of layers, e.g. [Dense(64), 'relu']")
            seq = LayerSequence([(tuple(_as_layer(x, i) for i, x in enumerate(layers)), 1)])
        if seq.size == 0:
            raise fail("layers", [], "at least one layer")
        object.__setattr__(self, "layers", seq)
        object.__setattr__(self, "input_shape", _check_shape(input_shape))
        object.__setattr__(self, "input_variance",
                           check_nonnegative_real("input_variance", input_variance))
        object.__setattr__(self, "_output_shape", self._walk_shapes())

    def _walk_shapes(self) -> Shape:
        shape = self.input_shape
        for block, count in self.layers.runs:
            for rep in range(count):
                before = shape
                for layer in block:
                    shape = layer.output_shape(shape)
                if rep > 0 and shape == before:  # the block maps this shape to itself
                    break
        return shape

    @property
    def output_shape(self) -> Shape:
        """Shape of the last layer's output."""
        return self._output_shape  # type: ignore[attr-defined, no-any-return]

    @property
    def depth(self) -> int:
        """Number of layers (each ``Dense`` and each ``Nonlinearity`` counts once)."""
        return self.layers.size

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def mlp(cls, activation: Activation | str, init: InitScheme | str, *, fan_in: int | None = None,
            fan_out: int | None = None, widths: Sequence[int] | None = None, depth: int = 1,
            bias_variance: float = 0.0, input_variance: float = 1.0) -> Network:
        r"""The dense chain :math:`z_l = W_l a_{l-1} + b_l,\ a_l = \phi(z_l)`, :math:`l = 1..L`:
        ``Dense(n_1, init, bias_variance), activation, ..., Dense(n_L, ...), activation`` with
        :math:`n_0 =` ``fan_in``, :math:`n_1 = \dots = n_L =` ``fan_out`` (default ``fan_in``),
        :math:`L =` ``depth``, or ``widths=[n_0, ..., n_L]`` (the shape arguments of
        :func:`varprop.predict_variance`)."""
        phi = Nonlinearity(activation)
        scheme = resolve_scheme(init)
        b2 = check_nonnegative_real("bias_variance", bias_variance)
        if widths is not None:
            ws = check_widths(fan_in, fan_out, widths, depth)
            runs: list[Run] = [((Dense(w, scheme, b2), phi), 1) for w in ws[1:]]
            n0 = ws[0]
        else:
            n0, n = check_widths(fan_in, fan_out, None, 1)
            L = check_positive_int("depth", depth)
            first = (Dense(n, scheme, b2), phi)
            runs = [(first, 1), (first, L - 1)]
        return cls(LayerSequence(runs), input_shape=(n0,), input_variance=input_variance)

    def as_mlp(self) -> MLP | None:
        """This network as an :class:`MLP` (one activation, one init scheme, one bias variance,
        alternating ``Dense`` and ``Nonlinearity``), or ``None`` if it is not one."""
        runs: list[tuple[tuple[int, ...], int]] = []  # (dense widths of a block, repetitions)
        act = scheme = b2 = None
        for block, count in self.layers.runs:
            if len(block) % 2:
                return None
            for i in range(0, len(block), 2):
                d, f = block[i], block[i + 1]
                if not (isinstance(d, Dense) and isinstance(f, Nonlinearity)):
                    return None
                if act is None:
                    act, scheme, b2 = f.activation, d.init, d.bias_variance
                elif (f.activation, d.init, d.bias_variance) != (act, scheme, b2):
                    return None
            runs.append((tuple(d.width for d in block[::2]), count))
        assert act is not None and scheme is not None and b2 is not None
        n0 = self.input_shape[0]
        total = sum(len(ws) * c for ws, c in runs)
        distinct = {w for ws, _ in runs for w in ws}
        if len(distinct) == 1:  # (n0, n, L) with a constant tail: never materialised
            return MLP(act, scheme, n0, distinct.pop(), total, None, b2, self.input_variance)
        explicit = (n0,) + tuple(itertools.chain.from_iterable(ws * c for ws, c in runs))
        return MLP(act, scheme, n0, explicit[-1], total, explicit, b2, self.input_variance)

    def __repr__(self) -> str:
        extra = f", input_variance={self.input_variance!r}" if self.input_variance != 1.0 else ""
        return f"Network({self.layers!r}, input_shape={self.input_shape!r}{extra})"


def refuse_with_network(given: dict[str, tuple[object, object]]) -> None:
    """With a :class:`Network` as first argument, the keyword-form arguments ``given`` (name ->
    ``(value, default)``) must stay at their defaults: a clear error names the first that does not
    (the network carries its layers, widths, init schemes, biases and input variance)."""
    for name, (value, default) in given.items():
        unset = value is default or (
            default is not None and isinstance(value, (int, float)) and not isinstance(value, bool)
            and value == default)
        if not unset:
            raise fail(name, value, "left unset when the first argument is a Network (the network "
                       "carries its layers, widths, init schemes, biases and input variance)")


def default_quantity(first_argument: object) -> str:
    """The quantity a prediction or check reports when none is named: ``"activation"`` for the
    keyword form and MLP-shaped networks, ``"output"`` for any other :class:`Network`."""
    if isinstance(first_argument, Network) and first_argument.as_mlp() is None:
        return "output"
    return "activation"


def refuse_stacked_nonlinearities(net: Network) -> None:
    """The mean field (and the symbolic derivation) needs Gaussian inputs to every nonlinear
    activation: a clear error naming the first ``Nonlinearity`` that acts directly on the output
    of another nonlinear one (the Monte Carlo engines simulate such networks all the same)."""
    position, previous = 0, None
    for block, count in net.layers.runs:
        for rep in range(min(count, 2)):  # a block's boundary with itself shows on its 2nd pass
            for i, layer in enumerate(block):
                nonlinear = isinstance(layer, Nonlinearity) and layer.activation.traits.slope is None
                if isinstance(layer, Nonlinearity) and previous is not None:
                    raise fail(f"layers[{position + rep * len(block) + i}]", layer,
                               f"an activation acting on a Gaussian signal: it acts directly on "
                               f"the output of {previous!r}, which is not Gaussian, so the mean "
                               "field (and the derivation) cannot predict it; put a Dense layer "
                               "between the two (simulate() runs the network as it is)")
                if isinstance(layer, Nonlinearity):
                    previous = layer if nonlinear else previous
                else:
                    previous = None
        position += count * len(block)
