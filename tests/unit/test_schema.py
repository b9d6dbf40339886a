"""check_config: a bad config fails in one line naming the key, the bad value and the fix, before any client starts."""

import os
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from mfed.cli import main
from mfed.config import load_config
from mfed.federation.backends import SerialBackend
from mfed.federation.ray_backend import RayBackend
from mfed.schema import Allowed, ConfigError, check_config, check_writable, did_you_mean, error_line
from tests.conftest import TINY

BAD = [
    (["federation.rounds=ten"], "federation.rounds must be an integer, got 'ten': e.g. federation.rounds=10"),
    (["federation.rounds=2.5"], "federation.rounds must be an integer, got 2.5"),
    (["federation.rounds=true"], "federation.rounds must be an integer, got true"),
    (["seed=abc"], "seed must be an integer, got 'abc': e.g. seed=0"),
    (
        ["+federation.roundz=3"],
        "federation.roundz=3 is not a known key: did you mean federation.rounds? (federation takes rounds,",
    ),
    (["+federation.foo=1"], "federation.foo=1 is not a known key: remove it (federation takes rounds,"),
    (
        ["+model.encoder.widthz=[8]"],
        "model.encoder.widthz=[8] is not a parameter of mfed.models.encoder.ConvEncoder: "
        "did you mean model.encoder.widths? (model.encoder takes in_channels, widths, norm)",
    ),
    (["model.encoder.widths=[8,x]"], "model.encoder.widths[1] must be an integer, got 'x'"),
    (["optimizer.lr=fast"], "optimizer.lr must be a number, got 'fast': e.g. optimizer.lr=0.001"),
    (["optimizer.lr='0.1'"], "optimizer.lr must be a number, got '0.1'"),  # a constructor gets it as is: no str
    (["federation.fraction=abc"], "federation.fraction must be a number, got 'abc': e.g. federation.fraction=1.0"),
    (["aggregation.mu=x"], "aggregation.mu must be a number, got 'x': e.g. aggregation.mu=0.01"),
    (["aggregation.mu=null"], "aggregation.mu must be a number, got null"),
    (["defences.clip_norm=big"], "defences.clip_norm must be a number or null, got 'big'"),
    (["aggregation.robust=median"], "aggregation.robust is not a known key: did you mean defences.robust?"),
    (["+aggregation.clip_norm=1"], "MFed: did you mean defences.clip_norm? (aggregation takes mu, freeze_encoder,"),
    (["out_dir=/proc/x"], "out_dir=/proc/x cannot be written: /proc is a kernel file system; choose another folder"),
    (["out_dir=/sys/x"], "out_dir=/sys/x cannot be written: /sys is a kernel file system; choose another folder"),
    (["resume=/nonexistent"], "resume: no run at /nonexistent (no checkpoint at /nonexistent: give a run's output"),
    (["data.val_fraction=half"], "data.val_fraction must be a number, got 'half': e.g. data.val_fraction=0.05"),
    (["data.num_classes=many"], "data.num_classes must be an integer, got 'many'"),  # not tasks.semseg's copy
    (["+roundz=3"], "roundz=3 is not a known key: did you mean federation.rounds? (the top level takes seed,"),
    (
        ["backend=ray", "backend.placement=diagonal"],
        "backend.placement must be one of ('pack', 'spread'), got 'diagonal'",
    ),
    (["logger=wandb", "logger.tags=3"], "logger.tags must be a list (a string each), got 3"),
    (["+tasks.foo=3"], "tasks.foo must be an object config with _target_, got 3"),
]


@pytest.fixture
def no_clients(monkeypatch):
    """Record (and refuse) any attempt to start clients."""
    started = []

    def start(self, specs, setup):
        started.append(specs)
        raise AssertionError("clients started despite bad input")

    monkeypatch.setattr(SerialBackend, "start", start)
    monkeypatch.setattr(RayBackend, "start", start)
    return started


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mfed: ")
    return err.strip().removeprefix("mfed: ")


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_train_refuses_bad_input_in_one_line(overrides, message, tmp_path, capsys, no_clients):
    code = main(["train", *TINY, f"out_dir={tmp_path / 'run'}", *overrides])
    line = one_error_line(capsys)
    assert code == 2
    assert message in line
    assert not no_clients
    assert not (tmp_path / "run").exists()


def test_sweep_config_error_is_one_line(capsys):
    assert main(["sweep", "sweep=quick", "federation.rounds=ten"]) == 2
    assert one_error_line(capsys) == "federation.rounds must be an integer, got 'ten': e.g. federation.rounds=10"


def test_sweep_trial_errors_come_before_ray_starts(monkeypatch, tmp_path, capsys):
    import ray

    def init(*args, **kwargs):
        raise AssertionError("ray.init despite a bad trial")

    monkeypatch.setattr(ray, "init", init)
    # every trial of sweep=mu sets aggregation.mu, which FedAvg does not have: planning fails, Ray never starts
    code = main(["sweep", "sweep=mu", "aggregation=fedavg", *TINY, f"out_dir={tmp_path / 'sweep'}"])
    assert code == 2
    expected = "aggregation.mu is not an argument of aggregation (mfed.aggregation.fedavg.FedAvgPerTask): it takes "
    assert one_error_line(capsys) == expected + "weighting, name"


