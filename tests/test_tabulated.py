"""The verified log-q table behind fast exact tanh/sigmoid/custom moments (varprop._math.tabulated)."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import varprop
from varprop._math.tabulated import LogTable
from varprop.theory.moments import zero_mean_moments as _zero_mean_moments


def _mp_moments(phi, dphi, q):
    """(E phi, E phi^2, E phi'^2), z ~ N(0, q), by mpmath at 30 digits (independent reference)."""
    mp.mp.dps = 30
    s = mp.sqrt(q)
    w = lambda f: mp.quad(lambda t: f(s * t) * mp.npdf(t), [-mp.inf, -4, 0, 4, mp.inf])  # noqa: E731
    return tuple(float(w(f)) for f in (phi, lambda x: phi(x) ** 2, lambda x: dphi(x) ** 2))


@pytest.mark.parametrize("q", [3e-6, 0.01, 0.7, 1.0, 13.0, 4e3, 9e5])
def test_exact_tanh_moments_against_mpmath(q):
    got = _zero_mean_moments(varprop.activation("tanh"), "exact")(q)
    ref = _mp_moments(mp.tanh, lambda x: mp.sech(x) ** 2, q)
    assert got[0] == pytest.approx(0.0, abs=1e-14)
    assert got[1:] == pytest.approx(ref[1:], rel=1e-11)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "x*sigmoid(x)"])
def test_table_agrees_with_direct_quadrature_everywhere(name):
    act = varprop.activation(name)
    table, direct = _zero_mean_moments(act, "exact"), _zero_mean_moments(act, "quadrature")
    assert isinstance(table, LogTable)
    for q in np.geomspace(1e-7, 1e7, 997):  # inside and outside the tabulated range
        a, b = np.array(table(q)), np.array(direct(q))
        tol = 1e-11 * np.maximum(np.abs(b), 1e-3 * np.max(np.abs(b)))
        assert np.all(np.abs(a - b) <= tol), (q, a, b)


def test_a_panel_that_fails_verification_falls_back_to_the_function():
    calls = []

    def kinked(q):  # |log q - 0.1| has a kink inside one panel: no polynomial fits it to 1e-11
        calls.append(q)
        return (abs(math.log(q) - 0.1), q)

    table = LogTable(kinked)
    q = math.exp(0.1 + 0.01)
    assert table(q) == kinked(q)  # exact value, from the function
    assert sum(v is None for v in table._panels.values()) == 1
    smooth = math.exp(3.0)
    assert table(smooth) == pytest.approx((3.0 - 0.1, smooth), rel=1e-12)
    n = len(calls)
    table(smooth * 1.01)  # the panel is built once
    assert len(calls) == n


def test_outside_the_range_and_at_the_ends_the_function_is_called():
    table = LogTable(lambda q: (q,))
    for q in (0.0, 1e-9, 2e6, math.inf):
        assert table(q) == (q,)
    assert not table._panels
