"""A sweep's results: every trial's final per-task metrics and multi-task delta, ranked.

Writes ``sweep.json`` (machine-readable), ``sweep.md`` (a ranked table) and ``sweep.png`` (one
panel per task: each trial's headline test metric). Delta_m of a trial is computed per client
against the same client of the Local run with otherwise equal settings, then averaged over
clients (the federated multi-task convention); it is null where no such reference ran.

A client holds one task or more: summary.json's ``client_tasks`` (``{id: [task, ...]}``) names
them and its final row holds ``client/<id>/<task>/test_<metric>``. Summaries written before
clients could hold several tasks have neither: there the task is read from the id
(``<task>-<i>``) and the key is ``client/<id>/test_<metric>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfed.metrics.delta import delta_m
from mfed.sweeps.plan import reference_overrides

if TYPE_CHECKING:
    from mfed.sweeps.plan import Trial


def client_tasks(summary: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{client id: [task, ...]}`` in client order (``summary["clients"]``), from ``summary["client_tasks"]``.

    ``summary.json`` is written with sorted keys, so ``client_tasks`` alone would give the clients
    alphabetically. Older summaries have no ``client_tasks``: each client then holds one task,
    read from its id ``<task>-<i>``.
    """
    if "client_tasks" in summary:
        held = summary["client_tasks"]
        return {cid: list(held[cid]) for cid in summary.get("clients", held)}
    return {cid: [cid.rsplit("-", 1)[0]] for cid in summary["clients"]}


def client_test_key(summary: Mapping[str, Any], cid: str, task: str, metric: str, split: str = "test") -> str:
    """The final-row key of client ``cid``'s ``split`` ``metric`` on ``task`` in ``summary``'s format.

    ``client/<id>/<task>/<split>_<metric>``; in older summaries (no ``client_tasks``) ``client/<id>/test_<metric>``.
    """
    return f"client/{cid}/{task}/{split}_{metric}" if "client_tasks" in summary else f"client/{cid}/test_{metric}"


def client_delta(
    summary: Mapping[str, Any], reference: Mapping[str, Any], split: str = "test", task: str | None = None
) -> float | None:
    """Delta_m of a run against ``reference`` (its Local run), client by client, then averaged over clients.

    A client's delta is the mean over its tasks of the signed relative difference on each task's
    headline test metric against the same client in ``reference`` (Δm_k = (1/T_k) Σ_t
    (−1)^{l_t} (M_t − M_ref,t) / M_ref,t × 100, l_t = 1 where lower is better). FedHCA2's and
    FMTL-Bench's Δ: on the global test set (``split="test"``) it is FMTL-Bench's ΔG, on each
    client's own held-out data (``split="local_test"``) its ΔP.

    Args:
        summary: The run's summary.json.
        reference: The reference run's summary.json (same clients, same tasks per client).
        split: ``test`` (the global test set) or ``local_test`` (each client's own test data).
        task: Only this task (the mean over the clients holding it); ``None``: every task.

    A run that withholds its per-client figures (``privacy=dp``) is compared task by task instead,
    on each task's test figure (the mean over its clients).

    Returns:
        The mean over clients in percent; None where a client's value or reference value is
        missing or the reference value is 0 (or the run has no clients).

    """
    if not any(k.startswith("client/") for k in summary["final"]):
        return task_delta(summary, reference, split, task)
    deltas = []
    for cid, held in client_tasks(summary).items():
        scores, refs, lower = {}, {}, {}
        for task_name in held if task is None else [t for t in held if t == task]:
            info = summary["tasks"][task_name]
            headline = info["headline"]
            value = summary["final"].get(client_test_key(summary, cid, task_name, headline, split))
            ref = reference["final"].get(client_test_key(reference, cid, task_name, headline, split))
            if value is None or ref is None or ref == 0:
                return None
            scores[task_name], refs[task_name] = value, ref
            lower[task_name] = not info["higher_is_better"][headline]
        if scores:
            deltas.append(delta_m(scores, refs, lower))
    return sum(deltas) / len(deltas) if deltas else None


def task_delta(
    summary: Mapping[str, Any], reference: Mapping[str, Any], split: str = "test", only: str | None = None
) -> float | None:
    """Delta_m over tasks from each task's headline figure (``<split>/<task>/<headline>``); None if one is missing."""
    scores, refs, lower = {}, {}, {}
    for task, info in summary["tasks"].items():
        if only is not None and task != only:
            continue
        key = f"{split}/{task}/{info['headline']}"
        value, ref = summary["final"].get(key), reference["final"].get(key)
        if value is None or ref is None or ref == 0:
            return None
        scores[task], refs[task], lower[task] = value, ref, not info["higher_is_better"][info["headline"]]
    return delta_m(scores, refs, lower) if scores else None


