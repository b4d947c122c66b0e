"""The weight samplers draw exactly the numbers of their plain formulas (bit for bit, and leave
the generator in the same state): the truncated normal's rejection re-tests only the redrawn
entries, the uniform law skips ``* 1`` and ``+ 0``, the orthogonal law multiplies in place and
skips a gain of 1.  The reference samplers below are the textbook formulas, written out here."""

from __future__ import annotations

import numpy as np
import pytest

from varprop._math.weight_sampling import haar_orthogonal, truncated_standard_normal
from varprop.components.laws import Orthogonal, TruncatedNormal, Uniform

SEEDS = (0, 1, 7, 2024)
SHAPES = ((1, 1), (3, 5), (4, 7, 3), (2, 16, 16), (5, 2, 9, 4))
DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def _plain_truncated(rng, shape, bound, dt):
    """Redraw every entry beyond ``bound`` (tested over the whole array) until none is."""
    w = rng.standard_normal(shape, dtype=dt)
    bad = np.abs(w) > bound
    while bad.any():
        w[bad] = rng.standard_normal(int(bad.sum()), dtype=dt)
        bad = np.abs(w) > bound
    return w


def _plain_uniform(rng, shape, dt, low, high):
    w = rng.random(shape, dtype=dt)
    return w * dt.type(high - low) + dt.type(low)


def _plain_haar(rng, shape, dt, gain):
    *batch, n_out, n_in = shape
    tall = n_out >= n_in
    g = rng.standard_normal(tuple(batch) + ((n_out, n_in) if tall else (n_in, n_out)))
    q, r = np.linalg.qr(g)
    d = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    d[d == 0] = 1.0
    q = q * d[..., None, :]
    if not tall:
        q = np.swapaxes(q, -1, -2)
    return q.astype(dt) * dt.type(gain)


def _same(new, old, rng_new, rng_old):
    assert new.dtype == old.dtype and new.shape == old.shape
    assert np.array_equal(new.view(f"u{new.itemsize}"), old.view(f"u{old.itemsize}"))
    # the same numbers were consumed: the next draws agree
    assert rng_new.integers(2**63) == rng_old.integers(2**63)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("bound", [1.0, 1.3, 2.0, 3.5])
def test_truncated_normal_rejection_is_the_plain_one(dt, bound):
    rounds = 0
    for seed in SEEDS:
        for shape in SHAPES:
            a, b = np.random.default_rng(seed), np.random.default_rng(seed)
            _same(truncated_standard_normal(a, shape, bound, dt), _plain_truncated(b, shape, bound, dt),
                  a, b)
            rounds += 1
    # a large draw at the narrowest bound rejects ~32% per round: several rounds are exercised
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    w = truncated_standard_normal(a, (8, 32, 32), bound, dt)
    _same(w, _plain_truncated(b, (8, 32, 32), bound, dt), a, b)
    assert np.all(np.abs(w) <= bound)


@pytest.mark.parametrize("dt", DTYPES)
def test_truncated_normal_law_sample_is_the_plain_one(dt):
    law = TruncatedNormal({"loc": 0, "scale": "1/8", "bound": 2})
    for seed in SEEDS:
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        old = _plain_truncated(b, (6, 10, 12), 2.0, dt) * dt.type(0.125)
        _same(law.sample(a, (6, 10, 12), dt), old, a, b)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("low, high", [(0, 1), (-1, 0), ("1/2", "3/2"), (0, 3), (-0.25, 0.25),
                                       (1e-50, 1)])
def test_uniform_sample_is_the_plain_one(dt, low, high):
    law = Uniform({"low": low, "high": high})
    lo, hi = law.support()
    for seed in SEEDS:
        for shape in SHAPES:
            a, b = np.random.default_rng(seed), np.random.default_rng(seed)
            _same(law.sample(a, shape, dt), _plain_uniform(b, shape, dt, lo, hi), a, b)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("gain", [1, "5/2"])
def test_orthogonal_sample_is_the_plain_one(dt, gain):
    law = Orthogonal({"gain": gain})
    g = law.parameters["gain"]
    for seed in SEEDS:
        for shape in ((3, 3), (4, 6, 6), (2, 7, 3), (2, 3, 7), (3, 2, 5, 4)):
            a, b = np.random.default_rng(seed), np.random.default_rng(seed)
            new = law.sample(a, shape, dt)
            _same(new, _plain_haar(b, shape, dt, g), a, b)
            # orthonormal columns (tall) or rows (wide), times the gain
            m = new.astype(np.float64) / g
            gram = (np.swapaxes(m, -1, -2) @ m if shape[-2] >= shape[-1]
                    else m @ np.swapaxes(m, -1, -2))
            tol = 1e-5 if dt == np.float32 else 1e-12
            assert np.allclose(gram, np.eye(gram.shape[-1]), atol=tol)


def test_haar_orthogonal_is_the_plain_one_at_unit_gain():
    for seed in SEEDS:
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        _same(haar_orthogonal(a, (5, 8, 8), np.dtype(np.float64)),
              _plain_haar(b, (5, 8, 8), np.dtype(np.float64), 1.0), a, b)
