"""The run's folder: durable default, one run at a time, never overwritten, files never half-written."""

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from mfed.atomic import replace_atomically, write_json
from mfed.config import load_config
from mfed.federation.checkpointing import load_checkpoint
from mfed.federation.rundir import LOCK_NAME, RunLock, check_fresh, default_out_dir, resolve_out_dir
from mfed.run import build, name_run, run, start
from tests.conftest import TINY


def test_default_out_dir_is_in_storage_with_time_and_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    when = datetime(2026, 12, 1, 9, 5, 7)
    assert default_out_dir("~/runs", "mfed-default-s0", when) == f"{tmp_path}/runs/2026-12-01_09-05-07_mfed-default-s0"
    assert default_out_dir("s3://bucket/runs/", "x", when) == "s3://bucket/runs/2026-12-01_09-05-07_x"


def test_out_dir_resolution_order(tmp_path):
    assert resolve_out_dir("rel", "/s", "n", None) == str(Path("rel").absolute())
    assert resolve_out_dir(None, "/s", "n", str(tmp_path / "old" / "checkpoint.pt")) == str(tmp_path / "old")
    assert resolve_out_dir(None, "/s", "n", str(tmp_path / "old")) == str(tmp_path / "old")
    assert resolve_out_dir(None, "/s", "n", None).startswith("/s/")


def test_a_run_lands_in_mfed_storage_by_default(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("MFED_STORAGE", str(tmp_path / "store"))
    cfg = load_config([*TINY, "federation.rounds=1"])  # out_dir: null, as configs/config.yaml has it
    run(cfg)
    (run_dir,) = (tmp_path / "store").iterdir()
    assert run_dir.name.endswith("_mfed-shapes-default-s0") and (run_dir / "summary.json").is_file()
    assert cfg.out_dir == str(run_dir) and cfg.name == "mfed-shapes-default-s0" and cfg.group == "shapes-default"


def test_runs_on_other_clients_or_data_have_their_own_names_and_groups():
    names = {}
    for overrides in ([], ["federation=mixed"], ["data=shapes"], ["data=shapes", "federation=mixed"]):
        cfg = load_config([*overrides, "seed=2"])
        name_run(cfg, instantiate(cfg.aggregation))
        names[" ".join(overrides)] = (cfg.name, cfg.group)
    assert names == {
        "": ("mfed-fashion_scenes-default-s2", "fashion_scenes-default"),
        "federation=mixed": ("mfed-fashion_scenes-default-mixed-s2", "fashion_scenes-default-mixed"),
        "data=shapes": ("mfed-shapes-default-s2", "shapes-default"),
        "data=shapes federation=mixed": ("mfed-shapes-default-mixed-s2", "shapes-default-mixed"),
    }
    assert load_config(["federation=mixed"]).choices.federation == "mixed"  # config.yaml records the options


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_first(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    with pytest.raises(ValueError, match=rf"out_dir={tmp_path} is in use by another run \(process {os.getpid()} on"):
        RunLock(tmp_path).acquire()
    lock.release()
    RunLock(tmp_path).acquire()  # free again


def test_a_dead_runs_lock_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": int(dead.stdout), "host": __import__("socket").gethostname(), "since": "earlier"})
    )
    lock = RunLock(tmp_path)
    lock.acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_folder_holding_a_run_is_refused_unless_resuming(tmp_path):
    (tmp_path / "history.json").write_text("[]")
    with pytest.raises(
        ValueError, match=rf"out_dir={tmp_path} already holds files \(history.json\).*resume={tmp_path}"
    ):
        check_fresh(tmp_path, resuming=False)
    check_fresh(tmp_path, resuming=True)
    check_fresh(tmp_path / "new", resuming=False)


def test_two_runs_with_the_same_out_dir_the_second_refuses(tiny_cfg):
    cfg = tiny_cfg("federation.rounds=1")
    first = start(build(cfg), cfg)
    with pytest.raises(ValueError, match="is in use by another run"):
        start(build(tiny_cfg("federation.rounds=1")), tiny_cfg("federation.rounds=1"))
    first.run()
    with pytest.raises(ValueError, match="already holds files"):
        run(tiny_cfg("federation.rounds=1"))


def test_a_write_that_dies_midway_leaves_the_previous_file(tmp_path):
    path = tmp_path / "history.json"
    write_json([1, 2], path)

    def dies(f):
        f.write(b"[1, 2, 3")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_atomically(path, dies)
    assert json.loads(path.read_text()) == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]  # no temporary file left


@pytest.mark.parametrize("damage", ["truncate", "foreign"])
def test_a_damaged_checkpoint_is_a_clear_error_naming_the_file(tiny_cfg, tmp_path, damage):
    cfg = tiny_cfg("federation.rounds=1")
    run(cfg)
    path = Path(cfg.out_dir) / "checkpoint.pt"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        message = rf"resume: {path} is not a readable checkpoint \(truncated or corrupt"
    else:
        torch.save({"model": torch.zeros(1)}, path)
        message = rf"resume: {path} is not an mfed checkpoint \(it lacks \['round', 'state', 'history', 'fingerprint'\]"
    with pytest.raises(ValueError, match=message):
        load_checkpoint(cfg.out_dir)


