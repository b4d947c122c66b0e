"""Cached rules give the floats of the uncached computation: the Gauss--Jacobi rule of the
leaky ReLU's exact finite-width law (``theory.finite.loglaw``) and the finite-width figure's
quantile band (``documents.finite_width``), computed once per argument."""

from __future__ import annotations

import numpy as np
from scipy import special

from varprop.components.activations import resolve_activation
from varprop.documents import finite_width
from varprop.theory.finite import loglaw


def test_jacobi_rule_is_roots_jacobi() -> None:
    for nodes, n, k in ((160, 32, 5), (160, 32, 17), (40, 8, 3)):
        t, w = special.roots_jacobi(nodes, (n - k) / 2 - 1, k / 2 - 1)
        x, v = loglaw._jacobi_rule(nodes, (n - k) / 2 - 1, k / 2 - 1)
        assert x.tobytes() == ((1 + t) / 2).tobytes() and v.tobytes() == (w / w.sum()).tobytes()
        assert not x.flags.writeable and not v.flags.writeable


def test_affine_beta_rule_unchanged_by_sharing() -> None:
    """Two mixtures with the same width share the Jacobi rules; each one's values and weights
    are those built from scratch with SciPy here."""
    for a2, b2 in ((1.0, 0.01), (1.0, 0.04)):
        mix = loglaw.AffineBetaMixture(a2, b2, 16)
        _, v, w = mix._rule
        for row, k in enumerate(loglaw.ChiSquareMixture.binomial(1.0, 16).dofs):
            if k in (0, 16):
                continue
            t, wk = special.roots_jacobi(160, (16 - k) / 2 - 1, k / 2 - 1)
            x = (1 + t) / 2
            assert v[row].tobytes() == np.log(b2 + (a2 - b2) * x).tobytes()
            assert w[row].tobytes() == (wk / wk.sum()).tobytes()


def test_band_cached_is_a_fresh_copy() -> None:
    act = resolve_activation("relu")
    scheme = finite_width.finite_width_scheme(act)
    first = finite_width._band(act, scheme)
    finite_width._band_cached.cache_clear()
    again = finite_width._band(act, scheme)  # computed anew
    assert first == again and first is not again
    first["0.1"].append(0.0)  # a caller's edit does not reach the cache
    assert finite_width._band(act, scheme) == again
