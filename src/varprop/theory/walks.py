r"""How a network is walked: the regime (unconditional, or conditional on the layer-1 shift), the
cached walks, the keyword form's network, and the per-position quantities of any network
(``output``, ``output_gradient``).  Used by :mod:`varprop.theory.predict`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.validation import fail
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.errors import VarpropError, VarpropWarning
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.network.model import Network
from varprop.network.quantities import spec
from varprop.network.state import NAN_MESSAGE
from varprop.theory.meanfield import (
    BackwardWalk,
    ForwardWalk,
    walk_backward,
    walk_forward,
)
from varprop.theory.moments import Moments
from varprop.theory.sizes import check_fits, source_positive, underflowed

#: The walk conditional on the layer-1 shift (non-zero-mean weights), imported at first use
#: (:mod:`varprop._util.lazy`)
_shifted = lazy_module("varprop.theory.shifted")

__all__: list[str] = []

_SHIFTED_ARRAYS = "per-layer node arrays of the non-zero-mean recursion (varprop.theory.shifted)"


# ----------------------------------------------------------------------------------------------
# the shape of a keyword-form network
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Shape:
    r"""The widths :math:`(n_0, \dots, n_L)`: explicit, or ``(n0, n, L)`` without materialising
    the constant tail (so a depth of :math:`10^9` costs no memory)."""

    explicit: tuple[int, ...] | None
    n0: int
    n: int
    L: int

    @staticmethod
    def of(widths: tuple[int, ...]) -> _Shape:
        return _Shape(widths, widths[0], widths[-1], len(widths) - 1)

    def widths(self) -> tuple[int, ...]:
        return self.explicit if self.explicit is not None else (self.n0,) + (self.n,) * self.L


class _Prepared:
    """A network with what every prediction on it asks for, decided once: whether it is
    MLP-shaped, whether its walk is conditional on the layer-1 shift, and whether a 0.0 is an
    underflow (:func:`~varprop.theory.sizes.source_positive`, forward and backward, when first
    asked).  Compared by identity: the forward walks are cached per prepared network, so a
    cached keyword-form call never hashes the network's layers."""

    __slots__ = ("_source", "conditional", "is_mlp", "net", "per_unit")

    def __init__(self, net: Network) -> None:
        self.net = net
        self.is_mlp = net.as_mlp() is not None
        self.conditional = _conditional(net)
        self.per_unit = 2 if self.is_mlp else 1
        self._source: list[bool | None] = [None, None]

    def source_positive(self, backward: bool) -> bool:
        known = self._source[backward]
        if known is None:
            known = self._source[backward] = source_positive(self.net, backward)
        return known


@lru_cache(maxsize=256)
def _prepared(net: Network) -> _Prepared:
    """A :class:`Network` argument, prepared (one per equal network while cached)."""
    return _Prepared(net)


def _mlp(act: Activation, scheme: InitScheme, shape: _Shape, input_variance: float,
         bias_variance: float) -> _Prepared:
    """The keyword form's network (:meth:`Network.mlp`), built and prepared once per validated
    arguments (explicit constant widths give the network of ``(n0, n, L)``)."""
    if shape.explicit is not None and len(set(shape.explicit[1:])) <= 1:
        shape = _Shape(None, shape.n0, shape.n, shape.L)
    return _keyword_network(act, scheme, shape, input_variance, bias_variance)


@lru_cache(maxsize=1024)
def _keyword_network(act: Activation, scheme: InitScheme, shape: _Shape, input_variance: float,
                     bias_variance: float) -> _Prepared:
    """:func:`_mlp` once the shape is normalised (``explicit``: widths that are not constant)."""
    if shape.explicit is not None:
        return _Prepared(Network.mlp(act, scheme, widths=shape.explicit,
                                     bias_variance=bias_variance, input_variance=input_variance))
    # a constant width: one run of (Dense, Nonlinearity)
    return _Prepared(Network.mlp(act, scheme, fan_in=shape.n0, fan_out=shape.n, depth=shape.L,
                                 bias_variance=bias_variance, input_variance=input_variance))


# ----------------------------------------------------------------------------------------------
# regimes and walks
# ----------------------------------------------------------------------------------------------

def _conditional(net: Network) -> bool:
    """Whether the walk must be conditional on the layer-1 shift: some dense layer has non-zero-mean
    weights and some nonlinearity is not the identity (otherwise the unconditional closure is
    exact in the model)."""
    blocks = [block for block, _ in net.layers.runs]
    if all(layer.init.is_zero_mean for block in blocks for layer in block if isinstance(layer, Dense)):
        return False
    return any(layer.activation.traits.slope != 1.0 for block in blocks for layer in block
               if isinstance(layer, Nonlinearity))


