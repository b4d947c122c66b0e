r"""The numerics of :mod:`varprop.theory.overflow`: moments in log space, the thresholds of one
unit, and the first-passage distribution of the log-scale random walk (see that module's
docstring for the model)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.special as sc

from varprop._math.quadrature import gaussian_expectations
from varprop.components.activations import Activation

__all__: list[str] = []

_LIMITS: dict[str, tuple[float, float]] = {
    "float16": (float(np.finfo(np.float16).max), float(np.finfo(np.float16).tiny)),
    # bfloat16: 8 exponent bits like float32, 7 fraction bits
    "bfloat16": ((2.0 - 2.0**-7) * 2.0**127, 2.0**-126),
    "float32": (float(np.finfo(np.float32).max), float(np.finfo(np.float32).tiny)),
    "float64": (float(np.finfo(np.float64).max), float(np.finfo(np.float64).tiny)),
}


# ----------------------------------------------------------------------------------------------
# moments in log space
# ----------------------------------------------------------------------------------------------

_LQ_LO, _LQ_HI = math.log(1e-200), math.log(1e200)
_LOG_CLAMP = 1e6
_FLUSH = 1e-150  # probabilities below are set to 0 in the walk: no product underflows (slow)


def _raw_expectations(act: Activation, q: float) -> np.ndarray:
    r"""``[E phi^2, E phi^4, E phi^2 z^2, E phi'^2, E phi'^4]`` for :math:`z \sim N(0, q)`."""
    f, d = act.function, act.derivative_function

    def all_five(x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            fx = np.asarray(f(x), dtype=float)
            dx = np.asarray(d(x), dtype=float)
            f2, d2 = fx * fx, dx * dx
            return np.stack([f2, f2 * f2, f2 * x * x, d2, d2 * d2])

    return np.asarray(gaussian_expectations([all_five], 0.0, q, act.kinks)[0], dtype=float)


@lru_cache(maxsize=4096)
def _expectations(act: Activation, lq: float) -> tuple[float, ...]:
    """Logs of the five expectations at :math:`q = e^{lq}` (power-law extrapolation outside
    :math:`[10^{-200}, 10^{200}]`, where the quadrature itself would overflow)."""
    if _LQ_LO <= lq <= _LQ_HI:
        vals = _raw_expectations(act, math.exp(lq))
        # replace the quadrature's E phi^2 / E phi'^2 by the activation's exact moments
        try:
            with np.errstate(all="ignore"):
                m = act.gaussian_moments(0.0, math.exp(lq), method="exact")
            vals[0], vals[3] = m[1], m[3]
        except (OverflowError, ZeroDivisionError):  # a closed form beyond the float range
            pass
        with np.errstate(divide="ignore"):
            return tuple(np.log(np.maximum(vals, 0.0)).tolist())
    edge = _LQ_HI if lq > _LQ_HI else _LQ_LO
    step = math.log(10.0) * (-1.0 if lq > _LQ_HI else 1.0)
    a = np.array(_expectations(act, edge))
    b = np.array(_expectations(act, edge + step))
    with np.errstate(invalid="ignore"):
        slope = np.where(np.isfinite(a) & np.isfinite(b), (a - b) / (-step), 0.0)
        out = np.where(slope == 0.0, a, a + slope * (lq - edge))
    return tuple(np.clip(out, -np.inf, 10 * _LOG_CLAMP).tolist())


def _noise_shape(act: Activation, lq: float, n: int, orth: float, backward: bool) -> float:
    r"""Gamma shape :math:`k = n / V` of the normalised :math:`\lVert a\rVert^2` (or
    :math:`\lVert\delta\rVert^2`) given the scale (``inf``: no fluctuation)."""
    try:
        return _shape(act, lq, n, orth, backward)
    except (OverflowError, ValueError, ZeroDivisionError):
        return math.inf


def _shape(act: Activation, lq: float, n: int, orth: float, backward: bool) -> float:
    l2, l4, l2z2, ld2, ld4 = _expectations(act, lq)
    if backward:
        if not math.isfinite(ld2):
            return math.inf
        v = 3.0 * math.exp(ld4 - 2.0 * ld2) - 1.0 - 2.0 * orth
    else:
        if not math.isfinite(l2):
            return math.inf
        r4 = math.exp(l4 - 2.0 * l2)           # E phi^4 / (E phi^2)^2
        cov = math.exp(l2z2 - l2 - lq) - 1.0   # Cov(phi^2, z^2) / (E phi^2 q)
        v = r4 - 1.0 - orth * cov * cov / 2.0  # Var z^2 = 2 q^2
    if not v > 1e-12:
        return math.inf
    # a sum of n terms fluctuates at most like its largest term: floor the shape at 1/2 (chi^2_1)
    return max(n / v, 0.5) if math.isfinite(v) else 0.5


# ----------------------------------------------------------------------------------------------
# thresholds of one unit
# ----------------------------------------------------------------------------------------------

_PROBE = np.concatenate([-np.logspace(308, -320, 1257), [0.0], np.logspace(-320, 308, 1257)])


@lru_cache(maxsize=256)
def _unit_sets(act: Activation, quantity: str, event: str, dtype: str) -> tuple[float, float]:
    """``(lo, hi)``: overflow: the unit's value is out of range iff ``z > hi`` or ``z < lo``;
    underflow: it is below the smallest normal iff ``lo < z < hi``."""
    big, tiny = _LIMITS[dtype]
    if quantity != "activation":
        return (-big, big) if event == "overflow" else (-tiny, tiny)
    with np.errstate(all="ignore"):
        vals = np.abs(np.asarray(act.function(_PROBE), dtype=float))
        at_inf = np.abs(np.asarray(act.function(np.array([-np.inf, np.inf])), dtype=float))
    neg, pos = _PROBE < 0, _PROBE > 0
    if event == "overflow":
        bad = ~(vals <= big)
        hi = _first_crossing(act, _PROBE[pos], bad[pos], lambda v: not v <= big)
        lo = _first_crossing(act, _PROBE[neg][::-1], bad[neg][::-1], lambda v: not v <= big)
        # beyond M the pre-activation itself is inf in the dtype: phi(+-inf) decides
        if not at_inf[1] <= big:
            hi = min(hi, big)
        if not at_inf[0] <= big:
            lo = min(lo, big)
        return (-lo, hi)
    small = vals < tiny
    if not small[_PROBE == 0][0]:
        return (0.0, 0.0)  # |phi(0)| >= tiny: no unit near 0 underflows
    hi = _first_crossing(act, _PROBE[pos], ~small[pos], lambda v: not v < tiny)
    lo = _first_crossing(act, _PROBE[neg][::-1], ~small[neg][::-1], lambda v: not v < tiny)
    return (-lo, hi)


def _first_crossing(act: Activation, zs: np.ndarray, flags: np.ndarray, test) -> float:
    """Smallest ``|z|`` along ``zs`` (ordered by increasing ``|z|``) where ``test(|phi(z)|)``;
    refined by bisection; ``inf`` if never."""
    idx = np.flatnonzero(flags)
    if idx.size == 0:
        return math.inf
    i = int(idx[0])
    if i == 0:
        return float(abs(zs[0]))
    a, b = float(zs[i - 1]), float(zs[i])
    for _ in range(200):
        mid = math.copysign(math.sqrt(abs(a) * abs(b)), a) if a * b > 0 else (a + b) / 2
        if mid in (a, b):
            break
        with np.errstate(all="ignore"):
            v = float(abs(np.asarray(act.function(np.array([mid])), dtype=float)[0]))
        if test(v):
            b = mid
        else:
            a = mid
    return float(abs(b))


# ----------------------------------------------------------------------------------------------
# the walk
# ----------------------------------------------------------------------------------------------

def _layer_probability(log_var: np.ndarray, lo: float, hi: float, n: int, event: str) -> np.ndarray:
    """Probability of the event in a layer of ``n`` i.i.d. N(0, exp(log_var)) units."""
    with np.errstate(all="ignore"):
        inv_sd = np.exp(-0.5 * log_var)
        if event == "overflow":
            # P(one unit out) = P(z > hi) + P(z < lo)
            up = np.where(np.isfinite(hi), sc.ndtr(-hi * inv_sd), 0.0) if hi != math.inf else 0.0
            dn = np.where(np.isfinite(lo), sc.ndtr(lo * inv_sd), 0.0) if lo != -math.inf else 0.0
            p_unit = np.minimum(np.asarray(up + dn, dtype=float) + np.zeros_like(log_var), 1.0)
            return -np.expm1(n * np.log1p(-p_unit))
        if hi <= lo:
            return np.zeros_like(log_var)
        a = sc.ndtr(hi * inv_sd) if math.isfinite(hi) else np.ones_like(log_var)
        b = sc.ndtr(lo * inv_sd) if math.isfinite(lo) else np.zeros_like(log_var)
        inside = np.asarray(a - b, dtype=float)
        # accurate for a symmetric interval of small |z|: P = erf(hi / (sd sqrt 2))
        sym = math.isfinite(hi) and math.isfinite(lo) and abs(hi + lo) < 1e-300 * max(1.0, hi)
        if sym:
            inside = sc.erf(hi * inv_sd / math.sqrt(2.0))
        return np.where(inside > 0, np.exp(n * np.log(np.maximum(inside, 1e-320))), 0.0)


def _unit_hazard(lo: float, hi: float, sizes: list[int], event: str) -> Hazard:
    """Layer ``j``: some unit (overflow) / every unit (underflow, ``criterion="all"``) in range."""
    def hazard(j: int, log_var: np.ndarray) -> np.ndarray:
        return _layer_probability(log_var, lo, hi, sizes[j], event)

    return hazard


def _rms_hazard(log_ratio: np.ndarray, shapes: list[float], tiny: float) -> Hazard:
    r"""Layer ``j``: the root mean square of the monitored values is below ``tiny``:
    :math:`P(e^{\text{log\_var} + \text{log\_ratio}_j} G < m^2)`, :math:`G \sim
    \mathrm{Gamma}(k_j, \text{rate } k_j)`."""
    log_t2 = 2.0 * math.log(tiny)

    def hazard(j: int, log_var: np.ndarray) -> np.ndarray:
        k = shapes[j]
        x = np.exp(np.minimum(log_t2 - log_var - log_ratio[j], 700.0))
        if not math.isfinite(k):
            return (x > 1.0).astype(float)
        return sc.gammainc(k, k * x)

    return hazard


def _kernel(k: float, h: float) -> np.ndarray:
    r"""Bin masses of :math:`\ln G`, :math:`G \sim \mathrm{Gamma}(k, \text{rate } k)`, on offsets
    :math:`i h` (odd length, centred)."""
    if not math.isfinite(k):
        return np.ones(1)
    mean = float(sc.digamma(k) - math.log(k))
    sd = math.sqrt(float(sc.polygamma(1, k)))
    half = int(math.ceil((abs(mean) + 12.0 * sd) / h)) + 1
    edges = (np.arange(-half, half + 2) - 0.5) * h
    cdf = sc.gammainc(k, k * np.exp(np.minimum(edges, 700.0)))
    mass = np.diff(cdf)
    return np.maximum(mass / mass.sum(), 0.0)


Hazard = Callable[[int, np.ndarray], np.ndarray]


def _first_passage(log_base: np.ndarray, log_bias: float, shapes: list[float], hazard: Hazard,
                   upward: bool) -> np.ndarray:
    r"""``pmf[k]`` of the first layer with the event, for the walk :math:`S_k = \sum_{j\le k}\ln G_j`
    and scales :math:`\sigma_k^2 = e^{\text{log\_base}_k + S_k} + \sigma_b^2`."""
    L = len(log_base)
    pmf = np.zeros(L)
    finite = [k for k in shapes if math.isfinite(k)]
    if finite:
        sds = [math.sqrt(float(sc.polygamma(1, k))) for k in finite]
        means = np.cumsum([float(sc.digamma(k) - math.log(k)) if math.isfinite(k) else 0.0
                           for k in shapes])
        total = math.sqrt(sum(s * s for s in sds))
        margin = 10.0 * total + 14.0 * max(sds)
        lo_s, hi_s = min(0.0, float(means.min())) - margin, max(0.0, float(means.max())) + margin
        h = min(sds) / 6.0
        if (hi_s - lo_s) / h > 40000:
            h = (hi_s - lo_s) / 40000
        lo_s = -h * math.ceil(-lo_s / h)  # put S = 0 exactly on the grid
        # a length with small prime factors: an FFT of a length with a large prime factor is
        # 10-20x slower (40003 = 109 * 367: 20 ms, 40960: 1 ms), and every layer takes two
        size = scipy.fft.next_fast_len(int(math.ceil((hi_s - lo_s) / h)) + 1, real=True)
        grid = lo_s + h * np.arange(size)
        dens = np.zeros_like(grid)
        dens[int(round(-lo_s / h))] = 1.0
    else:
        grid, dens = np.zeros(1), np.ones(1)
        h = 1.0
    N = len(grid)
    kernels: dict[float, np.ndarray] = {}

    def kernel_hat(k: float) -> np.ndarray | None:
        if not math.isfinite(k) or N == 1:
            return None
        key = round(k, 9)
        if key not in kernels:
            ker = _kernel(k, h)
            half = len(ker) // 2
            full = np.zeros(N)
            m = min(half, N // 2 - 1)
            full[: m + 1] = ker[half: half + m + 1]           # offsets 0..m
            if m:
                full[-m:] = ker[half - m: half]                # offsets -m..-1
            transform = np.fft.rfft(full)
            transform[np.abs(transform) < _FLUSH] = 0.0  # no subnormals (see below)
            kernels[key] = transform
        return kernels[key]

    # hazard at the most extreme grid point: layers before the first non-negligible one only
    # shift the walk (circular FFT convolution, no inverse transform needed)
    extreme = grid[-1] if upward else grid[0]
    with np.errstate(all="ignore"):
        edge_p = np.array([float(hazard(j, np.logaddexp(np.array([log_base[j] + extreme]),
                                                        log_bias))[0]) for j in range(L)])
    active = np.flatnonzero(edge_p > 1e-18)
    if active.size == 0:
        return pmf
    first = int(active[0])
    dens_hat = np.fft.rfft(dens) if N > 1 else None
    for j in range(first + 1):
        kh = kernel_hat(shapes[j])
        if kh is not None:
            dens_hat = dens_hat * kh
    if N > 1:
        dens = np.maximum(np.fft.irfft(dens_hat, n=N), 0.0)
    for j in range(first, L):
        if j > first:
            kh = kernel_hat(shapes[j])
            if kh is not None:
                dens = np.fft.irfft(np.fft.rfft(dens) * kh, n=N)
                dens[dens < _FLUSH] = 0.0  # also negative round-off
        with np.errstate(all="ignore"):
            log_var = np.logaddexp(log_base[j] + grid, log_bias)
        p = hazard(j, log_var)
        p[p < _FLUSH] = 0.0
        # not np.dot: BLAS may hand a long dot to threads whose wake-up on a busy machine costs
        # milliseconds per layer (measured: 3 ms of the 4.5 ms a layer cost at max_depth=6000)
        pmf[j] = float(np.sum(dens * p))
        dens = dens * (1.0 - p)
        # flush the far tails to 0: products of tiny numbers underflow, and every later layer's
        # arithmetic on subnormals is ~100x slower (85 s at max_depth=10000); < 1e-145 in total
        dens[dens < _FLUSH] = 0.0
        if dens.sum() < 1e-15:
            break
    return np.clip(pmf, 0.0, 1.0)
