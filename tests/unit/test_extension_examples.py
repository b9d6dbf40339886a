"""The worked examples of docs/architecture.md ("Extension points") run exactly as written.

Each example's Python file is put at the path its first line names (a folder added to that
package's path), its YAML into a copy of configs/ (``MFED_CONFIG_DIR``), and its command's
overrides compose and run a tiny federation; where the example computes something, the result is
checked against a hand computation.
"""

from __future__ import annotations

import importlib
import math
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from mfed.config import ENV_VAR, config_dir, load_config
from mfed.run import build, build_fold, start
from mfed.types import ClientUpdate

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
BLOCK = re.compile(r"```(python|yaml)\n# ((?:mfed|configs)/[\w/]+\.(?:py|yaml))\n(.*?)```", re.S)


@pytest.fixture
def examples(tmp_path, monkeypatch):
    """Every example file of the doc in place; returns their paths."""
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) == 8, "docs/architecture.md should hold four examples of one .py and one .yaml each"
    configs = tmp_path / "configs"
    shutil.copytree(config_dir(), configs)
    monkeypatch.setenv(ENV_VAR, str(configs))
    paths = []
    for _, path, text in blocks:
        if path.startswith("configs/"):
            target = configs / path.removeprefix("configs/")
        else:
            package = path.rsplit("/", 1)[0].replace("/", ".")
            target = tmp_path / "code" / path
            module = importlib.import_module(package)
            monkeypatch.setattr(module, "__path__", [*module.__path__, str(target.parent)])
            monkeypatch.delitem(sys.modules, path.removesuffix(".py").replace("/", "."), raising=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        paths.append(path)
    return paths


def command(doc_command: str) -> list[str]:
    """The overrides of a ``mfed train ...`` line of the doc."""
    match = re.search(rf"`mfed train ({re.escape(doc_command)}[^`]*)`", DOC.read_text())
    assert match, doc_command
    return match.group(1).split()


def test_the_strategy_example_runs_with_growing_epochs_its_step_defences_and_a_server_optimizer(
    examples, tiny_cfg, tmp_path
):
    cfg = tiny_cfg(*command("aggregation=fedavg_growing"), "aggregation.every=1", "federation.rounds=2")
    driver = build(cfg)
    history = start(driver, cfg).run()
    assert [driver.plan(t, ["semseg-0"])["semseg-0"][0].epochs for t in (1, 2, 3)] == [1, 2, 3]
    assert [row["agg/folded"] for row in history] == [3.0, 3.0]  # the three tasks' scopes
    assert "agg/clipped" in history[0] and any(k.startswith("server_optimizer/") for k in driver.state["server"])


def test_the_server_step_example_moves_by_half_the_mean_update(examples, tiny_cfg):
    # Prepare: the documented command's fold, and two clients whose mean encoder is 2.0 from 0
    fold = build_fold(load_config(command("server_optimizer=sgd")))
    state = {"global": {"encoder.w": torch.zeros(2)}}
    updates = [ClientUpdate(c, "t", 1, {"encoder.w": torch.full((2,), v)}) for c, v in (("a", 1.0), ("b", 3.0))]
    round_ = fold.round(state, 1)
    for u in updates:
        round_.add(u)
    # Assert: lr 0.5 of the mean update
    assert round_.result()[0]["global"]["encoder.w"].tolist() == [1.0, 1.0]
    build(tiny_cfg(*command("server_optimizer=sgd"), "federation.rounds=1")).run()


def test_the_robust_rule_example_ignores_an_outlier(examples, tiny_cfg):
    fold = build_fold(load_config(command("defences=geometric_median")))
    state = {"global": {"encoder.w": torch.zeros(2)}}
    values = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1e6, 1e6)]
    round_ = fold.round(state, 1)
    for i, v in enumerate(values):
        round_.add(ClientUpdate(f"c{i}", "t", 1, {"encoder.w": torch.tensor(v)}))
    median = round_.result()[0]["global"]["encoder.w"]
    # Assert: by hand, on the diagonal (t, t) the distances' gradient vanishes where 6t^2 - 6t + 1 = 0, whatever
    # the outlier's size (its unit vector is all that counts): t = 1/2 + sqrt(3)/6, inside the honest square
    t = 0.5 + math.sqrt(3) / 6
    torch.testing.assert_close(median, torch.full((2,), t), rtol=0, atol=1e-6)
    build(tiny_cfg(*command("defences=geometric_median"), "federation.rounds=1")).run()


def test_the_loss_weighting_example_logs_its_weights(examples, tiny_cfg):
    driver = build(tiny_cfg(*command("weighting=gls"), "federation.rounds=1"))
    history = driver.run()
    weights = [k for k in history[0] if k.startswith("train/") and k.endswith("/weight")]
    assert weights and all(history[0][k] > 0 for k in weights)
