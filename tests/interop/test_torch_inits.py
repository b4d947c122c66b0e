"""Init recognition from several draws (varprop.torch.inits "Several draws", trace_model draws=).

PyTorch's ``nn.Linear`` default is ``kaiming_uniform_(a=sqrt(5))``: :math:`U(\\pm 1/\\sqrt{n_{in}})`,
variance :math:`1/(3 n_{in})` (PyTorch's documentation), written here by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from varprop.components.scheme import weight_moments  # noqa: E402
from varprop.errors import VarpropError  # noqa: E402
from varprop.torch import trace_model  # noqa: E402
from varprop.torch.inits import pooled_draws, recognise  # noqa: E402

pytestmark = pytest.mark.interop

DEFAULT = "torch:kaiming_uniform(a=sqrt(5))"


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4))


def test_one_small_draw_can_mislabel_the_default_but_pooled_draws_do_not() -> None:
    m = _model(147)  # a draw whose 128 entries look like normal(std=0.23) (found by a scan)
    assert recognise(m[0].weight).name != DEFAULT
    others = [_model(1000 + k)[0].weight.detach().clone() for k in range(31)]
    with pooled_draws({id(m[0].weight): others}):
        law = recognise(m[0].weight)
    assert law.name == DEFAULT and law.source == "recognised"
    assert weight_moments(law.scheme, 8, 16)[1] == pytest.approx(1 / 24, rel=1e-12)


def test_trace_model_draws_callable_and_state_dicts_agree_and_restore_parameters() -> None:
    m = _model(147)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in m.parameters()]
    calls = []

    def draws(k: int) -> None:
        calls.append(k)
        torch.manual_seed(1000 + k)
        for layer in m:
            layer.reset_parameters()

    t1 = trace_model(m, x, draws=draws)
    assert calls == list(range(31))  # 4096 / 64 entries (the smallest weight) -> 32 draws
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    assert t1.sites[0].init == DEFAULT
    states = [_model(2000 + k).state_dict() for k in range(31)]
    t2 = trace_model(m, x, draws=states)
    assert [s.init for s in t2.sites] == [s.init for s in t1.sites]
    with pytest.raises(TypeError, match="draws"):
        trace_model(m, x, draws="no")


def test_fallback_variance_is_read_from_the_pooled_draws() -> None:
    # Laplace(0, b): variance 2 b^2, not a candidate law (kurtosis 6).  The pooled sample
    # variance of n = 4096 entries has relative standard error sqrt((E x^4/var^2 - 1)/n) =
    # sqrt(5/n) = 3.5%: allow 6 of them.
    b = 0.1
    lap = torch.distributions.Laplace(0.0, b)
    torch.manual_seed(3)
    draws = [lap.sample((16, 8)) for _ in range(32)]
    w = nn.Parameter(draws[0])
    with pooled_draws({id(w): draws[1:]}):
        law = recognise(w)
    assert law.source == "tensor moments" and "pooled (32 draws)" in law.note
    var = weight_moments(law.scheme, 8, 16)[1]
    assert abs(var / (2 * b * b) - 1) < 6 * math.sqrt(5 / 4096)
    assert np.isfinite(var)


def test_non_zero_mean_weights_are_refused_naming_the_module() -> None:
    # normal_(mean=0.05, std=0.05) on 64 x 64: the sample mean's standard error is
    # 0.05 / 64 = 7.8e-4, so 0.05 is ~64 of them; n_in mu^2 / sigma^2 = 64 >> 0.01.
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 8))
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        nn.init.normal_(m[0].weight, mean=0.05, std=0.05)
    with pytest.raises(VarpropError, match=r"^0 \(Linear\): its weights have mean 0\.0"):
        trace_model(m, x)
    with torch.no_grad():
        nn.init.normal_(m[0].weight, mean=0.0, std=0.05)
    assert trace_model(m, x).sites[0].init == "normal(std=0.05)"


def test_tracing_restores_the_random_state_and_refuses_meta_models() -> None:
    m = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 4)).train()
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(7)
    state = torch.get_rng_state()
    trace_model(m, x)
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(VarpropError, match="meta device"):
        trace_model(nn.Linear(8, 4, device="meta"), x)


@pytest.mark.parametrize(("shape", "init", "name", "variance"), [
    # variances by hand: truncnorm's from scipy; orthogonal rows/cols of norm gain; kaiming
    # uniform fan_out: bound gain sqrt(3 / fan_out), variance 2 / fan_out
    ((256, 256), lambda w: nn.init.trunc_normal_(w, std=0.02, a=-0.04, b=0.04),
     "trunc_normal(std=0.02, a=-0.04, b=0.04)", None),
    ((128, 128), lambda w: nn.init.orthogonal_(w, gain=math.sqrt(2)), "orthogonal(gain=sqrt(2))",
     2 / 128),
    ((32, 16, 3, 3), nn.init.orthogonal_, "orthogonal(gain=1)", 1 / 144),
    ((64, 128), lambda w: nn.init.kaiming_uniform_(w, mode="fan_out"), "he_uniform(fan_out)",
     2 / 64),
])
def test_recognition_gaps_closed(shape, init, name, variance) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    w = torch.empty(*shape)
    init(w)
    law = recognise(nn.Parameter(w))
    assert law.name == name and law.source == "recognised"
    if variance is None:
        variance = 0.02**2 * stats.truncnorm(-2, 2).var()
    mat = w.reshape(shape[0], -1)
    fans = (mat.shape[1], mat.shape[0]) if "orthogonal" in name else None
    fan_in, fan_out = fans or (shape[1], shape[0])
    assert weight_moments(law.scheme, fan_in, fan_out)[1] == pytest.approx(variance, rel=1e-9)
