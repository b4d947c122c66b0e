"""The README's promises: two copy-paste commands at the top that set up a fresh clone and run
the main job / the tests verbatim, every other command line runnable without activating the
virtual environment (``.venv/bin/...``, also in docs/cli.md), and CI running the test command."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from varprop.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
#: how a command line may start: the set-up itself, or a program of the checkout's venv
SETUP = "python3 -m venv .venv"
VENV = ".venv/bin/"


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def _command_lines(path: Path) -> list[str]:
    """The command lines of the ```bash blocks of ``path`` (comments dropped)."""
    lines = []
    for block in _bash_blocks(path.read_text()):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


def _steps(command: str) -> list[list[str]]:
    """``a && b && c`` -> the words of ``a``, ``b``, ``c`` (shell-quoted as bash would)."""
    return [shlex.split(step) for step in command.split("&&")]


def _check_setup(command: str) -> list[str]:
    r"""A top command is one line: create ``.venv``, install the checkout with existing extras
    through the venv's own pip, then run the venv's program; returns the last step's words."""
    assert "\n" not in command, "one line, to paste as is"
    steps = _steps(command)
    assert len(steps) == 3, steps
    assert steps[0] == ["python3", "-m", "venv", ".venv"]
    pip = steps[1]
    assert pip[:2] == [VENV + "pip", "install"] and "-e" in pip, pip
    target = pip[pip.index("-e") + 1]
    match = re.fullmatch(r"\.\[([a-z,]+)\]", target)
    assert match, f"install the checkout itself with extras: {target!r}"
    assert set(match.group(1).split(",")) <= _extras(), match.group(1)
    assert steps[2][0].startswith(VENV), steps[2]
    return steps[2]


def test_readme_starts_with_main_job_and_test_commands():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    main_job, tests = _check_setup(blocks[0]), _check_setup(blocks[1])
    # the main job: the venv's varprop, a command line its parser accepts
    assert main_job[0] == VENV + "varprop" and main_job[1:3] == ["derive", "--all"]
    args = build_parser().parse_args(main_job[1:])
    assert args.command == "derive" and args.all_ and str(args.out) == "derivations"
    assert "plot" in blocks[0]  # the documents' figures
    # the tests: the venv's python running pytest, with the test extra installed
    assert tests == [VENV + "python", "-m", "pytest"]
    assert "test" in re.search(r"\.\[([a-z,]+)\]", blocks[1]).group(1).split(",")


@pytest.mark.parametrize("name", ["README.md", "docs/cli.md"])
def test_every_command_line_runs_without_activating_the_venv(name):
    lines = _command_lines(ROOT / name)
    assert lines
    bare = [line for line in lines if not (line.startswith(SETUP) or line.startswith(VENV))]
    assert not bare, f"{name}: use .venv/bin/varprop or .venv/bin/python: {bare}"
    for line in lines:
        for step in _steps(line):
            if step[0] == VENV + "varprop":
                words = step[: step.index(">")] if ">" in step else step
                assert build_parser().parse_args(words[1:]).command, line


def test_ci_runs_the_readme_test_command():
    tests = _bash_blocks((ROOT / "README.md").read_text())[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci


def test_pyproject_declares_the_console_script_and_extras():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'varprop = "varprop.cli:main"' in text
    for extra in ("test", "plot", "interop", "distributed"):
        assert re.search(rf"^{extra} = \[", text, flags=re.M), extra
