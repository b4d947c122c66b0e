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
    # the model of a network
    "Network": "varprop.network.model",
    # catalogues
    "init_scheme": "varprop.components.schemes",
    "InitScheme": "varprop.components.schemes",
    "scheme_names": "varprop.components.schemes",
    "activation": "varprop.components.activations",
    "Activation": "varprop.components.activations",
    "activation_names": "varprop.components.activations",
    # symbolic derivations and predictions
    "derive": "varprop.theory.symbolic",
    "Derivation": "varprop.theory.symbolic",
    "predict_variance": "varprop.theory.predict",
    "propagate": "varprop.theory.predict",
    "Propagation": "varprop.theory.predict",
    "predict_fields": "varprop.theory.fields",
    "FieldPrediction": "varprop.theory.fields",
    "finite_width_moments": "varprop.theory.finite",
    "FiniteWidthMoments": "varprop.theory.finite",
    "predict_distribution": "varprop.theory.finite.statistics",
    "Distribution": "varprop.theory.finite.distribution",
    # Monte Carlo and checking
    "simulate": "varprop.simulation.montecarlo",
    "SimulationResult": "varprop.simulation.montecarlo",
    "verify": "varprop.checking.check",
    "verify_step": "varprop.checking.check",
    "Verdict": "varprop.checking.check",
    # beyond
    "critical_gain": "varprop.theory.criticality",
    "edge_of_chaos": "varprop.theory.criticality",
    "overflow_depth": "varprop.theory.overflow",
    "underflow_depth": "varprop.theory.overflow",
    "recommend": "varprop.theory.recommend",
    "Recommendation": "varprop.theory.recommend",
    "plot_recommendation": "varprop.documents.recommend_figure",
    "check_initializer": "varprop.checking.initializers",
    "sweep": "varprop.checking.sweeps",
    # errors
    "VarpropError": "varprop.errors",
    "InvalidArgument": "varprop.errors",
    "InvalidArgumentType": "varprop.errors",
    "SimulationOverflowError": "varprop.errors",
    "VarpropWarning": "varprop.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


#: public submodules reachable as attributes (``varprop.layers.Dense``)
_SUBMODULES = ("layers", "strategies", "symbolic", "documents")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"varprop.{name}")
        globals()[name] = value
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'varprop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
