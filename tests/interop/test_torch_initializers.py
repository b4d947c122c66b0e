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
from varprop.initializers import check_initializer  # noqa: E402

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
