"""``varprop recommend`` (and its ``--plot``), ``critical-gain``, ``edge-of-chaos``,
``overflow-depth`` (in-process); the figure's data against the hand formulas of ReLU."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from varprop import activation, plot_recommendation, recommend
from varprop.cli import main
from varprop.errors import InvalidArgument


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


# ----------------------------------------------------------------------------------------------
# --plot and varprop.plot_recommendation
# ----------------------------------------------------------------------------------------------

def _captured_lines(monkeypatch):
    """Record every line the figure draws (label -> y data) before it is saved."""
    import varprop.documents.recommend_figure as module

    drawn = {}
    original = module.save_figure

    def spy(fig, kind):
        for i, ax in enumerate(fig.axes):
            for line in ax.get_lines():
                if not line.get_label().startswith("_"):
                    drawn[(i, line.get_label().split(" (")[0])] = np.asarray(line.get_ydata(),
                                                                             dtype=float)
        return original(fig, kind)

    monkeypatch.setattr(module, "save_figure", spy)
    return drawn


def test_plot_writes_an_svg_whose_data_matches_the_table(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    drawn = _captured_lines(monkeypatch)
    path = tmp_path / "relu.svg"
    L, g_lecun = 6, 1.0
    assert main(["recommend", "relu", "--width", "32", "--depth", str(L), "--plot", str(path),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    text = path.read_text()
    assert text.startswith("<?xml") and "<svg" in text and "recommended" in text
    layers = np.arange(1, L + 1)
    for row in data["table"]:
        forward, backward = drawn[(0, row["name"])], drawn[(1, row["name"])]
        assert len(forward) == len(backward) == L
        # the figure's ends are the table's ratios
        assert forward[0] == 1.0 and backward[-1] == 1.0
        assert forward[-1] == pytest.approx(row["forward_ratio"], rel=1e-12)
        assert backward[0] == pytest.approx(row["backward_ratio"], rel=1e-12)
        # ReLU by hand: q_l/q_1 = (g^2/2)^(l-1), gradient ratio (g^2/2)^(L-l)
        c = row["gain"] ** 2 / 2
        np.testing.assert_allclose(forward, c ** (layers - 1), rtol=1e-12)
        np.testing.assert_allclose(backward, c ** (L - layers), rtol=1e-12)
    lecun = drawn[(0, "lecun_normal")]
    np.testing.assert_allclose(lecun, (g_lecun ** 2 / 2) ** (layers - 1), rtol=1e-12)


def test_plot_band_is_the_recommendations_worst_end_ratio():
    rec = recommend("tanh", width=64, depth=8)
    low, high = rec.band
    worst = max(abs(math.log(rec.forward_ratio)), abs(math.log(rec.backward_ratio)))
    assert (low, high) == (pytest.approx(math.exp(-worst), rel=1e-12),
                           pytest.approx(math.exp(worst), rel=1e-12))
    assert low <= rec.forward_ratio <= high and low <= rec.backward_ratio <= high


def test_plot_default_path_and_pdf(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert main(["recommend", "tanh", "--width", "16", "--depth", "4", "--plot"]) == 0
    assert "# figure: recommend-tanh-w16-d4.svg" in capsys.readouterr().out
    assert (tmp_path / "recommend-tanh-w16-d4.svg").read_text().startswith("<?xml")
    assert main(["recommend", "tanh", "--width", "16", "--depth", "4", "--plot", "t.pdf"]) == 0
    assert (tmp_path / "t.pdf").read_bytes().startswith(b"%PDF")


def test_plot_is_reproducible_and_checks_the_activation():
    pytest.importorskip("matplotlib")
    leaky = activation("leaky_relu", negative_slope=0.2)
    rec = recommend(leaky, width=16, depth=4)
    svg = plot_recommendation(rec, activation=leaky)
    assert svg == plot_recommendation(rec, activation=leaky)  # no dates, fixed hash salt
    with pytest.raises(InvalidArgument, match="activation"):
        plot_recommendation(rec)  # the name alone resolves to negative_slope=0.01
    with pytest.raises(InvalidArgument, match="activation"):
        plot_recommendation(rec, activation="tanh")
    with pytest.raises(InvalidArgument, match="path"):
        plot_recommendation(rec, "figure.png", activation=leaky)


def test_plot_without_matplotlib_exits_2_with_the_extra_named(tmp_path, capsys, monkeypatch):
    import varprop.cli.recommend_cmd as command

    monkeypatch.setattr(command, "has_matplotlib", lambda: False)
    assert main(["recommend", "relu", "--width", "8", "--depth", "3", "--plot",
                 str(tmp_path / "f.svg")]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "plot" in err and "Traceback" not in err
    assert not (tmp_path / "f.svg").exists()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the Python API: ImportError
    with pytest.raises(ImportError, match="extra 'plot'"):
        plot_recommendation(recommend("relu", width=8, depth=3))


@pytest.mark.parametrize("name, word", [("f.png", ".svg or .pdf"),
                                        ("no/such/folder/f.svg", "folder")])
def test_plot_bad_path_exits_2_before_computing(tmp_path, capsys, name, word):
    assert main(["recommend", "relu", "--width", "8", "--depth", "3", "--plot",
                 str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert word in err and "Traceback" not in err


def test_plot_to_a_directory_or_an_unwritable_place_exits_2(tmp_path, capsys):
    (tmp_path / "d.svg").mkdir()
    assert main(["recommend", "tanh", "--width", "8", "--depth", "3", "--plot",
                 str(tmp_path / "d.svg")]) == 2
    err = capsys.readouterr().err
    assert "directory" in err and "d.svg" in err and "Traceback" not in err
    if Path("/proc").is_dir():  # a folder nobody (not even root) can create files in
        assert main(["recommend", "tanh", "--width", "8", "--depth", "3", "--plot",
                     "/proc/out.svg"]) == 2
        err = capsys.readouterr().err
        assert "cannot be written" in err and "/proc/out.svg" in err
