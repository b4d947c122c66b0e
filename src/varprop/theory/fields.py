r"""The general mean-field engine: walk any :class:`~varprop.Network` layer by layer on
:class:`~varprop.network.field.Field` values (forward) and
:class:`~varprop.network.field.GradField` values (backward).

Forward, the network input is the field of i.i.d. :math:`N(0, \sigma_x^2)` entries
(:func:`~varprop.network.field.input_field`); each layer maps the field of its input to that of
its output with ``layer.field_forward``.  Backward, the seed is i.i.d. zero-mean unit-variance
gradients at the last layer's output (:func:`~varprop.network.field.output_gradient_field`), and
each layer maps the gradient field at its output to the one at its input with
``layer.field_backward(grad, field_in, field_out)`` (gradient independence).

What is tracked is the union of the layers' ``field_needs()``: position covariances (``cov``) when
some layer mixes positions (pooling), between-sample moments (``batch_cross``) for train-mode batch
normalisation, and both together (``batch_cov``: between samples across positions) when a layer
that mixes positions asks for it and between-sample moments are tracked.  The input's channel axis is the one the first layer that cares asks for
(``channel_axis_for``), else 0 for tensors and -1 for vectors.

Assumptions (those of every layer's rule): infinite width (channels independent, weight layers'
outputs Gaussian), zero-mean weights, gradient independence backward; approximations a layer
declares (the Gaussian closure of a nonlinearity whose input is not Gaussian, ...) are collected in
:attr:`FieldPrediction.approximations`.

**Exactness.**  A layer's ``field_exact(field_in)`` says whether its rule gives the second moments
exactly at every finite width for that input: ``Dense`` with zero-mean symmetric i.i.d. weights,
linear activations, ReLU-class activations on a zero-mean weight-layer output (no covariances
tracked); ``False`` by default.  The prediction at a position is exact when every layer up to it
is (backward quantities: every layer), and :attr:`FieldPrediction.exact` when all are.

Limits: at most :data:`MAX_POSITIONS` layer positions (the walk expands the runs), and position
covariances for at most :data:`MAX_COV_POSITIONS` positions per tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from varprop._util.validation import fail_type
from varprop.errors import VarpropError
from varprop.network.field import (
    Field,
    FieldNeeds,
    GradField,
    input_field,
    output_gradient_field,
)
from varprop.network.layers.base import Layer
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.network.layers.residual import Residual
from varprop.network.layout import (
    MAX_POSITIONS,
    channel_axes,
    expanded_layers,
    input_channel_axis,
)
from varprop.network.model import Network

__all__ = [
    "MAX_COV_POSITIONS",
    "MAX_POSITIONS",
    "FieldPrediction",
    "channel_axes",
    "general_values",
    "input_channel_axis",
    "is_general",
    "needs_of",
    "predict_fields",
    "walk_fields",
    "walk_nested",
]

#: Largest number of positions per tensor whose covariance matrix is tracked.
MAX_COV_POSITIONS = 4096
#: Largest number of positions per tensor without covariances (per-position arrays, index tables).
MAX_FIELD_POSITIONS = 2**20


@dataclass(frozen=True, eq=False)
class FieldPrediction:
    r"""The mean-field fields of a network (:func:`predict_fields`).

    Attributes
    ----------
    input : Field
        The network input's field.
    forward : tuple of Field
        The field of every layer position's output (``net.layers`` order).
    backward : tuple of GradField
        The gradient field at every layer position's output (the last is the unit seed).
    input_gradient : GradField
        The gradient field at the network input.
    approximations : tuple of str
        Every approximation declared on the way (forward and backward), each once.
    exact : bool
        Every layer's rule is exact at finite width here (see the module docstring).
    layer_exact : tuple of bool
        Per position: that layer's forward rule is exact for its input field.
    layer_exact_backward : tuple of bool
        Per position: its backward rule is exact too (``field_exact_backward`` where a layer
        defines it, else ``field_exact``).
    """

    input: Field
    forward: tuple[Field, ...]
    backward: tuple[GradField, ...]
    input_gradient: GradField
    approximations: tuple[str, ...]
    exact: bool
    layer_exact: tuple[bool, ...]
    layer_exact_backward: tuple[bool, ...] = ()

    def output_second(self) -> np.ndarray:
        """:math:`E y_p^2` averaged over the entries of each position's output."""
        return np.array([f.average_second() for f in self.forward])

    def output_gradient_second(self) -> np.ndarray:
        r""":math:`E(\partial L/\partial y_p)^2` averaged over the entries of each output."""
        return np.array([g.average_second() for g in self.backward])

    def exact_at(self, position: int, backward: bool) -> bool:
        """Whether the prediction at 1-based ``position`` is exact at finite width."""
        if backward:
            return all(self.layer_exact_backward or self.layer_exact)
        return all(self.layer_exact[:position])


def _distinct(net: Network) -> list[Layer]:
    seen: list[Layer] = []
    for block, _ in net.layers.runs:
        for layer in block:
            if layer not in seen:
                seen.append(layer)
    return seen


