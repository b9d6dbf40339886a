import json

import pytest
from PIL import Image

from mfed.cli import main
from mfed.loggers.report import (
    LEGEND_INSIDE,
    client_ids,
    client_lines,
    finish_panel,
    norm_kinds,
    plot_curves,
    summary_lines,
    task_metrics,
    write_report,
)

HISTORY = [
    {"round": 1, "val/seg/mIoU": 10.0, "val/depth/rmse": 3.0, "client/seg-0/seg/mIoU": 9.0, "train/seg/loss": 2.0,
     "comm/bytes_up": 2**20},
    {"round": 2, "train/seg/loss": 1.5, "comm/bytes_up": 2**20},
    {"round": 3, "val/seg/mIoU": 25.5, "val/depth/rmse": 2.0, "client/seg-0/seg/mIoU": 24.0, "train/seg/loss": 1.0,
     "comm/bytes_up": 2**20, "test/seg/mIoU": 24.25, "client/seg-0/seg/test_mIoU": 23.5},
]  # fmt: skip

# A mixed federation: a-0 holds task a (accuracy, higher is better), b-0 holds b (rmse, lower is
# better), a+b-0 holds both. Per-(client, task) metrics under client/<id>/<task>/..., update norms
# per client, diagnostics per client kind (a, b, a+b).
DIRECTIONS = {"a": {"acc": True}, "b": {"rmse": False}}
MIXED = [
    {"round": 1, "val/a/acc": 0.5, "val/b/rmse": 2.0, "train/a/loss": 1.0, "train/b/loss": 3.0,
     "client/a-0/a/acc": 0.4, "client/a+b-0/a/acc": 0.6, "client/b-0/b/rmse": 2.2, "client/a+b-0/b/rmse": 1.8,
     "client/a-0/update_norm": 1.0, "client/b-0/update_norm": 2.0, "client/a+b-0/update_norm": 3.0,
     "client/a-0/train_loss": 1.1, "client/a+b-0/train_loss": 2.1,
     "diag/a/update_norm": 1.0, "diag/b/update_norm": 2.0, "diag/a+b/update_norm": 3.0,
     "diag/cos/a~b": -0.2, "diag/cos/a~a+b": 0.5, "diag/cos/b~a+b": 0.1, "agg/lam": 0.3},
    {"round": 2, "val/a/acc": 0.7, "val/b/rmse": 1.5, "train/a/loss": 0.5, "train/b/loss": 2.0,
     "client/a-0/a/acc": 0.65, "client/a+b-0/a/acc": 0.75, "client/b-0/b/rmse": 1.6, "client/a+b-0/b/rmse": 1.4,
     "client/a-0/update_norm": 0.5, "client/b-0/update_norm": 1.5, "client/a+b-0/update_norm": 2.5,
     "diag/a/update_norm": 0.5, "diag/b/update_norm": 1.5, "diag/a+b/update_norm": 2.5,
     "diag/cos/a~b": -0.1, "diag/cos/a~a+b": 0.6, "diag/cos/b~a+b": 0.2, "agg/lam": 0.4,
     "test/a/acc": 0.72, "test/b/rmse": 1.45, "client/a-0/a/test_acc": 0.70, "client/a+b-0/a/test_acc": 0.74,
     "client/b-0/b/test_rmse": 1.5, "client/a+b-0/b/test_rmse": 1.4},
]  # fmt: skip


def test_task_metrics_and_summary_rows_come_from_the_history():
    assert task_metrics(HISTORY) == {"seg": ["mIoU"], "depth": ["rmse"]}
    lines = summary_lines(HISTORY)
    assert "| seg | mIoU | 10.000 (r1) | 25.500 (r3) | +15.500 |" in lines
    assert "| depth | rmse | 3.000 (r1) | 2.000 (r3) | -1.000 |" in lines
    assert "| test/seg/mIoU | 24.250 |" in lines
    assert lines[-3:] == ["| seg client | mIoU | test_mIoU |", "|---|---:|---:|", "| seg-0 | 24.000 | 23.500 |"]


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
    setting = "mfed (mu=0.1, freeze_encoder=False), data shapes, task mix seg_depth, federation default, seed 3"
    assert f"Setting: {setting}, 2 rounds." in text
    assert "| semseg | mIoU ↑ |" in text and "| test/depth/rmse ↓ |" in text
    assert "| semseg client | mIoU ↑ | test_mIoU ↑ | update_norm |" in text
    assert "| semseg-1 | " in text and "| depth-0 | " in text


def test_a_multi_task_client_is_a_client_of_each_of_its_tasks_without_parsing_ids():
    assert client_ids(MIXED, "a") == ["a+b-0", "a-0"] and client_ids(MIXED, "b") == ["a+b-0", "b-0"]
    assert client_ids([{"round": 1, "client/a-1/acc": 1.0, "client/x-7/a/acc": 1.0}], "a") == ["x-7"]  # 4 parts only
    assert norm_kinds(MIXED) == ["a", "b", "a+b"]
    # each (client, task) row: the last validation value, test value, and the client's update norm
    assert client_lines(MIXED, DIRECTIONS) == [
        "", "| a client | acc ↑ | test_acc ↑ | update_norm |", "|---|---:|---:|---:|",
        "| a+b-0 | 0.750 | 0.740 | 2.500 |",
        "| a-0 | 0.650 | 0.700 | 0.500 |",
        "", "| b client | rmse ↓ | test_rmse ↓ | update_norm |", "|---|---:|---:|---:|",
        "| a+b-0 | 1.400 | 1.400 | 2.500 |",
        "| b-0 | 1.600 | 1.500 | 1.500 |",
    ]  # fmt: skip


