"""The layers a :class:`varprop.Network` is built from.

>>> from varprop import Network, layers
>>> net = Network([layers.Dense(256, init="he_normal"), "relu"], input_shape=(128,))
"""

from varprop.network.layers import Dense as Dense
from varprop.network.layers import Layer as Layer
from varprop.network.layers import Nonlinearity as Nonlinearity

from varprop.network.layers import BatchNorm as BatchNorm

__all__ = ["Layer", "Dense", "Nonlinearity"]
__all__ += ["BatchNorm"]
