"""Joining a running head: a token cluster that refuses this process's token is one line, at once."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_token_cluster_joined_without_its_token_is_one_line_naming_the_refusal(tmp_path):
    # Prepare: a head with token authentication, its token in a file of its own
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    head_env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    head = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("job_server.py")), "gcs"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=head_env,
    )  # fmt: skip
    try:
        line = head.stdout.readline()
        assert line.startswith("GCS "), f"the head did not start: {line!r}"
        address = line.split()[1]
        # Execute: a run joining it with no token
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
        command = [sys.executable, "-m", "mfed", "train", *TINY, "backend=ray", f"backend.address={address}",
                   f"out_dir={tmp_path / 'run'}"]  # fmt: skip
        done = subprocess.run(command, env=env | {"RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
    finally:
        head.stdin.close()
        head.wait(timeout=60)
    # Assert: one line, exit 2, naming the refusal and the fix; none of Ray's retry warnings; nothing written
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"mfed: backend.address={address}: cannot join the Ray cluster there (")
    assert "InvalidAuthToken" in lines[0] and "RAY_AUTH_MODE is disabled" in lines[0]
    assert "export RAY_AUTH_MODE=token" in lines[0] and not (tmp_path / "run").exists()
