"""The worked example of docs/architecture.md ("Writing a strategy") runs as written."""

import re
import sys
from pathlib import Path

from mfed.run import build, start

DOC = Path(__file__).resolve().parents[3] / "docs" / "architecture.md"


def test_the_documented_strategy_runs_with_per_round_steps_metrics_and_defences(tiny_cfg, tmp_path, monkeypatch):
    # Prepare: the doc's module, importable as it would be from mfed/aggregation/
    code = re.search(r"```python\n# mfed/aggregation/fedavg_growing.py\n(.*?)```", DOC.read_text(), re.S)
    assert code, "the worked example is missing from docs/architecture.md"
    (tmp_path / "fedavg_growing.py").write_text(code.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fedavg_growing", None)
    overrides = ("aggregation._target_=fedavg_growing.GrowingEpochs", "+aggregation.every=1", "defences.clip_norm=1.0")
    cfg = tiny_cfg(*overrides, "~aggregation.mu", "~aggregation.freeze_encoder", "federation.rounds=2")
    driver = build(cfg)
    # Execute
    history = start(driver, cfg).run()
    # Assert: epochs grow with the round, the fold's metric is logged, the defences wrap it
    assert [driver.plan(t, ["semseg-0"])["semseg-0"][0].epochs for t in (1, 2, 3)] == [1, 2, 3]
    assert [row["agg/folded"] for row in history] == [6.0, 6.0]
    assert "clip_norm=1.0" in driver.info["strategy"]
