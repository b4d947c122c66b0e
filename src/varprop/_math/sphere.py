r"""The law of a batch-normalised batch: exact expectations over the sphere of centred batches.

One channel of a batch of :math:`N` entries, :math:`h \sim N(m\mathbf 1, a I + b \mathbf 1
\mathbf 1^\top)` (a permutation-symmetric Gaussian batch; :math:`m` and :math:`b` are removed by
the centring), is normalised by its batch statistics (biased variance, as PyTorch does in train
mode):

.. math::

    y = \frac{P h}{\sqrt{\lVert P h\rVert^2 / N + \epsilon}}, \qquad
    P = I - \tfrac1N \mathbf 1\mathbf 1^\top .

Write :math:`P h = \sqrt a\, r\, u` with :math:`v = r^2 \sim \chi^2_{N-1}` independent of the
direction :math:`u`, uniform on the unit sphere of the :math:`(N-1)`-dimensional subspace
:math:`\mathbf 1^\perp`.  Then :math:`y = \sqrt N\, s\, u` with :math:`s^2 = v / (v + \eta)`,
:math:`\eta = N\epsilon / a` (so :math:`s = 1` at :math:`\epsilon = 0`: the output is uniform on
a sphere of radius :math:`\sqrt N`, whatever :math:`a`).  Two coordinates :math:`b \ne c`: the
unit vectors :math:`w_b = Pe_b/\lVert Pe_b\rVert` have :math:`w_b\cdot w_c = \cos\psi =
-1/(N-1)`; the projection of :math:`u` on their plane has polar coordinates :math:`(R, \theta)`
with :math:`R^2 \sim \mathrm{Beta}(1, (N-3)/2)` and :math:`\theta` uniform, so

.. math::

    y_b = \sqrt{N-1}\, s R\cos\theta, \qquad y_c = \sqrt{N-1}\, s R \cos(\theta - \psi)

(one coordinate alone: :math:`t = R\cos\theta` has density :math:`\propto (1-t^2)^{(N-4)/2}`,
not Gaussian at finite :math:`N`).  :math:`N = 3`: :math:`R = 1`; :math:`N = 2`:
:math:`y_c = -y_b = \pm s`.

Every expectation here is a product quadrature over :math:`(v, R, \theta)`: composite
Gauss--Legendre in :math:`\log v` (resolves the :math:`1/(v+\eta)` of the Jacobian and the
transition of :math:`s` at :math:`v \approx \eta`; from the :math:`v` below which the integrands
carry under :math:`10^{-16}`), composite Gauss--Legendre in :math:`\rho`, where :math:`R^2 = 1 -
e^{-2\rho^2/(N-3)}` and :math:`\rho^2 \sim \mathrm{Exp}(1)` (exactly the Beta law; the integrands
are smooth in :math:`\rho` for every :math:`N`), and composite Gauss--Legendre in :math:`\theta`
split where :math:`y_b` or :math:`y_c` changes sign (the kinks of ReLU-class functions).
Piecewise-analytic integrands with kinks at 0 come out to about :math:`10^{-12}` relative (tested
against exact values: :math:`E y_b^4 = 3(N-1)/(N+1)` and :math:`E y_b y_c = -1/(N-1)` at
:math:`\epsilon = 0`, the linear Jacobian's closed form, :math:`E y_b^2` against mpmath, and
against Monte Carlo of normalised Gaussian batches; two grids of different density agree to
:math:`10^{-13}`).  Any batch size :math:`N \ge 2` (tested up to :math:`10^4`).
Kinks elsewhere (hardtanh) converge algebraically.

The backward rule (Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz 2019, "A mean field theory
of batch normalization", ICLR) follows from the Jacobian of the map,

.. math::

    J = \frac{\partial y}{\partial h} = c\,(P - \kappa\, u u^\top), \qquad
    c^2 = \frac{N}{a (v + \eta)}, \quad \kappa = s^2,
    \qquad J^2 = c^2\,(P - \kappa(2-\kappa)\, u u^\top).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from functools import cached_property, lru_cache

import numpy as np

from varprop._util.lazy import lazy_module

#: scipy.stats, imported at first use (:mod:`varprop._util.lazy`)
stats = lazy_module("scipy.stats")

__all__ = ["BatchSphere"]

Fn = Callable[[np.ndarray], np.ndarray]

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(12)
_GL_NODES = (_GL_NODES + 1.0) / 2.0
_GL_WEIGHTS = _GL_WEIGHTS / 2.0
_LOG_V_LOW = math.log(1e-30)
_LOG_PANEL = 3.0  # panel width in log v
_THETA_SPLIT = 2  # sub-panels between consecutive break angles
_RHO_MAX, _RHO_PANELS = 6.5, 7  # rho^2 ~ Exp(1) on [0, 6.5]: the tail beyond carries e^-42


def _composite(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of 12-point Gauss--Legendre on each panel ``[edges[i], edges[i+1]]``."""
    lo, width = edges[:-1, None], np.diff(edges)[:, None]
    return (lo + width * _GL_NODES).ravel(), (width * _GL_WEIGHTS).ravel()


