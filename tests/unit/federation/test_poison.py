"""Finite poison, inflated weights, defences that defend nothing, runs that diverge, resume that trusts too much."""

import dataclasses
import json
import math
import stat
from pathlib import Path

import pytest
import torch

from mfed.aggregation.functional import merge_scopes
from mfed.cli import main
from mfed.federation.divergence import LOSS_RATIO, divergence
from mfed.federation.local_ray import restrict, token_path
from mfed.run import build, run, start
from mfed.tasks.semseg import SemanticSegmentation
from mfed.types import ClientUpdate, shared_scopes_of
from tests.conftest import TINY
from tests.unit.federation.test_faults import BAD, Tampering, encoder_distance, run_tampered, without_bad

HONEST = "edges-0"  # the attacker's task's other client


def negative_variance(u: ClientUpdate) -> ClientUpdate:
    if u.client_id != BAD:
        return u
    state = {k: torch.full_like(v, -10.0) if k.endswith("running_var") else v for k, v in u.state.items()}
    return dataclasses.replace(u, state=state)


class Flipping(Tampering):
    """The attacker sends ``sent - factor * (its honest update)``: its update sign-flipped and scaled."""

    def __init__(self, inner, factor: float) -> None:
        super().__init__(inner, lambda u: u)
        self.factor = factor

    def fit(self, client_ids, state, round_idx, plan):
        for u in self.inner.fit(client_ids, state, round_idx, plan):
            if u.client_id == BAD:
                sent = merge_scopes(state, shared_scopes_of(u.client_id, u.tasks))
                flip = {k: (sent[k] - self.factor * (v - sent[k])).to(v.dtype) for k, v in u.state.items()
                        if v.is_floating_point() and k in sent}  # fmt: skip
                u = dataclasses.replace(u, state={**u.state, **flip})
            yield u


def test_negative_batchnorm_variances_are_rejected_every_round_and_the_state_stays_in_its_domain(tiny_cfg):
    # Prepare / Execute
    cfg = tiny_cfg("federation.rounds=2")
    driver = start(build(cfg), cfg)
    driver.backend = Tampering(driver.backend, negative_variance)
    driver.run()
    # Assert: reported under each round's faults, in history.json too; every variance stays >= 0
    assert [(f.round, f.client_id) for f in driver.faults] == [(1, BAD), (2, BAD)]
    assert "negative values in encoder." in driver.faults[0].reason and "running_var" in driver.faults[0].reason
    rows = json.loads((Path(cfg.out_dir) / "history.json").read_text())
    assert [row["faults"][0]["client_id"] for row in rows] == [BAD, BAD]
    for scope in driver.state.values():
        for key, value in scope.items():
            assert torch.isfinite(value.float()).all(), key
            assert not key.endswith("running_var") or bool((value >= 0).all()), key


@pytest.mark.parametrize("factor", [10.0, 1e30])
def test_sign_flipped_updates_are_rejected_or_contained_and_the_honest_client_of_the_task_is_kept(tiny_cfg, factor):
    # Prepare: the attacker sends its update sign-flipped and scaled; clipping at an honest norm is on
    honest = run_tampered(tiny_cfg, without_bad, rounds=2)
    initial = honest.strategy.init_state(honest.model)
    driver = build(tiny_cfg("federation.rounds=2", "defences.clip_norm=0.5"))
    driver.backend = Flipping(driver.backend, factor)
    # Execute
    driver.run()
    # Assert: x1e30 is rejected in every round; x10 passes the norm bound and is contained by clipping
    rejected = [(f.round, f.client_id) for f in driver.faults]
    assert rejected == ([(1, BAD), (2, BAD)] if factor > 1e3 else [])
    assert HONEST not in {f.client_id for f in driver.faults}
    assert encoder_distance(driver.state, honest.state) <= encoder_distance(honest.state, initial)
    assert all(torch.isfinite(v.float()).all() for scope in driver.state.values() for v in scope.values())


def test_an_inflated_example_count_is_rejected(tiny_cfg):
    def inflate(u):
        return dataclasses.replace(u, num_examples=10**9) if u.client_id == BAD else u

    driver = run_tampered(tiny_cfg, inflate)
    assert [f.client_id for f in driver.faults] == [BAD]
    shard = len(driver.spec_of[BAD].train_indices)
    assert f"claims 1000000000 examples but its shard holds {shard}" in driver.faults[0].reason


def test_a_metric_that_is_not_a_number_is_rejected_not_a_crash(tiny_cfg):
    def word(u):
        return dataclasses.replace(u, metrics={**u.metrics, "loss": "low"}) if u.client_id == BAD else u

    driver = run_tampered(tiny_cfg, word)
    assert "non-finite or non-numeric training loss 'low'" in driver.faults[0].reason


