"""varprop.torch's mapping (issue 12): to_network / trace_model / predict_sites.

Independent truths: the Network a reader writes by hand from PyTorch's documentation (module
defaults: ``kaiming_uniform_(a=sqrt(5))``, i.e. U(+-1/sqrt(fan_in)) weights, and biases
U(+-1/sqrt(fan_in)), variance 1/(3 fan_in)); and a Monte Carlo written here in torch over seeded
re-initialisations of the model (fresh construction = PyTorch's default init), per site the mean
over replicates of the output's and the output gradient's mean square, against the prediction
within 6 standard errors of that mean (plus, where stated, the finite-width bias of the mean-field
rule).  The ReLU-class bivariate closed form at non-zero means is checked against quadrature and a
NumPy Monte Carlo.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from varprop import Network, activation, init_scheme  # noqa: E402
from varprop import layers as L  # noqa: E402
from varprop.errors import InvalidArgument, VarpropError  # noqa: E402
from varprop.network.layers.batchpop import PopulationBatchNorm  # noqa: E402
from varprop.network.layers.measured import Measured  # noqa: E402
from varprop.theory.fields import walk_fields, walk_nested  # noqa: E402
from varprop.torch import MeasuredMoments, audit, predict_sites, to_network, trace_model  # noqa: E402
from varprop.torch.measure import replicate_seeds  # noqa: E402

pytestmark = pytest.mark.interop



DEFAULT = init_scheme("torch:default")


def bias(fan_in: int) -> float:
    return 1.0 / (3.0 * fan_in)  # U(+-1/sqrt(fan_in)): b^2/3


def unit_rows(x):
    """Each sample scaled to mean square 1: varprop's i.i.d. input has one mean square per entry,
    and a norm layer sees each sample's own (16-dim samples would differ by ~35%)."""
    flat = x.reshape(x.shape[0], -1)
    return (flat / flat.pow(2).mean(dim=1, keepdim=True).sqrt()).reshape(x.shape)


def monte_carlo(make, x, names, replicates, seed=0, output=lambda r: r):
    """Per site name: arrays over replicates of mean(y^2) and mean((dL/dy)^2); each replicate is
    a fresh model (PyTorch's default init) with gradients N(0, 1) at the output."""
    fw = {n: [] for n in names}
    bw = {n: [] for n in names}
    for r in range(replicates):
        torch.manual_seed(seed + r)
        model = make()
        mods = dict(model.named_modules())
        seen = {}
        hooks = [mods[n].register_forward_hook(
            lambda m, a, o, n=n, seen=seen: seen.__setitem__(n, o[0] if isinstance(o, tuple)
                                                               else o))
            for n in names]
        out = output(model(x))
        for h in hooks:
            h.remove()
        for t in seen.values():
            t.retain_grad()
        out.backward(torch.randn(out.shape))
        for n in names:
            fw[n].append(float(seen[n].detach().double().pow(2).mean()))
            bw[n].append(float(seen[n].grad.double().pow(2).mean()))
    return {n: np.array(v) for n, v in fw.items()}, {n: np.array(v) for n, v in bw.items()}


def assert_agrees(traced, fw, bw, *, rel=0.0, sigmas=6.0):
    pred = dict(zip([s.name for s in traced.sites], predict_sites(traced)))
    for name in fw:
        for k, values in ((0, fw[name]), (1, bw[name])):
            p = pred[name][k]
            se = values.std(ddof=1) / math.sqrt(values.size)
            assert abs(values.mean() - p) <= sigmas * se + rel * abs(p), (
                name, "forward" if k == 0 else "backward", p, values.mean(), se)


# -- MLP ------------------------------------------------------------------------------------------

def mlp():
    return nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 16))


def test_mlp_is_the_network_written_by_hand():
    torch.manual_seed(0)
    net = to_network(mlp(), torch.randn(4, 32))
    assert list(net.layers.runs[0][0]) == [
        L.Dense(256, DEFAULT, bias(32)), L.Nonlinearity("relu"), L.Dense(256, DEFAULT, bias(256)),
        L.Nonlinearity("relu"), L.Dense(16, DEFAULT, bias(256))]
    assert net.input_shape == (32,)


