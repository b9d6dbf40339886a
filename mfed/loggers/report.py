"""Offline run reports: per-task curves from ``history.json`` as PNG files and a short report.md.

For users without a W&B account: the same curves as the dashboard (x-axis = round), one panel
per task metric with the curve of every client holding the task beside the task's merged one, the
training losses, and the diagnostics (each client kind's mean update norm, the cosine of every
pair of kinds' encoder updates; a kind is a client's task set joined with ``+``, e.g. ``semseg``
or ``semseg+depth``, and is only a label here).

A client holds one task or more and its id is opaque: the clients of a task are those that logged
``client/<id>/<task>/<metric>`` (validation) or ``client/<id>/<task>/test_<metric>`` (test); its
update norm ``client/<id>/update_norm`` is per client.
The title names the setting (strategy and its options, task mix, seed) from the run's
``config.yaml``; metrics carry their direction (↑/↓) from ``summary.json`` where it exists.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mfed.loggers.history import read_history

Rows = Sequence[Mapping[str, float | None]]
_VAL = re.compile(r"^val/(?P<task>[^/]+)/(?P<metric>[^/]+)$")
_NORM = re.compile(r"^diag/(?P<kind>[^/]+)/update_norm$")


TEST_SPLITS = ("test", "local_test")
"""The test splits scored after the last round: the global test set (G-FL) and each client's own (P-FL)."""


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
    """Ids of the clients holding ``task``: those with a ``client/<id>/<task>/<metric>`` key, sorted.

    Ids are not parsed: a client holding several tasks (``semseg+depth-0``) is a client of each.
    """
    ids = set()
    for row in history:
        for key in row:
            parts = key.split("/")
            if len(parts) == 4 and parts[0] == "client" and parts[2] == task:
                ids.add(parts[1])
    return sorted(ids)


def norm_kinds(history: Rows) -> list[str]:
    """Client kinds (``semseg``, ``semseg+depth``) with a finite ``diag/<kind>/update_norm``, in first-seen order."""
    found = dict.fromkeys(m["kind"] for row in history for k in row if (m := _NORM.match(k)))
    return [kind for kind in found if series(history, f"diag/{kind}/update_norm")[0]]


def arrow(directions: Mapping[str, Mapping[str, bool]], task: str, metric: str) -> str:
    """`` ↑`` or `` ↓`` for a task metric whose direction is known, else ``""``."""
    higher = directions.get(task, {}).get(metric)
    return "" if higher is None else (" ↑" if higher else " ↓")


LEGEND_INSIDE = 6  # lines a panel's legend may list over its curves; more go below the panel


def finish_panel(ax: Any, title: str) -> None:
    """Title, whole-round ticks on the x axis, and a legend that covers no curve of a crowded panel."""
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=10)
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    entries = len(ax.get_legend_handles_labels()[1])
    if entries <= LEGEND_INSIDE:
        ax.legend(fontsize=7)
    else:  # e.g. 15 pairs of 6 kinds' cosines: in columns under the panel, which tight_layout makes room for
        ax.legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)


