"""Black box: a run killed with SIGKILL mid-run and resumed through the CLI ends exactly as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mfed.cli import main
from mfed.loggers.wandb_offline import find_offline_runs, read_run_file
from tests.conftest import TINY

ROUNDS = ("federation.rounds=6",)


def mfed_train(*overrides: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    command = [sys.executable, "-m", "mfed.cli", "train", *overrides]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def rounds_done(out: Path) -> int:
    try:
        return len(json.loads((out / "history.json").read_text()))
    except (OSError, ValueError):
        return 0


def wandb_ids(out: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[1] for p in (out / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_sigkill_after_round_2_then_resume_gives_the_uninterrupted_result(tmp_path):
    # Prepare: the uninterrupted run
    assert main(["train", *TINY, *ROUNDS, f"out_dir={tmp_path / 'straight'}"]) == 0
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())
    # Execute: a run killed (its whole process group) once round 2 is written ...
    out = tmp_path / "killed"
    proc = mfed_train(*TINY, *ROUNDS, "logger=wandb", f"out_dir={out}", start_new_session=True)
    deadline = time.monotonic() + 120
    while rounds_done(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    killed_at = rounds_done(out)
    assert 2 <= killed_at < 6 and not (out / "summary.json").exists(), killed_at
    # ... and resumed with nothing but its folder
    resumed = mfed_train(f"resume={out}")
    log, _ = resumed.communicate(timeout=300)
    # Assert
    assert resumed.returncode == 0, log
    assert "resuming from round" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 6
    test_keys = [k for k in straight["final"] if k.startswith("test/")]
    assert test_keys and {k: summary["final"][k] for k in test_keys} == {k: straight["final"][k] for k in test_keys}
    ids = wandb_ids(out)
    assert len(ids) == 2 and ids[0] == ids[1], ids  # the resumed run continues the same W&B run
    # every round history.json holds is in the W&B run (its two offline segments), whatever the kill lost
    logged = {row["round"] for run in find_offline_runs(out) for row in read_run_file(run).history}
    assert logged == set(range(1, 7)), logged


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["serial", "ray"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_the_run_cleanly_and_says_how_to_resume(tmp_path, signum, backend):
    # on Ray (the default backend; SIGTERM is what `ray job stop` sends) the driver waits inside Ray's core
    out = tmp_path / "run"
    proc = mfed_train(*TINY, f"backend={backend}", "federation.rounds=40", f"out_dir={out}")
    deadline = time.monotonic() + 180
    while rounds_done(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, log
    assert f"continue with: mfed train resume={out}" in log and "Traceback" not in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 1 <= summary["rounds"] < 40
    assert not (out / ".mfed.lock").exists()
