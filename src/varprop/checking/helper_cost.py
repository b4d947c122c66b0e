r"""The cost bound of the assertion helpers (:mod:`varprop.strategies`): a check whose planned
replicates would take longer than the time it may take is refused up front, with a message
naming the configuration, the replicates, the predicted seconds and the ways out, instead of
running for a minute (or past hypothesis' deadline).

The price is the cost model :func:`varprop.checking.budget.predicted_seconds` of the keyword
form, which covers every scheme by the engine ``simulate`` picks (the Gaussian shortcut for
i.i.d. normal weights; the dense engine for uniform, truncated-normal --
:data:`~varprop.checking.budget.TRUNCATED_FACTOR` times dearer to draw -- and any other weights), and the checker's own replicate budget
(:func:`varprop.checking.plan.default_budget`, :func:`~varprop.checking.plan.network_budget`
for a :class:`~varprop.Network`: a fixed amount of simulation work, a few seconds on one core).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from varprop._util.validation import check_widths, fail
from varprop.checking.budget import BOOTSTRAP_REPLICATES, predicted_seconds
from varprop.checking.plan import default_budget, network_budget
from varprop.components.activations import Activation
from varprop.components.schemes import resolve_scheme

__all__ = ["HELPER_SECONDS", "check_cost"]

#: Predicted seconds a helper's check may take outside a hypothesis test (inside one: the
#: test's deadline, when it has one).
HELPER_SECONDS = 10.0


def check_cost(act: Any, init: Any, config: Mapping[str, Any], replicates: int | None, *,
               alpha: float, max_seconds: float) -> None:
    """Raise ``InvalidArgument`` when the check of ``config`` (``verify`` keyword arguments
    besides ``activation`` and ``init``) with ``replicates`` replicates is predicted to take
    more than ``max_seconds`` or exceeds the checker's replicate budget.  ``replicates=None``
    (verify's own adaptive plan, bounded by that budget) passes."""
    if replicates is None:
        return
    if isinstance(act, (str, Activation)):
        scheme = resolve_scheme(init)
        ws = check_widths(config.get("fan_in"), config.get("fan_out"), config.get("widths"),
                          config.get("depth", 1))
        seconds: float | None = predicted_seconds(scheme, ws, replicates,
                                                  str(config.get("quantity") or "activation"))
        cap = max(default_budget(scheme, ws), BOOTSTRAP_REPLICATES + 1)
    else:
        seconds, cap = None, network_budget(act)
    too_slow = seconds is not None and seconds > max_seconds
    if replicates <= cap and not too_slow:
        return
    shown = {k: config[k] for k in sorted(config)}
    cost = f"{seconds:.3g} s predicted" if seconds is not None else "no time prediction"
    raise fail("config", shown,
               f"a check the helpers can afford: at level {alpha:.3g} this one needs "
               f"{replicates} replicates ({cost}; at most {max_seconds:g} s and the checker's "
               f"budget of {cap} replicates are allowed): use a wider or shallower network, "
               "zero-mean Gaussian weights (the fast engine), draw configurations from "
               "varprop.strategies.layer_configs(), or pass replicates= or alpha= and accept "
               "that level")
