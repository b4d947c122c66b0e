r"""Audit PyTorch models with varprop (issue 12): read a ``torch.nn.Module`` into a varprop
:class:`~varprop.Network` and predict each module's forward and backward second moments
(:func:`to_network`, :func:`trace_model`, :func:`predict_sites`), and put those predictions next
to measurements over re-initialisations of the model, with the checker's verdicts
(:func:`audit` -> :class:`AuditReport`).

Needs the optional ``interop`` extra (``torch``; ``transformers`` for Hugging Face models).
torch is imported by this subpackage only; nothing else in varprop imports it (the CLI lazily).

>>> import torch
>>> from varprop.torch import to_network
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
>>> to_network(model, torch.randn(4, 8)).output_shape
(16,)
"""

from __future__ import annotations

from varprop.network.layers.measured import MeasuredMoments
from varprop.torch.audit import audit
from varprop.torch.report import AuditReport, AuditRow, PassResult
from varprop.torch.trace import (
    Site,
    TracedModel,
    predict_sites,
    to_network,
    trace_model,
)

__all__ = ["to_network", "trace_model", "predict_sites", "Site", "TracedModel",
           "MeasuredMoments", "audit", "AuditReport", "AuditRow", "PassResult"]
