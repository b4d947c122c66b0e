"""Derivation documents: rendering (Markdown + LaTeX + figures), the Monte Carlo store their
verdicts come from, and the API reference.  ``varprop derive`` calls :func:`generate`,
:func:`write` and :func:`check`."""

from varprop.documents.render import *  # noqa: F401,F403
from varprop.documents.render import __all__ as __all__