def test_a_trimmed_mean_that_trims_nobody_is_refused_naming_what_it_needs(tiny_cfg):
    with pytest.raises(ValueError, match=r"trimmed_mean would bound one bad client in no scope.*needs 10 clients"):
        build(tiny_cfg("task_mix=seg_depth", "defences.robust=trimmed_mean"))


def nan_state(state):
    floating = {k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()}
    return {k: torch.full_like(v, math.nan) if k in floating else v for k, v in state.items()}


def test_a_run_whose_metrics_are_not_finite_is_diverged_not_completed(tiny_cfg):
    # Prepare: every client's validation metric states come back NaN (as a model that predicts NaN gives)
    cfg = tiny_cfg("federation.rounds=1", "data.test=null")
    driver = start(build(cfg), cfg)
    inner = driver.backend.evaluate

    def evaluate(client_ids, state, split="val"):
        for e in inner(client_ids, state, split):
            nan = {t: {m: nan_state(s) for m, s in states.items()} for t, states in e.metric_states.items()}
            metrics = {t: dict.fromkeys(ms, math.nan) for t, ms in e.metrics.items()}
            yield dataclasses.replace(e, metrics=metrics, metric_states=nan)

    driver.backend.evaluate = evaluate
    # Execute
    driver.run()
    # Assert: each client named under the round's faults, and the run is diverged in summary.json
    assert {f.client_id for f in driver.faults if f.kind == "nonfinite"} == set(driver.client_ids)
    summary = json.loads((Path(cfg.out_dir) / "summary.json").read_text())
    assert summary["status"] == "diverged" and "non-finite headline metrics" in summary["error"]


def test_divergence_names_a_loss_that_rose_past_its_bound():
    tasks = {"semseg": SemanticSegmentation()}
    rows = [{"train/semseg/loss": 2.0, "val/semseg/mIoU": 10.0}]
    rows.append({"train/semseg/loss": 2.0 * LOSS_RATIO * 1.5, "val/semseg/mIoU": 9.0})
    assert "train/semseg/loss rose from 2 in round 1 to 300" in divergence(rows, tasks)
    assert divergence(rows[:1], tasks) is None
    assert "val/semseg/mIoU" in divergence([{**rows[0], "val/semseg/mIoU": math.nan}], tasks)


def test_a_cli_run_whose_losses_explode_is_diverged_and_exits_non_zero(tmp_path, capsys):
    # Prepare: the norm bound off, so the exploding updates are all accepted (every value stays finite)
    overrides = ["federation.rounds=3", "optimizer.lr=1000", "defences.norm_ratio=null", f"out_dir={tmp_path / 'r'}"]
    # Execute
    code = main(["train", *TINY, *overrides])
    # Assert
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert code == 1 and summary["status"] == "diverged" and summary["rounds"] == 3
    assert "the run diverged: train/" in capsys.readouterr().err


def test_with_the_norm_bound_on_exploding_updates_are_rejected_naming_the_bound(tmp_path, capsys):
    assert main(["train", *TINY, "optimizer.lr=1000", f"out_dir={tmp_path / 'r'}"]) == 1
    assert "defences.norm_ratio" in capsys.readouterr().err


