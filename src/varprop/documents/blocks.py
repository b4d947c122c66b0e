"""A tiny document model (headings, paragraphs, display math, tables, figures, raw blocks)
rendered to Markdown or to a LaTeX article."""

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


_Block = _Heading | _Para | _Math | _Table | _Figure | _Raw

_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}


def _tex_plain(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def _tex_inline(text: str) -> str:
    """Markdown inline text -> LaTeX: keep ``$...$``, ``code`` -> texttt, ``**b**`` -> textbf."""
    out = []
    for part in re.split(r"(\$[^$]+\$|`[^`]+`)", text):
        if part.startswith("$") and part.endswith("$") and len(part) > 1:
            out.append(part)
        elif part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(r"\texttt{" + _tex_plain(part[1:-1]) + "}")
        else:
            plain = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", part)  # links -> their text
            pieces = re.split(r"(\*\*[^*]+\*\*|\*[^*]+\*)", plain)
            out.append("".join(
                r"\textbf{" + _tex_plain(p[2:-2]) + "}" if p.startswith("**") and len(p) > 4
                else r"\emph{" + _tex_plain(p[1:-1]) + "}" if p.startswith("*") and len(p) > 2
                else _tex_plain(p) for p in pieces))
    return "".join(out)


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


def _render_latex(blocks: Sequence[_Block], title: str) -> str:
    out = ["\\documentclass{article}", "\\usepackage{amsmath,amssymb,graphicx,longtable}",
           "\\usepackage[margin=2cm]{geometry}", "\\begin{document}",
           f"\\title{{{_tex_plain(title)}}}", "\\date{}", "\\maketitle", ""]
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
        elif isinstance(b, _Math):
            out += ["\\begin{equation*}", b.latex, "\\end{equation*}", ""]
        elif isinstance(b, _Table):
            out += ["\\begin{longtable}{" + "l" * len(b.header) + "}",
                    " & ".join(_tex_inline(h) for h in b.header) + " \\\\ \\hline"]
            out += [" & ".join(_tex_inline(c) for c in row) + " \\\\" for row in b.rows]
            out += ["\\end{longtable}", ""]
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
