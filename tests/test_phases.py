"""Every sentence the documents state about fixed points, stability, phases and growth is checked
against an independent iteration of the mean-field map (plain NumPy trapezoid quadrature of the
Gaussian expectations, 10^4 layers), not against varprop's engine."""

from __future__ import annotations

import math
import re
from functools import lru_cache

import numpy as np
import pytest
from scipy.special import erf as _erf

import varprop
from varprop import documents
from varprop.documents import phases
from varprop.documents.common import STEADY_WIDTH
from varprop.theory.symbolic import derive

LAYERS = 10_000
WIDTH = STEADY_WIDTH

PHI = {  # phi, phi' as plain NumPy functions
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "sigmoid": (lambda x: 0.5 * (1.0 + np.tanh(x / 2)), lambda x: 0.25 * (1.0 - np.tanh(x / 2) ** 2)),
    "gelu": (lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2))),
             lambda x: 0.5 * (1.0 + _erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
}
GELU = "x*(1+erf(x/sqrt(2)))/2"


def moments(name: str, q: float) -> tuple[float, float]:
    """``(E phi(z)^2, E phi'(z)^2)`` for ``z = sqrt(q) t``, ``t ~ N(0, 1)``: trapezoid rule in
    ``t`` on [-12, 12] with a step <= 0.02 in ``z`` (spectrally accurate for these smooth
    integrands); for ``sqrt(q) > 50`` the features of ``phi`` at ``|z| ~ 1`` get their own fine
    grid, ``|z| <= 40`` with step 0.01, joined to a step-0.005 grid in ``t``."""
    f, df = PHI[name]
    if q == 0.0:
        return float(f(np.zeros(1))[0] ** 2), float(df(np.zeros(1))[0] ** 2)
    sd = math.sqrt(q)
    if sd <= 50:
        h = min(0.02 / sd, 1 / 40)
        t = np.linspace(-12, 12, 2 * int(math.ceil(12 / h)) + 1)
    else:
        t = np.union1d(np.linspace(-12, 12, 4801), np.linspace(-40 / sd, 40 / sd, 8001))
    x = sd * t
    w = np.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    return float(np.trapezoid(f(x) ** 2 * w, t)), float(np.trapezoid(df(x) ** 2 * w, t))


@lru_cache(maxsize=None)
def iterate(name: str, s: float) -> dict:
    """q_l and g_1/g_L = prod_{l<L} chi(q_l) for 10^4 layers from q_1 = s (input variance 1)."""
    q, log_g = s, 0.0
    qs, log_gs = [q], [0.0]
    for _ in range(LAYERS - 1):
        e2, d2 = moments(name, q)
        log_g += math.log(s * d2)
        q = s * e2
        qs.append(q)
        log_gs.append(log_g)
        if q > 1e300 or q < 1e-300:
            break
    return {"q": np.array(qs), "log_g": np.array(log_gs)}


def F(name: str, s: float, q: float) -> float:
    return s * moments(name, q)[0]


def slope(name: str, s: float, q: float) -> float:
    h = max(q, 1e-3) * 1e-4
    return (F(name, s, q + h) - F(name, s, max(q - h, 0.0))) / (q + h - max(q - h, 0.0))


def close(stated: str, value: float, rel: float = 2e-3) -> bool:
    x = float(stated)
    return abs(x - value) <= rel * abs(value) + 1e-12


@lru_cache(maxsize=None)
def doc(act: str, schemes: tuple[str, ...]) -> str:
    files = documents.generate([act], list(schemes), budget="quick", figures=False)
    return next(f.content for f in files if f.path.endswith(".md"))