def plot_curves(
    history: Rows, path: Path, title: str = "", directions: Mapping[str, Mapping[str, bool]] | None = None
) -> Path:
    """One panel per task metric (bold: merged over clients; thin: each client), train losses and diagnostics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directions = directions or {}
    panels = [(t, m) for t, metrics in task_metrics(history).items() for m in metrics]
    cosines = sorted({k for row in history for k in row if k.startswith("diag/cos/")})
    norms = norm_kinds(history)
    extra = 1 + bool(norms) + bool(cosines)  # the losses, then the diagnostics' panels
    cols = min(3, len(panels) + extra)
    rows = math.ceil((len(panels) + extra) / cols)
    below = math.ceil(len(cosines) / 2) * 0.16 if len(cosines) > LEGEND_INSIDE else 0.0  # inches for that legend
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows + below), squeeze=False)
    flat = list(axes.flat)
    for ax, (task, metric) in zip(flat, panels, strict=False):
        for cid in client_ids(history, task):
            ax.plot(*series(history, f"client/{cid}/{task}/{metric}"), lw=0.8, alpha=0.6, label=cid)
        ax.plot(*series(history, f"val/{task}/{metric}"), lw=2.2, color="black", label="merged")
        finish_panel(ax, f"val/{task}/{metric}{arrow(directions, task, metric)}")
    loss_ax = flat[len(panels)]
    for task in task_metrics(history):
        loss_ax.plot(*series(history, f"train/{task}/loss"), label=task)
    loss_ax.set_yscale("log")
    finish_panel(loss_ax, "train/<task>/loss")
    used = len(panels) + 1
    if norms:
        ax = flat[used]
        for kind in norms:
            ax.plot(*series(history, f"diag/{kind}/update_norm"), label=kind)
        finish_panel(ax, "update norm (mean per client kind)")
        used += 1
    if cosines:
        ax = flat[used]
        if len(cosines) > 10:  # 15 pairs of 6 kinds: no colour twice
            ax.set_prop_cycle(color=[plt.get_cmap("tab20")(i) for i in range(20)])
        for key in cosines:
            ax.plot(*series(history, key), label=key.removeprefix("diag/cos/"))
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylim(-1.05, 1.05)
        finish_panel(ax, "cosine of the kinds' mean encoder updates")
        used += 1
    for ax in flat[used:]:
        ax.set_axis_off()
    fig.suptitle(textwrap.fill(title, width=int(30 * cols)))  # a long setting wraps, not cut at the edges
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def summary_lines(history: Rows, directions: Mapping[str, Mapping[str, bool]] | None = None) -> list[str]:
    """Markdown: per task metric the first evaluation, the final one and the change; the test set; every client."""
    directions = directions or {}
    lines = ["| task | metric | first eval | final | change |", "|---|---|---:|---:|---:|"]
    for task, metrics in task_metrics(history).items():
        for metric in metrics:
            rounds, values = series(history, f"val/{task}/{metric}")
            if values:
                lines.append(
                    f"| {task} | {metric}{arrow(directions, task, metric)} | {values[0]:.3f} (r{rounds[0]:.0f}) "
                    f"| {values[-1]:.3f} (r{rounds[-1]:.0f}) | {values[-1] - values[0]:+.3f} |"
                )
    for split, title in (("test", "test set"), ("local_test", "clients' own test data (P-FL)")):
        test = {k: v for k, v in history[-1].items() if k.startswith(f"{split}/") and v is not None}
        if test:
            lines += ["", f"| {title} (after the last round) | value |", "|---|---:|"]
            lines += [f"| {k}{arrow(directions, *k.split('/')[1:3])} | {v:.3f} |" for k, v in sorted(test.items())]
    return lines + client_lines(history, directions)


def client_lines(history: Rows, directions: Mapping[str, Mapping[str, bool]]) -> list[str]:
    """Markdown: per task, each client's final metrics on it, test (and local test) metrics, update norm (last values).

    A client holding several tasks has a row in each of its tasks' tables; its update norm (one per
    client, ``client/<id>/update_norm``) repeats in each.
    """
    lines = []
    for task, metrics in task_metrics(history).items():
        columns = [*metrics, *(f"{s}_{m}" for s in TEST_SPLITS for m in metrics), "update_norm"]
        keys = {c: c if c == "update_norm" else f"{task}/{c}" for c in columns}
        last = {
            cid: {c: series(history, f"client/{cid}/{keys[c]}")[1][-1:] for c in columns}
            for cid in client_ids(history, task)
        }
        columns = [c for c in columns if any(v[c] for v in last.values())]
        if not last or not columns:
            continue
        heads = [f"{c}{arrow(directions, task, c.removeprefix('local_').removeprefix('test_'))}" for c in columns]
        lines += ["", f"| {task} client | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(columns)]
        for cid, values in last.items():
            lines.append(f"| {cid} | " + " | ".join(f"{v[0]:.3f}" if (v := values[c]) else "-" for c in columns) + " |")
    return lines


def setting_of(out_dir: Path) -> str:
    """The setting from the run's config.yaml, or "".

    ``mfed (mu=0.01), data fashion_scenes, task mix default, federation default, seed 0, 10 rounds``.
    """
    path = out_dir / "config.yaml"
    if not path.exists():
        return ""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(cfg, dict)
    aggregation = cfg.get("aggregation") or {}
    module = str(aggregation.get("_target_", "")).rsplit(".", 1)[0]  # mfed.aggregation.ditto.Ditto: ditto
    strategy = str(aggregation.get("name") or module.rsplit(".", 1)[-1])
    shown = ", ".join(
        f"{k}={v}" for k, v in aggregation.items() if k in ("mu", "lam", "freeze_encoder", "robust") and v is not None
    )
    rounds = (cfg.get("federation") or {}).get("rounds")
    choices = cfg.get("choices") or {}
    data, federation = choices.get("data"), choices.get("federation")
    parts = [f"{strategy}{f' ({shown})' if shown else ''}", f"data {data}" if data else "",
             f"task mix {cfg.get('mix_name', 'custom')}", f"federation {federation}" if federation else "",
             f"seed {cfg.get('seed')}", f"{rounds} rounds"]  # fmt: skip
    return ", ".join(p for p in parts if p)


def summary_of(out_dir: Path) -> dict[str, Any]:
    """The run's summary.json (empty without one)."""
    import json

    path = out_dir / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def directions_of(out_dir: Path) -> dict[str, dict[str, bool]]:
    """``{task: {metric: higher_is_better}}`` from the run's summary.json (empty without one)."""
    return {t: dict(info["higher_is_better"]) for t, info in summary_of(out_dir).get("tasks", {}).items()}


def privacy_lines(history: Rows, statement: str | None = None) -> list[str]:
    """Under ``privacy=dp``: the guarantee (summary.json's ``privacy`` statement, else the epsilon logged last)."""
    spent = [r["privacy/epsilon"] for r in history if r.get("privacy/epsilon") is not None]
    if not spent:
        return []
    said = statement or f"client-level DP: epsilon {spent[-1]:.3g} after round {len(spent)} (see config.yaml's privacy)"
    return [
        f"{said[0].upper()}{said[1:]}; per-client figures are withheld unless privacy.release_client_metrics was set.",
        "",
    ]


def write_report(out_dir: str | Path) -> Path:
    """Render ``<out_dir>/curves.png`` and ``<out_dir>/report.md`` from its history.json."""
    out = Path(out_dir)
    history = read_history(out)
    if not history:
        raise ValueError(f"{out}/history.json holds no rounds yet")
    setting, directions = setting_of(out), directions_of(out)
    plot_curves(history, out / "curves.png", title=f"{out.name}: {setting}" if setting else out.name,
                directions=directions)  # fmt: skip
    up = sum(float(r.get("comm/bytes_up") or 0) for r in history)
    down = sum(float(r.get("comm/bytes_down") or 0) for r in history)
    text = [
        f"# Run report: {out.name}",
        "",
        *([f"Setting: {setting}.", ""] if setting else []),
        f"{len(history)} rounds; communication: {up / 2**20:.1f} MiB up, {down / 2**20:.1f} MiB down.",
        "",
        *privacy_lines(history, summary_of(out).get("privacy")),
        *summary_lines(history, directions),
        "",
        "![per-task curves](curves.png)",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(text))
    return path
