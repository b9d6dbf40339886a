"""Bad input fails with a message naming the field and the allowed values, before any client starts."""

import pytest
from hydra.errors import HydraException

from mfed.cli import main
from mfed.config import load_config
from mfed.run import build
from tests.conftest import TINY


class NoStartBackend:
    """Fails the test if anything tries to start clients."""

    def start(self, specs, setup):
        raise AssertionError("clients started despite bad input")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("federation.rounds=0", "federation.rounds must be >= 1, got 0"),
        ("aggregation.mu=-0.5", "aggregation.mu must be >= 0, got -0.5"),
        ("federation.fraction=0", r"federation.fraction must lie in \(0, 1\], got 0"),
        ("federation.fraction=1.5", r"federation.fraction must lie in \(0, 1\], got 1.5"),
        (
            "federation.clients_per_task=40",
            r"raise the pool size \(data.pool.length for generated scenes\) or lower federation.clients_per_task",
        ),
        ("federation.clients_per_task=0", "federation.clients_per_task must be >= 1, got 0"),
        ("federation.local_epochs=0", "federation.local_epochs must be >= 1, got 0"),
        ("federation.accelerator=tpu", "federation.accelerator must be auto, cpu or gpu"),
        ("aggregation.weighting=median", "weighting must be one of"),
        ("tasks.semseg.name=seg", "tasks.semseg builds a task named 'seg': set tasks.semseg.name=semseg"),
        ("model.encoder.norm=layer", "norm must be one of"),
    ],
)
def test_bad_values_fail_in_build(tiny_cfg, override, message):
    with pytest.raises(ValueError, match=message):
        build(tiny_cfg(override))


def test_unknown_task_names_the_available_ones(tmp_path):
    with pytest.raises(HydraException, match=r"(?s)task/segmentation.*Available options.*semseg"):
        load_config(["+task@tasks.segmentation=segmentation", f"out_dir={tmp_path}"])


def test_cli_reports_bad_input_without_a_traceback(capsys, tmp_path):
    code = main(["train", "federation.rounds=0", "backend=serial", "logger=none", f"out_dir={tmp_path}"])
    assert code == 2
    assert "federation.rounds must be >= 1" in capsys.readouterr().err


def test_no_tasks_is_an_error(tiny_cfg):
    with pytest.raises(ValueError, match="no tasks configured"):
        build(tiny_cfg("~tasks"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "backend.num_cpus_per_client=100",
            "backend.num_cpus_per_client=100 x 6 actors needs 600 CPUs but the cluster has",
        ),
        (
            "backend.num_gpus_per_client=1",
            "backend.num_gpus_per_client=1 x 6 actors needs 6 GPUs but the cluster has 0:",
        ),
    ],
)
def test_resources_that_cannot_fit_are_refused_before_ray_or_wandb_start(
    capsys, tmp_path, monkeypatch, override, message
):
    import ray
    import torch
    import wandb

    def refuse(*args, **kwargs):
        raise AssertionError("started despite resources that cannot fit")

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(ray, "init", refuse)  # (a session-wide test cluster may already run: its size is checked)
    monkeypatch.setattr(wandb, "init", refuse)
    code = main(["train", *TINY, "backend=ray", "logger=wandb", override, f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and __import__("re").search(message, err[0]), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("given", ["env", "config"])
def test_a_cluster_that_cannot_be_joined_is_one_line_naming_where_and_why(capsys, tmp_path, monkeypatch, given):
    # Ray's own failure, as a token cluster joined without its token gives it: a ConnectionError
    # whose cause holds a traceback's text ending in the reason
    import ray

    def refuse(*args, **kwargs):
        try:
            raise RuntimeError("Failed to connect to GCS. Traceback (most recent call last):\n  File ...\n"
                               "ray.exceptions.AuthenticationError: InvalidAuthToken")  # fmt: skip
        except RuntimeError as err:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379") from err

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # (a session-wide test cluster may run)
    monkeypatch.setattr(ray, "init", refuse)
    where = ["backend.address=10.0.0.9:6379"] if given == "config" else []
    if given == "env":
        monkeypatch.setenv("RAY_ADDRESS", "10.0.0.9:6379")
    code = main(["train", *TINY, "backend=ray", "logger=none", *where, f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    key = "backend.address" if given == "config" else "RAY_ADDRESS"
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"mfed: {key}=10.0.0.9:6379: cannot join the Ray cluster there "
                             "(ray.exceptions.AuthenticationError: InvalidAuthToken); ")  # fmt: skip
    assert "export RAY_AUTH_MODE=token" in err[0] and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["aggregation.muu=0.1"], "aggregation.muu is not an argument of aggregation (mfed.aggregation.mfed.MFed): "
                                  "did you mean aggregation.mu?"),
        (["backend.clients_per_acter=2"], "did you mean backend.clients_per_actor?"),
        (["aggregation=fedavg", "aggregation.mu=0.1"], "(mfed.aggregation.fedavg.FedAvgPerTask): it takes weighting"),
        (["--print-config", "+federation.roundz=3"], "federation.roundz=3 is not a known key: did you mean"),
    ],
)  # fmt: skip
def test_a_mistyped_key_gets_one_line_with_the_fix_even_for_print_config(capsys, tmp_path, args, message):
    assert main(["train", *args, "logger=none", f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not list(tmp_path.iterdir())


def test_a_preview_of_no_samples_is_refused(capsys):
    assert main(["data", "preview", "--n", "0"]) == 2
    assert "--n 0: the preview needs at least one sample" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("resume=nosuch://x/run", "resume=nosuch://x/run: Unrecognized filesystem type"),
        ("out_dir=nosuch://x/run", "out_dir=nosuch://x/run: Unrecognized filesystem type"),
        ("storage='s3://bucket/runs?endpoint_override=127.0.0.1:9&scheme=http'",
         "storage=s3://bucket/runs?endpoint_override=127.0.0.1:9&scheme=http cannot be written"),
    ],
)  # fmt: skip
def test_a_storage_uri_that_cannot_work_is_refused_before_anything_starts(capsys, tmp_path, monkeypatch, arg, message):
    monkeypatch.setenv("MFED_STAGING", str(tmp_path / "staging"))
    assert main(["train", *TINY, arg]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "staging").exists()
