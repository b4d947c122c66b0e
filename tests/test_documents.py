"""varprop.documents and ``varprop derive``: content, determinism, formats, bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

import varprop
from varprop import documents
from varprop.cli import main
from varprop.documents.common import _label
from varprop.documents.pages import (
    CONFIG_KEY,
    Page,
    import_from_repository,
    repository_pages,
)
from varprop.documents.store import MonteCarloStore, fmt, sig

ROOT = Path(__file__).resolve().parents[1]
DERIVATIONS = ROOT / "derivations"

REQUIRED_SECTIONS = ("## Model and assumptions", "## Derivation, once for every scheme",
                     "## The schemes", "## Which scheme keeps the variance steady",
                     "## Fixed points and phases",
                     "## Depth: closed form or recursion and fixed point", "## Backward pass",
                     "## Verification (Monte Carlo)", "## Figures")


# -- formatting and the Monte Carlo record ------------------------------------------------------

@pytest.mark.parametrize(("x", "text"), [(22.627416997969522, "22.63"), (4.06561178e17, "4.066e+17"),
                                         (0.045213, "0.04521"), (0.0, "0"), (-7.0, "-7"),
                                         (math.inf, "inf"), (math.nan, "NaN"), (1e-31, "1e-31"),
                                         (123456.0, "1.235e+5")])
def test_fmt_is_fixed_four_significant_digits(x, text):
    assert fmt(x) == text


def test_sig_rounds_to_four_significant_digits():
    assert sig(22.627416997969522) == 22.63
    assert sig(-0.0) == 0.0 and math.copysign(1, sig(-0.0)) == 1
    assert sig(1.23456e-40) == 1.235e-40
    assert math.isinf(sig(math.inf))


def test_store_records_rounded_values_and_freezes():
    store = MonteCarloStore(budget_name="quick")
    calls = []
    value = store.get("a/b", lambda: calls.append(1) or {"x": 1.234567, "n": 3, "s": "ok"})
    assert value == {"n": 3, "s": "ok", "x": 1.235}
    assert store.get("a/b", lambda: calls.append(1)) == value and calls == [1]
    text = store.to_json()
    assert json.loads(text)["budget"] == "quick"
    frozen = MonteCarloStore.from_json(text, frozen=True)
    assert frozen.get("a/b", lambda: 1 / 0) == value
    assert frozen.get("missing", lambda: 1 / 0) is None and frozen.missing == ["missing"]
    assert frozen.to_json() == text  # only used records are written, sorted


def test_store_rejects_unstorable_values():
    with pytest.raises(TypeError):
        MonteCarloStore().get("k", lambda: {"x": object()})


# -- one document, generated twice --------------------------------------------------------------

@pytest.fixture(scope="module")
def linear_doc():
    first = documents.activation_document("linear", ["lecun_normal", "standard_normal"],
                                          budget="quick")
    second = documents.activation_document("linear", ["lecun_normal", "standard_normal"],
                                           budget="quick")
    return first, second


def test_generation_is_deterministic(linear_doc):
    first, second = linear_doc
    assert [f.path for f in first] == ["linear.md", "figures/linear-finite-width.svg",
                                      "figures/linear.svg"]
    for a, b in zip(first, second):
        assert a.content == b.content, a.path


def test_document_has_every_section_and_verdicts(linear_doc):
    text = linear_doc[0][0].content
    for section in REQUIRED_SECTIONS:
        assert section in text, section
    assert "## Approximation error" not in text  # linear is exact
    rows = [line for line in text.splitlines() if line.startswith("| `lecun_normal` | 64 | 5 |")]
    assert len(rows) == 2 and all(re.search(r"\*\*(confirmed|refuted|inconclusive)", r) for r in rows)
    assert "![" in text and "(figures/linear.svg)" in text
    # derived once for both (zero-mean) schemes, then tabulated: one row per scheme
    assert text.count("### Zero-mean weights") == 1 and text.count("**Step 1:") == 1
    assert "### Non-zero weight mean" not in text
    assert len([line for line in text.splitlines() if line.startswith("| `standard_normal` | i.i.d.")]) == 1


def test_svg_is_reproducible_and_undated(linear_doc):
    svg = linear_doc[0][1].content
    assert svg.startswith("<?xml") and "<dc:date>" not in svg
    assert "varprop" in svg  # creator metadata


def test_latex_format():
    files = documents.activation_document("relu", ["he_normal"], budget="quick", format="latex",
                                          figures=False)
    assert [f.path for f in files] == ["relu.tex"]
    tex = files[0].content
    assert tex.startswith("\\documentclass{article}") and tex.rstrip().endswith("\\end{document}")
    assert "\\section*{Verification (Monte Carlo)}" in tex
    assert "\\begin{longtable}" in tex and "\\raggedright" in tex  # wrapping p columns


def test_latex_figures_are_pdf_that_latex_can_include(tmp_path):
    # pdflatex's graphicx cannot read SVG: LaTeX documents get a PDF figure, byte-identical
    # when regenerated (no creation date)
    make = lambda: documents.activation_document("linear", ["lecun_normal"], budget="quick",
                                                 format="latex")
    files = {f.path: f.content for f in make()}
    pdf = files["figures/linear.pdf"]
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF") and b"CreationDate" not in pdf
    assert "\\includegraphics[width=\\textwidth]{figures/linear.pdf}" in files["linear.tex"]
    assert {f.path: f.content for f in make()} == files
    documents.write(make(), tmp_path)
    assert (tmp_path / "figures" / "linear.pdf").read_bytes() == pdf


def test_critical_condition_against_hand_derived_values():
    assert documents.critical_nsw2(varprop.activation("relu")) == pytest.approx((2.0, 0.0), abs=1e-6)
    assert documents.critical_nsw2(varprop.activation("linear")) == pytest.approx((1.0, 0.0), abs=1e-6)
    assert documents.critical_nsw2(varprop.activation("leaky_relu", negative_slope=0.2))[0] == \
        pytest.approx(2 / 1.04, rel=1e-6)
    assert documents.critical_nsw2(varprop.activation("erf"))[0] == pytest.approx(math.pi / 4, rel=1e-6)
    assert documents.critical_nsw2(varprop.activation("tanh"))[0] == pytest.approx(1.0, rel=1e-6)


def test_sigmoid_critical_point_satisfies_both_equations():
    from scipy import integrate

    g2, q = documents.critical_nsw2(varprop.activation("sigmoid"))

    def expect(f, var):
        pdf = lambda z: math.exp(-z * z / (2 * var)) / math.sqrt(2 * math.pi * var)
        return integrate.quad(lambda z: f(z) * pdf(z), -60 * math.sqrt(var), 60 * math.sqrt(var),
                              limit=400)[0]

    s = lambda z: 1 / (1 + math.exp(-z))
    assert g2 * expect(lambda z: s(z) ** 2, q) == pytest.approx(q, rel=1e-6)
    assert g2 * expect(lambda z: (s(z) * (1 - s(z))) ** 2, q) == pytest.approx(1.0, rel=1e-6)
    assert g2 > 16  # above the small-signal value 1/sigma'(0)^2


@pytest.mark.parametrize(("kwargs", "name"), [({"format": "html"}, "format"),
                                              ({"budget": "huge"}, "budget"),
                                              ({"schemes": []}, "schemes")])
def test_bad_arguments_name_the_argument(kwargs, name):
    args = {"schemes": ["he_normal"], **kwargs}
    with pytest.raises(ValueError, match=name):
        documents.activation_document("relu", args.pop("schemes"), figures=False, **args)


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="activation"):
        documents.activation_document("rleu", ["he_normal"], figures=False)


# -- the committed folder -------------------------------------------------------------------

@pytest.mark.parametrize("name", documents.ACTIVATIONS)
def test_every_activation_document_is_committed_with_its_sections(name):
    text = (DERIVATIONS / f"{name}.md").read_text()
    for section in REQUIRED_SECTIONS:
        assert section in text, (name, section)
    for scheme in documents.schemes_for(name):
        assert f"`{_label(scheme)}`" in text
    assert ("## Approximation error against quadrature" in text) == (name in ("tanh", "sigmoid"))
    assert (DERIVATIONS / "figures" / f"{name}.svg").is_file()


def test_index_lists_every_activation_and_scheme():
    text = (DERIVATIONS / "README.md").read_text()
    for name in documents.ACTIVATIONS:
        for scheme in documents.schemes_for(name):
            assert f"| [{name}]({name}.md) | `{_label(scheme)}` |" in text, (name, scheme)
    assert "[seed-claims.md](seed-claims.md)" in text


def test_api_reference_documents_every_public_name():
    text = (ROOT / "docs" / "api.md").read_text()
    for name in varprop.__all__:
        if name.startswith("__"):
            continue
        assert f"### `varprop.{name}`" in text, name


def test_api_reference_is_up_to_date():
    """docs/api.md is generated from the docstrings: regenerate it (see its header) after editing
    a public docstring or signature."""
    from varprop.documents.api import api_reference_markdown

    assert (ROOT / "docs" / "api.md").read_text() == api_reference_markdown()


def test_docs_index_links_every_page():
    text = (ROOT / "docs" / "index.md").read_text()
    for page in ("quickstart", "concepts", "api", "cli", "checker", "performance", "beyond", "symbols"):
        assert f"]({page}.md)" in text, page


# -- the command line -----------------------------------------------------------------------

def test_cli_writes_one_activation_deterministically(tmp_path, capsys):
    args = ["derive", "linear", "lecun_normal", "--quick", "--no-figures", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert "wrote" in capsys.readouterr().out
    a, b = (tmp_path / "a" / "linear.md").read_text(), (tmp_path / "b" / "linear.md").read_text()
    assert a == b and "`lecun_normal`" in a and "`he_normal`" not in a


@pytest.mark.parametrize("argv", [["derive"], ["derive", "--all", "relu"],
                                  ["derive", "relu", "--check"],
                                  ["derive", "--all", "--check", "--format", "latex"],
                                  ["derive", "relu", "--reuse-montecarlo"]])
def test_cli_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "varprop derive: error:" in capsys.readouterr().err


def test_cli_unknown_names_exit_2(tmp_path, capsys):
    assert main(["derive", "rleu", "--out", str(tmp_path), "--no-figures"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_compare_skips_figures_made_by_another_matplotlib(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "x.svg").write_text("<svg>varprop with matplotlib 0.1.0 A</svg>")
    (tmp_path / "a.md").write_text("same\n")
    files = [documents.GeneratedFile("figures/x.svg", "<svg>varprop with matplotlib 9.9.9 B</svg>"),
             documents.GeneratedFile("a.md", "same\n")]
    report = documents.compare(tmp_path, files)
    assert report.ok and "not compared" in report.notes[0]
    (tmp_path / "figures" / "x.svg").write_text("<svg>varprop with matplotlib 9.9.9 C</svg>")
    assert documents.compare(tmp_path, files).stale == ["figures/x.svg"]


def test_api_reference_documents_the_layers():
    """``varprop.layers.Dense`` and ``Nonlinearity`` have their own sections (signature and
    docstring, as for ``varprop.__all__``), linked from the contents."""
    text = (ROOT / "docs" / "api.md").read_text()
    for name in ("Dense", "Nonlinearity"):
        assert f"### `varprop.layers.{name}`" in text
        assert f"(#varproplayers{name.lower()})" in text
        first = (getattr(varprop.layers, name).__doc__ or "").strip().splitlines()[0]
        assert first and first.split(":math:")[0].strip() in text
    assert "## Modules used directly" in text and "`varprop.layers`" in text


# -- extra pages of a source checkout -------------------------------------------------------------

def _checkout(tmp_path, module_text, specs):
    """A fake checkout: a pyproject.toml listing ``specs`` and a module ``pagesdemo_mod``."""
    root = tmp_path / "checkout"
    root.mkdir()
    listed = ", ".join(f'"{s}"' for s in specs)
    (root / "pyproject.toml").write_text(f"[tool.varprop]\n{CONFIG_KEY} = [{listed}]\n")
    (root / "pagesdemo_mod.py").write_text(module_text)
    return root


PAGE_MODULE = """
from varprop.documents.pages import Page

