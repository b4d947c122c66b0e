r"""Generate the API reference (``docs/api.md``) from the public names' signatures and docstrings.

``python -c "from varprop.documents.api import write_api_reference; write_api_reference()"``
rewrites ``docs/api.md``; the committed file is what readers see, and a test checks that every
name in :data:`varprop.__all__` is documented there.  Docstrings are numpydoc with reST markup; the
conversion to GitHub Markdown is deliberately small: ``.. math::`` blocks become ``$$`` blocks,
``:math:`x``` becomes ``$x$``, roles such as ``:func:`name``` become code, section underlines
become bold headings.
"""

from __future__ import annotations

import inspect
import re
from functools import reduce
from pathlib import Path

import varprop
from varprop.documents.common import repository_root

__all__ = ["GROUPS", "api_reference_markdown", "write_api_reference"]

#: Public names in reading order, grouped (every name of ``varprop.__all__`` must appear; dotted
#: names are attributes of a public submodule, e.g. ``layers.Dense`` is ``varprop.layers.Dense``).
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("The model of a network", ("Network", "layers.Dense", "layers.Nonlinearity")),
    ("Layers beyond the dense chain",
     ("layers.Residual", "layers.LayerNorm", "layers.RMSNorm", "layers.BatchNorm", "layers.Dropout",
      "layers.Conv", "layers.AvgPool", "layers.GlobalAvgPool", "layers.MaxPool", "layers.Flatten",
      "layers.Recurrent")),
    ("Catalogues: init schemes and activations",
     ("init_scheme", "InitScheme", "scheme_names", "activation", "Activation", "activation_names")),
    ("Derivations and predictions",
     ("derive", "Derivation", "predict_variance", "propagate", "Propagation", "predict_fields",
      "FieldPrediction")),
    ("Monte Carlo and checking", ("simulate", "SimulationResult", "verify", "verify_step", "Verdict")),
    ("Beyond: criticality, overflow, framework initializers, sweeps",
     ("critical_gain", "edge_of_chaos", "overflow_depth", "underflow_depth", "check_initializer",
      "sweep")),
    ("Errors", ("VarpropError", "InvalidArgument", "InvalidArgumentType", "VarpropWarning")),
)

