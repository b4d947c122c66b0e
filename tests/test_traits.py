"""Activation traits (varprop.components.traits) against hand-derived values, each confirmed by an
independent mpmath computation on the mathematical function (never the package's NumPy or SymPy
forms): linearity and slope, oddness, the degree of positive homogeneity, the kinks, and whether
phi' vanishes on an interval.  Every registered activation must have its row here."""

from __future__ import annotations

import math

import mpmath
import pytest

import varprop as vp
from varprop.components.activations import activation_names

#: mpmath working precision (other test modules set mpmath.mp.dps globally: each check sets its own)
DPS = 40


def _relu(x):
    return max(x, 0)


# name or expression -> (mpmath phi, hand-derived traits:
#   slope (None: not linear), odd, homogeneous degree (None: not homogeneous), kinks,
#   derivative nonvanishing)
CASES = {
    "linear": (lambda x: x, (1.0, True, 1.0, (), True)),
    "relu": (_relu, (None, False, 1.0, (0.0,), False)),
    # phi' is 1 or 1/100: never 0
    "leaky_relu": (lambda x: x if x > 0 else x / 100, (None, False, 1.0, (0.0,), True)),
    "tanh": (mpmath.tanh, (None, True, None, (), True)),
    "sigmoid": (lambda x: 1 / (1 + mpmath.exp(-x)), (None, False, None, (), True)),
    "erf": (mpmath.erf, (None, True, None, (), True)),
    # custom expressions
    "abs(x)": (abs, (None, False, 1.0, (0.0,), True)),  # phi' = sign(x)
    "2*x": (lambda x: 2 * x, (2.0, True, 1.0, (), True)),
    "x**3": (lambda x: x**3, (None, True, 3.0, (), True)),  # phi' = 0 at x = 0 only
    "max(x,0)**2": (lambda x: _relu(x) ** 2, (None, False, 2.0, (0.0,), False)),
    "x*tanh(x)": (lambda x: x * mpmath.tanh(x), (None, False, None, (), True)),  # even
    "softplus": (lambda x: mpmath.log(1 + mpmath.exp(x)), (None, False, None, (), True)),
    "abs(x)**1.5": (lambda x: abs(x) ** mpmath.mpf(1.5), (None, False, 1.5, (0.0,), True)),
    "min(max(x,0),6)": (lambda x: min(_relu(x), 6), (None, False, None, (0.0, 6.0), False)),
    # the framework activations (varprop.components.activations_extra), from their definitions:
    # the exponential-linear units have a kink at 0 (phi'' jumps for elu/celu, phi' for selu)
    "elu": (lambda x: x if x > 0 else mpmath.expm1(x), (None, False, None, (0.0,), True)),
    "celu": (lambda x: x if x > 0 else mpmath.expm1(x), (None, False, None, (0.0,), True)),
    "selu": (lambda x: x if x > 0 else mpmath.mpf(1.67326) * mpmath.expm1(x),
             (None, False, None, (0.0,), True)),
    "hardtanh": (lambda x: min(max(x, -1), 1), (None, True, None, (-1.0, 1.0), False)),
    "relu6": (lambda x: min(_relu(x), 6), (None, False, None, (0.0, 6.0), False)),
    # phi' = Phi(x) + x phi(x) vanishes at one point only
    "gelu": (lambda x: x * mpmath.ncdf(x), (None, False, None, (), True)),
    "gelu_tanh": (lambda x: x / 2 * (1 + mpmath.tanh(mpmath.sqrt(2 / mpmath.pi)
                                                     * (x + mpmath.mpf("0.044715") * x**3))),
                  (None, False, None, (), True)),
    "silu": (lambda x: x / (1 + mpmath.exp(-x)), (None, False, None, (), True)),
    "mish": (lambda x: x * mpmath.tanh(mpmath.log(1 + mpmath.exp(x))), (None, False, None, (), True)),
    # phi'' = -2 sign(x) / (1 + |x|)^3 jumps at 0
    "softsign": (lambda x: x / (1 + abs(x)), (None, True, None, (0.0,), True)),
}

GRID = [mpmath.mpf(v) for v in ("0.013", "0.4", "1.1", "2.7", "5.3", "9.9")]
SCALES = [mpmath.mpf(v) for v in ("0.3", "1.7", "4", "13")]


def _mp_slope(phi) -> float | None:
    """c if phi(x) = c x on the grid (both signs), to 30 digits."""
    c = phi(mpmath.mpf(1))
    ok = all(abs(phi(s * x) - c * s * x) <= mpmath.mpf(10) ** -30 * abs(x)
             for x in GRID for s in (1, -1))
    return float(c) if ok else None


def _mp_odd(phi) -> bool:
    return all(abs(phi(-x) + phi(x)) <= mpmath.mpf(10) ** -30 * (1 + abs(phi(x))) for x in GRID)


