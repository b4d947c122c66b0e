"""``varprop.recommend``: the gain that keeps the forward and backward ratios steady over a depth.

The independent references: ReLU and linear nets have the hand-derived ratios
:math:`(g^2/2)^{L-1}` and :math:`g^{2(L-1)}` (so the unique optimum is :math:`g=\\sqrt2`, resp. 1);
for tanh the competitors' ratios are computed here directly with ``predict_variance`` on
``normal:std=g/sqrt(n)`` schemes, not through recommend's table.
"""

from __future__ import annotations

import math

import pytest

from varprop import (
    Network,
    critical_gain,
    edge_of_chaos,
    init_scheme,
    predict_variance,
    recommend,
)
from varprop.errors import InvalidArgument, InvalidArgumentType

GOALS = ("forward", "backward", "both")


def _ratios(act, gain, width, depth, b2=0.0):
    scheme = init_scheme("normal", std=gain / math.sqrt(width))
    kw = dict(fan_in=width, depth=depth, bias_variance=b2, per_layer=True)
    q = predict_variance(act, scheme, quantity="preactivation", **kw)
    g = predict_variance(act, scheme, quantity="gradient", **kw)
    return q[-1] / q[0], g[0] / g[-1]


def _worst(ratios):
    return max(abs(math.log(r)) for r in ratios)


@pytest.mark.parametrize("goal", GOALS)
def test_relu_is_he_exactly(goal):
    rec = recommend("relu", width=64, depth=10, goal=goal)
    assert rec.gain == math.sqrt(2.0)
    assert rec.keras_scale == pytest.approx(2.0, abs=1e-15)
    assert rec.std == pytest.approx(math.sqrt(2.0 / 64), abs=1e-15)
    assert rec.phase == "critical"
    assert (rec.forward_ratio, rec.backward_ratio) == (pytest.approx(1.0, abs=1e-14),) * 2


@pytest.mark.parametrize("goal", GOALS)
def test_linear_is_gain_one(goal):
    rec = recommend("linear", width=32, depth=7, goal=goal)
    assert rec.gain == 1.0
    assert rec.forward_ratio == pytest.approx(1.0, abs=1e-14)


def test_relu_table_ratios_follow_the_hand_formula():
    # E z_L^2 / E z_1^2 = (g^2/2)^(L-1) for ReLU at sigma_b = 0 (every width)
    L = 6
    rec = recommend("relu", width=16, depth=L)
    for row in rec.table:
        expect = (row.gain ** 2 / 2.0) ** (L - 1)
        assert row.forward_ratio == pytest.approx(expect, rel=1e-12)
        assert row.backward_ratio == pytest.approx(expect, rel=1e-12)
    names = [r.name for r in rec.table]
    assert names[0] == "variance-preserving" and names[1] == "edge of chaos"
    assert names[-1] == "recommended"
    assert any("torch" in n for n in names)
    torch_row = next(r for r in rec.table if "torch" in r.name)
    assert torch_row.gain == pytest.approx(1 / math.sqrt(3), rel=1e-12)  # kaiming_uniform(a=sqrt5)
    assert torch_row.phase == "ordered"


def test_tanh_both_beats_critical_gain_and_edge_of_chaos():
    width, depth = 512, 20
    rec = recommend("tanh", width=width, depth=depth, goal="both")
    ours = _worst((rec.forward_ratio, rec.backward_ratio))
    assert ours == pytest.approx(_worst(_ratios("tanh", rec.gain, width, depth)), rel=1e-9)
    g_crit = critical_gain("tanh")
    g_eoc = edge_of_chaos("tanh").gain
    assert ours <= _worst(_ratios("tanh", g_crit, width, depth))
    assert ours <= _worst(_ratios("tanh", g_eoc, width, depth))
    # a local optimum of the max: nearby gains are no better
    for g in (rec.gain * 0.99, rec.gain * 1.01):
        assert ours <= _worst(_ratios("tanh", g, width, depth)) + 1e-9
    assert rec.source == "search" and not rec.at_bound


def test_table_ratios_equal_predict_variance():
    rec = recommend("tanh", width=128, depth=8, bias_variance=0.05, goal="backward")
    for row in rec.table:
        fw, bw = _ratios("tanh", row.gain, 128, 8, 0.05)
        assert row.forward_ratio == pytest.approx(fw, rel=1e-9)
        assert row.backward_ratio == pytest.approx(bw, rel=1e-9)
        assert row.std == pytest.approx(row.gain / math.sqrt(128), rel=1e-12)
    assert abs(math.log(rec.backward_ratio)) < 1e-6


def test_tanh_forward_goal_reports_the_search_bound():
    # q_L / q_1 -> 1 only as g -> infinity for tanh (saturation): flagged, not hidden
    rec = recommend("tanh", width=64, depth=5, goal="forward")
    assert rec.at_bound


@pytest.mark.parametrize("kwargs, error, word", [
    (dict(width=0, depth=3), InvalidArgument, "width"),
    (dict(width=True, depth=3), InvalidArgumentType, "width"),
    (dict(width=8, depth=1), InvalidArgument, "depth"),
    (dict(width=8, depth=3, goal="forwards"), InvalidArgument, "did you mean"),
    (dict(width=8, depth=3, bias_variance=-0.1), InvalidArgument, "bias_variance"),
    (dict(width=8, depth=3, bias_variance=float("nan")), InvalidArgument, "bias_variance"),
])
def test_bad_input(kwargs, error, word):
    with pytest.raises(error, match=word):
        recommend("tanh", **kwargs)


def test_unknown_activation():
    with pytest.raises(InvalidArgument, match="did you mean"):
        recommend("tnah", width=8, depth=3)


def test_rows_that_do_not_exist_are_left_out():
    # ReLU with a bias has no edge of chaos (Hayou et al. 2019); tanh with sigma_b^2 >= 1 has no
    # gain making q* = 1 a fixed point (q >= sigma_b^2)
    relu = [r.name for r in recommend("relu", width=16, depth=4, bias_variance=0.1).table]
    tanh = [r.name for r in recommend("tanh", width=16, depth=4, bias_variance=1.5).table]
    assert "edge of chaos" not in relu and relu[0] == "variance-preserving"
    assert "variance-preserving" not in tanh and tanh[0] == "edge of chaos"


def test_a_network_argument_is_its_activation_width_depth():
    net = Network.mlp("tanh", "lecun_normal", fan_in=32, fan_out=32, depth=6, bias_variance=0.05)
    by_net = recommend(net, goal="backward")
    by_name = recommend("tanh", width=32, depth=6, bias_variance=0.05, goal="backward")
    assert by_net == by_name
    with pytest.raises(InvalidArgument, match="width"):
        recommend(net, width=32)
    uneven = Network.mlp("tanh", "lecun_normal", fan_in=16, fan_out=32, depth=3)
    with pytest.raises(InvalidArgument, match="one width"):
        recommend(uneven)


def test_width_and_depth_are_required_with_an_activation():
    with pytest.raises(InvalidArgumentType, match="width"):
        recommend("tanh", depth=3)
