"""A benchmark's outputs: ``results.json``, ``results.md``, learning curves and delta_m per strategy (PNG).

``results.json``::

    {"benchmark": str, "overrides": [...], "strategies": [...], "seeds": [...], "reference": str,
     "aliases": {strategy: its other name},
     "model_bytes": {setting: {"encoder": int, "decoders": {task: int}, "full": int}},
     "tasks": [{"name": str, "headline": str, "higher_is_better": bool}, ...], "confidence": 0.95,
     "settings": {setting: {"strategies": {strategy: {task: interval, "delta_m": interval,
                                                       "epsilon": float | null, ...}},
                            "compare": str, "against": {strategy: {task: paired, "delta_m": paired}},
                            "power": {"power": 0.8, "alpha": float, "tests": int}}},
     "runs": [{"strategy": str, "seed": int, "setting": str, "status": str, "overrides": [...],
               "test": {"<task>/<metric>": float}, "val": {...}, "clients": {"<id>/<task>/test_<metric>": float},
               "task_order": [task, ...], "delta_m": float | null, "epsilon": float | null (privacy=dp),
               "curves": {"val/<task>/<metric>": [[round, value], ...]},
               "comm": {"bytes_up": ..., "bytes_up_encoder": ..., "bytes_down": ..., "private_bytes": ...},
               "machine": {"cpu", "cores", "torch", ...} (where it ran: mfed.machine; absent in older runs),
               "out_dir": str (the run's folder, beside results.json)}, ...]}

Where clients hold their own test data (``data.local_test_fraction``, FMTL-Bench's P-FL), a run also has
``"local_test": {"<task>/<metric>": float}``, its clients' ``"<id>/<task>/local_test_<metric>"``,
``"delta_p"`` (Δ on those, as delta_m, FMTL-Bench's ΔP; delta_m is its ΔG) and ``"delta_tasks":
{"test" | "local_test": {task: float | null}}`` (ΔG and ΔP over the clients holding each task); a
strategy's entry then has ``"delta_p"``, ``"delta_tasks"`` and ``"local_test"`` ({task: interval}) and
the comparisons ``"delta_p"``.

``mfed results <file or folder>`` computes every statistic again from ``runs`` alone and writes the
markdown and PNGs (:func:`regenerate`): ``docs/results/<benchmark>.json`` is that raw data.

An interval is ``{"mean", "low", "high", "n"}`` (Student t over seeds); a paired comparison adds
``"p"`` (paired t-test), ``"p_holm"`` (Holm's adjustment over the setting's comparison table) and
``"d_z"`` (the effect size ``{"mean", "low", "high"}``), ``"detectable"`` (``{"difference", "d_z"}``: the
smallest absolute difference the test finds with 80 % power over its seeds, for the observed spread of
the differences) and ``"seeds_needed"`` (the seeds with which it finds the observed d_z with 80 % power),
both at the setting's ``"power"`` ``"alpha"``: 1 - confidence over Holm's m, the ``"tests"`` with a p-value
(:mod:`mfed.sweeps.summary`); null where there is no p-value, or for seeds, no difference (or over 10^9).
A strategy's entry counts its runs by final status (``"runs": {"completed": 3, "diverged": 1}``) and
names, per task, the completed seeds whose headline is not finite (``"not_finite"``): none is silently
left out.
``comm`` values are per trained client per round, averaged over rounds.
``clients`` keys name the client and the task (a client may hold several); runs written before
clients could hold several tasks have ``"<id>/test_<metric>"`` there.
Non-finite numbers are written as null; mappings keep the benchmark's order (settings as
planned, strategies as listed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mfed.atomic import write_json
from mfed.machine import machines_line
from mfed.sweeps.entries import (
    arrow,
    interval_of,
    privacy_levels,
    private_by_setting,
    reference_name,
    tasks_of,
)
from mfed.sweeps.summary import summarise
from mfed.sweeps.tuning import tuning_lines


def _ci(entry: Mapping[str, Any], digits: int = 2) -> str:
    return interval_of(entry).text(digits)


def _p(value: float | None) -> str:
    return "-" if value is None else "<0.001" if value < 0.001 else f"{value:.3f}"


def _diff(entry: Mapping[str, Any], digits: int = 2) -> str:
    """``+1.20 ± 0.50<br>p 0.010, Holm 0.120<br>d_z 2.1 [0.3, 3.9]``; results written before Holm: the p-value only."""
    if not entry["n"]:
        return "-"
    text = _ci(entry, digits)
    text = text if text.startswith("-") else "+" + text
    if "p_holm" not in entry:
        return text + f" (p={_p(entry.get('p'))})"
    text += f"<br>p {_p(entry['p'])}, Holm {_p(entry['p_holm'])}"
    effect = entry.get("d_z") or {}
    if effect.get("mean") is not None:
        low, high = ("-" if effect[k] is None else f"{effect[k]:.1f}" for k in ("low", "high"))
        text += f"<br>d_z {effect['mean']:.1f} [{low}, {high}]"
    found, seeds = entry.get("detectable"), entry.get("seeds_needed")
    if found is None:  # results written before the power figures
        return text
    if not _given(found["difference"]):
        return text + "<br>detectable -"
    needed = "> 1000" if seeds is None or seeds > 1000 else str(seeds)
    return text + f"<br>detectable {found['difference']:.{digits}f}; {needed} seeds"


def _runs(entry: Mapping[str, Any]) -> str:
    """``0,1,2`` and the runs that did not complete or whose headline is not finite: ``0,2 (1 diverged)``."""
    text = ",".join(map(str, entry["seeds"]))
    runs = entry.get("runs")
    if runs is None:  # results written before the column: the failed count only
        return text + (f" ({entry['failed']} failed)" if entry["failed"] else "")
    notes = [f"{n} {status}" for status, n in runs.items() if status != "completed"]
    notes += [f"{task}: {len(seeds)} not finite" for task, seeds in entry.get("not_finite", {}).items() if seeds]
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _kb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f} KB"


def reference_lines(reference: Any) -> list[str]:
    """For a reference per strategy: which run each strategy's Δm is taken against."""
    if not isinstance(reference, Mapping):
        return []
    return ["Each strategy's reference: " + ", ".join(f"{s} against {r}" for s, r in reference.items()) + "."]


