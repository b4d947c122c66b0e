"""The generated activation catalogue (varprop.components._compiled_activations): current with the
registered factories, and bit for bit the full (SymPy-built) activations' numbers."""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from varprop.components import _compiled_activations as catalogue
from varprop.components.activation import (
    Activation,
    _build_cached,
    _catalogued,
    _CataloguedActivation,
    activation,
    resolve_activation,
)
from varprop.components.compiled_activations import COMMAND, TARGET, catalogue_source
from varprop.components.registries import ACTIVATIONS

NAMES = [n for n in ACTIVATIONS.names() if ACTIVATIONS.factory(n).__module__.startswith("varprop.")]
SRC = Path(__file__).resolve().parents[1] / "src"

#: Means and variances from the subnormal to the overflowing (the fast path's OverflowError and
#: domain errors send these to the mpmath fallback).
MUS = [0.0, -0.0, 5e-324, 1e-300, -1e-8, 0.3, -0.7, 2.5, -6.0, 40.0, -40.0, 1e3, -1e3, 1e150,
       -1e200, 1.7e308]
QS = [5e-324, 1e-300, 1e-12, 1e-3, 0.5, 1.0, 2.0, 37.5, 1e3, 1e150, 1e300, 1.7e308]


def _full(name: str) -> Activation:
    return ACTIVATIONS.build(name)


def _outcome(f, *args):
    """The floats ``f`` returns (NaN compared by identity of bits) or the exception type."""
    try:
        return tuple(np.float64(v).tobytes() for v in f(*args))
    except Exception as exc:  # noqa: BLE001  (the same failure on both paths is what we test)
        return type(exc)


def test_catalogue_is_current():
    assert catalogue_source() == TARGET.read_text(encoding="utf-8"), (
        f"{TARGET.name} is stale: regenerate it with `{COMMAND}` (from the repository root, "
        "with src on the path) and commit it")


def test_every_registered_activation_is_catalogued():
    assert set(NAMES) <= set(catalogue.CATALOGUE)
    for name in ACTIVATIONS.names(aliases=True):
        if ACTIVATIONS.canonical(name) in NAMES:
            assert isinstance(resolve_activation(name), _CataloguedActivation), name


@pytest.mark.parametrize("name", NAMES)
def test_fields_equal_the_full_activation(name):
    light, full = _build_cached(name, ()), _full(name)
    assert isinstance(light, _CataloguedActivation) and type(full) is Activation
    assert (light.name, light.kinks, light.latex_name, light.reference) == (
        full.name, full.kinks, full.latex_name, full.reference)
    assert list(light.params.items()) == list(full.params.items())
    assert [type(v) for v in light.params.values()] == [type(v) for v in full.params.values()]
    assert light.traits == full.traits  # the full one computes them from SymPy and NumPy
    assert light == full and hash(light) == hash(full) and repr(light) == repr(full)
    assert (light.closed_form is None) == (full.closed_form is None)
    if full.closed_form is not None:
        for flag in ("exact", "zero_mean_only", "approximation", "max_relative_error"):
            assert getattr(light.closed_form, flag) == getattr(full.closed_form, flag), flag
    grid = np.concatenate([np.linspace(-30.0, 30.0, 241), [0.0, -1e-300, 1e-300, 1e300, -1e300]])
    for x in (grid, np.concatenate([grid[:-5], [0.0, -1e-40, 1e-40, 1e38, -1e38]]).astype(np.float32)):
        with np.errstate(all="ignore"):
            for fn in ("function", "derivative_function"):
                a, b = getattr(light, fn)(x), getattr(full, fn)(x)
                assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), fn


@pytest.mark.parametrize("name", NAMES)
def test_compiled_moments_are_bit_identical(name):
    light, full = _build_cached(name, ()), _full(name)
    if full.closed_form is None:
        assert light.closed_form is None
        return
    for mu in MUS + [-m for m in MUS]:
        for q in QS:
            with np.errstate(all="ignore"):
                assert _outcome(light.closed_form.compiled, mu, q) == _outcome(
                full.closed_form.compiled, mu, q), (mu, q)


