"""varprop.torch.audit (issue 12): predictions against re-initialisations, verdicts, restore.

Independent truth: the predictions of hand-built MLPs are checked against formulas written here
from PyTorch's documented defaults (``nn.Linear``: weights and bias
:math:`U[\\pm 1/\\sqrt{\\text{fan\\_in}}]`, variance :math:`1/(3\\,\\text{fan\\_in})`), not from
varprop: a layer's mean square is :math:`E y^2 = \\frac{1}{3} \\overline{x^2} + \\frac{1}{3
\\text{fan\\_in}}` given its input's mean square :math:`\\overline{x^2}` (averaged over all
entries), ReLU halves it (symmetric pre-activations); backward, a Linear multiplies the gradient
second moment by :math:`\\text{fan\\_out}/(3\\,\\text{fan\\_in})`, a ReLU halves it.  Every test is
seeded; the audits' verdicts are deterministic functions of their seeds.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from varprop.errors import (
    InvalidArgument,
    InvalidArgumentType,
    VarpropError,
    VarpropWarning,
)
from varprop.torch import AuditReport, audit
from varprop.torch import audit as audit_fn
from varprop.torch.report import STATUSES

pytestmark = pytest.mark.interop



audit_module = __import__("varprop.torch.audit", fromlist=["audit"])


def _mlp(n0: int = 64, n: int = 256, out: int = 128) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n0, n), torch.nn.ReLU(), torch.nn.Linear(n, n),
                               torch.nn.ReLU(), torch.nn.Linear(n, out))


def _hand(x: torch.Tensor, widths: list[int]) -> tuple[list[float], list[float]]:
    """Forward and backward second moments of Linear/ReLU/Linear/ReLU/Linear by hand."""
    q = float((x.double() ** 2).mean())
    fwd = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        q = q / 3 + 1 / (3 * a)
        fwd.append(q)
        if i < len(widths) - 2:
            q /= 2
            fwd.append(q)
    g = 1.0
    bwd = [g]
    for a, b in reversed(list(zip(widths[1:-1], widths[2:]))):
        g *= b / (3 * a)  # through the Linear above: gradient at the ReLU output
        bwd.append(g)
        g /= 2  # through the ReLU: gradient at the Linear output
        bwd.append(g)
    return fwd, bwd[::-1]


def test_mlp_predictions_match_hand_formulas_and_are_confirmed() -> None:
    model = _mlp()
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    report = audit(model, x, replicates=32, seed=0)
    fwd, bwd = _hand(x, [64, 256, 256, 128])
    assert [r.name for r in report.rows] == ["0", "1", "2", "3", "4"]
    assert [r.kind for r in report.rows] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert report.rows[0].shape == (256,)
    assert [r.predicted for r in report.rows] == pytest.approx(fwd, rel=1e-9)
    assert [r.backward.predicted for r in report.rows] == pytest.approx(bwd, rel=1e-9)
    for r in report.rows:
        assert r.status == "confirmed", (r.name, r.reason)
        assert r.forward.status == r.status and r.measured == r.forward.measured
        assert r.interval[0] <= r.measured <= r.interval[1]
        assert r.backward.status in ("confirmed", "inconclusive"), r.backward.reason
    assert not report.refuted
    assert report.tests == 10 and report.alpha == 0.01


def _own_mc(model: torch.nn.Module, x: torch.Tensor, reps: int) -> np.ndarray:
    """Mean square of the first Linear's output over fresh default inits (plain torch)."""
    out = []
    lin = model[0]
    g = torch.Generator().manual_seed(99)
    for _ in range(reps):
        bound = 1 / np.sqrt(lin.in_features)
        w = (torch.rand(lin.weight.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound
        b = (torch.rand(lin.bias.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound
        out.append(float(((x.double() @ w.T + b) ** 2).mean()))
    return np.asarray(out)


def test_measured_values_agree_with_an_independent_monte_carlo() -> None:
    model = _mlp(32, 256, 64)
    x = torch.randn(32, 32, generator=torch.Generator().manual_seed(2))
    report = audit(model, x, replicates=16, seed=3, backward=False)
    mine = _own_mc(model, x, 200)
    se = np.sqrt(np.var(mine) / 200 + np.var(mine) / 16)  # same law, 200 and 16 draws
    assert abs(report.rows[0].measured - mine.mean()) < 6 * se
    assert all(r.backward.status == "not run" for r in report.rows)


def test_a_mispredicted_layer_is_refuted(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _mlp(32, 256, 64)
    real = audit_module.trace_model

    def trace_then_double(m, *args, **kwargs):  # the init changes after tracing
        traced = real(m, *args, **kwargs)
        reset = m[2].reset_parameters

        def doubled() -> None:
            reset()
            with torch.no_grad():
                m[2].weight.mul_(2.0)

        monkeypatch.setattr(m[2], "reset_parameters", doubled)
        return traced

    monkeypatch.setattr(audit_module, "trace_model", trace_then_double)
    report = audit(model, torch.randn(32, 32), replicates=16, seed=0)
    assert report.rows[0].status == "confirmed"
    assert report.rows[2].status == "refuted", report.rows[2].reason  # ~4x the prediction
    assert report.rows[2] in report.refuted
    assert "REFUTED" in report.to_markdown()


def _state(model: torch.nn.Module) -> dict:
    return {"params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
            "grads": {n: None if p.grad is None else p.grad.clone()
                      for n, p in model.named_parameters()},
            "flags": {n: p.requires_grad for n, p in model.named_parameters()},
            "modes": {n: m.training for n, m in model.named_modules()}}


def _assert_same(model: torch.nn.Module, before: dict) -> None:
    after = _state(model)
    for key in ("params", "buffers"):
        for name, value in before[key].items():
            assert torch.equal(after[key][name], value), name  # bit for bit
    for name, g in before["grads"].items():
        assert (after["grads"][name] is None) == (g is None), name
        if g is not None:
            assert torch.equal(after["grads"][name], g)
    assert after["flags"] == before["flags"] and after["modes"] == before["modes"]
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def _restorable() -> torch.nn.Module:
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    model[0].weight.grad = torch.full_like(model[0].weight, 0.5)  # a gradient left by the user
    model[2].bias.requires_grad_(False)
    model[1].eval()  # mixed training modes
    return model


def test_the_model_is_left_exactly_as_it_was() -> None:
    model = _restorable()
    before = _state(model)
    x = torch.randn(8, 16)
    rng = torch.get_rng_state()
    audit(model, x, replicates=4)
    _assert_same(model, before)
    assert torch.equal(torch.get_rng_state(), rng)  # torch's global stream untouched


def test_restored_also_when_the_audit_fails() -> None:
    model = _restorable()
    before = _state(model)
    calls = []

    def failing(m: torch.nn.Module) -> None:
        calls.append(1)
        for mod in m.modules():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
        if len(calls) == 3:
            raise RuntimeError("reinit broke")

    with pytest.raises(VarpropError, match="reinit.model. raised RuntimeError: reinit broke"):
        audit(model, torch.randn(8, 16), replicates=8, reinit=failing)
    _assert_same(model, before)

    def key_error(m: torch.nn.Module) -> None:
        raise KeyError("weight")

    with pytest.raises(VarpropError, match="reinit.model. raised KeyError"):
        audit(model, torch.randn(8, 16), replicates=4, reinit=key_error)
    _assert_same(model, before)
    with pytest.raises(VarpropError, match=r"shape \(8, 15\)"):
        audit(model, torch.randn(8, 15), replicates=4)
    _assert_same(model, before)


def test_a_reinit_that_replaces_parameters_and_adds_hooks_is_undone() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    objects = [(m, dict(m._parameters), dict(m._buffers)) for m in model.modules()]
    values = [p.detach().clone() for p in model.parameters()]

    def replacing(m: torch.nn.Module) -> None:
        setattr(m[0], "weight", torch.nn.Parameter(torch.randn(32, 16) / 4))
        m[2].reset_parameters()
        m[2].register_buffer("extra", torch.zeros(1))
        m[2].register_forward_hook(lambda *a: None)

    audit(model, torch.randn(8, 16), replicates=4, reinit=replacing)
    for m, params, buffers in objects:  # the very same objects, nothing added
        assert dict(m._parameters).keys() == params.keys()
        assert all(m._parameters[k] is v for k, v in params.items())
        assert dict(m._buffers) == buffers
        assert not m._forward_hooks
    assert all(torch.equal(p, v) for p, v in zip(model.parameters(), values))


def test_same_seed_same_report_and_json_round_trip() -> None:
    model = _mlp(16, 64, 8)
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    a = audit(model, x, replicates=8, seed=7)
    b = audit(model, x, replicates=8, seed=7)
    c = audit(model, x, replicates=8, seed=8)
    assert a == b  # timings excluded from the comparison
    da, db = a.to_dict(), b.to_dict()
    da.pop("timings"), db.pop("timings")
    assert da == db
    assert [r.measured for r in a.rows] != [r.measured for r in c.rows]
    text = a.to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    assert AuditReport.from_json(text) == a
    with pytest.raises(VarpropError, match="format"):
        AuditReport.from_json("{}")


def test_markdown_table_and_statuses() -> None:
    report = audit(_mlp(16, 64, 8), torch.randn(8, 16), replicates=8)
    md = report.to_markdown()
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(report.rows)  # header + one row per site
    assert "forward measured [interval]" in lines[0] and "`0`" in lines[1]
    assert set(report.counts()) == set(STATUSES)


def test_growth_warning_names_first_and_last_site() -> None:
    torch.manual_seed(0)  # default init: each Linear(64, 64) multiplies E y^2 by ~1/3
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64, bias=False) for _ in range(4)])
    report = audit(model, torch.randn(16, 64), replicates=8, backward=False)
    # 3^3 = 27x between the first and the last of the four sites
    text = " ".join(report.warnings)
    assert "shrinks 27x from the first site `0`" in text and "the last `3`" in text


def test_a_different_init_law_is_warned_about() -> None:
    model = _mlp(16, 64, 8)
    with torch.no_grad():
        model[2].weight.mul_(3.0)  # variance 9x what reset_parameters draws
    with pytest.warns(VarpropWarning, match="reinit="):
        report = audit(model, torch.randn(8, 16), replicates=4)
    assert any("`2.weight`" in w for w in report.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("error", VarpropWarning)
        audit(_mlp(16, 64, 8), torch.randn(8, 16), replicates=4)  # default init: no warning


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(replicates=0), InvalidArgument, "replicates"),
    (dict(replicates=True), InvalidArgumentType, "replicates"),
    (dict(replicates=2.0), InvalidArgumentType, "replicates"),
    (dict(replicates=10**9), InvalidArgument, "replicates"),
    (dict(seed=-1), InvalidArgument, "seed"),
    (dict(reinit=3), InvalidArgumentType, "reinit"),
    (dict(backward="yes"), InvalidArgumentType, "backward"),
    (dict(unsupported="mesure"), InvalidArgument, "did you mean 'measure'"),
])
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        audit(_mlp(16, 64, 8), torch.randn(8, 16), **kwargs)


