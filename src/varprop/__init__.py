"""varprop: derive, predict and Monte-Carlo-check variance propagation in random networks.

The public API is re-exported here, lazily, so that ``import varprop`` stays cheap and the Monte
Carlo engine can be used without importing SymPy-heavy modules.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # catalogues
    "init_scheme": "varprop.schemes",
    "InitScheme": "varprop.schemes",
    "scheme_names": "varprop.schemes",
    "activation": "varprop.activations",
    "Activation": "varprop.activations",
    "activation_names": "varprop.activations",
    # symbolic derivations and predictions
    "derive": "varprop.symbolic",
    "Derivation": "varprop.symbolic",
    "predict_variance": "varprop.predict",
    "propagate": "varprop.predict",
    "Propagation": "varprop.predict",
    # Monte Carlo and checking
    "simulate": "varprop.montecarlo",
    "SimulationResult": "varprop.montecarlo",
    "verify": "varprop.check",
    "Verdict": "varprop.check",
    # beyond
    "critical_gain": "varprop.criticality",
    "edge_of_chaos": "varprop.criticality",
    "overflow_depth": "varprop.overflow",
    "underflow_depth": "varprop.overflow",
    "check_initializer": "varprop.initializers",
    "sweep": "varprop.sweeps",
    # errors
    "VarpropError": "varprop.errors",
    "InvalidArgument": "varprop.errors",
    "InvalidArgumentType": "varprop.errors",
    "SimulationOverflowError": "varprop.errors",
    "VarpropWarning": "varprop.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'varprop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
