"""``varprop audit PACKAGE.MODULE:FACTORY`` (issue 12): table, JSON, exit codes.

The factories are written to a temporary module in the working directory (the command puts it
first on the import path); the exit codes are those of the CLI's contract: 0 all well, 1 a row
refuted, 2 a usage error with a one-line message.
"""

from __future__ import annotations

import json
import uuid

import pytest

torch = pytest.importorskip("torch")

from varprop.cli import main

pytestmark = pytest.mark.interop



audit_module = __import__("varprop.torch.audit", fromlist=["audit"])

FACTORIES = """
import torch

def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))

def embedded():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Embedding(50, 32), torch.nn.Flatten(),
                               torch.nn.Linear(12 * 32, 32))

NOT_CALLABLE = 3

def not_a_module():
    return "model"

def broken():
    raise RuntimeError("factory broke")

def exits():
    raise SystemExit(3)
"""

EXITS_AT_IMPORT = "import sys\nsys.exit(5)\n"


@pytest.fixture
def module(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"factories_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORIES)
    (tmp_path / f"{name}_exits.py").write_text(EXITS_AT_IMPORT)
    monkeypatch.chdir(tmp_path)
    return name


def test_markdown_table_and_exit_0(module: str, capsys: pytest.CaptureFixture) -> None:
    code = main(["audit", f"{module}:mlp", "--input-shape", "16,16", "--replicates", "8"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("Audit of `Sequential` on input (16, 16): 8 re-initialisations")
    assert "| 1 | `0` | Linear | 64 |" in out and "| 3 | `2` | Linear | 32 |" in out


def test_json_is_strict_and_complete(module: str, capsys: pytest.CaptureFixture) -> None:
    code = main(["audit", f"{module}:mlp", "--input-shape", "16,16", "--replicates", "8",
                 "--json", "--seed", "3", "--no-backward"])
    data = json.loads(capsys.readouterr().out,
                      parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert code == 0 and data["seed"] == 3 and data["replicates"] == 8
    assert [r["name"] for r in data["rows"]] == ["0", "1", "2"]
    assert all(r["backward"]["status"] == "not run" for r in data["rows"])


def test_tokens_input_with_measured_embedding(module: str, capsys: pytest.CaptureFixture) -> None:
    code = main(["audit", f"{module}:embedded", "--input-shape", "4,12", "--input-kind",
                 "tokens:50", "--unsupported", "measure", "--replicates", "8", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["rows"][0]["forward"]["status"] == "measured"
    assert [r["kind"] for r in data["rows"]] == ["Embedding", "Flatten", "Linear"]
    assert data["rows"][2]["forward"]["status"] in ("confirmed", "inconclusive")


def test_a_refuted_row_exits_1(module: str, capsys: pytest.CaptureFixture,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = audit_module.trace_model

    def trace_then_triple(m, *args, **kwargs):  # the last layer's init changes after tracing
        traced = real(m, *args, **kwargs)
        reset = m[2].reset_parameters

        def tripled() -> None:
            reset()
            with torch.no_grad():
                m[2].weight.mul_(3.0)

        monkeypatch.setattr(m[2], "reset_parameters", tripled)
        return traced

    monkeypatch.setattr(audit_module, "trace_model", trace_then_triple)
    code = main(["audit", f"{module}:mlp", "--input-shape", "16,16", "--replicates", "8"])
    assert code == 1
    assert "**REFUTED**" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["nodots"], "PACKAGE.MODULE:FACTORY"),
    (["{m}:missing"], "has no attribute 'missing'"),
    (["{m}:NOT_CALLABLE"], "not callable"),
    (["{m}:not_a_module"], "returned str, not a torch.nn.Module"),
    (["{m}:broken"], "raised RuntimeError: factory broke"),
    (["{m}:exits"], "raised SystemExit: 3"),
    (["builtins:exit"], "raised SystemExit"),
    (["{m}_exits:f"], "SystemExit: 5"),
    (["no_such_module_xyz:f"], "cannot import module 'no_such_module_xyz'"),
    (["{m}:mlp", "--input-kind", "tokens:0"], "--input-kind"),
    (["{m}:mlp", "--input-kind", "words"], "--input-kind"),
])
def test_usage_errors_exit_2(module: str, capsys: pytest.CaptureFixture, args: list[str],
                             message: str) -> None:
    argv = ["audit"] + [a.replace("{m}", module) for a in args] + ["--input-shape", "4,16"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("varprop audit: error: ") and message in err
    assert err.count("\n") == 1  # one line, no traceback


@pytest.mark.parametrize("extra", [["--input-shape", "4,x"], ["--input-shape", "4,,16"],
                                   ["--input-shape", "4,16", "--replicates", "0"],
                                   ["--input-shape", "4,16", "--unsupported", "skip"], []])
def test_bad_options_exit_2(module: str, capsys: pytest.CaptureFixture, extra: list[str]) -> None:
    assert main(["audit", f"{module}:mlp"] + extra) == 2
    assert "error" in capsys.readouterr().err


def test_a_shape_the_model_does_not_take_exits_2(module: str, capsys: pytest.CaptureFixture
                                                  ) -> None:
    assert main(["audit", f"{module}:mlp", "--input-shape", "4,15", "--replicates", "4"]) == 2
    err = capsys.readouterr().err
    assert "varprop audit: error:" in err and "(4, 15)" in err


def test_an_audit_beyond_the_memory_bound_is_refused(module: str, capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cmd = __import__("varprop.cli.audit_cmd", fromlist=["audit_memory"])
    # by hand: mlp() has 16*64 + 64 + 64*32 + 32 = 3168 float32 parameters, no buffers
    assert cmd.audit_memory(3168 * 4, 0, 4 * 16 * 4) == 2 * 12672 + 3 * 256
    monkeypatch.setattr(cmd, "MAX_AUDIT_BYTES", 2 * 12672 + 3 * 256 - 1)
    assert main(["audit", f"{module}:mlp", "--input-shape", "4,16"]) == 2
    assert "estimated peak memory" in capsys.readouterr().err
    monkeypatch.setattr(cmd, "MAX_AUDIT_BYTES", 30000)  # the model fits, the batch does not
    assert main(["audit", f"{module}:mlp", "--input-shape", "100,16"]) == 2  # 3 * 1600 * 8
    assert "--input-shape 100,16: the audit's estimated peak memory" in capsys.readouterr().err