def test_bad_model_and_input() -> None:
    with pytest.raises(InvalidArgumentType, match="model"):
        audit_fn(lambda x: x, torch.randn(8, 16))
    with pytest.raises(InvalidArgumentType, match="example_input"):
        audit_fn(_mlp(16, 64, 8), [[0.0] * 16])
    with pytest.raises(InvalidArgument, match="example_input=.*empty tensor.*non-empty batch"):
        audit_fn(_mlp(16, 64, 8), torch.zeros(0, 16))
    x = torch.randn(8, 16)
    x[3, 2] = float("nan")
    with pytest.raises(InvalidArgument, match="example_input=.*1 non-finite"):
        audit_fn(_mlp(16, 64, 8), x)


def test_report_errors_are_varprops(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    report = audit(_mlp(16, 64, 8), torch.randn(8, 16), replicates=4, backward=False)
    for text in ("{", "[]", '{"format": "varprop.audit/1"}'):
        with pytest.raises(VarpropError, match="not .*audit report"):
            AuditReport.from_json(text)
    with pytest.raises(InvalidArgument, match="existing folder"):
        report.plot(tmp_path / "missing" / "a.png")
    with pytest.raises(InvalidArgument, match="ending in one of"):
        report.plot(tmp_path / "a.xyz")
    fig = report.plot()  # backward=False: the forward panel only, integer site ticks
    assert len(fig.axes) == 1
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)


