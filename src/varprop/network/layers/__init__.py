"""Layer types of a :class:`~varprop.Network` (public as :mod:`varprop.layers`)."""

from varprop.network.layers.base import Layer as Layer
from varprop.network.layers.dense import Dense as Dense
from varprop.network.layers.nonlinearity import Nonlinearity as Nonlinearity
from varprop.network.layers.residual import Residual as Residual
from varprop.network.layers.norms import LayerNorm as LayerNorm
from varprop.network.layers.norms import RMSNorm as RMSNorm
from varprop.network.layers.dropout import Dropout as Dropout

__all__ = ["Dense", "Layer", "Nonlinearity", "Residual", "LayerNorm", "RMSNorm", "Dropout"]
