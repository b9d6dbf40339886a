"""Every YAML file in configs/ composes and instantiates, so a new option cannot rot unnoticed."""

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mfed.config import config_dir, load_config
from mfed.data.fashion import ENV_VAR as FASHION_ENV

NODES = {"task": "probe", "partition": "data.partition"}  # where an option lands when not at <group>
MIXES = {
    "pascal_context": "task_mix=pascal_like",
    "nyud": "task_mix=nyud_like",
    "coco": "task_mix=coco_like",
}  # tasks each dataset offers


@pytest.fixture(scope="module")
def benchmark_roots(tmp_path_factory):
    from tests.unit.data.fixtures_benchmarks import write_coco, write_nyud, write_pascal_mt

    pascal, nyud = tmp_path_factory.mktemp("pascal"), tmp_path_factory.mktemp("nyud")
    write_pascal_mt(pascal)
    write_nyud(nyud)
    coco = write_coco(tmp_path_factory.mktemp("coco"))
    return {"MFED_PASCAL_ROOT": pascal, "MFED_NYUD_ROOT": nyud, "MFED_COCO_ROOT": coco}


GROUPS = sorted(p.name for p in config_dir().iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((config_dir() / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_config_option_instantiates(group, option, tmp_path: Path, fashion_root, benchmark_roots, monkeypatch):
    monkeypatch.setenv(FASHION_ENV, str(fashion_root))
    for name, root in benchmark_roots.items():
        monkeypatch.setenv(name, str(root))
    override = f"+task@probe={option}" if group == "task" else f"{group}={option}"
    mix = [MIXES[option]] if group == "data" and option in MIXES else []
    cfg = load_config([override, *mix, f"out_dir={tmp_path}"])
    node = OmegaConf.select(cfg, NODES.get(group, group))
    if node is None:  # e.g. logger=none
        return
    targets = [node] if "_target_" in node else [v for v in node.values() if hasattr(v, "get") and "_target_" in v]
    for target in targets:
        kwargs = {"out_dir": tmp_path} if group == "logger" else {}
        built = instantiate(target, **kwargs)
        off = option == "none" and group in ("privacy", "server_optimizer", "secure_aggregation")
        assert built is None if off else built is not None  # none: no DP, no server optimiser, no secure aggregation


def test_every_group_has_options():
    assert {
        "task",
        "task_mix",
        "model",
        "aggregation",
        "data",
        "partition",
        "federation",
        "backend",
        "optimizer",
        "logger",
        "defences",
        "weighting",
        "privacy",
        "server_optimizer",
        "secure_aggregation",
    } <= set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_config_option_passes_the_schema(group, option, tmp_path: Path):
    from mfed.schema import check_config

    override = f"+task@tasks.probe={option}" if group == "task" else f"{group}={option}"
    mix = [MIXES[option]] if group == "data" and option in MIXES else []
    check_config(load_config([override, *mix, f"out_dir={tmp_path}"]))
