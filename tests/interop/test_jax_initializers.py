"""Real JAX initializers (``jax.nn.initializers``, which Flax re-exports) confirmed by
varprop.check_initializer against the framework-qualified names (optional ``interop`` extra).

A JAX kernel has shape ``(fan_in, fan_out)`` (``in_axis=-2``, ``out_axis=-1``); check_initializer
accepts the transpose of its ``(fan_out, fan_in)`` convention when the fans are given.  Every draw
uses a fixed ``jax.random.key``, so the verdicts are deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

from varprop import init_scheme  # noqa: E402
from varprop.checking.initializers import check_initializer  # noqa: E402

pytestmark = pytest.mark.interop

FAN_IN, FAN_OUT = 384, 256
init = jax.nn.initializers

CASES = [
    # (jax initializer, varprop scheme)
    (init.lecun_normal(), init_scheme("jax:lecun_normal")),
    (init.he_normal(), init_scheme("jax:he_normal")),
    (init.glorot_normal(), init_scheme("flax:glorot_normal")),
    (init.kaiming_uniform(), init_scheme("jax:kaiming_uniform")),
    (init.xavier_uniform(), init_scheme("jax:xavier_uniform")),
    (init.lecun_uniform(), init_scheme("jax:lecun_uniform")),
    (init.variance_scaling(2.0, "fan_geo_avg", "normal"),
     init_scheme("jax:variance_scaling", scale=2.0, mode="fan_geo_avg", distribution="normal")),
    (init.variance_scaling(0.5, "fan_out", "truncated_normal"),
     init_scheme("jax:variance_scaling", scale=0.5, mode="fan_out")),
    (init.normal(0.02), init_scheme("jax:normal", stddev=0.02)),
    (init.uniform(0.1), init_scheme("jax:uniform", scale=0.1)),
    (init.truncated_normal(0.02), init_scheme("jax:truncated_normal", stddev=0.02)),
    (init.orthogonal(), init_scheme("jax:orthogonal")),
]


def _draw(initializer, seed=0, shape=(FAN_IN, FAN_OUT)):
    return np.asarray(initializer(jax.random.key(seed), shape, jnp.float32))


@pytest.mark.parametrize("initializer, scheme", CASES, ids=[repr(s) for _, s in CASES])
def test_jax_initializers_confirm_their_names(initializer, scheme):
    draws = iter(range(1, 1000))
    v = check_initializer(lambda: _draw(initializer, next(draws)), scheme,
                          fan_in=FAN_IN, fan_out=FAN_OUT)
    assert v.status == "confirmed", v
    assert repr(scheme) == v.config["init"] and repr(scheme).startswith("jax:")


@pytest.mark.parametrize("jax_name, other", [("lecun_normal", "lecun_normal"),
                                             ("he_normal", "torch:kaiming_normal")])
def test_jax_truncated_normals_are_not_pytorch_normals(jax_name, other):
    """Same variance, different law: the untruncated claim is refuted (support / KS)."""
    w = _draw(getattr(init, jax_name)(), shape=(1024, 1024))
    v = check_initializer(w, other, fan_in=1024, fan_out=1024)
    assert v.status == "refuted", v
    assert check_initializer(w, f"jax:{jax_name}", fan_in=1024, fan_out=1024).status == "confirmed"