@pytest.mark.parametrize("name", ["relu", "tanh", "erf", "gelu", "selu", "softsign"])
def test_gaussian_moments_are_bit_identical(name):
    light, full = _build_cached(name, ()), _full(name)
    for mu, q in [(0.0, 2.0), (0.4, 0.7), (-1.5, 3.0), (0.0, math.inf), (2.0, 1e-6)]:
        for method in ("exact", "quadrature"):
            assert _outcome(partial(light.gaussian_moments, mu, q, method=method)) == _outcome(
                partial(full.gaussian_moments, mu, q, method=method)), (mu, q, method)


def test_overflow_falls_back_to_the_full_rules():
    # mu**2 overflows Python floats: the catalogued code raises, the full rules' mpmath path
    # gives the limit
    light = _CataloguedActivation._from_entry("linear", catalogue.CATALOGUE["linear"])
    assert light.closed_form.compiled(3.0, 1.0) == (3.0, 10.0, 1.0, 1.0)
    assert "full_rules" not in vars(light.closed_form)
    assert light.closed_form.compiled(1e200, 1.0) == (1e200, math.inf, 1.0, 1.0)
    assert "full_rules" in vars(light.closed_form)  # built only now


def test_symbolic_attributes_build_the_full_activation():
    light, full = _CataloguedActivation._from_entry("selu", catalogue.CATALOGUE["selu"]), _full("selu")
    light.gaussian_moments(0.3, 1.0)
    assert "full" not in vars(light)
    assert light.expr == full.expr and light.derivative == full.derivative
    assert light.closed_form.as_dict() == full.closed_form.as_dict()
    assert light.closed_form == full.closed_form and full.closed_form == light.closed_form
    assert light.closed_form.evaluation_form("mean") == full.closed_form.evaluation_form("mean")
    mu = np.array([-1.0, 0.0, 2.0])
    assert np.array_equal(light.closed_form.vectorized["second"](mu, 1.5),
                          full.closed_form.vectorized["second"](mu, 1.5))
    assert light.series_rules(3).as_dict() == full.series_rules(3).as_dict()


def test_default_parameters_given_explicitly_are_catalogued():
    assert isinstance(activation("leaky_relu", negative_slope=0.01), _CataloguedActivation)
    assert isinstance(activation("gelu", approximate="none"), _CataloguedActivation)
    assert not isinstance(activation("leaky_relu", negative_slope=0.2), _CataloguedActivation)
    assert not isinstance(activation("gelu", approximate="tanh"), _CataloguedActivation)
    assert isinstance(activation("hardtanh", min_val=-1.0, max_val=1.0), _CataloguedActivation)
    with pytest.raises(TypeError):  # True == 1.0 but its key differs: the factory refuses it
        activation("leaky_relu", negative_slope=True)


def test_pickle_round_trip():
    light = resolve_activation("leaky_relu")
    again = pickle.loads(pickle.dumps(light))
    assert again == light and again.gaussian_moments(0.2, 1.0) == light.gaussian_moments(0.2, 1.0)


def test_a_replaced_factory_is_not_served_from_the_catalogue(monkeypatch):
    entry = dict(catalogue.CATALOGUE["relu"], factory="somewhere.else.relu")
    monkeypatch.setitem(catalogue.CATALOGUE, "relu", entry)
    assert _catalogued("relu", ()) is None


def test_resolving_and_evaluating_imports_no_sympy_or_mpmath():
    # every registered name and alias at its defaults: moments (closed form or quadrature, any
    # mean, the q = inf limit), traits, kinks, the NumPy functions
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from varprop.components.activation import activation, activation_names, resolve_activation
        x = np.linspace(-3.0, 3.0, 13)
        for name in ["relu", "tanh", "erf", "gelu", "selu", *activation_names(aliases=True)]:
            act = resolve_activation(name)
            assert activation(name) is act
            for mu in (0.0, 0.5):
                act.gaussian_moments(mu, 2.0)
            act.gaussian_moments(0.0, float("inf"))
            act.traits, act.kinks, act.latex_name, act.reference, repr(act), hash(act)
            if act.closed_form is not None:
                act.closed_form.exact, act.closed_form.zero_mean_only
            act.function(x), act.derivative_function(x)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("sympy", "mpmath"))
        print(loaded[:5])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