def is_general(net: Network) -> bool:
    """Whether ``net`` needs the general engine: a non-vector input, or a layer other than
    ``Dense`` and ``Nonlinearity`` (dense chains keep the MLP walk of :mod:`varprop.theory.meanfield`)."""
    return len(net.input_shape) != 1 or any(
        not isinstance(layer, (Dense, Nonlinearity)) for layer in _distinct(net))


def needs_of(net: Network) -> FieldNeeds:
    """The union of the layers' ``field_needs()``."""
    cov = bc = bcov = False
    for layer in _distinct(net):
        need = layer.field_needs()
        cov, bc, bcov = cov or need.cov, bc or need.batch_cross, bcov or need.batch_cov
    return FieldNeeds(cov=cov, batch_cross=bc, batch_cov=bcov and bc and cov)


def _guard_cov(field: Field | GradField, where: str) -> None:
    P = field.size
    if P > MAX_COV_POSITIONS:
        need = 8.0 * P * P
        raise VarpropError(
            f"{where}: tracking the covariance between its {P:,} positions (a pooling layer needs "
            f"it) would need {need / 2**20:,.0f} MiB per tensor; at most {MAX_COV_POSITIONS:,} "
            "positions are supported: use a smaller input")


def _guard_sizes(net: Network, needs: FieldNeeds) -> None:
    """Refuse, before anything is allocated, a tensor with more positions than the engine
    tracks: :data:`MAX_COV_POSITIONS` with position covariances, :data:`MAX_FIELD_POSITIONS`
    without (per-position moments and the layers' index tables grow with them)."""
    limit = MAX_COV_POSITIONS if needs.cov else MAX_FIELD_POSITIONS
    for p, (shape, fshape, axis) in enumerate(channel_axes(net)):
        positions = math.prod(fshape) // fshape[axis] if fshape else 1
        if positions > limit:
            where = "the network input" if p == 0 else f"the output of layer position {p}"
            what = ("tracking the covariance between them (a pooling layer needs it) would need "
                    f"{8.0 * positions * positions / 2**20:,.0f} MiB per tensor"
                    if needs.cov else "the per-position moments and index tables would not fit")
            raise VarpropError(f"{where} has {positions:,} positions (shape {shape}): {what}; at "
                               f"most {limit:,} positions are supported: use a smaller input")


def walk_fields(net: Network) -> FieldPrediction:
    """The fields of ``net`` forward and backward (module docstring); cached per network."""
    return _walk_cached(net)


@lru_cache(maxsize=16)
def _walk_cached(net: Network) -> FieldPrediction:
    layers = expanded_layers(net)
    needs = needs_of(net)
    axis = input_channel_axis(net)
    _guard_sizes(net, needs)
    field = input_field(net.input_shape, axis, net.input_variance, needs)
    fields = [field]
    exact: list[bool] = []
    exact_bw: list[bool] = []
    layouts = channel_axes(net) if any(getattr(x, "reads_channel_layout", False)
                                       for x in _distinct(net)) else None
    for p, layer in enumerate(layers):
        if layouts is not None and getattr(layer, "reads_channel_layout", False) \
                and len(layouts[p][0]) != len(layouts[p][1]):
            raise VarpropError(
                f"layer position {p + 1} ({layer!r}) acts on a flattened tensor of shape "
                f"{layouts[p][0]} whose field keeps the layout {layouts[p][1]} of before Flatten: "
                "the mean field of a normalisation over all of its entries is not implemented "
                "(simulate() runs it); normalise before Flatten, or put a Dense layer between")
        exact.append(bool(layer.field_exact(field)))
        exact_bw.append(bool(getattr(layer, "field_exact_backward", layer.field_exact)(field)))
        field = layer.field_forward(field)
        if needs.cov:
            _guard_cov(field, f"layer position {p + 1} ({layer!r})")
        if np.isnan(field.second).any():
            raise VarpropError(f"layer position {p + 1} ({layer!r}): a second moment is NaN "
                               "(0 * inf: the moments left the float range)")
        fields.append(field)
    out = fields[-1]
    grad = output_gradient_field(out.shape, out.channel_axis, needs)
    grads = [grad]
    for p in range(len(layers) - 1, -1, -1):
        grad = layers[p].field_backward(grad, fields[p], fields[p + 1])
        if np.isnan(grad.second).any():
            raise VarpropError(f"layer position {p + 1} ({layers[p]!r}): a gradient second moment "
                               "is NaN (0 * inf: the moments left the float range)")
        grads.append(grad)
    grads.reverse()  # grads[p] is the gradient at the input of position p (p = 0: the input)
    approx: list[str] = []
    for f in fields:
        approx.extend(s for s in f.approximations if s not in approx)
    return FieldPrediction(fields[0], tuple(fields[1:]), tuple(grads[1:]), grads[0], tuple(approx),
                           all(exact) and all(exact_bw), tuple(exact), tuple(exact_bw))


