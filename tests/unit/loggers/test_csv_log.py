"""logger=csv: metrics.csv holds every round's figures, the same as history.json."""

import csv
import json
import math
from pathlib import Path

from mfed.run import run


def test_metrics_csv_holds_every_rounds_figures_as_history_json_does(tiny_cfg):
    cfg = tiny_cfg("logger=csv", "federation.rounds=2")
    run(cfg)
    out = Path(cfg.out_dir)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    history = json.loads((out / "history.json").read_text())
    assert [float(r["round"]) for r in rows] == [1.0, 2.0]
    for row, reference in zip(rows, history, strict=True):
        figures = {k: v for k, v in reference.items() if isinstance(v, float)}
        assert figures and all(math.isclose(float(row[k]), v, rel_tol=1e-12) for k, v in figures.items() if v == v)
    assert "test/semseg/mIoU" in rows[-1] and rows[0]["test/semseg/mIoU"] == ""  # tested after the last round only
