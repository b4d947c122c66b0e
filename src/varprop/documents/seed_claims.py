r"""The seeds' claims, as data, and the code that checks each one (``derivations/seed-claims.md``).

The texts in ``shared/seeds/`` (notebooks and blog posts) make numeric experiments and formula
claims.  Each is catalogued here with its seed file, the cell or passage, a short quote and what
the seed printed or stated.  Every number varprop puts next to it is computed when the document
is generated:

* **predictions** with :func:`varprop.predict_variance` / :func:`varprop.propagate` (and, where
  the cell prints a different statistic, a small documented computation on top of them:
  :func:`row_statistics` for the across-unit mean and standard deviation of one sample,
  :func:`overflow_index` for the first layer a float32 run stops being finite);
* **Monte Carlo** with :func:`varprop.simulate` / :func:`varprop.verify` at a fixed seed, or, where
  the cell's statistic depends on float32 arithmetic (the first NaN layer, a standard deviation
  that underflows), a seeded NumPy loop that repeats the cell exactly (:func:`seed_loop`);
* the **verdict**, which says what was tested: ``confirmed`` (the seed's number or formula was
  compared with varprop's prediction -- an exact computation, or a range built around the
  prediction -- and agrees, with a simulation agreeing with the prediction where one is run),
  ``consistent`` (the seed's number lies inside the range that the simulation gives; the
  prediction played no part in the test, e.g. a finite-width statistic the mean field does not
  predict exactly), ``refuted`` (the seed's number or formula disagrees with what was tested),
  ``explained`` (the number is right but the seed's reading of it is not, or it measures
  something other than what it says).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import sympy as sp

from varprop._util.validation import check_positive_int
from varprop.components.activations import X, activation, resolve_activation
from varprop.components.schemes import init_scheme
from varprop.documents.store import (
    Budget,
    MonteCarloStore,
    fmt,
    mc_first_nonfinite,
    mc_per_replicate,
    mc_verify,
)
from varprop.documents.store import budget as _budget
from varprop.theory.predict import predict_variance, propagate

__all__ = ["SeedClaim", "Assessment", "CLAIMS", "SEED_FILES", "VERDICTS", "row_statistics", "overflow_index",
           "overflow_distribution",
           "seed_loop", "assess_claims", "seed_claims_markdown", "FLOAT32_MAX"]

Verdict = Literal["confirmed", "consistent", "refuted", "explained"]

#: The verdicts and what each means (the legend of ``seed-claims.md``).
VERDICTS: dict[str, str] = {
    "confirmed": "the seed's number or formula was compared with varprop's prediction (an exact "
                 "computation, or a range built around the prediction) and agrees; where a "
                 "simulation is run, it agrees with the prediction too",
    "consistent": "the seed's number lies inside the range the simulation gives; varprop's "
                  "prediction played no part in the test (consistent with simulation, not a "
                  "confirmation of the prediction)",
    "refuted": "the seed's number or formula disagrees with what was tested (the prediction, or "
               "for a consistency check the simulation)",
    "explained": "the number is right but the seed's reading of it is not (or the cell measures "
                 "something other than what the text says)",
}

#: Largest finite float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)

#: The seed files and what they are (from ``shared/seeds/README.md``).
SEED_FILES: dict[str, str] = {
    "000_882fce57e92f7e4d": "NumPy notebook: W^L with 1.5 and 0.5 on the diagonal, variance "
                            "scaling 1/n and 2/n, a statement of Xavier's variance",
    "001_2bbe60fd5150b093": "TensorFlow notebook: 100 layers of N(0,1) weights turning NaN, "
                            "scaling, std ~ sqrt(512), tanh and \"Xavier\" from U[0,1) weights, ReLU",
    "002_2821d1098bf677d6": "Blog post: forward/backward equations, sigmoid derivative <= 0.25, "
                            "ReLU, an init table",
    "003_43ddb6add2c3f97b": "Blog post (PyTorch): 256-wide nets overflowing, variance 256, "
                            "scaling by 1/16, Xavier uniform + tanh over 100 layers, He, zero init",
    "004_d77e2ffadb0157d7": "Lecture notebook: the backward product of activation derivatives, "
                            "why sigmoid vanishes",
}


@dataclass(frozen=True)
class Assessment:
    """What varprop says about one claim (all text already formatted)."""

    seed_says: str
    prediction: str
    montecarlo: str
    verdict: Verdict
    why: str


@dataclass(frozen=True)
class SeedClaim:
    """One claim of a seed text.

    Attributes
    ----------
    key : str
        Stable identifier, ``"<seed number>.<k>"`` (e.g. ``"001.3"``).
    seed : str
        The seed file's name without ``.txt`` (e.g. ``"001_2bbe60fd5150b093"``).
    where : str
        The cell (``In [156]``) or passage.
    title : str
        A short description.
    quote : str
        A short quote of the seed.
    kind : {"experiment", "formula"}
    assess : callable
        ``assess(context) -> Assessment``; Monte Carlo goes through ``context.montecarlo`` so it
        is recorded (and can be re-rendered without re-running it).
    """

    key: str
    seed: str
    where: str
    title: str
    quote: str
    kind: Literal["experiment", "formula"]
    assess: Callable[[_Context], Assessment]


@dataclass
class _Context:
    store: MonteCarloStore
    budget: Budget

    def montecarlo(self, key: str, compute: Callable[[], Any]) -> Any:
        return self.store.get(f"seed-claims/{key}", compute)


def _seed_of(key: str) -> int:
    """A fixed seed per Monte Carlo record (stable across runs and Python versions)."""
    return zlib.crc32(key.encode()) % (2**31)


# ----------------------------------------------------------------------------------------------
# small documented computations on top of the public API
# ----------------------------------------------------------------------------------------------

_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(48)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()


def row_statistics(activation_: Any, init: Any, *, fan_in: int, depth: int = 1,
                   input_variance: float = 1.0, ddof: int = 0) -> tuple[float, float]:
    r"""Predicted mean over runs of the across-unit mean and standard deviation of one sample.

    The notebooks print ``reduce_mean(y)`` and ``reduce_std(y)`` of a single row ``y`` (the
    ``n`` units of one sample), averaged over runs.  In the mean field of
    :func:`varprop.propagate`, the pre-activations of layer :math:`L` are jointly Gaussian with
    mean :math:`m`, second moment :math:`D` and cross moment :math:`C` (:math:`C \ne m^2` when the
    weights have a non-zero mean: the units share :math:`\mu_w\sum_j a_j`).  Write
    :math:`z_i = s + e_i` with a shared :math:`s \sim N(m, C - m^2)` and independent
    :math:`e_i \sim N(0, D - C)`.  Given :math:`s` the row mean is
    :math:`g_1(s) = E\phi(N(s, D - C))` and the row variance (``ddof`` as in NumPy) has mean
    :math:`\frac{n-1}{n-\mathrm{ddof}}(g_2(s) - g_1(s)^2)`; the prediction averages
    :math:`g_1(s)` and the square root of the row variance over :math:`s` (Gauss-Hermite, 48
    nodes).  Assumptions: the mean field (the random scale :math:`\|a_{L-1}\|` of one network is
    replaced by its mean) and :math:`E\sqrt{V} \approx \sqrt{EV}` for the row variance
    :math:`V`; both are :math:`O(1/n)` effects at depth 1.

    Returns
    -------
    (mean, std) : tuple of float
    """
    act = resolve_activation(activation_)
    n = check_positive_int("fan_in", fan_in)
    p = propagate(act, init, fan_in=n, depth=depth, input_variance=input_variance)
    m, d, c = float(p.preact_mean[-1]), float(p.preact_second[-1]), float(p.preact_cross[-1])
    shared = max(c - m * m, 0.0)
    own = max(d - c, 0.0)
    factor = (n - 1) / (n - ddof)
    mean = std = 0.0
    for node, weight in zip(_GH_NODES, _GH_WEIGHTS):
        s = m + math.sqrt(shared) * float(node)
        g1, g2, _, _ = act.gaussian_moments(s, own)
        mean += weight * g1
        std += weight * math.sqrt(max(factor * (g2 - g1 * g1), 0.0))
    if abs(mean) <= 1e-12 * (math.sqrt(d) + abs(m)):  # a zero mean up to quadrature round-off
        mean = 0.0
    return float(mean), float(std)


def overflow_distribution(fan_in: int, *, weight_std: float = 1.0, input_variance: float = 1.0,
                          max_depth: int = 1000) -> dict[int, float]:
    r"""Predicted distribution of the zero-based layer index at which a linear float32 net of
    width ``fan_in`` with :math:`N(0, s^2)` weights first produces a non-finite value.

    The mean of the squared norm follows the variance recursion,
    :math:`E\|x_l\|^2 = n q_l` with :math:`q_l = (n s^2)^l q_0`
    (:func:`varprop.predict_variance`).  Around it, for Gaussian weights,
    :math:`\|x_l\|^2 = \|x_0\|^2\prod_{k\le l}\chi^2_{n,k}\,s^2` exactly, so
    :math:`\ln\|x_{l}\|^2` is a sum of :math:`l+1` independent :math:`\ln\chi^2_n` terms (mean
    :math:`\psi(n/2)+\ln 2`, variance :math:`\psi'(n/2)`).  Given :math:`\|x_{l-1}\|^2 = S`,
    layer :math:`l`'s :math:`n` entries are :math:`N(0, s^2 S)` and overflow with probability
    :math:`1-(1-\mathrm{erfc}(M/\sqrt{2s^2S}))^n`, :math:`M` the largest float32.  The variance
    grows so fast that the first overflow is, to excellent accuracy, the first layer whose
    overflow probability (averaged over the log-normal :math:`S`, Gauss-Hermite) is reached:
    :math:`P(\text{index} \le l-1) = P_l(\text{overflow})`.
    """
    from scipy.special import log_ndtr, polygamma, psi

    n = check_positive_int("fan_in", fan_in)
    scheme = init_scheme("normal", std=weight_std)
    gain = predict_variance("linear", scheme, fan_in=n, depth=1, quantity="preactivation")
    s2 = gain / n  # the weight variance
    log_m = math.log(FLOAT32_MAX)
    mean1 = float(psi(n / 2) + math.log(2.0))
    var1 = float(polygamma(1, n / 2))
    out: dict[int, float] = {}
    previous = 0.0
    for l in range(1, max_depth + 1):
        # ln ||x_{l-1}||^2 = ln q_0 + sum of l ln chi^2_n terms (+ (l-1) ln s^2)
        loc = math.log(input_variance) + l * mean1 + (l - 1) * math.log(s2)
        sd = math.sqrt(l * var1)
        prob = 0.0
        for node, weight in zip(_GH_NODES, _GH_WEIGHTS):
            log_scale = 0.5 * (math.log(s2) + loc + sd * float(node))  # ln sd of the entries
            t = math.exp(log_m - log_scale)
            log_tail = math.log(2.0) + float(log_ndtr(-t))  # ln P(|z| > M)
            p_one = -math.expm1(n * math.log1p(-math.exp(log_tail))) if log_tail > -700 else 0.0
            prob += weight * p_one
        cumulative = max(prob, previous)
        if cumulative - previous > 1e-4:
            out[l - 1] = cumulative - previous
        previous = cumulative
        if cumulative > 1 - 1e-6:
            break
    return out


def overflow_index(fan_in: int, **kwargs: Any) -> int | None:
    """The most likely index of :func:`overflow_distribution` (``None`` if it never overflows)."""
    dist = overflow_distribution(fan_in, **kwargs)
    return max(dist.items(), key=lambda kv: kv[1])[0] if dist else None


def seed_loop(width: int, *, runs: int, seed: int, weight_scale: float = 1.0,
              repeated: bool = False, layers: int = 100,
              statistic: Literal["mean", "norm"] = "mean") -> dict[str, Any]:
    r"""Repeat a notebook's float32 loop ``x = x @ W`` exactly, ``runs`` times.

    ``x`` starts as one row of :math:`N(0, 1)` entries; each layer multiplies by an
    :math:`N(0, 1)` matrix times ``weight_scale`` (a fresh one per layer, or with
    ``repeated=True`` the same matrix every layer, as in ``003``'s PyTorch loop).  Records, per
    run, the first zero-based layer index at which ``statistic`` (``mean`` of the row as in
    ``001`` In [156], or its Euclidean ``norm`` as in ``003``) is NaN (``layers`` if never), and
    the float32 row mean and (population) standard deviation after the last layer.  All
    arithmetic is float32 through BLAS, like the notebooks' (whether an overflow shows up as NaN
    in the same layer or the next depends on the order of the sums, hence on BLAS).
    """
    rng = np.random.default_rng(seed)
    first_nan = np.full(runs, layers, dtype=np.int64)
    row_mean = np.zeros(runs)
    row_std = np.zeros(runs, dtype=np.float32)
    row_std64 = np.zeros(runs)
    scale = np.float32(weight_scale)
    with np.errstate(all="ignore"):
        for r in range(runs):
            x = rng.standard_normal((1, width), dtype=np.float32)
            w = rng.standard_normal((width, width), dtype=np.float32) * scale
            for i in range(layers):
                if not repeated and i:
                    w = rng.standard_normal((width, width), dtype=np.float32) * scale
                x = x @ w
                stat = x.mean(dtype=np.float32) if statistic == "mean" else \
                    np.sqrt(np.sum(x * x, dtype=np.float32))
                if np.isnan(stat):
                    first_nan[r] = i
                    break
            row_mean[r] = float(x.mean(dtype=np.float32))
            row_std[r] = x.std(dtype=np.float32)
            row_std64[r] = float(x.astype(np.float64).std())
    values, counts = np.unique(first_nan, return_counts=True)
    finite = np.isfinite(row_mean)
    return {"first_nan": {str(int(v)): int(c) for v, c in zip(values, counts)},
            "runs": int(runs),
            "mean_abs_row_mean": float(np.mean(np.abs(row_mean[finite]))) if finite.any() else math.nan,
            "row_std_zero_fraction": float(np.mean(row_std == 0)),
            "median_row_std64": float(np.median(row_std64)),
            "row_std64_q05": float(np.quantile(row_std64, 0.05)),
            "row_std64_q95": float(np.quantile(row_std64, 0.95))}


def _replicate_summary(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=float)
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)), "replicates": int(x.size),
            "q005": float(np.quantile(x, 0.005)), "q995": float(np.quantile(x, 0.995)),
            "median": float(np.median(x))}


def _range_of_average(rec: dict[str, float], runs: int, center: float) -> tuple[float, float]:
    """99% range, around the prediction ``center``, for an average over ``runs`` runs of a
    per-run statistic whose spread ``rec["sd"]`` comes from the simulation (CLT; the simulation's
    own error is added)."""
    half = 2.576 * rec["sd"] * math.sqrt(1.0 / runs + 1.0 / rec["replicates"])
    return center - half, center + half


def _agrees(rec: dict[str, float], predicted: float, rel: float = 0.02) -> bool:
    """The simulated mean agrees with the prediction (99% CI, plus ``rel`` for the mean field)."""
    half = 2.576 * rec["sd"] / math.sqrt(rec["replicates"])
    return abs(rec["mean"] - predicted) <= half + rel * abs(predicted)


def _row_mc(ctx: _Context, key: str, act: Any, init: Any, *, fan_in: int, depth: int = 1
            ) -> dict[str, Any] | None:
    """Monte Carlo of the across-unit mean and std of one sample (``simulate``, one row)."""
    def compute() -> dict[str, Any]:
        sims = mc_per_replicate(act, init, fan_in=fan_in, depth=depth,
                                statistics=("activation_mean", "activation_unit_std"),
                                replicates=ctx.budget.seed_replicates, seed=_seed_of(key))
        return {"row_mean": _replicate_summary(sims["activation_mean"][:, -1]),
                "row_std": _replicate_summary(sims["activation_unit_std"][:, -1])}
    return ctx.montecarlo(key, compute)


def _missing() -> str:
    return "(no Monte Carlo record: regenerate with `varprop derive --all`)"


def _in(x: float, lo: float, hi: float) -> bool:
    return lo <= x <= hi


def _verify_text(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return _missing()
    return (f"{fmt(rec['estimate'])} [{fmt(rec['low'])}, {fmt(rec['high'])}] over "
            f"{rec['replicates']} networks: {rec['status']}")


def _verify(ctx: _Context, key: str, act: Any, init: Any, *, fan_in: int, depth: int,
            quantity: str) -> dict[str, Any] | None:
    return ctx.montecarlo(key, lambda: mc_verify(
        act, init, fan_in=fan_in, depth=depth, quantity=quantity,
        replicates=ctx.budget.replicates, budget=ctx.budget.verify_budget, seed=_seed_of(key)))


def _status_ok(rec: dict[str, Any] | None) -> bool:
    return rec is not None and rec["status"] == "confirmed"


# ----------------------------------------------------------------------------------------------
# the claims
# ----------------------------------------------------------------------------------------------

def _c000_power(base: sp.Rational, printed: float) -> Callable[[_Context], Assessment]:
    def assess(ctx: _Context) -> Assessment:
        exact = base ** 100
        w = np.diag([float(base)] * 2)
        numpy_value = float(np.power(w, 100)[0, 0])
        ok = math.isclose(float(exact), printed, rel_tol=1e-8) and numpy_value == float(exact)
        return Assessment(
            seed_says=fmt(printed, 9),
            prediction=f"$({sp.latex(base)})^{{100}} = {fmt(float(exact), 9)}$",
            montecarlo=f"not random: `np.power` in float64 gives {fmt(numpy_value, 9)}",
            verdict="confirmed" if ok else "refuted",
            why=("The number is right (as a toy), but `np.power` is elementwise: it equals the matrix power "
                 "$W^{100}$ only because $W$ is diagonal, and a network does not multiply one "
                 "fixed matrix.  With random weights the relevant factor per layer is the "
                 "variance gain $n\\sigma_w^2 E[\\phi'^2]$, not the size of the entries (see "
                 "the variance-scaling claim below)."))
    return assess


def _c000_scaling(ctx: _Context) -> Assessment:
    lin = _verify(ctx, "000.3/linear", "linear", "lecun_normal", fan_in=100, depth=10,
                  quantity="preactivation")
    rel = _verify(ctx, "000.3/relu", "relu", "he_normal", fan_in=100, depth=10,
                  quantity="preactivation")
    p_lin = predict_variance("linear", "lecun_normal", fan_in=100, depth=10, per_layer=True,
                             quantity="preactivation")
    p_rel = predict_variance("relu", "he_normal", fan_in=100, depth=10, per_layer=True,
                             quantity="preactivation")
    steady = bool(np.allclose(p_lin, p_lin[0]) and np.allclose(p_rel, p_rel[0]))
    ok = steady and _status_ok(lin) and _status_ok(rel)
    return Assessment(
        seed_says="variance $1/n^{[L-1]}$ (or $2/n^{[L-1]}$ for ReLU) keeps the scale",
        prediction=(f"linear + $N(0, 1/n)$: $\\mathrm{{Var}}\\,z_l$ = {fmt(p_lin[0])} at every "
                    f"layer; ReLU + $N(0, 2/n)$: {fmt(p_rel[0])} at every layer (width 100)"),
        montecarlo=(f"layer 10, linear: {_verify_text(lin)}; ReLU: {_verify_text(rel)}"),
        verdict="confirmed" if ok else "refuted",
        why="$q_l = n\\sigma_w^2 E[\\phi(z)^2]$: $E[z^2] = q$ for linear, $q/2$ for ReLU, so "
            "$\\sigma_w^2 = 1/n$ resp. $2/n$ makes the per-layer factor 1 (LeCun 1998, He et al. 2015).")


_C000_MATRIX = np.array([[-0.01114848, 0.1224484, 0.10872784],
                         [-0.04284195, 0.01937481, -0.02973807],
                         [-0.04492172, -0.01220667, 0.134523],
                         [-0.03760996, 0.03397368, -0.11037234],
                         [0.06605986, 0.09200254, 0.11398231]])


def _c000_sample(ctx: _Context) -> Assessment:
    from scipy import stats

    scheme = init_scheme("lecun_normal")
    _, var = scheme.moments(100, 100)
    x = _C000_MATRIX.ravel()
    k = x.size
    s2 = float(np.mean(x * x))  # zero-mean by construction: E w^2 = Var w
    lo, hi = (float(stats.chi2.ppf(p, k)) * var / k for p in (0.005, 0.995))
    ok = _in(s2, lo, hi)
    return Assessment(
        seed_says="15 printed weights of `randn(5, 3) * sqrt(1/100)`",
        prediction=f"$\\sigma_w^2 = 1/n = {fmt(var)}$ ($\\sigma_w = {fmt(math.sqrt(var))}$)",
        montecarlo=(f"the printed entries: mean square {fmt(s2)}; 99% range for 15 draws "
                    f"[{fmt(lo)}, {fmt(hi)}] (chi-square)"),
        verdict="confirmed" if ok else "refuted",
        why="The printed sample is consistent with $N(0, 1/100)$ weights.")


def _c000_xavier(ctx: _Context) -> Assessment:
    xav = init_scheme("xavier_normal")
    n_in, n_out = sp.symbols("n_in n_out", positive=True)
    v = sp.simplify(xav.weight_variance())
    claimed = sp.sqrt(1 / sp.Symbol("n_in", positive=True))
    equal = sp.simplify(v.subs({sp.Symbol(str(s), positive=True): n_in for s in v.free_symbols})
                        - claimed) == 0 if v.free_symbols else False
    wrong = init_scheme("normal", std=100 ** -0.25)  # variance sqrt(1/n) at n = 100
    factor = predict_variance("linear", wrong, fan_in=100, depth=1, quantity="preactivation")
    rec = _verify(ctx, "000.5/linear", "linear", wrong, fan_in=100, depth=5,
                  quantity="preactivation")
    pred5 = predict_variance("linear", wrong, fan_in=100, depth=5, quantity="preactivation")
    return Assessment(
        seed_says="Xavier: variance $\\sqrt{1/n^{[L-1]}}$",
        prediction=(f"Xavier's variance is ${sp.latex(v)}$ (= $1/n$ when $n_{{in}} = n_{{out}}$), "
                    f"not $\\sqrt{{1/n}}$; with $\\sigma_w^2 = \\sqrt{{1/n}}$ a linear layer "
                    f"multiplies the variance by $\\sqrt n$ = {fmt(factor)} at $n = 100$: "
                    f"{fmt(pred5)} after 5 layers"),
        montecarlo=f"$\\sigma_w^2 = 0.1$, width 100, layer 5: {_verify_text(rec)}",
        verdict="refuted" if not equal else "confirmed",
        why="$\\sqrt{1/n}$ is LeCun's standard deviation, not a variance; Glorot & Bengio (2010) "
            "set $\\mathrm{Var}\\,W = 2/(n_{in} + n_{out})$.  Taken literally the stated variance "
            "explodes the signal by $\\sqrt n$ per layer.")


def _c001_input(ctx: _Context) -> Assessment:
    def compute() -> dict[str, Any]:
        rng = np.random.default_rng(_seed_of("001.1"))
        x = rng.standard_normal((ctx.budget.seed_replicates, 100), dtype=np.float32)
        return {"row_mean": _replicate_summary(x.mean(axis=1, dtype=np.float64)),
                "row_std": _replicate_summary(x.astype(np.float64).std(axis=1))}
    rec = ctx.montecarlo("001.1", compute)
    pred_mean, pred_std = 0.0, math.sqrt(99 / 100)
    if rec is None:
        mc, ok = _missing(), False
    else:
        m, s = rec["row_mean"], rec["row_std"]
        ok = _in(-0.03994225, m["q005"], m["q995"]) and _in(1.0157017, s["q005"], s["q995"])
        mc = (f"{m['replicates']} rows: mean 99% range [{fmt(m['q005'])}, {fmt(m['q995'])}], "
              f"std 99% range [{fmt(s['q005'])}, {fmt(s['q995'])}]")
    return Assessment(
        seed_says="mean -0.03994, std 1.0157 (one row of 100)",
        prediction=f"mean {fmt(pred_mean)} (sd 0.1), std $\\approx\\sqrt{{99/100}}$ = {fmt(pred_std)}",
        montecarlo=mc, verdict="consistent" if ok else "refuted",
        why="A single draw; both numbers are typical for 100 standard normal entries (tested "
            "against the simulated 99% ranges, not against the prediction).")


def _nan_record(ctx: _Context, key: str, **kwargs: Any) -> dict[str, Any] | None:
    return ctx.montecarlo(key, lambda: seed_loop(runs=ctx.budget.loop_runs, seed=_seed_of(key),
                                                 **kwargs))


def _dist_text(rec: dict[str, Any]) -> str:
    runs = rec["runs"]
    parts = [f"{k}: {100 * c / runs:.0f}%" for k, c in
             sorted(rec["first_nan"].items(), key=lambda kv: int(kv[0]))]
    return f"first NaN index over {runs} runs: " + ", ".join(parts)


def _mode(rec: dict[str, Any]) -> int:
    return int(max(rec["first_nan"].items(), key=lambda kv: (kv[1], -int(kv[0])))[0])


def _c001_nan_end(ctx: _Context) -> Assessment:
    rec = _nan_record(ctx, "001.2", width=100, statistic="mean")
    q100 = predict_variance("linear", "standard_normal", fan_in=100, depth=1,
                            quantity="preactivation") ** 100
    if rec is None:
        mc, ok = _missing(), False
    else:
        never = rec["first_nan"].get("100", 0)
        ok = q100 > FLOAT32_MAX and never == 0  # the prediction says overflow; the runs agree
        mc = f"{rec['runs'] - never} of {rec['runs']} float32 runs are NaN before layer 100"
    return Assessment(
        seed_says="after 100 layers of $N(0,1)$ 100x100 weights: mean and std are nan",
        prediction=(f"$\\mathrm{{Var}}\\,z_{{100}} = 100^{{100}}$ = {fmt(q100)}, far beyond "
                    f"float32's {fmt(FLOAT32_MAX)}: overflow to inf, then NaN"),
        montecarlo=mc, verdict="confirmed" if ok else "refuted",
        why="Each layer multiplies the variance by $n\\sigma_w^2 = 100$.")


def _percent_text(dist: dict[Any, float], total: float = 1.0) -> str:
    items = sorted(((int(k), v) for k, v in dist.items() if str(k) != "never"))
    text = ", ".join(f"{k}: {100 * v / total:.0f}%" for k, v in items)
    never = dist.get("never", 0)
    return text + (f", never: {100 * never / total:.0f}%" if never else "")


def _overflow_claim(ctx: _Context, key: str, *, width: int, repeated: bool,
                    statistic: Literal["mean", "norm"], printed: int
                    ) -> tuple[str, str, bool, int, dict | None]:
    model = overflow_distribution(width)
    loop = _nan_record(ctx, key, width=width, repeated=repeated, statistic=statistic)
    engine = ctx.montecarlo(f"{key}/engine", lambda: mc_first_nonfinite(
        "linear", "standard_normal", fan_in=width, depth=60, replicates=ctx.budget.loop_runs * 2,
        seed=_seed_of(f"{key}/engine")))
    mode = max(model.items(), key=lambda kv: kv[1])[0]
    prediction = (f"first non-finite entry at index {_percent_text(model)} (variance recursion "
                  f"$q_l = {width}^l$ with the log-normal spread of $\\lVert x_l\\rVert^2$ at width {width}, "
                  f"against float32's {fmt(FLOAT32_MAX)})")
    if loop is None or engine is None:
        return prediction, _missing(), False, mode, loop
    runs = loop["runs"]
    mc = (f"`simulate(..., dtype=\"float32\")`, first non-finite entry: "
          f"{_percent_text(engine, sum(engine.values()))}; the cell's own loop (float32, BLAS, "
          f"{runs} runs), first NaN {statistic}: {_percent_text(loop['first_nan'], runs)}")
    ok = loop["first_nan"].get(str(printed), 0) / runs >= 0.2 and abs(mode - printed) <= 1
    return prediction, mc, ok, mode, loop


def _overflow_verdict(ok: bool, printed: int, model_mode: int, loop: dict | None) -> str:
    """``confirmed`` only when the printed index is both the model's and the cell statistic's
    most likely value; ``explained`` when it is a common outcome of the cell's statistic that the
    model accounts for (one layer apart); else ``refuted``."""
    if not ok or loop is None:
        return "refuted"
    counts = loop["first_nan"]
    loop_mode = int(max(counts, key=lambda k: counts[k]))
    return "confirmed" if printed == model_mode == loop_mode else "explained"


def _c001_nan_index(ctx: _Context) -> Assessment:
    prediction, mc, ok, mode, loop = _overflow_claim(ctx, "001.3", width=100, repeated=False,
                                                     statistic="mean", printed=37)
    return Assessment(
        seed_says="the mean first turns NaN at loop index 37",
        prediction=prediction, montecarlo=mc, verdict=_overflow_verdict(ok, 37, mode, loop),
        why="The standard deviation reaches $10^{38}$ at index 37, right at float32's edge: the "
            "entries themselves overflow at index 38 in most runs, but the float32 *mean* of 100 "
            "entries of size $10^{37..38}$ overflows in its partial sums, to $+\\infty$ in one "
            "and $-\\infty$ in another, giving NaN one layer earlier.  The notebook's 37 is that "
            "reduction, not yet the activations.")


def _c001_vanish(ctx: _Context) -> Assessment:
    rec = _nan_record(ctx, "001.4", width=100, weight_scale=0.05, statistic="mean")
    scheme = init_scheme("normal", std=0.05)
    per = predict_variance("linear", scheme, fan_in=100, depth=1, quantity="preactivation")
    sd100 = math.sqrt(per) ** 100
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    underflows = sd100 ** 2 < tiny
    if rec is None:
        mc, ok = _missing(), False
    else:
        ok = underflows and rec["row_std_zero_fraction"] >= 0.5
        mc = (f"{rec['runs']} float32 runs: the float32 std prints 0 in "
              f"{100 * rec['row_std_zero_fraction']:.0f}% of them, while the entries have median "
              f"std {fmt(rec['median_row_std64'])} (computed in float64) and mean |row mean| "
              f"{fmt(rec['mean_abs_row_mean'])}")
    return Assessment(
        seed_says="mean 1.0689624e-32, std 0.0 (\"the activations get vanished to zero\")",
        prediction=(f"per layer $n\\sigma_w^2 = 100\\cdot 0.05^2$ = {fmt(per)}: std after 100 "
                    f"layers $0.5^{{100}}$ = {fmt(sd100)}, not 0; its square {fmt(sd100 ** 2)} is "
                    f"below float32's smallest subnormal {fmt(tiny)}"),
        montecarlo=mc, verdict="explained" if ok else "refuted",
        why="The activations are about $10^{-30}$, not zero: `reduce_std` squares them in float32, "
            "the squares underflow to 0, and it prints 0.0.  The mean, about std/10, is what is "
            "left to see.  The vanishing itself (factor 0.25 per layer in variance) is real.")


def _cell_claim(key: str, act: str, init_factory: Callable[[], Any], *, fan_in: int,
                printed_mean: float, printed_std: float, runs: int, seed_says: str,
                why: str, explained: bool = False, extra: Callable[[], str] | None = None
                ) -> Callable[[_Context], Assessment]:
    def assess(ctx: _Context) -> Assessment:
        init = init_factory()
        pm, ps = row_statistics(act, init, fan_in=fan_in)
        rec = _row_mc(ctx, key, act, init, fan_in=fan_in)
        if rec is None:
            mc, ok = _missing(), False
        else:
            mlo, mhi = _range_of_average(rec["row_mean"], runs, pm)
            slo, shi = _range_of_average(rec["row_std"], runs, ps)
            ok = (_in(printed_mean, mlo, mhi) and _in(printed_std, slo, shi)
                  and _agrees(rec["row_mean"], pm) and _agrees(rec["row_std"], ps))
            mc = (f"{rec['row_std']['replicates']} networks: mean {fmt(rec['row_mean']['mean'])}, "
                  f"std {fmt(rec['row_std']['mean'])} (per-run spread {fmt(rec['row_mean']['sd'])} "
                  f"and {fmt(rec['row_std']['sd'])}); 99% range of an average over {runs} runs "
                  f"around the prediction: mean [{fmt(mlo)}, {fmt(mhi)}], std [{fmt(slo)}, {fmt(shi)}]")
        prediction = f"row mean {fmt(pm)}, row std {fmt(ps)}"
        if extra is not None:
            prediction += "; " + extra()
        verdict: Verdict = ("explained" if explained else "confirmed") if ok else "refuted"
        return Assessment(seed_says=seed_says, prediction=prediction, montecarlo=mc,
                          verdict=verdict, why=why)
    return assess


def _uniform_note(high: float, n: int = 512) -> Callable[[], str]:
    def text() -> str:
        s = init_scheme("uniform", low=0.0, high=high)
        mu, var = s.moments(n, n)
        return (f"weights: mean {fmt(mu)}, variance {fmt(var)} (= $1/(12\\cdot 512)$ "
                f"x {fmt(var * 12 * 512)}); Xavier needs mean 0 and variance {fmt(1 / n)}")
    return text


def _c001_formula(ctx: _Context) -> Assessment:
    n_in, L = sp.symbols("n_in L", positive=True)
    q1 = predict_variance("linear", "standard_normal", fan_in=512, depth=1, quantity="preactivation")
    q1_256 = predict_variance("linear", "standard_normal", fan_in=256, depth=1, quantity="preactivation")
    layers = 1  # the cell has one layer: "variance = num_layers" would be 1 for both widths
    return Assessment(
        seed_says="\"mean = 0, variance = num_layers\"; \"scaling the weight matrix by "
                  "$\\sqrt{num\\ layers}$\"",
        prediction=(f"$\\mathrm{{Var}}\\,y_i = n_{{in}}\\sigma_w^2 q_0$: {fmt(q1)} for "
                    f"$n_{{in}} = 512$, {fmt(q1_256)} for 256, whatever the number of layers "
                    f"(the cell has one layer)"),
        montecarlo="see In [158] and `003` (variance 256)",
        verdict="confirmed" if q1 == layers and q1_256 == layers else "refuted",
        why="The sum runs over the $n_{in}$ inputs of one unit, not over layers: the notebook's "
            "512 is the width.  Scale the weights by $1/\\sqrt{n_{in}}$.")


def _c002_sigmoid_bound(ctx: _Context) -> Assessment:
    act = activation("sigmoid")
    x = sp.Symbol("z", real=True)
    d = act.derivative.subs(X, x)  # sigma'(z), in the symbol z
    crit = sp.solve(sp.diff(d, x), x)
    value = sp.nsimplify(sp.simplify(d.subs(x, 0)))
    at_far = [float(d.subs(x, v)) for v in (-3, 3)]
    ok = value == sp.Rational(1, 4) and crit == [0] and all(v < 0.25 for v in at_far)
    return Assessment(
        seed_says="$g'(z) = g(z)(1-g(z))$ ranges from 0 to 0.25",
        prediction=(f"$\\sigma'(z) = {sp.latex(sp.simplify(d))}$ has its only critical point at "
                    f"$z = {sp.latex(crit[0]) if crit else '?'}$ with value ${sp.latex(value)}$"),
        montecarlo="not random (SymPy)", verdict="confirmed" if ok else "refuted",
        why="$\\sigma' = \\sigma(1-\\sigma)$ is largest where $\\sigma = 1/2$.  But the bound alone "
            "does not say how fast gradients vanish: see the next claims.")


def _sigmoid_product(ctx: _Context, key: str, seed_says: str) -> Assessment:
    n, depth = 256, 10
    rec = _verify(ctx, f"{key}/lecun", "sigmoid", "lecun_normal", fan_in=n, depth=depth,
                  quantity="gradient")
    pred = predict_variance("sigmoid", "lecun_normal", fan_in=n, depth=depth, quantity="gradient",
                            per_layer=True)
    chi = float((pred[0] / pred[-1]) ** (1.0 / (depth - 1))) if pred[-1] else float("nan")
    g2 = _sigmoid_critical_nsw2()
    crit = init_scheme("normal", std=math.sqrt(g2 / n))
    pred_c = predict_variance("sigmoid", crit, fan_in=n, depth=depth, quantity="gradient")
    rec_c = _verify(ctx, f"{key}/critical", "sigmoid", crit, fan_in=n, depth=depth,
                    quantity="gradient")
    ok = _status_ok(rec) and _status_ok(rec_c)
    g50 = predict_variance("sigmoid", "lecun_normal", fan_in=n, depth=50, quantity="gradient")
    return Assessment(
        seed_says=seed_says,
        prediction=(f"LeCun normal, width {n}: $\\chi = n\\sigma_w^2 E[\\sigma'(z)^2]$ about "
                    f"{fmt(chi)} per layer on average (not $0.25^2$); gradient variance "
                    f"at the input {fmt(float(pred[0]))} after {depth} layers, {fmt(g50)} after 50. "
                    f"With $n\\sigma_w^2$ = {fmt(g2)} ($\\chi = 1$ at the fixed point) it does not "
                    f"vanish: {fmt(pred_c)} after {depth} layers (including the first layer's "
                    f"factor $n\\sigma_w^2$)"),
        montecarlo=f"LeCun: {_verify_text(rec)}; critical: {_verify_text(rec_c)}",
        verdict="explained" if ok else "refuted",
        why="The gradient does vanish with standard inits, but the per-layer factor is "
            "$n\\sigma_w^2 E[\\sigma'(z)^2]$: each weight is small, yet $n$ of them add up, and "
            "the weight scale can offset the derivatives completely (the critical "
            "$n\\sigma_w^2$ above).  \"Weights less than 1\" is not the mechanism.")


def _sigmoid_critical_nsw2() -> float:
    """:math:`n\\sigma_w^2` at which :math:`\\chi = n\\sigma_w^2 E[\\sigma'(z)^2] = 1` at the
    forward fixed point :math:`q^* = n\\sigma_w^2 E[\\sigma(z)^2]` (no bias):
    :func:`varprop.edge_of_chaos`."""
    from varprop.theory.criticality import edge_of_chaos

    return float(edge_of_chaos("sigmoid", 0.0).sigma_w2)


def _c002_relu_derivative(ctx: _Context) -> Assessment:
    act = activation("relu")
    _, _, p_pos, e_d2 = act.gaussian_moments(0.0, 1.0)
    rec = _verify(ctx, "002.3/lecun", "relu", "lecun_normal", fan_in=256, depth=10,
                  quantity="gradient")
    pred = predict_variance("relu", "lecun_normal", fan_in=256, depth=10, quantity="gradient")
    return Assessment(
        seed_says="ReLU's derivative is 1 \"mostly ... since z is rarely negative\"",
        prediction=(f"$P(z > 0) = E[\\phi'(z)]$ = {fmt(p_pos)} for zero-mean pre-activations, "
                    f"$E[\\phi'(z)^2]$ = {fmt(e_d2)}; with $N(0, 1/n)$ weights the gradient variance "
                    f"halves per layer: {fmt(pred)} after 10 layers"),
        montecarlo=f"ReLU + LeCun normal, width 256, gradient at the input: {_verify_text(rec)}",
        verdict="refuted" if p_pos <= 0.5 else "confirmed",  # "mostly 1" needs P(z > 0) > 1/2
        why="Symmetric weights make $z$ negative half the time, so half the derivatives are 0; "
            "that is exactly why He et al. double the weight variance.")


def _c002_table(ctx: _Context) -> Assessment:
    n, depth = 256, 5
    bad = init_scheme("uniform", low=0.0, high=math.sqrt(2 / n))
    pred = predict_variance("relu", bad, fan_in=n, depth=depth, quantity="activation_second_moment",
                            per_layer=True)
    good = predict_variance("relu", "he_normal", fan_in=n, depth=depth,
                            quantity="activation_second_moment")
    rec = _verify(ctx, "002.4/relu", "relu", bad, fan_in=n, depth=depth,
                  quantity="activation_second_moment")
    mu, var = bad.moments(n, n)
    growth = float(pred[-1] / pred[-2])
    return Assessment(
        seed_says="ReLU: $W = random()\\sqrt{2/n}$, tanh: $random()\\sqrt{1/n}$, \"random() returns "
                  "a random float between 0 and 1\"",
        prediction=(f"with random() ~ U[0,1) the ReLU weights have mean {fmt(mu)} and variance "
                    f"{fmt(var)} (He: 0 and {fmt(2 / n)}); $E a_l^2$ grows by about {fmt(growth)} "
                    f"per layer: {fmt(float(pred[-1]))} at layer {depth} (He normal: {fmt(good)})"),
        montecarlo=f"width {n}, $E a_{depth}^2$: {_verify_text(rec)}",
        # He needs mean 0 and variance 2/n: the table's weights are compared with that
        verdict="refuted" if mu != 0 or not math.isclose(var, 2 / n, rel_tol=1e-12) else "confirmed",
        why="He and Xavier need zero-mean weights: random() must be a standard normal "
            "(`np.random.randn`), not uniform on [0, 1).  A positive weight mean adds "
            "$\\mu_w\\sum_j a_j$ to every unit, which grows like $\\mu_w n E[a]$ per layer.")


def _c002_xavier_name(ctx: _Context) -> Assessment:
    lecun = init_scheme("lecun_normal").weight_variance()
    xav = init_scheme("xavier_normal").weight_variance()
    same_square = predict_variance("tanh", "lecun_normal", fan_in=256, depth=3) == \
        predict_variance("tanh", "xavier_normal", fan_in=256, depth=3)
    diff = predict_variance("tanh", "xavier_normal", widths=[256, 1024, 1024], quantity="gradient")
    diff_lecun = predict_variance("tanh", "lecun_normal", widths=[256, 1024, 1024], quantity="gradient")
    return Assessment(
        seed_says="\"Initialization for tanh [$\\sqrt{1/n_{l-1}}$] is called Xavier initialization\"",
        prediction=(f"$\\sigma_w^2 = {sp.latex(lecun)}$ is LeCun's; Xavier's is "
                    f"${sp.latex(xav)}$.  Equal predictions for square layers: {same_square}; "
                    f"for widths 256 -> 1024 -> 1024 the gradient at the input differs "
                    f"({fmt(diff_lecun)} vs {fmt(diff)})"),
        montecarlo="not needed (the schemes' moments are exact)",
        verdict=_xavier_name_verdict(lecun, xav, same_square, diff_lecun != diff),
        why="The two coincide only when fan-in equals fan-out; Xavier averages fan-in and fan-out "
            "to balance the forward and backward passes.")


def _xavier_name_verdict(lecun: Any, xav: Any, same_square: bool, differ: bool) -> Verdict:
    """``explained`` when LeCun's and Xavier's variances coincide for square layers only (so the
    seed's name is right for its square example but not in general)."""
    syms = {str(s): s for s in xav.free_symbols | lecun.free_symbols}
    n_in, n_out = syms.get("n_in"), syms.get("n_out")
    square = n_in is not None and n_out is not None and sp.simplify((xav - lecun).subs(n_out, n_in)) == 0
    if square and same_square and differ:
        return "explained"
    return "confirmed" if sp.simplify(xav - lecun) == 0 else "refuted"


def _c003_nan(ctx: _Context) -> Assessment:
    prediction, mc, ok, mode, loop = _overflow_claim(ctx, "003.1", width=256, repeated=True,
                                                     statistic="norm", printed=31)
    return Assessment(
        seed_says="`x = w@x` with `w = torch.randn(256, 256)`: `x.norm()` is NaN at i = 31",
        prediction=prediction, montecarlo=mc, verdict=_overflow_verdict(ok, 31, mode, loop),
        why="The entries first leave float32's range at index 31 (the prediction, and `simulate`), "
            "but the cell tests NaN of `x.norm()`, and an infinite entry makes the norm `inf`, not "
            "NaN: the norm turns NaN once `x` holds NaN, i.e. once a product `w@x` mixes "
            "$+\\infty$ and $-\\infty$ -- usually at the next step (32), sometimes already "
            "inside the matmul's partial sums at 31.  So the seed's 31 is a real, but not the most "
            "likely, outcome of its own statistic.  (The loop draws `w` once and multiplies by the "
            "same matrix 100 times, $W^{100}x$; its growth rate is still about $\\sqrt n = 16$ per "
            "layer -- the squared singular values of Ginibre powers have mean 1 after scaling by "
            "$n^l$ -- so fresh weights give the same layer.)")


def _c003_var256(ctx: _Context) -> Assessment:
    rec = _verify(ctx, "003.2", "linear", "standard_normal", fan_in=256, depth=1,
                  quantity="preactivation")
    pred = predict_variance("linear", "standard_normal", fan_in=256, quantity="preactivation")
    return Assessment(
        seed_says="`var += y.pow(2).mean()`: variance 256, standard deviation 16",
        prediction=f"$E[y_i^2]$ = {fmt(pred)}, std {fmt(math.sqrt(pred))}",
        montecarlo=_verify_text(rec),
        verdict="confirmed" if pred == 256 and _status_ok(rec) else "refuted",
        why="$E[y_i^2] = \\sum_j E[w_{ij}^2]E[x_j^2] = 256$.")


def _c003_outside(ctx: _Context) -> Assessment:
    exact = math.erfc(1 / math.sqrt(2))

    def compute() -> dict[str, Any]:
        rng = np.random.default_rng(_seed_of("003.3"))
        runs = max(ctx.budget.loop_runs, 20)
        x = rng.standard_normal((runs, 256, 1))
        w = rng.standard_normal((runs, 256, 256))
        y = np.matmul(w, x)
        return {"fraction": float(np.mean(np.abs(y) > 16)), "entries": int(y.size)}
    rec = ctx.montecarlo("003.3", compute)
    if rec is None:
        mc = _missing()
    else:
        se = math.sqrt(exact * (1 - exact) / rec["entries"])
        mc = (f"{fmt(100 * rec['fraction'])}% of {rec['entries']} entries of $y = Wx$ "
              f"(binomial se about {fmt(100 * se)}% if independent)")
    return Assessment(
        seed_says="\"33.3% of y will lie outside of [-16, 16]\"",
        prediction=f"$P(|Z| > 1) = \\mathrm{{erfc}}(1/\\sqrt 2)$ = {fmt(100 * exact)}%",
        montecarlo=mc, verdict="refuted" if abs(100 * exact - 33.3) > 0.05 else "confirmed",
        why="One standard deviation leaves 31.73% outside, not a third (a small slip).")


def _c003_scaled(ctx: _Context) -> Assessment:
    rec = _nan_record(ctx, "003.4", width=256, repeated=True, weight_scale=1 / 16, statistic="norm")
    scheme = init_scheme("normal", std=1 / 16)
    pred = predict_variance("linear", scheme, fan_in=256, depth=100, quantity="preactivation")
    if rec is None:
        mc, ok = _missing(), False
    else:
        never = rec["first_nan"].get("100", 0)
        ok = pred < FLOAT32_MAX and never == rec["runs"]  # predicted no overflow; no run NaN
        mc = (f"{never} of {rec['runs']} float32 runs finish all 100 layers without NaN; the final "
              f"row std is {fmt(rec['median_row_std64'])} (median), 90% of runs between "
              f"{fmt(rec['row_std64_q05'])} and {fmt(rec['row_std64_q95'])}")
    return Assessment(
        seed_says="\"scale W's variance by $\\sqrt{1/256}$\"; code `w = torch.randn(256, 256)/16`: "
                  "no NaN, i = 99",
        prediction=(f"dividing $W$ by 16 divides its variance by 256: $\\mathrm{{Var}}\\,z_{{100}}$ "
                    f"= {fmt(pred)}, no overflow"),
        montecarlo=mc, verdict="explained" if ok else "refuted",
        why="The run is right; the sentence is not: the code scales the standard deviation by "
            "$\\sqrt{1/256}$, i.e. the variance by $1/256$.  Because the loop reuses one matrix, "
            "the scale after 100 layers is not 1 but spread over orders of magnitude (the "
            "spectral radius of $W/16$ fluctuates around 1, raised to the 100th power); fresh "
            "matrices would keep it near 1.")


def _c003_tanh100(ctx: _Context) -> Assessment:
    n, depth = 256, 100
    q = predict_variance("tanh", "xavier_uniform", fan_in=n, depth=depth,
                         quantity="activation_second_moment")
    pm, ps = row_statistics("tanh", "xavier_uniform", fan_in=n, depth=depth)

    def compute() -> dict[str, Any]:
        reps = ctx.budget.deep_replicates
        sims = mc_per_replicate("tanh", "xavier_uniform", fan_in=n, depth=depth,
                                statistics=("activation_mean", "activation_unit_std",
                                            "activation_second"),
                                replicates=reps, seed=_seed_of("003.5"))
        return {"row_std": _replicate_summary(sims["activation_unit_std"][:, -1]),
                "row_mean": _replicate_summary(sims["activation_mean"][:, -1]),
                "act_second": _replicate_summary(sims["activation_second"][:, -1])}
    rec = ctx.montecarlo("003.5", compute)
    if rec is None:
        mc, ok = _missing(), False
    else:
        s, m = rec["row_std"], rec["row_mean"]
        ok = _in(0.0452, s["q005"], s["q995"]) and _in(0.0047, m["q005"], m["q995"])
        mc = (f"{s['replicates']} networks: one-sample std median {fmt(s['median'])}, 99% range "
              f"[{fmt(s['q005'])}, {fmt(s['q995'])}]; mean 99% range [{fmt(m['q005'])}, "
              f"{fmt(m['q995'])}]; $E a_{{100}}^2$ = {fmt(rec['act_second']['mean'])}")
    return Assessment(
        seed_says="Xavier uniform + tanh, 100 layers of width 256: `x.mean(), x.std()` = "
                  "(0.0047, 0.0452)",
        prediction=(f"mean field: $E a_{{100}}^2$ = {fmt(q)}, one-sample std {fmt(ps)}, mean "
                    f"{fmt(pm)}; $q_l$ decays like $1/(2l)$ because $\\chi = 1$ only at $q = 0$"),
        montecarlo=mc, verdict="consistent" if ok else "refuted",
        why="One run prints one draw of a widely spread statistic; 0.045 is inside the simulated "
            "range (the test is against the simulation, not the mean-field prediction).  At width 256 the finite-width average sits a little below the "
            "infinite-width value, since the random scale of each layer feeds the damping "
            "$-2q^2$ of $E\\tanh^2$.")


def _c003_he(ctx: _Context) -> Assessment:
    rec = _verify(ctx, "003.6", "relu", "he_normal", fan_in=256, depth=10, quantity="preactivation")
    half = activation("relu").gaussian_moments(0.0, 1.0)[1]
    q10 = predict_variance("relu", "he_normal", fan_in=256, depth=10, quantity="preactivation")
    return Assessment(
        seed_says="He: $\\sqrt{2/n}$ instead of $\\sqrt{1/n}$ because half of $y$ turns to 0 "
                  "after ReLU",
        prediction=(f"$E[\\mathrm{{relu}}(z)^2] = q/2$ ({fmt(half)} at $q = 1$), so "
                    f"$\\sigma_w^2 = 2/n$ keeps $q_l$ = "
                    f"{fmt(q10)}"),
        montecarlo=f"width 256, layer 10: {_verify_text(rec)}",
        # the seed's 2/n: E[relu(z)^2] = q/2 makes the factor n * (2/n) / 2 = 1, and the
        # simulation agrees with the resulting prediction
        verdict="confirmed" if half == 0.5 and q10 == 2.0 and _status_ok(rec) else "refuted",
        why="The reason is $E[\\phi^2] = q/2$ (half the mass, not half the variance of $y$).")


def _c003_zero(ctx: _Context) -> Assessment:
    q = sp.Symbol("q_0", positive=True)
    sb = sp.Symbol("sigma_b^2", nonnegative=True)
    layer = 0 * q + sb
    return Assessment(
        seed_says="\"If our network's weights are initialized all to 0 ... Gradients will be zero "
                  "everywhere\"",
        prediction=(f"with $\\sigma_w^2 = 0$: $q_l = n\\sigma_w^2 E\\phi^2 + \\sigma_b^2 = "
                    f"{sp.latex(layer)}$ (the input is lost); $\\partial\\mathcal L/\\partial a_{{l-1}}"
                    f" = W_l^\\top\\delta_l = 0$, so $\\partial\\mathcal L/\\partial W_l = 0$ for "
                    f"$l < L$, but $\\partial\\mathcal L/\\partial W_L = \\delta_L a_{{L-1}}^\\top$ "
                    f"is not zero when $\\phi(b) \\ne 0$ (sigmoid: 1/2)"),
        montecarlo="not needed (deterministic)",
        verdict=("explained" if layer == sb and float(activation("sigmoid").function(np.zeros(1))[0]) != 0.0
                 else "refuted"),
        why="Every unit of a layer computes the same value, so the symmetry is never broken; "
            "the last layer still gets a gradient for activations with $\\phi(0) \\ne 0$ or with "
            "biases.")


def _c004_relu(ctx: _Context) -> Assessment:
    rec = _verify(ctx, "004.3", "relu", "he_normal", fan_in=256, depth=10, quantity="gradient")
    pred = predict_variance("relu", "he_normal", fan_in=256, depth=10, quantity="gradient")
    return Assessment(
        seed_says="\"The ReLU function's derivative does not suffer from this problem\"",
        prediction=f"ReLU + He normal: gradient variance at the input {fmt(pred)} after 10 layers",
        montecarlo=f"width 256: {_verify_text(rec)}",
        # "does not suffer": the predicted gradient does not shrink over 10 layers, and the
        # simulation agrees with the prediction
        verdict="confirmed" if pred >= 1.0 and _status_ok(rec) else "refuted",
        why="Only with the matching scale: $\\chi = n\\sigma_w^2/2 = 1$ for He; with LeCun's "
            "$1/n$ ReLU gradients halve per layer (claim 002.3).")


def _xavier_uniform01(factor: float) -> Callable[[], Any]:
    return lambda: init_scheme("uniform", low=0.0, high=factor)


CLAIMS: tuple[SeedClaim, ...] = (
    SeedClaim("000.1", "000_882fce57e92f7e4d", "In [13]", "1.5 on the diagonal, 100 layers",
              "`y = np.power(W, L)` ... `4.06561178e+17` (\"exploding gradient\")", "experiment",
              _c000_power(sp.Rational(3, 2), 4.06561178e17)),
    SeedClaim("000.2", "000_882fce57e92f7e4d", "In [15]", "0.5 on the diagonal, 100 layers",
              "`W = np.array([[0.5, 0], [0, 0.5]])` ... `7.88860905e-31` (\"vanishing gradient\")",
              "experiment", _c000_power(sp.Rational(1, 2), 7.88860905e-31)),
    SeedClaim("000.3", "000_882fce57e92f7e4d", "Variance Scaling", "variance 1/n, or 2/n for ReLU",
              "\"set the variance ... to be $\\frac{1}{n^{[L-1]}}$ or if we are using ReLU, "
              "$\\frac{2}{n^{[L-1]}}$\"", "formula", _c000_scaling),
    SeedClaim("000.4", "000_882fce57e92f7e4d", "In [17]", "printed sample of randn * sqrt(1/100)",
              "`W = np.random.randn(5, 3) * np.sqrt(1 / inputs)`", "experiment", _c000_sample),
    SeedClaim("000.5", "000_882fce57e92f7e4d", "Xavier Initialization", "Xavier's variance stated as sqrt(1/n)",
              "\"Xavier Initialization: We set variance to be: $\\sqrt{\\frac{1}{n^{[L-1]}}}$\"",
              "formula", _c000_xavier),
    SeedClaim("001.1", "001_2bbe60fd5150b093", "In [154]", "Gaussian input row",
              "`x = tf.random.normal((1, 100))` ... `-0.03994225 1.0157017`", "experiment",
              _c001_input),
    SeedClaim("001.2", "001_2bbe60fd5150b093", "In [155]", "100 layers of N(0,1) weights go NaN",
              "\"You would find it quickly goes to nan (explodes)\"", "experiment", _c001_nan_end),
    SeedClaim("001.3", "001_2bbe60fd5150b093", "In [156]", "NaN at layer index 37 (width 100)",
              "\"The activation outputs exploded within 37 of our network's layers\"", "experiment",
              _c001_nan_index),
    SeedClaim("001.4", "001_2bbe60fd5150b093", "In [157]", "weights x 0.05: std prints 0.0",
              "`* 0.05` ... `1.0689624e-32 0.0` \"the activations get vanished to zero\"",
              "experiment", _c001_vanish),
    SeedClaim("001.5", "001_2bbe60fd5150b093", "In [158]", "std ~ sqrt(512) = 22.6",
              "\"The std dev of layer activations is very close to the square root of the number "
              "of input connections\" ... `22.624842472076416` / `22.627416997969522`", "experiment",
              _cell_claim("001.5", "linear", lambda: "standard_normal", fan_in=512,
                          printed_mean=-0.00431403724104166, printed_std=22.624842472076416,
                          runs=1000, seed_says="mean -0.004314, std 22.62 (average of 1000 runs)",
                          why="$\\mathrm{Var}\\,y_i = n_{in} = 512$; the printed statistic is the "
                              "across-unit std of one row ($\\sqrt{511/512}$ of it), averaged.")),
    SeedClaim("001.6", "001_2bbe60fd5150b093", "In [158] text", "\"variance = num_layers\"",
              "\"If we sum all this up -> we get mean = 0, variance = num_layers\"", "formula",
              _c001_formula),
    SeedClaim("001.7", "001_2bbe60fd5150b093", "In [159]", "1/sqrt(512) scaling gives std ~ 1",
              "`* np.sqrt(1/512)` ... `-0.0004035784816369414 0.9976319864988327`", "experiment",
              _cell_claim("001.7", "linear", lambda: "lecun_normal", fan_in=512,
                          printed_mean=-0.0004035784816369414, printed_std=0.9976319864988327,
                          runs=1000, seed_says="mean -0.0004036, std 0.9976 (1000 runs)",
                          why="LeCun's $\\sigma_w^2 = 1/n_{in}$ makes $\\mathrm{Var}\\,y_i = q_0 = 1$.")),
    SeedClaim("001.8", "001_2bbe60fd5150b093", "In [160]", "tanh gives 0.627",
              "`y = np.tanh(tf.matmul(x, w))` ... `0.001258103971136734 0.627060652911663`",
              "experiment",
              _cell_claim("001.8", "tanh", lambda: "lecun_normal", fan_in=512,
                          printed_mean=0.001258103971136734, printed_std=0.627060652911663,
                          runs=1000, seed_says="mean 0.001258, std 0.6271 (1000 runs)",
                          why="$\\sqrt{E\\tanh(z)^2}$ for $z \\sim N(0, 1)$ is 0.628: tanh shrinks "
                              "the scale by a third in one layer; the notebook's remark that "
                              "activations \"can vanish\" is about depth (see 003.5).")),
    SeedClaim("001.9", "001_2bbe60fd5150b093", "In [161]", "\"Xavier\" from U[0,1) x sqrt(1/512), tanh",
              "`w = tf.random.uniform((512, 512))*np.sqrt(1/512)` ... `0.00859007661230862 "
              "0.23150178030133248` \"This is causing the activation gradients to almost vanish\"",
              "experiment",
              _cell_claim("001.9", "tanh", _xavier_uniform01(math.sqrt(1 / 512)), fan_in=512,
                          printed_mean=0.00859007661230862, printed_std=0.23150178030133248,
                          runs=100, seed_says="mean 0.008590, std 0.2315 (100 runs)",
                          explained=True, extra=_uniform_note(math.sqrt(1 / 512)),
                          why="Not Xavier: `tf.random.uniform` is U[0,1), so every weight has "
                              "mean $0.5\\sqrt{1/512}$ and all units share the shift "
                              "$\\mu_w\\sum_j x_j$ (std 0.5).  The small across-unit std is that "
                              "shared shift pushing a whole row into tanh's saturation plus a "
                              "small own variance $512\\cdot\\frac{1}{12\\cdot512}$; it is not a "
                              "vanishing gradient.  Xavier is U$(-a, a)$ with $a = \\sqrt{6/(n_{in}+n_{out})}$.")),
    SeedClaim("001.10", "001_2bbe60fd5150b093", "In [162]", "xavier(m, h) = U[0,1) x sqrt(6/(m+h)), tanh",
              "`tf.random.uniform((m, h))*np.sqrt(6/(m + h))` ... `-0.09331645273603499 "
              "0.30846175507642326`", "experiment",
              _cell_claim("001.10", "tanh", _xavier_uniform01(math.sqrt(6 / 1024)), fan_in=512,
                          printed_mean=-0.09331645273603499, printed_std=0.30846175507642326,
                          runs=100, seed_says="mean -0.09332, std 0.3085 (100 runs)",
                          explained=True, extra=_uniform_note(math.sqrt(6 / 1024)),
                          why="Still U[0, a), not U$(-a, a)$: the weights' mean "
                              "$a/2$ gives a shared shift of std 0.87 per row, which dominates "
                              "both printed numbers (the mean of 100 such rows wanders by about "
                              "0.06).")),
    SeedClaim("001.11", "001_2bbe60fd5150b093", "In [163]", "ReLU with U[0,1) x sqrt(2/512)",
              "`tf.random.uniform((512, 512))*np.sqrt(2/512)` ... `0.27805046624562235 "
              "0.1972163485432975`", "experiment",
              _cell_claim("001.11", "relu", _xavier_uniform01(math.sqrt(2 / 512)), fan_in=512,
                          printed_mean=0.27805046624562235, printed_std=0.1972163485432975,
                          runs=100, seed_says="mean 0.2781, std 0.1972 (100 runs)",
                          explained=True, extra=_uniform_note(math.sqrt(2 / 512)),
                          why="Not He: U[0,1) weights have mean $\\mu_w = 0.5\\sqrt{2/512}$, so "
                              "a row is relu of $N(s, 1/6)$ with a shared $s \\sim N(0, 1/2)$; "
                              "varprop's correlated-unit mean field predicts both numbers.")),
    SeedClaim("002.1", "002_2821d1098bf677d6", "Activation Functions", "sigmoid derivative at most 0.25",
              "\"The derivative of sigmoid activation function g'(z) ranges but has a maximum "
              "value of 0.25\"", "formula", _c002_sigmoid_bound),
    SeedClaim("002.2", "002_2821d1098bf677d6", "Vanishing gradient", "$dW \\approx (x < 1)^{2(l-1)}$",
              "\"Weights W generally have a value less than 1 ... $dW \\tilde= (x < 1)^{2(l-1)}$ "
              "... l may reach 50 or more\"", "formula",
              lambda ctx: _sigmoid_product(ctx, "002.2", "sigmoid nets: the gradient shrinks like "
                                           "$(x<1)^{2(l-1)}$ since $W < 1$ and $g' \\le 0.25$")),
    SeedClaim("002.3", "002_2821d1098bf677d6", "How relu activation prevents vanishing gradient",
              "ReLU derivative \"mostly\" 1", "\"When the derivative is 1 (which is mostly the case "
              "since z is rarely negative)\"", "formula", _c002_relu_derivative),
    SeedClaim("002.4", "002_2821d1098bf677d6", "Initializing weights", "random() between 0 and 1 in the He/Xavier table",
              "\"$W_{l} = random() * \\sqrt{\\frac{2}{n_{l-1}}}$ ... random() returns a random "
              "float between 0 and 1\"", "formula", _c002_table),
    SeedClaim("002.5", "002_2821d1098bf677d6", "Initializing weights", "\"Initialization for tanh is called Xavier\"",
              "\"$W_{l} = random() * \\sqrt{\\frac{1}{n_{l-1}}}$ ... Initialization for tanh is "
              "called Xavier initialization\"", "formula", _c002_xavier_name),
    SeedClaim("003.1", "003_43ddb6add2c3f97b", "first code block", "256-wide N(0,1) net NaN at i = 31",
              "`w = torch.randn(256, 256)` ... `if torch.isnan(x.norm()): break` ... `i #see 31`",
              "experiment", _c003_nan),
    SeedClaim("003.2", "003_43ddb6add2c3f97b", "Why Standard Normalization Wouldn't Work",
              "variance 256, standard deviation 16", "\"If we talk about $y_i$'s variance, it would "
              "be 256 ... The standard deviation of $y$ is 16\"", "experiment", _c003_var256),
    SeedClaim("003.3", "003_43ddb6add2c3f97b", "Why Standard Normalization Wouldn't Work",
              "33.3% outside one standard deviation", "\"this means 33.3% of y will lie outside of "
              "$[-16, 16]$\"", "formula", _c003_outside),
    SeedClaim("003.4", "003_43ddb6add2c3f97b", "Naive Initialization", "scaling by 1/16 (\"variance by sqrt(1/256)\")",
              "\"If we scale $W$'s variance by $\\sqrt{1/256}$, problem solved\" ... `w = "
              "torch.randn(256, 256)/16` ... `i # see 99`", "experiment", _c003_scaled),
    SeedClaim("003.5", "003_43ddb6add2c3f97b", "Xavier Initialization", "Xavier uniform + tanh over 100 layers: std 0.045",
              "`x = torch.tanh(w@x)` ... `x.mean(), x.std() # see (tensor(0.0047), tensor(0.0452))`",
              "experiment", _c003_tanh100),
    SeedClaim("003.6", "003_43ddb6add2c3f97b", "He (Kaiming) Initialization", "sqrt(2/n) for ReLU",
              "\"instead of scaling $\\sqrt{1/n}$ ... we do $\\sqrt{2/n}$ ... half of the $y$ "
              "would turn to 0 after ReLu\"", "formula", _c003_he),
    SeedClaim("003.7", "003_43ddb6add2c3f97b", "Remarks On Zero Initialization", "zero init",
              "\"If our network's weights are initialized all to 0 ... Gradients will be zero "
              "everywhere\"", "formula", _c003_zero),
    SeedClaim("004.1", "004_d77e2ffadb0157d7", "Vanishing/exploding gradients", "max sigmoid' = 0.25",
              "\"for $a_\\llp = \\sigma$ (the sigmoid function), $\\max{z} a'_\\llp(z) = 0.25$\"",
              "formula", _c002_sigmoid_bound),
    SeedClaim("004.2", "004_d77e2ffadb0157d7", "Vanishing/exploding gradients",
              "the product of derivatives over depth", "\"the product $\\prod a'_{(l')}$ can be "
              "increasingly small as the number of layers K grows ... unless offset by the "
              "$f'_\\llp$ terms\"", "formula",
              lambda ctx: _sigmoid_product(ctx, "004.2", "the product of sigmoid derivatives "
                                           "vanishes over depth unless offset by the weights")),
    SeedClaim("004.3", "004_d77e2ffadb0157d7", "Vanishing/exploding gradients", "ReLU does not vanish",
              "\"The ReLU function's derivative does not suffer from this problem\"", "formula",
              _c004_relu),
)


# ----------------------------------------------------------------------------------------------
# the document
# ----------------------------------------------------------------------------------------------

def assess_claims(*, store: MonteCarloStore | None = None, budget: str | Budget = "default",
                  progress: Callable[[str], None] | None = None
                  ) -> list[tuple[SeedClaim, Assessment]]:
    """Assess every claim of :data:`CLAIMS` (Monte Carlo through ``store``)."""
    b = _budget(budget)
    ctx = _Context(store if store is not None else MonteCarloStore(budget_name=b.name), b)
    out = []
    for claim in CLAIMS:
        out.append((claim, claim.assess(ctx)))
        if progress is not None:
            progress(claim.key)
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def seed_claims_markdown(assessed: list[tuple[SeedClaim, Assessment]], *, budget_name: str
                         ) -> str:
    """Render ``derivations/seed-claims.md`` from :func:`assess_claims`' result."""
    counts = {v: sum(a.verdict == v for _, a in assessed) for v in VERDICTS}
    out = ["# The seeds' claims, checked", "",
           "The texts varprop grew from (`shared/seeds/*.txt`) run experiments and state formulas. "
           "Each claim below carries its seed file's name, a short quote, varprop's prediction, "
           "the Monte Carlo result and a verdict:", "",
           *(f"- **{v}**: {meaning};" for v, meaning in VERDICTS.items()), "",
           "Every number is computed when this file is generated (`varprop derive --all`; code in "
           "`src/varprop/seed_claims.py`): predictions by `predict_variance`/`propagate` (plus the "
           "documented `row_statistics` where a cell prints the across-unit mean and std of one "
           "sample, and `overflow_index` for the first float32 overflow), Monte Carlo by "
           "`simulate`/`verify` at fixed seeds, or, where a cell's number depends on float32 "
           "arithmetic, a seeded NumPy loop that repeats the cell (`seed_loop`).  Numbers are "
           f"rounded to 4 significant digits; Monte Carlo budget: `{budget_name}`.  Intervals "
           "quoted for a cell's printed average are 99% ranges for an average over the cell's "
           "number of runs.", "",
           f"Summary: {len(assessed)} claims, "
           + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + ".", "",
           "| # | Seed | Where | Claim | Verdict |", "|---|---|---|---|---|"]
    for c, a in assessed:
        out.append(f"| [{c.key}](#claim-{c.key.replace('.', '-')}) | `{c.seed}` | {_cell(c.where)} | "
                   f"{_cell(c.title)} | **{a.verdict}** |")
    out.append("")
    for seed, about in SEED_FILES.items():
        out += [f"## `{seed}`", "", f"*{about}*", ""]
        for c, a in assessed:
            if c.seed != seed:
                continue
            out += [f"<a id=\"claim-{c.key.replace('.', '-')}\"></a>", "",
                    f"### {c.key} {c.title} ({c.where}, {c.kind})", "",
                    f"> {c.quote}", "",
                    "| | |", "|---|---|",
                    f"| seed says | {_cell(a.seed_says)} |",
                    f"| varprop predicts | {_cell(a.prediction)} |",
                    f"| Monte Carlo | {_cell(a.montecarlo)} |",
                    f"| verdict | **{a.verdict}** |", "",
                    f"*Why:* {a.why}", ""]
    return "\n".join(out).rstrip("\n") + "\n"
