r"""Symbolic derivations of variance propagation (SymPy).

:func:`derive` returns a :class:`Derivation`: ordered steps (statement, SymPy equation,
justification) from the weight moments to the per-layer recursion, its closed form over depth,
the backward pass, the backward factor :math:`\chi` and the fixed point, with
``to_markdown()`` and ``to_latex()``.  The symbols are documented in
:mod:`varprop.symbolic.symbols` (``SYMBOL_TABLE``).
"""

from .derivation import SECTIONS as SECTIONS
from .derivation import Derivation as Derivation
from .derivation import Step as Step
from .derivation import latex as latex
from .recursion import WIDTH_MODES as WIDTH_MODES
from .recursion import derive as derive
from .symbols import SYMBOL_TABLE as SYMBOL_TABLE
from .symbols import SymbolInfo as SymbolInfo

__all__ = ["derive", "Derivation", "Step", "SymbolInfo", "SYMBOL_TABLE", "SECTIONS", "WIDTH_MODES", "latex"]
