"""Framework-qualified init schemes (varprop.components.frameworks) against the frameworks'
documented constants, written here from their documentation: Keras ``VarianceScaling`` (std
sqrt(scale/n)/.87962566103423978 truncated at 2 std), ``jax.nn.initializers`` (the same, plus
``fan_geo_avg`` and ``uniform(scale)`` on [0, scale)), ``torch.nn.init`` (``calculate_gain``'s
table, ``kaiming_*``, ``nn.Linear``'s ``kaiming_uniform_(a=sqrt(5))``)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from scipy import stats

import varprop as vp
from varprop.components.named import build_named
from varprop.errors import InvalidArgument, InvalidArgumentType

KERAS_TRUNCATION_STD = 0.87962566103423978  # Keras/JAX source: std of N(0,1) truncated to +-2
FAN_IN, FAN_OUT = 300, 70

# name -> (variance at (FAN_IN, FAN_OUT) from the documentation, family, underlying std or
# uniform limit)
FAN_AVG = (FAN_IN + FAN_OUT) / 2
DOCUMENTED = {
    "keras:he_normal": (2 / FAN_IN, "truncated_normal", math.sqrt(2 / FAN_IN) / KERAS_TRUNCATION_STD),
    "keras:lecun_normal": (1 / FAN_IN, "truncated_normal", math.sqrt(1 / FAN_IN) / KERAS_TRUNCATION_STD),
    "keras:glorot_normal": (1 / FAN_AVG, "truncated_normal", math.sqrt(1 / FAN_AVG) / KERAS_TRUNCATION_STD),
    "keras:glorot_uniform": (1 / FAN_AVG, "uniform", math.sqrt(3 / FAN_AVG)),
    "keras:he_uniform": (2 / FAN_IN, "uniform", math.sqrt(6 / FAN_IN)),
    "keras:lecun_uniform": (1 / FAN_IN, "uniform", math.sqrt(3 / FAN_IN)),
    "jax:lecun_normal": (1 / FAN_IN, "truncated_normal", math.sqrt(1 / FAN_IN) / KERAS_TRUNCATION_STD),
    "flax:lecun_normal": (1 / FAN_IN, "truncated_normal", math.sqrt(1 / FAN_IN) / KERAS_TRUNCATION_STD),
    "jax:kaiming_normal": (2 / FAN_IN, "truncated_normal", math.sqrt(2 / FAN_IN) / KERAS_TRUNCATION_STD),
    "jax:xavier_uniform": (1 / FAN_AVG, "uniform", math.sqrt(3 / FAN_AVG)),
    "torch:kaiming_normal": (2 / FAN_IN, "normal", math.sqrt(2 / FAN_IN)),
    "torch:kaiming_uniform": (2 / FAN_IN, "uniform", math.sqrt(6 / FAN_IN)),
    "torch:xavier_normal": (1 / FAN_AVG, "normal", math.sqrt(1 / FAN_AVG)),
    "torch:xavier_uniform": (1 / FAN_AVG, "uniform", math.sqrt(3 / FAN_AVG)),
    "torch:default": (1 / (3 * FAN_IN), "uniform", 1 / math.sqrt(FAN_IN)),
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_documented_laws(name):
    variance, family, scale = DOCUMENTED[name]
    scheme = vp.init_scheme(name)
    assert scheme.name.split(":")[0] in ("keras", "jax", "torch") and ":" in repr(scheme)
    law = scheme.law(FAN_IN, FAN_OUT)
    assert law.family == family
    mean, var = scheme.moments(FAN_IN, FAN_OUT)
    assert mean == 0.0 and var == pytest.approx(variance, rel=1e-14)
    p = scheme.parameters(FAN_IN, FAN_OUT)
    if family == "truncated_normal":
        assert p["scale"] == pytest.approx(scale, rel=1e-15) and p["bound"] == 2.0
        # the truncated law's variance, by scipy, is the documented scale / n
        assert stats.truncnorm(-2, 2, scale=p["scale"]).var() == pytest.approx(variance, rel=1e-12)
    elif family == "uniform":
        assert p["high"] == pytest.approx(scale, rel=1e-15) and p["low"] == -p["high"]
    else:
        assert p["scale"] == pytest.approx(scale, rel=1e-15)


def test_unqualified_names_keep_their_meaning():
    assert vp.init_scheme("he_normal").law(FAN_IN, FAN_OUT).family == "normal"
    assert vp.init_scheme("lecun_normal").law(FAN_IN, FAN_OUT).family == "normal"
    assert "keras:he_normal" not in vp.scheme_names()
    assert {"keras:he_normal", "jax:lecun_normal", "torch:kaiming_normal"} <= set(
        vp.scheme_names(frameworks=True))


def test_keras_constant_is_the_truncated_std():
    # 0.87962566103423978 = std of N(0, 1) truncated to [-2, 2]
    assert math.sqrt(stats.truncnorm(-2, 2).var()) == pytest.approx(KERAS_TRUNCATION_STD, rel=1e-15)


def test_variance_scaling_conventions():
    vs = vp.init_scheme
    assert vs("jax:variance_scaling", scale=2.0, mode="fan_geo_avg", distribution="normal").moments(
        4, 9) == (0.0, pytest.approx(2 / 6, rel=1e-15))
    assert vs("keras:variance_scaling", distribution="untruncated_normal").law(8, 8).family == "normal"
    plain = vs("variance_scaling", distribution="untruncated_normal", mode="fan_geo_avg")
    assert plain == vs("variance_scaling", distribution="normal", mode="fan_geo_avg")
    assert plain.moments(4, 9)[1] == pytest.approx(1 / 6, rel=1e-15)
    # JAX's uniform(scale) is U[0, scale): mean scale/2, variance scale^2/12
    assert vs("jax:uniform", scale=0.5).moments(3, 3) == (0.25, pytest.approx(0.25 / 12, rel=1e-15))
    # untruncated-std conventions: variance m2(2) stddev^2
    m2 = stats.truncnorm(-2, 2).var()
    for name, kwargs, std in [("keras:truncated_normal", {}, 0.05), ("jax:truncated_normal", {}, 0.01),
                              ("torch:trunc_normal", {"std": 0.5, "a": -1.0, "b": 1.0}, 0.5)]:
        assert vs(name, **kwargs).moments(5, 5)[1] == pytest.approx(m2 * std**2, rel=1e-12), name


# torch.nn.init.calculate_gain's documented table
GAINS = [("linear", None, 1.0), ("conv2d", None, 1.0), ("sigmoid", None, 1.0), ("tanh", None, 5 / 3),
         ("relu", None, math.sqrt(2)), ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
         ("leaky_relu", 0.2, math.sqrt(2 / (1 + 0.2**2))), ("selu", None, 0.75)]


@pytest.mark.parametrize("nonlinearity, param, gain", GAINS)
def test_torch_gain_table(nonlinearity, param, gain):
    from varprop.components.frameworks import gain_note, torch_gain

    assert float(torch_gain(nonlinearity, param)) == pytest.approx(gain, rel=1e-15)
    heuristic = nonlinearity in ("tanh", "sigmoid", "selu")
    assert bool(gain_note(nonlinearity)) == heuristic


@pytest.mark.parametrize("nonlinearity, a, mode", [("tanh", 0.0, "fan_in"), ("relu", 0.0, "fan_out"),
                                                   ("leaky_relu", 0.3, "fan_in"), ("selu", 0.0, "fan_in")])
def test_torch_kaiming_uses_calculate_gain(nonlinearity, a, mode):
    gain = {"tanh": 5 / 3, "relu": math.sqrt(2), "selu": 0.75,
            "leaky_relu": math.sqrt(2 / (1 + a * a))}[nonlinearity]
    fan = FAN_IN if mode == "fan_in" else FAN_OUT
    for kind, limit in (("normal", gain / math.sqrt(fan)), ("uniform", gain * math.sqrt(3 / fan))):
        s = vp.init_scheme(f"torch:kaiming_{kind}", a=a, mode=mode, nonlinearity=nonlinearity)
        assert s.moments(FAN_IN, FAN_OUT)[1] == pytest.approx(gain**2 / fan, rel=1e-14)
        p = s.parameters(FAN_IN, FAN_OUT)
        assert p["scale" if kind == "normal" else "high"] == pytest.approx(limit, rel=1e-14)
        assert (nonlinearity in ("tanh", "selu")) == bool(s.note)


def _keras_truncated_draw(rng, std, shape):
    """Keras' recipe from scratch: N(0, std'^2) with std' = std / .8796..., redrawn beyond 2 std'."""
    s = std / KERAS_TRUNCATION_STD
    w = rng.standard_normal(shape) * s
    bad = np.abs(w) > 2 * s
    while bad.any():
        w[bad] = rng.standard_normal(int(bad.sum())) * s
        bad = np.abs(w) > 2 * s
    return w


def test_check_initializer_tells_the_conventions_apart():
    rng = np.random.default_rng(2026)
    w = _keras_truncated_draw(rng, math.sqrt(2 / 256), (256, 256)).T  # Keras kernel (in, out)
    keras = vp.check_initializer(w, "keras:he_normal", fan_in=256, fan_out=256)
    assert keras.status == "confirmed" and "keras:he_normal" in keras.config["init"]
    torch = vp.check_initializer(w, "torch:kaiming_normal", fan_in=256, fan_out=256)
    assert torch.status == "refuted" and "torch:kaiming_normal" in torch.config["init"]
    # varprop's own sampler draws the framework law
    own = vp.init_scheme("keras:he_normal").sample(np.random.default_rng(1), 256, 256)
    assert vp.check_initializer(own, "keras:he_normal").status == "confirmed"


def test_predictions_take_qualified_names():
    keras = vp.predict_variance("relu", "keras:he_normal", fan_in=64, depth=3)
    torch = vp.predict_variance("relu", "torch:kaiming_normal", fan_in=64, depth=3)
    assert keras == pytest.approx(torch, rel=1e-12)  # same variance, different law


def test_text_names_and_pickle():
    s = build_named("init", "torch:kaiming_normal:nonlinearity=tanh,mode=fan_out")
    assert s == vp.init_scheme("torch:kaiming_normal", nonlinearity="tanh", mode="fan_out")
    assert build_named("init", "flax:lecun_normal") == vp.init_scheme("jax:lecun_normal")
    assert build_named("init", "pytorch:default") == vp.init_scheme("torch:default")
    assert build_named("init", "he_normal:mode=fan_out") == vp.init_scheme("he_normal", mode="fan_out")
    for name in vp.scheme_names(frameworks=True):
        s = vp.init_scheme(name)
        assert pickle.loads(pickle.dumps(s)) == s


@pytest.mark.parametrize("call, exc, text", [
    (lambda: vp.init_scheme("keras:he_nromal"), InvalidArgument, "did you mean 'keras:he_normal'"),
    (lambda: vp.init_scheme("keras:variance_scaling", distribution="normal"), InvalidArgument,
     "untruncated_normal"),
    (lambda: vp.init_scheme("keras:variance_scaling", mode="fan_geo_avg"), InvalidArgument, "mode"),
    (lambda: vp.init_scheme("jax:truncated_normal", lower=-1.0), InvalidArgument, "lower"),
    (lambda: vp.init_scheme("torch:kaiming_normal", nonlinearity="gelu"), InvalidArgument,
     "nonlinearity"),
    (lambda: vp.init_scheme("torch:kaiming_normal", a=True), InvalidArgumentType, "a="),
    (lambda: vp.init_scheme("torch:trunc_normal", a=-1.0, b=3.0), InvalidArgument, "symmetric"),
    (lambda: vp.init_scheme("torch:kaiming_normal", gain=2.0), InvalidArgumentType, "gain"),
])
def test_bad_arguments(call, exc, text):
    with pytest.raises(exc, match=text):
        call()


def test_command_line_takes_qualified_names(capsys):
    from varprop._util.named import parse_named
    from varprop.cli import main

    assert parse_named("keras:he_normal", "init") == ("keras:he_normal", {})
    assert parse_named("he_normal:mode=fan_out", "init") == ("he_normal", {"mode": "fan_out"})
    main(["predict", "selu", "torch:kaiming_normal:nonlinearity=linear", "--fan-in", "64",
          "--depth", "2"])
    out = capsys.readouterr().out
    assert "torch:kaiming_normal(a=0.0, mode='fan_in', nonlinearity='linear')" in out


def test_selu_under_keras_lecun_normal_keeps_unit_variance_in_a_numpy_network():
    """A from-scratch NumPy Monte Carlo (Keras' truncated-normal recipe, SELU from its
    constants): the pre-activation second moment stays at the predicted 1 over 4 layers, within
    6 standard errors of the replicate means (the finite-width bias, O(1/n) through the
    fluctuation of q, is far below: about 1e-3 at n = 256)."""
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    n, depth, reps = 256, 4, 120
    rng = np.random.default_rng(11)
    per_rep = np.empty((reps, depth))
    for r in range(reps):
        a = rng.standard_normal(n)
        for layer in range(depth):
            z = _keras_truncated_draw(rng, math.sqrt(1 / n), (n, n)) @ a
            per_rep[r, layer] = np.mean(z * z)
            a = scale * np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))
    predicted = vp.predict_variance("selu", "keras:lecun_normal", fan_in=n, depth=depth,
                                    quantity="preactivation", per_layer=True)
    est, se = per_rep.mean(axis=0), per_rep.std(axis=0, ddof=1) / math.sqrt(reps)
    assert np.allclose(np.asarray(predicted, dtype=float), 1.0, rtol=1e-12)
    assert np.all(np.abs(est - 1.0) < 6 * se), (est, se)


def test_the_repr_names_its_scheme_again():
    """A verdict's ``init`` text (the scheme's repr) builds the same scheme; expressions with
    positional arguments stay expressions."""
    for scheme in [vp.init_scheme("torch:kaiming_normal", nonlinearity="tanh", mode="fan_out"),
                   vp.init_scheme("keras:variance_scaling", scale=2.0, distribution="uniform"),
                   vp.init_scheme("he_normal", negative_slope=0.2), vp.init_scheme("keras:he_normal")]:
        assert build_named("init", repr(scheme)) == scheme
    assert build_named("init", "he_normal(mode=fan_out)") == vp.init_scheme("he_normal", mode="fan_out")
    assert build_named("activation", "gelu(approximate='tanh')") == vp.activation("gelu_tanh")
    assert build_named("activation", "max(x, 0)") == vp.activation("relu")
    assert build_named("activation", "relu(x - 1)").name == "relu(x - 1)"
    with pytest.raises(InvalidArgument, match="literal"):
        build_named("init", "he_normal(mode=1+x)")


def test_networks_take_qualified_names_and_the_new_activations():
    """A Network of Dense layers with keras:lecun_normal and SELU: the general engine's
    per-position prediction is the fixed point 1 everywhere, as the MLP walk's."""
    from varprop.layers import Dense, Nonlinearity

    net = vp.Network([Dense(96, init="keras:lecun_normal"), Nonlinearity("selu"),
                      Dense(96, init="keras:lecun_normal"), Nonlinearity("selu"),
                      Dense(8, init="keras:lecun_normal")], input_shape=(32,))
    per_position = np.asarray(vp.predict_variance(net, quantity="output", per_layer=True), dtype=float)
    assert np.allclose(per_position, 1.0, rtol=1e-12, atol=0)
