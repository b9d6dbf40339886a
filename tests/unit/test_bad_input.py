"""Bad input fails with a message naming the field and the allowed values, before any client starts."""

import socket

import pytest
from hydra.errors import HydraException

from mfed.cli import main
from mfed.config import load_config
from mfed.federation import ray_join
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
    monkeypatch.setattr(ray_join, "unreachable", lambda address: None)  # the port answers; Ray refuses
    monkeypatch.setattr(ray_join, "token_refused", lambda address: None)  # ...only once ray.init runs
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


def closed_port() -> int:
    """A local port where nothing listens: bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("given", "scheme"), [("config", ""), ("env", ""), ("config", "ray://")])
def test_an_address_where_nothing_listens_is_one_line_without_calling_ray_init(
    capsys, tmp_path, monkeypatch, given, scheme
):
    # ray.init itself would retry there for minutes: the address is probed first
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("ray.init called for an address where nothing listens")

    address = f"{scheme}127.0.0.1:{closed_port()}"
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # (a session-wide test cluster may run)
    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    where = [f"backend.address={address}"] if given == "config" else []
    if given == "env":
        monkeypatch.setenv("RAY_ADDRESS", address)
    code = main(["train", *TINY, "backend=ray", "logger=none", *where, f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    key = "backend.address" if given == "config" else "RAY_ADDRESS"
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"mfed: {key}={address}: cannot join the Ray cluster there (nothing answers a TCP connect")
    assert "check the address" in err[0] and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("address", "expected"),
    [("10.0.0.9:6379", ("10.0.0.9", 6379)), ("ray://head:10001", ("head", 10001)), ("[::1]:6379", ("::1", 6379)),
     ("auto", None), ("local", None), ("http://head:8265", None)],
)  # fmt: skip
def test_only_host_port_addresses_are_probed(address, expected):
    assert ray_join.host_port(address) == expected


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


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """The default data (Fashion-MNIST scenes) with its files missing; starting a client fails the test.

    A refusal naming the bad value, not the missing files, shows that the value was checked before any
    data was read.
    """
    from mfed.data.fashion import ENV_VAR
    from mfed.federation.backends import SerialBackend
    from mfed.federation.ray_backend import RayBackend

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "empty"))
    monkeypatch.setattr(SerialBackend, "start", NoStartBackend.start)
    monkeypatch.setattr(RayBackend, "start", NoStartBackend.start)
    return ["backend=serial", "logger=none", f"out_dir={tmp_path / 'run'}"]


def refusal(capsys, tmp_path) -> str:
    """The one line of a refused command, without the ``mfed: `` prefix; nothing was printed or written."""
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mfed: ") and not captured.out, captured
    assert not (tmp_path / "run").exists()
    return err[0].removeprefix("mfed: ")


BEFORE_THE_DATA = [
    (["federation.fraction=2"], "federation.fraction must lie in (0, 1], got 2 (the share of clients sampled per "
                                "round): e.g. federation.fraction=1.0"),
    (["federation.max_retries=-1"], "federation.max_retries must be >= 0, got -1"),
    (["federation.eval_every=0"], "federation.eval_every must be >= 1, got 0"),
    (["federation.rounds=0"], "federation.rounds must be >= 1, got 0 (the rounds to run): e.g. federation.rounds=10"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1 is refused by torch.optim.AdamW (Invalid learning rate: -0.1): "
                            "e.g. optimizer.lr=0.001 (its default)"),
    (["seed=-1"], "seed must lie in [0, 4294967295], got -1 (numpy takes no negative seed): e.g. seed=0"),
    (["federation.min_clients=7"], "federation.min_clients must be a count in [1, 6] (the clients sampled per round)"),
    (["federation.clients_per_task=null", "federation.groups=[{tasks:[semsg],count:2}]"],
     "federation.groups[0].tasks must list distinct tasks of ['semseg', 'depth', 'edges'], got ['semsg']"),
    (["aggregation=local", "privacy=dp"], "privacy=dp cannot go with aggregation=local: it needs client updates routed "
                                          "into shared scopes, and aggregation=local averages no update; leave privacy "
                                          "out: privacy=none"),
    (["model.encoder.norm=layer"], "norm must be one of"),
    (["backend.round_timeout_s=5"], "federation.round_timeout_s=5 needs backend=ray"),
]  # fmt: skip


@pytest.mark.parametrize("print_config", [False, True], ids=["train", "print-config"])
@pytest.mark.parametrize(("args", "message"), BEFORE_THE_DATA, ids=[" ".join(a) for a, _ in BEFORE_THE_DATA])
def test_a_value_is_refused_before_the_data_and_print_config_refuses_it_too(
    capsys, tmp_path, no_data, args, message, print_config
):
    # Execute: the same command line, run and printed
    code = main(["train", *(["--print-config"] if print_config else []), *no_data, *args])
    # Assert: one line naming the value (not the missing data), exit 2, nothing printed or written
    line = refusal(capsys, tmp_path)
    assert code == 2 and message in line, line


def test_without_the_data_a_good_config_prints_and_a_run_names_the_missing_files(capsys, tmp_path, no_data):
    assert main(["train", "--print-config", *no_data]) == 0  # reads no data
    assert "aggregation:" in capsys.readouterr().out
    assert main(["train", *no_data]) == 2
    line = refusal(capsys, tmp_path)
    assert line.startswith("Fashion-MNIST files") and "not found in" in line and "MFED_FASHION_MNIST" in line


HINTS = [
    (["privacy=null"], "privacy=null: privacy is a config group, which takes an option, not null: privacy=none turns "
                       "it off (configs/privacy/)"),
    (["defences=null"], "defences=none turns it off"),
    (["aggregation=null"], "choose one of centralised, centralised_epochs, ditto, fedamp, fedavg,"),
    (["seed=0,1"], "seed=0,1: one run takes one value, and mfed takes no --multirun: give one (seed=0), or run each "
                   "as a sweep: mfed sweep sweep=quick ++sweep.grid.seed=[0,1]"),
    (["federation.rounds=1,2"], "configs/sweep/<name>.yaml with grid: {federation.rounds: [1,2]}, then mfed sweep"),
    (["rounds=5"], "rounds is not a known key: did you mean federation.rounds?"),
    (["num_rounds=5"], "num_rounds is not a known key: did you mean federation.rounds? (num_rounds is Flower's name)"),
    (["+num_rounds=5"], "num_rounds=5 is not a known key: did you mean federation.rounds? (num_rounds is Flower's"),
    (["fraction_fit=0.5"], "did you mean federation.fraction? (fraction_fit is Flower's name)"),
    (["lr=0.1"], "lr is not a known key: did you mean optimizer.lr?"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), HINTS, ids=[" ".join(a) for a, _ in HINTS])
def test_a_refused_override_gets_a_fix_that_works(capsys, tmp_path, no_data, args, message):
    assert main(["train", *no_data, *args]) == 2
    line = refusal(capsys, tmp_path)
    assert message in line, line


@pytest.mark.parametrize(
    "fix",
    [["aggregation=local", "privacy=none"], ["defences=none"], ["server_optimizer=none"],
     ["sweep=quick", "++sweep.grid.seed=[0,1]"]],
)  # fmt: skip
def test_the_advised_overrides_compose(tmp_path, fix):
    from mfed.run import build_fold

    cfg = load_config([*fix, f"out_dir={tmp_path}"])
    build_fold(cfg)


def test_help_lists_the_config_groups_with_their_options(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "config groups" in out
    assert __import__("re").search(r"\n  privacy=\s+dp, dp_eps2, dp_eps8, none\n", out), out
    assert "aggregation=" in out and "fedavg" in out and "+task@tasks.<t>=<t>" in out


def test_version_prints_the_installed_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"mfed {version('mfed')}"
