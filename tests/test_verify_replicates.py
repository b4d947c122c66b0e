"""verify_replicates: the checker's verdict on replicate values measured elsewhere (issue 12).

The truth is known by construction: the replicate values are drawn here with NumPy from laws
whose mean is known (a gamma with mean 1, a log-normal), seeded, so every verdict is
deterministic; the margins quoted are many standard errors wide.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from varprop.checking.replicates import verify_replicates
from varprop.errors import InvalidArgument, InvalidArgumentType


def _gamma(n: int, seed: int, cv: float = 0.05) -> np.ndarray:
    k = 1 / cv**2  # gamma(k, 1/k): mean 1, coefficient of variation cv
    return np.random.default_rng(seed).gamma(k, 1 / k, size=n)


def test_a_true_claim_is_confirmed_and_a_false_one_refuted() -> None:
    x = _gamma(64, 1)  # mean 1, se 0.05/8 = 0.6%: +-10% is 16 standard errors away
    v = verify_replicates(x, 1.0, tol=0.0, rtol=0.1, alpha=0.01)
    assert v.status == "confirmed", v.reason
    assert v.interval[0] < 1.0 < v.interval[1]
    w = verify_replicates(x, 1.5, tol=0.0, rtol=0.1, alpha=0.01)  # r = -1/3: 50 se away
    assert w.status == "refuted", w.reason
    assert w.relative_error == pytest.approx(np.mean(x) / 1.5 - 1)


def test_an_allowance_keeps_an_approximate_claim_from_refutation() -> None:
    x = _gamma(64, 2)
    v = verify_replicates(x, 1.08, tol=0.2, rtol=0.05, alpha=0.01)  # off by -7.4% +- 0.6%
    assert v.status == "confirmed" and v.within_allowance, v.reason


def test_a_broad_allowance_refutes_but_does_not_confirm() -> None:
    x = _gamma(64, 2)  # mean 1, se 0.6%
    v = verify_replicates(x, 1.08, tol=2.5, rtol=0.05, alpha=0.01, confirm_within=False)
    assert v.status == "inconclusive" and not v.within_allowance, v.reason  # -7.4%: inside 2.5
    assert "can refute this claim but not confirm it" in v.reason
    w = verify_replicates(x, 1.0, tol=2.5, rtol=0.05, alpha=0.01, confirm_within=False)
    assert w.status == "confirmed", w.reason  # inside +-5%: 8 se from either margin
    u = verify_replicates(x, 0.25, tol=2.5, rtol=0.05, alpha=0.01, confirm_within=False)
    assert u.status == "refuted", u.reason  # r = +300% +- 2.4%: outside +-250%


def test_heavy_tails_give_inconclusive_not_refuted() -> None:
    # log-normal sigma = 2: skewness ~ 414, Cochran asks for millions of replicates; the mean
    # e^2 = 7.39 is the truth, the sample mean of 32 values is typically far below it
    x = np.random.default_rng(3).lognormal(0.0, 2.0, size=32)
    v = verify_replicates(x, math.exp(2.0), tol=0.0, rtol=0.1, alpha=0.01)
    assert v.status == "inconclusive" and v.heavy_tailed and "heavy-tailed" in v.reason


def test_non_finite_values_give_no_estimate() -> None:
    x = _gamma(16, 4)
    x[3] = np.inf
    v = verify_replicates(x, 1.0, tol=0.0)
    assert v.status == "inconclusive" and v.estimate is None and "not finite" in v.reason


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgument, match="values"):
        verify_replicates([1.0, 2.0], 1.0, tol=0.0)
    with pytest.raises(InvalidArgument, match="predicted"):
        verify_replicates(_gamma(8, 5), -1.0, tol=0.0)
    with pytest.raises(InvalidArgumentType, match="seed"):
        verify_replicates(_gamma(8, 5), 1.0, tol=0.0, seed=True)
    with pytest.raises(InvalidArgument, match="alpha"):
        verify_replicates(_gamma(8, 5), 1.0, tol=0.0, alpha=0.0)
