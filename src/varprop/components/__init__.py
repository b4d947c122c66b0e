"""The network's components: activations (with their traits), safe activation expressions, weight
laws and init schemes.

Importing the package registers the named activations and init schemes (the catalogues
:mod:`~varprop.components.activations`, :mod:`~varprop.components.activations_extra`,
:mod:`~varprop.components.schemes` and :mod:`~varprop.components.frameworks`), so the lookup
functions of :mod:`~varprop.components.activation` and :mod:`~varprop.components.scheme` find them
whichever module is imported first."""

import varprop.components.activations  # noqa: F401  (registers the named activations)
import varprop.components.activations_extra  # noqa: F401  (the framework activations)
import varprop.components.frameworks  # noqa: F401  (the framework-qualified init schemes)
import varprop.components.schemes  # noqa: F401  (registers the named init schemes)
