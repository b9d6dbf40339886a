"""A federated round end to end on the PASCAL-Context loader (fabricated files in the real format)."""

from mfed.run import run
from tests.unit.data.fixtures_benchmarks import write_pascal_mt


def test_one_round_on_pascal_context_files(tiny_cfg, tmp_path):
    root = tmp_path / "PASCAL_MT"
    write_pascal_mt(root)
    cfg = tiny_cfg(
        "data=pascal_context", "task_mix=pascal_like",
        "~tasks.parts", "~tasks.saliency", "~tasks.normals", "~tasks.edges",
        f"data.pool.root={root}", "data.pool.size=[16,16]", "data.min_per_client=2", "data.val_fraction=0.1",
        "federation.clients_per_task=1", "federation.rounds=1",
        base=[o for o in __import__("tests.conftest", fromlist=["TINY"]).TINY if not o.startswith("data.")],
    )  # fmt: skip
    history = run(cfg)
    row = history[0]
    for key in ("val/semseg/mIoU", "test/semseg/mIoU", "train/semseg/loss"):
        assert key in row and row[key] == row[key], key  # present and not NaN
