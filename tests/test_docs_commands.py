"""Every ``varprop ...`` command in the ```bash blocks of README.md and docs/*.md runs and exits 0.

Commands run in-process through :func:`varprop.cli.main`; ``--out DIR`` and ``--plot PATH`` are
redirected into a temporary folder, a leading ``.venv/bin/`` and a shell redirection (``> file``)
are dropped.  The few commands that take minutes or need a cluster are listed in ``NOT_RUN`` with
the reason and where their behaviour is tested instead; a test checks that list against the
documents so it cannot go stale.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from varprop.cli import main

ROOT = Path(__file__).resolve().parents[1]

NOT_RUN = {
    "varprop derive --all --out derivations":
        "the main job (~2 min); test_derivations_up_to_date checks what it writes",
    "varprop derive --all --quick --out /tmp/draft":
        "--quick over every activation (~40 s); test_documents runs --quick on one activation",
    "varprop check --json > verdicts.json":
        "the whole default matrix (minutes); test_cli_check runs filtered matrices with --json",
    "varprop check --workers 2":
        "the whole default matrix; test_cli_check compares --workers 1 and 2 on a filtered one",
    "varprop check --scheduler tcp://scheduler:8786":
        "needs a Dask scheduler; tests/distributed runs a local cluster",
}


#: the prefix of commands run from a checkout without activating its virtual environment
VENV = ".venv/bin/"


def documented_commands() -> list[tuple[str, str]]:
    """``(file name, command)`` for every ``varprop`` line of a ```bash block (comments removed)."""
    out = []
    for path in [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")):
        fence = None
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = stripped[3:].strip() if fence is None else None
                continue
            stripped = stripped.removeprefix(VENV)  # README and cli.md: no activation needed
            if fence == "bash" and stripped.startswith("varprop "):
                command = stripped.split(" #", 1)[0].strip()
                out.append((path.name, command))
    return out


COMMANDS = documented_commands()


def test_commands_are_found_and_the_not_run_list_is_current():
    found = {command for _, command in COMMANDS}
    assert {"varprop predict relu he_normal --fan-in 256 --depth 5"} <= found
    assert set(NOT_RUN) <= found, set(NOT_RUN) - found


def _arguments(command: str, tmp_path: Path) -> list[str]:
    words = shlex.split(command)[1:]
    if ">" in words:
        words = words[: words.index(">")]
    for i, word in enumerate(words[:-1]):
        if word in ("--out", "--plot"):
            words[i + 1] = str(tmp_path / Path(words[i + 1]).name)
    return words + (["--no-progress"] if words[0] in ("check", "derive") else [])


@pytest.mark.parametrize(("where", "command"),
                         [c for c in COMMANDS if c[1] not in NOT_RUN],
                         ids=[f"{w}: {c}" for w, c in COMMANDS if c not in NOT_RUN])
def test_documented_command_runs(where: str, command: str, tmp_path: Path, capsys):
    assert main(_arguments(command, tmp_path)) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.strip(), f"{where}: {command} printed nothing"
    if "derive" in command:
        assert any(tmp_path.rglob("*.md"))
