r"""Truncated Gaussian expectations of exponentials, :math:`E[e^{kz}1\{z<0\}]`, evaluated stably.

For :math:`z \sim N(\mu, q)`, completing the square gives
:math:`E[e^{kz}1\{z<0\}] = e^{k\mu + k^2 q/2}\,\Phi(-(\mu + kq)/\sqrt q)`: the Gaussian moments
of the exponential-linear units (ELU, SELU, CELU; Klambauer et al. 2017) are built from it
(:func:`varprop.components.moment_rules.exponential_linear_rules`).  Evaluated as written it
gives ``inf * 0`` in the lower tail and loses every digit of
:math:`E[(e^{kz} - 1)1\{z<0\}]` as :math:`q \to 0`; the functions here avoid both.

They are the numeric implementations (``_imp_``) of the SymPy functions
:class:`varprop.components.moment_rules.gauss_exp_below_zero` and ``gauss_exp_excess``, so code
compiled from those closed forms calls them; they import no SymPy, and mpmath only when given
mpmath numbers (the overflow fallback of :func:`varprop._math.scalar.lambdify_scalar`), which
cannot exist unless mpmath was imported.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from varprop._util.lazy import lazy_module

#: scipy.special, imported at first use (:mod:`varprop._util.lazy`)
special = lazy_module("scipy.special")

__all__ = ["gauss_exp_below_zero", "gauss_exp_excess"]


def _mpmath_if_any(*values: object) -> object | None:
    """The mpmath module if one of ``values`` is an mpmath number, else None (without importing
    mpmath: no value can be an mpmath number before it is imported)."""
    mpmath = sys.modules.get("mpmath")
    if mpmath is not None and any(isinstance(v, mpmath.mpf) for v in values):
        return mpmath
    return None


def gauss_exp_below_zero(k: object, mu: object, q: object) -> object:
    r""":math:`E[e^{kz}1\{z<0\}] = e^{k\mu + k^2q/2}\Phi(b)`, :math:`b = -(\mu + kq)/\sqrt q`,
    without ``inf * 0``: in the lower tail (:math:`b < 0`) as
    :math:`\tfrac12 e^{-\mu^2/(2q)}\operatorname{erfcx}(-b/\sqrt2)` (the exponent
    :math:`k\mu + k^2q/2 - b^2/2 = -\mu^2/(2q)` exactly, so no cancellation of huge terms), else
    directly (:math:`\Phi(b) \ge 1/2`: it overflows only where the true value does).  mpmath
    arguments are evaluated with mpmath.

    >>> value = gauss_exp_below_zero(1.0, 0.0, 1.0)
    >>> math.isclose(value, math.exp(0.5) * 0.5 * math.erfc(1 / math.sqrt(2)), rel_tol=1e-14)
    True
    """
    mpmath = _mpmath_if_any(k, mu, q)
    if mpmath is not None:
        return mpmath.exp(k * mu + k * k * q / 2) * mpmath.ncdf(-(mu + k * q) / mpmath.sqrt(q))
    k_, mu_, q_ = (np.asarray(v, dtype=float) for v in (k, mu, q))
    root_q = np.sqrt(q_)
    t = (mu_ + k_ * q_) / (math.sqrt(2.0) * root_q)  # -b / sqrt(2)
    with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
        tail = 0.5 * np.exp(-mu_ * mu_ / (2.0 * q_)) * special.erfcx(np.maximum(t, 0.0))
        body = np.exp(k_ * mu_ + k_ * k_ * q_ / 2.0) * special.ndtr(-math.sqrt(2.0) * t)
        out = np.where(t > 0, tail, body)
    return float(out) if out.ndim == 0 else out


def gauss_exp_excess(k: object, mu: object, q: object) -> object:
    r""":math:`E[(e^{kz} - 1)1\{z<0\}] = e^{a}\Phi(b) - \Phi(-r)`, :math:`a = k\mu + k^2q/2`,
    :math:`r = \mu/\sqrt q`, accurate where it is small (:math:`q \to 0`: both terms tend to
    :math:`\Phi(-r)`): for :math:`|a| < 1/2` as :math:`\operatorname{expm1}(a)\Phi(b) +
    (\Phi(b) - \Phi(-r))`, the difference by :math:`\operatorname{erf}` (exactly 0 at
    :math:`r = 0`) or, for :math:`r > 1`, by :math:`\operatorname{erfc}` (lower tails); else
    :func:`gauss_exp_below_zero` minus :math:`\Phi(-r)`.

    >>> value = gauss_exp_excess(1.0, 0.0, 1e-12)  # ~ E[z 1{z<0}] = -sqrt(q / (2 pi)): no cancellation
    >>> math.isclose(value, -math.sqrt(1e-12 / (2 * math.pi)), rel_tol=1e-5)
    True
    """
    mpmath = _mpmath_if_any(k, mu, q)
    if mpmath is not None:
        return gauss_exp_below_zero(k, mu, q) - mpmath.ncdf(-mu / mpmath.sqrt(q))
    k_, mu_, q_ = (np.asarray(v, dtype=float) for v in (k, mu, q))
    root2, root_q = math.sqrt(2.0), np.sqrt(q_)
    a, b, r = k_ * mu_ + k_ * k_ * q_ / 2.0, -(mu_ + k_ * q_) / root_q, mu_ / root_q
    with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
        gap = np.where(r > 1.0,
                       0.5 * (special.erfc(-b / root2) - special.erfc(r / root2)),
                       0.5 * (special.erf(b / root2) + special.erf(r / root2)))
        small = np.expm1(a) * special.ndtr(b) + gap
        large = np.asarray(gauss_exp_below_zero(k_, mu_, q_)) - special.ndtr(-r)
        out = np.where(np.abs(a) < 0.5, small, large)
    return float(out) if out.ndim == 0 else out
