r"""Closed forms of :math:`E\phi(x)\phi(y)` and :math:`E\phi'(x)\phi'(y)` for the ReLU class at
*non-zero* means (the zero-mean arc-cosine kernel is :func:`varprop._math.bivariate.relu_class`).

For :math:`(x, y) \sim N((m_1, m_2), [[a, c], [c, b]])` write :math:`x = m_1 + \sqrt a\, z_1`,
:math:`y = m_2 + \sqrt b\, z_2` with standard normals of correlation :math:`\rho = c/\sqrt{ab}`,
:math:`s = \sqrt{1 - \rho^2}`, and the truncation points :math:`A = -m_1/\sqrt a`,
:math:`B = -m_2/\sqrt b` (:math:`x > 0 \iff z_1 > A`).  The moments of the truncated bivariate
normal (Rosenbaum 1961, "Moments of a truncated bivariate normal distribution", JRSS B 23) are,
with :math:`L = P(z_1 > A, z_2 > B) = \Phi_2(-A, -B; \rho)`,
:math:`q_A = \Phi(-(B - \rho A)/s)`, :math:`q_B = \Phi(-(A - \rho B)/s)`:

.. math::

    E[z_1 1] = \varphi(A) q_A + \rho\,\varphi(B) q_B, \qquad
    E[z_2 1] = \varphi(B) q_B + \rho\,\varphi(A) q_A,

    E[z_1 z_2 1] = \rho L + \rho A \varphi(A) q_A + \rho B \varphi(B) q_B
    + \frac{s}{2\pi} e^{-(A^2 - 2\rho A B + B^2)/(2 s^2)},

(:math:`1` the indicator of the orthant), so :math:`E[x^+ y^+] = m_1 m_2 L + m_1\sqrt b\,E[z_2 1]
+ m_2 \sqrt a\,E[z_1 1] + \sqrt{ab}\,E[z_1 z_2 1]` and :math:`E[1\{x>0\}1\{y>0\}] = L`.  For
:math:`\phi(x) = \alpha x^+ - \beta (-x)^+` (slopes :math:`\alpha` for :math:`x > 0`,
:math:`\beta` below) the four sign combinations of :math:`(\pm x, \pm y)` (means and correlation
flipped accordingly) add up.  :math:`\Phi_2` is evaluated with Owen's :math:`T` function (Owen
1956): :math:`\Phi_2(h, k; \rho) = \frac12\Phi(h) + \frac12\Phi(k) - T(h, \frac{k - \rho h}{h s})
- T(k, \frac{h - \rho k}{k s}) - \beta_{hk}`, :math:`\beta_{hk} = \frac12` when :math:`hk < 0`
or :math:`hk = 0` with :math:`h + k < 0`, else 0; :math:`\frac14 + \arcsin(\rho)/(2\pi)` at
:math:`h = k = 0`.

Valid for :math:`a, b > 0` and :math:`|\rho| < 1`; the caller uses quadrature elsewhere.
Checked against conditional quadrature (:func:`~varprop._math.bivariate.by_quadrature`) to
:math:`10^{-15}` (tests/interop/test_torch_trace.py).
"""

from __future__ import annotations

import math

import numpy as np

from varprop._util.lazy import lazy_module

special = lazy_module("scipy.special")

__all__ = ["orthant", "relu_class_shifted", "RHO_LIMIT"]

#: Pairs with :math:`|\rho|` above this are left to quadrature (:math:`s \to 0`).
RHO_LIMIT = 1.0 - 1e-9


def orthant(h: np.ndarray, k: np.ndarray, rho: np.ndarray) -> np.ndarray:
    r""":math:`\Phi_2(h, k; \rho) = P(z_1 < h, z_2 < k)` for :math:`|\rho| < 1` (Owen's T)."""
    s = np.sqrt(1.0 - rho * rho)
    with np.errstate(divide="ignore", invalid="ignore"):
        ah = np.where(h != 0, (k - rho * h) / (h * s), np.sign(k - rho * h) * np.inf)
        ak = np.where(k != 0, (h - rho * k) / (k * s), np.sign(h - rho * k) * np.inf)
    ah, ak = np.nan_to_num(ah, nan=0.0), np.nan_to_num(ak, nan=0.0)
    beta = np.where((h * k > 0) | ((h * k == 0) & (h + k >= 0)), 0.0, 0.5)
    out = 0.5 * special.ndtr(h) + 0.5 * special.ndtr(k) - special.owens_t(h, ah) - special.owens_t(k, ak) - beta
    return np.where((h == 0) & (k == 0), 0.25 + np.arcsin(rho) / (2 * math.pi), out)


def _positive_pair(m1: np.ndarray, m2: np.ndarray, a: np.ndarray, b: np.ndarray,
                   rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``(E[x^+ y^+], P(x > 0, y > 0))`` (module docstring)."""
    s1, s2 = np.sqrt(a), np.sqrt(b)
    big_a, big_b = -m1 / s1, -m2 / s2
    s = np.sqrt(1.0 - rho * rho)
    orth = orthant(-big_a, -big_b, rho)
    pa = np.exp(-0.5 * big_a * big_a) / math.sqrt(2 * math.pi)
    pb = np.exp(-0.5 * big_b * big_b) / math.sqrt(2 * math.pi)
    qa = special.ndtr(-(big_b - rho * big_a) / s)
    qb = special.ndtr(-(big_a - rho * big_b) / s)
    e1 = pa * qa + rho * pb * qb
    e2 = pb * qb + rho * pa * qa
    dens = s * np.exp(-(big_a * big_a - 2 * rho * big_a * big_b + big_b * big_b) / (2 * s * s))
    e12 = rho * orth + rho * big_a * pa * qa + rho * big_b * pb * qb + dens / (2 * math.pi)
    return m1 * m2 * orth + m1 * s2 * e2 + m2 * s1 * e1 + s1 * s2 * e12, orth


def relu_class_shifted(alpha: float, beta: float, m1: np.ndarray, m2: np.ndarray, a: np.ndarray,
                       b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``(E phi(x)phi(y), E phi'(x)phi'(y))`` for :math:`\phi` of slopes ``alpha`` (positive
    side) and ``beta`` (negative side), any means, :math:`a, b > 0`, :math:`|\rho| < 1`."""
    rho = c / np.sqrt(a * b)
    ff = np.zeros(np.shape(c))
    dd = np.zeros(np.shape(c))
    for sx, wx, dx in ((1.0, alpha, alpha), (-1.0, -beta, beta)):
        for sy, wy, dy in ((1.0, alpha, alpha), (-1.0, -beta, beta)):
            if wx * wy == 0.0 and dx * dy == 0.0:
                continue
            e, p = _positive_pair(sx * m1, sy * m2, a, b, sx * sy * rho)
            ff += wx * wy * e
            dd += dx * dy * p
    return ff, dd
