"""``varprop predict``: table, JSON, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
