r"""Batch normalisation of an activated Gaussian batch, by randomised quasi-Monte Carlo.

One channel of a batch of :math:`N` samples before the activation is :math:`z \sim N(m\mathbf 1,
aI + b\mathbf 1\mathbf 1^\top)` (exchangeable; :math:`b \ge -a/N`); the normalisation acts on
:math:`x = \phi(z)` (post-activation placement, ``Dense -> phi -> BatchNorm``):
:math:`y = Px/\sigma`, :math:`\sigma^2 = \lVert Px\rVert^2/N + \epsilon`, with Jacobian
:math:`J = (P - yy^\top/N)/\sigma` and

.. math::

    J^2 = \sigma^{-2}\big(P - (2 - s^2)\, yy^\top/N\big), \qquad s^2 = \lVert y\rVert^2/N .

:math:`x` is not Gaussian, so no sphere law: the expectations below are :math:`N`-dimensional
integrals, computed with scrambled Sobol points (scipy, ``K`` independent scramblings of
:math:`2^k` points with fixed seeds: deterministic, with the standard error of the mean over
the scramblings as an error estimate).  The batch is drawn as :math:`z = m + \sqrt a\,(\xi -
\bar\xi\mathbf 1) + \sqrt{a + Nb}\,\bar\xi\mathbf 1`, :math:`\xi \sim N(0, I_N)`.  Returned
(per-entry averages over :math:`b` and over pairs :math:`b \ne c`):

- ``second``: :math:`E y_b^2 = E s^2`;
- ``jj``: :math:`E (J^2)_{bb}` (the gradient at :math:`x` is :math:`J\delta`, :math:`\delta`
  independent with :math:`E\delta\delta^\top = \alpha I + \beta\mathbf 1\mathbf 1^\top`:
  :math:`E(J\delta)_b^2 = \alpha E(J^2)_{bb}` since :math:`J\mathbf 1 = 0`);
- ``djjd``, ``djjd_cross``: :math:`E d_b^2 (J^2)_{bb}` and :math:`E d_b d_c (J^2)_{bc}`,
  :math:`d = \phi'(z)` (the gradient at :math:`z`, joint over the activation and the
  normalisation).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from varprop._util.lazy import lazy_module

#: SciPy's quasi-Monte Carlo module, imported at first use (:mod:`varprop._util.lazy`)
qmc = lazy_module("scipy.stats.qmc")
#: scipy.special, imported at first use (:mod:`varprop._util.lazy`)
special = lazy_module("scipy.special")

__all__ = ["activated_batch"]

Fn = Callable[[np.ndarray], np.ndarray]

#: Sobol points per scrambling (2^13) and scramblings.
LOG2_POINTS, SCRAMBLES = 13, 8


def activated_batch(n: int, f: Fn, df: Fn, m: float, a: float, b: float, eps: float
                    ) -> dict[str, tuple[float, float]]:
    """``{name: (value, standard error)}`` for the quantities of the module docstring."""
    if not (a > 0 and a + n * b >= 0):
        raise ValueError(f"not a covariance a I + b 11^T: a={a!r}, b={b!r}, N={n}")
    runs = []
    for k in range(SCRAMBLES):
        u = qmc.Sobol(n, scramble=True, rng=np.random.default_rng(1000 + k)
                                  ).random_base2(LOG2_POINTS)
        xi = special.ndtri(np.clip(u, 1e-300, 1 - 1e-16))
        bar = xi.mean(axis=1, keepdims=True)
        z = m + math.sqrt(a) * (xi - bar) + math.sqrt(a + n * b) * bar
        x, d = f(z), df(z)
        c = x - x.mean(axis=1, keepdims=True)
        var = np.mean(c * c, axis=1, keepdims=True)
        inv2 = 1.0 / (var + eps)
        y = c * np.sqrt(inv2)
        s2 = var * inv2
        lam = (2.0 - s2) / n
        jj_diag = inv2 * ((n - 1) / n - lam * y * y)  # (J^2)_bb
        diag = np.sum(d * d * jj_diag, axis=1)
        dpd = np.sum(d * d, axis=1) - np.sum(d, axis=1) ** 2 / n
        djjd = inv2[:, 0] * (dpd - lam[:, 0] * np.sum(y * d, axis=1) ** 2)  # d^T J^2 d
        runs.append([float(np.mean(s2)), float(np.mean(jj_diag)), float(np.mean(diag) / n),
                     float(np.mean(djjd - diag) / (n * (n - 1)))])
    arr = np.array(runs)
    mean, se = arr.mean(axis=0), arr.std(axis=0, ddof=1) / math.sqrt(SCRAMBLES)
    names = ("second", "jj", "djjd", "djjd_cross")
    return {k: (float(v), float(e)) for k, v, e in zip(names, mean, se, strict=True)}