def phase_rows(text: str) -> dict[str, list[str]]:
    section = text.split("## Fixed points and phases", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([^`]+)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split(" | ")]
    return rows


def check_row(name: str, cells: list[str]) -> None:
    """One row of the phases table against the independent iteration."""
    s = float(cells[0])
    it = iterate(name, s)
    q, log_g = it["q"], it["log_g"]
    # every stated fixed point is one, with the stated stability
    for m in re.finditer(r"([0-9.e+-]+) \((attracting|repelling|marginal), \$F'\$ = ([0-9.e+-]+)\)", cells[1]):
        qs, kind, sl = float(m.group(1)), m.group(2), float(m.group(3))
        assert abs(F(name, s, qs) - qs) <= 2e-3 * max(qs, 1e-9) + 1e-12, (name, s, qs)
        true_slope = slope(name, s, qs)
        assert close(m.group(3), true_slope, 5e-3), (name, s, sl, true_slope)
        assert kind == ("marginal" if abs(true_slope - 1) < 1e-6 else
                        "attracting" if true_slope < 1 else "repelling")
    # the limit of the iteration and chi there
    if cells[2] == "$\\infty$":
        assert q[-1] > 1e250
    else:
        limit = float(cells[2])
        assert abs(q[-1] - limit) <= 2e-3 * limit + 1e-3 * (limit == 0), (name, s, q[-1], limit)
        chi = s * moments(name, limit)[1]
        assert close(cells[3], chi, 5e-3)
        assert cells[4] == ("critical" if abs(chi - 1) < 1e-9 else "ordered" if chi < 1 else "chaotic")
    # growth: geometric factors against the last step, power laws against log2(x_N / x_{N/2})
    for cell, series in ((cells[5], np.log(q)), (cells[6], log_g)):
        if m := re.match(r"factor ([0-9.e+-]+)/layer", cell):
            assert close(m.group(1), math.exp(series[-1] - series[-2]), 5e-3), (cell, name, s)
        elif m := re.match(r"power law \$L\^\{([0-9.e+-]+)\}\$", cell):
            measured = (series[LAYERS - 1] - series[LAYERS // 2 - 1]) / math.log(2)
            assert abs(float(m.group(1)) - measured) < 0.01, (cell, measured)
        elif m := re.match(r"converges to ([0-9.e+-]+)", cell):
            assert close(m.group(1), q[-1])
        else:
            assert cell == "constant"
            assert abs(series[-1] - series[LAYERS // 2]) < 1e-3


def check_depth_values(text: str, name: str, s: float) -> None:
    """``$q_L/q_1$ = x at $L$ = d`` and ``$g_1/g_L$ = x at $L$ = d`` in a sentence about ``s``."""
    it = iterate(name, s)
    for m in re.finditer(r"\$(q_L/q_1|g_1/g_L)\$ = ([0-9.e+-]+) at \$L\$ = (\d+)", text):
        d = int(m.group(3))
        value = (it["q"][d - 1] / it["q"][0] if m.group(1) == "q_L/q_1"
                 else math.exp(it["log_g"][d - 1]))
        assert close(m.group(2), value), (name, s, m.group(0), value)


# ------------------------------------------------------------------------------------------------

def test_tanh_phases_table_and_sentences_match_the_iterated_map():
    text = doc("tanh", ("standard_normal", "lecun_normal", "he_normal", "torch_linear_default"))
    rows = phase_rows(text)
    assert set(rows) == {"standard_normal", "lecun_normal", "he_normal", "torch_linear_default"}
    for cells in rows.values():
        check_row("tanh", cells)
    # he_normal: n sigma_w^2 = 2 > 1: q* = 0 repels, q* = 0.618 attracts, chi = 1.106 (chaotic)
    he = rows["he_normal"]
    assert "0.618 (attracting" in he[1] and "0 (repelling" in he[1] and he[4] == "chaotic"
    assert "only fixed point" not in text and "preserved to leading order" not in text
    # at the critical n sigma_w^2 = 1 gradients decay as a power law, ~0.71/L
    crit = text.split("**critical condition**", 1)[1].split("\n", 1)[0]
    assert "gradients decay as a power law" in crit
    check_depth_values(crit, "tanh", 1.0)
    it = iterate("tanh", 1.0)
    assert math.exp(it["log_g"][29]) == pytest.approx(0.0248, abs=1e-4)
    assert math.exp(it["log_g"][99]) == pytest.approx(0.0072, abs=1e-4)
    closest = text.split("the closest is", 1)[1].split("\n", 1)[0]
    s = float(re.search(r"\$n\\sigma_w\^2\$ = ([0-9.e+-]+)", closest).group(1))
    check_depth_values(closest, "tanh", s)


def test_sigmoid_closest_scheme_reason_is_computed():
    text = doc("sigmoid", ("standard_normal", "lecun_normal"))
    for cells in phase_rows(text).values():
        check_row("sigmoid", cells)
    closest = text.split("the closest is", 1)[1].split("\n", 1)[0]
    assert closest.startswith(" `standard_normal`")
    chi = float(re.search(r"\$\\chi\(q\^\*\)\$ = ([0-9.e+-]+) > 1: \*\*chaotic\*\*", closest).group(1))
    it = iterate("sigmoid", 256.0)
    assert close(str(chi), 256.0 * moments("sigmoid", it["q"][-1])[1], 5e-3)  # 1.554 > 1
    check_depth_values(closest, "sigmoid", 256.0)
    assert "$\\chi(q^*) < 1$ for every scheme" not in text


def test_gelu_has_no_critical_condition_and_grows_at_four():
    text = doc(GELU, ("he_normal",))
    steady = text.split("## Which scheme keeps the variance steady", 1)[1].split("\n\n", 2)[1]
    assert "**No critical point**" in steady and "algebraically" not in steady
    # q = 0 is marginal at n sigma_w^2 = 4, but from q_1 = 4 the variance grows without bound
    assert "at $n\\sigma_w^2$ = 4; there:" in steady and "**unbounded**" in steady
    it = iterate("gelu", 4.0)
    assert it["q"][29] > 1e8
    check_depth_values(steady, "gelu", 4.0)
    for cells in phase_rows(text).values():
        check_row("gelu", cells)


@pytest.mark.parametrize("act", ["relu", "linear", "leaky_relu", "tanh", "erf", "sigmoid"])
def test_symbolic_fixed_points_with_bias_are_variances(act):
    """relu/standard_normal stated q* = -2 sigma_b^2/(n-2) (negative) with the condition n/2 < 1."""
    import sympy as sp

    from varprop.theory.symbolic import symbols as S

    for scheme in documents.schemes_for(act):
        d = derive(act, scheme)
        if d.fixed_point is None or not d.zero_mean:
            continue
        value = d.fixed_point.subs({S.N_IN: WIDTH, S.N_OUT: WIDTH, S.SIGMA_B2: 1})
        assert float(value) >= 0, (act, scheme, d.fixed_point)
        if d.stability is not None and not (d.stability.free_symbols - {S.N_IN, S.N_OUT}):
            rel = d.stability.subs({S.N_IN: WIDTH, S.N_OUT: WIDTH})
            assert rel.func(*rel.args) is sp.true, (act, scheme, d.stability)


# ------------------------------------------------------------------------------------------------
# closed-form errors: per moment, and compounded over depth
# ------------------------------------------------------------------------------------------------

def _closed(name: str, q: float) -> tuple[float, float]:
    """The erf-matched (tanh) / probit (sigmoid) closed forms, written out by hand."""
    if name == "tanh":  # tanh x ~ erf(sqrt(pi) x / 2)
        return 2 / math.pi * math.asin(math.pi * q / 2 / (1 + math.pi * q / 2)), 1 / math.sqrt(1 + math.pi * q)
    k2 = math.pi / 16  # sigmoid x ~ 1/2 + erf(sqrt(pi) x / 4) / 2
    return (0.25 + 0.25 * 2 / math.pi * math.asin(2 * k2 * q / (1 + 2 * k2 * q)),
            0.25 * 4 * k2 / math.pi / math.sqrt(1 + 4 * k2 * q))


def _compounded(name: str, s: float, depth: int) -> tuple[float, float]:
    """(q_L, grad) closed form / exact - 1 for hidden width n with n sigma_w^2 = s, q_0 = 1."""
    out = []
    for mom in (_closed, moments):
        q, log_g = s, 0.0
        for _ in range(depth - 1):
            e2, d2 = mom(name, q)
            log_g += math.log(s * d2)
            q = s * e2
        out.append((q, log_g))
    (qc, gc), (qe, ge) = out
    return qc / qe - 1, math.exp(gc - ge) - 1


@pytest.mark.parametrize(("act", "scheme", "s", "grad30"), [("sigmoid", "lecun_normal", 1.0, 0.84),
                                                            ("tanh", "he_normal", 2.0, 0.48)])
def test_compounded_error_table_against_hand_iteration(act, scheme, s, grad30):
    text = doc(act, (scheme,))
    section = text.split("## Approximation error against quadrature", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| Scheme | Quantity"))
    depths = [int(d) for d in re.findall(r"\$L\$ = (\d+)", header)]
    assert 30 in depths and 100 in depths
    for quantity, index in (("preactivation", 0), ("gradient", 1)):
        line = next(ln for ln in section.splitlines() if ln.startswith(f"| `{scheme}` | {quantity} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][2:]
        for depth, cell in zip(depths, cells):
            expected = _compounded(act, s, depth)[index]
            stated = float(cell.rstrip("%")) / 100
            assert stated == pytest.approx(expected, rel=1e-3, abs=1e-6), (quantity, depth, cell, expected)
    assert _compounded(act, s, 30)[1] == pytest.approx(grad30, abs=0.01)  # the numbers


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_every_moment_error_is_declared_and_bounds_the_measured_error(act):
    text = doc(act, ("lecun_normal",))
    sentence = re.search(r"Declared maximum relative error of each closed-form moment[^\n]*", text).group(0)
    stated = dict(re.findall(r"\$(E\[[^$]+\])\$: ([^;.]+(?:\.\d+%)?)", sentence))
    assert set(stated) == {"E[\\phi]", "E[\\phi^2]", "E[\\phi']", "E[\\phi'^2]"}, stated
    assert stated["E[\\phi]"].startswith("exact")
    grid = np.geomspace(1e-3, 1e4, 60)
    for key, index in (("E[\\phi^2]", 0), ("E[\\phi'^2]", 1)):
        bound = float(stated[key].rstrip("%")) / 100
        worst = max(abs(_closed(act, q)[index] / moments(act, q)[index] - 1) for q in grid)
        assert worst <= bound * 1.01 and worst >= 0.5 * bound, (key, worst, bound)
    # the derivative's error tends to 3/(2 sqrt 2) - 1 = 6.07% at large q
    assert _closed(act, 1e6)[1] / moments(act, 1e6)[1] - 1 == pytest.approx(3 / (2 * math.sqrt(2)) - 1, abs=2e-4)


def test_sigmoid_mean_is_exact_not_an_approximation():
    d = derive("sigmoid", "he_normal")
    just = d.step("moment.mean").justification
    assert not just.startswith("APPROXIMATION") and "exact" in just
    assert "phi(x) + phi(-x) = 1" in just
    f = PHI["sigmoid"][0]
    t = np.linspace(-12, 12, 4801)
    for q in (0.1, 1.0, 50.0):
        w = np.exp(-t * t / 2) / math.sqrt(2 * math.pi)
        assert float(np.trapezoid(f(math.sqrt(q) * t) * w, t)) == pytest.approx(0.5, abs=1e-13)
    # the moments that are approximate say so, each with its own bound
    assert "E[phi'^2] 6.1%" in d.step("moment.deriv_second").justification
    assert "E[phi^2] 1.9%" in d.step("moment.second").justification


def test_gelu_at_two_has_no_fixed_point_but_zero() -> None:
    # q - F(q) = 2 E[z^2 Phi(z)(1 - Phi(z))] > 0 for every q > 0 at n sigma_w^2 = 2 (by hand:
    # gelu(z)^2 + gelu(-z)^2 = z^2 (Phi^2 + (1 - Phi)^2) = z^2 (1 - 2 Phi (1 - Phi))), so 0 is the
    # only fixed point; near q = 1e10 the gap is ~1e-16 relative and its sign is rounding
    points, _ = phases._fixed_points(varprop.activation("x*(1+erf(x/sqrt(2)))/2"), 2.0, 0.0)
    assert [p.q for p in points] == [0.0]