def _mp_degree(phi) -> float | None:
    """k with phi(c x) = c^k phi(x) for c > 0 on the grid (both signs), phi(0) = 0."""
    if phi(mpmath.mpf(0)) != 0:
        return None
    x0 = next((x for x in GRID if phi(x) != 0), None)
    if x0 is None:
        x0 = -GRID[2]
    k = mpmath.log(phi(2 * x0) / phi(x0)) / mpmath.log(2) if phi(x0) * phi(2 * x0) > 0 else None
    if k is None or k <= 0:
        return None
    for x in GRID:
        for s in (1, -1):
            for c in SCALES:
                if abs(phi(c * s * x) - c**k * phi(s * x)) > mpmath.mpf(10) ** -25 * (1 + abs(phi(c * s * x))):
                    return None
    return float(k)


def _mp_derivative_jumps(phi, points) -> tuple[float, ...]:
    """Which of ``points`` carry a jump of phi' or phi'' (one-sided differences)."""
    h = mpmath.mpf(10) ** -12
    out = []
    for p in points:
        p = mpmath.mpf(p)
        left1, right1 = (phi(p) - phi(p - h)) / h, (phi(p + h) - phi(p)) / h
        left2 = (phi(p) - 2 * phi(p - h) + phi(p - 2 * h)) / h**2
        right2 = (phi(p + 2 * h) - 2 * phi(p + h) + phi(p)) / h**2
        if abs(left1 - right1) > 1e-6 or abs(left2 - right2) > 1e-3:
            out.append(float(p))
    return tuple(out)


def _mp_derivative_vanishes_on_an_interval(phi) -> bool:
    """phi' = 0 at three consecutive points of [-4, 4] sampled at spacing 1/8 (a genuine zero
    set of positive measure, not a tail: erf' at 4 is 1e-7)."""
    xs = [mpmath.mpf(i) / 8 + mpmath.mpf("0.0123") for i in range(-32, 32)]
    zero = [abs(mpmath.diff(phi, x)) < mpmath.mpf(10) ** -30 for x in xs]
    return any(a and b and c for a, b, c in zip(zero, zero[1:], zero[2:]))


def test_every_registered_activation_has_its_reference_row() -> None:
    assert set(activation_names()) <= set(CASES), "add the new activation's row to CASES"


@pytest.mark.parametrize("name", sorted(CASES))
def test_hand_traits_are_the_mathematical_ones(name: str) -> None:
    """The hand-derived rows are confirmed by mpmath, independently of the package."""
    phi, (slope, odd, degree, kinks, nonvanishing) = CASES[name]
    with mpmath.workdps(DPS):
        assert _mp_slope(phi) == slope
        assert _mp_odd(phi) == odd
        got = _mp_degree(phi)
        assert (got is None) == (degree is None) and (got is None or math.isclose(got, degree))
        candidates = sorted({*kinks, -1.0, 0.0, 0.5, 2.0, 6.0})
        assert _mp_derivative_jumps(phi, candidates) == kinks
        assert _mp_derivative_vanishes_on_an_interval(phi) == (not nonvanishing)


@pytest.mark.parametrize("name", sorted(CASES))
def test_computed_traits_match(name: str) -> None:
    _, (slope, odd, degree, kinks, nonvanishing) = CASES[name]
    traits = vp.activation(name).traits
    assert traits.linear == (slope is not None)
    assert traits.slope == slope
    assert traits.odd == odd
    assert traits.homogeneous_degree == degree
    assert traits.homogeneous == (degree is not None)
    assert traits.exact_at_finite_width == (degree == 1.0)
    assert traits.kinks == kinks
    assert traits.derivative_nonvanishing == nonvanishing


@pytest.mark.parametrize("slope, nonvanishing, odd", [(0.0, False, False), (0.2, True, False),
                                                      (1.0, True, True), (-1.0, True, False)])
def test_leaky_relu_traits_follow_the_slope(slope: float, nonvanishing: bool, odd: bool) -> None:
    # slope 0 is ReLU (phi' = 0 on x < 0), slope 1 the identity (odd), slope -1 is abs
    traits = vp.activation("leaky_relu", negative_slope=slope).traits
    assert traits.derivative_nonvanishing == nonvanishing
    assert traits.odd == odd
    assert traits.homogeneous_degree == 1.0


def test_odd_is_mathematical_not_bitwise() -> None:
    # NumPy's vectorised power is not bitwise odd; x**3 is odd
    assert vp.activation("x**5 - 3*x").traits.odd
    # odd to rounding on the grid but not odd: a tiny constant
    assert not vp.activation("tanh(x) + 1e-20").traits.odd


def test_is_odd_is_an_alias_of_the_trait() -> None:
    from varprop.components.activations import is_odd

    for name in CASES:
        act = vp.activation(name)
        assert is_odd(act) == act.traits.odd


def test_a_piecewise_identity_is_linear() -> None:
    # max(x, 0) + min(x, 0) = x: leaky ReLU of slope 1 is the identity (no kink)
    for act in (vp.activation("leaky_relu", negative_slope=1.0), vp.activation("max(x,0) + min(x,0)")):
        traits = act.traits
        assert traits.linear and traits.slope == 1.0 and traits.kinks == ()
    half = vp.activation("max(x,0)/2 + min(x,0)/2").traits
    assert half.linear and half.slope == 0.5
    assert not vp.activation("leaky_relu", negative_slope=0.999).traits.linear
