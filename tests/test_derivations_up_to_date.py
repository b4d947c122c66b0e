"""The committed derivations/ are what the code writes now (``varprop derive --all --check``).

Cheap by design (see docs/cli.md): every file is re-rendered from the committed Monte Carlo record
``derivations/montecarlo.json`` (derivations, predictions, seed-claim logic, tables and figures are
all recomputed), and two recorded simulations are re-run and must reproduce the record exactly.
A full re-run of every simulation is ``varprop derive --all --check`` (minutes).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from varprop import documents
from varprop.cli import main
from varprop.documents import folder
from varprop.documents.store import MonteCarloStore, budget

DERIVATIONS = Path(__file__).resolve().parents[1] / "derivations"


try:
    import matplotlib  # noqa: F401  (figures are compared only with the plot extra)

    FIGURES = True
except ImportError:  # pragma: no cover
    FIGURES = False


@pytest.fixture(scope="module")
def rendered():
    record = (DERIVATIONS / "montecarlo.json").read_text(encoding="utf-8")
    store = MonteCarloStore.from_json(record, frozen=True)
    files = documents.generate(budget=store.budget_name, store=store, figures=FIGURES)
    return store, files


def test_every_monte_carlo_record_the_documents_need_is_committed(rendered):
    store, _ = rendered
    assert store.missing == []


def test_committed_derivations_are_up_to_date(rendered):
    _, files = rendered
    report = documents.compare(DERIVATIONS, files, figures=FIGURES)
    assert report.ok, (
        "derivations/ is stale; regenerate with `varprop derive --all --out derivations`:\n"
        + "\n".join(report.stale + report.missing + report.extra)
        + "\n" + "\n".join(report.diffs.values()))


def test_recorded_simulations_reproduce_exactly(rendered):
    store, _ = rendered
    report = documents.CheckReport()
    folder._spot_check(store, budget(store.budget_name), 2, report)
    assert report.stale == [], report.notes
    assert sum("matches the record" in n for n in report.notes) == 2


def test_compare_detects_modified_missing_and_extra_files(rendered, tmp_path):
    _, files = rendered
    copy = tmp_path / "derivations"
    shutil.copytree(DERIVATIONS, copy)
    (copy / "relu.md").write_text((copy / "relu.md").read_text() + "\nedited by hand\n")
    (copy / "seed-claims.md").unlink()
    (copy / "notes.md").write_text("not generated\n")
    report = documents.compare(copy, files, figures=FIGURES)
    assert not report.ok
    assert report.stale == ["relu.md"]
    assert "edited by hand" in report.diffs["relu.md"]
    assert report.missing == ["seed-claims.md"]
    assert report.extra == ["notes.md"]


def test_cli_check_exit_status_and_report(rendered, tmp_path, capsys):
    copy = tmp_path / "derivations"
    shutil.copytree(DERIVATIONS, copy)
    (copy / "tanh.md").write_text("# stale\n")
    status = main(["derive", "--all", "--check", "--reuse-montecarlo", "--spot-check", "0",
                   "--out", str(copy), "--no-progress"])
    out = capsys.readouterr().out
    assert status == 1
    assert f"stale: {copy / 'tanh.md'}" in out
    assert "stale: " + str(copy / "relu.md") not in out


def test_cli_check_without_a_record_is_stale(tmp_path, capsys):
    status = main(["derive", "--all", "--check", "--reuse-montecarlo", "--out", str(tmp_path),
                   "--no-progress"])
    assert status == 1
    assert "missing: " in capsys.readouterr().out


@pytest.mark.parametrize("name", documents.ACTIVATIONS)
def test_committed_activation_documents_read_in_one_sitting(name):
    """Each activation document derives once for every scheme, then tabulates: under 800 lines,
    one derivation (not one per scheme), links only inside the generated folder."""
    text = (DERIVATIONS / f"{name}.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 800
    assert text.count("## Derivation, once for every scheme") == 1
    assert text.count("### Zero-mean weights") == 1
    assert "](../" not in text
