"""check_initializer on whole PyTorch modules (issue 11, "Also"): nn.Linear, nn.Conv*, nn.RNN.

The expected laws are PyTorch's documented defaults, written here from its documentation (not
from varprop): ``nn.Linear``/``nn.ConvNd`` ``reset_parameters`` is ``kaiming_uniform_(a=sqrt(5))``,
i.e. :math:`U[\\pm 1/\\sqrt{\\text{fan\\_in}}]` with ``fan_in = in * prod(kernel)``; ``nn.RNN``
draws every weight from :math:`U(-\\sqrt k, \\sqrt k)`, :math:`k = 1/\\text{hidden\\_size}`.
Every test seeds torch, so the verdicts are deterministic.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from varprop import init_scheme
from varprop.checking.initializers import check_initializer
from varprop.errors import InvalidArgument, InvalidArgumentType

pytestmark = pytest.mark.interop

#: U[+-1/sqrt(hidden)] for every RNN matrix: variance 1/(3 hidden) with hidden = fan_out
RNN_DEFAULT = init_scheme("variance_scaling", scale=1 / 3, mode="fan_out", distribution="uniform")


def test_default_conv2d_module_is_torch_default_not_he() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 128, 3)
    v = check_initializer(conv, "torch_linear_default")
    assert v.status == "confirmed", v.reason
    assert (v.config["fan_in"], v.config["module"], v.config["parameter"]) == (576, "Conv2d",
                                                                               "weight")
    assert v.predicted == pytest.approx(1 / (3 * 64 * 9), rel=1e-12)
    he = check_initializer(conv, "he_uniform")
    assert he.status == "refuted"
    assert he.relative_error == pytest.approx((1 / 3) / 2 - 1, abs=0.02)  # 1/(3 fan_in) vs 2/fan_in


@pytest.mark.parametrize("make", [lambda: torch.nn.Linear(512, 256),
                                  lambda: torch.nn.Conv1d(128, 256, 5)], ids=["linear", "conv1d"])
def test_default_linear_and_conv1d_modules(make) -> None:
    torch.manual_seed(1)
    module = make()
    assert check_initializer(module, "torch_linear_default").status == "confirmed"
    assert check_initializer(module, "lecun_uniform").status == "refuted"  # variance 3x larger


def test_reinitialised_linear_and_subclass() -> None:
    class MyLinear(torch.nn.Linear):  # a user subclass is still an nn.Linear
        pass

    torch.manual_seed(2)
    layer = MyLinear(512, 256)
    torch.nn.init.kaiming_normal_(layer.weight)
    assert check_initializer(layer, "he_normal").status == "confirmed"
    assert check_initializer(layer, "he_uniform").status == "refuted"  # the shape differs


def test_default_rnn_checks_both_matrices_with_their_own_fans() -> None:
    torch.manual_seed(3)
    rnn = torch.nn.RNN(128, 256)
    v = check_initializer(rnn, RNN_DEFAULT)
    assert v.status == "confirmed", v.reason
    params = v.config["parameters"]
    assert set(params) == {"weight_ih_l0", "weight_hh_l0"}
    assert (params["weight_ih_l0"]["fan_in"], params["weight_ih_l0"]["fan_out"]) == (128, 256)
    assert (params["weight_hh_l0"]["fan_in"], params["weight_hh_l0"]["fan_out"]) == (256, 256)
    # torch_linear_default takes the fan-in: right for weight_hh (256 = hidden), wrong for
    # weight_ih, whose bound is 1/sqrt(hidden) and not 1/sqrt(input): variance half the claim
    w = check_initializer(rnn, "torch_linear_default")
    assert w.status == "refuted" and w.config["parameter"] == "weight_ih_l0"
    assert w.relative_error == pytest.approx(128 / 256 - 1, abs=0.02)
    assert w.config["parameters"]["weight_hh_l0"]["status"] == "confirmed"
    assert w.alpha == 0.01 and "alpha/2" in w.reason


def test_stacked_bidirectional_rnn_and_mixed_init() -> None:
    torch.manual_seed(4)
    rnn = torch.nn.RNN(64, 256, num_layers=2, bidirectional=True)
    v = check_initializer(rnn, RNN_DEFAULT)
    assert v.status == "confirmed", v.reason
    assert len(v.config["parameters"]) == 8  # ih, hh x 2 layers x 2 directions
    assert v.config["parameters"]["weight_ih_l1_reverse"]["fan_in"] == 512
    # orthogonal recurrent matrix, Xavier input matrix: each checked as a tensor
    single = torch.nn.RNN(128, 256)
    torch.nn.init.orthogonal_(single.weight_hh_l0)
    torch.nn.init.xavier_uniform_(single.weight_ih_l0)
    assert check_initializer(single.weight_hh_l0, "orthogonal").status == "confirmed"
    assert check_initializer(single.weight_ih_l0, "xavier_uniform").status == "confirmed"
    both = check_initializer(single, "orthogonal")
    assert both.status == "refuted" and both.config["parameter"] == "weight_ih_l0"


def test_module_errors() -> None:
    with pytest.raises(InvalidArgumentType, match=r"LSTM.*weight_ih_l0"):
        check_initializer(torch.nn.LSTM(8, 16), "he_normal")
    with pytest.raises(InvalidArgument, match="fan_in"):
        check_initializer(torch.nn.RNN(8, 16), "he_normal", fan_in=8)
    with pytest.raises(InvalidArgument, match="replicates"):
        check_initializer(torch.nn.Linear(8, 16), "he_normal", replicates=2)
    # a math check of the PyTorch default bound itself, independent of varprop's scheme
    torch.manual_seed(5)
    w = torch.nn.RNN(16, 100).weight_ih_l0
    assert float(w.detach().abs().max()) <= 1 / math.sqrt(100)
