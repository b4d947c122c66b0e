r"""Small documented computations on top of varprop's public API that the seeds' cells need:
the across-unit mean and standard deviation of one sample (:func:`row_statistics`), the
distribution of the first float32 overflow (:func:`overflow_distribution`,
:func:`overflow_index`), and a seeded NumPy loop that repeats a cell exactly where its number
depends on float32 arithmetic (:func:`seed_loop`).  Each is tested against an independent
computation in ``tests/test_seed_claims.py``."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from scipy.special import log_ndtr, polygamma, psi

from varprop._util.validation import check_positive_int
from varprop.components.activations import resolve_activation
from varprop.components.schemes import init_scheme
from varprop.theory.predict import predict_variance, propagate

__all__ = ["FLOAT32_MAX", "row_statistics", "overflow_distribution", "overflow_index", "seed_loop"]

#: Largest finite float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)

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
