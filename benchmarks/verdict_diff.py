"""Compare the verdicts of two ``varprop derive --all`` output folders.

Run:  python benchmarks/verdict_diff.py OLD_FOLDER NEW_FOLDER

A change of budget or of simulation engine moves the numbers of the documents within their
Monte Carlo error; what must not move is a verdict.  This script reads every Markdown file of
both folders and lists, for each table row and each paragraph that states one, the verdicts
it gives: a table cell that is a verdict word (``confirmed``, ``refuted``, ``inconclusive``,
``explained``, ``consistent``), bold (``**refuted**``) or plain (the index), and outside tables
every bold verdict word.  A row is named by its file, the heading above it, its position
under that heading and (table rows) its cells without digits or verdicts; prose inside a cell (a verdict's reason, "which alone
would say refuted") is not a verdict.  It prints every row whose verdicts differ, every row
only one folder has, and a summary; the exit status is 1 when anything differs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

WORDS = ("confirmed", "refuted", "inconclusive", "explained", "consistent", "not checked", "error")
# a cell that is a verdict: the word (any case, bold or not) as the cell's first word, whatever
# follows ("inconclusive (heavy-tailed)", "refuted at 64 replicates", "not checked: ...")
_CELL = re.compile(r"^(?:\*\*)?(" + "|".join(WORDS) + r")\b", re.IGNORECASE)
# in a paragraph: a bold text that starts with the word ("**refuted at the first look**")
_BOLD = re.compile(r"\*\*(" + "|".join(WORDS) + r")\b[^*]*\*\*", re.IGNORECASE)
_DIGIT = re.compile(r"\d")

Row = tuple[str, str, int, str]


def verdicts(text: str, path: str) -> dict[Row, tuple[str, ...]]:
    """Every verdict-bearing row of one Markdown file: (file, heading, ordinal, first cell) ->
    the verdict words in it, in order."""
    out: dict[Row, tuple[str, ...]] = {}
    heading, ordinal = "", 0
    for line in text.splitlines():
        if line.startswith("#"):
            heading, ordinal = line.lstrip("#").strip(), 0
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            found = tuple(m.group(1).lower() for c in cells if (m := _CELL.match(c)))
            # named by its cells without digits or verdicts (scheme, quantity...): two rows of
            # one scheme swapping verdicts are two changes, not none
            first = " | ".join(c for c in cells if not _DIGIT.search(c) and not _CELL.match(c))
        else:  # a paragraph: named by its position only (its numbers move with the simulation)
            found = tuple(w.lower() for w in _BOLD.findall(line))
            first = ""
        if found:
            ordinal += 1
            out[(path, heading, ordinal, first)] = found
    return out


def folder_verdicts(root: Path) -> dict[Row, tuple[str, ...]]:
    """The verdicts of every ``*.md`` file under ``root``."""
    out: dict[Row, tuple[str, ...]] = {}
    for path in sorted(root.rglob("*.md")):
        out.update(verdicts(path.read_text(encoding="utf-8"), str(path.relative_to(root))))
    return out


def diff(old: Path, new: Path) -> list[str]:
    """Lines describing every difference between the verdicts of two folders."""
    a, b = folder_verdicts(old), folder_verdicts(new)
    lines = []
    for row in sorted(set(a) | set(b), key=str):
        if a.get(row) != b.get(row):
            where = f"{row[0]} / {row[1][:50]} / #{row[2]} {row[3][:60]!r}"
            lines.append(f"{where}: {a.get(row, 'absent')} -> {b.get(row, 'absent')}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args()
    lines = diff(args.old, args.new)
    counts = folder_verdicts(args.old)
    total = sum(len(v) for v in counts.values())
    for line in lines:
        print(line)
    print(f"{len(counts)} rows, {total} verdicts in {args.old}; {len(lines)} rows differ")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