def _first_nonlinearity(net: Network) -> Activation:
    for block, _ in net.layers.runs:
        for layer in block:
            if isinstance(layer, Nonlinearity) and layer.activation.traits.slope != 1.0:
                return layer.activation
    raise AssertionError("unreachable: a conditional walk has a nonlinearity")  # pragma: no cover


def _refuse_closed_form_conditional(net: Network, method: str) -> None:
    if method == "closed_form":
        act = _first_nonlinearity(net)
        raise fail("method", method, f"'exact', 'auto' or 'quadrature': with non-zero-mean weights "
                   f"{act.name!r} has no closed form (the shared shift is integrated numerically)")


@lru_cache(maxsize=1024)
def _forward(prep: _Prepared, method: str, keep: str) -> ForwardWalk:
    """The unconditional forward walk, cached (the backward walk from it is recomputed)."""
    return walk_forward(prep.net, Moments(method), keep=keep,
                        source_positive=prep.source_positive(False), layers_per_unit=prep.per_unit)


def _walks(prep: _Prepared, method: str, origin: int) -> tuple[ForwardWalk, BackwardWalk]:
    """Forward (``keep="all"``) and backward (per position, started at ``origin``) walks."""
    net = prep.net
    if prep.conditional:
        _refuse_closed_form_conditional(net, method)
        check_fits(net.layers.size // prep.per_unit, _shifted.BYTES_PER_LAYER, _SHIFTED_ARRAYS, "")
        return _shifted.shifted_walks(net, Moments(method), origin, layers_per_unit=prep.per_unit)
    fw = _forward(prep, method, "all")  # cached like the last-layer path's (the backward is not)
    return fw, walk_backward(fw, origin, per_position=True)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr, dtype=float)
    arr.flags.writeable = False
    return arr


def _shared_backward_component(prep: _Prepared) -> tuple[int, int] | None:
    """Positions ``(p, q)`` of the last Dense layer with non-zero-mean weights and of a nonlinear
    activation before it that directly follows a Dense layer, for a network that is not an MLP
    (the MLP's own accuracy is stated in :mod:`varprop.theory.shifted`), else ``None``."""
    net = prep.net
    if prep.is_mlp or net.layers.size > 10_000:
        return None
    layers = list(net.layers)
    shifted = [p for p, layer in enumerate(layers) if isinstance(layer, Dense) and not layer.init.is_zero_mean]
    if not shifted:
        return None
    for q in range(1, shifted[-1]):
        layer = layers[q]
        if (isinstance(layer, Nonlinearity) and layer.activation.traits.slope is None
                and isinstance(layers[q - 1], Dense)):
            return shifted[-1], q
    return None


def _network_values(prep: _Prepared, quantity: str, method: str, per_layer: bool
                    ) -> tuple[np.ndarray, bool]:
    """``output`` / ``output_gradient`` of any network and whether one underflowed."""
    backward = spec(quantity).backward
    P = prep.net.layers.size
    source = prep.source_positive(backward)
    if backward and (shared := _shared_backward_component(prep)) is not None:
        warnings.warn(
            f"{quantity}: the backward pass carries a component shared by all units (from the "
            f"non-zero-mean Dense layer at position {shared[0]}) back through the nonlinearity at "
            f"position {shared[1]}, where gradient independence neglects its correlation with the "
            "forward weights feeding that nonlinearity: the prediction can be off by tens of "
            "percent at every width (+40% measured for Dense(uniform), relu, Dense(lecun_normal), "
            "relu, Dense(uniform)); check it with verify(net, quantity='output_gradient')",
            VarpropWarning, stacklevel=4)
    if per_layer or prep.conditional:
        check_fits(P)
        fw, bw = _walks(prep, method, P - 1)
        values = bw.out_second if backward else fw.expand(fw.second)
        under = (source or not backward) and underflowed(values[::-1] if backward else values, source)
    elif backward:
        bw = walk_backward(_forward(prep, method, "backward"), P - 1, source_positive=source)
        values, under = np.array([bw.first_output]), bw.under["output"].under
    else:
        fw = _forward(prep, method, "last")
        values, under = np.array([fw.last_reported(1)[1]]), fw.under["output"].under
    if np.isnan(values).any():
        raise VarpropError(f"{quantity}: {NAN_MESSAGE}")
    return _readonly(values), under
