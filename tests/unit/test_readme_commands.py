"""Every ``mfed train`` command the README shows passes the checks a run makes before it reads data."""

import shlex
from pathlib import Path

import pytest

from mfed.config import load_run_config
from mfed.plan import plan

README = Path(__file__).resolve().parents[2] / "README.md"
COMMANDS = [
    line.split("#")[0].strip()
    for line in README.read_text().splitlines()
    if line.startswith(".venv/bin/mfed train") and "..." not in line
]


def test_the_readme_shows_train_commands():
    assert len(COMMANDS) >= 10 and any("privacy=dp" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_train_command_is_accepted_as_written(command):
    args = [a for a in shlex.split(command)[2:] if a != "--print-config"]
    plan(load_run_config(args))  # raises, naming the key, where the README went stale
