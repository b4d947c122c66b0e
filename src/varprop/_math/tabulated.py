r"""Fast exact moments: a verified piecewise-polynomial table of a smooth function of :math:`\log q`.

The zero-mean Gaussian moments of an activation without an exact closed form (tanh, sigmoid,
custom activations), :math:`q \mapsto (E\phi, E\phi^2, E\phi'^2)` for :math:`z \sim N(0, q)`,
cost one Gauss--Legendre quadrature (~50 µs) each, and a depth-:math:`L` recursion needs
:math:`L` of them.  They are smooth in :math:`t = \log q`, so :class:`LogTable` interpolates them:

* :math:`t \in [\log 10^{-6}, \log 10^{6}]` is cut into panels of width :math:`h = 1/4`;
* a panel is built the first time a :math:`q` falls in it: the function (quadrature) at the
  :math:`k = 12` Chebyshev points of the panel, the interpolating polynomial in the local
  variable :math:`s \in [-1, 1]`, converted to monomials for a plain Horner evaluation;
* **verified before use**: at 4 points between the nodes the polynomial must agree with the
  function to :math:`10^{-11}` relative (to the larger of the value and the panel's scale; plus
  :math:`10^{-14}` of the largest component, the quadrature's own round-off of a moment that
  vanishes, such as :math:`E\tanh(z) = 0`), else
  the panel is marked and those :math:`q` go to the function itself.  Outside the range the
  function is called directly.

So a table never returns a number that was not checked against quadrature in its panel; for an
analytic function of :math:`t` (every registered activation) the interpolation error is far
below the tolerance.  A warm depth-100 recursion of tanh then takes well under a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["LogTable"]

Vector = tuple[float, ...]

_T_MIN, _T_MAX = math.log(1e-6), math.log(1e6)
_H = 0.25
_DEGREE = 11  # 12 nodes
_RTOL = 1e-11
_NOISE = 1e-14
_NODES = np.cos(np.pi * (np.arange(_DEGREE + 1) + 0.5) / (_DEGREE + 1))  # Chebyshev, 1st kind
_CHECKS = np.array([-0.93, -0.41, 0.27, 0.88])  # between the nodes
_FAILED = None


class LogTable:
    """Lazily built, verified interpolant of ``fn(q) -> tuple of floats`` in ``log q``.

    >>> import math
    >>> table = LogTable(lambda q: (math.sqrt(q), q / (1 + q)))
    >>> [round(v, 12) for v in table(2.0)]
    [1.414213562373, 0.666666666667]
    """

    def __init__(self, fn: Callable[[float], Vector]) -> None:
        self.fn = fn
        self._panels: dict[int, list[list[float]] | None] = {}

    def __call__(self, q: float) -> Vector:
        if not q > 0.0 or math.isinf(q):
            return self.fn(q)
        t = math.log(q)
        if not _T_MIN <= t < _T_MAX:
            return self.fn(q)
        u = (t - _T_MIN) / _H
        i = int(u)
        panel = self._panels.get(i, 0)
        if panel == 0:
            panel = self._panels[i] = self._build(i)
        if panel is _FAILED:
            return self.fn(q)
        s = 2.0 * (u - i) - 1.0
        out = []
        for coef in panel:  # Horner, highest power first
            acc = 0.0
            for c in coef:
                acc = acc * s + c
            out.append(acc)
        return tuple(out)

    def _q(self, i: int, s: np.ndarray) -> np.ndarray:
        return np.exp(_T_MIN + _H * (i + (s + 1.0) / 2.0))

    def _build(self, i: int) -> list[list[float]] | None:
        values = np.array([self.fn(float(q)) for q in self._q(i, _NODES)], dtype=float)
        if not np.all(np.isfinite(values)):
            return _FAILED
        coefs = [np.polynomial.chebyshev.chebfit(_NODES, values[:, j], _DEGREE)
                 for j in range(values.shape[1])]
        powers = [np.polynomial.chebyshev.cheb2poly(c)[::-1].tolist() for c in coefs]
        scale = np.max(np.abs(values), axis=0)
        floor = _NOISE * float(np.max(scale))  # quadrature round-off of a component that is ~0
        for s, q in zip(_CHECKS, self._q(i, _CHECKS)):
            exact = np.array(self.fn(float(q)), dtype=float)
            approx = np.array([np.polyval(p, s) for p in powers])
            if np.any(np.abs(approx - exact) > _RTOL * np.maximum(np.abs(exact), scale) + floor):
                return _FAILED
        return powers
