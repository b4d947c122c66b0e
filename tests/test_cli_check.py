"""``varprop check``: table, JSON, filters, workers, exit codes."""

from __future__ import annotations

import csv
import io
import json

import pytest

from varprop.checking import check
from varprop.cli import check_cmd, main

BASE = ["check", "--activation", "relu", "--init", "he_normal", "--fan-in", "32", "--depth", "2",
        "--no-progress"]


def test_table(capsys):
    assert main(BASE) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["activation", "init", "n", "L", "quantity"]
    rows = [line.split() for line in out[2:5]]
    assert [r[4] for r in rows] == ["preactivation", "activation", "gradient"]
    assert rows[0][-1] == "confirmed" and rows[2][-1] == "confirmed"
    assert "refuted" in out[-1] and "Holm" in out[-1]


def test_json_filters_and_workers_do_not_change_results(capsys):
    args = BASE + ["--quantity", "preactivation,gradient", "--init", "he_uniform:mode=fan_in",
                   "--json", "--seed", "4"]
    assert main(args) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["counts"]["refuted"] == 0 and len(one["results"]) == 4
    assert {r["config"]["init"] for r in one["results"]} == {"he_normal", "he_uniform:mode=fan_in"}
    assert main(args + ["--workers", "2"]) == 0
    two = json.loads(capsys.readouterr().out)
    for a, b in zip(one["results"], two["results"]):
        a["verdict"].pop("elapsed"), b["verdict"].pop("elapsed")
    assert one == two


def test_progress_goes_to_stderr(capsys):
    assert main(BASE[:-1] + ["--quantity", "preactivation"]) == 0
    captured = capsys.readouterr()
    assert "1/1" in captured.err and "confirmed" in captured.out


def test_exit_status_1_when_refuted(capsys, monkeypatch):
    real = check.verify("relu", "he_normal", fan_in=16, depth=2, quantity="preactivation",
                        predicted=3.0, seed=0)
    assert real.refuted
    monkeypatch.setattr(check_cmd, "check_matrix", lambda configs, **kw: [real] * len(configs))
    assert main(BASE + ["--quantity", "preactivation"]) == 1
    assert "refuted" in capsys.readouterr().out
    assert main(BASE + ["--quantity", "preactivation", "--json"]) == 1


@pytest.mark.parametrize("extra", [["--quantity", "bogus"], ["--fan-in", "abc"],
                                   ["--workers", "0"], ["--init", "he_nromal"],
                                   ["--depth", "0"], ["--fan-in", "-3"], ["--rtol", "0"],
                                   ["--budget", "3"]])
def test_bad_usage_exit_2(capsys, extra):
    assert main(BASE + extra) == 2
    err = capsys.readouterr().err
    assert "error" in err
    if extra[-1] == "he_nromal":
        assert "did you mean" in err


def test_scheduler_without_distributed(capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name == "distributed":
            raise ImportError("no distributed")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    assert main(BASE + ["--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "distributed" in capsys.readouterr().err


def test_names_with_parameters_and_expressions_survive_the_comma_lists(capsys):
    # commas between a name's parameters and inside an expression are not list separators
    args = ["check", "--activation", "max(x,0),relu", "--init", "normal:std=0.125,mean=0.0",
            "--fan-in", "16", "--depth", "1", "--quantity", "preactivation", "--json",
            "--no-progress", "--budget", "8192"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert [(r["config"]["activation"], r["config"]["init"]) for r in rows] == [
        ("max(x,0)", "normal:std=0.125,mean=0.0"), ("relu", "normal:std=0.125,mean=0.0")]
    assert all(r["verdict"]["status"] == "confirmed" for r in rows)


def test_every_row_an_error_is_not_a_pass(capsys, monkeypatch):
    monkeypatch.setattr(check_cmd, "check_matrix", lambda configs, **kw: ["InvalidArgument: x"] * len(configs))
    assert main(BASE + ["--quantity", "preactivation"]) == 2


@pytest.mark.parametrize("extra, needle", [
    (["--fan-in", "16,,8"], "'16,,8'"), (["--fan-in", "[16,8]"], "'[16'"),
    (["--fan-in", "1" + "0" * 400], "401 digits"), (["--depth", "1" + "0" * 400], "401 digits"),
    (["--seed", "1" + "0" * 400], "401 digits"), (["--budget", "1" + "0" * 400], "401 digits"),
    (["--workers", "1" + "0" * 400], "401 digits"), (["--workers", "100000"], "<= 256"),
    (["--seed", "-1"], ">= 0"), (["--rtol", "nan"], "rtol"), (["--alpha", "1e400"], "alpha"),
])
def test_check_usage_errors_exit_2_with_one_line_in_a_subprocess(extra, needle):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "varprop", "check", "--activation", "relu",
                           "--init", "he_normal", "--quantity", "preactivation", "--no-progress",
                           *extra], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.endswith("\n")
    assert len(proc.stderr.splitlines()) == 1 and needle in proc.stderr


def test_csv_rows_match_json_with_the_same_seed(capsys):
    args = BASE + ["--quantity", "preactivation", "--seed", "3"]
    assert main(args + ["--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert main(args + ["--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(rows) == len(results) == 1
    row, verdict = rows[0], results[0]["verdict"]
    assert (row["activation"], row["init"], row["fan_in"], row["depth"]) == (
        "relu", "he_normal", "32", "2")
    # He + ReLU keeps Var z = 2 (He et al. 2015): the predicted column, exactly
    assert float(row["predicted"]) == 2.0
    assert float(row["estimate"]) == verdict["estimate"]
    assert row["status"] == verdict["status"] == "confirmed" and row["error"] == ""


def test_every_row_an_error_is_a_csv_row_with_the_error(capsys, monkeypatch):
    monkeypatch.setattr(check_cmd, "check_matrix",
                        lambda configs, **kw: ["InvalidArgument: x"] * len(configs))
    assert main(BASE + ["--csv"]) == 2
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(r["error"] == "InvalidArgument: x" and r["status"] == "" for r in rows)
