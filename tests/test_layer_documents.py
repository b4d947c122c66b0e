"""The layer documents (``derivations/layers/<kind>.md``) and the worked-architectures page.

What is checked: the documents generate; every number a claim prints equals the prediction
recomputed here (``predict_variance`` per layer, or a hand derivation); the hand-derived closed
forms the documents quote are right (independent numpy Monte Carlo, seeded, tolerances in
standard errors); every verdict row's status follows from its own numbers (the checker's
decision rule re-applied to the row).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from varprop import Network, predict_fields, predict_variance
from varprop.documents import arch_cases, architectures, layer_cases, netrows
from varprop.documents import layers as layer_docs
from varprop.documents.store import MonteCarloStore, budget, fmt
from varprop.network import layers as L

QUICK = budget("quick")


def _mlp(L_, _=None):
    return Network([L_.Dense(16, init="he_normal"), L_.Nonlinearity("relu")] * 2,
                   input_shape=(16,))


def _dense_topic():
    case = layer_cases.Case("relu", "Dense-ReLU x 2, He", lambda L_: _mlp(L_),
                            closed_form=lambda: 1.0, closed_text="$1$")
    grad = layer_cases.Case("relu-grad", "gradient", lambda L_: _mlp(L_),
                            quantity="output_gradient", layer=1)
    return layer_cases.LayerTopic(("Dense",), "Dense (test)", "computes", "assumes", "source",
                                  (case, grad))


# ----------------------------------------------------------------------------------------------
# the decision rule re-applied to a row
# ----------------------------------------------------------------------------------------------

def _rec(status, lo, hi, rtol=0.05, tol=0.0):
    return {"status": status, "r_low": lo, "r_high": hi, "rtol": rtol, "tol": tol,
            "estimate": 1.0, "low": 0.9, "high": 1.1, "replicates": 64}


@pytest.mark.parametrize("rec, agrees", [
    (_rec("confirmed", -0.02, 0.03), True),
    (_rec("confirmed", -0.02, 0.08), False),          # not inside +-rtol
    (_rec("confirmed", -0.1, 0.15, tol=0.2), True),   # within a declared allowance
    (_rec("refuted", 0.06, 0.2), True),
    (_rec("refuted", -0.01, 0.2), False),             # not wholly outside +-tol
    (_rec("inconclusive", -0.01, 0.2), True),
    (_rec("inconclusive", 0.06, 0.2), False),         # that interval refutes
    ({"status": "error", "message": "x"}, True),
    (dict(_rec("inconclusive", 0.06, 0.2), reason="heavy-tailed: ..."), True),  # guard
    (dict(_rec("refuted", 0.06, 0.2), reason="heavy-tailed: ..."), False),
])
def test_status_agreement_rule(rec, agrees):
    assert netrows.status_agrees(rec) is agrees


# ----------------------------------------------------------------------------------------------
# layer documents: the machinery on a topic every version has (Dense / Nonlinearity)
# ----------------------------------------------------------------------------------------------

def test_layer_document_numbers_and_verdicts(monkeypatch):
    topic = _dense_topic()
    monkeypatch.setattr(layer_docs, "available_topics", lambda module: [(topic, L.Dense)])
    store = MonteCarloStore(budget_name="quick")
    (file, kind, title), = layer_docs.layer_documents(store, QUICK)
    assert file.path == "layers/dense.md" and kind == "dense" and title == "Dense (test)"
    text = file.content
    # independent prediction: He + ReLU keeps E z^2 = 2 q0 at Dense outputs, q0 at ReLU outputs
    # (hand derivation: E relu(z)^2 = E z^2 / 2); the backward gradient at position 1 is 1/2
    assert "$E y_{4}^2$ = 1; closed form $1$ = 1" in text
    assert "$E(\\partial\\mathcal L/\\partial y_{1})^2$ = 0.5" in text
    rows = re.findall(r"^\| (Dense-ReLU x 2, He|gradient) \|.*$", text, flags=re.MULTILINE)
    assert len(rows) == 2
    for key, rec in store.records.items():
        assert key.startswith("layers/dense/")
        assert rec["status"] in ("confirmed", "refuted", "inconclusive")
        assert netrows.status_agrees(rec), rec
        assert f"**{rec['status']}**" in text
        assert fmt(rec["estimate"]) in text
    # deterministic: the same store renders the same text
    again = layer_docs.layer_documents(MonteCarloStore(store.records, frozen=True,
                                                       budget_name="quick"), QUICK)
    assert again[0][0].content == text


def test_every_topic_has_cases_with_valid_quantities():
    kinds = set()
    for topic in layer_cases.LAYER_TOPICS:
        assert topic.cases and topic.computes and topic.assumptions and topic.source
        kinds.add(topic.classes[0])
        for case in topic.cases:
            assert case.quantity in ("output", "output_gradient")
            assert (case.closed_form is None) == (case.closed_text == "")
    assert {"Residual", "LayerNorm", "RMSNorm", "Dropout", "Conv", "AvgPool", "MaxPool",
            "GlobalAvgPool", "BatchNorm", "Recurrent"} <= kinds


def _available():
    return [(t, c) for t, c in layer_cases.available_topics(L)]


@pytest.mark.parametrize("topic", [t for t, _ in _available()], ids=lambda t: t.classes[0])
def test_landed_layers_claims_equal_predictions_and_closed_forms(topic):
    """For every layer type this version has: each row's claim is predict_variance at its
    position, and where the document quotes a hand-derived closed form the engine agrees."""
    for case in topic.cases:
        net = case.build(L)
        pos = case.position(net)
        values = np.asarray(predict_variance(net, quantity=case.quantity, per_layer=True))
        assert 1 <= pos <= net.depth
        if case.closed_form is not None:
            assert values[pos - 1] == pytest.approx(case.closed_form(), rel=1e-6), case.key


# ----------------------------------------------------------------------------------------------
# the closed forms the documents quote, against independent numpy Monte Carlo
# ----------------------------------------------------------------------------------------------

def test_closed_forms_by_independent_monte_carlo():
    rng = np.random.default_rng(20261204)
    n, R = 32, 4000
    # residual x + s W relu(x), He: E y^2 = (1 + s^2) E x^2 per block (x ~ N(0, 1) here)
    s = 0.5
    x = rng.standard_normal((R, n))
    W = rng.standard_normal((R, n, n)) * math.sqrt(2.0 / n)
    y = x + s * np.einsum("rij,rj->ri", W, np.maximum(x, 0.0))
    stat = (y ** 2).mean(axis=1)
    assert abs(stat.mean() - (1 + s * s)) < 6 * stat.std(ddof=1) / math.sqrt(R)
    # inverted dropout: E y^2 = E x^2 / (1 - p)
    p = 0.5
    m = rng.random((R, n)) >= p
    stat = ((m * x / (1 - p)) ** 2).mean(axis=1)
    assert abs(stat.mean() - 1 / (1 - p)) < 6 * stat.std(ddof=1) / math.sqrt(R)
    # zero-padded conv, kernel 3, length 8, lecun (var 1/(C k)): the documents' closed form
    C, T, k = 4, 8, 3
    xs = rng.standard_normal((R, C, T))
    Wc = rng.standard_normal((R, C, k)) / math.sqrt(C * k)
    padded = np.pad(xs, ((0, 0), (0, 0), (1, 1)))
    z = sum(np.einsum("rc,rct->rt", Wc[:, :, j], padded[:, :, j:j + T]) for j in range(k))
    stat = (z ** 2).mean(axis=1)
    closed = next(c for c in layer_cases.LAYER_TOPICS if c.classes[0] == "Conv").cases[0].closed_form()
    assert abs(stat.mean() - closed) < 6 * stat.std(ddof=1) / math.sqrt(R)
    # LayerNorm at large width: E y^2 -> q / (q + eps) (eps = q = 1: one half)
    wide = rng.standard_normal((200, 4096))
    yl = (wide - wide.mean(axis=1, keepdims=True)) / np.sqrt(wide.var(axis=1, keepdims=True) + 1.0)
    assert (yl ** 2).mean() == pytest.approx(0.5, abs=0.01)


# ----------------------------------------------------------------------------------------------
# architectures page
# ----------------------------------------------------------------------------------------------

def _results(forward, backward, key="s1", x=None):
    v = arch_cases.Variant(key, f"label {key}", _mlp)
    f, g = np.asarray(forward, float), np.asarray(backward, float)
    return arch_cases.VariantResult(v, tuple(x or range(1, len(f) + 1)), f, g)


def test_residual_facts_are_computed_from_the_predictions():
    B = arch_cases.BLOCKS
    f = [2.0 * 2 ** i for i in range(B + 1)]  # doubling per block (scale 1)
    text = arch_cases._residual_facts([_results(f, [0.5] * (B + 1))])
    assert f"grows by {fmt(2.0 ** B)}" in text
    assert f"$(1+s^2)^{{{B}}}$ = {fmt(2.0 ** B)}" in text
    assert f"{fmt(2.0)} per block" in text


def test_batchnorm_facts_are_computed_from_the_predictions():
    B = arch_cases.BLOCKS
    g = [3.0 ** (B - i) for i in range(3 * B)]
    text = arch_cases._bn_facts([_results([1.0] * (3 * B), g, key="b4")])
    ratio = g[0] / g[-1]
    assert f"the gradient at the input is {fmt(g[0])}" in text
    assert f"{fmt(ratio)} times" in text and f"{fmt(ratio ** (1 / B))} per block" in text


def test_architecture_page_on_networks_every_version_has(monkeypatch, tmp_path):
    arch = arch_cases.Architecture(
        "mlp", "A plain MLP", "Dense-ReLU, He.",
        (arch_cases.Variant("he", "He", _mlp),),
        lambda results: "  ".join(arch_cases._growth(r) for r in results))
    monkeypatch.setattr(architectures, "ARCHITECTURES", (arch,))
    store = MonteCarloStore(budget_name="quick")
    files = architectures.architectures_page(store, QUICK, figures=True)
    page = {f.path: f.content for f in files}
    text = page["architectures.md"]
    net = _mlp(L)
    fwd = predict_variance(net, quantity="output", per_layer=True)
    bwd = predict_variance(net, quantity="output_gradient", per_layer=True)
    # every number of the computed paragraph is a prediction
    assert (f"He: $E y^2$ from {fmt(fwd[0])} (position 1) to {fmt(fwd[-1])} (position "
            f"{net.depth}), $E(\\partial\\mathcal L/\\partial y)^2$ from {fmt(bwd[-1])} at the "
            f"output to {fmt(bwd[0])} at position 1.") in text
    assert f"$E y_{{{net.depth}}}^2$ = {fmt(fwd[-1])}" in text
    assert f"$E(\\partial\\mathcal L/\\partial y_{{1}})^2$ = {fmt(bwd[0])}" in text
    verdicts = {k: v for k, v in store.records.items() if "/curve" not in k}
    assert len(verdicts) == 2
    for rec in verdicts.values():
        assert netrows.status_agrees(rec), rec
        assert f"**{rec['status']}**" in text
    curve = store.records["architectures/mlp/he/curve/n32"]
    assert len(curve["output_second"]["mean"]) == net.depth
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # pragma: no cover
        return
    svg = page["figures/architectures-mlp.svg"]
    assert svg.startswith("<?xml") and "Date" not in svg.split("</metadata>")[0].split("<metadata>")[-1]


def test_missing_layers_are_reported_not_hidden():
    """An architecture whose layers this version lacks says so in its rows (nothing silent)."""
    class Empty:
        Dense = L.Dense
        Nonlinearity = L.Nonlinearity
    store = MonteCarloStore(budget_name="quick")
    res = architectures.architecture_results(store, QUICK, module=Empty)  # type: ignore[arg-type]
    for r in res:
        rows = architectures._rows(r)
        assert rows and all("not predicted: AttributeError" in row[2] for row in rows)
    assert store.records == {}


@pytest.mark.parametrize("length, kernel, padding, expected", [
    (8, 3, "same", [2, 3, 3, 3, 3, 3, 3, 2]),
    (6, 5, "same", [3, 4, 5, 5, 4, 3]),
    (8, 3, "valid", [3] * 6),
    (8, 3, "circular", [3] * 8),
])
def test_taps_in_bounds_by_hand(length, kernel, padding, expected):
    from varprop.documents.positions import taps_in_bounds
    assert taps_in_bounds(length, kernel, padding) == expected


@pytest.mark.skipif(not hasattr(L, "Conv"), reason="Conv not in this version")
def test_conv_per_position_prediction_matches_the_hand_count():
    from varprop.documents.positions import predicted_positions, taps_in_bounds
    for padding in ("same", "valid", "circular"):
        layer = L.Conv(8, 3, padding=padding)
        pred = predicted_positions(layer, (4, 8), 0.5)
        hand = [0.5 * k / 3 for k in taps_in_bounds(8, 3, padding)]
        assert pred == pytest.approx(hand, rel=1e-12)


def test_latex_layer_document(monkeypatch):
    topic = _dense_topic()
    monkeypatch.setattr(layer_docs, "available_topics", lambda module: [(topic, L.Dense)])
    store = MonteCarloStore(budget_name="quick")
    (file, _, _), = layer_docs.layer_documents(store, QUICK, format="latex")
    assert file.path == "layers/dense.tex"
    assert file.content.startswith("\\documentclass") and "\\section*{Verification (Monte Carlo)}" in file.content


def test_real_architectures_numbers_are_predictions(monkeypatch):
    """Every architecture this version can build: the paragraph's and the rows' numbers are
    predict_variance's, recomputed here (Monte Carlo stubbed out: the verdicts are tested above);
    the residual MLP's growth equals the hand rule (1 + s^2)^L."""
    monkeypatch.setattr(netrows, "verdict_record", lambda *a, **k: None)
    monkeypatch.setattr(netrows, "curve_record", lambda *a, **k: None)
    monkeypatch.setattr(netrows, "positions_record", lambda *a, **k: None)
    store = MonteCarloStore(budget_name="quick")
    built = 0
    for res in architectures.architecture_results(store, QUICK):
        for r, (p_out, p_in) in zip(res.results, res.positions):
            if r.error:
                continue
            built += 1
            xs = res.arch.steps or (None,)
            nets = [r.variant.build(L, t) for t in xs]
            fwd = [np.asarray(predict_variance(n, quantity="output", per_layer=True)) for n in nets]
            bwd = [np.asarray(predict_variance(n, quantity="output_gradient", per_layer=True))
                   for n in nets]
            if res.arch.steps is None:
                assert np.array_equal(r.forward, fwd[0]) and np.array_equal(r.backward, bwd[0])
                assert p_out == nets[0].depth and p_in == 1
            else:
                assert np.array_equal(r.forward, [f[-1] for f in fwd])
                assert np.array_equal(r.backward, [g[0] for g in bwd])
            rows = architectures._rows(res)
            mine = [row for row in rows if row[0] == r.variant.label]
            assert mine[0][2].endswith(f"= {fmt(r.forward[-1])}" + (
                f" ($T$ = {r.x[-1]})" if res.arch.steps else ""))
            back = r.backward[-1] if res.arch.steps else r.backward[0]
            assert f"= {fmt(back)}" in mine[1][2]
            if res.arch.key == "residual_mlp":
                s = arch_cases._RES_SCALES[r.variant.key]
                assert r.forward[-1] / r.forward[0] == pytest.approx((1 + s * s) ** arch_cases.BLOCKS)
        for series in res.through_time:  # BPTT per input step: predict_fields at T = max
            v = next(r.variant for r in res.results if r.variant.label == series.label)
            net = v.build(L, res.arch.steps[-1])
            grad = predict_fields(net).backward[0].second.ravel()
            assert np.array_equal(series.predicted, grad)
            assert f"= {fmt(grad[0])} at the first input step, {fmt(grad[-1])} at the last" in (
                architectures._time_text(res))
        facts = res.arch.facts(res.results)
        for r in res.results:
            if not r.error:
                assert fmt(r.forward[-1]) in facts or fmt(r.forward[-1] / r.forward[0]) in facts
    assert store.records == {}
    if built == 0:
        pytest.skip("no architecture's layers in this version")


