"""``varprop``'s start-up: parsing imports nothing heavy, and a command imports only its own
module (the table ``varprop.cli.COMMANDS``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from varprop.cli import COMMANDS, SUBCOMMANDS, build_parser

#: NumPy is allowed (the argument validators use it); these are not.
HEAVY = ("scipy", "sympy", "matplotlib", "varprop.theory.predict", "varprop.documents")


def _loaded_after(argv: list[str]) -> tuple[int, set[str]]:
    """Run ``varprop ARGV`` in a fresh interpreter; its exit status and the modules it imported."""
    code = ("import json, sys\nfrom varprop.cli import main\nstatus = main(sys.argv[1:])\n"
            "sys.stdout.flush()\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
            "sys.exit(status)\n")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, set(json.loads(proc.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"],
                                  ["check", "--rtol", "2"], ["predict", "relu", "he_normal",
                                                              "--depth", "0"]])
def test_help_and_usage_errors_import_nothing_heavy(argv):
    status, loaded = _loaded_after(argv)
    assert status in (0, 2)
    assert not [m for m in HEAVY if m in loaded]


def test_a_command_imports_its_own_module_only():
    status, loaded = _loaded_after(["predict", "relu", "he_normal", "--fan-in", "8", "--depth",
                                    "2", "--json"])
    assert status == 0
    assert COMMANDS["predict"] in loaded
    assert COMMANDS["check"] not in loaded and COMMANDS["derive"] not in loaded
    assert "varprop.documents" not in loaded


def test_every_command_has_a_parser_and_a_module():
    assert SUBCOMMANDS == ("predict", "check", "derive", "recommend", "critical-gain",
                           "edge-of-chaos", "overflow-depth", "list", "audit")
    minimal = {"predict": ["relu", "he_normal"],
               "recommend": ["relu", "--width", "8", "--depth", "2"],
               "critical-gain": ["relu"], "edge-of-chaos": ["relu"],
               "overflow-depth": ["relu", "he_normal", "--fan-in", "8"],
               "audit": ["pkg.mod:factory", "--input-shape", "2,3"]}
    parser = build_parser()
    for name, module in COMMANDS.items():
        assert parser.parse_args([name] + minimal.get(name, []))
        assert callable(getattr(__import__(module, fromlist=["run"]), "run"))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_predict_imports_no_scipy(activation):
    # SciPy's modules (stats, qmc, interpolate, sparse, special) are imported at first use
    # (varprop._util.lazy): the closed forms of relu and tanh evaluate with the math module, so
    # ``varprop predict`` imports none of SciPy (docs/performance.md, start-up)
    status, loaded = _loaded_after(["predict", activation, "he_normal", "--fan-in", "8",
                                    "--depth", "2"])
    assert status == 0
    assert not [m for m in loaded if m == "scipy" or m.startswith("scipy.")]


def test_lazily_bound_scipy_still_works_where_needed():
    # the erf activation and a custom expression in erf use scipy.special (imported on use)
    status, loaded = _loaded_after(["predict", "erf,erf(x)+x", "he_normal", "--fan-in", "8",
                                    "--depth", "2"])
    assert status == 0 and "scipy.special" in loaded


def test_list_runs_and_imports_no_theory():
    status, loaded = _loaded_after(["list", "--json"])
    assert status == 0
    assert "varprop.theory.predict" not in loaded and "scipy.stats" not in loaded
