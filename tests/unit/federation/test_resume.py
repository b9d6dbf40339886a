import json

import pytest
import torch

from mfed.config import config_dir
from mfed.run import build, run

MIX = ("task_mix=seg_depth",)


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tiny_cfg, tmp_path):
    # Prepare: 3 rounds straight, and 2 rounds then a resume to 3
    straight = build(tiny_cfg(*MIX, "federation.rounds=3", f"out_dir={tmp_path / 'straight'}"))
    straight.run()
    run(tiny_cfg(*MIX, "federation.rounds=2", f"out_dir={tmp_path / 'first'}"))
    # Execute
    resumed = build(
        tiny_cfg(*MIX, "federation.rounds=3", f"resume={tmp_path / 'first'}", f"out_dir={tmp_path / 'rest'}")
    )
    history = resumed.run()
    # Assert: the same server state, and the same rows
    for scope, tensors in straight.state.items():
        for key, value in tensors.items():
            torch.testing.assert_close(resumed.state[scope][key], value, rtol=0, atol=0)
    assert [r["round"] for r in history] == [1.0, 2.0, 3.0]
    assert history[-1]["val/semseg/mIoU"] == straight.history[-1]["val/semseg/mIoU"]


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (("federation.rounds=1",), "the checkpoint has 1 rounds; raise federation.rounds above 1"),
        (("seed=5",), "the checkpoint's seed is 0, this run's is 5; it must stay as the run had it"),
        (
            ("aggregation=fedavg", "federation.rounds=2"),
            "the checkpoint's aggregation._target_ is 'mfed.aggregation.mfed.MFed', this run's is 'mfed.aggregation.f",
        ),
    ],
)
def test_resume_refuses_a_different_or_finished_setup(tiny_cfg, tmp_path, second, message):
    run(tiny_cfg(*MIX, "federation.rounds=1", f"out_dir={tmp_path / 'first'}"))
    with pytest.raises(ValueError, match=message):
        build(
            tiny_cfg(*MIX, "federation.rounds=2", *second, f"resume={tmp_path / 'first'}", f"out_dir={tmp_path / 'b'}")
        )


FOLD_OPTIONS = [f"aggregation={p.stem}" for p in sorted((config_dir() / "aggregation").glob("*.yaml"))]
FOLD_OPTIONS += [f"server_optimizer={p.stem}" for p in sorted((config_dir() / "server_optimizer").glob("*.yaml"))]


@pytest.mark.parametrize("option", [o for o in FOLD_OPTIONS if not o.endswith("=none")])
def test_every_strategy_and_server_optimizer_resumes_bit_identically(tiny_cfg, tmp_path, option):
    # Prepare: 3 rounds straight, and 2 rounds then a resume to 3 (half the clients per round);
    # every option of configs/aggregation and configs/server_optimizer (with M-Fed), found on disk
    args = (*MIX, option, "federation.fraction=0.5")
    strategy = option.removeprefix("aggregation=")
    straight = build(tiny_cfg(*args, "federation.rounds=3", f"out_dir={tmp_path / 'straight'}"))
    straight.run()
    run(tiny_cfg(*args, "federation.rounds=2", f"out_dir={tmp_path / 'first'}"))
    # Execute
    resumed = build(tiny_cfg(*args, "federation.rounds=3", f"resume={tmp_path / 'first'}", f"out_dir={tmp_path / 'b'}"))
    resumed.run()
    # Assert: private models (Local's, FedRep's decoders, Ditto's personal ones) are in the server
    # state, and everything matches bit for bit
    assert set(resumed.state) == set(straight.state)
    if strategy in ("local", "fedrep", "ditto", "mfed_private_decoders"):
        assert {s for s in straight.state if s.startswith("client:")} == {"client:" + c for c in straight.client_ids}
        assert straight.history[-1]["comm/private_bytes"] > 0
        assert (straight.history[-1]["comm/bytes_up"] == 0) == (strategy == "local")
    if option.startswith("server_optimizer="):  # its moments are server-only state, checkpointed and restored
        assert any(k.startswith("server_optimizer/") for k in straight.state["server"])
    for scope, tensors in straight.state.items():
        for key, value in tensors.items():
            torch.testing.assert_close(resumed.state[scope][key], value, rtol=0, atol=0)
    assert resumed.history[-1] == {**straight.history[-1], "time/round_s": resumed.history[-1]["time/round_s"]}


def test_missing_checkpoint_is_a_clear_error(tiny_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        build(tiny_cfg(*MIX, f"resume={tmp_path / 'nowhere'}"))


def test_a_moved_run_resumes_where_it_is_now_not_where_it_was_made(tmp_path):
    import shutil

    from mfed.cli import main
    from tests.conftest import TINY

    # Prepare: one round in one folder, then the folder moved (as scp -r then resume= would)
    assert main(["train", *TINY, "federation.rounds=1", f"out_dir={tmp_path / 'made'}"]) == 0
    shutil.move(tmp_path / "made", tmp_path / "moved")
    # Execute
    assert main(["train", f"resume={tmp_path / 'moved'}", "federation.rounds=2"]) == 0
    # Assert: the run went on in its new folder; the old one was not made again
    assert not (tmp_path / "made").exists()
    assert len(json.loads((tmp_path / "moved" / "history.json").read_text())) == 2
    assert f"out_dir: {tmp_path / 'moved'}" in (tmp_path / "moved" / "config.yaml").read_text()


def test_resume_takes_the_runs_own_group_and_names_what_another_would_change(tmp_path, capsys):
    from mfed.cli import main

    # Prepare: one round on shapes at the group's own settings
    first = tmp_path / "first"
    assert main(["train", "data=shapes", "backend=serial", "logger=none", "federation.rounds=1",
                 "federation.clients_per_task=1", "data.pool.length=24", f"out_dir={first}"]) == 0  # fmt: skip
    capsys.readouterr()
    # Execute / Assert: another group, or the same group at other settings, is refused naming a difference
    assert main(["train", f"resume={first}", "data=fashion_scenes"]) == 2
    err = capsys.readouterr().err
    assert "resume: 'data=fashion_scenes' would change the run's data (data." in err and "leave it off" in err
    assert main(["train", f"resume={first}", "data=shapes"]) == 2
    assert "data.pool.length is 2400 there, 24 in the run" in capsys.readouterr().err
    assert len(json.loads((first / "history.json").read_text())) == 1
    # naming the group the run holds as it holds it changes nothing: the run goes on
    assert main(["train", f"resume={first}", "logger=none", "federation.rounds=2"]) == 0
    assert len(json.loads((first / "history.json").read_text())) == 2


def test_a_run_whose_config_predates_choices_resumes_and_keeps_its_own_name(tmp_path):
    # Prepare: a 1-round run whose config.yaml has no `choices` (as runs written before it was recorded)
    from omegaconf import OmegaConf

    from mfed.cli import main
    from tests.conftest import TINY

    out = tmp_path / "run"
    assert main(["train", *TINY, "federation.rounds=1", "name=old-name", f"out_dir={out}"]) == 0
    saved = OmegaConf.load(out / "config.yaml")
    del saved["choices"]
    OmegaConf.save(saved, out / "config.yaml")
    # Execute
    code = main(["train", f"resume={out}", "federation.rounds=2"])
    # Assert
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0 and summary["status"] == "completed" and summary["rounds"] == 2
    assert OmegaConf.load(out / "config.yaml").name == "old-name"