def test_the_curves_of_a_mixed_federation_plot_each_client_per_task_and_each_kind(tmp_path, monkeypatch):
    # Prepare: keep the figure plot_curves closes
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    # Execute
    plot_curves(MIXED, tmp_path / "curves.png", directions=DIRECTIONS)
    # Assert
    panels = {ax.get_title(): {ln.get_label(): list(ln.get_ydata()) for ln in ax.lines} for ax in figures[0].axes}
    assert panels["val/a/acc ↑"] == {"a+b-0": [0.6, 0.75], "a-0": [0.4, 0.65], "merged": [0.5, 0.7]}
    assert panels["val/b/rmse ↓"] == {"a+b-0": [1.8, 1.4], "b-0": [2.2, 1.6], "merged": [2.0, 1.5]}
    assert panels["update norm (mean per client kind)"] == {"a": [1.0, 0.5], "b": [2.0, 1.5],
                                                                      "a+b": [3.0, 2.5]}  # fmt: skip
    cosines = panels["cosine of the kinds' mean encoder updates"]
    assert {k: v for k, v in cosines.items() if not k.startswith("_")} == {
        "a~a+b": [0.5, 0.6], "a~b": [-0.2, -0.1], "b~a+b": [0.1, 0.2],
    }  # fmt: skip
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_the_report_of_a_mixed_federation_lists_the_multi_task_client_under_each_task(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps(MIXED))
    tasks = {t: {"headline": m, "higher_is_better": {m: h}} for t, d in DIRECTIONS.items() for m, h in d.items()}
    summary = {"clients": ["a-0", "b-0", "a+b-0"], "client_tasks": {"a-0": ["a"], "b-0": ["b"], "a+b-0": ["a", "b"]},
               "tasks": tasks, "final": MIXED[-1]}  # fmt: skip
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    text = write_report(tmp_path).read_text()
    a_table, b_table = text.split("| a client |")[1].split("| b client |")
    assert "| a+b-0 | 0.750 | 0.740 | 2.500 |" in a_table and "| a-0 | 0.650 | 0.700 | 0.500 |" in a_table
    assert "| a+b-0 | 1.400 | 1.400 | 2.500 |" in b_table and "| b-0 | 1.600 | 1.500 | 1.500 |" in b_table
    assert "b-0 |" not in a_table.replace("a+b-0 |", "") and "| a-0 |" not in b_table
    assert "| a | acc ↑ | 0.500 (r1) | 0.700 (r2) | +0.200 |" in text and "| test/b/rmse ↓ | 1.450 |" in text
    assert (tmp_path / "curves.png").is_file()


def test_the_report_of_a_private_run_says_the_epsilon_spent(tmp_path):
    rows = [{**row, "privacy/epsilon": eps} for row, eps in zip(HISTORY, (10.7, 16.5, 21.4), strict=False)]
    (tmp_path / "history.json").write_text(json.dumps(rows))
    text = write_report(tmp_path).read_text()
    assert f"epsilon {rows[-1]['privacy/epsilon']:.3g} after round {len(rows)}" in text
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    assert "differential privacy" not in write_report(tmp_path).read_text()


@pytest.mark.parametrize("lines", [3, 15])
def test_a_panel_ticks_whole_rounds_and_its_legend_covers_no_curve_when_crowded(lines):
    # Prepare: a two-round panel of 3 (legend over the curves) or 15 lines (6 kinds' cosine pairs)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    for i in range(lines):
        ax.plot([1, 2], [i / lines, i / lines], label=f"pair-{i}")
    # Execute
    finish_panel(ax, "panel")
    fig.canvas.draw()
    # Assert: no tick at 1.2 or 1.5; a crowded legend lies wholly below the plotting area
    visible = [t for t in ax.get_xticks() if 1 <= t <= 2]
    assert visible and all(float(t).is_integer() for t in visible)
    legend, area = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert (legend.y1 <= area.y0) == (lines > LEGEND_INSIDE)
    plt.close(fig)


def test_the_report_of_a_run_whose_clients_hold_their_own_test_data_lists_both_tests(tmp_path, tiny_cfg):
    from mfed.loggers.console import results_table
    from mfed.run import build, start

    out = tmp_path / "run"
    cfg = tiny_cfg("task_mix=seg_depth", "data.pool.length=80", "data.local_test_fraction=0.2", f"out_dir={out}")
    driver = start(build(cfg), cfg)
    history = driver.run()
    text = write_report(out).read_text()
    assert "| clients' own test data (P-FL) (after the last round) | value |" in text
    assert "| local_test/depth/rmse ↓ |" in text and "| test/depth/rmse ↓ |" in text
    assert "| semseg client | mIoU ↑ | test_mIoU ↑ | local_test_mIoU ↑ | update_norm |" in text
    table = results_table(driver.tasks, history)
    assert [c.header for c in table.columns][-2:] == ["test", "local test"]
