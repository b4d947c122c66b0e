"""``varprop predict``: table, JSON, errors and exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from varprop import predict_variance
from varprop.cli import main


def test_predict_table(capsys):
    assert main(["predict", "relu", "he_normal", "--fan-in", "64", "--depth", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# relu")
    rows = [line.split() for line in out[2:]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert all(float(r[1]) == 2.0 for r in rows)  # He + ReLU keeps Var z = 2


def test_predict_json_with_parameters(capsys):
    code = main(["predict", "leaky_relu:negative_slope=0.2", "he_normal:negative_slope=0.2,mode=fan_out",
                 "--widths", "32,64,64", "--quantity", "preactivation", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layers"] == [1, 2]
    # He with the matching slope and mode=fan_out: factor n_in * 2/((1+a^2) n_out)
    assert data["values"]["preactivation"][0] == pytest.approx(32 * 2 / 1.04 / 64)


def test_predict_unknown_name_exits_2_with_suggestion(capsys):
    assert main(["predict", "rleu", "he_normal", "--fan-in", "4"]) == 2
    assert "did you mean 'relu'" in capsys.readouterr().err


def test_overflow_is_strict_json_with_one_clean_warning(capsys):
    # N(0,1) weights, width 512: Var z_l = 512^l leaves the float range near layer 114
    assert main(["predict", "linear", "standard_normal", "--fan-in", "512", "--depth", "200",
                 "--quantity", "preactivation", "--json"]) == 0
    out, err = capsys.readouterr()
    values = json.loads(out)["values"]["preactivation"]
    assert values[0] == 512.0 and values[-1] == "inf"
    assert err.count("varprop predict: warning:") == 1 and "float range" in err
    assert "predict_cmd.py" not in err  # no source lines


@pytest.mark.parametrize("command", [[sys.executable, "-m", "varprop"],
                                     [str(Path(sys.executable).with_name("varprop"))]])
def test_entry_points_run(command):
    if not Path(command[0]).exists():
        pytest.skip("console script not installed next to this interpreter")
    proc = subprocess.run(command + ["predict", "linear", "lecun_normal", "--fan-in", "8"],
                          capture_output=True, text=True, check=True)
    assert "linear" in proc.stdout


# ----------------------------------------------------------------------------------------------
# usage errors: exit 2 with one line on stderr, never a traceback (through a real subprocess)
# ----------------------------------------------------------------------------------------------

_BIG = "1" + "0" * 400


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "varprop", *args], capture_output=True,
                          text=True, timeout=120)


def _assert_usage_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.endswith("\n")
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and " error: " in lines[0], proc.stderr
    for needle in needles:
        assert needle in proc.stderr


@pytest.mark.parametrize("extra, needle", [
    (["--widths", "16,,8"], "'16,,8'"),
    (["--widths", "16,a"], "'a'"),
    (["--widths", "[16,8]"], "'[16'"),
    (["--widths", "16"], "at least 2"),
    (["--fan-in", _BIG], "401 digits"),
    (["--fan-out", _BIG], "401 digits"),
    (["--depth", _BIG], "401 digits"),
    (["--depth", "10000000000"], "<= 1000000"),
    (["--fan-in", "0"], ">= 1"),
    (["--fan-in", "1.5"], "not an integer"),
    (["--input-variance", "nan"], "input_variance"),
    (["--input-variance", "1e400"], "input_variance"),
    (["--bias-variance", "-1"], "bias_variance"),
    (["--widths", "16,8,8", "--depth", "5"], "len(widths) - 1 = 2"),
    (["--widths", "16,8,8", "--depth", "1"], "len(widths) - 1 = 2"),
    (["--widths", "16,8,8", "--fan-in", "4"], "fan_in"),
])
def test_predict_usage_errors_exit_2_with_one_line(extra, needle):
    args = ["predict", "relu", "he_normal"] + ([] if "--fan-in" in extra or "--widths" in extra
                                               else ["--fan-in", "16"])
    _assert_usage_error(_run(*args, *extra), needle)


def test_predict_widths_with_agreeing_depth_is_accepted():
    proc = _run("predict", "relu", "he_normal", "--widths", "16,8,8", "--depth", "2")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2 + 2


def test_predict_into_a_closed_pipe_is_silent():
    # the reader takes one line and closes the pipe (what `varprop predict ... | head -n 1` does)
    proc = subprocess.Popen([sys.executable, "-m", "varprop", "predict", "linear", "lecun_normal",
                             "--fan-in", "8", "--depth", "200000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert first.startswith(b"# linear")
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141


# ----------------------------------------------------------------------------------------------
# comma lists and --csv
# ----------------------------------------------------------------------------------------------

def _csv_rows(capsys, *argv: str) -> list[dict[str, str]]:
    assert main(["predict", *argv, "--csv"]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_predict_csv_comma_lists_equal_predict_variance(capsys):

    rows = _csv_rows(capsys, "relu,tanh", "he_normal,lecun_normal", "--fan-in", "16,64",
                     "--depth", "1,3", "--quantity", "preactivation,gradient")
    # 2 activations x 2 inits x 2 fan-ins x (1 + 3 layers)
    assert len(rows) == 2 * 2 * 2 * 4
    assert list(rows[0]) == ["activation", "init", "fan_in", "depth", "layer", "preactivation",
                             "gradient"]
    for row in rows:
        for q in ("preactivation", "gradient"):
            expected = predict_variance(row["activation"], row["init"], fan_in=int(row["fan_in"]),
                                        depth=int(row["depth"]), quantity=q, per_layer=True)
            assert float(row[q]) == expected[int(row["layer"]) - 1]


def test_predict_csv_hand_values(capsys):
    # ReLU with LeCun normal (Var w = 1/n): Var z_1 = E x^2 = 1, Var z_2 = E relu(z_1)^2 = 1/2;
    # with He normal (Var w = 2/n) Var z_l = 2 at every layer (He et al. 2015)
    rows = _csv_rows(capsys, "relu", "lecun_normal,he_normal", "--fan-in", "32", "--depth", "2",
                     "--quantity", "preactivation")
    values = {(r["init"], r["layer"]): float(r["preactivation"]) for r in rows}
    assert values == {("lecun_normal", "1"): 1.0, ("lecun_normal", "2"): 0.5,
                      ("he_normal", "1"): 2.0, ("he_normal", "2"): 2.0}


def test_predict_parameterised_names_in_comma_lists(capsys):
    rows = _csv_rows(capsys, "leaky_relu:negative_slope=0.2,relu",
                     "he_normal:negative_slope=0.2,mode=fan_in", "--fan-in", "8", "--quantity",
                     "preactivation")
    assert [r["activation"] for r in rows] == ["leaky_relu:negative_slope=0.2", "relu"]
    # Var w = 2 / ((1 + a^2) n): Var z_1 = 2 / 1.04 at input variance 1
    assert float(rows[0]["preactivation"]) == pytest.approx(2 / 1.04, rel=1e-12)


def test_predict_several_combinations_text_and_json(capsys):
    assert main(["predict", "relu,tanh", "he_normal", "--fan-in", "16", "--depth", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["activation", "init", "fan_in", "depth", "layer"]
    assert [line.split()[0] for line in lines[1:]] == ["relu", "relu", "tanh", "tanh"]
    assert main(["predict", "relu,tanh", "he_normal", "--fan-in", "16", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["config"]["activation"] for r in results] == ["relu()", "tanh()"]


def test_predict_bad_quantity_in_list_exits_2(capsys):
    assert main(["predict", "relu", "he_normal", "--fan-in", "8", "--quantity",
                 "preactivation,gradeint"]) == 2
    assert "did you mean 'gradient'" in capsys.readouterr().err


def test_predict_csv_and_json_are_exclusive():
    _assert_usage_error(_run("predict", "relu", "he_normal", "--fan-in", "8", "--csv", "--json"),
                        "--json")