def test_mlp_prediction_matches_torch_monte_carlo():
    torch.manual_seed(123)
    x = torch.randn(8, 32)
    torch.manual_seed(0)
    traced = trace_model(mlp(), x)
    assert [s.name for s in traced.sites] == ["0", "1", "2", "3", "4"]
    assert traced.sites[0].init_source == "recognised"
    assert traced.batch == 8
    fw, bw = monte_carlo(mlp, x, ["0", "1", "2", "3", "4"], 150)
    assert_agrees(traced, fw, bw)


# -- CNN ------------------------------------------------------------------------------------------

def cnn():
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(32, 32, 3, stride=2, padding=1, bias=False), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def test_cnn_is_the_network_written_by_hand():
    torch.manual_seed(0)
    net = to_network(cnn(), torch.randn(2, 3, 8, 8))
    assert list(net.layers.runs[0][0]) == [
        L.Conv(32, (3, 3), stride=(1, 1), padding=1, init=DEFAULT, bias_variance=bias(27),
               dilation=(1, 1)),
        L.Nonlinearity("relu"), L.AvgPool((2, 2), (2, 2)),
        L.Conv(32, (3, 3), stride=(2, 2), padding=1, init=DEFAULT, dilation=(1, 1)),
        L.Nonlinearity("tanh"), L.GlobalAvgPool(), L.Dense(10, DEFAULT, bias(32))]
    assert net.input_shape == (3, 8, 8)


def test_cnn_prediction_matches_torch_monte_carlo():
    torch.manual_seed(7)
    x = torch.randn(2, 3, 8, 8)
    torch.manual_seed(0)
    traced = trace_model(cnn(), x)
    names = ["0", "1", "2", "3", "4", "5", "7"]
    fw, bw = monte_carlo(cnn, x, names, 120)
    # 32 channels: the Gaussian closure after the pools and tanh is a finite-width approximation
    assert_agrees(traced, fw, bw, rel=0.05)


# -- residual MLPs --------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.a, self.b = nn.Linear(n, n), nn.Linear(n, n)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(x)))


def residual(norm: bool):
    def make():
        mods = [nn.Linear(16, 128)]
        for _ in range(2):
            mods += [Block(128)] + ([nn.LayerNorm(128)] if norm else [])
        return nn.Sequential(*mods)
    return make


@pytest.mark.parametrize("norm", [False, True])
def test_residual_mlp_is_the_network_written_by_hand(norm):
    torch.manual_seed(0)
    net = to_network(residual(norm)(), torch.randn(4, 16))
    block = L.Residual([L.Dense(128, DEFAULT, bias(128)), "relu", L.Dense(128, DEFAULT, bias(128))])
    expected = [L.Dense(128, DEFAULT, bias(16))]
    for _ in range(2):
        expected += [block] + ([L.LayerNorm(1e-5)] if norm else [])
    assert list(net.layers.runs[0][0]) == expected


@pytest.mark.parametrize("norm", [False, True])
def test_residual_mlp_prediction_matches_torch_monte_carlo(norm):
    torch.manual_seed(3)
    x = unit_rows(torch.randn(4, 16))
    torch.manual_seed(0)
    traced = trace_model(residual(norm)(), x)
    sites = {s.name: s for s in traced.sites}
    assert sites["1.add"].kind == "add" and sites["1.add"].path == (1,)
    assert sites["1.a"].path == (1, "branch", 0) and sites["1.relu"].path == (1, "branch", 1)
    names = ["0", "1.a", "1.b", "1", "2", "3", "4"] if norm else ["0", "1.a", "1.b", "1", "2"]
    fw, bw = monte_carlo(residual(norm), x, names, 150)
    for n in ("1", "2") if not norm else ("1", "3"):  # a block's output is its addition
        fw[f"{n}.add"], bw[f"{n}.add"] = fw.pop(n), bw.pop(n)
    assert_agrees(traced, fw, bw, rel=0.03)


# -- RNN ------------------------------------------------------------------------------------------

class RNNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(8, 128, nonlinearity="relu", batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


def test_rnn_maps_to_recurrent_and_matches_monte_carlo():
    torch.manual_seed(0)
    x = torch.randn(4, 5, 8)
    traced = trace_model(RNNModel(), x)
    rnn_default = init_scheme("variance_scaling", scale=1 / 3, mode="fan_out",
                              distribution="uniform")  # U(+-1/sqrt(hidden)) for every matrix
    assert list(traced.network.layers.runs[0][0]) == [
        L.Recurrent(128, "relu", steps=5, init=rnn_default, input_init=rnn_default,
                    bias_variance=2 * bias(128))]
    fw, bw = monte_carlo(RNNModel, x, ["rnn"], 150, output=lambda r: r)
    assert_agrees(traced, fw, bw, rel=0.03)


# -- errors, measured modules, Hugging Face models ------------------------------------------------

class Attention(nn.Module):
    def forward(self, x):
        return torch.softmax(x @ x.transpose(-1, -2), dim=-1) @ x


def test_unsupported_raises_naming_the_module_or_is_measured():
    model = nn.Sequential(nn.Linear(8, 8), Attention(), nn.Linear(8, 4))
    x = torch.randn(3, 8)
    with pytest.raises(VarpropError, match=r"1 \(Attention\).*unsupported='measure'"):
        to_network(model, x)
    traced = trace_model(model, x, unsupported="measure")
    site = {s.name: s for s in traced.sites}["1"]
    assert site.measured and site.kind == "Attention"
    given = MeasuredMoments(second=2.0, mean=0.5, gradient_gain=3.0)
    traced = trace_model(model, x, unsupported="measure", measured={"1": given})
    assert traced.network.layers.runs[0][0][1] == Measured((8,), given, name="1")
    fields = walk_fields(traced.network)
    assert fields.forward[1].average_second() == 2.0
    assert fields.backward[0].average_second() == pytest.approx(
        3.0 * fields.backward[1].average_second())  # the gain, input over output


def test_bad_arguments():
    with pytest.raises(InvalidArgument, match="measure"):
        trace_model(nn.Linear(2, 2), torch.randn(2, 2), unsupported="measured")
    with pytest.raises(TypeError):
        trace_model("model", torch.randn(2, 2))
    with pytest.raises(TypeError):
        trace_model(nn.Linear(2, 2), [[1.0, 2.0]])


def test_maxpool_padding_windows_repeat_a_real_position():
    pool = L.MaxPool(3, 2, 1)
    assert pool.output_shape((4, 8, 8)) == (4, 4, 4)
    win = pool.windows((4, 8, 8))
    assert (win.taps >= 0).all()
    # the corner window reads rows/cols {-1, 0, 1}: its real positions are (0,0),(0,1),(1,0),(1,1)
    assert set(win.taps[0]) == {0, 1, 8, 9}
    with pytest.raises(InvalidArgument, match="half the kernel"):
        L.MaxPool(2, 2, 2).output_shape((1, 8, 8))


def test_maxpool_padding_prediction_matches_numpy_monte_carlo():
    net = Network([L.MaxPool(3, 2, 1)], input_shape=(1, 5, 5))
    pred = walk_fields(net).forward[0].second
    rng = np.random.default_rng(0)
    x = np.pad(rng.standard_normal((100_000, 5, 5)), ((0, 0), (1, 1), (1, 1)),
               constant_values=-np.inf)
    y = np.array([[x[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(1, 2)) for j in range(3)]
                  for i in range(3)])  # (3, 3, samples): padding never wins a window
    mc = (y * y).mean(axis=-1)
    se = (y * y).std(axis=-1) / math.sqrt(y.shape[-1])
    assert np.all(np.abs(mc - pred) <= 6 * se + 1e-3 * pred)


def test_shifted_relu_pairs_match_quadrature_and_monte_carlo():
    from varprop._math import bivariate
    from varprop._math.shifted_relu import relu_class_shifted
    rng = np.random.default_rng(1)
    n = 50
    m1, m2 = rng.normal(size=n), rng.normal(size=n)
    m1[:5] = 0.0
    a, b = rng.uniform(0.1, 3, n), rng.uniform(0.1, 3, n)
    c = rng.uniform(-0.99, 0.99, n) * np.sqrt(a * b)
    for alpha, beta in ((1.0, 0.0), (1.0, 0.2)):
        def f(x, alpha=alpha, beta=beta):
            return np.where(x > 0, alpha * x, beta * x)

        def d(x, alpha=alpha, beta=beta):
            return np.where(x > 0, alpha, beta) * np.ones_like(x)

        quad = bivariate.by_quadrature(f, d, (0.0,), m1, m2, a, b, c)
        closed = relu_class_shifted(alpha, beta, m1, m2, a, b, c)
        assert np.allclose(closed[0], quad[0], atol=1e-12)
        assert np.allclose(closed[1], quad[1], atol=1e-12)
    z = rng.standard_normal((2, 400_000))
    chol = np.linalg.cholesky([[a[7], c[7]], [c[7], b[7]]])
    x, y = chol @ z + np.array([[m1[7]], [m2[7]]])
    prod = np.maximum(x, 0) * np.maximum(y, 0)
    got = relu_class_shifted(1.0, 0.0, m1[7:8], m2[7:8], a[7:8], b[7:8], c[7:8])[0][0]
    assert abs(prod.mean() - got) <= 6 * prod.std() / math.sqrt(prod.size)


def test_walk_nested_top_level_is_walk_fields_and_branch_gets_scaled_gradient():
    net = Network([L.Dense(32), L.Residual([L.Dense(32), "relu", L.Dense(32)], scale=0.5,
                                           shortcut=[L.Dense(32)]), "tanh"], input_shape=(16,))
    nested = walk_nested(net)
    fp = walk_fields(net)
    for p in range(3):
        assert nested[(p,)][0] is fp.forward[p] and nested[(p,)][1] is fp.backward[p]
    g_block = fp.backward[1].average_second()
    assert nested[(1, "branch", 2)][1].average_second() == pytest.approx(0.25 * g_block)
    assert nested[(1, "shortcut", 0)][1].average_second() == pytest.approx(g_block)
    # forward: the block's output second moment is the shortcut's plus s^2 times the branch's
    q = (nested[(1, "shortcut", 0)][0].average_second()
         + 0.25 * nested[(1, "branch", 2)][0].average_second())
    assert fp.forward[1].average_second() == pytest.approx(q)


def test_population_batchnorm_matches_torch_train_mode_batchnorm():
    """Large batch x positions: the population approximation against torch's own train-mode
    BatchNorm2d after a random convolution (relative error within 2% = the O(1/N) term plus
    6 standard errors)."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 16)
    make = lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=True),  # noqa: E731
                                 nn.BatchNorm2d(16), nn.ReLU())
    traced = trace_model(make(), x)
    assert isinstance(traced.network.layers.runs[0][0][1], PopulationBatchNorm)
    assert "population" in traced.sites[1].note
    fw, bw = monte_carlo(make, x, ["0", "1", "2"], 40)
    assert_agrees(traced, fw, bw, rel=0.02)


transformers = pytest.importorskip("transformers")


def resnet18():
    cfg = transformers.ResNetConfig(depths=[2, 2, 2, 2], layer_type="basic",
                                    hidden_sizes=[64, 128, 256, 512])
    return transformers.ResNetModel(cfg)


@pytest.mark.parametrize("train", [False, True])
def test_resnet18_maps_without_unsupported_modules(train):
    torch.manual_seed(0)
    model = resnet18().train(train)
    traced = trace_model(model, torch.randn(2, 3, 64, 64))
    layers = list(traced.network.layers.runs[0][0])
    assert not any(s.measured for s in traced.sites)
    blocks = [x for x in layers if isinstance(x, L.Residual)]
    assert len(blocks) == 8 and sum(b.shortcut is not None for b in blocks) == 3
    assert layers[3] == L.MaxPool((3, 3), (2, 2), (1, 1))
    assert traced.network.output_shape == (512, 2, 2)
    convs = [s for s in traced.sites if s.kind == "Conv2d"]
    assert len(convs) == 20 and all(s.init == "he_normal(fan_out)" for s in convs)
    bn = layers[1]
    if train:
        assert isinstance(bn, PopulationBatchNorm)  # 2 x 32 x 32 entries per channel
        assert isinstance(blocks[-1].branch[1], L.BatchNorm)  # 2 x 2 x 2: exact
    else:
        assert bn == L.BatchNorm(1e-5, mode="eval")


def small(kind):
    if kind == "bert":
        cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=128, vocab_size=100,
                                      max_position_embeddings=32)
        return transformers.BertModel(cfg), "embeddings (BertEmbeddings)"
    cfg = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=100, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2Model(cfg), "wte (Embedding)"


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_transformers_with_measured_attention(kind):
    torch.manual_seed(0)
    model, first = small(kind)
    x = torch.randint(0, 100, (2, 8))
    with pytest.raises(VarpropError, match=re.escape(first)):
        to_network(model, x)
    traced = trace_model(model, x, unsupported="measure")
    sites = {s.name: s for s in traced.sites}
    attention = "encoder.layer.0.attention.self" if kind == "bert" else "h.0.attn"
    assert sites[attention].measured and sites[attention].path is not None
    assert traced.sites[0].path == () and traced.sites[0].measured
    assert traced.network.input_shape == (8, 64)
    assert all(p is not None for pair in predict_sites(traced) for p in pair)


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        h = self.b(torch.relu(self.a(x)))
        h += x  # as Hugging Face's ResNet adds its shortcut
        return h


def test_site_tensors_snapshot_values_before_in_place_changes():
    torch.manual_seed(0)
    model, x = InPlace(), torch.randn(3, 8)
    traced = trace_model(model, x)
    assert [s.kind for s in traced.sites] == ["Linear", "relu", "Linear", "add"]
    ret, tensors = traced.site_tensors(model, x)
    _, values = traced.site_tensors(model, x, snapshot=True)
    expected_b = model.b(torch.relu(model.a(x))).detach()
    assert torch.equal(values["b"], expected_b)
    assert torch.equal(tensors["b"], ret)  # the same tensor object, changed by the +=
    assert torch.equal(values["add"], ret.detach())


def _bn_eval_shifted():
    bn = nn.BatchNorm1d(4).eval()
    bn.running_mean.fill_(0.5)
    bn.running_var.fill_(4.0)
    return bn


def _bn_scaled():
    bn = nn.BatchNorm1d(4).eval()
    with torch.no_grad():
        bn.weight.fill_(2.0)
    return bn


@pytest.mark.parametrize("module, in_shape, out_shape, expected", [
    (nn.LeakyReLU(0.2), (4,), (4,), [L.Nonlinearity(activation("leaky_relu", negative_slope=0.2))]),
    (nn.GELU(approximate="tanh"), (4,), (4,), [L.Nonlinearity("gelu_tanh")]),
    (nn.Softplus(beta=2.0), (4,), (4,), [L.Nonlinearity(activation("softplus", beta=2.0))]),
    (nn.ELU(alpha=0.5), (4,), (4,), [L.Nonlinearity(activation("elu", alpha=0.5))]),
    (nn.Identity(), (4,), (4,), []),
    (nn.Dropout(0.3).eval(), (4,), (4,), [L.Dropout(0.3, mode="eval")]),
    (nn.Dropout(0.3), (4,), (4,), [L.Dropout(0.3, mode="train")]),
    (nn.BatchNorm1d(4).eval(), (4,), (4,), [L.BatchNorm(1e-5, mode="eval")]),
    # eval with running statistics (mean 0.5, variance 4): the affine map (x - 0.5)/sqrt(4 + eps)
    (_bn_eval_shifted(), (4,), (4,),
     [L.Nonlinearity(f"{1 / math.sqrt(4 + 1e-5)!r}*x + {-0.5 / math.sqrt(4 + 1e-5)!r}")]),
    (_bn_scaled(), (4,), (4,), [L.BatchNorm(1e-5, mode="eval"), L.Nonlinearity("2.0*x + 0.0")]),
    (nn.AdaptiveAvgPool2d(2), (3, 4, 4), (3, 2, 2), [L.AvgPool((2, 2))]),
    (nn.MaxPool2d(3, 2, padding=1), (3, 8, 8), (3, 4, 4), [L.MaxPool((3, 3), (2, 2), (1, 1))]),
])
def test_module_mappings(module, in_shape, out_shape, expected):
    from varprop.torch.modules import map_module
    assert list(map_module(module, in_shape, out_shape, batch=4).layers) == expected


def test_refused_modules_say_why():
    from varprop.torch.modules import Unsupported, map_module
    bn = nn.BatchNorm1d(4).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(Unsupported, match="differs between channels"):
        map_module(bn, (4,), (4,), batch=2)
    with pytest.raises(Unsupported, match="vectors"):
        map_module(nn.Linear(4, 4), (3, 4), (3, 4), batch=2)
    with pytest.raises(Unsupported, match="one-layer"):
        map_module(nn.RNN(4, 4, num_layers=2, batch_first=True), (3, 4), (3, 4), batch=2)
    with pytest.raises(Unsupported, match="exact average pool"):
        map_module(nn.AdaptiveAvgPool2d(3), (2, 4, 4), (2, 3, 3), batch=2)


def test_tracing_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), Attention())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace_model(model, torch.randn(4, 3, 6, 6), unsupported="measure")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats included
    assert all(p.grad is None for p in model.parameters()) and model.training


class _InplaceBlock(nn.Module):
    """torchvision's BasicBlock pattern: ``out += x`` then an in-place ReLU."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.l1, self.relu, self.l2 = nn.Linear(n, n), nn.ReLU(inplace=True), nn.Linear(n, n)

    def forward(self, x):  # noqa: ANN001, ANN201
        out = self.l2(self.relu(self.l1(x)))
        out += x
        return self.relu(out)


def test_audit_reads_sites_before_later_in_place_changes() -> None:
    # The add and its gradient as produced, computed here without varprop: the same replicate
    # seeds and reset_parameters, out-of-place torch (the ReLU after the add is the next site).
    model = nn.Sequential(nn.Linear(8, 16), _InplaceBlock(16))
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    rep = audit(model, x, replicates=4, seed=3)
    row = next(r for r in rep.rows if r.kind == "add")
    fwd = []
    for s in replicate_seeds(3, 4):
        torch.manual_seed(s)
        for m in model.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        with torch.no_grad():
            h = model[0](x)
            b = model[1]
            add = b.l2(torch.relu(b.l1(h))) + h
        fwd.append(float((add.double() ** 2).mean()))
    assert row.forward.measured == pytest.approx(np.mean(fwd), rel=1e-6)
    relu_row = next(r for r in rep.rows if r.name == "1.relu (call 2)")
    assert relu_row.forward.measured < 0.75 * row.forward.measured  # the ReLU's is not the add's
    # gradient of the add = that of the ReLU's output times 1[add > 0]: E g_add^2 is about half
    assert row.backward.measured == pytest.approx(relu_row.backward.measured / 2, rel=0.35)


class _Shared(nn.Module):
    """``fc`` called twice next to a module named ``fc_1``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.fc_1, self.act = nn.Linear(8, 8), nn.Linear(8, 8), nn.Tanh()

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.fc_1(self.act(self.fc(self.act(self.fc(x)))))


def test_repeated_module_calls_get_unique_names_and_their_own_values() -> None:
    model = _Shared()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    names = [s.name for s in trace_model(model, x).sites]
    assert names == ["fc", "act", "fc (call 2)", "act (call 2)", "fc_1"]
    rep = audit(model, x, replicates=4, seed=5)
    want = {"fc (call 2)": [], "fc_1": []}
    for s in replicate_seeds(5, 4):
        torch.manual_seed(s)
        for m in model.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        with torch.no_grad():
            second = model.fc(torch.tanh(model.fc(x)))
            last = model.fc_1(torch.tanh(second))
        want["fc (call 2)"].append(float((second.double() ** 2).mean()))
        want["fc_1"].append(float((last.double() ** 2).mean()))
    got = {r.name: r.forward.measured for r in rep.rows}
    for name, values in want.items():
        assert got[name] == pytest.approx(np.mean(values), rel=1e-6)
