"""Real PyTorch initializers checked by varprop.check_initializer (optional ``interop`` extra).

PyTorch weights have shape ``(out_features, in_features)`` = ``(fan_out, fan_in)``, varprop's own
convention.  Every test seeds torch (``torch.manual_seed``), so the verdicts are deterministic.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from varprop import init_scheme  # noqa: E402
from varprop.checking.initializers import check_initializer  # noqa: E402

pytestmark = pytest.mark.interop

FAN_OUT, FAN_IN = 256, 512


def _filled(init, *args, dtype=None, **kwargs):  # noqa: ANN001, ANN202
    torch.manual_seed(0)
    w = torch.empty(FAN_OUT, FAN_IN, dtype=dtype or torch.float32)
    return init(w, *args, **kwargs)


CASES = [
    # (torch initializer, kwargs, varprop scheme)
    (torch.nn.init.kaiming_normal_, {}, init_scheme("he_normal")),
    (torch.nn.init.kaiming_uniform_, {}, init_scheme("he_uniform")),
    (torch.nn.init.kaiming_normal_, {"mode": "fan_out"}, init_scheme("he_normal", mode="fan_out")),
    (torch.nn.init.kaiming_uniform_, {"a": 0.2, "nonlinearity": "leaky_relu"},
     init_scheme("he_uniform", negative_slope=0.2)),
    (torch.nn.init.xavier_uniform_, {}, init_scheme("xavier_uniform")),
    (torch.nn.init.xavier_normal_, {}, init_scheme("xavier_normal")),
    (torch.nn.init.xavier_uniform_, {"gain": 5 / 3}, init_scheme("xavier_uniform", gain=5 / 3)),
    # trunc_normal_ truncates at the absolute values a, b; varprop's truncated_normal(std, bound)
    # at +-bound*std: a = -bound*std, b = bound*std is the same law
    (torch.nn.init.trunc_normal_, {"std": 0.05, "a": -0.1, "b": 0.1},
     init_scheme("truncated_normal", std=0.05, bound=2.0)),
    (torch.nn.init.orthogonal_, {}, init_scheme("orthogonal")),
    (torch.nn.init.orthogonal_, {"gain": math.sqrt(2)},
     init_scheme("orthogonal", gain=math.sqrt(2))),
]


@pytest.mark.parametrize(("init", "kwargs", "scheme"), CASES,
                         ids=[f"{c[0].__name__}{c[1] or ''}" for c in CASES])
def test_torch_initializer_confirmed(init, kwargs, scheme) -> None:  # noqa: ANN001
    w = _filled(init, **kwargs)
    v = check_initializer(w, scheme, fan_in=FAN_IN, fan_out=FAN_OUT)
    assert v.status == "confirmed", v.reason
    assert abs(v.relative_error) < 0.02


def test_nn_linear_default_is_torch_linear_default_not_he() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(FAN_IN, FAN_OUT)
    assert layer.weight.requires_grad   # a Parameter: detached by duck typing
    v = check_initializer(layer.weight, "torch_linear_default", fan_in=FAN_IN, fan_out=FAN_OUT)
    assert v.status == "confirmed", v.reason
    # Var = 1/(3 fan_in) instead of He's 2/fan_in: a factor 6 too small
    he = check_initializer(layer.weight, "he_uniform", fan_in=FAN_IN, fan_out=FAN_OUT)
    assert he.status == "refuted"
    assert he.relative_error == pytest.approx(1 / 6 - 1, abs=0.01)
    assert he.relative_interval[1] < -0.8


def test_trunc_normal_default_bounds_are_absolute() -> None:
    # trunc_normal_(std=0.02) keeps the default a=-2, b=2: 100 std away, i.e. not truncated at all
    w = _filled(torch.nn.init.trunc_normal_, std=0.02)
    assert check_initializer(w, init_scheme("normal", std=0.02), fan_in=FAN_IN,
                             fan_out=FAN_OUT).status == "confirmed"
    v = check_initializer(w, init_scheme("truncated_normal", std=0.02, bound=2.0), fan_in=FAN_IN,
                          fan_out=FAN_OUT)
    assert v.status == "refuted" and v.p_values["support"] == 0.0


def test_kaiming_uniform_is_not_kaiming_normal() -> None:
    w = _filled(torch.nn.init.kaiming_uniform_)
    v = check_initializer(w, "he_normal", fan_in=FAN_IN, fan_out=FAN_OUT)
    assert v.status == "refuted" and v.p_values["shape"] < 1e-10
    assert abs(v.relative_error) < 0.02      # the variance agrees: only the shape differs


def test_callable_and_reduced_precision() -> None:
    torch.manual_seed(1)
    draw = lambda: torch.nn.init.kaiming_normal_(torch.empty(64, 128))  # noqa: E731
    v = check_initializer(draw, "he_normal", fan_in=128, fan_out=64)
    assert v.status == "confirmed" and v.replicates > 1
    # bfloat16 has no NumPy dtype: the tensor is widened with .float() (exact), checked as bfloat16
    w = _filled(torch.nn.init.xavier_normal_, dtype=torch.bfloat16)
    v16 = check_initializer(w, "xavier_normal", fan_in=FAN_IN, fan_out=FAN_OUT)
    assert v16.status == "confirmed" and v16.config["dtype"] == "bfloat16"


def test_orthogonal_transposed_and_torch_identity_refuted() -> None:
    torch.manual_seed(2)
    w = torch.nn.init.orthogonal_(torch.empty(FAN_IN, FAN_OUT))   # given as (fan_in, fan_out)
    assert check_initializer(w, "orthogonal", fan_in=FAN_OUT, fan_out=FAN_IN).status == "confirmed"
    eye = torch.nn.init.eye_(torch.empty(FAN_OUT, FAN_IN))           # orthogonal rows, not Haar
    v = check_initializer(eye, "orthogonal", fan_in=FAN_IN, fan_out=FAN_OUT)
    assert v.status == "refuted" and v.p_values["orthogonality"] == 1.0


def test_numpy_view_matches() -> None:
    w = _filled(torch.nn.init.xavier_uniform_)
    a = check_initializer(w, "xavier_uniform", fan_in=FAN_IN, fan_out=FAN_OUT)
    b = check_initializer(np.asarray(w), "xavier_uniform", fan_in=FAN_IN, fan_out=FAN_OUT)
    assert replace(a, elapsed=0.0) == replace(b, elapsed=0.0)


# ----------------------------------------------------------------------------------------------
# bfloat16: rounding moves entries past the float64 bound; convolution kernels' fans
# ----------------------------------------------------------------------------------------------

def test_kaiming_uniform_cast_to_bfloat16_is_confirmed() -> None:
    # old code refuted 20 of 20 (entries rounded past the bound, support test with float32 eps)
    statuses = []
    for seed in range(20):
        torch.manual_seed(seed)
        w = torch.nn.init.kaiming_uniform_(torch.empty(FAN_OUT, FAN_IN)).to(torch.bfloat16)
        v = check_initializer(w, "he_uniform", fan_in=FAN_IN, fan_out=FAN_OUT)
        assert v.config["dtype"] == "bfloat16"
        statuses.append(v.status)
    assert statuses.count("refuted") == 0 and statuses.count("confirmed") == 20
    # one bfloat16 step beyond the rounded bound is outside the rounded law's support
    top = torch.tensor(math.sqrt(6 / FAN_IN)).to(torch.bfloat16)
    beyond = (top.view(torch.int16) + 1).view(torch.bfloat16)  # next bfloat16 up (positive)
    assert float(beyond) > float(top) > 0
    w[0, 0] = beyond
    v = check_initializer(w, "he_uniform", fan_in=FAN_IN, fan_out=FAN_OUT)
    assert v.status == "refuted" and v.p_values["support"] == 0.0


def test_bfloat16_calibration_and_power() -> None:
    # 200 seeded true claims at alpha 0.01 (uniform, normal, truncated normal rounded to
    # bfloat16); with the procedure's size <= alpha the count exceeds 9 with probability < 1e-4
    # (binomial(200, 0.01)) -- seeded, so deterministic; measured: see the report
    claims = [(torch.nn.init.kaiming_uniform_, {}, "he_uniform"),
              (torch.nn.init.kaiming_normal_, {}, "he_normal"),
              (torch.nn.init.trunc_normal_, {"std": 0.05, "a": -0.1, "b": 0.1},
               init_scheme("truncated_normal", std=0.05, bound=2.0))]
    refuted = 0
    for seed in range(200):
        init, kwargs, scheme = claims[seed % 3]
        torch.manual_seed(1000 + seed)
        w = init(torch.empty(96, 160), **kwargs).to(torch.bfloat16)
        refuted += check_initializer(w, scheme, fan_in=160, fan_out=96).status == "refuted"
    assert refuted <= 9
    # rounding does not hide a wrong claim: kaiming_normal_ weights are not he_uniform
    torch.manual_seed(3)
    w = torch.nn.init.kaiming_normal_(torch.empty(FAN_OUT, FAN_IN)).to(torch.bfloat16)
    assert check_initializer(w, "he_uniform", fan_in=FAN_IN, fan_out=FAN_OUT).status == "refuted"


def test_conv_kaiming_normal_fan_out_is_confirmed_without_reshaping() -> None:
    # torchvision's ResNet init: kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    torch.manual_seed(4)
    conv = torch.nn.Conv2d(64, 128, 3)
    torch.nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    he_out = init_scheme("he_normal", mode="fan_out")
    v = check_initializer(conv.weight, he_out)  # fans from the shape, as PyTorch computes them
    assert v.status == "confirmed", v.reason
    assert (v.config["fan_in"], v.config["fan_out"]) == (64 * 9, 128 * 9)
    assert check_initializer(conv.weight, he_out, fan_in=576, fan_out=1152).status == "confirmed"
    assert check_initializer(conv.weight, "he_normal").status == "refuted"  # wrong mode: 2x
    torch.nn.init.kaiming_normal_(conv.weight)  # fan_in mode
    assert check_initializer(conv.weight, "he_normal").status == "confirmed"


@pytest.mark.parametrize("make", [lambda: torch.nn.Conv2d(64, 128, 3),
                                  lambda: torch.nn.Conv1d(128, 256, 5)], ids=["conv2d", "conv1d"])
def test_default_conv_init_is_torch_linear_default(make) -> None:  # noqa: ANN001
    # ConvNd.reset_parameters: kaiming_uniform_(a=sqrt(5)) = U[+-1/sqrt(fan_in)], variance
    # 1/(3 fan_in) with fan_in = in * prod(kernel)
    torch.manual_seed(5)
    conv = make()
    fan_in = conv.weight.shape[1] * math.prod(conv.weight.shape[2:])
    v = check_initializer(conv.weight, "torch_linear_default")
    assert v.status == "confirmed", v.reason
    assert v.predicted == pytest.approx(1 / (3 * fan_in), rel=1e-12)
    assert check_initializer(conv.weight, "he_uniform").status == "refuted"


def test_orthogonal_conv_kernel_is_its_flattened_matrix() -> None:
    # orthogonal_ makes the (out, in * prod(kernel)) matrix orthogonal: those are its fans
    torch.manual_seed(6)
    conv = torch.nn.Conv2d(16, 64, 3)
    torch.nn.init.orthogonal_(conv.weight)
    v = check_initializer(conv.weight, "orthogonal")
    assert v.status == "confirmed" and (v.config["fan_in"], v.config["fan_out"]) == (144, 64)
    with pytest.raises(ValueError, match="convolution kernel"):
        check_initializer(conv.weight, "orthogonal", fan_in=144, fan_out=576)


def test_float8_weights_are_refused_not_checked_as_float32() -> None:
    # widened with .float() they were described as float32 and refuted for rounding onto the bound
    from varprop.errors import InvalidArgumentType

    w = torch.empty(128, 128)
    torch.nn.init.kaiming_uniform_(w)
    with pytest.raises(InvalidArgumentType, match="float8_e4m3fn"):
        check_initializer(w.to(torch.float8_e4m3fn), "he_uniform")
