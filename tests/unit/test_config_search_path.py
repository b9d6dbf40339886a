"""Config groups from the user's folders (``--config-dir``, ``MFED_CONFIG_PATH``) and the example project.

The example project (examples/mfed-example) is installed like any user's project, into a folder
outside the repository, and its task and strategy run from there with ``mfed train``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mfed.cli import config_groups, main
from mfed.config import load_config
from mfed.config_dir import ENV_VAR, PATH_VAR, add_user_dirs, group_options
from mfed.schema import ConfigError
from tests.conftest import TINY

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mfed-example"


@pytest.fixture
def user_configs(tmp_path, monkeypatch):
    """A user's folder with one new aggregation option; ``MFED_CONFIG_PATH`` names it."""
    root = tmp_path / "mine"
    (root / "aggregation").mkdir(parents=True)
    (root / "aggregation" / "fedavg_uniform.yaml").write_text(
        "_target_: mfed.aggregation.fedavg.FedAvgPerTask\nweighting: uniform\nname: fedavg_uniform\n"
    )
    monkeypatch.setenv(PATH_VAR, str(root))
    return root


def test_a_users_folder_adds_options_beside_the_packages_own(user_configs):
    cfg = load_config(["aggregation=fedavg_uniform"])
    assert cfg.aggregation.weighting == "uniform" and cfg.choices.aggregation == "fedavg_uniform"
    assert load_config(["aggregation=fedavg"]).aggregation.weighting == "examples"  # the package's own, untouched
    assert {"fedavg", "fedavg_uniform"} <= set(group_options("aggregation"))
    assert "fedavg_uniform" in config_groups()  # mfed --help lists it


def test_a_users_file_named_as_one_of_the_packages_is_refused_naming_both(user_configs):
    (user_configs / "aggregation" / "fedavg.yaml").write_text("_target_: mfed.aggregation.fedavg.FedAvgPerTask\n")
    with pytest.raises(ConfigError, match=r"mine/aggregation/fedavg.yaml has the name of .*configs/aggregation/fedavg"):
        load_config(["aggregation=fedavg_uniform"])


def test_a_missing_folder_or_package_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(PATH_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=rf"{PATH_VAR}: .*nowhere is not a folder"):
        load_config([])
    monkeypatch.setenv(PATH_VAR, "pkg://no_such_project.configs")
    with pytest.raises(FileNotFoundError, match="there is no package no_such_project; install the project"):
        load_config([])


def test_config_dir_goes_first_and_keeps_the_path_of_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(PATH_VAR, f"pkg://mfed.configs{os.pathsep}{tmp_path}")
    add_user_dirs(["pkg://a.configs", str(tmp_path / "b")])
    expected = ["pkg://a.configs", str(tmp_path / "b"), "pkg://mfed.configs", str(tmp_path)]
    assert os.environ[PATH_VAR] == os.pathsep.join(expected)


def test_the_example_project_installs_and_runs_its_task_and_strategy_from_outside_the_repository(tmp_path, monkeypatch):
    # Prepare: the project copied out and installed into a folder of its own, as pip installs any project
    project, site = tmp_path / "project", tmp_path / "site"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "--target", str(site), str(project)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in (PATH_VAR, ENV_VAR)} | {"PYTHONPATH": str(site)}
    # Execute: mfed train from a folder outside the repository, the project's configs by --config-dir
    command = [sys.executable, "-m", "mfed", "train", "--config-dir", "pkg://mfed_example.configs",
               "+task@tasks.near=near", "aggregation=mfed_warmup", "aggregation.warmup=2", *TINY,
               f"out_dir={tmp_path / 'run'}"]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    # Assert: the strategy's weight grew over its warm-up; the task was trained and scored on the test set
    assert done.returncode == 0, done.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [row["agg/prox_mu"] for row in history] == [0.005, 0.01]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["tasks"]["near"]["higher_is_better"] == {"IoU": True}
    assert all(0.0 <= row["val/near/IoU"] <= 1.0 and row["train/near/loss"] > 0 for row in history)


def test_the_example_task_scores_the_iou_of_the_near_region_ignoring_pixels_without_depth(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from mfed_example.near import Near

    task = Near(threshold=5.0)
    depth = torch.tensor([[[[0.0, 2.0], [7.0, 4.0]]]])  # no depth, near, far, near
    probs = torch.tensor([[[[0.9, 0.8], [0.6, 0.2]]]])  # predicted near: -, yes, yes, no
    metric = task.metrics()["IoU"]
    metric.update(probs, depth)
    assert metric.compute().item() == pytest.approx(1 / 3)  # near in both: 1 pixel; in either: 3
    logits = torch.logit(probs)
    expected = -(torch.log(torch.tensor([0.8, 0.4, 0.2]))).mean()  # BCE on the three pixels with depth
    assert task.loss(logits, depth).item() == pytest.approx(expected.item(), rel=1e-5)


def test_config_dir_on_the_command_line_adds_its_options_to_the_help(tmp_path, monkeypatch, capsys):
    (tmp_path / "aggregation").mkdir()
    (tmp_path / "aggregation" / "fedavg_mine.yaml").write_text("_target_: mfed.aggregation.fedavg.FedAvgPerTask\n")
    monkeypatch.setenv(PATH_VAR, "")  # restored after the test, whatever --config-dir sets
    with pytest.raises(SystemExit):
        main(["train", "--config-dir", str(tmp_path), "--help"])
    assert "fedavg_mine" in capsys.readouterr().out and os.environ[PATH_VAR] == str(tmp_path)
