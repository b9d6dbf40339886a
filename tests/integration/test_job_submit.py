"""`ray job submit` of a 2-round run against a Ray head with a job server on 127.0.0.1."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mfed.loggers.wandb_offline import find_offline_runs, read_run_file
from tests.conftest import TINY

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def job_server():
    """``(address, env, stop)``: a head with a job server, and a function that stops the head."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("job_server.py"))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip

    def stop() -> None:
        if proc.poll() is None:
            proc.stdin.close()  # the server calls ray.shutdown(), ending what it started
            proc.wait(timeout=60)

    try:
        line = proc.stdout.readline()
        assert line.startswith("DASHBOARD "), f"job server did not start: {line!r}"
        yield line.split()[1], env, stop
    finally:
        stop()


def test_submitted_run_succeeds_and_its_outputs_outlive_the_cluster(job_server, tmp_path, monkeypatch):
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, env, stop_head = job_server
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    job_id = f"mfed-test-{uuid.uuid4().hex[:8]}"
    storage = tmp_path / "store"  # as a user sets MFED_STORAGE for their jobs; no out_dir given
    env_vars = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "RAY_AUTH_MODE": "disabled",
        "MFED_STORAGE": str(storage),
    }
    runtime_env = {"env_vars": env_vars}
    overrides = [o for o in TINY if o not in ("backend=serial", "logger=none")]
    submit = [
        RAY, "job", "submit", "--address", address, "--submission-id", job_id, "--no-wait",
        "--working-dir", str(REPO), "--runtime-env-json", json.dumps(runtime_env), "--",
        sys.executable, "ray_jobs/train.py", *overrides, "task_mix=seg_depth", "backend=ray",
    ]  # fmt: skip
    for _ in range(30):  # the head's job agent starts a few seconds after the dashboard answers
        submitted = subprocess.run(submit, capture_output=True, text=True, env=env)
        if "No available agent" not in submitted.stderr:
            break
        time.sleep(2)
    assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]
    client, deadline = JobSubmissionClient(address), time.time() + 300
    while not (status := client.get_job_status(job_id)).is_terminal() and time.time() < deadline:
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "round 2/2" in logs
    stop_head()  # the job's working dir lives in the head's session dir and goes with it
    (out_dir,) = storage.iterdir()
    assert f"outputs in {out_dir}" in logs  # the absolute location, where it really is
    assert (out_dir / "history.json").is_file() and (out_dir / "checkpoint.pt").is_file()
    assert json.loads((out_dir / "summary.json").read_text())["status"] == "completed"
    runs = find_offline_runs(out_dir)
    assert len(runs) == 1
    history = read_run_file(runs[0]).history
    assert [row["round"] for row in history] == [1, 2]
    assert all("val/semseg/mIoU" in row and "val/depth/rmse" in row for row in history)
