"""The finite-width checker (issue 13): the next-order allowance, verify(finite_width=True), the
distributional targets (quantile, cv2) and the budget planned from the predicted CV^2.

Statistical tests are seeded; tolerances are stated in standard errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

import varprop
from varprop.checking import check
from varprop.checking.distribution_stats import (
    cv2_interval,
    lognormal_influence_skewness,
    quantile_interval,
)
from varprop.checking.next_order import NEXT_ORDER_CONSTANT, REGIME_LIMIT
from varprop.checking.plan import (
    PLAN_POWER,
    PLAN_SAFETY,
    _look_sizes,
    planned_replicates,
)
from varprop.errors import InvalidArgument, InvalidArgumentType
from varprop.theory.finite.expansion import finite_width_moments
from varprop.theory.finite.statistics import predict_distribution


def _tanh_mean_square(n: int, depth: int, nets: int, seed: int) -> np.ndarray:
    """From-scratch Monte Carlo of one network's mean square of a_L (tanh, xavier_normal, square
    layers: sigma_w^2 = 1/n): given layer l-1 the pre-activations are i.i.d. N(0, qhat_l) with
    qhat_l = (1/n) |a_{l-1}|^2 (exact in law for Gaussian weights), inputs N(0, 1)."""
    rng = np.random.default_rng(seed)
    q = np.sum(rng.standard_normal((nets, n)) ** 2, axis=1) / n
    for _ in range(depth):
        a2 = np.mean(np.tanh(np.sqrt(q)[:, None] * rng.standard_normal((nets, n))) ** 2, axis=1)
        q = a2
    return a2


def test_mean_field_refuted_and_corrected_confirmed_where_the_shift_is_resolved() -> None:
    kw = dict(fan_in=64, depth=20, quantity="activation_second_moment", seed=4)
    mf = varprop.verify("tanh", "xavier_normal", **kw)
    fw = varprop.verify("tanh", "xavier_normal", finite_width=True, **kw)
    assert mf.tol == fw.tol and 0 < mf.tol < 0.05
    # independent truth: 6000 networks from scratch; the mean field is off by more than the
    # allowance (6 standard errors), so refuting it is right
    x = _tanh_mean_square(64, 20, 6000, seed=11)
    r = x.mean() / mf.predicted - 1
    assert r + 6 * x.std(ddof=1) / math.sqrt(x.size) / mf.predicted < -mf.tol
    assert mf.refuted and "measured finite-width shift" in mf.reason
    assert f"corrected value {fw.predicted:.6g}" in mf.reason
    assert fw.confirmed and abs(x.mean() / fw.predicted - 1) < 0.02  # the corrected value
    assert "O(1/n) finite-width correction" in fw.assumptions


def test_next_order_allowance_and_its_regime() -> None:
    ws = [256] * 4
    tol, reason = check.prediction_allowance("tanh", "lecun_normal", widths=ws, layer=3,
                                             quantity="preactivation", method="auto",
                                             predicted_value=1.0)
    fm = finite_width_moments("tanh", "lecun_normal", widths=ws)
    rho = abs(fm.q_mean[2] / fm.q_mean_field[2] - 1) + max(fm.q_var[:3] / fm.q_mean[:3] ** 2)
    assert tol == pytest.approx(NEXT_ORDER_CONSTANT * rho ** 2 + 1e-9, rel=1e-9)
    assert "next-order allowance" in reason
    # deep and narrow: rho far beyond the regime, the broad allowance 2 sum 1/n_l applies
    narrow = [16] * 21
    tol, reason = check.prediction_allowance("tanh", "xavier_normal", widths=narrow, layer=20,
                                             quantity="activation_second_moment",
                                             method="auto", predicted_value=1.0)
    assert tol == pytest.approx(2.0 * 20 / 16 + 1e-9)
    assert f"rho > {REGIME_LIMIT:g}" in reason and "not decidable" in reason
    # backward: the relative variance is taken over every layer the gradient passes
    tol, reason = check.prediction_allowance("tanh", "xavier_normal", widths=ws, layer=1,
                                             quantity="gradient", method="auto",
                                             predicted_value=1.0)
    fm = finite_width_moments("tanh", "xavier_normal", widths=ws)
    rho = abs(fm.grad_second[0] / fm.grad_second_mean_field[0] - 1) + max(fm.q_var / fm.q_mean ** 2)
    assert tol == pytest.approx(NEXT_ORDER_CONSTANT * rho ** 2 + 1e-9, rel=1e-9)


def test_exact_claims_unchanged_by_finite_width() -> None:
    a = varprop.verify("relu", "he_normal", fan_in=32, depth=3, quantity="preactivation",
                       seed=1, replicates=256)
    b = varprop.verify("relu", "he_normal", fan_in=32, depth=3, quantity="preactivation",
                       seed=1, replicates=256, finite_width=True)
    assert a.exact and a.predicted == b.predicted == 2.0 and a.tol == b.tol == 1e-9


def test_finite_width_argument_errors() -> None:
    kw = dict(fan_in=8, depth=2, replicates=16)
    for bad in (1, "yes", None):
        with pytest.raises(InvalidArgumentType, match="finite_width"):
            varprop.verify("tanh", "xavier_normal", finite_width=bad, **kw)
    with pytest.raises(InvalidArgument, match="predicted"):
        varprop.verify("tanh", "xavier_normal", finite_width=True, predicted=1.0, **kw)
    with pytest.raises(InvalidArgument, match="finite_width"):
        varprop.verify("tanh", "xavier_normal", finite_width=True, quantity="output", **kw)
    with pytest.raises(InvalidArgument, match="no 1/n expansion"):
        varprop.verify("tanh", "orthogonal", finite_width=True, **kw)
    with pytest.raises(InvalidArgument, match="no 1/n expansion"):
        varprop.verify("sigmoid", "xavier_normal", finite_width=True, target="unit_spread",
                       quantity="activation", **kw)


def test_quantile_interval_covers_at_its_level() -> None:
    # gamma(3) data, true median from scipy; 400 seeded samples of 200 at alpha = 0.1: the
    # order-statistic interval misses at most alpha of the time (binomial count, 6 sigma)
    rng = np.random.default_rng(3)
    truth = stats.gamma.ppf(0.5, 3.0)
    misses = 0
    for _ in range(400):
        iv = quantile_interval(rng.gamma(3.0, size=200), 0.5, 0.1)
        misses += not (iv.lo <= truth <= iv.hi)
        assert (iv.p_greater(truth) <= 0.05) == (iv.lo > truth) or iv.lo > truth
    assert misses <= 40 + 6 * math.sqrt(400 * 0.1 * 0.9)
    assert misses >= 4  # not vacuous: the interval is not the whole line
    tiny = quantile_interval(np.arange(5.0), 0.5, 0.01)
    assert tiny.lo == -math.inf and tiny.hi == math.inf  # too few values for 99%


def test_cv2_interval_covers_at_its_level() -> None:
    rng = np.random.default_rng(5)
    k = 10.0  # gamma(k): CV^2 = 1/k
    misses = 0
    for _ in range(300):
        iv = cv2_interval(rng.gamma(k, size=400), 0.1)
        misses += not (iv.lo <= 1 / k <= iv.hi)
    assert misses <= 30 + 6 * math.sqrt(300 * 0.1 * 0.9)
    assert misses >= 3


def test_lognormal_influence_skewness_by_quadrature() -> None:
    c = 0.1
    s = math.sqrt(math.log1p(c))
    law = stats.lognorm(s, scale=math.exp(-s * s / 2))  # mean 1, CV^2 = c

    def psi(x: float) -> float:
        return ((x - 1) ** 2 - c) / c - 2 * (x - 1)

    m = [integrate.quad(lambda x, j=j: psi(x) ** j * law.pdf(x), 0, np.inf, limit=400)[0]
         for j in (1, 2, 3)]
    skew = (m[2] - 3 * m[0] * m[1] + 2 * m[0] ** 3) / (m[1] - m[0] ** 2) ** 1.5
    assert lognormal_influence_skewness(c) == pytest.approx(skew, rel=1e-6)


def test_planned_replicates_by_hand() -> None:
    cap = 10**6
    got = planned_replicates(0.2, 0.0, 0.0, 0.05, 0.01, cap)
    # fixed point of R = safety * cv2 ((z_{1 - alpha/(2K)} + z_power)/d)^2, K the looks of R
    K = len(_look_sizes(None, got))
    z = stats.norm.ppf(1 - 0.01 / (2 * K)) + stats.norm.ppf(PLAN_POWER)
    assert got == math.ceil(PLAN_SAFETY * 0.2 * (z / 0.05) ** 2)
    # an expected refutation: the distance is |r| - tol
    far = planned_replicates(0.2, -0.2, 0.05, 0.05, 0.01, cap)
    assert far < got
    assert planned_replicates(0.2, 0.05, 0.05, 0.05, 0.01, cap) == cap  # on the margin
    assert planned_replicates(float("nan"), 0.0, 0.0, 0.05, 0.01, cap) == cap
    assert planned_replicates(100.0, 0.0, 0.0, 0.05, 0.01, 5000) == 5000


def test_quantile_target_confirms_the_exact_law_and_refutes_a_wrong_claim() -> None:
    kw = dict(fan_in=16, depth=3, quantity="preactivation", target="quantile", p=0.5,
              replicates=3000, rtol=0.15, seed=2)
    v = varprop.verify("relu", "he_normal", **kw)
    assert v.exact and v.confirmed and v.target == "quantile"
    assert v.predicted == pytest.approx(predict_distribution(
        "relu", "he_normal", fan_in=16, depth=3).quantile(0.5))
    wrong = varprop.verify("relu", "he_normal", predicted=1.5 * v.predicted, **kw)
    assert wrong.refuted


def test_distribution_target_argument_errors() -> None:
    kw = dict(fan_in=8, depth=2, replicates=16)
    with pytest.raises(InvalidArgument, match="p="):
        varprop.verify("tanh", "xavier_normal", target="quantile", **kw)
    with pytest.raises(InvalidArgument, match="p="):
        varprop.verify("tanh", "xavier_normal", target="cv2", p=0.5, **kw)
    with pytest.raises(InvalidArgument, match="p="):
        varprop.verify("tanh", "xavier_normal", target="quantile", p=1.5, **kw)
    with pytest.raises(InvalidArgument, match="statistic"):
        varprop.verify("tanh", "xavier_normal", target="cv2", statistic="log_mean_square", **kw)
    with pytest.raises(InvalidArgument, match="statistic"):
        varprop.verify("tanh", "xavier_normal", target="quantile", p=0.5, statistic="unit_std",
                       quantity="gradient", **kw)
    with pytest.raises(InvalidArgument, match="ddof"):
        varprop.verify("tanh", "xavier_normal", target="quantile", p=0.5, statistic="unit_std",
                       ddof=2, **kw)
    with pytest.raises(InvalidArgument, match="did you mean"):
        varprop.verify("tanh", "xavier_normal", target="quantile", p=0.5, statistic="mean_sq",
                       **kw)
    with pytest.raises(InvalidArgument, match="target"):
        varprop.verify("tanh", "xavier_normal", p=0.5, **kw)
    with pytest.raises(InvalidArgument, match="finite_width"):
        varprop.verify("tanh", "xavier_normal", target="cv2", finite_width=True, **kw)


def test_finite_width_document_section() -> None:
    from varprop.documents.finite_width import (
        FW_DEPTHS,
        FW_WIDTHS,
        figure_path,
        finite_width_figure,
        finite_width_section,
    )
    from varprop.documents.store import MonteCarloStore, budget

    store = MonteCarloStore(budget_name="quick")
    lines = finite_width_section("tanh", store=store, budget=budget("quick"),
                                 figure=figure_path("tanh"))
    assert lines[0] == "## Finite width"
    assert any(line.startswith("- Mean recursion") for line in lines)
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == len(FW_WIDTHS) * len(FW_DEPTHS)
    allowed = {"confirmed", "refuted", "inconclusive", "confirmed (within the allowance)",
               "inconclusive (inside the broad allowance, which cannot confirm)",
               "inconclusive (heavy-tailed)", "n/a", "no estimate"}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[-1] in allowed and cells[-2] in allowed
    # the predicted shift of a row is the expansion's, recomputed from the moments
    n, depth = FW_WIDTHS[2], FW_DEPTHS[0]
    fm = finite_width_moments("tanh", "lecun_normal", widths=[n] * (depth + 1))
    shift = fm.act_second[-1] / fm.act_second_mean_field[-1] - 1
    row = next(r for r in rows if r.startswith(f"| {n} | {depth} |"))
    assert f"{100 * shift:+.3g}%" in row
    # the summary's count of refuted mean-field rows is the table's
    refuted = sum(1 for r in rows if r.strip("|").split("|")[-2].strip() == "refuted")
    assert any(f"the mean field is refuted in {refuted} " in line for line in lines)
    assert all(key.startswith("finite_width/") for key in store.records)
    svg = finite_width_figure("tanh", store=store, budget=budget("quick"))
    assert svg is None or (isinstance(svg, str) and svg.lstrip().startswith("<?xml"))
