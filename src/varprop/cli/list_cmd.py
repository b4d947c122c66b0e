"""``varprop list``: the activations, init schemes and aliases the other commands accept.

Everything printed is read from the two registries (:mod:`varprop.components.registries`): the
names in registration order, each factory's keyword parameters with their defaults (from
:func:`inspect.signature`, so ``elu`` shows ``alpha=1.0``) and the aliases.  Init schemes come in
varprop's own names and the framework-qualified ones (``keras:he_normal``, ``torch:kaiming_normal``,
...; :func:`varprop.components.schemes.scheme_names` with ``frameworks=True``).

Examples::

    varprop list
    varprop list activations --json
"""

from __future__ import annotations

import argparse
import inspect
import json
from typing import Any

from varprop._util.registry import Registry
from varprop.components.activation import activation_names
from varprop.components.registries import ACTIVATIONS, SCHEMES
from varprop.components.schemes import scheme_names

#: what ``varprop list WHAT`` can list
WHATS = ("all", "activations", "inits")


def _parameters(registry: Registry[Any], name: str) -> dict[str, Any]:
    """``{parameter: default}`` of the factory of ``name`` (``None`` where there is no default)."""
    signature = inspect.signature(registry.factory(name))
    return {p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in signature.parameters.values()}


def _entry(registry: Registry[Any], name: str) -> dict[str, Any]:
    framework, _, _ = name.rpartition(":")
    return {"name": name, "framework": framework or "varprop",
            "parameters": _parameters(registry, name), "aliases": registry.aliases_of(name)}


def catalogue(what: str = "all") -> dict[str, list[dict[str, Any]]]:
    """The entries ``varprop list`` prints: ``{"activations": [...], "inits": [...]}`` (each entry
    ``name``, ``framework``, ``parameters`` {name: default}, ``aliases``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if what in ("all", "activations"):
        out["activations"] = [_entry(ACTIVATIONS, n) for n in activation_names()]
    if what in ("all", "inits"):
        out["inits"] = [_entry(SCHEMES, n) for n in scheme_names(frameworks=True)]
    return out


def _format(entry: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v!r}" if v is not None else k for k, v in entry["parameters"].items())
    aliases = f"  (aliases: {', '.join(entry['aliases'])})" if entry["aliases"] else ""
    return f"  {entry['name']:<24} {params or '-'}{aliases}"


def run(args: argparse.Namespace) -> int:
    data = catalogue(args.what)
    if args.json:
        print(json.dumps(data, indent=2, allow_nan=False))
        return 0
    titles = {"activations": "Activations (name: parameters=defaults)",
              "inits": "Init schemes (varprop's own, then framework-qualified)"}
    for i, (section, entries) in enumerate(data.items()):
        print(("\n" if i else "") + f"{titles[section]}:")
        for entry in entries:
            print(_format(entry))
    print("\nParameters are given as name:key=value,... e.g. elu:alpha=0.5 or "
          "he_normal:mode=fan_out")
    return 0