_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc|ref):`~?([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")


def _convert(doc: str) -> str:
    """numpydoc / reST -> GitHub Markdown (small, predictable subset)."""
    lines = doc.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if stripped and nxt and set(nxt) <= set("-=~") and len(nxt) >= 3 and len(nxt) >= len(stripped) - 1:
            out += ["", f"**{stripped}**", ""]
            i += 2
            continue
        if stripped.startswith(".. math::"):
            inline = stripped[len(".. math::"):].strip()
            body = [inline] if inline else []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))
                                      and len(lines[i]) - len(lines[i].lstrip()) > len(line) - len(line.lstrip())):
                if lines[i].strip():
                    body.append(lines[i].strip())
                elif body and i + 1 < len(lines) and not lines[i + 1].startswith(" " * (len(line) - len(line.lstrip()) + 1)):
                    break
                i += 1
            out += ["", "$$", *body, "$$", ""]
            continue
        if stripped.startswith(">>>") or stripped.startswith("..."):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i].strip())
                i += 1
            out += ["", "<!-- not-run -->", "```python", *block, "```", ""]
            continue
        item = _ITEM.match(line)
        if item:
            line = f"- `{item.group(1)}` : {item.group(2)}"
            out.append(_inline(line))
            i += 1
            while i < len(lines) and lines[i].startswith("    ") and lines[i].strip() \
                    and not lines[i].strip().startswith((".. math::", ">>>")):
                out.append("  " + _inline(lines[i].strip()))
                i += 1
            continue
        if not stripped and out and out[-1].startswith("  ") and i + 1 < len(lines) \
                and lines[i + 1].startswith("    "):
            i += 1  # a blank line inside an item's description
            continue
        if stripped and line.startswith("    ") and out and (out[-1].startswith("- `") or out[-1].startswith("  ")):
            out.append("  " + _inline(stripped))
            i += 1
            continue
        line = _MATH.sub(lambda m: f"${m.group(1)}$", line)
        line = _ROLE.sub(lambda m: f"`{m.group(1)}`", line)
        line = line.replace("``", "`")
        out.append(line.rstrip())
        i += 1
    text = "\n".join(out)
    text = re.sub(r":math:`([^`]+)`", lambda m: "$" + " ".join(m.group(1).split()) + "$", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_ITEM = re.compile(r"^(\w[\w, *]*) : (.+)$")


def _inline(line: str) -> str:
    line = _MATH.sub(lambda m: f"${m.group(1)}$", line)
    line = _ROLE.sub(lambda m: f"`{m.group(1)}`", line)
    return line.replace("``", "`")


def _signature(obj: object, name: str) -> str:
    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return name
    text = str(sig).replace("'", '"')
    return f"{name}{text}"


def _anchor(name: str) -> str:
    """GitHub's anchor of the heading ``### `varprop.NAME```."""
    return "varprop" + name.lower().replace(".", "")


def _section(name: str) -> str:
    try:
        obj = reduce(getattr, name.split("."), varprop)
    except (ImportError, AttributeError) as exc:
        return f"### `varprop.{name}`\n\n(not importable when this page was generated: {exc})\n"
    module = getattr(obj, "__module__", "varprop")
    kind = "class" if inspect.isclass(obj) else "function"
    doc = inspect.getdoc(obj) or "(no docstring)"
    head = f"### `varprop.{name}`\n\n*{kind}, defined in `{module}`*\n\n"
    if kind == "class" and issubclass(obj, BaseException):  # type: ignore[arg-type]
        return head + _convert(doc) + "\n"
    sig = _signature(obj, name)
    return head + f"<!-- not-run -->\n```python\n{sig}\n```\n\n" + _convert(doc) + "\n"


def api_reference_markdown() -> str:
    """The whole ``docs/api.md`` page."""
    listed = {n for _, names in GROUPS for n in names}
    extra = sorted(n for n in varprop.__all__ if n not in listed and not n.startswith("__"))
    groups = list(GROUPS) + ([("Other", tuple(extra))] if extra else [])
    out = ["# API reference", "",
           "Every public name of `varprop` (`varprop.__all__`), with its signature and docstring. "
           "Generated from the code by `varprop.documents.api.write_api_reference()`; "
           "`tests/test_docs_examples.py` runs the first example below and every docstring example "
           "(as a doctest in its module's namespace, so they are marked `not-run` here), and "
           "`tests/test_documents.py` checks that every public name is here.", "",
           "Conventions: defaulted options are keyword-only; a plain name string works wherever "
           "an activation or init scheme is taken; bad input raises `ValueError` "
           "(`varprop.InvalidArgument`) or `TypeError` (`varprop.InvalidArgumentType`) naming "
           "the argument and what is allowed.  The model and the meaning of each quantity: "
           "[concepts.md](concepts.md); symbols: [symbols.md](symbols.md).", "",
           "A first taste (the full examples are in [quickstart.md](quickstart.md)):", "",
           "```python",
           ">>> import varprop",
           ">>> from varprop import *   # the examples below use the bare names",
           ">>> varprop.predict_variance(\"linear\", \"xavier_normal\", widths=[100, 300], "
           "quantity=\"preactivation\")",
           "0.5",
           ">>> sorted(varprop.activation_names())",
           "['celu', 'elu', 'erf', 'gelu', 'gelu_tanh', 'hardtanh', 'leaky_relu', 'linear', "
           "'mish', 'relu', 'relu6', 'selu', 'sigmoid', 'silu', 'softplus', 'softsign', 'tanh']",
           "```", "", "## Contents", ""]
    for title, names in groups:
        out.append(f"- {title}: " + ", ".join(f"[`{n}`](#{_anchor(n)})" for n in names))
    out.append("- [Modules used directly](#modules-used-directly)")
    out.append("")
    for title, names in groups:
        out += [f"## {title}", ""]
        for n in names:
            out += [_section(n), ""]
    out += ["## Modules used directly", "",
            "- `varprop.layers`: `Dense`, `Nonlinearity` and the layers beyond the dense chain "
            "(`Residual`, `LayerNorm`, `RMSNorm`, `BatchNorm`, `Dropout`, `Conv`, `AvgPool`, "
            "`GlobalAvgPool`, `MaxPool`, `Flatten`, `Recurrent`): the layers a `varprop.Network` "
            "is made of (above).",
            "- `varprop.documents`: `generate(...)`, `activation_document(activation, schemes, *, "
            "budget=\"default\", format=\"markdown\", figures=True)`, `write(files, out)`, "
            "`check(out, *, reuse_montecarlo=False, spot_check=2)`, `ACTIVATIONS`, `SCHEMES` "
            "(what `varprop derive` calls; see [cli.md](cli.md)); "
            "`varprop.documents.pages.Page`, an extra page a source checkout adds to "
            "`varprop derive --all` (listed under `[tool.varprop] derive-pages` in its "
            "`pyproject.toml`).",
            "- `varprop.strategies`: hypothesis strategies for property-based tests of your own "
            "initializers (see [checker.md](checker.md)).",
            "- `varprop.symbolic`: `derive`, `Derivation`, `Step`, `SYMBOL_TABLE`.", "",
            "The package's layers, each importing only the ones before it: `varprop._util` and "
            "`varprop._math` (validation, quadrature) -> `varprop.components` (activations, init "
            "schemes, their traits) -> `varprop.network` (`Network`, the layers, the quantity "
            "vocabulary) -> `varprop.theory` (mean field, derivations, criticality, overflow) and "
            "`varprop.simulation` (Monte Carlo engines) -> `varprop.checking` (`verify`, "
            "statistics, framework initializers, sweeps) -> `varprop.documents` (derivation "
            "documents, this page) -> `varprop.cli` (the `varprop` command).  The top-level "
            "modules (`varprop`, `varprop.layers`, `varprop.symbolic`, `varprop.strategies`) "
            "re-export the public names; `tests/test_layout.py` checks the direction.", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def write_api_reference(path: str | Path | None = None) -> Path:
    """Write :func:`api_reference_markdown` to ``docs/api.md`` (or ``path``)."""
    root = repository_root()
    target = Path(path) if path is not None else (root if root is not None else Path.cwd()) / "docs" / "api.md"
    target.write_text(api_reference_markdown(), encoding="utf-8")
    return target


if __name__ == "__main__":  # pragma: no cover
    print(write_api_reference())
