"""Real PyTorch initializers confirmed against the ``torch:`` names (their parameters and
``calculate_gain``), including the heuristic gains (optional ``interop`` extra).  Every draw
seeds torch, so the verdicts are deterministic."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from varprop import init_scheme  # noqa: E402
from varprop.checking.initializers import check_initializer  # noqa: E402
from varprop.components.frameworks import torch_gain  # noqa: E402

pytestmark = pytest.mark.interop

FAN_OUT, FAN_IN = 256, 384


def _filled(init, **kwargs):  # noqa: ANN001, ANN202
    torch.manual_seed(0)
    return init(torch.empty(FAN_OUT, FAN_IN), **kwargs)


CASES = [
    (torch.nn.init.kaiming_normal_, {"nonlinearity": "tanh"}, "torch:kaiming_normal:nonlinearity=tanh"),
    (torch.nn.init.kaiming_normal_, {"nonlinearity": "selu", "mode": "fan_out"},
     "torch:kaiming_normal:nonlinearity=selu,mode=fan_out"),
    (torch.nn.init.kaiming_uniform_, {"a": 0.3}, "torch:kaiming_uniform:a=0.3"),
    (torch.nn.init.kaiming_uniform_, {"nonlinearity": "sigmoid"},
     "torch:kaiming_uniform:nonlinearity=sigmoid"),
    (torch.nn.init.xavier_normal_, {"gain": 2.0}, "torch:xavier_normal:gain=2.0"),
    (torch.nn.init.trunc_normal_, {"mean": 0.1, "std": 0.05, "a": 0.0, "b": 0.2},
     "torch:trunc_normal:mean=0.1,std=0.05,a=0.0,b=0.2"),
    (torch.nn.init.normal_, {"std": 0.02}, "torch:normal:std=0.02"),
]


@pytest.mark.parametrize(("init", "kwargs", "name"), CASES, ids=[c[2] for c in CASES])
def test_torch_initializers_confirm_their_torch_names(init, kwargs, name) -> None:  # noqa: ANN001
    from varprop.components.named import build_named

    scheme = build_named("init", name)
    v = check_initializer(_filled(init, **kwargs), scheme, fan_in=FAN_IN, fan_out=FAN_OUT)
    assert v.status == "confirmed", v.reason
    assert v.config["init"].startswith("torch:")


@pytest.mark.parametrize("nonlinearity, param", [("tanh", None), ("selu", None), ("relu", None),
                                                 ("leaky_relu", None), ("leaky_relu", 0.2),
                                                 ("sigmoid", None), ("conv2d", None)])
def test_gain_is_calculate_gain(nonlinearity, param) -> None:
    assert float(torch_gain(nonlinearity, param)) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


def test_nn_linear_default_is_torch_default() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(FAN_IN, FAN_OUT)
    assert check_initializer(layer.weight, "torch:default").status == "confirmed"
    assert init_scheme("torch:default").moments(FAN_IN, FAN_OUT)[1] == pytest.approx(
        1 / (3 * FAN_IN), rel=1e-15)
    assert math.isclose(init_scheme("torch:default").parameters(FAN_IN, FAN_OUT)["high"],
                        1 / math.sqrt(FAN_IN), rel_tol=1e-15)
