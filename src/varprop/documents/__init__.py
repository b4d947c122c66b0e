"""Derivation documents: one per activation (Markdown or LaTeX, with figures), an index, extra
pages a source checkout adds, and the Monte Carlo record their verdicts come from; plus the API
reference.  ``varprop derive`` calls :func:`generate`, :func:`write` and :func:`check`.

Modules: :mod:`~varprop.documents.common` (what the documents cover, file names),
:mod:`~varprop.documents.store` (budgets, the Monte Carlo record), :mod:`~varprop.documents.records`
(the records of the activation documents), :mod:`~varprop.documents.phases`,
:mod:`~varprop.documents.approx_error` and :mod:`~varprop.documents.cells` (computed facts and
sentences), :mod:`~varprop.documents.blocks` (Markdown / LaTeX rendering),
:mod:`~varprop.documents.figures`, :mod:`~varprop.documents.derivation_section` and
:mod:`~varprop.documents.step_text` (the derivation written once for every scheme, in LaTeX),
:mod:`~varprop.documents.scheme_tables` (the schemes tabulated),
:mod:`~varprop.documents.activation` (one document), :mod:`~varprop.documents.pages` (a
checkout's extra pages), :mod:`~varprop.documents.folder` (the whole folder),
:mod:`~varprop.documents.parallel` (the folder on several cores) and
:mod:`~varprop.documents.api` (docs/api.md).
"""

from varprop.documents.activation import activation_document
from varprop.documents.cells import critical_nsw2
from varprop.documents.common import (
    ACTIVATIONS,
    SCHEMES,
    VERIFY_DEPTH,
    VERIFY_WIDTH,
    GeneratedFile,
    default_output_dir,
    file_stem,
    schemes_for,
)
from varprop.documents.folder import CheckReport, check, compare, generate, write
from varprop.documents.pages import Page

__all__ = ["ACTIVATIONS", "SCHEMES", "VERIFY_WIDTH", "VERIFY_DEPTH", "GeneratedFile", "file_stem",
           "CheckReport", "activation_document", "generate", "write", "check", "compare",
           "schemes_for", "critical_nsw2", "default_output_dir", "Page"]
