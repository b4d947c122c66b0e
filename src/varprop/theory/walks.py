r"""How a network is walked: the regime (unconditional, or conditional on the layer-1 shift), the
cached walks, the keyword form's network, and the per-position quantities of any network
(``output``, ``output_gradient``).  Used by :mod:`varprop.theory.predict`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from varprop._util.validation import fail
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.errors import VarpropError
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.network.model import Network
from varprop.network.quantities import spec
from varprop.network.state import NAN_MESSAGE
from varprop.theory import shifted as _shifted
from varprop.theory.meanfield import (
    BackwardWalk,
    ForwardWalk,
    walk_backward,
    walk_forward,
)
from varprop.theory.moments import Moments
from varprop.theory.sizes import check_fits, source_positive, underflowed

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


@lru_cache(maxsize=1024)
def _mlp(act: Activation, scheme: InitScheme, shape: _Shape, input_variance: float,
         bias_variance: float) -> Network:
    """The keyword form's network (:meth:`Network.mlp`), built once per validated arguments."""
    if shape.explicit is not None:
        return Network.mlp(act, scheme, widths=shape.explicit, bias_variance=bias_variance,
                           input_variance=input_variance)
    return Network.mlp(act, scheme, fan_in=shape.n0, fan_out=shape.n, depth=shape.L,
                       bias_variance=bias_variance, input_variance=input_variance)


# ----------------------------------------------------------------------------------------------
# regimes and walks
# ----------------------------------------------------------------------------------------------

def _is_mlp(net: Network) -> bool:
    return net.as_mlp() is not None


def _conditional(net: Network) -> bool:
    """Whether the walk must be conditional on the layer-1 shift: some dense layer has non-zero-mean
    weights and some nonlinearity is not the identity (otherwise the unconditional closure is
    exact in the model)."""
    nonzero = nonlinear = False
    for block, _ in net.layers.runs:
        for layer in block:
            if isinstance(layer, Dense) and not layer.init.is_zero_mean:
                nonzero = True
            elif isinstance(layer, Nonlinearity) and layer.activation.traits.slope != 1.0:
                nonlinear = True
    return nonzero and nonlinear


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
    if not isinstance(net.layers[0], Dense):
        raise fail("layers", net.layers[0], "a Dense first layer in a network with non-zero-mean "
                   "weights and nonlinear activations (the mean field conditions on its shift)")


def _per_unit(net: Network) -> int:
    return 2 if _is_mlp(net) else 1


@lru_cache(maxsize=1024)
def _forward(net: Network, method: str, keep: str) -> ForwardWalk:
    """The unconditional forward walk (cached: per_layer=False reuses it)."""
    return walk_forward(net, Moments(method), keep=keep,
                        source_positive=source_positive(net, False), layers_per_unit=_per_unit(net))


def _walks(net: Network, method: str, origin: int) -> tuple[ForwardWalk, BackwardWalk]:
    """Forward (``keep="all"``) and backward (per position, started at ``origin``) walks."""
    if _conditional(net):
        _refuse_closed_form_conditional(net, method)
        check_fits(len(net.layers) // _per_unit(net), _shifted.BYTES_PER_LAYER, _SHIFTED_ARRAYS, "")
        return _shifted.shifted_walks(net, Moments(method), origin, layers_per_unit=_per_unit(net))
    fw = walk_forward(net, Moments(method), keep="all", layers_per_unit=_per_unit(net))
    return fw, walk_backward(fw, origin, per_position=True)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr, dtype=float)
    arr.flags.writeable = False
    return arr


def _network_values(net: Network, quantity: str, method: str, per_layer: bool
                    ) -> tuple[np.ndarray, bool]:
    """``output`` / ``output_gradient`` of any network and whether one underflowed."""
    backward = spec(quantity).backward
    P = len(net.layers)
    source = source_positive(net, backward)
    if per_layer or _conditional(net):
        check_fits(P)
        fw, bw = _walks(net, method, P - 1)
        values = bw.out_second if backward else fw.expand(fw.second)
        under = (source or not backward) and underflowed(values[::-1] if backward else values, source)
    elif backward:
        bw = walk_backward(_forward(net, method, "backward"), P - 1, source_positive=source)
        values, under = np.array([bw.first_output]), bw.under["output"].under
    else:
        fw = _forward(net, method, "last")
        values, under = np.array([fw.last_reported(1)[1]]), fw.under["output"].under
    if np.isnan(values).any():
        raise VarpropError(f"{quantity}: {NAN_MESSAGE}")
    return _readonly(values), under
