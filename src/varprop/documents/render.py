"""The documents' public functions under their former module name (``varprop.documents.render``),
for existing imports: the code lives in the focused modules listed in :mod:`varprop.documents`."""

from varprop.documents import *  # noqa: F401,F403
from varprop.documents import __all__ as __all__
