"""What an earlier benchmark left in out_dir: completed runs kept, checkpoints resumed, the rest moved or refused."""

import json

import pytest
from omegaconf import OmegaConf

from mfed.config import load_config
from mfed.sweeps.continuation import find_earlier
from mfed.sweeps.plan import Trial, trial_overrides
from tests.conftest import TINY

BASE = [o for o in TINY if o != "backend=serial"]


def trials(*names):
    return [Trial(n, (f"seed={k}", "aggregation=mfed"), 4) for k, n in enumerate(names)]


def leave(out_dir, trial, *, status=None, checkpoint=False, config=True, changes=()):
    """A trial folder as an earlier command left it: its config.yaml (with ``changes``), summary, checkpoint."""
    folder = out_dir / trial.name
    folder.mkdir(parents=True)
    (folder / "console.log").write_text("round 1\n")
    if config:
        cfg = load_config([*trial_overrides(trial, BASE, out_dir, "g", 0.5, 2), *changes])
        OmegaConf.save(cfg, folder / "config.yaml")
    if status:
        (folder / "summary.json").write_text(json.dumps({"status": status}))
    if checkpoint:
        (folder / "checkpoint.pt").write_bytes(b"state")
    return folder


def test_completed_runs_are_kept_stopped_ones_resume_and_leftovers_move_aside(tmp_path):
    # Prepare: six planned trials; the out_dir holds five of them in different states, one not at all
    done, diverged, stopped, killed, failed, fresh = plan = trials(
        "done", "diverged", "stopped", "killed", "failed", "fresh"
    )
    leave(tmp_path, done, status="completed", changes=["logger=wandb", "backend.num_cpus_per_client=2"])
    leave(tmp_path, diverged, status="diverged", checkpoint=True)  # an outcome too: not run again
    leave(tmp_path, stopped, status="interrupted", checkpoint=True)
    leave(tmp_path, killed, checkpoint=True)  # no summary: the process was killed part way
    leave(tmp_path, failed, status="failed", config=False)  # failed before its config was written
    (tmp_path / "failed.earlier-1").mkdir()  # an earlier move-aside is not overwritten
    # Execute
    earlier = find_earlier(plan, BASE, tmp_path, "g")
    # Assert: where and how a run ran (logger, backend) is no difference
    assert earlier.kept == ["done", "diverged"] and earlier.resumed == ["stopped", "killed"]
    assert earlier.moved == {"failed": str(tmp_path / "failed.earlier-2")}
    assert not (tmp_path / "failed").exists() and (tmp_path / "failed.earlier-2" / "console.log").is_file()
    assert (tmp_path / "done" / "summary.json").is_file() and (tmp_path / "stopped" / "checkpoint.pt").is_file()
    assert earlier.line(tmp_path) == (
        f"continuing in {tmp_path}: 2 kept, 2 resumed from their checkpoints, "
        "1 without a checkpoint moved aside to <trial>.earlier-<k>"
    )
    assert find_earlier([fresh], BASE, tmp_path / "new", "g").line(tmp_path / "new") is None


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        (["federation.rounds=3"], "federation.rounds is 2 now, 3 there"),
        (["data.pool.length=60"], "data.pool.length is 48 now, 60 there"),
    ],
)
def test_a_folder_with_other_settings_stops_the_command_and_nothing_moves(tmp_path, changes, named):
    # Prepare: one trial left without a checkpoint (it would move aside) and one run with other settings
    leftover, clash = plan = trials("leftover", "clash")
    leave(tmp_path, leftover, status="failed", config=False)
    leave(tmp_path, clash, status="completed", changes=changes)
    # Execute / Assert: the message names the trial and the setting; the leftover is still where it was
    with pytest.raises(ValueError, match="holds trial clash, run with other settings") as err:
        find_earlier(plan, BASE, tmp_path, "g")
    assert named in str(err.value) and "give a new out_dir" in str(err.value)
    assert (tmp_path / "leftover" / "console.log").is_file()
