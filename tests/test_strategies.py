"""Tests of varprop.strategies (hypothesis strategies and the assertion helpers)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

import varprop
from varprop import strategies as vst
from varprop.checking.check import Verdict
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme


@settings(max_examples=30, derandomize=True, deadline=None)
@given(vst.activations(), vst.init_schemes(), vst.widths(), vst.depths())
def test_strategies_draw_valid_objects(act: Activation, scheme: InitScheme, n: int, L: int) -> None:
    assert isinstance(act, Activation) and isinstance(scheme, InitScheme)
    assert act.name in varprop.activation_names()
    assert 1 <= n <= 512 and 1 <= L <= 10


@settings(max_examples=30, derandomize=True, deadline=None)
@given(vst.init_schemes(zero_mean=True, symmetric=True, gaussian=False, iid=True))
def test_init_scheme_filters(scheme: InitScheme) -> None:
    assert scheme.is_zero_mean and scheme.is_symmetric and not scheme.is_gaussian and scheme.is_iid


@settings(max_examples=20, derandomize=True, deadline=None)
@given(vst.layer_configs(fan_in=vst.widths(2, 64), quantity=vst.quantities(["gradient"])))
def test_layer_configs_are_verify_arguments(config: dict) -> None:
    assert set(config) == {"activation", "init", "fan_in", "depth", "quantity", "bias_variance",
                           "input_variance"}
    assert 2 <= config["fan_in"] <= 64 and config["quantity"] == "gradient"
    assert config["init"].is_zero_mean
    varprop.predict_variance(**config)  # every drawn config is accepted by the library


def test_filters_cover_the_registry() -> None:
    names = {s.name for s in vst._all_schemes()}
    assert set(varprop.scheme_names()) <= names


def test_assertion_helpers() -> None:
    v = vst.assert_prediction_confirmed(dict(activation="relu", init="he_normal", fan_in=32,
                                             depth=2, quantity="preactivation"))
    assert isinstance(v, Verdict) and v.confirmed
    with pytest.raises(AssertionError, match="not confirmed") as info:
        vst.assert_prediction_confirmed(activation="relu", init="he_normal", fan_in=32, depth=2,
                                        quantity="preactivation", predicted=2.5)
    assert isinstance(info.value.args[1], Verdict) and info.value.args[1].refuted
    with pytest.raises(AssertionError, match="refuted"):
        vst.assert_not_refuted(activation="relu", init="he_normal", fan_in=32, depth=2,
                               quantity="preactivation", predicted=2.5)
    assert vst.assert_variance_preserved("relu", "he_normal", fan_in=32, depth=4).confirmed
    # the reference layer is the same network: with E x^2 = 2 every layer has Var z = 4
    kept = vst.assert_variance_preserved("relu", "he_normal", fan_in=32, depth=4, input_variance=2.0)
    assert kept.confirmed and kept.predicted == 4.0
    with pytest.raises(AssertionError, match="not preserved"):
        vst.assert_variance_preserved("relu", "lecun_normal", fan_in=32, depth=4)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="names"):
        vst.activations([])
    with pytest.raises(ValueError):
        vst.activations(["rleu"])
    with pytest.raises(TypeError, match="zero_mean"):
        vst.init_schemes(zero_mean="yes")
    with pytest.raises(ValueError, match="init_schemes"):
        vst.init_schemes(zero_mean=False, symmetric=True, gaussian=False, iid=False,
                         names=["he_normal"])
    with pytest.raises(ValueError, match="max_value"):
        vst.widths(8, 4)
    with pytest.raises(ValueError, match="min_value"):
        vst.depths(0, 4)
    with pytest.raises(ValueError, match="names"):
        vst.quantities(["bogus"])
    with pytest.raises(TypeError, match="config"):
        vst.assert_prediction_confirmed(["relu"])