def test_a_run_syncs_to_a_storage_uri_and_resumes_from_it(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("MFED_STAGING", str(tmp_path / "staging"))
    uri = f"file://{tmp_path}/remote/run"
    run(tiny_cfg("federation.rounds=1", f"out_dir={uri}"))
    remote = tmp_path / "remote" / "run"
    assert json.loads((remote / "summary.json").read_text())["status"] == "completed"
    assert load_checkpoint(remote)["round"] == 1
    history = run(tiny_cfg("federation.rounds=2", f"resume={uri}", "out_dir=null"))
    assert [r["round"] for r in history] == [1.0, 2.0]
    assert load_checkpoint(remote)["round"] == 2


def test_a_storage_uri_with_a_query_string_gets_the_run_folder_before_the_query(tiny_cfg, tmp_path, monkeypatch):
    from mfed.federation.rundir import join

    assert join("s3://bucket/runs/?endpoint_override=host:9000&scheme=http", "r1", "config.yaml") == (
        "s3://bucket/runs/r1/config.yaml?endpoint_override=host:9000&scheme=http"
    )
    assert join("/data/runs", "r1") == "/data/runs/r1"
    # Execute: a run under storage=<URI with options> (file:// ignores them; S3 reads endpoint and scheme there)
    monkeypatch.setenv("MFED_STAGING", str(tmp_path / "staging"))
    storage = f"file://{tmp_path}/remote?scheme=http"
    cfg = tiny_cfg("federation.rounds=1", f"storage='{storage}'", "out_dir=null", "name=q")  # quoted: it holds '='

    run(cfg)
    # Assert: the folder went under remote/, the options stayed at the URI's end, and it resumes from there
    (folder,) = (tmp_path / "remote").iterdir()
    assert folder.name.endswith("_q") and json.loads((folder / "summary.json").read_text())["status"] == "completed"
    uri = f"file://{folder}?scheme=http"
    history = run(tiny_cfg("federation.rounds=2", f"resume='{uri}'", "out_dir=null"))
    assert [r["round"] for r in history] == [1.0, 2.0] and load_checkpoint(folder)["round"] == 2


class DuringRound:
    """A run callback that calls ``act`` once, after round ``n`` (the run is live and holds its locks)."""

    def __init__(self, n, act):
        self.n, self.act, self.result = n, act, None

    def on_start(self, driver):
        pass

    def on_round_end(self, driver, row):
        if int(row["round"]) == self.n:
            self.result = self.act()

    def on_end(self, driver):
        pass


def test_a_second_writer_of_a_storage_uri_is_refused_and_a_finished_run_leaves_no_lock(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("MFED_STAGING", str(tmp_path / "staging"))
    uri = f"file://{tmp_path}/remote/run"
    cfg = tiny_cfg("federation.rounds=2", f"out_dir={uri}")
    driver = start(build(cfg), cfg)
    remote = tmp_path / "remote" / "run"

    def second_writers():
        held = json.loads((remote / LOCK_NAME).read_text())  # the lock object at the URI names the live run
        other = subprocess.run(  # another process resuming the URI, as from another shell or machine
            [sys.executable, "-c", f"from mfed.federation.rundir import fetch; fetch({uri!r})"],
            capture_output=True, text=True, env={**os.environ, "MFED_STAGING": str(tmp_path / "staging")},
        )  # fmt: skip
        with pytest.raises(ValueError, match="is in use by another run") as here:
            build(tiny_cfg("federation.rounds=3", f"resume={uri}", "out_dir=null"))
        return held, other, str(here.value)

    watch = DuringRound(1, second_writers)
    driver.callbacks = [*driver.callbacks, watch]
    driver.run()
    held, other, here = watch.result
    assert held["pid"] == os.getpid() and "heartbeat" in held
    assert (
        other.returncode != 0 and f"process {os.getpid()}" in other.stderr and "in use by another run" in other.stderr
    )
    assert f"process {os.getpid()}" in here
    # the live run was not disturbed: it completed, and leaves no lock at the URI or in its staging folder
    assert json.loads((remote / "summary.json").read_text())["status"] == "completed"
    assert not (remote / LOCK_NAME).exists() and not list((tmp_path / "staging").rglob(LOCK_NAME))


def test_a_uri_lock_from_another_machine_is_refused_while_fresh_and_taken_over_when_stale(tmp_path):
    import time

    from mfed.federation.rundir import UriLock

    uri = f"file://{tmp_path}/remote/run"
    (tmp_path / "remote" / "run").mkdir(parents=True)
    lock_file = tmp_path / "remote" / "run" / LOCK_NAME
    lock_file.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "then", "heartbeat": time.time()}))
    with pytest.raises(ValueError, match=r"in use by another run \(process 1 on elsewhere since then\)"):
        UriLock(uri).acquire()
    lock_file.write_text(json.dumps({"pid": 1, "host": "elsewhere", "heartbeat": time.time() - 2 * UriLock.STALE_S}))
    mine = UriLock(uri)
    mine.acquire()
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    mine.release()
    assert not lock_file.exists()
