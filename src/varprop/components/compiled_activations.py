r"""Generator of :mod:`varprop.components._compiled_activations`, the catalogue of the registered
activations at their default parameters.

Regenerate after changing a registered activation (its factory, closed form, traits, NumPy
functions)::

    python -m varprop.components.compiled_activations          # rewrite the catalogue
    python -m varprop.components.compiled_activations --check  # exit 1 if it is out of date

The catalogue holds, for every registered name, what the numeric path reads from an
:class:`~varprop.Activation`: name, parameters, kinks, LaTeX name, reference, traits, the closed
form's flags and its compiled moments, and references to the NumPy function and derivative.  The
moments are the source :func:`sympy.lambdify` generates for the closed form's evaluation forms
(:func:`varprop._math.codegen.generated_function`), the code
:attr:`varprop.components.closed_forms.MomentRules.compiled` runs, so the floats are identical;
the NumPy functions are imported by name (module-level functions, or :func:`functools.partial`
of one with float arguments), else left to the full activation (``None``).  The lookup
(:func:`varprop.components.activation._build_cached`) turns an entry into a light activation
that imports no SymPy; ``tests/test_compiled_activations.py`` regenerates the text and compares
it with the committed file, and compares every catalogued number with the full object's.

This module imports SymPy: only the test and ``python -m`` import it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import sys
from pathlib import Path

import varprop.components  # noqa: F401  (registers every named activation)
from varprop._math.codegen import (
    GeneratedFunction,
    generated_function,
    module_source,
    run_generator,
)
from varprop._util.registry import typed_cache_key
from varprop.components.activation import Activation
from varprop.components.moment_rules import MOMENTS, MU, Q
from varprop.components.registries import ACTIVATIONS

__all__ = ["TARGET", "COMMAND", "catalogue_source", "main"]

#: The generated module.
TARGET = Path(__file__).with_name("_compiled_activations.py")
#: The command that regenerates it.
COMMAND = "python -m varprop.components.compiled_activations"

_DOCSTRING = f"""The registered activations at their default parameters, compiled: GENERATED, do not edit.

Written by :mod:`varprop.components.compiled_activations` from the registered factories
(regenerate: ``{COMMAND}``);
read by :func:`varprop.components.activation._build_cached`.
``CATALOGUE`` maps each registered name to its fields; ``code`` is ``sympy.lambdify``'s source
for the closed form's evaluation forms of (E phi, E phi^2, E phi', E phi'^2) in ``(mu, q)``.
Imports no SymPy.
"""


def _reference(obj: object) -> tuple[str | None, set[str]]:
    """Python source naming ``obj`` in the generated module and the imports it needs, or
    ``(None, set())`` when ``obj`` cannot be imported by name (a closure, a lambda)."""
    if isinstance(obj, functools.partial):
        if obj.keywords or not all(type(a) in (float, int, str) for a in obj.args):
            return None, set()
        inner, imports = _reference(obj.func)
        if inner is None:
            return None, set()
        args = ", ".join([inner, *map(repr, obj.args)])
        return f"partial({args})", imports | {"from functools import partial"}
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or not qualname.isidentifier() or module.startswith("sympy"):
        return None, set()
    if getattr(importlib.import_module(module), qualname, None) is not obj:
        return None, set()
    package, _, alias = module.rpartition(".")
    return f"{alias}.{qualname}", {f"from {package} import {alias}" if package else f"import {module}"}


def _key_source(key: tuple[tuple[str, type, object, bool], ...]) -> str:
    """``typed_cache_key(params)`` as source (builtin type names)."""
    items = []
    for name, kind, value, negative in key:
        if kind.__module__ != "builtins":
            raise ValueError(f"parameter {name}={value!r}: a catalogue holds builtin values only")
        items.append(f"({name!r}, {kind.__name__}, {value!r}, {negative!r})")
    return "(" + "".join(f"{item}, " for item in items).rstrip(" ") + ")"


def _entry(name: str, act: Activation, functions: list[GeneratedFunction],
           imports: set[str]) -> str:
    """The source of ``CATALOGUE[name]`` (appending its moment function and imports)."""
    factory = ACTIVATIONS.factory(name)
    lines = [f"    {name!r}: {{",
             f'        "factory": {factory.__module__ + "." + factory.__qualname__!r},',
             f'        "key": {_key_source(typed_cache_key(act.params) if act.name == name else ())},',
             f'        "name": {act.name!r},',
             f'        "params": {dict(act.params)!r},']
    for field in ("function", "derivative_function"):
        source, needed = _reference(getattr(act, field))
        imports |= needed
        lines.append(f'        "{field}": {source},')
    lines += [f'        "kinks": {tuple(act.kinks)!r},',
              f'        "latex_name": {act.latex_name!r},',
              f'        "reference": {act.reference!r},',
              f'        "traits": {dataclasses.asdict(act.traits)!r},']
    rules = act.closed_form
    if rules is None:
        lines.append('        "closed_form": None,')
    else:
        code = generated_function(f"_{name}_moments", (MU, Q),
                                  [rules.evaluation_form(m) for m in MOMENTS])
        functions.append(code)
        lines += ['        "closed_form": {',
                  f'            "code": {code.name},',
                  f'            "exact": {rules.exact!r},',
                  f'            "zero_mean_only": {rules.zero_mean_only!r},',
                  f'            "approximation": {rules.approximation!r},',
                  f'            "max_relative_error": {dict(rules.max_relative_error)!r},',
                  "        },"]
    lines.append("    },")
    return "\n".join(lines)


def catalogue_source() -> str:
    """The text of :data:`TARGET` for the activations registered by varprop's own modules."""
    functions: list[GeneratedFunction] = []
    imports: set[str] = set()
    entries = []
    for name in ACTIVATIONS.names():
        if not ACTIVATIONS.factory(name).__module__.startswith("varprop."):
            continue  # registered at run time (a test, a user): not catalogued
        entries.append(_entry(name, ACTIVATIONS.build(name), functions, imports))
    comment = "#: registered name -> the activation's fields at its default parameters"
    tail = "\n".join([*sorted(imports), "", comment, "CATALOGUE = {", *entries, "}"])
    return module_source(_DOCSTRING, functions, tail)


def main(argv: list[str] | None = None) -> int:
    """Write :data:`TARGET` (or, with ``--check``, exit 1 if it is out of date)."""
    return run_generator(TARGET, catalogue_source, COMMAND, argv)


if __name__ == "__main__":
    sys.exit(main())
