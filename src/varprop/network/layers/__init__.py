"""Layer types of a :class:`~varprop.Network` (public as :mod:`varprop.layers`)."""

from varprop.network.layers.base import Layer as Layer
from varprop.network.layers.batchnorm import BatchNorm as BatchNorm
from varprop.network.layers.conv import Conv as Conv
from varprop.network.layers.dense import Dense as Dense
from varprop.network.layers.dropout import Dropout as Dropout
from varprop.network.layers.maxpool import MaxPool as MaxPool
from varprop.network.layers.nonlinearity import Nonlinearity as Nonlinearity
from varprop.network.layers.norms import LayerNorm as LayerNorm
from varprop.network.layers.norms import RMSNorm as RMSNorm
from varprop.network.layers.pooling import AvgPool as AvgPool
from varprop.network.layers.pooling import Flatten as Flatten
from varprop.network.layers.pooling import GlobalAvgPool as GlobalAvgPool
from varprop.network.layers.recurrent import Recurrent as Recurrent
from varprop.network.layers.residual import Residual as Residual

__all__ = ["Dense", "Layer", "Nonlinearity", "Residual", "LayerNorm", "RMSNorm", "Dropout", "Conv",
           "AvgPool", "Flatten", "GlobalAvgPool", "MaxPool", "Recurrent"]
__all__ += ["BatchNorm"]
