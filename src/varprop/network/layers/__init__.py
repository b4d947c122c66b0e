"""Layer types of a :class:`~varprop.Network` (public as :mod:`varprop.layers`).

Each layer type is imported from its module at first access (the module ``__getattr__`` below),
so that a prediction for a dense network imports :class:`Dense` and :class:`Nonlinearity` only,
not the convolutions, normalisations and recurrences (``varprop predict``'s start-up,
docs/performance.md).  ``from varprop.network.layers import Conv`` works as before.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: layer type -> the module of this package that defines it
_EXPORTS: dict[str, str] = {
    "Layer": "base", "Dense": "dense", "Nonlinearity": "nonlinearity", "Residual": "residual",
    "LayerNorm": "norms", "RMSNorm": "norms", "Dropout": "dropout", "Conv": "conv",
    "AvgPool": "pooling", "Flatten": "pooling", "GlobalAvgPool": "pooling", "MaxPool": "maxpool",
    "Recurrent": "recurrent", "BatchNorm": "batchnorm",
}

__all__ = ["Dense", "Layer", "Nonlinearity", "Residual", "LayerNorm", "RMSNorm", "Dropout", "Conv",
           "AvgPool", "Flatten", "GlobalAvgPool", "MaxPool", "Recurrent"]
__all__ += ["BatchNorm"]


#: this package's modules (``varprop.network.layers.conv``, ...), also imported at first access
_MODULES = frozenset(entry[:-3] for entry in os.listdir(__path__[0])
                     if entry.endswith(".py") and not entry.startswith("__"))


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(__all__) | _MODULES)
