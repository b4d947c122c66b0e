"""End-to-end tests of verify() / verify_step() / verify_many() against the Monte Carlo engine."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
from scipy import stats

import varprop
from varprop.checking import check
from varprop.checking.check import Verdict, is_exact, verify, verify_many, verify_step
from varprop.theory.finite.expansion import finite_width_moments


def test_public_names() -> None:
    assert varprop.verify is verify and varprop.Verdict is Verdict


def test_confirmed_exact_prediction_and_verdict_fields() -> None:
    v = verify("relu", "he_normal", fan_in=64, depth=3, quantity="preactivation", seed=1)
    assert v.status == "confirmed" and v.confirmed and not v.refuted
    assert v.predicted == 2.0  # He: q_l = 2 * E[x^2] = 2 (hand-derived)
    assert v.exact and v.tol < 1e-6
    lo, hi = v.relative_interval
    assert -0.05 <= lo <= v.relative_error <= hi <= 0.05
    assert v.interval[0] == pytest.approx(2 * (1 + lo)) and v.interval[1] == pytest.approx(2 * (1 + hi))
    assert v.p_equivalence <= 0.01 and v.p_refute > 0.01
    assert v.statistic == "E[z_3^2]" and v.layer == 3 and v.target == "ensemble"
    assert "exact" in v.assumptions and v.looks >= 1 and v.replicates >= 64
    text = str(v)
    assert "CONFIRMED" in text and "E[z_3^2]" in text
    d = v.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["status"] == "confirmed" and d["config"]["widths"] == [64, 64, 64, 64]


def test_user_claim_off_by_ten_percent_is_refuted() -> None:
    v = verify("relu", "he_normal", fan_in=64, depth=3, quantity="preactivation",
               predicted=2.2, seed=3)
    assert v.refuted and v.p_refute <= 0.01 and v.relative_interval[1] < 0


def test_reproducible_with_seed() -> None:
    kw = dict(fan_in=16, depth=4, quantity="activation", seed=11)
    a = verify("tanh", "xavier_uniform", **kw).to_dict()
    b = verify("tanh", "xavier_uniform", **kw).to_dict()
    a.pop("elapsed"), b.pop("elapsed")
    assert a == b
    c = verify("tanh", "xavier_uniform", **{**kw, "seed": 12}).to_dict()
    assert c["estimate"] != a["estimate"]


def test_backward_quantities_and_default_layer() -> None:
    g = verify("relu", "he_uniform", fan_in=32, depth=3, quantity="gradient", seed=2)
    assert g.layer == 1 and g.confirmed and g.statistic == "E[(dL/da_0)^2]"
    w = verify("linear", "lecun_normal", fan_in=32, depth=2, quantity="weight_gradient", seed=2)
    assert w.layer == 1 and w.confirmed
    mid = verify("relu", "he_normal", fan_in=32, depth=4, quantity="activation_second_moment",
                 layer=-2, seed=2)
    assert mid.layer == 3 and mid.confirmed


def test_approximate_prediction_gets_a_declared_allowance() -> None:
    v = verify("tanh", "lecun_normal", fan_in=256, depth=3, quantity="activation", seed=0)
    assert not v.exact and v.confirmed
    # the next order of the 1/n expansion: 0.3 * (|s| + max_l v_l / m_l^2)^2, from the moments
    fm = finite_width_moments("tanh", "lecun_normal", widths=[256] * 4)
    mf = fm.act_second_mean_field[-1] - fm.act_mean_mean_field[-1] ** 2
    corrected = fm.act_second[-1] - fm.act_mean[-1] ** 2
    rho = abs(corrected / mf - 1) + max(fm.q_var / fm.q_mean ** 2)
    assert 0 < rho < 0.05  # first layer: v_1/m_1^2 = 2/n_0 for Gaussian inputs
    assert v.tol == pytest.approx(0.3 * rho ** 2 + 1e-9, rel=1e-9)
    cf = verify("tanh", "lecun_normal", fan_in=256, depth=3, quantity="activation",
                method="closed_form", seed=0)
    # the erf-matched closed form differs from quadrature: that gap is part of tol
    gap = abs(varprop.predict_variance("tanh", "lecun_normal", fan_in=256, depth=3, method="quadrature")
              / cf.predicted - 1)
    assert gap > 0 and cf.tol == pytest.approx(v.tol + gap, rel=1e-6)


def test_zero_prediction_uses_absolute_margin_without_nan() -> None:
    v = verify("relu", "he_normal", fan_in=8, depth=2, input_variance=0.0,
               quantity="preactivation", seed=0)
    assert v.predicted == 0.0 and v.estimate == 0.0 and v.confirmed
    assert v.relative_interval is None and v.relative_error is None and v.atol == v.rtol
    json.dumps(v.to_dict(), allow_nan=False)
    assert "zero prediction" in str(v)
    w = verify("relu", "he_normal", fan_in=8, depth=2, quantity="preactivation", predicted=0.0,
               seed=0)
    assert w.refuted  # the variance is 2, not 0


def test_bias_only_network_orthogonal_linear() -> None:
    # input_variance=0: z = b, mean of 4 squared N(0, 0.5) biases (seed 0 happens to be one of the
    # ~1% runs whose interval misses: the rate is what the calibration tests measure)
    v = verify("linear", "orthogonal", fan_in=4, depth=1, input_variance=0.0, bias_variance=0.5,
               quantity="preactivation", seed=1)
    assert v.confirmed and v.predicted == 0.5


def test_unit_spread_differs_from_ensemble_for_relu() -> None:
    kw = dict(fan_in=16, depth=6, quantity="activation", seed=5, rtol=0.05)
    spread = verify("relu", "he_normal", target="unit_spread", **kw)
    ens = verify("relu", "he_normal", target="ensemble", **kw)
    assert spread.exact and spread.confirmed  # exact: units i.i.d. Gaussian given the layer below
    assert not ens.exact
    assert ens.interval[0] > spread.interval[1]  # ensemble variance of a exceeds the unit spread


def test_float32_and_overflow_reporting() -> None:
    v = verify("relu", "he_normal", fan_in=64, depth=2, quantity="preactivation", dtype="float32",
               seed=0)
    assert v.confirmed and v.tol == pytest.approx(1e-4)
    big = verify("linear", "standard_normal", fan_in=100, depth=45, quantity="preactivation",
                 dtype="float32", replicates=16, seed=0)
    assert big.inconclusive and "range" in big.reason


def test_local_one_step_check() -> None:
    v = verify_step("relu", "he_normal", fan_in=512, depth=50, rtol=0.01, seed=0)
    assert v.confirmed and v.exact and v.target == "one_step" and v.layer == 50
    assert v.replicates <= 4096
    same = verify("relu", "he_normal", fan_in=512, depth=50, rtol=0.01, seed=0, local=True,
                  quantity="preactivation")
    assert same.estimate == v.estimate
    a = verify_step("erf", "lecun_normal", fan_in=64, depth=4, quantity="activation_second_moment")
    assert a.exact and a.confirmed
    g = verify_step("relu", "he_normal", fan_in=64, depth=4, quantity="gradient", layer=4)
    assert g.exact and g.confirmed
    with pytest.raises(ValueError, match="init"):
        verify_step("relu", "uniform", fan_in=8, depth=2)


@pytest.mark.slow
def test_calibration_of_verify_true_prediction() -> None:
    """200 seeded runs of an exact prediction (fixed 256 replicates, alpha=0.05)."""
    refuted = sum(verify("relu", "he_normal", fan_in=8, depth=2, quantity="preactivation",
                         replicates=256, alpha=0.05, seed=s).refuted for s in range(200))
    assert stats.binomtest(refuted, 200, 0.05, alternative="greater").pvalue > 1e-3, refuted


@pytest.mark.slow
def test_calibration_of_adaptive_verify() -> None:
    """200 seeded adaptive runs at alpha=0.01 (ReLU/He n=16 L=3, forward and backward)."""
    refuted = 0
    for s in range(100):
        refuted += verify("relu", "he_normal", fan_in=16, depth=3, quantity="preactivation",
                          seed=s, budget=1024).refuted
        refuted += verify("relu", "he_uniform", fan_in=16, depth=2, quantity="gradient",
                          seed=s, budget=1024).refuted
    assert stats.binomtest(refuted, 200, 0.01, alternative="greater").pvalue > 1e-3, refuted


@pytest.mark.slow
def test_power_ten_percent_off_default_budget() -> None:
    refuted = 0
    for s in range(100):
        refuted += verify("relu", "he_normal", fan_in=64, depth=3, quantity="preactivation",
                          predicted=2.2, seed=s).refuted
    assert refuted >= 99


def test_verify_many_holm_and_executor_independence() -> None:
    cfgs = [dict(activation="relu", init="he_normal", fan_in=32, depth=2, quantity="preactivation"),
            dict(activation="relu", init="he_normal", fan_in=32, depth=2, quantity="preactivation",
                 predicted=2.4),
            dict(activation="linear", init="lecun_normal", fan_in=32, depth=2, quantity="gradient")]
    serial = verify_many(cfgs, alpha=0.01, seed=3)
    with ThreadPoolExecutor(max_workers=2) as ex:
        parallel = check.check_matrix(cfgs, executor=ex, alpha=0.01, seed=3)
    assert [v.status for v in serial] == ["confirmed", "refuted", "confirmed"]
    strip = [{k: x for k, x in v.to_dict().items() if k != "elapsed"} for v in serial]
    strip2 = [{k: x for k, x in v.to_dict().items() if k != "elapsed"} for v in parallel]
    assert strip == strip2
    assert all(v.config["family_size"] == 3 for v in serial)
    # per-config seeds depend on the config, not on its position
    assert check.config_seed(cfgs[0], 3) == check.config_seed(dict(reversed(cfgs[0].items())), 3)
    assert verify_many([], alpha=0.01) == []


def test_holm_public() -> None:
    assert check.holm([0.001, 0.02, 0.04], 0.05).tolist() == [True, True, True]
    with pytest.raises(ValueError, match="p_values"):
        check.holm([0.1, 1.5])


def test_is_exact_table() -> None:
    assert is_exact("relu", "he_uniform", "gradient")
    assert is_exact("linear", "orthogonal", "activation")
    assert not is_exact("relu", "he_normal", "activation")  # (E a)^2 depends on the random scale
    assert not is_exact("tanh", "lecun_normal", "preactivation")
    assert not is_exact("relu", "uniform", "preactivation")  # non-zero-mean weights
    assert is_exact("relu", "he_normal", "activation", target="unit_spread")
    assert not is_exact("relu", "he_uniform", "activation", target="unit_spread")


def test_default_matrix() -> None:
    m = check.default_matrix(quick=True)
    assert {c["init"] for c in m} == set(check.DEFAULT_INITS)
    assert {c["quantity"] for c in m} == {"preactivation", "activation", "gradient"}
    assert len(m) == len(check.DEFAULT_ACTIVATIONS) * len(check.DEFAULT_INITS) * 3
    assert set(check.DEFAULT_ACTIVATIONS) < set(varprop.activation_names())
    sub = check.default_matrix(activations=["relu"], inits=["he_normal"], fan_ins=[8],
                               depths=[2, 3], quantities=["gradient"], rtol=0.1)
    assert len(sub) == 2 and all(c["rtol"] == 0.1 for c in sub)


BAD = [
    (dict(rtol=0.0), ValueError, "rtol"),
    (dict(rtol="0.1"), TypeError, "rtol"),
    (dict(alpha=1.5), ValueError, "alpha"),
    (dict(quantity="variance"), ValueError, "quantity"),
    (dict(target="units"), ValueError, "target"),
    (dict(layer=0), ValueError, "layer"),
    (dict(layer=9), ValueError, "layer"),
    (dict(replicates=3), ValueError, "replicates"),
    (dict(replicates=2.5), TypeError, "replicates"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(predicted="big"), TypeError, "predicted"),
    (dict(predicted=float("nan")), ValueError, "predicted"),
    (dict(budget=0), ValueError, "budget"),
    (dict(method="fast"), ValueError, "method"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(local="yes"), TypeError, "local"),
    (dict(tol=-1.0), ValueError, "tol"),
    (dict(target="unit_spread", quantity="gradient"), ValueError, "quantity"),
    (dict(fan_in=0), ValueError, "fan_in"),
    (dict(input_variance=-1.0), ValueError, "input_variance"),
]


@pytest.mark.parametrize(("kwargs", "exc", "name"), BAD)
def test_bad_arguments(kwargs: dict, exc: type, name: str) -> None:
    base = dict(fan_in=4, depth=2, replicates=16)
    with pytest.raises(exc, match=name):
        verify("relu", "he_normal", **{**base, **kwargs})


def test_unit_spread_of_non_zero_mean_weights_needs_a_user_prediction() -> None:
    shifted = varprop.init_scheme("normal", mean=0.1, std=0.3)
    with pytest.raises(ValueError, match="shared|shift"):
        verify("relu", shifted, fan_in=256, quantity="preactivation", target="unit_spread")
    # the spread leaves out the shared shift: E s^2(z_1) = n std^2 E x^2 = 256 * 0.09 = 23.04
    v = verify("relu", shifted, fan_in=256, quantity="preactivation", target="unit_spread",
               predicted=23.04, seed=0)
    assert v.confirmed, v


def test_bad_arguments_verify_many() -> None:
    with pytest.raises(TypeError, match=r"configs\[0\]"):
        verify_many(["relu"])
    with pytest.raises(ValueError, match=r"configs\[0\]"):
        verify_many([{"activation": "relu"}])
    with pytest.raises(ValueError, match="correction"):
        verify_many([], correction="sidak")
    with pytest.raises(ValueError, match="family-wise"):  # was silently overwritten
        verify_many([{"activation": "relu", "init": "he_normal", "fan_in": 4, "alpha": 0.2}])
    with pytest.raises(ValueError, match="quantity"):
        verify_step("relu", "he_normal", fan_in=4, quantity="weight_gradient")


def test_infinite_skewness_is_inconclusive_not_an_overflow_error() -> None:
    # U[0,1) weights under sigmoid: the back-propagated gradient statistic spans ~40 decades, so
    # its log-scale variance is beyond exp's range and the guard's skewness is infinite. This used
    # to raise OverflowError while formatting "need ceil(25 * inf^2) replicates".
    v = verify("sigmoid", "uniform", fan_in=64, depth=5, quantity="gradient", replicates=512,
               seed=1603610108)
    assert v.status == "inconclusive" and v.skewness == math.inf
    assert "more than any finite budget" in v.reason
    d = json.loads(json.dumps(v.to_dict(), allow_nan=False))
    assert d["skewness"] == "inf"


def test_one_step_check_at_layer_one_conditions_on_the_realised_input() -> None:
    # E[phi(z)^2] is non-linear in v: plugging in E[v] instead of the realised input's v biased
    # the ratio by -4% at n = 8 and refuted the library's exact claim
    v = verify_step("tanh", "lecun_normal", fan_in=8, depth=3, layer=1,
                    quantity="activation_second_moment", seed=0)
    assert v.confirmed, v


def test_one_step_check_is_calibrated_at_width_one() -> None:
    # the ratio's skewness is 3.9 at n = 1 but its sample skewness at 64 replicates is often
    # ~0.5: without the known-skewness floor 28/600 runs refuted the true map at alpha 0.01.
    # 150 seeded runs; a calibrated test refutes more than 4 with probability 0.019.
    refuted = sum(verify_step("relu", "he_normal", fan_in=1, depth=3, seed=s,
                              quantity="activation_second_moment").refuted for s in range(150))
    assert refuted <= 4


def test_one_step_check_of_orthogonal_linear_nets_has_zero_variance() -> None:
    # W^T W = I for square Haar-orthogonal W: ||z_l||^2 = ||a_{l-1}||^2 in every draw, so the
    # one-step ratio is exactly 1 (zero-variance statistic, compared directly, no NaN)
    v = verify_step("linear", "orthogonal", fan_in=64, depth=3, seed=0)
    assert v.confirmed and v.relative_interval == (0.0, 0.0) and v.replicates == 64
    g = verify_step("linear", "orthogonal", fan_in=64, depth=3, quantity="gradient", seed=0)
    assert g.confirmed and g.relative_interval == (0.0, 0.0)
    # a wide-to-narrow orthogonal layer keeps the map only in expectation: a real interval
    w = verify_step("linear", varprop.init_scheme("orthogonal", gain=2.0), widths=[128, 32],
                    seed=0)
    assert w.confirmed and w.relative_interval[0] < 0 < w.relative_interval[1]
    with pytest.raises(ValueError, match="orthogonal"):
        verify_step("tanh", "orthogonal", fan_in=8, quantity="activation_second_moment")