@lru_cache(maxsize=64)
def _angular_grid(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Nodes :math:`(R, \theta)` (flattened product grid) and weights of the plane of two
    coordinates of a batch of ``n``."""
    psi = math.acos(-1.0 / (n - 1))
    if n == 2:
        return np.ones(2), np.array([0.0, math.pi]), np.full(2, 0.5)
    if n == 3:
        r, wr = np.ones(1), np.ones(1)
    else:  # R^2 = 1 - exp(-rho^2/m), m = (N-3)/2, with rho^2 ~ Exp(1): Beta(1, m), exactly
        x, wx = _composite(np.linspace(0.0, _RHO_MAX, _RHO_PANELS + 1))
        r = np.sqrt(-np.expm1(-x * x / ((n - 3) / 2.0)))
        wr = 2.0 * x * np.exp(-x * x) * wx
    breaks = np.mod(np.array([0.0, math.pi / 2, 3 * math.pi / 2, psi + math.pi / 2,
                              psi - math.pi / 2]), 2 * math.pi)
    breaks = np.unique(np.concatenate([breaks, [2 * math.pi]]))
    fine = np.concatenate([np.linspace(lo, hi, _THETA_SPLIT + 1)[:-1]
                           for lo, hi in itertools.pairwise(breaks)] + [[2 * math.pi]])
    th, wt = _composite(fine)
    wt = wt / (2 * math.pi)
    rr, tt = np.meshgrid(r, th, indexing="ij")
    return rr.ravel(), tt.ravel(), (wr[:, None] * wt[None, :]).ravel()


class BatchSphere:
    r"""Expectations over one normalised channel of a batch of ``n`` entries with
    :math:`\eta = N\epsilon/a` (see the module docstring); quantities are for :math:`a = 1`
    (the forward law does not depend on :math:`a` except through :math:`\eta`; the Jacobian
    scales as :math:`a^{-1/2}`).

    Parameters
    ----------
    n : int
        Entries normalised together (:math:`N \ge 2`: batch size times positions).
    eta : float
        :math:`N\epsilon/a \ge 0`.
    """

    def __init__(self, n: int, eta: float) -> None:
        self.n = int(n)
        self.eta = float(eta)

    # --- quadrature grid ----------------------------------------------------------------------
    @cached_property
    def _radial(self) -> tuple[np.ndarray, np.ndarray]:
        r"""Nodes :math:`v` and weights of :math:`E g(v)`, :math:`v \sim \chi^2_{N-1}`: composite
        12-point Gauss--Legendre in :math:`\log v` on panels of width :math:`\min(2,
        2\sqrt{2/(N-1)})` (the log of a :math:`\chi^2_k` has standard deviation about
        :math:`\sqrt{2/k}`), from the :math:`v` below which the integrands carry under :math:`10^{-16}` (or
        the :math:`10^{-40}` quantile) to the :math:`10^{-20}` upper quantile."""
        k = self.n - 1
        high = math.log(stats.chi2.isf(1e-20, k))
        # below v0 the integrands (at most 1/max(v, eta) times the chi^2 mass v^((N-1)/2)) carry
        # under 1e-16: v0^((N-3)/2) < 1e-16 at eta = 0, v0^((N-1)/2) < 1e-16 eta otherwise
        if self.eta > 0:
            low = math.log(1e-16 * self.eta) * 2 / k
        else:
            low = -16 * math.log(10) * 2 / (self.n - 3) if self.n > 3 else _LOG_V_LOW
        low = max(low, _LOG_V_LOW, math.log(max(stats.chi2.ppf(1e-40, k), 1e-300)))
        width = min(_LOG_PANEL, 2.0 * math.sqrt(2.0 / k))
        edges = np.linspace(low, high, math.ceil((high - low) / width) + 1)
        t, w = _composite(edges)
        v = np.exp(t)
        return v, w * np.exp(stats.chi2.logpdf(v, k) + t)

    def _radial_mean(self, values: np.ndarray) -> float:
        return float(np.sum(values * self._radial[1]))

    @property
    def _angular(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _angular_grid(self.n)

    def _grid(self) -> dict[str, np.ndarray]:
        """Every quantity at every node ``(v, R, theta)``: a dict of broadcastable arrays."""
        v, wv = self._radial
        r, th, wa = self._angular
        n, eta = self.n, self.eta
        psi = math.acos(-1.0 / (n - 1))
        s2 = v / (v + eta) if eta > 0 else np.ones_like(v)
        s = np.sqrt(s2)[:, None]
        scale = math.sqrt(n - 1)
        ub = (r * np.cos(th))[None, :] * math.sqrt((n - 1) / n)
        uc = (r * np.cos(th - psi))[None, :] * math.sqrt((n - 1) / n)
        return {"w": wv[:, None] * wa[None, :], "s2": s2[:, None], "c2": (n / (v + eta))[:, None],
                "ub": ub, "uc": uc, "yb": scale * s * (ub / math.sqrt((n - 1) / n)),
                "yc": scale * s * (uc / math.sqrt((n - 1) / n))}

    @cached_property
    def grid(self) -> dict[str, np.ndarray]:
        return self._grid()

    def _mean(self, values: np.ndarray) -> float:
        g = self.grid
        return float(np.sum(np.broadcast_to(values, g["w"].shape) * g["w"]))

    # --- forward ------------------------------------------------------------------------------
    @cached_property
    def second(self) -> float:
        r""":math:`E y_b^2 = E\,v/(v+\eta)` over :math:`v \sim \chi^2_{N-1}` (exactly 1 at
        :math:`\eta = 0`)."""
        if self.eta == 0:
            return 1.0
        v = self._radial[0]
        return self._radial_mean(v / (v + self.eta))

    def expect(self, f: Fn) -> float:
        r""":math:`E f(y_b)` for one coordinate."""
        return self._mean(f(self.grid["yb"]))

    def expect2(self, f: Fn, g: Fn) -> float:
        r""":math:`E f(y_b) g(y_c)` for two different coordinates :math:`b \ne c`."""
        gr = self.grid
        return self._mean(f(gr["yb"]) * g(gr["yc"]))

    # --- backward -----------------------------------------------------------------------------
    def backward(self, deriv: Fn | None, diag: float, cross: float) -> float:
        r"""The gradient at the normalisation's input, :math:`\delta_h = J D \delta`, with
        :math:`D = \mathrm{diag}(\phi'(y))` (``deriv``; ``None``: the identity) and
        :math:`\delta` independent of the forward pass with :math:`E\delta\delta^\top =
        \alpha I + \beta\mathbf 1\mathbf 1^\top` (``diag`` :math:`= \alpha`, ``cross`` :math:`=
        \beta`).  Returns :math:`X` in :math:`E\delta_h\delta_h^\top = X P / a` (at :math:`a =
        1`), so :math:`E\delta_{h,b}^2 = X(N-1)/(Na)` and :math:`E\delta_{h,b}\delta_{h,c} =
        -X/(Na)`.  With :math:`d = \phi'(y)`, :math:`\lambda = \kappa(2-\kappa)`:

        .. math::

            (N-1) X = \alpha N\, E\big[c^2 d_b^2 (\tfrac{N-1}{N} - \lambda u_b^2)\big]
            + \beta\, E\big[c^2\big((N-1)(d_b^2 - d_b d_c)
              - \lambda N (u_b^2 d_b^2 + (N-1) u_b u_c d_b d_c)\big)\big].

        (:math:`J\mathbf 1 = 0`, so the result is a multiple of :math:`P`; its trace over the
        batch gives :math:`X`.)  Linear (:math:`d = 1`, :math:`\epsilon = 0`): :math:`X = \alpha
        N(N-2)/((N-1)(N-3))`, infinite for :math:`N \le 3`.
        """
        n = self.n
        if deriv is None:  # d = 1: E u_b^2 = 1/N and the beta part vanishes (sum_b u_b = 0)
            v = self._radial[0]
            c2, s2 = n / (v + self.eta), v / (v + self.eta)
            return diag * self._radial_mean(c2 * ((n - 1) - s2 * (2.0 - s2))) / (n - 1)
        g = self.grid
        db, dc = deriv(g["yb"]), deriv(g["yc"])
        lam = g["s2"] * (2.0 - g["s2"])
        a_part = n * g["c2"] * db * db * ((n - 1) / n - lam * g["ub"] ** 2)
        total = diag * self._mean(a_part)
        if cross:
            b_part = g["c2"] * ((n - 1) * (db * db - db * dc)
                                - lam * n * (g["ub"] ** 2 * db * db
                                             + (n - 1) * g["ub"] * g["uc"] * db * dc))
            total += cross * self._mean(b_part)
        return total / (n - 1)
