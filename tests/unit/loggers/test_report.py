import json

import pytest
from PIL import Image

from mfed.cli import main
from mfed.loggers.report import summary_lines, task_metrics, write_report

HISTORY = [
    {"round": 1, "val/seg/mIoU": 10.0, "val/depth/rmse": 3.0, "client/seg-0/mIoU": 9.0, "train/seg/loss": 2.0,
     "comm/bytes_up": 2**20},
    {"round": 2, "train/seg/loss": 1.5, "comm/bytes_up": 2**20},
    {"round": 3, "val/seg/mIoU": 25.5, "val/depth/rmse": 2.0, "client/seg-0/mIoU": 24.0, "train/seg/loss": 1.0,
     "comm/bytes_up": 2**20, "test/seg/mIoU": 24.25},
]  # fmt: skip


def test_task_metrics_and_summary_rows_come_from_the_history():
    assert task_metrics(HISTORY) == {"seg": ["mIoU"], "depth": ["rmse"]}
    lines = summary_lines(HISTORY)
    assert "| seg | mIoU | 10.000 (r1) | 25.500 (r3) | +15.500 |" in lines
    assert "| depth | rmse | 3.000 (r1) | 2.000 (r3) | -1.000 |" in lines
    assert "| test/seg/mIoU | 24.250 |" in lines


def test_write_report_renders_png_and_markdown(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    path = write_report(tmp_path)
    text = path.read_text()
    assert "3 rounds; communication: 3.0 MiB up" in text and "![per-task curves](curves.png)" in text
    assert Image.open(tmp_path / "curves.png").size[0] > 300


def test_report_errors_are_clear(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no history.json"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "no history.json" in capsys.readouterr().err


def test_the_report_names_the_setting_marks_directions_and_lists_clients(tmp_path, tiny_cfg):
    # Prepare: a real run (config.yaml, summary.json, history.json with diagnostics)
    from mfed.run import run

    out = tmp_path / "run"
    run(tiny_cfg("task_mix=seg_depth", "aggregation.mu=0.1", "seed=3", f"out_dir={out}"))
    # Execute
    text = write_report(out).read_text()
    # Assert
    assert "Setting: mfed (mu=0.1, freeze_encoder=False), task mix seg_depth, seed 3, 2 rounds." in text
    assert "| semseg | mIoU ↑ |" in text and "| test/depth/rmse ↓ |" in text
    assert "| semseg client | mIoU ↑ | test_mIoU ↑ | update_norm |" in text
    assert "| semseg-1 | " in text and "| depth-0 | " in text
