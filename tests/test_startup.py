"""``varprop predict`` without SymPy, mpmath or SciPy (issue 14: start-up at most ~3x ``import numpy``).

1. The goal, checked on the imported modules (not on timings, so it cannot be flaky): the common
   ``varprop predict`` commands, in their table, ``--json`` and ``--csv`` forms, and the API
   ``varprop.predict_variance``, run in a fresh interpreter, leave every module of ``sympy``,
   ``mpmath`` and ``scipy`` out of ``sys.modules``.  The registered activations and schemes at
   their default parameters come from generated catalogues
   (:mod:`varprop.components._compiled_activations`, :mod:`varprop.components._compiled_schemes`),
   the zero-mean moments of the walk from :mod:`varprop.theory._compiled_moments`.
2. That catalogue is the SymPy path's code: regenerating it from SymPy gives the committed text,
   and its values equal (as floats, ``==``) those of the SymPy path (``lambdify_scalar`` of
   :func:`varprop.theory.moments.zero_mean_forms`), also where the ``math`` code overflows and
   the ``mpmath`` fallback takes over.
3. Anything that is not catalogued (non-default parameters) still works, through SymPy.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from varprop import activation
from varprop._math.scalar import lambdify_scalar
from varprop.components.activations import activation_names, resolve_activation
from varprop.components.moment_rules import Q
from varprop.theory import compiled_moments, moments, shifted
from varprop.theory._compiled_moments import ZERO_MEAN

#: Never imported by the prediction path of a catalogued activation and scheme.
HEAVY = ("sympy", "mpmath", "scipy")

#: Every catalogued function at these variances: tiny, ordinary, huge, and where ``math`` overflows
#: (``q**(3/2)`` or ``exp(18/q)`` beyond the float range: the mpmath fallback).
GRID = [5e-324, 1e-300, 1e-30, 1e-8, 0.003, 0.1, 0.5, 1.0, 1.0 + 2**-52, 2.0, math.pi, 7.25, 100.0,
        12345.678, 1e8, 1e30, 1e150, 1e205, 1e250, 1e300, 1.7e308]


def _heavy_modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; the heavy modules in ``sys.modules`` after it."""
    script = (code + "\nimport json, sys\nsys.stdout.flush()\n"
              "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip(), "the command printed nothing"
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    return [m for m in loaded if m.split(".")[0] in HEAVY]


def _cli(*argv: str) -> str:
    return f"import sys\nfrom varprop.cli import main\nstatus = main({list(argv)!r})\nassert status == 0"


PREDICT_ONE = ("predict", "relu", "he_normal", "--fan-in", "256", "--depth", "5")
PREDICT_GRID = ("predict", "relu,tanh,erf", "he_normal,xavier_normal,lecun_normal", "--fan-in",
                "128", "--depth", "10")


@pytest.mark.parametrize("argv", [
    PREDICT_ONE, PREDICT_ONE + ("--json",), PREDICT_ONE + ("--csv",),
    PREDICT_GRID, PREDICT_GRID + ("--json",), PREDICT_GRID + ("--csv",),
], ids=["one", "one-json", "one-csv", "grid", "grid-json", "grid-csv"])
def test_predict_imports_no_sympy_mpmath_or_scipy(argv):
    assert _heavy_modules_after(_cli(*argv)) == []


#: The registered activations whose default prediction imports ``scipy.special`` (the exponential
#: linear units' moments use ``erfcx``/``ndtr``; silu, mish and softplus evaluate ``phi`` with
#: ``scipy.special``), as docs/performance.md says; every other one imports none of the three.
SCIPY_SPECIAL = {"elu", "celu", "selu", "silu", "mish", "softplus"}


@pytest.mark.parametrize("name", activation_names())
def test_which_activations_predict_without_scipy(name):
    heavy = _heavy_modules_after(_cli("predict", name, "he_normal", "--fan-in", "256", "--depth", "5"))
    assert {m.split(".")[0] for m in heavy} == ({"scipy"} if name in SCIPY_SPECIAL else set())


def test_predict_variance_imports_no_sympy_mpmath_or_scipy():
    code = ("import varprop\n"
            "print(varprop.predict_variance('relu', 'he_normal', fan_in=256, depth=5))")
    assert _heavy_modules_after(code) == []


def test_non_default_parameters_still_predict_through_sympy():
    # leaky_relu(0.2) is not catalogued: its moments are compiled from SymPy, as before
    code = ("import varprop\nfrom varprop import activation\n"
            "a = activation('leaky_relu', negative_slope=0.2)\n"
            "print(varprop.predict_variance(a, 'he_normal', fan_in=64, depth=3))")
    assert "sympy" in _heavy_modules_after(code)


# ----------------------------------------------------------------------------------------------
# The zero-mean catalogue is the SymPy path's code
# ----------------------------------------------------------------------------------------------

def test_catalogue_is_up_to_date():
    text = compiled_moments.catalogue_source()
    assert compiled_moments.PATH.read_text() == text, (
        f"{compiled_moments.PATH.name} is out of date: run `{compiled_moments.COMMAND}`")


def test_every_registered_closed_form_is_catalogued():
    closed = [n for n in activation_names() if resolve_activation(n).closed_form is not None]
    assert sorted(ZERO_MEAN) == sorted(closed)
    assert {"relu", "tanh", "erf", "linear"} <= set(ZERO_MEAN)


@pytest.mark.parametrize("name", sorted(ZERO_MEAN))
def test_catalogued_values_equal_the_sympy_path(name):
    act = resolve_activation(name)
    catalogued = moments._catalogued(act)
    assert catalogued is not None
    reference = lambdify_scalar([Q], moments.zero_mean_forms(act.closed_form))
    for q in GRID:
        got, want = catalogued(q), reference(q)
        same = all(g == w or (math.isnan(g) and math.isnan(w)) for g, w in zip(got, want))
        assert same and len(got) == 3, f"{name} at q={q!r}: {got} != {want}"


def test_the_catalogue_falls_back_to_mpmath_where_math_overflows():
    # relu6's mean holds exp(18/q): 18/q > 709.78 overflows math.exp (q = 0.02); the SymPy path's
    # mpmath fallback gives the finite value, which the catalogue must give too
    q = 0.02
    got = moments._catalogued(resolve_activation("relu6"))(q)
    with pytest.raises(OverflowError):
        ZERO_MEAN["relu6"](q)
    # independent check: E relu6(z) ~ E relu(z) = sqrt(q / (2 pi)) where P(z > 6) ~ 0
    assert got[0] == pytest.approx(math.sqrt(q / (2 * math.pi)), rel=1e-12)
    assert got[1] == pytest.approx(q / 2, rel=1e-12)


def test_relu_catalogue_against_hand_values():
    # E relu(z) = sqrt(q / 2 pi), E relu(z)^2 = q / 2, E relu'(z)^2 = 1/2 for z ~ N(0, q)
    for q in (0.5, 2.0, 1e10):
        mean, second, deriv = ZERO_MEAN["relu"](q)
        assert mean == pytest.approx(math.sqrt(q / (2 * math.pi)), rel=1e-15)
        assert second == q / 2 and deriv == 0.5


def test_only_the_registered_default_is_catalogued():
    assert moments._catalogued(activation("leaky_relu", negative_slope=0.2)) is None
    assert moments._catalogued(activation("relu")) is not None


def test_shifted_memory_estimate_counts_the_outer_rule_it_does_not_build():
    # theory.shifted counts the outer rule's nodes at import without building it (np.union1d
    # imports numpy.ma); the count must be the built rule's
    u, w = shifted._outer_rule(shifted.OUTER_GRADED)
    assert u.size == w.size
    assert shifted.BYTES_PER_LAYER == 3 * 8 * u.size + 9 * 8 + 8
