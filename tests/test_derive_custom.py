"""``varprop derive`` on every activation the library accepts (custom expressions included):
safe file names, no traceback; ``--out`` that is not a folder is a usage error (exit 2)."""

from __future__ import annotations

import re

import pytest

from varprop.cli import main
from varprop.documents import render as documents

CUSTOM = ["softplus", "x*erf(x)", "abs(x-1)/2", "relu(x-1)", "x/2"]


@pytest.mark.parametrize("act", CUSTOM)
def test_derive_custom_activation_writes_one_safely_named_file(act, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["derive", act, "lecun_normal", "--out", str(out), "--quick", "--no-figures",
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].parent == out, files
    name = files[0].name
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.md", name), name
    assert name == documents.file_stem(act) + ".md"
    assert "## Fixed points and phases" in files[0].read_text()


def test_file_stems_are_distinct_and_keep_registered_names():
    stems = [documents.file_stem(a) for a in CUSTOM + ["x*2", "x-2"]]
    assert len(set(stems)) == len(stems)
    assert documents.file_stem("tanh") == "tanh" and documents.file_stem("relu") == "relu"
    # an expression equal to a registered activation's is that activation, with its name
    assert documents.file_stem("log(1 + exp(x))") == "softplus"


@pytest.mark.parametrize("where", ["file", "below_file"])
def test_out_that_is_not_a_folder_is_a_usage_error(where, tmp_path, capsys):
    blocker = tmp_path / "taken.md"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "sub"
    rc = main(["derive", "linear", "lecun_normal", "--out", str(out), "--quick", "--no-figures",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("varprop derive: error: --out") and "not a folder" in err
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("act", ["x**2", "x**3", "x**2+x", "(x+1)**2"])
def test_derive_with_figures_when_predictions_leave_the_float_range(act, tmp_path, capsys):
    # the figure's log axis could not tick predictions near inf (matplotlib OverflowError)
    out = tmp_path / "out"
    rc = main(["derive", act, "lecun_normal", "--out", str(out), "--quick", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert any(p.suffix == ".svg" for p in out.rglob("*"))