def general_values(net: Network, quantity: str) -> np.ndarray:
    """Per layer position, ``"output"``: :math:`E y_p^2` averaged over every entry of the
    output; ``"output_gradient"``: the same for the loss gradient (read-only array)."""
    fp = walk_fields(net)
    values = fp.output_gradient_second() if quantity == "output_gradient" else fp.output_second()
    values.flags.writeable = False
    return values


def predict_fields(net: Network) -> FieldPrediction:
    r"""The mean-field moments of every layer's output of ``net`` (any architecture), forward
    and backward: :class:`FieldPrediction` with ``.input``, ``.forward`` (a
    :class:`~varprop.network.field.Field` per layer position), ``.backward`` (a
    :class:`~varprop.network.field.GradField` at each layer's output), ``.input_gradient``,
    ``.approximations`` and ``.exact``.

    Assumptions: infinite-width mean field with zero-mean weights, gradient independence, inputs
    i.i.d. :math:`N(0, \sigma_x^2)` and unit-variance i.i.d. gradients at the output (see
    :mod:`varprop.theory.fields`).

    >>> from varprop import Network, layers, predict_fields
    >>> net = Network([layers.Dense(64, "he_normal"), "relu"], input_shape=(32,))
    >>> [round(f.average_second(), 6) for f in predict_fields(net).forward]
    [2.0, 1.0]
    """
    if not isinstance(net, Network):
        raise fail_type("net", net, "a varprop.Network")
    return walk_fields(net)



#: A layer's place in a network: ``(p,)`` for top-level position ``p`` (0-based, runs expanded),
#: ``(p, "branch", j)`` / ``(p, "shortcut", j)`` for layer ``j`` of a ``Residual``'s branch or
#: shortcut at ``p``, and so on down nested blocks.
Path = tuple


def walk_nested(net: Network) -> dict[Path, tuple[Field, GradField]]:
    r"""The output field and the gradient field at the output of *every* layer of ``net``,
    nested ones included, keyed by :data:`Path`.

    The top-level positions are those of :func:`walk_fields`.  Inside a
    :class:`~varprop.layers.Residual` block :math:`y = S(x) + s\,F(x)` at position ``p`` the
    branch's layers are walked forward from the block's input field with their own
    ``field_forward``, and backward from the gradient at the branch's output,
    :math:`\partial L/\partial F = s\,\partial L/\partial y` (second moments times
    :math:`s^2`), with their own ``field_backward``; the shortcut's likewise from
    :math:`\partial L/\partial y` -- the same rules ``Residual`` composes (gradient
    independence: the two paths' gradients add without a cross term).  A branch whose output is
    a vector spread over a flattened layout receives the gradient averaged over the positions, as
    in ``Residual``.
    """
    if not isinstance(net, Network):
        raise fail_type("net", net, "a varprop.Network")
    fp = walk_fields(net)
    layers = expanded_layers(net)
    inputs = (fp.input,) + fp.forward[:-1]
    out: dict[Path, tuple[Field, GradField]] = {}
    for p, layer in enumerate(layers):
        out[(p,)] = (fp.forward[p], fp.backward[p])
        if isinstance(layer, Residual):
            _nested(layer, inputs[p], fp.backward[p], (p,), out)
    return out


def _scaled(grad: GradField, s2: float) -> GradField:
    def times(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.asarray(a) * s2
    return GradField(grad.shape, grad.channel_axis, grad.second * s2, times(grad.cov),
                     times(grad.batch_cross), batch_cov=times(grad.batch_cov))


def _to_layout(grad: GradField, field: Field) -> GradField:
    """``grad`` averaged over its positions when ``field`` (a path's output) is a vector."""
    if grad.shape == field.shape or field.positions:
        return grad
    q = float(np.mean(grad.second))
    bc = None if grad.batch_cross is None else float(np.mean(grad.batch_cross))
    return GradField(field.shape, field.channel_axis, q, None if grad.cov is None else [[q]], bc,
                     batch_cov=None if grad.batch_cov is None else [[bc or 0.0]])


def _group(layers: tuple[Layer, ...], field: Field, grad: GradField, prefix: Path,
           out: dict[Path, tuple[Field, GradField]]) -> None:
    fields = [field]
    for layer in layers:
        fields.append(layer.field_forward(fields[-1]))
    grad = _to_layout(grad, fields[-1])
    for j in range(len(layers) - 1, -1, -1):
        out[prefix + (j,)] = (fields[j + 1], grad)
        if isinstance(layers[j], Residual):
            _nested(layers[j], fields[j], grad, prefix + (j,), out)
        grad = layers[j].field_backward(grad, fields[j], fields[j + 1])


def _nested(block: Residual, field_in: Field, grad_out: GradField, prefix: Path,
            out: dict[Path, tuple[Field, GradField]]) -> None:
    _group(block.branch, field_in, _scaled(grad_out, block.scale ** 2), prefix + ("branch",), out)
    if block.shortcut is not None:
        _group(block.shortcut, field_in, grad_out, prefix + ("shortcut",), out)
