"""Weight laws (varprop.components.laws): every member of every family against SciPy / hand
formulas, the schemes' laws, and a new family defined here and used end to end without editing
any module of the package."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import sympy as sp
from scipy import stats

import varprop as vp
from varprop.components.laws import (
    FAN_IN,
    FAN_OUT,
    Normal,
    Orthogonal,
    TruncatedNormal,
    Uniform,
    WeightLaw,
)
from varprop.components.registries import SCHEMES
from varprop.components.scheme import InitScheme
from varprop.errors import InvalidArgument

# (law, the same law in SciPy)
IID_CASES = [
    (Normal({"loc": sp.Rational(1, 10), "scale": sp.Rational(3, 2)}),
     stats.norm(0.1, 1.5)),
    (Uniform({"low": -2, "high": sp.Rational(1, 2)}), stats.uniform(-2, 2.5)),
    (TruncatedNormal({"loc": 0, "scale": sp.Rational(1, 2), "bound": 2}),
     stats.truncnorm(-2, 2, scale=0.5)),
    (TruncatedNormal({"loc": sp.Rational(1, 4), "scale": 3, "bound": sp.Rational(3, 10)}),
     stats.truncnorm(-0.3, 0.3, loc=0.25, scale=3)),
]


@pytest.mark.parametrize("law, ref", IID_CASES, ids=lambda c: repr(c) if isinstance(c, WeightLaw) else "")
def test_iid_laws_match_scipy(law: WeightLaw, ref) -> None:
    mean, var, kurt = (float(v) for v in ref.stats(moments="mvk"))
    assert float(law.mean) == pytest.approx(mean, rel=1e-12, abs=1e-15)
    assert float(law.variance) == pytest.approx(var, rel=1e-12)
    assert law.moments() == pytest.approx((mean, var), rel=1e-12, abs=1e-15)
    assert law.kurtosis() == pytest.approx(kurt, rel=1e-7, abs=1e-10)
    lo, hi = law.support()
    assert (lo, hi) == pytest.approx(ref.support(), rel=1e-14)
    assert law.bounded == (math.isfinite(lo) and math.isfinite(hi))
    x = np.linspace(-4, 4, 81)
    np.testing.assert_allclose(law.cdf(x), ref.cdf(x), atol=1e-12)
    assert law.iid and law.symmetric


@pytest.mark.parametrize("law, ref", IID_CASES, ids=lambda c: repr(c) if isinstance(c, WeightLaw) else "")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_samplers_draw_the_law(law: WeightLaw, ref, dtype) -> None:
    w = law.sample(np.random.default_rng(11), (3, 40, 50), np.dtype(dtype))
    assert w.shape == (3, 40, 50) and w.dtype == dtype
    lo, hi = law.support()
    assert np.all((w >= lo) & (w <= hi))
    assert stats.kstest(w.ravel().astype(float), ref.cdf).pvalue > 1e-4


def test_rescaled_law_is_the_law_of_w_over_a_power_of_two() -> None:
    law = TruncatedNormal({"loc": 3, "scale": 5, "bound": 2})
    half = law.rescaled(3)
    assert half.parameters == {"loc": 3 / 8, "scale": 5 / 8, "bound": 2.0}
    assert sp.simplify(half.variance - law.variance / 64) == 0
    x = np.linspace(-10, 10, 41)
    np.testing.assert_array_equal(half.cdf(x / 8), law.cdf(x))


@pytest.mark.parametrize("n_in, n_out, gain", [(5, 5, 1.0), (3, 7, 2.0), (9, 4, 0.5)])
def test_orthogonal_law_against_haar_samples(n_in: int, n_out: int, gain: float) -> None:
    law = vp.init_scheme("orthogonal", gain=gain).law(n_in, n_out)
    m = max(n_in, n_out)
    assert not law.iid and law.symmetric and isinstance(law, Orthogonal)
    assert law.variance == sp.nsimplify(gain) ** 2 / m
    assert law.kurtosis() == pytest.approx(-6 / (m + 2))
    assert law.support() == (-gain, gain)
    w = law.sample(np.random.default_rng(3), (400, n_out, n_in), np.dtype(np.float64))
    g = w @ np.swapaxes(w, -1, -2) if n_out <= n_in else np.swapaxes(w, -1, -2) @ w
    np.testing.assert_allclose(g, gain**2 * np.broadcast_to(np.eye(min(n_in, n_out)), g.shape),
                               atol=1e-12)
    entries = w.ravel()
    # moments of a coordinate of a uniform unit vector in R^m, times the gain
    assert np.mean(entries**2) == pytest.approx(gain**2 / m, rel=0.05)
    # the entry CDF: 1/2 + sign(v)/2 * P(Beta(1/2, (m-1)/2) <= v^2/g^2)
    assert stats.kstest(entries[::7], law.cdf).pvalue > 1e-4


def test_symbolic_laws_of_the_schemes() -> None:
    he = vp.init_scheme("he_uniform").law()
    assert isinstance(he, Uniform) and he.variance == 2 / FAN_IN
    orth = vp.init_scheme("orthogonal").law()
    assert orth.variance == 1 / sp.Max(FAN_IN, FAN_OUT)
    tn = vp.init_scheme("variance_scaling", distribution="truncated_normal").law(10, 3)
    assert isinstance(tn, TruncatedNormal) and sp.simplify(tn.variance - sp.Rational(1, 10)) == 0


@pytest.mark.parametrize("name", vp.scheme_names())
def test_every_scheme_reads_its_law(name: str) -> None:
    scheme = vp.init_scheme(name)
    law = scheme.law(12, 7)
    assert scheme.distribution == law.family == scheme.family.family
    assert scheme.moments(12, 7) == pytest.approx(law.moments(), rel=1e-15)
    assert scheme.parameters(12, 7) == law.parameters
    assert scheme.is_iid == law.iid and scheme.is_gaussian == (law.gaussian and law.iid)
    with pytest.raises(AttributeError):
        scheme.distribution = "normal"  # read-only


def test_law_construction_is_validated() -> None:
    with pytest.raises(InvalidArgument, match="params"):
        Normal({"loc": 0})
    with pytest.raises(InvalidArgument, match="params"):
        Uniform({"low": 0, "high": 1, "scale": 2})


# ----------------------------------------------------------------------------------------------
# A new family, defined here only: the Laplace law.  Nothing in src/varprop names it.
# ----------------------------------------------------------------------------------------------

class Laplace(WeightLaw):
    r"""Density :math:`e^{-|w - \text{loc}|/b}/(2b)`: variance :math:`2b^2`, excess kurtosis 3."""

    family = "laplace"
    parameter_names = ("loc", "scale")
    scale_parameters = ("loc", "scale")

    @property
    def mean(self) -> sp.Expr:
        return self.exact["loc"]

    @property
    def variance(self) -> sp.Expr:
        return sp.simplify(2 * self.exact["scale"] ** 2)

    def kurtosis(self) -> float:
        return 3.0

    def support(self) -> tuple[float, float]:
        return (-math.inf, math.inf)

    def cdf(self, v: np.ndarray) -> np.ndarray:
        p = self.parameters
        t = (np.asarray(v, dtype=float) - p["loc"]) / p["scale"]
        return np.where(t < 0, 0.5 * np.exp(np.minimum(t, 0)), 1 - 0.5 * np.exp(-np.maximum(t, 0)))

    def sample(self, rng, shape, dtype):
        p = self.parameters
        return rng.laplace(p["loc"], p["scale"], shape).astype(dtype, copy=False)

    @property
    def scale(self) -> float:
        return self.parameters["scale"]

    def describe(self) -> str:
        return f"Laplace({self.parameters['loc']:.6g}, {self.parameters['scale']:.6g})"


@pytest.fixture
def laplace_scheme() -> Iterator[None]:
    """Register ``lecun_laplace`` (variance 1/fan_in) for one test, then remove it."""

    @SCHEMES.register("lecun_laplace")
    def lecun_laplace(gain: float = 1.0) -> InitScheme:
        g = sp.nsimplify(gain)
        return InitScheme("lecun_laplace", {"gain": float(gain)}, Laplace,
                          lambda i, o: {"loc": sp.Integer(0), "scale": g / sp.sqrt(2 * i)})

    yield
    SCHEMES.unregister("lecun_laplace")


def test_a_new_family_is_one_class(laplace_scheme: None) -> None:
    scheme = vp.init_scheme("lecun_laplace")
    assert scheme.distribution == "laplace"
    assert scheme.weight_variance() == 1 / FAN_IN
    assert scheme.weight_mean() == 0 and scheme.is_zero_mean and scheme.is_symmetric
    assert scheme.is_iid and not scheme.is_gaussian
    assert scheme.moments(64, 32) == (0.0, 1 / 64)
    assert vp.init_scheme("lecun_laplace", gain=2.0).moments(64, 32) == (0.0, 4 / 64)
    # its law against SciPy's Laplace
    law = scheme.law(50, 10)
    ref = stats.laplace(0, 0.1)
    x = np.linspace(-1, 1, 21)
    np.testing.assert_allclose(law.cdf(x), ref.cdf(x), atol=1e-14)
    assert law.moments() == pytest.approx((0.0, float(ref.var())), rel=1e-14)
    assert law.kurtosis() == float(ref.stats(moments="k"))

    # sampling through the scheme (validation, dtype, batch) and checking the draws
    w = scheme.sample(np.random.default_rng(1), 128, 96, size=(4,), dtype=np.float32)
    assert w.shape == (4, 96, 128) and w.dtype == np.float32
    verdict = vp.check_initializer(w, scheme, fan_in=128, fan_out=96)
    assert verdict.status == "confirmed", verdict
    assert set(verdict.p_values) == {"mean", "variance", "shape", "rows"}  # unbounded: no support
    # Laplace weights are not the normal law of the same variance, and vice versa
    assert vp.check_initializer(w, "lecun_normal", fan_in=128, fan_out=96).status == "refuted"
    g = vp.init_scheme("lecun_normal").sample(np.random.default_rng(2), 128, 96, size=(4,))
    refuted = vp.check_initializer(g, scheme, fan_in=128, fan_out=96)
    assert refuted.status == "refuted" and refuted.p_adjusted["shape"] <= 0.01
    # a callable: the automatic number of calls uses the law's kurtosis (3)
    rng = np.random.default_rng(4)
    auto = vp.check_initializer(lambda: scheme.sample(rng, 64, 64), scheme)
    assert auto.status == "confirmed" and auto.replicates > 1

    # and the theory: the second moments depend on the weights through their variance only
    for quantity in ("preactivation", "activation"):
        got = vp.predict_variance("relu", scheme, fan_in=40, depth=5, quantity=quantity)
        ref = vp.predict_variance("relu", "lecun_normal", fan_in=40, depth=5, quantity=quantity)
        assert got == ref


def test_family_statements_and_flags() -> None:
    # the sentences derivations state about the entries (byte-identical to the former texts)
    assert Normal.summary() == "entries i.i.d. normal"
    assert Orthogonal.summary().startswith("Haar-orthogonal times gain g")
    assert Laplace.summary() == "entries i.i.d. laplace"  # default from the flags
    assert [f.orthonormal for f in (Normal, Uniform, TruncatedNormal, Orthogonal, Laplace)] == [
        False, False, False, True, False]


def test_weight_moments_is_the_cached_moments() -> None:
    from varprop.components.schemes import weight_moments

    he = vp.init_scheme("he_uniform")
    assert weight_moments(he, 30, 7) == he.moments(30, 7) == (0.0, 2 / 30)
