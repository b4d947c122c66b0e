"""The layers a :class:`varprop.Network` is built from.

>>> from varprop import Network, layers
>>> net = Network([layers.Dense(256, init="he_normal"), "relu"], input_shape=(128,))
"""

from varprop.network.layers import AvgPool as AvgPool
from varprop.network.layers import BatchNorm as BatchNorm
from varprop.network.layers import Conv as Conv
from varprop.network.layers import Dense as Dense
from varprop.network.layers import Dropout as Dropout
from varprop.network.layers import Flatten as Flatten
from varprop.network.layers import GlobalAvgPool as GlobalAvgPool
from varprop.network.layers import Layer as Layer
from varprop.network.layers import LayerNorm as LayerNorm
from varprop.network.layers import MaxPool as MaxPool
from varprop.network.layers import Nonlinearity as Nonlinearity
from varprop.network.layers import Recurrent as Recurrent
from varprop.network.layers import Residual as Residual
from varprop.network.layers import RMSNorm as RMSNorm

__all__ = ["Layer", "Dense", "Nonlinearity", "Residual", "LayerNorm", "RMSNorm", "Dropout",
           "Conv", "AvgPool", "GlobalAvgPool", "Flatten", "MaxPool", "Recurrent"]
__all__ += ["BatchNorm"]
