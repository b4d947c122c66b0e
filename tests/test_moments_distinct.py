"""``theory.moments.gaussian_moments_many`` computes each distinct ``(mean, var)`` node once and
copies it to its duplicates: the floats must be bit for bit those of every node evaluated alone
(the rule without the shortcut), and the propagations built on them unchanged.

The accuracy of the rule itself is checked against an independent integration (SciPy ``quad``
of the Gaussian density), to 1e-10 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from varprop import propagate
from varprop.components.activations import resolve_activation
from varprop.components.schemes import resolve_scheme
from varprop.theory import moments, predict

ACTS = ("tanh", "erf", "relu", "sigmoid", "leaky_relu", "softplus")


def _nodes(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded nodes with many exact duplicates, +-0.0 means and zero variances."""
    rng = np.random.default_rng(seed)
    m = rng.normal(0.0, 3.0, 40)
    v = rng.exponential(2.0, 40)
    v[:4] = 0.0
    m[4], m[5] = 0.0, -0.0
    v[4] = v[5] = 1.5
    pick = rng.integers(0, 40, 200)
    return m[pick], v[pick]


@pytest.mark.parametrize("name", ACTS)
def test_same_bits_as_each_node_alone(name: str) -> None:
    act = resolve_activation(name)
    m, v = _nodes(7)
    got = moments.gaussian_moments_many(act, m, v)
    assert got.flags.c_contiguous and got.shape == (4, m.size)
    for k in range(m.size):  # size-1 arrays: the rule without the shortcut
        alone = moments.gaussian_moments_many(act, m[k:k + 1], v[k:k + 1])
        assert alone[:, 0].tobytes() == got[:, k].tobytes(), (name, m[k], v[k])


def test_minus_zero_mean_kept_apart() -> None:
    act = resolve_activation("tanh")
    m, v = np.array([0.0, -0.0, 0.0, -0.0]), np.zeros(4)
    got = moments.gaussian_moments_many(act, m, v)
    assert np.signbit(got[0]).tolist() == [False, True, False, True]


@pytest.mark.parametrize("name", ("tanh", "sigmoid"))
def test_against_independent_integration(name: str) -> None:
    fn = {"tanh": math.tanh, "sigmoid": lambda x: 0.5 * (1.0 + math.tanh(x / 2.0))}[name]
    dfn = {"tanh": lambda x: 1.0 - math.tanh(x) ** 2,
           "sigmoid": lambda x: fn(x) * (1.0 - fn(x))}[name]
    m, v = np.array([0.3, 0.3, -2.0, 0.3]), np.array([1.0, 1.0, 4.0, 1.0])
    got = moments.gaussian_moments_many(resolve_activation(name), m, v)
    for k in range(m.size):
        s = math.sqrt(v[k])
        for row, g in enumerate((fn, lambda x: fn(x) ** 2, dfn, lambda x: dfn(x) ** 2)):
            def integrand(t: float, g=g, mk: float = float(m[k]), s: float = s) -> float:
                return g(mk + s * t) * math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)

            ref = integrate.quad(integrand, -40, 40, epsabs=0, epsrel=1e-13, limit=200)[0]
            assert got[row, k] == pytest.approx(ref, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize(("act", "width", "depth"), [("sigmoid", 64, 5), ("tanh", 64, 8),
                                                     ("relu", 32, 6)])
def test_propagation_bitwise_unchanged(monkeypatch: pytest.MonkeyPatch, act: str, width: int,
                                       depth: int) -> None:
    """The conditional recursion (U[0, 1) weights) with and without the shortcut."""
    def run() -> list[bytes]:
        predict._propagate_cached.cache_clear()  # else the second run is the first's result
        p = propagate(resolve_activation(act), resolve_scheme("uniform"), fan_in=width,
                      depth=depth)
        return [np.asarray(getattr(p, f)).tobytes() for f in
                ("preact_mean", "preact_second", "preact_cross", "act_mean", "act_second",
                 "act_cross", "grad_second", "delta_second", "weight_grad_second")]

    fast = run()
    monkeypatch.setattr(moments, "gaussian_moments_many", moments._gaussian_moments_distinct)
    assert run() == fast
