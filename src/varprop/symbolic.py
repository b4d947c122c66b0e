"""Public face of the symbolic derivations (:mod:`varprop.theory.symbolic`): ``derive``,
``Derivation``, ``Step``, ``SYMBOL_TABLE``, ``finite_width_steps``."""

from varprop.theory.symbolic import SECTIONS as SECTIONS
from varprop.theory.symbolic import SYMBOL_TABLE as SYMBOL_TABLE
from varprop.theory.symbolic import WIDTH_MODES as WIDTH_MODES
from varprop.theory.symbolic import Derivation as Derivation
from varprop.theory.symbolic import NetworkDerivation as NetworkDerivation
from varprop.theory.symbolic import Step as Step
from varprop.theory.symbolic import SymbolInfo as SymbolInfo
from varprop.theory.symbolic import derive as derive
from varprop.theory.symbolic import derive_layers as derive_layers
from varprop.theory.symbolic import finite_width_steps as finite_width_steps
from varprop.theory.symbolic import latex as latex

__all__ = ["derive", "derive_layers", "finite_width_steps", "Derivation", "NetworkDerivation", "Step", "SymbolInfo", "SYMBOL_TABLE", "SECTIONS", "WIDTH_MODES", "latex"]