def collect(
    trials: Sequence[Trial], sweep_dir: Path, errors: Mapping[str, str], reference: str = "local"
) -> list[dict[str, Any]]:
    """One row per trial from its summary.json, with delta_m, ranked best first."""
    summaries: dict[str, dict[str, Any]] = {}
    ended: dict[str, str] = {}
    for t in trials:
        path = sweep_dir / t.name / "summary.json"
        if path.exists():
            summary = json.loads(path.read_text())
            if summary.get("status", "completed") == "completed":
                summaries[t.name] = summary
            else:  # a failed or interrupted run has no result to rank
                ended[t.name] = f"the run {summary['status']}: {summary.get('error')}"
    by_key = {tuple(sorted(t.overrides)): t.name for t in trials}
    rows = []
    for t in trials:
        summary = summaries.get(t.name)
        row: dict[str, Any] = {"trial": t.name, "overrides": list(t.overrides), "reference": t.reference}
        if summary is None:
            row["error"] = errors.get(t.name) or ended.get(t.name) or "no summary.json: the run did not finish"
        else:
            ref_name = by_key.get(reference_overrides(t.overrides, reference))
            ref = summaries.get(ref_name) if ref_name else None
            row["delta_m"] = client_delta(summary, ref) if ref is not None else None
            row["test"] = {
                task: summary["final"].get(f"test/{task}/{info['headline']}") for task, info in summary["tasks"].items()
            }
            row["headline"] = {task: info["headline"] for task, info in summary["tasks"].items()}
            row["arrow"] = {
                t: "↑" if i["higher_is_better"][i["headline"]] else "↓" for t, i in summary["tasks"].items()
            }
            row["final"] = summary["final"]
        rows.append(row)
    rows.sort(key=lambda r: (r.get("delta_m") is None, -(r.get("delta_m") or 0.0), r["trial"]))
    return rows


def markdown(rows: Sequence[Mapping[str, Any]], name: str) -> str:
    """The ranked table."""
    tasks = sorted({task for r in rows for task in r.get("test", {})})
    heads = {task: next(r["headline"][task] for r in rows if task in r.get("headline", {})) for task in tasks}
    arrows = {task: next(r["arrow"][task] for r in rows if task in r.get("arrow", {})) for task in tasks}
    lines = [
        f"# Sweep {name}",
        "",
        "Test-set headline metric per task (mean over the task's clients) and delta_m against Local "
        "(per client, then averaged; positive = better than Local).",
        "",
        "| rank | trial | delta_m % ↑ | " + " | ".join(f"{t} {heads[t]} {arrows[t]}" for t in tasks) + " |",
        "|---:|---|---:|" + "---:|" * len(tasks),
    ]
    for i, r in enumerate(rows, 1):
        if "error" in r:
            lines.append(f"| {i} | {r['trial']} | failed: {r['error'][:80]} |" + " |" * len(tasks))
            continue
        dm = "-" if r["delta_m"] is None else f"{r['delta_m']:+.2f}"
        cells = [("-" if r["test"].get(t) is None else f"{r['test'][t]:.3f}") for t in tasks]
        lines.append(f"| {i} | {r['trial']} | {dm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n![per-task comparison](sweep.png)\n"


def strategy_of(row: Mapping[str, Any]) -> str:
    """The trial's ``aggregation=`` choice (``default`` when the grid does not set it)."""
    return next((o.split("=", 1)[1] for o in row["overrides"] if o.startswith("aggregation=")), "default")


def plot(rows: Sequence[Mapping[str, Any]], path: Path, name: str = "") -> None:
    """One panel per task: a bar per trial that has the task, its value printed, delta_m beside its name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if "test" in r]
    tasks = sorted({task for r in done for task in r["test"]})
    if not tasks:
        return
    strategies = sorted({strategy_of(r) for r in done})
    palette = plt.get_cmap("tab10" if len(strategies) <= 10 else "tab20")
    colours = {s: palette(i) for i, s in enumerate(strategies)}
    labels = {
        r["trial"]: r["trial"] + ("" if r.get("delta_m") is None else f"  (Δm {r['delta_m']:+.2f}%)") for r in done
    }
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 1.0 + 0.38 * len(done)), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        have = [r for r in done if r["test"].get(task) is not None]
        values = [r["test"][task] for r in have]
        ax.barh([labels[r["trial"]] for r in have], values, color=[colours[strategy_of(r)] for r in have])
        for y, value in enumerate(values):
            ax.annotate(f"{value:.3f}", (value, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        if values:  # bars from zero, so their lengths compare honestly; the printed values carry the digits
            ax.set_xlim(min(0.0, min(values)), max(0.0, max(values)) * 1.18 or 1.0)
        ax.invert_yaxis()
        ax.set_title(f"test/{task}/{have[0]['headline'][task]} {have[0]['arrow'][task]}" if have else task, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    fig.legend(handles, list(colours), loc="upper right", fontsize=8, title="aggregation")
    fig.suptitle(f"sweep {name}: test-set headline per trial (Δm: against Local, per client)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_sweep_outputs(rows: Sequence[Mapping[str, Any]], sweep_dir: Path, name: str) -> None:
    """sweep.json, sweep.md and sweep.png in ``sweep_dir``."""
    clean = json.loads(json.dumps(rows, default=lambda v: None if isinstance(v, float) and not math.isfinite(v) else v))
    (sweep_dir / "sweep.json").write_text(json.dumps(clean, indent=1))
    (sweep_dir / "sweep.md").write_text(markdown(rows, name))
    plot(rows, sweep_dir / "sweep.png", name)