def test_resume_refuses_a_folder_without_or_with_a_broken_config(tiny_cfg, tmp_path, capsys):
    run(tiny_cfg("federation.rounds=1", f"out_dir={tmp_path / 'run'}"))
    config = tmp_path / "run" / "config.yaml"
    text = config.read_text()
    config.unlink()
    assert main(["train", f"resume={tmp_path / 'run'}", "federation.rounds=2"]) == 2
    assert f"there is no {tmp_path / 'run'}/config.yaml, so the run's settings are unknown" in capsys.readouterr().err
    config.write_text(text[: len(text) // 3])
    assert main(["train", f"resume={tmp_path / 'run'}", "federation.rounds=2"]) == 2
    assert "config.yaml is not a whole config" in capsys.readouterr().err


def test_resume_refuses_a_checkpoint_with_nan_or_foreign_objects(tiny_cfg, tmp_path, capsys):
    run(tiny_cfg("federation.rounds=1", f"out_dir={tmp_path / 'run'}"))
    path = tmp_path / "run" / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state"]["global"] = {k: torch.full_like(v, math.nan) if v.is_floating_point() else v
                                     for k, v in checkpoint["state"]["global"].items()}  # fmt: skip
    torch.save(checkpoint, path)
    assert main(["train", f"resume={tmp_path / 'run'}", "federation.rounds=2"]) == 2
    assert "the checkpoint's state has non-finite values in ['global']" in capsys.readouterr().err
    torch.save({"state": Path("x"), **{k: v for k, v in checkpoint.items() if k != "state"}}, path)
    assert main(["train", f"resume={tmp_path / 'run'}", "federation.rounds=2"]) == 2
    err = capsys.readouterr().err
    assert "holds Python objects that mfed never writes" in err and "weights_only" not in err


def test_secret_files_are_made_readable_by_their_owner_only(tmp_path, monkeypatch):
    token = tmp_path / "auth_token"
    token.write_text("secret")
    token.chmod(0o644)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    restrict(token_path())
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


def failing_on_round(round_to_fail: int, error: OSError):
    from mfed.federation import checkpointing

    real = checkpointing.save_atomic

    def save(obj, path):
        if obj["round"] == round_to_fail:
            raise error
        real(obj, path)

    return save


def test_a_full_disk_is_named_and_the_checkpointed_round_is_the_one_on_disk(tiny_cfg, monkeypatch, capsys):
    # Prepare: the disk fills up while round 2's checkpoint is written
    import errno

    from mfed.federation import checkpointing

    monkeypatch.setattr(checkpointing, "save_atomic", failing_on_round(2, OSError(errno.ENOSPC, "No space left")))
    cfg = tiny_cfg("federation.rounds=3")
    driver = start(build(cfg), cfg)
    # Execute
    with pytest.raises(OSError, match="checkpoint of round 2 could not be written") as err:
        driver.run()
    # Assert: the device named; round 1 is what the checkpoint holds, and the console says round 1
    assert "is full" in str(err.value) and "the checkpoint there holds round 1" in str(err.value)
    assert torch.load(Path(cfg.out_dir) / "checkpoint.pt", weights_only=True)["round"] == 1
    assert "round 1 is checkpointed" in capsys.readouterr().out
    assert json.loads((Path(cfg.out_dir) / "summary.json").read_text())["status"] == "failed"


def test_a_read_only_folder_is_named_in_one_line_without_a_second_traceback(tiny_cfg, monkeypatch, caplog):
    import errno

    from mfed import atomic

    denied = PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(atomic, "_replace", lambda path, write: (_ for _ in ()).throw(denied))
    cfg = tiny_cfg("federation.rounds=1")
    driver = start(build(cfg), cfg)
    with pytest.raises(OSError, match=r"history.json could not be written: .* cannot be written \(read-only"):
        driver.run()
    failed = [r for r in caplog.records if "clean-up step failed" in r.getMessage()]
    assert failed and all(r.exc_info is None for r in failed)  # one line each, no second traceback
    assert "summary.json could not be written" in failed[0].getMessage()


def test_resuming_into_a_read_only_folder_is_one_line_and_exit_2(tiny_cfg, monkeypatch, capsys):
    import errno

    from mfed import run as run_module

    cfg = tiny_cfg("federation.rounds=1")
    run(cfg)
    lock = Path(cfg.out_dir) / ".mfed.lock"

    class Denied:
        def __init__(self, out_dir):
            pass

        def acquire(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(lock))

    monkeypatch.setattr(run_module, "RunLock", Denied)  # root ignores a folder's mode: the refusal as a user gets it
    code = main(["train", "federation.rounds=2", f"resume={cfg.out_dir}"])  # the run's own settings
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert err.startswith(f"mfed: cannot write {lock}: Permission denied; give a writable out_dir="), err


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB file system of its own (tmpfs, mounted as root); else ``None`` where mounting is not allowed."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


class FillAfter:
    """A run callback that fills the run's file system after round ``n``, leaving ``spare`` bytes."""

    def __init__(self, n, folder, spare=2048):
        self.n, self.folder, self.spare = n, folder, spare

    def on_start(self, driver):
        pass

    def on_round_end(self, driver, row):
        import os

        if int(row["round"]) == self.n:
            free = os.statvfs(self.folder).f_bavail * os.statvfs(self.folder).f_frsize
            (self.folder / "filler").write_bytes(b"\0" * max(0, free - self.spare))

    def on_end(self, driver):
        pass


def test_a_really_full_disk_is_named_and_the_checkpoint_holds_the_last_written_round(tiny_cfg, small_disk, monkeypatch):
    # Prepare: the run on a 4 MB file system, filled after round 1 (where mounting is not allowed, the disk
    # fills by the same error raised from the writer)
    import errno

    from mfed.federation import checkpointing

    if small_disk is None:
        monkeypatch.setattr(checkpointing, "save_atomic", failing_on_round(2, OSError(errno.ENOSPC, "No space left")))
        out = Path(tiny_cfg().out_dir)
    else:
        out = small_disk / "run"
    cfg = tiny_cfg("federation.rounds=3", f"out_dir={out}")
    driver = start(build(cfg), cfg)
    if small_disk is not None:
        driver.callbacks = [*driver.callbacks, FillAfter(1, small_disk)]  # after round 1 is written
    # Execute
    with pytest.raises(OSError) as err:
        driver.run()
    # Assert: the error names the full device (at round 2's first write: history.json, then the checkpoint);
    # the checkpoint on disk is whole and holds round 1, and the run says no later round was checkpointed
    assert "is full" in str(err.value) and str(out) in str(err.value), str(err.value)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["round"] == 1
    assert driver.status == "failed" and driver.info.get("checkpointed") == 1, driver.info