def build(store, budget, tick):
    tick()
    value = store.get("demo/answer", lambda: 42.0)
    return f"# Demo\\n\\nanswer {value}, budget {budget.name}\\n"

PAGE = Page(path="demo.md", index_note="[demo.md](demo.md) is a demonstration", steps=1,
            build=build)
NOT_A_PAGE = 3
"""


def test_this_repository_lists_its_seed_page_outside_the_package():
    pages = repository_pages(ROOT)
    assert [p.path for p in pages] == ["seed-claims.md"]
    assert pages[0] is import_from_repository("seeds.claims", ROOT).PAGE
    assert not list((ROOT / "src" / "varprop").rglob("seed_claims*"))


def test_a_checkouts_page_is_built_recorded_and_linked_from_the_index(tmp_path, monkeypatch):
    root = _checkout(tmp_path, PAGE_MODULE, ["pagesdemo_mod:PAGE"])
    pages = repository_pages(root)
    assert len(pages) == 1 and isinstance(pages[0], Page)
    # one cheap activation document: only the index, the page and the record are of interest
    monkeypatch.setattr("varprop.documents.folder.ACTIVATIONS", ("linear",))
    store = MonteCarloStore(budget_name="quick")
    files = {f.path: f.content for f in documents.generate(budget="quick", store=store,
                                                             figures=False, pages=pages)}
    assert files["demo.md"] == "# Demo\n\nanswer 42.0, budget quick\n"
    assert "each covering every init scheme; [demo.md](demo.md) is a demonstration.  Monte" \
        in files["README.md"]
    assert json.loads(files["montecarlo.json"])["records"]["demo/answer"] == 42.0
    # without pages: no extra file, and the index sentence ends after the documents
    bare = {f.path: f.content for f in documents.generate(budget="quick", figures=False,
                                                            pages=(), store=store)}
    assert "demo.md" not in bare
    assert "each covering every init scheme.  Monte Carlo budget" in bare["README.md"]


@pytest.mark.parametrize(("specs", "error", "needle"), [
    (["pagesdemo_mod"], ValueError, "'module:attribute'"),
    (["pagesdemo_mod:NOT_A_PAGE"], TypeError, "int, not allowed"),
    (["pagesdemo_mod:MISSING"], TypeError, "NoneType, not allowed"),
])
def test_bad_page_listing_names_the_key_and_the_entry(tmp_path, specs, error, needle):
    root = _checkout(tmp_path, PAGE_MODULE, specs)
    with pytest.raises(error, match=CONFIG_KEY) as info:
        repository_pages(root)
    assert needle in str(info.value) and specs[0] in str(info.value)


def test_no_checkout_no_pages(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'other'\n")
    assert repository_pages(tmp_path) == ()


def test_an_installed_copy_has_no_checkout_and_no_extra_pages(tmp_path):
    """Outside a source checkout (a wheel in site-packages) ``varprop derive --all`` writes the
    activation documents, the index and the record only: nothing to import from a repository."""
    import shutil
    import subprocess
    import sys

    site = tmp_path / "site"
    shutil.copytree(ROOT / "src" / "varprop", site / "varprop",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = ("from varprop.documents.common import repository_root, default_output_dir\n"
            "from varprop.documents.pages import repository_pages\n"
            "print(repository_root(), repository_pages(), default_output_dir())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(site), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "()", str(tmp_path / "derivations")]


# -- the derivation written once, its typesetting, standalone output --------------------------

def _numbers(expr, values):
    import sympy as sp
    return complex(sp.N(sp.sympify(expr).subs(values)))


@pytest.mark.parametrize("name", ["linear", "relu", "tanh"])
def test_one_derivation_gives_every_schemes_factors(name):
    """Substituting a scheme's moments into the derivation for any scheme gives that scheme's
    own ``derive`` (compared as numbers at a few fans and variances)."""
    import sympy as sp

    from varprop.theory.symbolic.generic import derive_generic, scheme_moments
    from varprop.theory.symbolic.symbols import N_IN, N_OUT, Q_PREV, SIGMA_B2

    q = sp.Symbol("q", positive=True)
    for scheme in ("xavier_normal", "he_uniform", "orthogonal", "torch_linear_default"):
        own = varprop.derive(name, scheme)
        generic = derive_generic(name, True)
        moments = scheme_moments(scheme)
        for n_in, n_out, qv in ((64, 64, 0.7), (32, 128, 2.5)):
            values = {N_IN: n_in, N_OUT: n_out, q: qv, Q_PREV: qv, SIGMA_B2: 0.1}
            values.update({s: qv for s in own.hidden_factor.free_symbols if s.name == "q"})
            for attr in ("hidden_factor", "backward_factor", "forward_factor"):
                mine = getattr(generic, attr).subs(moments)
                values.update({s: qv for s in sp.sympify(mine).free_symbols if s.name == "q"})
                assert _numbers(mine, values) == pytest.approx(_numbers(getattr(own, attr), values),
                                                                rel=1e-12), (scheme, attr)


def test_generic_relu_derivation_against_a_hand_derivation():
    r"""ReLU by hand: :math:`E\phi^2 = q/2`, so a hidden layer multiplies by
    :math:`n\sigma_w^2/2` and, without bias, :math:`q_L = n_{in}\sigma_{w,1}^2 q_0 (n\sigma_w^2/2)^{L-1}`."""
    import sympy as sp

    from varprop.theory.symbolic.generic import derive_generic
    from varprop.theory.symbolic.symbols import (
        DEPTH,
        N_IN,
        N_OUT,
        Q0,
        SIGMA_B2,
        SIGMA_W2,
        SIGMA_W2_1,
    )

    d = derive_generic("relu", True)
    assert sp.simplify(d.hidden_factor - N_OUT * SIGMA_W2 / 2) == 0
    hand = N_IN * SIGMA_W2_1 * Q0 * (N_OUT * SIGMA_W2 / 2) ** (DEPTH - 1)
    values = {N_IN: 30, N_OUT: 50, Q0: 1.3, SIGMA_W2: 0.05, SIGMA_W2_1: 0.07, DEPTH: 6, SIGMA_B2: 0}
    assert _numbers(d.closed_form_depth, values) == pytest.approx(_numbers(hand, values), rel=1e-12)


_ASCII_MATH = re.compile(r"sqrt\(|\bphi\b|sigma_|\bchi\b|\^|_\{|~|!=|>=|<=|\bE\[|\b[A-Za-z]_[A-Za-z0-9]")


def _outside_math(text: str) -> str:
    """``text`` without its ``$...$``/``$$`` math, code spans and link targets."""
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$]+\$", " ", text)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"<a id=\"[^\"]*\"></a>|\]\([^)]*\)", " ", text)
    return text


@pytest.mark.parametrize("name", documents.ACTIVATIONS)
def test_the_derivation_has_no_ascii_math(name):
    from varprop.documents.blocks import _render_markdown
    from varprop.documents.derivation_section import derivation_blocks, model_blocks

    act = varprop.activation(name)
    text = _render_markdown(model_blocks(act, True)
                            + derivation_blocks(act, zero_mean=True, nonzero_mean=True))
    for line in _outside_math(text).splitlines():
        assert not _ASCII_MATH.search(line), line
    assert "**Step" in text and "*Why:*" in text


def test_approximations_are_typeset():
    from varprop.documents.step_text import approximation_latex

    assert approximation_latex("tanh(x) ~ erf(sqrt(pi) x / 2)") == (
        r"$\tanh{\left(x \right)} \approx \operatorname{erf}{\left(\frac{\sqrt{\pi} x}{2} \right)}$")
    assert approximation_latex("sigmoid(x) ~ Phi(sqrt(pi/8) x)").startswith(r"$\sigma{\left(x \right)} \approx \Phi")
    assert approximation_latex("Taylor polynomial of order 5 at 0") == "Taylor polynomial of order 5 at 0"


def test_one_activation_stands_alone_and_draws_the_schemes_asked_for(tmp_path):
    files = {f.path: f.content for f in documents.activation_document(
        "relu", ["he_normal", "lecun_uniform"], budget="quick")}
    text = files["relu.md"]
    links = re.findall(r"\]\(([^)]+)\)", text)
    local = {"figures/relu.svg", "figures/relu-finite-width.svg"}
    assert links and all(link.startswith("#") or link in local for link in links), links
    assert local <= set(files)
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    assert {link[1:] for link in links if link.startswith("#")} <= anchors
    svg = files["figures/relu.svg"]
    assert "he_normal (predicted)" in svg and "lecun_uniform (predicted)" in svg
    assert "xavier_uniform" not in svg and "lecun_normal" not in svg
    assert "for `he_normal`, `lecun_uniform`" in text


def test_markdown_sections_render_to_latex_too():
    from varprop.documents.blocks import _List, _Math, _Table, markdown_blocks

    blocks = markdown_blocks(['<a id="fw"></a>', "", "## Finite width", "", "Text $x$", "still",
                              "", "| a | b |", "|---|---|", r"| 1 | $x\|y$ |", "", "$$", "q = 1",
                              "$$", "- one", "- two"])
    assert blocks[0].anchor == "fw" and blocks[1].text == "Text $x$ still"
    assert isinstance(blocks[2], _Table) and blocks[2].rows == (("1", "$x|y$"),)
    assert isinstance(blocks[3], _Math) and isinstance(blocks[4], _List)


def test_parallel_build_is_the_serial_one():
    """The folder's parts built in two processes are byte for byte the serial ones, and the
    merged record is the same (rendered from the committed record: no simulation)."""
    from varprop.documents.parallel import Task, run_tasks
    from varprop.documents.store import budget

    record = (DERIVATIONS / "montecarlo.json").read_text()
    tasks = [Task("activation", "linear"), Task("layers")]
    out = {}
    for workers in (1, 2):
        store = MonteCarloStore.from_json(record, frozen=True)
        res = run_tasks(tasks, store, budget(store.budget_name), format="markdown",
                        figures=False, pages=(), workers=workers)
        out[workers] = ({f.path: f.content for r in res.values() for f in r.files},
                        [row for r in res.values() for row in r.index_rows], store.to_json())
    assert out[1] == out[2]
    assert "linear.md" in out[1][0] and len(out[1][1]) == len(documents.schemes_for("linear"))


def test_cli_workers_needs_all(capsys):
    assert main(["derive", "relu", "--workers", "2"]) == 2
    assert "--workers needs --all" in capsys.readouterr().err


def test_schemes_with_the_same_weight_law_share_their_simulation():
    """At fan-in = fan-out Xavier's variance 2/(n+n) is LeCun's 1/n: the same normal (uniform)
    law, so one simulation serves both rows; different laws are never merged."""
    from varprop.documents.records import shared_simulations

    n = documents.VERIFY_WIDTH
    assert float(varprop.init_scheme("xavier_normal").weight_variance(n, n)) == 1 / n
    assert shared_simulations(documents.schemes_for("relu")) == {
        "xavier_normal": "lecun_normal", "xavier_uniform": "lecun_uniform"}
    alone = [varprop.init_scheme("xavier_normal"), varprop.init_scheme("he_normal")]
    assert shared_simulations(alone) == {}
    store = MonteCarloStore(budget_name="quick")
    files = documents.activation_document("linear", ["lecun_normal", "xavier_normal"],
                                          budget="quick", store=store, figures=False)
    assert sorted(k for k in store.records if k.startswith("verify/")) == [
        "verify/linear/lecun_normal/gradient/n64/L5", "verify/linear/lecun_normal/preactivation/n64/L5"]
    rows = [line.split(" | ")[4:] for line in files[0].content.splitlines()
            if line.startswith(("| `lecun_normal` | 64", "| `xavier_normal` | 64"))]
    assert len(rows) == 4 and rows[0] == rows[2] and rows[1] == rows[3]


def test_a_page_split_into_parts_computes_each_record_once():
    """Part k of n computes every n-th new record the page asks for; the parts together hold
    every record, and the page rendered from them is the page built in one piece."""
    from varprop.documents.parallel import page_part
    from varprop.documents.store import budget

    calls = []

    def build(store, b, tick):
        values = [store.get(f"demo/{i}", lambda i=i: calls.append(i) or float(i * i))
                  for i in range(5)]
        return "# Demo\n\n" + ", ".join("none" if v is None else str(v) for v in values) + "\n"

    page = Page(path="demo.md", index_note="demo", steps=0, build=build)
    b = budget("quick")
    parts = [page_part(page, {}, b, k, 2) for k in range(2)]
    assert sorted(parts[0]) == ["demo/0", "demo/2", "demo/4"] and sorted(parts[1]) == ["demo/1", "demo/3"]
    assert sorted(calls) == [0, 1, 2, 3, 4]  # each record computed once
    merged = MonteCarloStore({**parts[0], **parts[1]}, budget_name="quick", frozen=True)
    assert build(merged, b, None) == build(MonteCarloStore(budget_name="quick"), b, None)
    assert merged.missing == []


def test_display_math_within_a_line_and_images_render_to_latex():
    from varprop.documents.blocks import _Figure, _tex_inline, markdown_blocks

    assert _tex_inline("- a: $$x^2$$ and $y$") == (
        r"- a: \par\noindent\fitmath{$\displaystyle x^2$}\par  and $y$")
    assert _tex_inline("$$x$$", cell=True) == r"\fitmath{$\displaystyle x$}"
    figure = markdown_blocks(["![spread](figures/tanh-finite-width.svg)"])[0]
    assert figure == _Figure("figures/tanh-finite-width.svg", "spread")
