"""Property-based checks of the predictions (issue 3), through varprop.strategies and verify().

Deterministic: every test is ``derandomize=True`` and ``verify`` is seeded, so a run is
reproducible; the chance that a seeded verify of a true exact prediction is refuted is at most
``alpha`` = 0.01 per check (measured in test_check.py / test_stats.py).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varprop import strategies as vst

EXACT_QUANTITIES = ("preactivation", "activation_second_moment", "gradient")


@st.composite
def small_networks(draw: st.DrawFn) -> tuple[int, int]:
    """(width, depth) from width 1 upwards, the depth bounded so the replicate CV^2 of a ReLU
    net, (1 + 5/n)^L - 1, stays within a default budget's reach (<= about 5)."""
    n = draw(st.sampled_from([1, 2, 3, 4, 8, 16, 64]))
    max_depth = 1 if n <= 2 else 2 if n <= 4 else 3 if n <= 8 else 5
    return n, draw(st.integers(1, max_depth))


@pytest.mark.slow
@settings(max_examples=25, derandomize=True, deadline=None)
@given(act=vst.activations(["linear", "relu", "leaky_relu"]),
       init=vst.init_schemes(zero_mean=True, symmetric=True, iid=True),
       shape=small_networks(), quantity=st.sampled_from(EXACT_QUANTITIES),
       seed=st.integers(0, 2**16))
def test_second_moments_exact_at_every_finite_width(act, init, shape, quantity, seed) -> None:
    n, L = shape
    v = vst.assert_prediction_confirmed(activation=act, init=init, fan_in=n, depth=L,
                                        quantity=quantity, seed=seed)
    assert v.exact and v.tol < 1e-6  # exactness is claimed (tol = 0), and it is confirmed


@pytest.mark.slow
@settings(max_examples=15, derandomize=True, deadline=None)
@given(act=vst.activations(),
       init=vst.init_schemes(zero_mean=True, names=["lecun_normal", "lecun_uniform",
                                                    "xavier_normal", "xavier_uniform", "he_normal",
                                                    "he_uniform", "torch_linear_default",
                                                    "truncated_normal"]),
       n=st.just(256), L=st.integers(1, 10),
       quantity=st.sampled_from(["activation", "gradient"]), seed=st.integers(0, 2**16))
def test_all_activations_and_schemes_wide(act, init, n, L, quantity, seed) -> None:
    """Width 256: the predictions with their 1/n correction (exact or not) are confirmed within
    10%.

    The allowance is the next order of the 1/n expansion (tiny at width 256), so a true claim is
    refuted with probability up to ``alpha``: ``alpha = 1e-3`` keeps that below 2.5% over the 25
    examples (at 1e-2 the example relu/lecun_uniform, depth 2, seed 22406 is refuted at
    p = 0.0026 while 3 other seeds with 4096 replicates confirm it).  (rtol 10% and budget 1024
    keep the dense engine's cost for non-Gaussian schemes within the CI budget.  Orthogonal
    weights, whose dense sampling costs a QR per layer, are covered by the explicit test below.)"""
    vst.assert_prediction_confirmed(activation=act, init=init, fan_in=n, depth=L,
                                    quantity=quantity, seed=seed, rtol=0.1, budget=1024,
                                    finite_width=True, alpha=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(("act", "quantity"), [("tanh", "activation"), ("relu", "gradient"),
                                               ("sigmoid", "preactivation")])
def test_orthogonal_wide(act, quantity) -> None:
    vst.assert_prediction_confirmed(activation=act, init="orthogonal", fan_in=256, depth=3,
                                    quantity=quantity, seed=7, rtol=0.1, budget=1024)