def setting_tables(results: Mapping[str, Any], setting: str) -> list[str]:
    """The markdown of one setting: the strategies' table, the paired comparisons, communication.

    Its columns are the tasks some run of the setting holds (FMTL-Bench's scenarios differ in them).
    """
    section = results["settings"][setting]
    held = {t for r in results["runs"] if r["setting"] == setting for t in r.get("task_order", [])}
    tasks = {t: info for t, info in tasks_of(results).items() if t in held or not held}
    level = f"{results['confidence']:.0%}"
    reference = reference_name(results.get("reference"))
    head = [f"{t} {info['headline']} {arrow(info['higher_is_better'])}" for t, info in tasks.items()]
    private = any(e.get("epsilon") is not None for s in results["settings"].values() for e in s["strategies"].values())
    lines = [
        f"| strategy | {' | '.join(head)} | Δm vs {reference} % ↑{' | ε reached' if private else ''} "
        "| seeds completed (others) |",
        "|---|" + "---:|" * (len(tasks) + 2 + private),
    ]
    for strategy, entry in section["strategies"].items():
        cells = [_ci(entry[t]) for t in tasks] + [_ci(entry["delta_m"])]
        if private:  # "-": the run had no DP (Local releases nothing; the others released without noise)
            cells.append("-" if entry.get("epsilon") is None else f"{entry['epsilon']:.2f}")
        seeds = _runs(entry)
        name = f"**{strategy}**" if strategy == section["compare"] else strategy
        name += f" (= {results['aliases'][strategy]})" if strategy in results.get("aliases", {}) else ""
        lines.append(f"| {name} | {' | '.join(cells)} | {seeds} |")
    personal = any("delta_p" in e for e in section["strategies"].values())
    if personal:
        lines += fmtl_table(section, list(tasks), reference)
    compare = section["compare"]
    if section["against"]:
        lines += [
            "",
            f"**{compare} against each strategy, paired by seed**: mean of ({compare} − other) ± its {level} "
            f"interval; the paired t-test's p-value and its Holm adjustment over the {_family(section)} tests of "
            f"this table (a claim needs the adjusted value below {1 - results['confidence']:.2g}); "
            "the effect size d_z (mean difference / its standard deviation) with its interval. "
            "↑/↓: the sign that is better for " + compare + ".",
            "",
            f"| other | {' | '.join(head)} | Δm ↑ |{' ΔP ↑ |' if personal else ''}",
            "|---|" + "---:|" * (len(tasks) + 1 + personal),
        ]
        for other, entry in section["against"].items():
            cells = [_diff(entry[t]) for t in tasks] + [_diff(entry[k]) for k in ("delta_m", "delta_p")[: 1 + personal]]
            lines.append(f"| {other} | {' | '.join(cells)} |")
        lines += _power_lines(results, section)
    sizes = results["model_bytes"].get(setting)
    if sizes:
        decoders = ", ".join(f"{t} {_kb(n)}" for t, n in sizes["decoders"].items())
        lines += [
            "",
            f"**Communication per client per round** (mean over rounds). The full multi-task model is "
            f"{_kb(sizes['full'])} (encoder {_kb(sizes['encoder'])}; decoders {decoders}).",
            "",
            "| strategy | up | of which encoder | down | up + down vs the full model both ways | kept for the client |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for strategy in section["strategies"]:
            comm = _mean_comm(results["runs"], setting, strategy)
            if not comm:
                continue
            if comm["bytes_up"] is None:  # nothing was trained by clients: the centralised reference
                lines.append(f"| {strategy} | data pooled: no model exchanged | | | | |")
                continue
            ratio = (comm["bytes_up"] + (comm["bytes_down"] or 0.0)) / (2 * sizes["full"])
            lines.append(
                f"| {strategy} | {_kb(comm['bytes_up'])} | {_kb(comm['bytes_up_encoder'])} | "
                f"{_kb(comm['bytes_down'])} | {ratio:.2f}x | {_kb(comm['private_bytes'])} |"
            )
    return lines


def fmtl_table(section: Mapping[str, Any], tasks: Sequence[str], reference: str) -> list[str]:
    """FMTL-Bench's view of a setting: ΔG and ΔP against the reference, per task and overall."""
    g, p = (" | ".join(f"{prefix} {t}" for t in tasks) for prefix in ("ΔG", "ΔP"))
    lines = [
        "",
        f"**FMTL-Bench's view**: Δ against {reference} of the same seed, per client then over clients, % "
        "(positive: better); **ΔG** on the global test set (G-FL: the Δm above), **ΔP** on each client's own "
        "held-out data (P-FL, `data.local_test_fraction`); per task: over the clients holding it.",
        "",
        f"| strategy | {g} | **ΔG** | {p} | **ΔP** |",
        "|---|" + "---:|" * (2 * len(tasks) + 2),
    ]
    for strategy, entry in section["strategies"].items():
        by_split = entry.get("delta_tasks") or {}
        cells = [_ci(by_split.get("test", {}).get(t, _NONE)) for t in tasks] + [_ci(entry["delta_m"])]
        cells += [_ci(by_split.get("local_test", {}).get(t, _NONE)) for t in tasks] + [_ci(entry.get("delta_p", _NONE))]
        lines.append(f"| {strategy} | {' | '.join(cells)} |")
    return lines


_NONE = {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}


def _power_lines(results: Mapping[str, Any], section: Mapping[str, Any]) -> list[str]:
    """The sentence under the comparison table that says what its power figures are."""
    power = section.get("power") or {}
    if not _given(power.get("alpha")):  # results written before the power figures, or no test with a p-value
        return []
    tests = [e for entry in section["against"].values() for k, e in entry.items() if k != "seeds"]
    by_n = {e["n"]: e["detectable"]["d_z"] for e in tests if _given(e["detectable"]["d_z"])}
    d_z = ", ".join(f"{d:.1f} with {n} seeds" for n, d in sorted(by_n.items(), reverse=True))
    return [
        "",
        f"Power, at {power['alpha']:.2g} ({1 - results['confidence']:.2g} / {power['tests']} tests: the level "
        "Holm's correction asks of the table's smallest p, so conservative for a claim after Holm): **detectable** "
        f"is the smallest difference the paired t-test finds with {power['power']:.0%} power with these seeds and "
        f"the observed spread of the differences (d_z {d_z}); **N seeds** is how many seeds it needs to find the "
        "observed difference with that power (from its d_z, itself uncertain with few seeds; > 1000 where the "
        "difference is about none); - where the test has no p-value.",
    ]


def _given(value: float | None) -> bool:
    """A number to print: not null (JSON's NaN) nor NaN (results not yet written)."""
    return value is not None and math.isfinite(value)


def _family(section: Mapping[str, Any]) -> int:
    """The number of tests with a p-value in a setting's comparison table (Holm's family)."""
    tests = [e for entry in section["against"].values() for k, e in entry.items() if k != "seeds"]
    return sum(e.get("p") is not None for e in tests)


def _mean_comm(runs: Sequence[Mapping[str, Any]], setting: str, strategy: str) -> dict[str, float | None]:
    mine = [r["comm"] for r in runs if r["setting"] == setting and r["strategy"] == strategy and "comm" in r]
    if not mine:
        return {}
    out: dict[str, float | None] = {}
    for key in mine[0]:
        values = [c[key] for c in mine if c[key] is not None]
        out[key] = sum(values) / len(values) if values else None
    return out


def markdown(results: Mapping[str, Any], images: bool = True, prefix: str = "") -> str:
    """results.md: what ran, then per setting the tables; ``images``: with the PNGs' links (``prefix`` + name)."""
    level = f"{results['confidence']:.0%}"
    seeds = ", ".join(map(str, results["seeds"]))
    lines = [
        f"# Benchmark {results['benchmark']}",
        "",
        f"Strategies {', '.join(results['strategies'])} on seeds {seeds}: seed s fixes the data, the partition "
        "and the initial model, so the runs of one seed differ only in the strategy.",
        f"Every run: `{' '.join(results['overrides']) or '(the defaults)'}`.",
        machines_line(results["runs"]),
        f"Test-set headline metric of each task (the mean over the task's clients), mean ± {level} Student-t "
        f"interval over seeds; Δm: the multi-task delta against {reference_name(results.get('reference'))} of the "
        f"same seed, {delta_m_basis(results['runs'])} (positive: better).",
        *reference_lines(results.get("reference")),
    ]
    if any(s.startswith("centralised") for s in results["strategies"]):
        lines.append(
            "centralised: every client's training data pooled, one model (by default as many optimizer steps per round "
            "as the federation's mean client): a reference, not an upper bound."
        )
    failed = [r for r in results["runs"] if r["status"] != "completed"]
    for setting in results["settings"]:
        if len(results["settings"]) > 1:
            lines += ["", f"## {setting}"]
        lines += ["", *setting_tables(results, setting), *tuning_lines(results.get("tuning") or {}, setting)]
        if images:
            lines += ["", *[f"![{t}]({prefix}{curve_file(results, setting, t)})" for t in tasks_of(results)]]
    if images:
        lines += ["", f"![delta_m]({prefix}delta_m.png)"]
        lines += ["", f"![privacy-utility]({prefix}tradeoff.png)"] if privacy_levels(results) else []
        lines += ["", f"![by setting]({prefix}by_setting.png)"] if private_by_setting(results) else []
    if failed:
        lines += ["", "## Runs that did not complete", ""]
        lines += [f"- {r['trial']}: {r['status']}: {r.get('error', '')[:200]}" for r in failed]
    return "\n".join(lines) + "\n"


def curve_file(results: Mapping[str, Any], setting: str, task: str) -> str:
    """The learning-curve PNG of ``task`` in ``setting``."""
    return f"curves_{task}.png" if len(results["settings"]) == 1 else f"curves_{setting}_{task}.png"


def delta_m_basis(runs: Sequence[Mapping[str, Any]]) -> str:
    """How the completed runs' Δm was taken: per client, or task by task where a run withholds its clients' figures.

    A run under ``privacy=dp`` releases no per-client figures (its ``clients`` is empty), so its
    Δm compares each task's test figure (:func:`mfed.sweeps.report.task_delta`).
    """
    scored = [r for r in runs if r["status"] == "completed" and r.get("delta_m") is not None]
    by_task = [r for r in scored if "clients" in r and not r["clients"]]
    if not by_task:
        return "per client, then averaged"
    how = "task by task (each task's test figure, the mean over its clients)"
    which = " under DP" if all(r.get("epsilon") is not None for r in by_task) else ""
    if len(by_task) == len(scored):
        return f"{how}: the runs{which} withhold their clients' figures"
    return f"per client, then averaged; {how} for the {len(by_task)} runs{which}, which withhold their clients' figures"


def figures(results: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every picture of the report by file name (``prefix`` + name), with the data it draws (:mod:`~mfed.sweeps.plots`).

    Learning curves per task (and setting), delta_m, and under DP the privacy-utility trade-off or
    delta_m by setting. The data needs no matplotlib: a published PNG is checked against it
    (:func:`mfed.sweeps.plots.png_data`) without drawing it again.
    """
    from mfed.sweeps.plots import by_setting_data, curves_data, delta_m_data, privacy_data

    out = {
        f"{prefix}{curve_file(results, setting, task)}": curves_data(results, setting, task)
        for setting in results["settings"]
        for task in tasks_of(results)
    }
    out[f"{prefix}delta_m.png"] = delta_m_data(results)
    if privacy_levels(results):
        out[f"{prefix}tradeoff.png"] = privacy_data(results)
    if private_by_setting(results):
        out[f"{prefix}by_setting.png"] = by_setting_data(results)
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_results(results: Mapping[str, Any], out_dir: Path, stem: str = "results", pictures: bool = True) -> None:
    """``<stem>.json``, ``<stem>.md`` and (``pictures``) the PNGs of :func:`figures` in ``out_dir``.

    The PNGs' names start with ``<stem>_`` unless the stem is ``results`` (a benchmark's own folder).
    """
    clean = _clean(results)
    prefix = "" if stem == "results" else f"{stem}_"
    write_json(clean, out_dir / f"{stem}.json", sort_keys=False)
    (out_dir / f"{stem}.md").write_text(markdown(clean, prefix=prefix))
    if pictures:
        from mfed.sweeps.plots import draw  # matplotlib: only when drawing

        for name, data in figures(clean, prefix).items():
            draw(data, out_dir / name)


def read_results(path: str | Path) -> dict[str, Any]:
    """A benchmark's results: ``<folder>/results.json``, or a file named directly (``docs/results/paper.json``)."""
    path = Path(path)
    return json.loads((path / "results.json" if path.is_dir() else path).read_text())


def recompute(results: Mapping[str, Any]) -> dict[str, Any]:
    """``results`` with every interval, paired test, Holm adjustment and effect size computed again from its runs.

    What a reader needs to check a published table: the runs' final metrics (``runs``) and what
    ran; nothing from the run folders.
    """
    compare = results.get("compare", next(iter(results["settings"].values()))["compare"])
    summary = summarise(results["runs"], compare, float(results["confidence"]))
    return {**results, "compare": compare, **summary}


def regenerate(path: str | Path, out_dir: str | Path | None = None, pictures: bool = True) -> Path:
    """Recompute the statistics of the results file ``path`` and write it, its markdown and (``pictures``) PNGs again.

    ``docs/results/paper.json`` gives ``paper.json``, ``paper.md`` and ``paper_*.png`` in ``out_dir``
    (default: beside it); a benchmark folder gives its ``results.*`` and PNGs. Returns the markdown's path.
    """
    source = Path(path)
    stem = "results" if source.is_dir() else source.stem
    target = Path(out_dir) if out_dir is not None else source if source.is_dir() else source.parent
    target.mkdir(parents=True, exist_ok=True)
    write_results(recompute(read_results(source)), target, stem, pictures)
    return target / f"{stem}.md"
