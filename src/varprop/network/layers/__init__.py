"""Layer types of a :class:`~varprop.Network` (public as :mod:`varprop.layers`)."""

from varprop.network.layers.base import Layer as Layer
from varprop.network.layers.dense import Dense as Dense
from varprop.network.layers.nonlinearity import Nonlinearity as Nonlinearity

__all__ = ["Dense", "Layer", "Nonlinearity"]
from varprop.network.layers.conv import Conv as Conv
from varprop.network.layers.pooling import AvgPool as AvgPool
from varprop.network.layers.pooling import Flatten as Flatten
from varprop.network.layers.pooling import GlobalAvgPool as GlobalAvgPool
from varprop.network.layers.maxpool import MaxPool as MaxPool
