"""The two name registries of the components: activations and init schemes.

They live apart from the types they hold so that the modules filling them (the catalogues
:mod:`~varprop.components.activations`, :mod:`~varprop.components.schemes`) and the modules
reading their names (:mod:`~varprop.components.expressions`, for suggestions) import them without
a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from varprop._util.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from varprop.components.activation import Activation
    from varprop.components.scheme import InitScheme

__all__ = ["ACTIVATIONS", "SCHEMES"]

ACTIVATIONS: Registry[Activation] = Registry("activation")
SCHEMES: Registry[InitScheme] = Registry("init")