def test_sweep_unknown_option_is_one_line(capsys):
    assert main(["sweep", "sweep=nope"]) == 2
    expected = "sweep=nope: there is no configs/sweep/nope.yaml; choose one of mu, quick, task_mixes"
    assert one_error_line(capsys) == expected


def test_data_preview_without_data_is_one_line(tmp_path, capsys):
    code = main(["data", "preview", "data.pool.items.root=/nonexistent", "--out", str(tmp_path / "p.png")])
    assert code == 2
    line = one_error_line(capsys)
    assert "not found in /nonexistent" in line and "data.pool.items.root" in line
    assert not (tmp_path / "p.png").exists()


def test_data_preview_typo_is_one_line(capsys):
    assert main(["data", "preview", "data.pool.sizee=3"]) == 2
    expected = "data.pool.sizee is not an argument of data.pool (mfed.data.scene_dataset.SceneDataset): did you mean "
    assert one_error_line(capsys) == expected + "data.pool.size?"


def test_the_default_config_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("MFED_STORAGE", str(tmp_path))
    check_config(load_config())  # out_dir null: storage is checked
    check_config(load_config([f"out_dir={tmp_path / 'a' / 'b'}", "resume=" + str(tmp_path)]))
    check_config(load_config([f"out_dir=file://{tmp_path}/run", "federation.rounds='3'"]))  # a plain key converts


def test_storage_is_checked_when_out_dir_is_not_given(monkeypatch):
    monkeypatch.setenv("MFED_STORAGE", "/proc/runs")
    with pytest.raises(ConfigError, match="storage=/proc/runs cannot be written: /proc is a kernel file system"):
        check_config(load_config())


def test_an_unresolvable_config_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="the config cannot be resolved at data.test.items: .*pool") as err:
        check_config(load_config([f"out_dir={tmp_path}", "data.pool=3"]))
    assert "\n" not in str(err.value)


def test_a_target_taking_kwargs_accepts_any_key(tmp_path):
    cfg = load_config([f"out_dir={tmp_path}"])
    OmegaConf.update(cfg, "backend", {"_target_": "argparse.Namespace", "anything": [1, "x"]}, force_add=True)
    check_config(cfg)


def test_an_unimportable_target_is_named(tmp_path):
    cfg = load_config([f"out_dir={tmp_path}", "aggregation._target_=mfed.aggregation.nope.Nope"])
    with pytest.raises(ConfigError, match=r"aggregation._target_=mfed.aggregation.nope.Nope cannot be imported"):
        check_config(cfg)


def test_out_dir_must_be_a_writable_folder(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=f"out_dir={tmp_path}/file/run cannot be written: .* is a file, not a folder"):
        check_writable("out_dir", str(tmp_path / "file" / "run"))
    check_writable("out_dir", str(tmp_path / "new" / "deeper"))  # created later: the parent is writable
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(ConfigError, match=f"no write permission in {tmp_path}; choose another folder"):
        check_writable("out_dir", str(tmp_path / "new"))


def test_did_you_mean():
    assert did_you_mean("roundz", ["clients_per_task", "rounds", "seed"]) == "rounds"
    assert did_you_mean("widthz", ["in_channels", "widths", "norm"]) == "widths"
    assert did_you_mean("banana", ["rounds", "seed"]) is None
    assert did_you_mean("root", ["robust"]) == "robust"
    assert did_you_mean("root", ["robust"], cutoff=0.75) is None


def test_allowed_values():
    number = Allowed(frozenset({"float"}), nullable=True)
    assert number.accepts(1) and number.accepts(0.5) and number.accepts("0.5") and number.accepts(None)
    assert not number.accepts(True) and not number.accepts("half") and not number.accepts([1])
    assert number.describe() == "a number or null"
    integer = Allowed(frozenset({"int"}), strict=True)
    assert integer.accepts(3) and integer.accepts(3.0) and not integer.accepts(3.5) and not integer.accepts("3")
    assert Allowed(frozenset({"str"}), choices=("pack", "spread")).describe() == "one of 'pack', 'spread' or a string"


def test_hydra_errors_become_one_line():
    with pytest.raises(MissingConfigException) as missing:
        load_config(["aggregation=foo"])
    expected = (
        "aggregation=foo: there is no configs/aggregation/foo.yaml; choose one of centralised, centralised_epochs, "
    )
    expected += (
        "ditto, fedamp, fedavg, fedavg_all, feddea, fedhca2, fedprox, fedrep, local, matfl, mfed, mfed_ca, "
        "mfed_frozen_encoder, mfed_mu0, "
    )
    expected += "mfed_private_decoders"
    assert error_line(missing.value) == expected
    with pytest.raises(ConfigCompositionException) as typo:
        load_config(["federation.roundz=3"])
    assert error_line(typo.value) == "federation.roundz is not a known key: did you mean federation.rounds?"
    with pytest.raises(ConfigCompositionException) as append:
        load_config(["+seed=3"])
    assert "\n" not in error_line(append.value) and "++seed=3" in error_line(append.value)
