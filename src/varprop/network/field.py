r"""The field state of the general mean-field engine: what one layer's output carries when the
network is more than a dense chain (convolutions, pooling, residual blocks, normalisation,
dropout, recurrent layers).

A layer's output is a tensor of shape ``shape`` (one sample, no batch axis) whose axis
``channel_axis`` holds *channels*: exchangeable units that are independent of each other in the
infinite-width limit (they are produced by independent zero-mean weights).  The other axes are
*positions* (pixels of an image, time steps of a sequence; none for a plain vector).  Moments
are the same for every channel and depend on the position:

:class:`Field` (forward)
    ``mean`` and ``second`` (arrays of shape ``positions``): :math:`E x_{c,t}` and
    :math:`E x_{c,t}^2`; ``cov`` (``(P, P)``, :math:`P = \prod` positions, row-major): the
    same-channel second moments :math:`E x_{c,t} x_{c,t'}` between positions (its diagonal is
    ``second``), tracked only when some layer needs it (pooling mixes positions);
    ``batch_cross`` (shape ``positions``): :math:`E x_{b,c,t} x_{b',c,t}` between two different
    samples :math:`b \ne b'` of one batch (the inputs are independent, but shared biases and
    batch normalisation correlate them), tracked only when some layer needs it (``BatchNorm`` in
    train mode); ``batch_cov`` (``(P, P)``): :math:`E x_{b,c,t} x_{b',c,t'}` (:math:`b \ne b'`)
    between positions, whose diagonal is ``batch_cross``, tracked only when between-sample
    moments are and some layer mixes positions (pooling after a train-mode ``BatchNorm``; the
    ``batch_cross`` of a field given a ``batch_cov`` is set to its diagonal); ``gaussian``: the entries are jointly Gaussian (the network input, a weight
    layer's output at infinite width, an affine map of those), which a ``Nonlinearity`` needs
    for exact moments; ``approximations``: the declared approximations made upstream (each a
    sentence), so that a prediction built on them is checked as approximate and documents say why;
    ``law`` (optional): an object describing the exact non-Gaussian law of one entry and of two
    entries of different samples (``BatchNorm`` in train mode: the sphere law), with
    ``expect(f)``, ``expect2(f, g)``, ``describes(field)`` and the elementwise hooks
    ``nonlinearity_forward(activation, field)`` / ``nonlinearity_backward(activation, grad,
    field)`` (each ``None`` when the law does not apply); a layer that changes the moments drops it
    (``describes`` is false for a field whose moments it does not describe).

:class:`GradField` (backward)
    ``second`` (shape ``positions``): :math:`E \delta_{c,t}^2` of the loss gradient with respect to
    the tensor, and ``cov`` (``(P, P)``) when tracked, under the gradient-independence assumption;
    ``batch_cross`` (shape ``positions``, when tracked): :math:`E \delta_{b,c,t}\delta_{b',c,t}`
    between two samples of a batch (non-zero below a train-mode ``BatchNorm``, which couples the
    samples); ``batch_cov`` (``(P, P)``, tracked when the forward ``batch_cov`` is):
    :math:`E \delta_{b,c,t}\delta_{b',c,t'}`, diagonal ``batch_cross``; ``factor`` (optional): set by
    an elementwise layer acting on a field with a ``law`` (or, with ``batch_cov`` tracked, on any
    field: then the third entry is that input field itself instead of the law),
    the triple ``(activation, g, law)`` meaning that this gradient is :math:`\phi'(x) \odot g`
    with ``g`` (a ``GradField``) independent of the forward pass -- the layer that produced
    :math:`x` (whose Jacobian is correlated with :math:`\phi'(x)`, a train-mode ``BatchNorm``)
    uses it for the exact joint expectation.

Both are immutable values; arrays are read-only.  The plain MLP walk
(:mod:`varprop.network.state`) keeps its own scalar state (it also covers non-zero-mean weights);
the general engine assumes zero-mean weights in every weight layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

Shape = tuple[int, ...]

__all__ = ["Field", "GradField", "FieldNeeds", "input_field", "output_gradient_field", "positions_of"]


def _freeze_pairs(obj: Field | GradField, pos: tuple[int, ...]) -> None:
    """Freeze ``cov``, ``batch_cov`` (``(P, P)``) and ``batch_cross`` (``positions``; the diagonal
    of ``batch_cov`` when that is given)."""
    P = math.prod(pos)
    if obj.cov is not None:
        object.__setattr__(obj, "cov", _frozen(obj.cov, (P, P)))
    bc = obj.batch_cross
    if obj.batch_cov is not None:
        object.__setattr__(obj, "batch_cov", _frozen(obj.batch_cov, (P, P)))
        bc = np.diag(obj.batch_cov).reshape(pos)
    object.__setattr__(obj, "batch_cross", _frozen(bc, pos))


def _frozen(a: np.ndarray | float | None, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
    if a is None:
        return None
    arr = np.array(a, dtype=float)
    if shape is not None and arr.shape != shape:
        arr = np.broadcast_to(arr, shape).copy()
    arr.flags.writeable = False
    return arr


def positions_of(shape: Shape, channel_axis: int) -> tuple[int, ...]:
    """The position grid of a tensor of ``shape`` whose axis ``channel_axis`` holds channels."""
    axis = channel_axis % len(shape)
    return tuple(n for i, n in enumerate(shape) if i != axis)


class _Grid:
    """What forward and backward fields share: the position grid of a tensor whose axis
    ``channel_axis`` holds channels, and the average of ``second`` over its entries."""

    shape: Shape
    channel_axis: int
    second: np.ndarray

    @property
    def positions(self) -> tuple[int, ...]:
        return positions_of(self.shape, self.channel_axis)

    @property
    def size(self) -> int:
        """Number of positions :math:`P`."""
        return math.prod(self.positions)

    def average_second(self) -> float:
        """``second`` averaged over every entry of the tensor (positions and channels)."""
        return float(np.mean(self.second))


@dataclass(frozen=True)
class FieldNeeds:
    """What the general engine tracks for a network: ``cov`` (position covariances, for pooling
    and for anything that mixes positions), ``batch_cross`` (between-sample moments, for
    train-mode batch normalisation) and ``batch_cov`` (a layer that mixes positions asks for the
    between-sample moments across positions *if* they are tracked: the engine tracks
    ``batch_cov`` only when some layer needs ``batch_cross`` and some layer asks ``batch_cov``)."""

    cov: bool = False
    batch_cross: bool = False
    batch_cov: bool = False


@dataclass(frozen=True, eq=False)
class Field(_Grid):
    r"""Forward moments of one layer's output (see the module docstring)."""

    shape: Shape
    channel_axis: int
    mean: np.ndarray
    second: np.ndarray
    cov: np.ndarray | None = None
    batch_cross: np.ndarray | None = None
    gaussian: bool = True
    batch_cov: np.ndarray | None = None
    approximations: tuple[str, ...] = field(default=())
    law: object | None = None
    #: ``(z, phi)`` when this field is an elementwise map :math:`\phi` (an ``Activation`` or a
    #: NumPy callable) of the Gaussian field ``z`` (a ``Field`` with ``gaussian=True``), set by
    #: ``Nonlinearity``: ``MaxPool`` needs the joint law of the window, which the moments of
    #: :math:`\phi(z)` do not give (the Gaussian ``z`` and :math:`\phi` do).
    pre_activation: tuple[Field, object] | None = None
    #: The entries are symmetric given everything before the last weight layer (that layer's
    #: zero-mean symmetric weights make them so at every width), which a ReLU-class activation
    #: needs for its exact finite-width identity :math:`E\phi(z)^2 = c\,E z^2`.  A residual sum
    #: :math:`x + F(x)` is Gaussian at infinite width but not symmetric given its past.
    symmetric: bool = True

    def __post_init__(self) -> None:
        pos = positions_of(self.shape, self.channel_axis)
        object.__setattr__(self, "mean", _frozen(self.mean, pos))
        object.__setattr__(self, "second", _frozen(self.second, pos))
        _freeze_pairs(self, pos)


    @property
    def channels(self) -> int:
        return self.shape[self.channel_axis]

    @property
    def variance(self) -> np.ndarray:
        """:math:`E x^2 - (E x)^2` per position (0 where rounding makes it negative)."""
        return np.maximum(self.second - self.mean * self.mean, 0.0)

    def with_(self, **changes: object) -> Field:
        """A copy with ``changes`` (``dataclasses.replace``; the arrays are re-frozen).  The copy
        is a different random tensor, so ``pre_activation`` is dropped unless given, and so is
        ``batch_cov`` when ``batch_cross`` changes without it (a layer that does not propagate it
        leaves it untracked, and a pooling layer below refuses clearly)."""
        changes.setdefault("pre_activation", None)
        if "batch_cross" in changes:
            changes.setdefault("batch_cov", None)
        return replace(self, **changes)  # type: ignore[arg-type]

    def approximate(self, sentence: str) -> tuple[str, ...]:
        """``approximations`` with ``sentence`` added (once)."""
        return self.approximations if sentence in self.approximations else (
            self.approximations + (sentence,))


