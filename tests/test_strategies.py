"""Tests of varprop.strategies (hypothesis strategies and the assertion helpers)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.database import InMemoryExampleDatabase

import varprop
from varprop import activation as vp_activation
from varprop import strategies as vst
from varprop.checking import budget
from varprop.checking.check import Verdict
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.errors import InvalidArgumentType


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
@given(vst.layer_configs(activation=vst.activations(["relu", "tanh", "sigmoid"]),
                         fan_in=vst.widths(16, 256), quantity=vst.quantities(["gradient"])))
def test_layer_configs_are_verify_arguments(config: dict) -> None:
    """Gradients confirmed to 5% at the run's level need 0.1-0.15 s below width 128 (predicted
    cost), so the drawn widths reach 256, where the Gaussian schemes fit the deadline."""
    assert set(config) == {"activation", "init", "fan_in", "depth", "quantity", "bias_variance",
                           "input_variance"}
    assert 16 <= config["fan_in"] <= 256 and config["quantity"] == "gradient"
    assert config["init"].is_zero_mean and config["init"].is_iid
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
    assert vst.assert_variance_preserved("relu", "he_normal", fan_in=64, depth=3).confirmed
    # the reference layer is the same network: with E x^2 = 2 every layer has Var z = 4
    kept = vst.assert_variance_preserved("relu", "he_normal", fan_in=64, depth=3, input_variance=2.0)
    assert kept.confirmed and kept.predicted == 4.0
    with pytest.raises(AssertionError, match="not preserved"):
        vst.assert_variance_preserved("relu", "lecun_normal", fan_in=64, depth=3)


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
    # a misspelt keyword: varprop's TypeError naming it, with the nearest keyword of verify()
    with pytest.raises(InvalidArgumentType, match=r"'dpeth'.*did you mean 'depth'"):
        vst.assert_prediction_confirmed(activation="relu", init="he_normal", fan_in=32, dpeth=2)
    with pytest.raises(InvalidArgumentType, match="did you mean 'input_variance'"):
        vst.assert_variance_preserved("relu", "he_normal", fan_in=32, input_varaince=2.0)
    # fixed layer_configs values are checked when the strategy is built, not when drawn
    for bad, error in [({"fan_in": True}, TypeError), ({"fan_in": 0}, ValueError),
                       ({"depth": 10**7}, ValueError), ({"depth": 2.0}, TypeError),
                       ({"quantity": "gradeint"}, ValueError),
                       ({"bias_variance": float("nan")}, ValueError),
                       ({"init": "he_norml"}, ValueError), ({"activation": "rleu"}, ValueError)]:
        with pytest.raises(error, match=next(iter(bad))):
            vst.layer_configs(**bad)
    with pytest.raises(ValueError, match="did you mean 'he_normal'"):
        vst.prepare("he_norml")
    with pytest.raises(TypeError, match="items"):
        vst.prepare(3)


def test_prepare_takes_what_activation_and_init_scheme_take() -> None:
    vst.prepare("torch:default", "keras:he_normal", "x*sin(x)", vp_activation("x*sin(x)"))
    # and the prepared custom expression is then checked like any activation
    assert vst.assert_not_refuted(activation="x*sin(x)", init="torch:default", fan_in=32,
                                  depth=1, quantity="preactivation", alpha=1e-3).confirmed


@contextmanager
def hypothesis_seed_context(seed_: int) -> Iterator[None]:
    """Seed the global RNG hypothesis falls back to (derandomize=False, no @seed)."""
    state = random.getstate()
    random.seed(seed_)
    try:
        yield
    finally:
        random.setstate(state)


# --- the error budget of a run (issue 14) --------------------------------------------------------

def test_call_alpha_series_sums_to_the_run_budget() -> None:
    """sum_k 6/(pi^2 k^2) = 1 (Euler): the levels of any number of checks in E examples add up
    to at most RUN_ALPHA, and the first 10,000 checks per example already spend all but
    6/(pi^2 * 10,000) of it (tail of sum 1/k^2 below 1/K)."""
    E, K = 37, 10_000
    spent = E * math.fsum(budget.call_alpha(budget.RUN_ALPHA, E, k) for k in range(1, K + 1))
    assert spent <= budget.RUN_ALPHA
    assert spent >= budget.RUN_ALPHA * (1 - 6 / (math.pi ** 2 * K))
    assert budget.call_alpha(1e-6, 100, 2) == pytest.approx(budget.call_alpha(1e-6, 100, 1) / 4)
    assert budget.example_bound(100, 2) == 102
    with pytest.raises(ValueError, match="examples"):
        budget.call_alpha(1e-6, 0, 1)
    with pytest.raises(ValueError, match="explicit"):
        budget.example_bound(10, -1)


def _count_run(max_examples: int, *, fail_from: int | None = None,
               database: object = None) -> tuple[int, int]:
    """(test-body executions that got past assume() before the first failure, all of them)."""
    calls = {"before": 0, "all": 0, "failed": False}

    @settings(max_examples=max_examples, derandomize=False, database=database, deadline=None)
    @example(x=3)
    @given(st.integers(0, 10_000))
    def run(x: int) -> None:
        assume(x % 3 != 1)  # a third of the examples is rejected before any check
        calls["all"] += 1
        if not calls["failed"]:
            calls["before"] += 1
        if fail_from is not None and x >= fail_from:
            calls["failed"] = True
            raise AssertionError("a failure")

    if fail_from is None:
        run()
    else:
        with pytest.raises(AssertionError):
            run()
    return calls["before"], calls["all"]


@pytest.mark.parametrize("seed_", [0, 1, 2])
def test_hypothesis_runs_at_most_the_bound_before_its_first_failure(seed_: int) -> None:
    """What the arithmetic assumes of hypothesis (read in its engine: generation stops after
    max_examples valid examples, database replays count among them, shrinking and the final
    replay only follow a failure), measured: with @example and assume(), a passing run, a
    second run on the same database, and a failing one."""
    db = InMemoryExampleDatabase()
    bound = budget.example_bound(40, explicit=1)
    with hypothesis_seed_context(seed_):
        before, total = _count_run(40, database=db)
        assert before == total <= bound
        before, total = _count_run(40, database=db)
        assert before == total <= bound
        before, total = _count_run(40, fail_from=100, database=db)
    assert before <= bound and total > before  # shrinking ran after the first failure


def test_levels_spent_by_a_real_run_add_up_to_at_most_1e_6() -> None:
    """Three checks per example, an @example, 60 examples: the levels the verdicts report sum
    to at most RUN_ALPHA (the sum is recomputed here from the verdicts, not from call_alpha)."""
    spent: list[float] = []
    expected_first = budget.RUN_ALPHA * 6 / math.pi ** 2 / 61

    @settings(max_examples=60, derandomize=True, database=None,
              deadline=timedelta(milliseconds=200))
    @example(k=5)
    @given(st.integers(0, 2**32 - 1))
    def run(k: int) -> None:
        rng = np.random.default_rng(k)
        assert vst.check_alpha() == pytest.approx(expected_first)
        for _ in range(3):
            v = vst.assert_initializer_matches(rng.normal(0.0, math.sqrt(2 / 16), (16, 16)),
                                               "he_normal")
            spent.append(v.alpha)

    run()
    assert len(spent) == 3 * 61 and max(spent) == pytest.approx(expected_first)
    assert math.fsum(spent) <= budget.RUN_ALPHA
    assert vst.check_alpha() == budget.RUN_ALPHA  # outside a test a check spends it all


def test_margin_and_claim_allowance_by_hand() -> None:
    """check_margin = max(M - d, M/2), M = max(rtol, tol); the helpers check the corrected claim
    where the 1/n expansion decides it, with the allowance 0.3 rho^2 computed here by hand."""
    assert budget.check_margin(0.05, 0.0, 0.0) == 0.05
    assert budget.check_margin(0.05, 0.01) == pytest.approx(0.04)
    assert budget.check_margin(0.05, 0.2) == pytest.approx(0.1)  # deviation up to tol: M/2
    assert budget.check_margin(0.05, 0.01, 0.04) == pytest.approx(0.025)
    relu, tanh = varprop.activation("relu"), varprop.activation("tanh")
    he, xn = varprop.init_scheme("he_normal"), varprop.init_scheme("xavier_normal")
    assert budget.claim_allowance(relu, he, [32] * 4, "preactivation") == (0.0, 0.0, False)
    ws = [64] * 5
    fm = varprop.finite_width_moments("tanh", "xavier_normal", widths=ws)
    s = fm.act_second[-1] / fm.act_second_mean_field[-1] - 1
    rho = abs(s) + max(fm.q_var / fm.q_mean ** 2)
    tol, dev, fw = budget.claim_allowance(tanh, xn, ws, "activation_second_moment")
    assert fw and tol == pytest.approx(0.3 * rho ** 2 + 1e-9) and dev == pytest.approx(tol)
    tol0, dev0, fw0 = budget.claim_allowance(tanh, xn, ws, "activation_second_moment",
                                             finite_width=False)
    assert not fw0 and tol0 == pytest.approx(tol) and dev0 == pytest.approx(tol + abs(s), rel=1e-6)
    v = vst.assert_prediction_confirmed(activation="tanh", init="xavier_normal", fan_in=64,
                                        depth=4, quantity="activation_second_moment")
    assert v.config["finite_width"] and v.predicted == pytest.approx(fm.act_second[-1])


def test_undecidable_or_costly_checks_are_refused_up_front() -> None:
    # width 1 at depth 10 with the default quantity (the activation variance): the exact ReLU
    # spread, (1+2)(1+5)^9(1+2)-1 ~ 9e7, needs ~1e28 replicates; refused before simulating
    start = time.process_time()
    with pytest.raises(ValueError, match=r"within its budget.*it needs"):
        vst.assert_prediction_confirmed(activation="relu", init="he_normal", fan_in=1, depth=10)
    # a non-zero-mean uniform scheme (pilot-planned: ~5e5 replicates, ~70 s by the cost model)
    # and a truncated normal (dense engine, 4x dearer draws) over HELPER_SECONDS
    with pytest.raises(ValueError, match=r"can afford.*s predicted"):
        vst.assert_prediction_confirmed(activation="relu", init="uniform", fan_in=64, depth=2)
    with pytest.raises(ValueError, match=r"can afford.*s predicted"):
        vst.assert_prediction_confirmed(activation="relu", init="keras:he_normal", fan_in=64,
                                        depth=2)
    assert time.process_time() - start < 5.0  # the pilot only (128 replicates), no long run
