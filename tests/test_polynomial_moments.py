"""Polynomial activations: values beyond the float range and high degrees.

References are independent of the code under test: hand-derived recursions (for ``x**2`` the
pre-activation variance obeys :math:`q_{l+1} = 3 q_l^2`), the Gaussian raw-moment recurrence
evaluated here in mpmath at 50 digits, and mpmath quadrature.
"""

from __future__ import annotations

import math
import time
import warnings

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

import varprop as vp
from varprop.components.activations import MU, Q, X, gaussian_polynomial_expectation
from varprop.errors import VarpropError, VarpropWarning


def _predict(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = vp.predict_variance(*args, **kwargs)
    return value, [w for w in caught if issubclass(w.category, VarpropWarning)]


def test_square_activation_overflows_to_inf_with_warning() -> None:
    # lecun_normal, fan_in 16: q_1 = 1, q_{l+1} = n s^2 E z^4 = 3 q_l^2, so q_l = 3^(2^(l-1) - 1)
    # and Var(z_l^2) = 2 q_l^2: finite up to layer 9 (q_9 = 3^255 ~ 4.6e121), inf from layer 10
    values, caught = _predict("x**2", "lecun_normal", fan_in=16, depth=12, per_layer=True)
    assert caught and "returned as inf" in str(caught[0].message)
    for layer in range(1, 10):
        q = 3.0 ** (2 ** (layer - 1) - 1)
        assert values[layer - 1] == pytest.approx(2 * q * q, rel=1e-12)
    assert np.all(np.isinf(values[9:]))
    last, caught = _predict("x**2", "lecun_normal", fan_in=16, depth=12)
    assert last == math.inf and caught
    gradient, caught = _predict("x**2", "lecun_normal", fan_in=16, depth=12, quantity="gradient")
    assert gradient == math.inf and caught


@pytest.mark.parametrize("method", ["auto", "exact", "closed_form"])
def test_cube_activation_overflows_to_inf_with_warning(method: str) -> None:
    value, caught = _predict("x**3", "lecun_normal", fan_in=16, depth=10, method=method)
    assert value == math.inf and caught


def test_polynomial_moments_beyond_float_range_are_inf_not_overflow_error() -> None:
    act = vp.activation("x**2")
    # E z^2 = 1e200, E z^4 = 3e400 -> inf, E(2z) = 0, E(2z)^2 = 4e200
    assert act.gaussian_moments(0.0, 1e200) == (1e200, math.inf, 0.0, 4e200)
    assert act.gaussian_moments(1e200, 1.0)[1] == math.inf
    second = vp.activation("x**3").closed_form.vectorized["second"]
    assert np.all(np.isinf(second(np.array([1e100, 1.0]), 1e120)))


def test_polynomial_with_nonzero_mean_weights_never_raises_a_raw_exception() -> None:
    scheme = vp.init_scheme("normal", std=0.3, mean=0.05)
    for text in ("x**2", "x**3", "(x+1)**4"):
        try:
            value, _ = _predict(text, scheme, fan_in=16, depth=14)
        except VarpropError:
            continue
        assert value == math.inf


def test_cli_predict_polynomial_overflow_is_inf_with_warning() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "varprop", "predict", "x**2", "lecun_normal",
                          "--fan-in", "16", "--depth", "12"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "warning: predicted activation variance exceeds the float range" in out.stderr
    assert out.stdout.rstrip().splitlines()[-1].split()[2] == "inf"


def _raw_moment_reference(coeffs: list[int], mu: float, q: float) -> mp.mpf:
    """E p(z), z ~ N(mu, q), p = sum c_k x^k, from E z^k = mu E z^(k-1) + (k-1) q E z^(k-2)."""
    with mp.workdps(50):
        mu, q = mp.mpf(mu), mp.mpf(q)
        m = [mp.mpf(1), mu]
        for k in range(2, len(coeffs)):
            m.append(mu * m[-1] + (k - 1) * q * m[-2])
        return sum(c * m[k] for k, c in enumerate(coeffs))


def test_gaussian_polynomial_expectation_against_monomial_integration() -> None:
    u = sp.Symbol("u", real=True)
    for poly in (X**3 - 2 * X + 1, (X + 1) ** 6, sp.pi * X**4 + sp.sqrt(2) * X):
        for mu in (MU, sp.Integer(0), sp.Rational(1, 3)):
            rule = gaussian_polynomial_expectation(poly, mu)
            at = {MU: sp.Rational(2, 7), Q: sp.Rational(5, 2)}
            shifted = sp.expand(poly.subs(X, mu.subs(at) + sp.sqrt(at[Q]) * u))
            exact = sp.integrate(shifted * sp.exp(-u**2 / 2), (u, -sp.oo, sp.oo)) / sp.sqrt(2 * sp.pi)
            assert sp.simplify(rule.subs(at) - exact) == 0, (poly, mu)


def test_degree_64_polynomial_is_fast_and_exact() -> None:
    start = time.perf_counter()
    act = vp.activation("(x+1)**64")
    # std 0.02, fan_in 16: q_1 = 16 * 4e-4 = 6.4e-3
    scheme = vp.init_scheme("normal", std=0.02)
    value = vp.predict_variance(act, scheme, fan_in=16, depth=1)
    elapsed = time.perf_counter() - start
    assert elapsed < 20.0  # was 75 s (activation) + 105 s (predict); about 1 s now
    coeffs = [math.comb(64, k) for k in range(65)]
    squared = [math.comb(128, k) for k in range(129)]
    q = 16 * 0.02**2
    mean, second = _raw_moment_reference(coeffs, 0, q), _raw_moment_reference(squared, 0, q)
    assert value == pytest.approx(float(second - mean**2), rel=1e-12)
    # and against quadrature of the function itself
    with mp.workdps(30):
        quad = mp.quad(lambda t: (1 + mp.sqrt(q) * t) ** 128 * mp.npdf(t), [-mp.inf, 0, mp.inf])
    assert float(second) == pytest.approx(float(quad), rel=1e-12)
    # deep: inf with a warning, not an error
    deep, caught = _predict(act, "lecun_normal", fan_in=16, depth=3)
    assert deep == math.inf and caught
