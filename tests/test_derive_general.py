"""derive() of networks beyond the dense chain: each distinct layer's SymPy rules, the general
engine's numbers, LaTeX that SymPy keeps verbatim."""

import math

import numpy as np
import pytest
import sympy as sp

import varprop
from varprop import Network
from varprop.theory.symbolic.general import FieldDerivation, _typeset_name


def test_elementwise_network_on_a_tensor_input_by_hand():
    # relu of i.i.d. N(0, 3) entries: E relu(z)^2 = 3/2, E relu'(z)^2 = 1/2 (hand derivation)
    net = Network(["relu"], input_shape=(2, 3), input_variance=3.0)
    d = varprop.derive(net)
    assert isinstance(d, FieldDerivation)
    values = d.evaluate()
    assert values["output_second"] == pytest.approx([1.5], rel=1e-12)
    assert values["output_gradient"] == pytest.approx([1.0])
    assert float(values["input_gradient"]) == pytest.approx(0.5, rel=1e-12)
    assert d.exact_at_finite_width
    sections = {s.section for s in d.steps}
    assert sections == {"forward", "backward"}


def test_numbers_are_predict_variances():
    net = Network(["tanh"], input_shape=(4, 5), input_variance=0.7)
    d = varprop.derive(net)
    pred = varprop.predict_variance(net, quantity="output", per_layer=True)
    assert np.array_equal(d.evaluate()["output_second"], np.asarray(pred))
    # and the value itself by quadrature: E tanh(z)^2, z ~ N(0, 0.7)
    from scipy.integrate import quad
    ref = quad(lambda t: math.tanh(math.sqrt(0.7) * t) ** 2 * math.exp(-t * t / 2) / math.sqrt(2 * math.pi),
               -12, 12, epsabs=1e-14)[0]
    assert float(d.evaluate()["output_second"][0]) == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("name, expected", [
    ("E[a^2]", r"\mathbb{E}[a^{2}]"),
    ("E[delta_{z,t}^2]", r"\mathbb{E}[\delta_{z,t}^{2}]"),
    ("sigma_w^2", r"\sigma_{w}^{2}"),
])
def test_symbol_names_typeset(name, expected):
    assert _typeset_name(name) == expected
    assert sp.latex(sp.Symbol(_typeset_name(name))) == expected


def test_documents_render():
    net = Network(["relu"], input_shape=(2, 3))
    d = varprop.derive(net)
    md = d.to_markdown()
    assert "| 1 | `Nonlinearity(relu())` | 0.5 | 1 |" in md
    tex = d.to_latex(document=True)
    assert tex.startswith("\\documentclass") and "E[a^{2]" not in tex
    with pytest.raises(ValueError, match="level"):
        d.to_markdown(level=0)
