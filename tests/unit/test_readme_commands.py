"""Every ``mfed train`` command the README shows passes the checks a run makes before it reads data.

The example project's package (examples/mfed-example) is importable here as if installed.
"""

import shlex
from pathlib import Path

import pytest

from mfed.cli import parser
from mfed.config import load_run_config
from mfed.config_dir import PATH_VAR, add_user_dirs
from mfed.plan import plan

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
COMMANDS = [
    line.split("#")[0].strip()
    for line in README.read_text().splitlines()
    if line.startswith(".venv/bin/mfed train") and "..." not in line
]


def test_the_readme_shows_train_commands():
    assert len(COMMANDS) >= 10 and any("privacy=dp" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_train_command_is_accepted_as_written(command, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "mfed-example"))
    monkeypatch.setenv(PATH_VAR, "")  # restored after the test, whatever add_user_dirs sets
    args = parser().parse_args(shlex.split(command)[1:])
    add_user_dirs(args.config_dir)
    plan(load_run_config(args.overrides))  # raises, naming the key, where the README went stale