def test_every_committed_verdict_row_follows_from_its_numbers():
    """The committed record of the layer documents and the architectures page: each row's status
    is what the checker's rule gives on the row's own interval and margins."""
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "derivations" / "montecarlo.json"
    records = json.loads(path.read_text())["records"]
    rows = {k: v for k, v in records.items()
            if k.startswith(("layers/", "architectures/")) and "status" in v}
    assert rows, "no layer-document records committed"
    bad = {k: v["status"] for k, v in rows.items() if not netrows.status_agrees(v)}
    assert bad == {}


def test_architectures_page_in_latex(monkeypatch):
    arch = arch_cases.Architecture("mlp", "A plain MLP", "Dense-ReLU, He.",
                                   (arch_cases.Variant("he", "He", _mlp),), lambda results: "")
    monkeypatch.setattr(architectures, "ARCHITECTURES", (arch,))
    monkeypatch.setattr(netrows, "verdict_record", lambda *a, **k: None)
    monkeypatch.setattr(netrows, "curve_record", lambda *a, **k: None)
    files = {f.path: f.content for f in architectures.architectures_page(
        MonteCarloStore(budget_name="quick"), QUICK, format="latex", figures=True)}
    assert files["architectures.tex"].startswith("\\documentclass")
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # pragma: no cover
        return
    assert files["figures/architectures-mlp.pdf"][:4] == b"%PDF"
    assert "\\includegraphics" in files["architectures.tex"]
