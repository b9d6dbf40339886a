"""Every YAML file in configs/ composes and instantiates, so a new option cannot rot unnoticed."""

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mfed.config import config_dir, load_config
from mfed.data.fashion import ENV_VAR as FASHION_ENV

NODES = {"task": "probe", "partition": "data.partition"}  # where an option lands when not at <group>

GROUPS = sorted(p.name for p in config_dir().iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((config_dir() / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_config_option_instantiates(group, option, tmp_path: Path, fashion_root, monkeypatch):
    monkeypatch.setenv(FASHION_ENV, str(fashion_root))
    override = f"+task@probe={option}" if group == "task" else f"{group}={option}"
    cfg = load_config([override, f"out_dir={tmp_path}"])
    node = OmegaConf.select(cfg, NODES.get(group, group))
    if node is None:  # e.g. logger=none
        return
    targets = [node] if "_target_" in node else [v for v in node.values() if hasattr(v, "get") and "_target_" in v]
    for target in targets:
        kwargs = {"out_dir": tmp_path} if group == "logger" else {}
        assert instantiate(target, **kwargs) is not None


def test_every_group_has_options():
    assert {"task", "task_mix", "model", "aggregation", "data", "partition", "federation", "backend", "optimizer", "logger"} <= set(GROUPS)
