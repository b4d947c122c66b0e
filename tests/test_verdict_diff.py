"""benchmarks/verdict_diff.py: the verdicts it reads from a derivations folder, and the rows it
reports as changed between two folders (hand-written Markdown, not the generators' output)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "verdict_diff.py"
_SPEC = importlib.util.spec_from_file_location("verdict_diff", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
vd = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(vd)

PAGE = """# Title

## Verification

| Scheme | n | estimate | verdict |
|---|---|---|---|
| `he_normal` | 64 | 2.01 [1.9, 2.1] (R = 4096) | **confirmed** |
| `uniform` | 64 | 7.0e+12 | **inconclusive**: heavy-tailed (which alone would say refuted) |

Summary: the **refuted** claim below, and plain refuted in prose is not a verdict.

## Index

| Activation | Scheme | Verdict forward | Verdict backward |
|---|---|---|---|
| relu | `uniform` | confirmed | inconclusive |
"""


def test_reads_bold_cells_plain_cells_and_bold_prose_but_not_reasons():
    rows = vd.verdicts(PAGE, "a.md")
    assert rows == {
        ("a.md", "Verification", 1, "`he_normal`"): ("confirmed",),
        ("a.md", "Verification", 2, "`uniform`"): ("inconclusive",),
        ("a.md", "Verification", 3, ""): ("refuted",),
        ("a.md", "Index", 1, "relu | `uniform`"): ("confirmed", "inconclusive"),
    }


def test_header_rows_and_separators_carry_no_verdict():
    assert vd.verdicts("| Verdict | x |\n|---|---|\n", "b.md") == {}


def test_diff_names_changed_and_missing_rows(tmp_path: Path):
    old, new = tmp_path / "old", tmp_path / "new"
    for d in (old, new):
        (d / "sub").mkdir(parents=True)
    (old / "a.md").write_text(PAGE, encoding="utf-8")
    (new / "a.md").write_text(PAGE.replace("| confirmed | inconclusive |",
                                           "| confirmed | confirmed |"), encoding="utf-8")
    (old / "sub" / "b.md").write_text("## H\n\n| x | **refuted** |\n", encoding="utf-8")
    (new / "sub" / "b.md").write_text("## H\n\nno table\n", encoding="utf-8")
    lines = vd.diff(old, new)
    assert len(lines) == 2
    assert "('confirmed', 'inconclusive') -> ('confirmed', 'confirmed')" in lines[0]
    assert lines[1].startswith("sub/b.md") and lines[1].endswith("('refuted',) -> absent")
    assert vd.diff(old, old) == []


@pytest.mark.parametrize("cell, found", [
    ("**confirmed**", True), ("confirmed", True), ("**refuted**: outside", True),
    ("not confirmed", False), ("confirmedly", False), ("`uniform`", False),
    ("inconclusive (heavy-tailed)", True), ("**Refuted**", True), ("Confirmed", True),
    ("refuted at 64 replicates", True), ("not checked: values left the float range", True),
])
def test_a_cell_is_a_verdict_only_when_it_starts_with_the_word(cell: str, found: bool):
    assert bool(vd._CELL.match(cell)) is found


def test_a_qualified_or_capitalised_verdict_change_is_reported(tmp_path: Path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    (old / "a.md").write_text("## H\n\n| x | inconclusive (heavy-tailed) |\n\nThe claim is "
                              "**Confirmed** at 1.02.\n", encoding="utf-8")
    (new / "a.md").write_text("## H\n\n| x | refuted (heavy-tailed) |\n\nThe claim is "
                              "**Confirmed** at 1.03.\n", encoding="utf-8")
    lines = vd.diff(old, new)  # the paragraph's number moved, its verdict did not
    assert len(lines) == 1 and "('inconclusive',) -> ('refuted',)" in lines[0]


def test_verdicts_swapping_between_rows_of_one_scheme_are_two_changes(tmp_path: Path):
    table = "## V\n\n| S | n | Q | v |\n|---|---|---|---|\n| `u` | 64 | pre | {} |\n| `u` | 64 | grad | {} |\n"
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    (old / "a.md").write_text(table.format("confirmed", "not checked: overflow"), encoding="utf-8")
    (new / "a.md").write_text(table.format("not checked: overflow", "confirmed"), encoding="utf-8")
    lines = vd.diff(old, new)
    assert len(lines) == 2 and "`u` | pre" in lines[0] and "`u` | grad" in lines[1]


def test_bold_prose_with_words_after_the_verdict(tmp_path: Path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    (old / "a.md").write_text("The claim is **refuted at the first look**.\n", encoding="utf-8")
    (new / "a.md").write_text("The claim is **confirmed at the first look**.\n", encoding="utf-8")
    assert len(vd.diff(old, new)) == 1
