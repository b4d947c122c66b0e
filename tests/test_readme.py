"""The README's promises: two copy-paste commands at the top, CI runs the test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_starts_with_main_job_and_test_commands():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    main_job, tests = blocks[0], blocks[1]
    assert main_job.startswith("python3 -m venv .venv") and "varprop derive --all" in main_job
    assert tests.startswith("python3 -m venv .venv") and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    tests = _bash_blocks((ROOT / "README.md").read_text())[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci


def test_pyproject_declares_the_console_script_and_extras():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'varprop = "varprop.cli:main"' in text
    for extra in ("test", "plot", "interop", "distributed"):
        assert re.search(rf"^{extra} = \[", text, flags=re.M), extra
