"""``varprop recommend``, ``critical-gain``, ``edge-of-chaos``, ``overflow-depth`` (in-process)."""

from __future__ import annotations

import json
import math

import pytest

from varprop.cli import main


def test_recommend_table(capsys):
    assert main(["recommend", "relu", "--width", "64", "--depth", "5"]) == 0
    out = capsys.readouterr().out
    assert "recommended gain 1.41421" in out
    assert "scale=2" in out
    rows = [line for line in out.splitlines() if not line.startswith("#")]
    assert rows[0].split()[0] == "row" and rows[-1].startswith("recommended")


def test_recommend_json(capsys):
    assert main(["recommend", "relu", "--width", "64", "--depth", "5", "--goal", "backward",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gain"] == math.sqrt(2.0) and data["goal"] == "backward"
    lecun = next(r for r in data["table"] if r["name"] == "lecun_normal")
    assert lecun["forward_ratio"] == pytest.approx(0.5 ** 4, rel=1e-12)  # (g^2/2)^(L-1)


def test_critical_gain(capsys):
    assert main(["critical-gain", "relu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gain"] == pytest.approx(math.sqrt(2), rel=1e-12)


def test_edge_of_chaos(capsys):
    # tanh, sigma_b^2 = 0: sigma_w^2 = 1 (E tanh'(0)^2 = 1 at q* = 0)
    assert main(["edge-of-chaos", "tanh", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sigma_w2"] == pytest.approx(1.0, abs=1e-9) and data["phase"] == "critical"


def test_overflow_depth(capsys):
    assert main(["overflow-depth", "linear", "standard_normal", "--fan-in", "256"]) == 0
    # hand estimate: F ~ (ln M - ln(2 ln n)/2) / ln sqrt(n) = 31.6 for float32, n = 256
    n, M = 256, 3.4028234663852886e38
    estimate = (math.log(M) - 0.5 * math.log(2 * math.log(n))) / math.log(math.sqrt(n))
    depth = int(capsys.readouterr().out.split("layer")[-1])
    assert abs(depth - estimate) <= 1.5


@pytest.mark.parametrize("argv, word", [
    (["recommend", "tanh", "--width", "8", "--depth", "1"], "--depth"),
    (["recommend", "tanh", "--depth", "3"], "--width"),
    (["recommend", "tnah", "--width", "8", "--depth", "3"], "did you mean"),
    (["recommend", "tanh", "--width", "8", "--depth", "3", "--goal", "x"], "--goal"),
    (["critical-gain", "tanh", "--bias-variance", "-1"], "bias_variance"),
    (["critical-gain", "tanh", "--target-variance", "0.5", "--bias-variance", "1"],
     "target_variance"),
    (["edge-of-chaos", "relu", "--bias-variance", "0.05"], "bias_variance"),
    (["overflow-depth", "linear", "standard_normal"], "--fan-in"),
    (["overflow-depth", "linear", "he_nromal", "--fan-in", "8"], "did you mean"),
    (["overflow-depth", "linear", "he_normal", "--fan-in", "8", "--dtype", "float8"], "dtype"),
])
def test_bad_input_exits_2(capsys, argv, word):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert word in err and "Traceback" not in err
