"""Every code example in README.md and docs/*.md runs, so the documentation cannot rot.

Rules (also stated in docs/index.md):

- a ```python block containing ``>>>`` is a doctest: its output must match
  (``NORMALIZE_WHITESPACE`` and ``ELLIPSIS`` are on);
- any other ```python block is executed and must not raise;
- blocks of one file share a namespace and run in order;
- a block whose fence is immediately preceded by the line ``<!-- not-run -->`` is skipped (for
  examples that need a cluster, a GPU, or minutes of compute).

``bash`` blocks are not run here (``tests/test_readme.py`` checks the README's commands; the CLI
has its own tests).
"""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

import varprop

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = "<!-- not-run -->"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", flags=re.S | re.M)


def documentation_files() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of the runnable ```python blocks of a Markdown text."""
    out = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        if before and before[-1].strip() == NOT_RUN:
            continue
        out.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return out


def test_the_block_parser_honours_the_not_run_marker():
    text = ("x\n```python\n>>> 1 + 1\n2\n```\n\n<!-- not-run -->\n```python\nraise SystemExit\n```\n"
            "```python\ny = 3\n```\n")
    blocks = python_blocks(text)
    assert [code for _, code in blocks] == [">>> 1 + 1\n2\n", "y = 3\n"]
    assert blocks[0][0] == 3


def test_there_are_examples_to_run():
    counts = {p.name: len(python_blocks(p.read_text())) for p in documentation_files()}
    for required in ("README.md", "quickstart.md", "concepts.md", "api.md"):
        assert counts.get(required, 0) >= 1, counts


@pytest.mark.parametrize("path", documentation_files(), ids=lambda p: p.name)
def test_examples_run(path: Path):
    blocks = python_blocks(path.read_text())
    if not blocks:
        pytest.skip(f"{path.name} has no Python examples")
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    parser = doctest.DocTestParser()
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    for line, code in blocks:
        if ">>>" in code:
            test = parser.get_doctest(code, namespace, f"{path.name}:{line}", str(path), line - 1)
            runner = doctest.DocTestRunner(optionflags=flags)
            out: list[str] = []
            runner.run(test, out=out.append, clear_globs=False)
            namespace.update(test.globs)  # DocTest copies the namespace: carry results forward
            assert runner.failures == 0, f"{path.name} line {line}:\n" + "".join(out)
        else:
            exec(compile(code, f"{path.name}:{line}", "exec"), namespace)


PUBLIC = sorted(n for n in varprop.__all__ if not n.startswith("__"))


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_examples_of_public_names_run(name):
    """docs/api.md shows each public name's docstring; its examples run here, as doctests in the
    namespace of the module that defines the name (they are marked not-run in api.md)."""
    obj = getattr(varprop, name)
    module = importlib.import_module(obj.__module__)
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(obj, name, module=module, globs=dict(vars(module)))
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    out: list[str] = []
    for test in tests:
        runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)
