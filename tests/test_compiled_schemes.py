"""The catalogue of compiled init schemes (:mod:`varprop.components.compiled_schemes`): the
committed module is current, the light schemes it gives are the full ones (same floats bit for
bit, same name, params, repr, equality, hash, pickling, flags), and resolving the common schemes
imports no SymPy."""

from __future__ import annotations

import itertools
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

from varprop.components import _compiled_schemes
from varprop.components.compiled_schemes import (
    COMMAND,
    TARGET,
    catalogue_source,
    catalogued_names,
)
from varprop.components.laws import Normal
from varprop.components.scheme import (
    SCHEMES,
    InitScheme,
    _build_cached,
    _cached_law,
    _CataloguedScheme,
    init_scheme,
    resolve_scheme,
)

#: Fans from the smallest to 10**6, odd and even, powers of two and not.
FANS = (1, 2, 3, 7, 64, 255, 256, 1000, 4097, 10**6)
NAMES = sorted(_compiled_schemes.CATALOGUE)


def _bits(values: object) -> tuple[str, ...]:
    """Floats as their exact hex text (``==`` on these is bit-identity, -0.0 != 0.0)."""
    return tuple(float.hex(float(v)) for v in values)  # type: ignore[attr-defined]


def _full(name: str) -> InitScheme:
    """The scheme built by its registered factory: the SymPy path."""
    scheme = SCHEMES.factory(name)()
    assert type(scheme) is InitScheme
    return scheme


def test_the_committed_catalogue_is_current() -> None:
    expected = catalogue_source()
    assert TARGET.read_text() == expected, (
        f"{TARGET.name} is stale (a scheme, a law or lambdify changed): regenerate it with "
        f"`{COMMAND}` and commit the result")


def test_every_registered_scheme_is_catalogued() -> None:
    own = {n for n in SCHEMES.names()
           if SCHEMES.factory(n).__module__ in ("varprop.components.schemes",
                                                "varprop.components.frameworks")}
    assert set(catalogued_names()) == own == set(NAMES)
    for expected in ("he_normal", "xavier_uniform", "lecun_normal", "orthogonal",
                     "truncated_normal", "torch_linear_default", "keras:he_normal",
                     "torch:kaiming_normal", "jax:lecun_normal"):
        assert expected in own


@pytest.mark.parametrize("name", NAMES)
def test_catalogued_floats_are_the_sympy_paths_bit_for_bit(name: str) -> None:
    light, full = init_scheme(name), _full(name)
    assert isinstance(light, _CataloguedScheme)
    for fan_in, fan_out in itertools.product(FANS, FANS):
        # the compiled functions themselves: the public moments() is cached per equal scheme
        assert _bits(light._numeric_moments(fan_in, fan_out)) == _bits(
            full._numeric_moments(fan_in, fan_out)), (name, fan_in, fan_out)
        lp, fp = light._numeric_spec(fan_in, fan_out), full._numeric_spec(fan_in, fan_out)
        assert list(lp) == list(fp) and _bits(lp.values()) == _bits(fp.values()), (name, fan_in)


@pytest.mark.parametrize("name", NAMES)
def test_a_catalogued_scheme_is_the_full_scheme(name: str) -> None:
    light, full = init_scheme(name), _full(name)
    assert light == full and full == light and hash(light) == hash(full)
    assert repr(light) == repr(full) and light.params == full.params
    assert (light.family, light.note, light.distribution) == (full.family, full.note,
                                                               full.distribution)
    flags = ("is_zero_mean", "is_gaussian", "is_symmetric", "is_iid")
    assert [getattr(light, f) for f in flags] == [getattr(full, f) for f in flags]
    copy = pickle.loads(pickle.dumps(light))
    assert type(copy) is _CataloguedScheme and copy == light
    # SymPy-valued members build the full scheme and agree with it
    assert light.weight_variance() == full.weight_variance()
    assert light.weight_mean(3, 5) == full.weight_mean(3, 5)
    assert light.spec(2, 3) == full.spec(2, 3)