@dataclass(frozen=True, eq=False)
class GradField(_Grid):
    r"""Backward moments: :math:`E\delta_{c,t}^2` per position (``second``) and, when tracked, the
    same-channel covariance between positions (``cov``, ``(P, P)``)."""

    shape: Shape
    channel_axis: int
    second: np.ndarray
    cov: np.ndarray | None = None
    batch_cross: np.ndarray | None = None
    factor: tuple | None = None
    batch_cov: np.ndarray | None = None
    #: The gradient at the Gaussian pre-activation :math:`z` of an input :math:`x = \phi(z)`
    #: (``Field.pre_activation``), set by a layer whose backward routing depends on :math:`z`
    #: (``MaxPool``: the gradient goes to the window's argmax, where :math:`\phi'(z)` is not
    #: independent of the routing); ``Nonlinearity`` then returns it instead of multiplying by
    #: :math:`E\phi'^2` under gradient independence.
    preactivation: GradField | None = None

    def __post_init__(self) -> None:
        pos = positions_of(self.shape, self.channel_axis)
        object.__setattr__(self, "second", _frozen(self.second, pos))
        _freeze_pairs(self, pos)

    def with_(self, **changes: object) -> GradField:
        """A copy with ``changes``; ``preactivation`` and ``factor`` are dropped unless given
        (they described the gradient before the change); ``batch_cov`` as in ``Field.with_``."""
        changes.setdefault("preactivation", None)
        if "batch_cross" in changes:
            changes.setdefault("batch_cov", None)
        changes.setdefault("factor", None)
        return replace(self, **changes)  # type: ignore[arg-type]


def input_field(shape: Shape, channel_axis: int, input_variance: float, needs: FieldNeeds) -> Field:
    r"""The network input: i.i.d. :math:`N(0, \sigma_x^2)` entries, independent between samples."""
    pos = positions_of(shape, channel_axis)
    P = math.prod(pos)
    cov = np.eye(P) * input_variance if needs.cov else None
    bc = np.zeros(pos) if needs.batch_cross else None
    bcov = np.zeros((P, P)) if needs.batch_cov else None
    return Field(shape, channel_axis, np.zeros(pos), np.full(pos, float(input_variance)), cov, bc,
                 gaussian=True, batch_cov=bcov)


def output_gradient_field(shape: Shape, channel_axis: int, needs: FieldNeeds) -> GradField:
    r"""The backward seed: i.i.d. zero-mean unit-variance gradients at the network output
    (independent between positions and between the samples of a batch)."""
    pos = positions_of(shape, channel_axis)
    P = math.prod(pos)
    return GradField(shape, channel_axis, np.ones(pos), np.eye(P) if needs.cov else None,
                     np.zeros(pos) if needs.batch_cross else None,
                     batch_cov=np.zeros((P, P)) if needs.batch_cov else None)
