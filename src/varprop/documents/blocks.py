"""A tiny document model (headings, paragraphs, lists, display math, tables, figures, raw blocks)
rendered to Markdown or to a LaTeX article.

The LaTeX article typesets cleanly with pdflatex (no overfull boxes): tables are ``longtable``
with ragged-right ``p`` columns sized from their content, so long cells wrap instead of running
past the margin; math in a table cell and display math shrink to the available width when they
are wider (``adjustbox``); code breaks after underscores, dots, commas and brackets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class _Para:
    text: str


@dataclass(frozen=True)
class _List:
    items: tuple[str, ...]


@dataclass(frozen=True)
class _Math:
    latex: str


@dataclass(frozen=True)
class _Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class _Figure:
    path: str
    caption: str


@dataclass(frozen=True)
class _Raw:
    markdown: str
    latex: str


_Block = _Heading | _Para | _List | _Math | _Table | _Figure | _Raw

_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}


def _tex_plain(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def _tex_code(text: str) -> str:
    """Code in ``\\texttt`` that may break after ``_ . , ( [ =`` (long names in narrow columns)."""
    return r"\texttt{" + re.sub(r"([_.,(\[=])", r"\1\\allowbreak{}", _tex_plain(text)) + "}"


_BOLD = re.compile(r"(\*\*(?:\$[^$]*\$|[^*$])+\*\*)")


def _tex_inline(text: str, *, cell: bool = False) -> str:
    """Markdown inline text -> LaTeX: keep ``$...$``, ``code`` -> texttt, ``**b**`` -> textbf
    (with math inside), ``*e*`` -> emph.  In a table ``cell`` math shrinks to the column when it
    is wider."""
    out = []
    for part in re.split(r"(\$\$.+?\$\$)", text):
        if part.startswith("$$") and part.endswith("$$") and len(part) > 4:
            # display math within a line: on a line of its own, shrunk to the line when wider
            math = r"\fitmath{$\displaystyle " + part[2:-2] + "$}"
            out.append(math if cell else r"\par\noindent" + math + r"\par ")
            continue
        out += [r"\textbf{" + _tex_spans(p[2:-2], cell) + "}" if _BOLD.fullmatch(p)
                else _tex_spans(p, cell) for p in _BOLD.split(part)]
    return "".join(out)


def _tex_spans(text: str, cell: bool) -> str:
    out = []
    for part in re.split(r"(\$[^$]+\$|`[^`]+`)", text):
        if part.startswith("$") and part.endswith("$") and len(part) > 1:
            out.append(r"\fitmath{" + part + "}" if cell else part)
        elif part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(_tex_code(part[1:-1]))
        else:
            plain = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", part)  # links -> their text
            pieces = re.split(r"(\*[^*]+\*)", plain)
            out.append("".join(
                r"\emph{" + _tex_plain(p[1:-1]) + "}" if p.startswith("*") and len(p) > 2
                else _tex_plain(p) for p in pieces))
    return "".join(out)


def markdown_blocks(lines: Sequence[str]) -> list[_Block]:
    """Blocks from simple Markdown lines (``#`` headings, optionally after an ``<a id>`` anchor,
    ``$$`` display math, ``|`` tables, ``- `` lists, ``![caption](path)`` figures, paragraphs),
    so that a section written as
    Markdown renders to LaTeX too.  Other Markdown stays inline text."""
    out: list[_Block] = []
    anchor = ""
    i, n = 0, len(lines)
    while i < n:
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
            continue
        match = re.fullmatch(r'<a id="([^"]+)"></a>', line.strip())
        if match:
            anchor = match.group(1)
            i += 1
            continue
        heading = re.match(r"(#{1,6}) (.*)", line)
        if heading:
            out.append(_Heading(len(heading.group(1)), heading.group(2).strip(), anchor))
            anchor = ""
            i += 1
            continue
        image = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip())
        if image:
            out.append(_Figure(image.group(2), image.group(1)))
            i += 1
            continue
        if line.strip() == "$$":
            j = i + 1
            while j < n and lines[j].strip() != "$$":
                j += 1
            out.append(_Math("\n".join(lines[i + 1:j]).strip()))
            i = j + 1
            continue
        if line.startswith("|"):
            rows = []
            while i < n and lines[i].startswith("|"):
                cells = re.split(r"(?<!\\)\|", lines[i].strip().strip("|"))
                if not all(re.fullmatch(r"\s*:?-+:?\s*", c) for c in cells):
                    rows.append(tuple(c.strip().replace("\\|", "|") for c in cells))
                i += 1
            out.append(_Table(rows[0], tuple(rows[1:])))
            continue
        if line.startswith("- "):
            items = []
            while i < n and lines[i].startswith("- "):
                items.append(lines[i][2:].strip())
                i += 1
            out.append(_List(tuple(items)))
            continue
        para = []
        while i < n and lines[i].strip() and not re.match(r"(#{1,6} |\$\$|\||- |<a id=)", lines[i]):
            para.append(lines[i].strip())
            i += 1
        out.append(_Para(" ".join(para)))
    return out


def _md_cell(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def _render_markdown(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            if b.anchor:
                out += [f'<a id="{b.anchor}"></a>', ""]
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, _Para):
            out += [b.text, ""]
        elif isinstance(b, _List):
            out += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, _Math):
            out += ["$$", b.latex, "$$", ""]
        elif isinstance(b, _Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, _Figure):
            out += [f"![{b.caption}]({b.path})", "", f"*{b.caption}*", ""]
        else:
            out += [b.markdown.rstrip("\n"), ""]
    return "\n".join(out).rstrip("\n") + "\n"


_PREAMBLE = (
    "\\documentclass{article}",
    "\\usepackage[utf8]{inputenc}",
    "\\usepackage[T1]{fontenc}",
    "\\usepackage{lmodern,amsmath,amssymb,graphicx,longtable,array,adjustbox}",
    "\\usepackage[margin=2cm]{geometry}",
    "\\newcommand{\\fitmath}[1]{\\adjustbox{max width=\\linewidth}{#1}}",
    "\\setlength{\\emergencystretch}{3em}",
    "\\sloppy",
)

#: Characters of ``\\small`` text across the text width (17 cm), for sizing table columns.
_LINE_CHARS = 100
_CELL_MATH_MIN = 12  # a math cell shrinks to fit, so it asks for few characters


def _visible(text: str) -> tuple[int, int]:
    """Rough typeset length of a cell and of its longest unbreakable piece, in characters."""
    total, longest = 0, 0
    for part in re.split(r"(\$[^$]+\$)", text):
        if part.startswith("$") and part.endswith("$") and len(part) > 1:
            n = len(re.sub(r"\\(left|right|frac|operatorname|mathrm|sqrt|qquad|quad)|[{}^_ ]", "",
                           part[1:-1])) or 1
            total += n
            longest = max(longest, min(n, _CELL_MATH_MIN))
            continue
        plain = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", part).replace("`", "").replace("*", "")
        total += len(plain)
        for word in re.split(r"[\s_.,(\[=]+", plain):
            longest = max(longest, len(word) + 1)
    return total, longest


def _column_spec(table: _Table) -> str:
    """Ragged-right ``p`` columns filling the text width, sized from the cells' content: the
    longest unbreakable piece of each column fits, the rest is shared by natural length."""
    columns = list(zip(table.header, *table.rows))
    natural, minimum = [], []
    for col in columns:
        sizes = [_visible(c) for c in col]
        natural.append(max(max(total for total, _ in sizes[1:] or sizes), sizes[0][1], 3) + 2)
        minimum.append(max(3, max(longest for _, longest in sizes)) + 2)  # + the column's padding
    natural = [max(n, m) for n, m in zip(natural, minimum)]
    if sum(natural) <= _LINE_CHARS:
        widths = [float(n) for n in natural]
    elif sum(minimum) >= _LINE_CHARS:
        widths = [float(m) for m in minimum]
    else:
        spare = _LINE_CHARS - sum(minimum)
        extra = [n - m for n, m in zip(natural, minimum)]
        widths = [m + spare * e / sum(extra) for m, e in zip(minimum, extra)]
    fractions = [0.998 * w / sum(widths) for w in widths]  # rounding must not overfill the line
    return "".join(">{\\raggedright\\arraybackslash}p{\\dimexpr %.3f\\linewidth-2\\tabcolsep\\relax}" % f
                   for f in fractions)


def _render_latex(blocks: Sequence[_Block], title: str) -> str:
    out = [*_PREAMBLE, "\\begin{document}", f"\\title{{{_tex_plain(title)}}}", "\\date{}",
           "\\maketitle", ""]
    sections = {1: None, 2: "section", 3: "subsection", 4: "subsubsection", 5: "paragraph"}
    for b in blocks:
        if isinstance(b, _Heading):
            cmd = sections.get(b.level, "paragraph")
            if cmd:
                out += [f"\\{cmd}*{{{_tex_inline(b.text)}}}", ""]
        elif isinstance(b, _Para):
            t = b.text
            if t.startswith("*") and t.endswith("*") and not t.startswith("**") and len(t) > 2:
                out += [r"\emph{" + _tex_inline(t[1:-1]) + "}", ""]
            else:
                out += [_tex_inline(t), ""]
        elif isinstance(b, _List):
            out += ["\\begin{itemize}"] + [f"\\item {_tex_inline(i)}" for i in b.items]
            out += ["\\end{itemize}", ""]
        elif isinstance(b, _Math):
            out += ["\\begin{center}", "\\adjustbox{max width=\\linewidth}{$\\displaystyle " + b.latex
                    + "$}", "\\end{center}", ""]
        elif isinstance(b, _Table):
            out += ["\\begingroup\\small\\setlength{\\tabcolsep}{3pt}", "\\begin{longtable}{" + _column_spec(b) + "}",
                    " & ".join(_tex_inline(h, cell=True) for h in b.header) + " \\\\ \\hline",
                    "\\endhead"]
            out += [" & ".join(_tex_inline(c, cell=True) for c in row) + " \\\\" for row in b.rows]
            out += ["\\end{longtable}", "\\endgroup", ""]
        elif isinstance(b, _Figure):
            out += ["\\begin{figure}[h]", "\\centering",
                    f"\\includegraphics[width=\\textwidth]{{{b.path}}}",
                    f"\\caption{{{_tex_inline(b.caption)}}}", "\\end{figure}", ""]
        else:
            out += [b.latex.rstrip("\n"), ""]
    out.append("\\end{document}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# numbers for the documents
# ----------------------------------------------------------------------------------------------
