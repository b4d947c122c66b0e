r"""Symbolic derivations of variance propagation (SymPy).

:func:`derive` returns a :class:`Derivation`: ordered steps (statement, SymPy equation,
justification) from the weight moments to the per-layer recursion, its closed form over depth,
the backward pass, the backward factor :math:`\chi` and the fixed point, with
``to_markdown()`` and ``to_latex()``.  ``derive(network)`` takes a :class:`~varprop.Network`:
a plain MLP gets the same derivation, any other network a :class:`NetworkDerivation` from
:func:`derive_layers`, which walks the layers.  The symbols are documented in
:mod:`varprop.theory.symbolic.symbols` (``SYMBOL_TABLE``).  :func:`finite_width_steps` states the
finite-width (:math:`1/n`) recursion (:mod:`varprop.theory.symbolic.finite_width`).
"""

from varprop.theory.symbolic.derivation import SECTIONS as SECTIONS
from varprop.theory.symbolic.derivation import Derivation as Derivation
from varprop.theory.symbolic.derivation import Step as Step
from varprop.theory.symbolic.derivation import latex as latex
from varprop.theory.symbolic.finite_width import (
    finite_width_steps as finite_width_steps,
)
from varprop.theory.symbolic.recursion import WIDTH_MODES as WIDTH_MODES
from varprop.theory.symbolic.recursion import derive as derive
from varprop.theory.symbolic.symbols import SYMBOL_TABLE as SYMBOL_TABLE
from varprop.theory.symbolic.symbols import SymbolInfo as SymbolInfo
from varprop.theory.symbolic.walk import NetworkDerivation as NetworkDerivation
from varprop.theory.symbolic.walk import derive_layers as derive_layers

__all__ = ["SECTIONS", "SYMBOL_TABLE", "WIDTH_MODES", "Derivation", "Step", "SymbolInfo", "derive",
           "finite_width_steps", "latex"]
