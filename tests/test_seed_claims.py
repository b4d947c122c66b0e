"""The seeds' claims (``seeds/claims.py`` at the repository root, outside the installed package):
the catalogue covers issue 4's list, the documented computations are right, and
derivations/seed-claims.md carries every claim with a verdict."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate

import varprop
from varprop.documents.pages import import_from_repository, repository_pages
from varprop.documents.store import MonteCarloStore

ROOT = Path(__file__).resolve().parents[1]
sc = import_from_repository("seeds.claims", ROOT)
sc_finite = import_from_repository("seeds.finite", ROOT)
SEED_CLAIMS = ROOT / "derivations" / "seed-claims.md"

#: Issue 4's list: (seed file, text that must appear in the claim's title or quote).
REQUIRED = [
    ("000_882fce57e92f7e4d", "1.5 on the diagonal"),
    ("000_882fce57e92f7e4d", "0.5 on the diagonal"),
    ("001_2bbe60fd5150b093", "NaN at layer index 37"),
    ("003_43ddb6add2c3f97b", "NaN at i = 31"),
    ("001_2bbe60fd5150b093", "sqrt(512) = 22.6"),
    ("001_2bbe60fd5150b093", "1/sqrt(512) scaling gives std ~ 1"),
    ("001_2bbe60fd5150b093", "tanh gives 0.627"),
    ("001_2bbe60fd5150b093", "\"Xavier\" from U[0,1)"),
    ("001_2bbe60fd5150b093", "xavier(m, h) = U[0,1)"),
    ("001_2bbe60fd5150b093", "ReLU with U[0,1) x sqrt(2/512)"),
    ("003_43ddb6add2c3f97b", "Xavier uniform + tanh over 100 layers"),
    ("000_882fce57e92f7e4d", "Xavier's variance stated as sqrt(1/n)"),
    ("002_2821d1098bf677d6", "random() between 0 and 1"),
    ("002_2821d1098bf677d6", "sigmoid derivative at most 0.25"),
    ("004_d77e2ffadb0157d7", "max sigmoid' = 0.25"),
    ("004_d77e2ffadb0157d7", "product of derivatives over depth"),
]


@pytest.mark.parametrize(("seed", "text"), REQUIRED)
def test_issue_4_claims_are_catalogued(seed, text):
    assert any(c.seed == seed and (text in c.title or text in c.quote) for c in sc.CLAIMS), (seed, text)


def test_catalogue_is_well_formed():
    keys = [c.key for c in sc.CLAIMS]
    assert len(keys) == len(set(keys))
    assert {c.seed for c in sc.CLAIMS} == set(sc.SEED_FILES)
    for c in sc.CLAIMS:
        assert c.key.split(".")[0] == c.seed[:3]
        assert c.kind in ("experiment", "formula") and c.quote and c.where


def test_seed_files_exist_where_the_catalogue_says():
    seeds = ROOT.parent / "shared" / "seeds"
    if not seeds.is_dir():
        pytest.skip("the seed texts are not next to the repository")
    assert {p.stem for p in seeds.glob("*.txt")} == set(sc.SEED_FILES)


def test_committed_document_has_every_claim_with_a_verdict():
    text = SEED_CLAIMS.read_text()
    for c in sc.CLAIMS:
        assert f"### {c.key} {c.title}" in text, c.key
    for seed in sc.SEED_FILES:
        assert f"## `{seed}`" in text
    verdicts = [line.rsplit("|", 2)[-2].strip() for line in text.splitlines()
                if line.startswith("| [")]
    assert len(verdicts) == len(sc.CLAIMS)
    assert set(verdicts) <= {f"**{v}**" for v in sc.VERDICTS}


def test_verdicts_of_the_deterministic_claims():
    ctx_store = MonteCarloStore(budget_name="quick")
    results = {}
    # run only the claims that need no simulation (fast), through the public assess callables
    ctx = sc._Context(ctx_store, sc._budget("quick"))
    for key, expected in [("000.1", "confirmed"), ("000.2", "confirmed"), ("001.6", "refuted"),
                          ("002.1", "confirmed"), ("002.5", "explained"), ("003.7", "explained"),
                          ("004.1", "confirmed")]:
        claim = next(c for c in sc.CLAIMS if c.key == key)
        results[key] = claim.assess(ctx)
        assert results[key].verdict == expected, key
    assert "4.06561178e+17" in results["000.1"].prediction


class _FixedRecords:
    """A context whose Monte Carlo records are given (no simulation)."""

    def __init__(self, records):
        self.records, self.budget = records, sc._budget("quick")

    def montecarlo(self, key, compute):
        return self.records[key]


def _summary(lo, hi, mean=None):
    mid = (lo + hi) / 2 if mean is None else mean
    return {"mean": mid, "sd": (hi - lo) / 5, "replicates": 100, "q005": lo, "q995": hi, "median": mid}


@pytest.mark.parametrize(("key", "records"), [
    ("001.1", {"001.1": {"row_mean": _summary(-0.26, 0.26), "row_std": _summary(0.85, 1.15)}}),
])
def test_seed_inside_the_simulated_range_is_consistent_not_confirmed(key, records):
    """001's input row lies inside the *simulated* range: the prediction plays no part in that
    test, so the verdict is "consistent", not "confirmed"."""
    claim = next(c for c in sc.CLAIMS if c.key == key)
    assert claim.assess(_FixedRecords(records)).verdict == "consistent"


def test_claim_tested_against_the_prediction_can_be_confirmed():
    """001.7's range is built around the finite-width law of one run's std (and the simulation
    must agree with it)."""
    pm, ps = sc.row_statistics("linear", "lecun_normal", fan_in=512)
    law = sc_finite.std_average("linear", "lecun_normal", fan_in=512, runs=1000)
    rec = {"001.7": {"row_mean": {**_summary(-0.1, 0.1, pm), "sd": 0.04, "replicates": 100000},
                     "row_std": {**_summary(0.9, 1.1, law["mean"]), "sd": 0.03,
                                 "replicates": 100000}}}
    claim = next(c for c in sc.CLAIMS if c.key == "001.7")
    assert claim.assess(_FixedRecords(rec)).verdict == "confirmed"
    # the same printed numbers against a simulation that disagrees with the prediction: refuted
    rec["001.7"]["row_std"]["mean"] = ps * 1.2
    assert claim.assess(_FixedRecords(rec)).verdict == "refuted"


def test_std_average_is_the_exact_mean_of_a_chi_root():
    """Linear LeCun nets, one layer: given |x|^2 the row variance (ddof 0) is |x|^2/n *
    chi2_{n-1}/n with |x|^2 ~ chi2_{n}, independent; so E s = E sqrt(chi2_n) E sqrt(chi2_{n-1})/n
    with E sqrt(chi2_k) = sqrt(2) Gamma((k+1)/2)/Gamma(k/2) (hand derivation)."""
    n = 512

    def root(k):
        return math.sqrt(2) * math.exp(math.lgamma((k + 1) / 2) - math.lgamma(k / 2))

    law = sc_finite.std_average("linear", "lecun_normal", fan_in=n, runs=1000)
    assert law["mean"] == pytest.approx(root(n) * root(n - 1) / n, rel=1e-9)
    assert law["mean"] < math.sqrt((n - 1) / n)  # Jensen: below the mean field's sqrt(E s^2)
    half = 2.5758293035489004 * law["sd"] / math.sqrt(1000)
    assert (law["low"], law["high"]) == pytest.approx((law["mean"] - half, law["mean"] + half))


def _deep_records(q_status="confirmed", mf_status="refuted", fw_status="confirmed"):
    if q_status == "inconclusive":
        q_status_key = "confirmed"
    else:
        q_status_key = q_status
    law = sc_finite.predict_distribution("tanh", "xavier_uniform", fan_in=256, depth=100,
                                         statistic="unit_std", quantity="activation", ddof=1)
    # 2000 values placed at the law's quantiles (a perfect sample), or shifted by 40%
    scale = {"confirmed": 1.0, "refuted": 1.4}[q_status_key]
    values = [scale * law.quantile((i + 0.5) / 2000) for i in range(2000)]
    recs = {"003.5/std": {"std": values if q_status != "inconclusive" else values[::400]}}
    for name, status, pred in (("mean_field", mf_status, 0.0051), ("corrected", fw_status, 0.0045)):
        recs[f"003.5/bias/xavier_normal/{name}"] = {
            "status": status, "predicted": pred, "estimate": 0.0045, "low": 0.0043,
            "high": 0.0047, "replicates": 1000, "tol": 0.05, "reason": "r"}
    return recs


def test_deep_tanh_claim_is_decided_by_its_checks():
    """003.5: the printed 0.0452 is inside the predicted law (checked: percentile), the quantile
    checks and the ensemble-bias checks decide the verdict."""
    claim = next(c for c in sc.CLAIMS if c.key == "003.5")
    a = claim.assess(_FixedRecords(_deep_records()))
    assert a.verdict == "confirmed" and "th percentile" in a.prediction
    assert claim.assess(_FixedRecords(_deep_records(q_status="refuted"))).verdict == "refuted"
    assert claim.assess(_FixedRecords(_deep_records(mf_status="confirmed"))).verdict == "refuted"
    assert claim.assess(_FixedRecords(_deep_records(q_status="inconclusive"))).verdict == "explained"
    law = sc_finite.predict_distribution("tanh", "xavier_uniform", fan_in=256, depth=100,
                                         statistic="unit_std", quantity="activation", ddof=1)
    assert 0.005 < law.cdf(0.0452) < 0.995


def test_legend_defines_every_verdict_word():
    text = sc.seed_claims_markdown([], budget_name="quick")
    for verdict, meaning in sc.VERDICTS.items():
        assert f"- **{verdict}**: {meaning}" in text
    assert "prediction played no part" in sc.VERDICTS["consistent"]


def test_the_page_is_registered_by_the_repository_not_the_package():
    """``pyproject.toml`` lists the page; ``varprop derive --all`` finds it from the checkout."""
    assert sc.PAGE in repository_pages(ROOT)
    assert sc.PAGE.path == "seed-claims.md" and sc.PAGE.steps == len(sc.CLAIMS)
    assert not (ROOT / "src" / "varprop" / "documents" / "seed_claims.py").exists()


# -- the documented computations, against independent ones ------------------------------------

def _gauss_expect(f, mean, var):
    sd = math.sqrt(var)
    pdf = lambda z: math.exp(-((z - mean) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
    return integrate.quad(lambda z: f(z) * pdf(z), mean - 40 * sd, mean + 40 * sd, limit=400)[0]


def test_row_statistics_linear_is_the_population_std_of_n_units():
    mean, std = sc.row_statistics("linear", "standard_normal", fan_in=512)
    assert mean == pytest.approx(0.0, abs=1e-12)
    assert std == pytest.approx(math.sqrt(511), rel=1e-10)  # sqrt((n-1)/n * n)


def test_row_statistics_tanh_against_quadrature():
    _, std = sc.row_statistics("tanh", "lecun_normal", fan_in=512)
    second = _gauss_expect(lambda z: math.tanh(z) ** 2, 0.0, 1.0)
    assert std == pytest.approx(math.sqrt(511 / 512 * second), rel=1e-7)


def test_row_statistics_with_a_shared_shift_obeys_total_expectation():
    # U[0, a) weights: z_i = s + e_i, s ~ N(0, mu^2 n), e_i ~ N(0, n a^2/12); E[row mean] is
    # E relu(N(0, mu^2 n + n a^2 / 12)) by the law of total expectation.
    n, a = 512, math.sqrt(2 / 512)
    mean, std = sc.row_statistics("relu", varprop.init_scheme("uniform", low=0.0, high=a), fan_in=n)
    total = (a / 2) ** 2 * n + n * a * a / 12
    assert mean == pytest.approx(math.sqrt(total / (2 * math.pi)), rel=1e-6)
    # the row std given s: std of relu(N(s, v)); average by quadrature over s
    v, c = n * a * a / 12, (a / 2) ** 2 * n

    def row_std(s):
        m1 = _gauss_expect(lambda z: max(z, 0.0), s, v)
        m2 = _gauss_expect(lambda z: max(z, 0.0) ** 2, s, v)
        return math.sqrt((n - 1) / n * (m2 - m1 * m1))

    assert std == pytest.approx(_gauss_expect(row_std, 0.0, c), rel=1e-3)


def test_overflow_distribution_against_a_scalar_monte_carlo():
    # ||x_l||^2 is ||x_0||^2 times a product of chi-square(n) variables (Gaussian weights); the
    # first overflow is where the largest |entry| ~ N(0, ||x_{l-1}||^2) exceeds float32's max.
    n, runs = 100, 20000
    rng = np.random.default_rng(7)
    log_s = np.log(rng.chisquare(n, size=runs))
    first = np.full(runs, -1)
    log_max = math.log(sc.FLOAT32_MAX)
    for l in range(1, 60):
        z = np.abs(rng.standard_normal((runs, n))).max(axis=1)
        over = (np.log(z) + 0.5 * log_s > log_max) & (first < 0)
        first[over] = l - 1
        log_s = log_s + np.log(rng.chisquare(n, size=runs))
    dist = sc.overflow_distribution(n)
    for index in (37, 38):
        assert dist.get(index, 0.0) == pytest.approx(np.mean(first == index), abs=0.02)
    assert sc.overflow_index(256) == 31


def test_seed_loop_is_seeded_and_reproduces_the_float32_underflow():
    a = sc.seed_loop(100, runs=3, seed=5, weight_scale=0.05)
    b = sc.seed_loop(100, runs=3, seed=5, weight_scale=0.05)
    assert a == b
    assert a["first_nan"] == {"100": 3}          # never NaN ...
    assert a["row_std_zero_fraction"] == 1.0     # ... but float32's std prints 0
    assert 1e-33 < a["median_row_std64"] < 1e-28  # while the entries are about 0.5**100


@pytest.mark.parametrize(("fn", "kwargs"), [(sc.row_statistics, {"activation_": "relu", "init": "he_normal", "fan_in": 0}),
                                            (sc.overflow_distribution, {"fan_in": -1})])
def test_bad_input_names_the_argument(fn, kwargs):
    with pytest.raises(ValueError, match="fan_in"):
        fn(**kwargs)


def test_overflow_verdict_confirms_only_the_most_likely_printed_index():
    # 003.1: the model's first overflow is 31, but the cell's NaN-of-the-norm is 32 in most runs
    loop = {"first_nan": {"31": 70, "32": 130}}
    assert sc._overflow_verdict(True, 31, 31, loop) == "explained"
    assert sc._overflow_verdict(True, 32, 32, loop) == "confirmed"
    assert sc._overflow_verdict(False, 31, 31, loop) == "refuted"
