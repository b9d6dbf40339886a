"""Offline run reports: per-task curves from ``history.json`` as PNG files and a short report.md.

For users without a W&B account: the same curves as the dashboard (x-axis = round), one panel
per task metric with every client's curve beside the task's merged one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from mfed.loggers.history import read_history

Rows = Sequence[Mapping[str, float | None]]
_VAL = re.compile(r"^val/(?P<task>[^/]+)/(?P<metric>[^/]+)$")


def task_metrics(history: Rows) -> dict[str, list[str]]:
    """``{task: [metric, ...]}`` found in the history's ``val/<task>/<metric>`` keys, in order."""
    found: dict[str, list[str]] = {}
    for row in history:
        for key in row:
            match = _VAL.match(key)
            if match and match["metric"] not in found.setdefault(match["task"], []):
                found[match["task"]].append(match["metric"])
    return found


def series(history: Rows, key: str) -> tuple[list[float], list[float]]:
    """Rounds and values of ``key`` where it was logged (and finite)."""
    points = [(float(r["round"] or 0), float(v)) for r in history if (v := r.get(key)) is not None and math.isfinite(v)]
    return [p[0] for p in points], [p[1] for p in points]


def client_ids(history: Rows, task: str) -> list[str]:
    """Ids of the clients of ``task`` (clients are named ``<task>-<i>``)."""
    ids = {k.split("/")[1] for row in history for k in row if k.startswith(f"client/{task}-")}
    return sorted(ids)


def plot_curves(history: Rows, path: Path, title: str = "") -> Path:
    """One panel per task metric (bold: merged over clients; thin: each client) plus train losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, m) for t, metrics in task_metrics(history).items() for m in metrics]
    cols = min(3, len(panels) + 1)
    rows = math.ceil((len(panels) + 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (task, metric) in zip(flat, panels, strict=False):
        for cid in client_ids(history, task):
            ax.plot(*series(history, f"client/{cid}/{metric}"), lw=0.8, alpha=0.6, label=cid)
        ax.plot(*series(history, f"val/{task}/{metric}"), lw=2.2, color="black", label="merged")
        ax.set_title(f"val/{task}/{metric}", fontsize=10)
        ax.set_xlabel("round")
        ax.legend(fontsize=7)
    loss_ax = flat[len(panels)]
    for task in task_metrics(history):
        loss_ax.plot(*series(history, f"train/{task}/loss"), label=task)
    loss_ax.set_title("train/<task>/loss", fontsize=10)
    loss_ax.set_xlabel("round")
    loss_ax.set_yscale("log")
    loss_ax.legend(fontsize=7)
    for ax in flat[len(panels) + 1 :]:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def summary_lines(history: Rows) -> list[str]:
    """Markdown table rows: task, metric, first evaluation, final, change; then test figures."""
    lines = ["| task | metric | first eval | final | change |", "|---|---|---:|---:|---:|"]
    for task, metrics in task_metrics(history).items():
        for metric in metrics:
            rounds, values = series(history, f"val/{task}/{metric}")
            if values:
                lines.append(
                    f"| {task} | {metric} | {values[0]:.3f} (r{rounds[0]:.0f}) | {values[-1]:.3f} (r{rounds[-1]:.0f}) "
                    f"| {values[-1] - values[0]:+.3f} |"
                )
    test = {k: v for k, v in history[-1].items() if k.startswith("test/") and v is not None}
    if test:
        lines += ["", "| test set (after the last round) | value |", "|---|---:|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in sorted(test.items())]
    return lines


def write_report(out_dir: str | Path) -> Path:
    """Render ``<out_dir>/curves.png`` and ``<out_dir>/report.md`` from its history.json."""
    out = Path(out_dir)
    history = read_history(out)
    if not history:
        raise ValueError(f"{out}/history.json holds no rounds yet")
    plot_curves(history, out / "curves.png", title=out.name)
    up = sum(float(r.get("comm/bytes_up") or 0) for r in history)
    down = sum(float(r.get("comm/bytes_down") or 0) for r in history)
    text = [
        f"# Run report: {out.name}",
        "",
        f"{len(history)} rounds; communication: {up / 2**20:.1f} MiB up, {down / 2**20:.1f} MiB down.",
        "",
        *summary_lines(history),
        "",
        "![per-task curves](curves.png)",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(text))
    return path
