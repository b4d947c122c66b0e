"""Layer types of a :class:`~varprop.Network` (public as :mod:`varprop.layers`)."""

from varprop.network.layers.base import Layer as Layer
from varprop.network.layers.dense import Dense as Dense
from varprop.network.layers.nonlinearity import Nonlinearity as Nonlinearity

__all__ = ["Dense", "Layer", "Nonlinearity"]
from varprop.network.layers.batchnorm import BatchNorm as BatchNorm