def test_plot_writes_a_reproducible_svg(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    report = audit(_mlp(16, 64, 8), torch.randn(8, 16), replicates=4)
    a, b = report.plot(tmp_path / "a.svg"), report.plot(tmp_path / "b.svg")
    assert a.read_text() == b.read_text() and "<svg" in a.read_text()
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(VarpropError, match="matplotlib"):
        report.plot()


# -- real architectures this project did not write (transformers, built from configs) ----------

def _hf_init(m: torch.nn.Module) -> None:
    m.apply(m._init_weights)


@pytest.mark.slow
def test_resnet18_audit_in_eval_mode() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.ResNetConfig(depths=[2, 2, 2, 2], layer_type="basic",
                                    hidden_sizes=[64, 128, 256, 512])
    model = transformers.ResNetModel(cfg).eval()
    before = _state(model)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.warns(VarpropWarning, match="_init_weights"):  # HF's init is not PyTorch's
        report = audit(model, x, replicates=4, seed=0)
    _assert_same(model, before)
    kinds = [r.kind for r in report.rows]
    assert kinds.count("add") == 8 and kinds.count("Conv2d") == 20
    assert report.rows[0].name == "embedder.embedder.convolution"
    assert report.rows[-1].name == "encoder.stages.3.layers.1.activation"
    assert all(r.status in ("confirmed", "inconclusive") for r in report.rows), \
        [(r.name, r.reason) for r in report.rows if r.status == "refuted"]
    assert all(r.backward.measured is not None for r in report.rows)
    # the first convolution's forward prediction is exact (PyTorch's default conv init, fixed
    # input): its allowance is the float32 floor only
    assert report.rows[0].forward.tol == pytest.approx(1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_bert_and_gpt2_with_measured_attention(arch: str) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if arch == "bert":
        model = transformers.BertModel(transformers.BertConfig(
            vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=128, max_position_embeddings=32), add_pooling_layer=False)
        attention = "BertSelfAttention"
    else:
        model = transformers.GPT2Model(transformers.GPT2Config(
            vocab_size=100, n_embd=64, n_layer=2, n_head=2, n_positions=32))
        attention = "GPT2Attention"
    tokens = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(1))
    with pytest.raises(VarpropError, match="unsupported='measure'"):
        audit(model, tokens, replicates=4, reinit=_hf_init)
    before = _state(model)
    report = audit(model, tokens, replicates=8, reinit=_hf_init, unsupported="measure")
    _assert_same(model, before)
    measured = [r for r in report.rows if r.status == "measured"]
    assert any(r.kind == attention for r in measured)
    assert all(r.backward.status == "measured" for r in measured)
    predicted = [r for r in report.rows if r.status not in ("measured",)]
    assert predicted and not report.refuted, [r.backward.reason for r in report.refuted]
    assert report.rows[-1].backward.predicted == pytest.approx(1.0)  # the unit seed


def test_the_audit_page_is_generated_from_the_committed_reports() -> None:
    """docs/audit.md's resnet18 part is exactly what benchmarks/audit_resnet18.py renders from
    the committed JSON reports (regenerate: ``python benchmarks/audit_resnet18.py
    --render-only``; re-measure: ``--write-docs``)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "audit_resnet18.py"
    spec = importlib.util.spec_from_file_location("audit_resnet18", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    modes = [m for m in ("eval", "train") if (bench.FIGURES / f"audit_resnet18_{m}.json").exists()]
    assert modes
    assert bench.render_page(*bench.load_reports(modes)) == bench.generated_part()


def test_tensor_law_is_streamed_and_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    values = 1e3 + 0.01 * rng.standard_normal(1001)  # large mean: a naive sum of squares cancels
    monkeypatch.setattr(audit_module, "CHUNK", 64)  # 16 chunks, the last one short
    n, mean, var = audit_module.tensor_law(torch.tensor(values, dtype=torch.float64))
    assert n == 1001
    assert mean == pytest.approx(np.mean(values), rel=1e-14)
    assert var == pytest.approx(np.var(values), rel=1e-9)
    assert audit_module.tensor_law(torch.full((3, 5), 0.25)) == (15, 0.25, 0.0)
