r"""Gaussian expectations by composite Gauss--Legendre quadrature (the exact reference).

For :math:`z \sim N(\mu, q)` and functions :math:`f_k`,

.. math:: E[f_k(z)] = \int f_k(\mu + \sqrt{q}\, t)\, \varphi(t)\, dt,

integrated over :math:`t \in [-12, 12]` (the tail beyond carries less than :math:`10^{-31}` of the
mass) split into panels of width at most 1 and additionally at the activation's kinks and at the
points :math:`x = 0, \pm 2^k` where saturating activations change shape, with a 16-point
Gauss--Legendre rule per panel.  For functions analytic on each panel this is accurate to
about :math:`10^{-13}` relative (tested against ``mpmath.quad`` at 30 digits).

Functions that grow fast (custom activations such as ``exp(a*x)``, whose integrand peaks at
:math:`t = 2a\sqrt q`) are caught by a tail test: if the integrand at the outermost nodes is not
negligible (:math:`> 10^{-13}` of :math:`\int |f|\varphi`), the window widens in steps up to
:math:`|t| \le 38`, where :math:`\varphi` itself underflows.  If the tail is still not negligible,
or ``f`` overflows where the Gaussian weight is not negligible, the expectation diverges or lies
(about) beyond the float range: ``+-inf`` for an integrand of one sign, an error otherwise --
never a truncated number.  (``exp(a*x)`` is exact up to :math:`a^2 q \approx 100`, ``inf`` beyond.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from varprop.errors import VarpropError

__all__ = ["gaussian_expectations", "smoothed", "bivariate_expectation"]

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)
_NODES = (_NODES + 1.0) / 2.0
_WEIGHTS = _WEIGHTS / 2.0
_HALF_WIDTH = 12.0
_WIDER = (18.0, 24.0, 30.0, 38.0)  # phi(38) ~ 1e-314: beyond, the Gaussian weight underflows
_TAIL_RTOL = 1e-13
_SCALE_POINTS = np.array([0.0] + [s * 2.0**k for k in range(-3, 8) for s in (-1.0, 1.0)])
_BASE_EDGES = {hw: np.arange(-hw, hw + 0.5, 1.0) for hw in (_HALF_WIDTH, *_WIDER)}
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: The rule's constants, public for the vectorised rules of varprop.theory (same values).
NODES, WEIGHTS, HALF_WIDTH, TAIL_RTOL = _NODES, _WEIGHTS, _HALF_WIDTH, _TAIL_RTOL
SCALE_POINTS, INV_SQRT_2PI = _SCALE_POINTS, _INV_SQRT_2PI

ArrayFn = Callable[[np.ndarray], np.ndarray]


def _rule(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = edges[:-1, None], edges[1:, None]
    t = (a + (b - a) * _NODES).ravel()
    w = ((b - a) * _WEIGHTS).ravel() * np.exp(-0.5 * t * t) * _INV_SQRT_2PI
    return t, w


_UNIFORM_T, _UNIFORM_W = _rule(np.arange(-_HALF_WIDTH, _HALF_WIDTH + 0.25, 0.5))


def gaussian_expectations(
    fns: Sequence[ArrayFn], mu: float, q: float, breakpoints: Sequence[float] = ()
) -> list[float]:
    """``[E f(z) for f in fns]`` (a function may return a stack ``(k, len(x))``: then its entry is
    an array of ``k`` expectations) for :math:`z \\sim N(\\mu, q)` (``q >= 0``; ``q == 0`` gives ``f(mu)``)."""
    if q == 0.0:
        x = np.array([mu])
        return [_value(f(x)[..., 0]) for f in fns]
    out = _integrate(fns, mu, q, breakpoints, _HALF_WIDTH)
    for half_width in _WIDER:
        if out is not None:
            break
        out = _integrate(fns, mu, q, breakpoints, half_width)  # not negligible at the edge: widen
    if out is None:
        raise VarpropError(
            f"a Gaussian expectation E[f(z)], z ~ N({mu:g}, {q:g}), cannot be evaluated: either it "
            f"does not converge (the function grows at least like exp(z^2 / (2 q)), e.g. exp(x**2) "
            f"at q >= 1/2) or the function takes values of both signs beyond the float range "
            f"(e.g. sinh(z) at |z| > 710, whose expectation may be finite); use a smaller variance "
            f"or an activation that grows more slowly")
    return out


def _integrate(fns: Sequence[ArrayFn], mu: float, q: float, breakpoints: Sequence[float],
               half_width: float) -> list[float | np.ndarray] | None:
    """The composite rule on ``|t| <= half_width``; ``None`` if the tail test fails there for an
    integrand of both signs (a one-signed divergent integrand gives ``+-inf`` on the wide window)."""
    s = math.sqrt(q)
    extra = (np.concatenate([_SCALE_POINTS, np.asarray(breakpoints, float)]) - mu) / s
    extra = extra[(extra > -half_width) & (extra < half_width)]
    edges = np.unique(np.concatenate([_BASE_EDGES[half_width], extra]))
    t, w = _rule(edges)
    x = mu + s * t
    out: list[float | np.ndarray] = []
    with np.errstate(all="ignore"):
        for f in fns:
            v = f(x)
            total = v @ w
            tail = np.maximum(np.abs(v[..., 0] * w[0]), np.abs(v[..., -1] * w[-1]))
            scale = np.abs(v) @ w
            ok = np.isfinite(total) & np.isfinite(scale) & (tail <= _TAIL_RTOL * scale)
            if not np.all(ok):
                if half_width < _WIDER[-1]:
                    return None
                signs = np.sign(v)
                one_signed = np.all(signs >= 0, axis=-1) | np.all(signs <= 0, axis=-1)
                if not np.all(ok | one_signed):
                    return None
                total = np.where(ok, total, np.copysign(math.inf, np.sum(v, axis=-1)))
            out.append(_value(total))
    return out


def _value(v: np.ndarray) -> float | np.ndarray:
    """A float for scalar results; an array of floats for stacked (vector-valued) functions."""
    return float(v) if np.ndim(v) == 0 else np.asarray(v, dtype=float)


def smoothed(f: ArrayFn, mu: np.ndarray, q: float) -> np.ndarray:
    """:math:`E_e[f(\\mu + \\sqrt{q}\\, e)]` for an array of means (fixed panels of width 1/2)."""
    if q == 0.0:
        return f(mu)
    x = mu[:, None] + math.sqrt(q) * _UNIFORM_T[None, :]
    return f(x) @ _UNIFORM_W


def bivariate_expectation(
    smooth_f: Callable[[np.ndarray, float], np.ndarray],
    smooth_g: Callable[[np.ndarray, float], np.ndarray],
    mean: float,
    var: float,
    cov: float,
    breakpoints: Sequence[float] = (),
) -> float:
    r""":math:`E[f(z_1) g(z_2)]` for exchangeable jointly normal :math:`z_1, z_2` with common mean,
    variance ``var`` and covariance ``cov`` (:math:`0 \le \text{cov} \le \text{var}`).

    Writes :math:`z_i = m + \sqrt{c}\,u + \sqrt{v - c}\,e_i` and integrates
    :math:`E_u[\bar f(m + \sqrt c u)\, \bar g(m + \sqrt c u)]` where
    :math:`\bar f(y) = E_e f(y + \sqrt{v-c}\, e)` is given by ``smooth_f(y, v - c)``.
    """
    cov = min(max(cov, 0.0), var)
    resid = var - cov
    if cov == 0.0:
        y = np.array([mean])
        return float(smooth_f(y, resid)[0] * smooth_g(y, resid)[0])

    def product(y: np.ndarray) -> np.ndarray:
        return smooth_f(y, resid) * smooth_g(y, resid)

    return gaussian_expectations([product], mean, cov, breakpoints)[0]
