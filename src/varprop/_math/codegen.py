r"""Source code of compiled closed forms, for catalogues that evaluate them without SymPy.

:func:`sympy.lambdify` turns a closed form into Python source and compiles it; importing SymPy
to do so costs about 0.3 s, most of ``varprop predict``'s start-up.  :func:`generated_function`
returns that same source (the text ``lambdify`` compiles, renamed) with the imports its names
need, so a generated module (e.g. :mod:`varprop.components._compiled_activations`) holds the
code itself: evaluating it there runs the very code ``lambdify`` would, so the floats are
bit-identical, and the module imports only ``math`` and varprop's numeric helpers.

The generated modules are written by their generators and checked by tests that regenerate
them from SymPy and compare the text, so they cannot drift from the symbolic forms.
"""

from __future__ import annotations

import argparse
import builtins
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

__all__ = ["GeneratedFunction", "generated_function", "module_source", "run_generator"]


@dataclass(frozen=True)
class GeneratedFunction:
    """The source of one compiled function and the imports of the names it uses.

    Attributes
    ----------
    name : str
        The function's name in the generated module.
    source : str
        ``def name(args): ...`` exactly as :func:`sympy.lambdify` generates it, renamed.
    imports : dict
        Local name -> ``(module, attribute)`` for every global name the code reads.
    """

    name: str
    source: str
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)


def _import_of(local: str, obj: object) -> tuple[str, str] | None:
    """Where the global ``local`` (bound to ``obj`` in lambdify's namespace) comes from; None for
    builtins.  Only ``math`` names and module-level functions can be imported by a generated
    module: anything else (a SymPy object, a lambda) raises."""
    if getattr(builtins, local, None) is obj:
        return None
    if getattr(math, local, None) is obj:
        return ("math", local)
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if callable(obj) and module and qualname.isidentifier() and not module.startswith("sympy"):
        return (module, qualname)
    raise ValueError(f"generated code reads {local!r} = {obj!r}, which a generated module cannot "
                     "import (only math names and module-level functions outside SymPy)")


def generated_function(name: str, args: Sequence[sp.Symbol], exprs: Sequence[sp.Expr], *,
                       modules: str = "math") -> GeneratedFunction:
    """The source of ``sympy.lambdify(args, list(exprs), modules=modules)`` as function ``name``.

    >>> x = sp.Symbol("x")
    >>> g = generated_function("square", [x], [x**2, sp.sqrt(x)])
    >>> print(g.source, end="")
    def square(x):
        return [x**2, sqrt(x)]
    >>> g.imports
    {'sqrt': ('math', 'sqrt')}
    """
    if not name.isidentifier():
        raise ValueError(f"name={name!r} is not a Python identifier")
    compiled = sp.lambdify(args, list(exprs), modules=modules)
    source = inspect.getsource(compiled)
    head, sep, body = source.partition("(")
    if head != "def _lambdifygenerated" or not sep:
        raise ValueError(f"unexpected lambdify source: {source[:80]!r}")
    imports = {}
    for local in sorted(set(compiled.__code__.co_names)):
        if local in compiled.__globals__:
            where = _import_of(local, compiled.__globals__[local])
            if where is not None:
                imports[local] = where
    return GeneratedFunction(name, f"def {name}({body}".rstrip() + "\n", imports)


def module_source(docstring: str, functions: Sequence[GeneratedFunction], tail: str) -> str:
    """A generated module: the docstring, the imports every function needs (one line each,
    sorted), the functions, then ``tail`` (the module's tables, as Python source)."""
    lines: dict[str, str] = {}
    for fn in functions:
        for local, (module, attribute) in fn.imports.items():
            alias = "" if local == attribute else f" as {local}"
            line = f"from {module} import {attribute}{alias}"
            if lines.setdefault(local, line) != line:
                raise ValueError(f"two functions read {local!r} from different places")
    parts = ["# ruff: noqa  (generated code: lambdify's text, kept verbatim)",
             f'"""{docstring}"""\n', *sorted(set(lines.values())), "", ""]
    parts += [fn.source + "\n" for fn in functions]
    return "\n".join(parts).rstrip("\n") + "\n\n" + tail.rstrip("\n") + "\n"


def run_generator(path: Path, source: Callable[[], str], command: str,
                  argv: Sequence[str] | None = None) -> int:
    """The ``main`` of a generator module (``python -m <command> [--check]``): write ``path``
    with the text ``source()``, or with ``--check`` write nothing and return 1 if ``path`` is
    missing or differs from it (0 if up to date), printing which."""
    parser = argparse.ArgumentParser(prog=command, description=f"Write {path.name}.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = source()
    if args.check:
        stale = not path.exists() or path.read_text(encoding="utf-8") != text
        print(f"{path.name}: {'out of date, run ' + command if stale else 'up to date'}")
        return int(stale)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0
