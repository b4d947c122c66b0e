r"""The statistical checker's public face: :func:`verify` a prediction against simulation, with
known error rates (the module docstring of :mod:`varprop.checking.verify` tells how a verdict is
reached; ``docs/checker.md`` has the full account and measured numbers).

The checker is split into focused modules, re-exported here:

- :mod:`~varprop.checking.verdict`: :class:`Verdict`;
- :mod:`~varprop.checking.allowance`: what a prediction claims (:func:`is_exact`,
  :func:`prediction_allowance`), with the next order of the 1/n expansion
  (:mod:`~varprop.checking.next_order`);
- :mod:`~varprop.checking.plan`: the sequential plan (looks, budgets, engine limits, p-values);
- :mod:`~varprop.checking.verify`: :func:`verify` (a :class:`~varprop.Network` or the keyword
  form);
- :mod:`~varprop.checking.distribution_check`: the distributional targets ``"quantile"`` and
  ``"cv2"`` (intervals in :mod:`~varprop.checking.distribution_stats`);
- :mod:`~varprop.checking.outputs`: the quantities ``"output"`` / ``"output_gradient"`` of any
  network, per layer position;
- :mod:`~varprop.checking.step`: the one-step check :func:`verify_step`, walking the layers'
  one-step maps;
- :mod:`~varprop.checking.families`: :func:`verify_many`, :func:`check_matrix`, :func:`holm`.
"""

from __future__ import annotations

from varprop.checking.allowance import (
    FINITE_WIDTH_CONSTANT,
    is_exact,
    network_allowance,
    network_exact,
    prediction_allowance,
)
from varprop.checking.families import (
    DEFAULT_ACTIVATIONS,
    DEFAULT_INITS,
    check_matrix,
    config_seed,
    default_matrix,
    holm,
    verify_many,
)
from varprop.checking.plan import _check_common, _sequential, default_budget
from varprop.checking.reasons import _decision
from varprop.checking.step import LOCAL_QUANTITIES, verify_step
from varprop.checking.verdict import STATUSES, Verdict
from varprop.checking.verify import METHODS, TARGETS, verify
from varprop.network.quantities import QUANTITIES

__all__ = [
    "verify",
    "verify_step",
    "verify_many",
    "check_matrix",
    "default_matrix",
    "Verdict",
    "holm",
    "prediction_allowance",
    "network_allowance",
    "is_exact",
    "network_exact",
    "config_seed",
    "default_budget",
    "DEFAULT_ACTIVATIONS",
    "DEFAULT_INITS",
    "TARGETS",
    "STATUSES",
    "FINITE_WIDTH_CONSTANT",
    "LOCAL_QUANTITIES",
    "METHODS",
    "QUANTITIES",
    # private names used by the CLI and the tests of the checker
    "_check_common",
    "_decision",
    "_sequential",
]
