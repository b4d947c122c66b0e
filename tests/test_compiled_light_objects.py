"""The light (catalogued) activations and schemes behave as the full objects where users can tell:
re-registered names, explicit defaults, ``dataclasses.replace``, pickling, error messages, signed
zeros, the generators' ``--check``; and a law at huge integer fans."""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import varprop
from varprop.components import activation as activation_module
from varprop.components import compiled_activations, compiled_schemes, schemes
from varprop.components import scheme as scheme_module
from varprop.components.activation import Activation, activation
from varprop.components.closed_forms import MomentRules
from varprop.components.registries import ACTIVATIONS, SCHEMES
from varprop.components.scheme import InitScheme, init_scheme
from varprop.errors import InvalidArgumentType
from varprop.theory import compiled_moments, walks
from varprop.theory import predict as predict_module
from varprop.theory.moments import zero_mean_moments


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test unregister and re-register names: the registries' state and the lookup caches
    are restored afterwards (the record of replaced names included)."""
    for registry in (ACTIVATIONS, SCHEMES):
        for attribute in ("_factories", "_aliases", "_replaced"):
            monkeypatch.setattr(registry, attribute, copy.copy(getattr(registry, attribute)))
    # the prediction caches too: a re-registered "relu" equals the old one (same name and
    # parameters), so a propagation cached by an earlier test would be handed out
    caches = (activation_module._build_cached, scheme_module._build_cached, zero_mean_moments,
              predict_module._propagate_cached, predict_module._propagate_network,
              walks._prepared, walks._keyword_network, walks._forward)
    for cache in caches:
        cache.cache_clear()
    yield
    monkeypatch.undo()
    for cache in caches:
        cache.cache_clear()


# ----- 1, 2: a replaced name never gets the catalogue ----------------------------------------

def test_a_scheme_name_re_registered_to_another_factory_builds_that_factory(registries: None):
    SCHEMES.unregister("he_normal")
    SCHEMES.register("he_normal")(schemes.he_uniform)
    scheme = init_scheme("he_normal")
    assert scheme.family.__name__ == "Uniform"
    bound = math.sqrt(6 / 100)  # He uniform: U(-sqrt(6/n), sqrt(6/n)), variance 2/n
    assert scheme.law(100, 100).support() == pytest.approx((-bound, bound), rel=1e-15)
    assert scheme.moments(100, 100) == pytest.approx((0.0, 0.02), rel=1e-15)


def test_a_wrapping_scheme_factory_is_not_taken_for_the_original(registries: None):
    original = SCHEMES.factory("xavier_normal")
    SCHEMES.unregister("xavier_normal")

    @SCHEMES.register("xavier_normal")
    @functools.wraps(original)  # same module and qualified name as the catalogued factory
    def xavier_normal(gain: float = 1.0) -> InitScheme:
        return original(gain=2 * gain)

    # Glorot normal with gain 2: variance 4 * 2 / (fan_in + fan_out)
    assert init_scheme("xavier_normal").moments(100, 100) == pytest.approx((0.0, 0.04), rel=1e-15)


def test_a_wrapping_activation_factory_is_not_taken_for_the_original(registries: None):
    original = ACTIVATIONS.factory("tanh")
    erf = ACTIVATIONS.factory("erf")
    ACTIVATIONS.unregister("tanh")
    ACTIVATIONS.register("tanh")(functools.wraps(original)(lambda: erf()))
    act = activation("tanh")
    # E erf(z)^2 = (2/pi) asin(2q/(1+2q)) for z ~ N(0, q) (Williams 1997), at q = 1
    assert act.gaussian_moments(0.0, 1.0)[1] == pytest.approx(2 / math.pi * math.asin(2 / 3),
                                                             rel=1e-12)


def test_the_original_activation_registered_again_is_still_correct(registries: None):
    relu = ACTIVATIONS.factory("relu")
    ACTIVATIONS.unregister("relu")
    ACTIVATIONS.register("relu")(relu)
    assert ACTIVATIONS.replaced("relu") and not ACTIVATIONS.replaced("tanh")
    assert activation("relu").gaussian_moments(0.0, 2.0)[1] == 1.0  # E relu(z)^2 = q/2


def test_theory_uses_a_re_registered_activations_own_forms(registries: None):
    ACTIVATIONS.unregister("relu")

    @ACTIVATIONS.register("relu")
    def my_relu() -> Activation:  # a user's "relu": the leaky ReLU of slope 1/2
        base = ACTIVATIONS.build("leaky_relu", negative_slope=0.5)
        return dataclasses.replace(base, name="relu", params={})

    act = activation("relu")
    # zero-mean input: E phi(z)^2 = q (1 + a^2) / 2 = 5q/8 at a = 1/2, E phi'(z)^2 = 5/8
    mean, second, deriv_second = zero_mean_moments(act, "exact")(2.0)
    assert (second, deriv_second) == pytest.approx((1.25, 0.625), rel=1e-12)
    assert mean == pytest.approx(0.5 * math.sqrt(2.0 / (2 * math.pi)), rel=1e-12)
    for method in ("auto", "exact", "closed_form"):
        per_layer = varprop.predict_variance(act, "he_normal", fan_in=64, depth=3, method=method,
                                             per_layer=True)
        # He weights (variance 2/n, zero mean): q_{l+1} = 2 E phi(z_l)^2 = 1.25 q_l
        assert per_layer[1:] / per_layer[:-1] == pytest.approx([1.25, 1.25], rel=1e-12)


def test_explicit_default_parameters_use_the_catalogues_without_sympy():
    code = (
        "import sys, numpy as np\n"
        "from varprop.components.activation import activation, catalogue_name\n"
        "from varprop.components.scheme import init_scheme, scheme_names\n"
        "from varprop.theory.moments import zero_mean_moments\n"
        "act = activation('leaky_relu', negative_slope=0.01)\n"
        "assert catalogue_name(act) == 'leaky_relu'\n"
        "m = zero_mean_moments(act, 'exact')(2.0)\n"
        "assert abs(m[1] - 1.0001) < 1e-15 and abs(m[2] - 0.50005) < 1e-15, m\n"
        # the scheme module's docstring: a law's numeric members at integer fans need no SymPy
        "for name in scheme_names(frameworks=True):\n"
        "    law = init_scheme(name).law(3, 5)\n"
        "    law.parameters, law.kurtosis(), law.support(), law.cdf(np.array([0.1]))\n"
        "    law.sample(np.random.default_rng(0), (2, 2), np.dtype(np.float64))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sympy', 'mpmath'))[:3])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# ----- 3, 4: dataclasses.replace and pickling --------------------------------------------------

def test_replace_on_light_objects_gives_the_full_objects():
    light, full = activation("relu"), ACTIVATIONS.factory("relu")()
    assert type(light) is not Activation  # the light one (else this test tests nothing)
    changed = dataclasses.replace(light, name="my_relu")
    assert type(changed) is Activation and changed.name == "my_relu"
    assert changed.expr == full.expr and changed.gaussian_moments(0.0, 2.0)[1] == 1.0
    rules = dataclasses.replace(light.closed_form, approximation="stated")
    assert type(rules) is MomentRules and rules.approximation == "stated"
    assert rules.second == full.closed_form.second
    scheme = init_scheme("he_normal")
    assert type(scheme) is not InitScheme
    noted = dataclasses.replace(scheme, note="a note")
    assert type(noted) is InitScheme and noted.note == "a note"
    assert noted.moments(8, 4) == (0.0, 0.25)  # He normal: variance 2/fan_in


@pytest.mark.parametrize("name", ["relu", "selu", "tanh", "gelu", "elu"])
def test_a_light_closed_form_pickles_and_copies(name: str):
    rules = activation(name).closed_form
    for other in (pickle.loads(pickle.dumps(rules)), copy.copy(rules), copy.deepcopy(rules)):
        assert other == rules
        assert other.compiled(0.3, 1.7) == rules.compiled(0.3, 1.7)


# ----- 5: error messages name the public types -------------------------------------------------

def test_type_errors_name_the_public_classes():
    with pytest.raises(InvalidArgumentType, match=r"has type InitScheme: expected an Activation"):
        varprop.predict_variance(init_scheme("he_normal"), activation("relu"), fan_in=8)
    with pytest.raises(InvalidArgumentType, match=r"init=relu\(\) has type Activation:"):
        varprop.predict_variance(activation("relu"), activation("relu"), fan_in=8)


class _UsersPrivateClass:
    """A user's own private class: its name is the user's, and the message keeps it."""


def test_type_errors_keep_the_name_of_a_users_private_class():
    with pytest.raises(InvalidArgumentType, match=r"has type _UsersPrivateClass:"):
        activation(_UsersPrivateClass())  # type: ignore[call-overload]


# ----- 6: a law at fans beyond the float range -------------------------------------------------

def test_an_orthogonal_law_at_huge_fans_has_the_limit_values():
    law = init_scheme("orthogonal").law(10**400, 2)
    kurtosis = law.kurtosis()  # -6 / (m + 2) -> 0 from below
    assert kurtosis == 0.0 and math.copysign(1.0, kurtosis) == -1.0
    # entries of variance g^2/m -> 0: the cdf tends to the step at 0
    assert np.array_equal(law.cdf(np.array([-0.1, 0.1])), [0.0, 1.0])


# ----- 7: a signed zero is not the default zero ------------------------------------------------

@pytest.mark.parametrize(("name", "key"), [("normal", "mean"), ("he_normal", "negative_slope"),
                                           ("torch:kaiming_normal", "a"), ("uniform", "low")])
def test_an_explicit_negative_zero_keeps_its_sign(name: str, key: str):
    init_scheme(name, **{key: 0.0})  # cached first: must not be handed out for -0.0
    scheme = init_scheme(name, **{key: -0.0})
    assert math.copysign(1.0, scheme.params[key]) == -1.0
    assert repr(scheme) == repr(SCHEMES.factory(name)(**{key: -0.0}))
    assert f"{key}=-0.0" in repr(scheme)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.longdouble])
def test_a_negative_numpy_zero_keeps_its_sign(dtype: type):
    init_scheme("normal", mean=dtype(0.0))  # cached first: must not be handed out for -0.0
    scheme = init_scheme("normal", mean=dtype(-0.0))
    assert math.copysign(1.0, float(scheme.params["mean"])) == -1.0


# ----- 8: the generators' --check ----------------------------------------------------------------

@pytest.mark.parametrize(("module", "path"), [(compiled_activations, "TARGET"),
                                              (compiled_schemes, "TARGET"),
                                              (compiled_moments, "PATH")])
def test_generators_check_without_writing(module: object, path: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]):
    target = tmp_path / "generated.py"
    target.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(module, path, target)
    monkeypatch.setattr(module, "catalogue_source", lambda: "new\n")
    assert module.main(["--check"]) == 1  # type: ignore[attr-defined]
    assert target.read_text(encoding="utf-8") == "old\n" and "out of date" in capsys.readouterr().out
    assert module.main([]) == 0 and target.read_text(encoding="utf-8") == "new\n"  # type: ignore[attr-defined]
    assert module.main(["--check"]) == 0  # type: ignore[attr-defined]
    assert "up to date" in capsys.readouterr().out