@pytest.mark.parametrize("name", NAMES)
def test_a_catalogued_schemes_law_at_integer_fans_is_the_full_law(name: str) -> None:
    light, full = init_scheme(name), _full(name)

    def exact_at(fan_in: int, fan_out: int):  # type: ignore[no-untyped-def]
        """The full law as the full scheme builds it (its compiled float parameters), apart
        from the caches keyed by (equal) schemes."""
        n_in, n_out = sp.Integer(fan_in), sp.Integer(fan_out)
        return full.family(full.spec(n_in, n_out), fan_in=n_in, fan_out=n_out,
                           numeric=full._numeric_spec(fan_in, fan_out))

    exact = exact_at(30, 10)
    _cached_law.cache_clear()  # laws cached by an equal full scheme elsewhere in the suite
    law = light.law(30, 10)
    assert "exact" not in law.__dict__  # numeric members first: nothing exact built yet
    x = np.linspace(-0.3, 0.3, 13)
    assert _bits(law.parameters.values()) == _bits(exact.parameters.values())
    assert law.kurtosis() == exact.kurtosis() and law.support() == exact.support()
    assert (law.scale, law.describe(), law.bounded) == (exact.scale, exact.describe(),
                                                         exact.bounded)
    assert _bits(law.cdf(x)) == _bits(exact.cdf(x))
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    draws = law.sample(rng_a, (2, 10, 30), np.dtype(np.float64))
    assert _bits(draws.ravel()) == _bits(exact.sample(rng_b, (2, 10, 30),
                                                       np.dtype(np.float64)).ravel())
    # the exact members, built at first access
    assert law.exact == exact.exact and (law.fan_in, law.fan_out) == (30, 10)
    assert law.mean == exact.mean and law.variance == exact.variance
    assert repr(law) == repr(exact) and law.moments() == exact.moments()
    assert repr(law.rescaled(3)) == repr(exact.rescaled(3))
    fresh = light.law(31, 11)
    smaller = fresh.rescaled(3)
    assert "exact" not in fresh.__dict__ and "exact" not in smaller.__dict__
    assert smaller.parameters == {k: v / 8 if k in fresh.scale_parameters else v
                                  for k, v in fresh.parameters.items()}
    assert repr(smaller) == repr(exact_at(31, 11).rescaled(3))
    copy = pickle.loads(pickle.dumps(fresh))  # pickles the scheme by name, not the exact law
    assert "exact" not in copy.__dict__ and copy.parameters == fresh.parameters
    assert repr(copy) == repr(exact_at(31, 11))


def test_explicit_default_parameters_are_catalogued_and_others_are_not() -> None:
    assert isinstance(init_scheme("kaiming_normal", mode="fan_in"), _CataloguedScheme)
    assert isinstance(resolve_scheme("glorot_uniform"), _CataloguedScheme)
    assert isinstance(init_scheme("torch:kaiming_normal", nonlinearity="leaky_relu"),
                      _CataloguedScheme)
    # another value, or the same value with another type (the factory validates it), is built
    other = init_scheme("he_normal", mode="fan_out")
    assert type(other) is InitScheme and other.moments(8, 2) == (0.0, 1.0)
    same = init_scheme("he_normal", negative_slope=0)
    assert type(same) is InitScheme and same == init_scheme("he_normal")
    with pytest.raises(TypeError):
        init_scheme("he_normal", negative_slope=False)


def test_a_name_re_registered_by_a_user_is_not_read_from_the_catalogue(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def lecun_normal() -> InitScheme:  # a user's factory, variance 9/fan_in
        return InitScheme("lecun_normal", {}, Normal,
                          lambda i, o: {"loc": sp.Integer(0), "scale": 3 / sp.sqrt(i)})

    monkeypatch.setitem(SCHEMES._factories, "lecun_normal", lecun_normal)
    _build_cached.cache_clear()
    try:
        scheme = init_scheme("lecun_normal")
        assert type(scheme) is InitScheme and scheme._numeric_moments(9, 1) == (0.0, 1.0)
    finally:
        monkeypatch.undo()
        _build_cached.cache_clear()
    assert isinstance(init_scheme("lecun_normal"), _CataloguedScheme)


def _raises(exc: type[Exception]):  # type: ignore[no-untyped-def]
    def fn(n_in: int, n_out: int) -> list[float]:
        raise exc("beyond the float range")
    return fn


@pytest.mark.parametrize("exc", [OverflowError, ZeroDivisionError, ValueError])
def test_a_failing_compiled_function_falls_back_to_the_full_scheme(exc: type[Exception]) -> None:
    entry = _compiled_schemes.CATALOGUE["xavier_normal"]
    broken = _CataloguedScheme._from_entry("xavier_normal", {**entry, "spec": _raises(exc),
                                                 "moments": _raises(exc)})
    full = _full("xavier_normal")
    assert broken._numeric_moments(300, 100) == full._numeric_moments(300, 100) == (0.0, 2 / 400)
    spec = broken._numeric_spec(300, 100)
    assert spec == full._numeric_spec(300, 100)
    assert spec == {"loc": 0.0, "scale": pytest.approx(math.sqrt(2 / 400), rel=1e-15)}
    other = _CataloguedScheme._from_entry("xavier_normal", {**entry, "moments": _raises(TypeError)})
    with pytest.raises(TypeError):  # only the float-range errors fall back
        other._numeric_moments(300, 100)


def test_resolving_the_common_schemes_imports_no_sympy() -> None:
    code = (
        "import sys\n"
        "from varprop.components.scheme import init_scheme, resolve_scheme, weight_moments\n"
        "for name in ('he_normal', 'xavier_uniform', 'lecun_normal', 'keras:he_normal'):\n"
        "    s = resolve_scheme(name)\n"
        "    assert s.moments(256, 256)[1] > 0 and s.parameters(256, 256)\n"
        "    assert weight_moments(init_scheme(name), 128, 64)[1] > 0\n"
        "    assert s.is_zero_mean and s.is_symmetric and s.is_iid\n"
        "    assert s.law(256, 128).kurtosis() <= 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sympy', 'mpmath'))\n"
        "print(heavy[:5])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", f"SymPy/mpmath imported while resolving schemes: {out}"
