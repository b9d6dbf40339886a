"""A benchmark's statistics: per setting, each strategy's intervals and the paired comparisons, Holm-adjusted.

Computed from the runs' records alone (:func:`mfed.sweeps.benchmark.collect_runs`), so a published
``results.json`` is recomputed by :func:`mfed.sweeps.results.recompute` from its ``runs``.

Each paired comparison also says what the test could detect (:func:`mfed.sweeps.stats.power_analysis`)
at 80 % power, at the level Holm's first step asks of a table of m tests: alpha / m (alpha = 1 -
confidence). A difference the test finds there clears Holm's correction whatever the other tests
give, so the power to claim it is at least 80 %: the figures are conservative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from mfed.loggers.report import TEST_SPLITS
from mfed.sweeps.stats import POWER, Power, holm, mean_ci, paired, power_analysis


def _headlines(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{task: {headline, higher_is_better}}`` of the completed runs, in the runs' task order."""
    tasks: dict[str, dict[str, Any]] = {}
    for r in records:
        for task in r.get("task_order", []):
            info = r["tasks"][task]
            higher = info["higher_is_better"][info["headline"]]
            tasks.setdefault(task, {"name": task, "headline": info["headline"], "higher_is_better": higher})
    return tasks


def summarise(records: Sequence[Mapping[str, Any]], compare: str | None, confidence: float) -> dict[str, Any]:
    """Per setting: mean ± CI of each strategy per task headline and delta_m; ``compare`` against each, by seed."""
    tasks = _headlines(records)
    out: dict[str, Any] = {}
    for setting in dict.fromkeys(r["setting"] for r in records):
        mine = [r for r in records if r["setting"] == setting]
        strategies = list(dict.fromkeys(r["strategy"] for r in mine))
        done = {
            s: {r["seed"]: r for r in mine if r["strategy"] == s and r["status"] == "completed"} for s in strategies
        }
        table: dict[str, Any] = {}
        personal = any("delta_p" in r for r in mine)
        overall = ("delta_m", "delta_p") if personal else ("delta_m",)
        for s in strategies:
            ended = [r["status"] for r in mine if r["strategy"] == s]
            entry: dict[str, Any] = {
                "seeds": sorted(done[s]),
                "failed": sum(status != "completed" for status in ended),
                "runs": {status: ended.count(status) for status in dict.fromkeys(ended)},
                "not_finite": {  # completed seeds whose headline is NaN or inf
                    task: sorted(k for k, r in done[s].items() if not _finite(r["test"].get(f"{task}/{h['headline']}")))
                    for task, h in tasks.items()
                },
            }
            for task, info in tasks.items():
                values = [r["test"].get(f"{task}/{info['headline']}") for r in done[s].values()]
                entry[task] = _interval([v for v in values if _finite(v)], confidence)
            entry["delta_m"] = _interval([r["delta_m"] for r in done[s].values() if _finite(r["delta_m"])], confidence)
            if personal:  # FMTL-Bench's view: ΔP overall, ΔG and ΔP per task, each client's own test data per task
                entry.update(_personal(list(done[s].values()), tasks, confidence))
            spent = [r["epsilon"] for r in done[s].values() if r.get("epsilon") is not None]
            entry["epsilon"] = max(spent) if spent else None
            table[s] = entry
        comparisons: dict[str, Any] = {}
        differences: dict[tuple[str, str], list[float]] = {}  # (other, task or delta_m): compare - other by seed
        if compare in done:
            for s in strategies:
                if s == compare:
                    continue
                seeds = sorted(set(done[compare]) & set(done[s]))
                entry = {"seeds": seeds}
                for task, info in tasks.items():
                    key = f"{task}/{info['headline']}"
                    pairs = _kept([(done[compare][k]["test"].get(key), done[s][k]["test"].get(key)) for k in seeds])
                    entry[task] = _paired(pairs, confidence)
                    differences[s, task] = [a - b for a, b in pairs]
                for key in overall:
                    pairs = _kept([(done[compare][k].get(key), done[s][k].get(key)) for k in seeds])
                    entry[key] = _paired(pairs, confidence)
                    differences[s, key] = [a - b for a, b in pairs]
                comparisons[s] = entry
        family = [(s, key) for s, entry in comparisons.items() for key in [*tasks, *overall]]
        adjusted = holm([comparisons[s][key]["p"] for s, key in family])
        for (s, key), p in zip(family, adjusted, strict=True):
            comparisons[s][key]["p_holm"] = p
        tests = sum(not math.isnan(p) for p in adjusted)  # Holm's m: the tests with a p-value
        alpha = (1 - confidence) / tests if tests else math.nan
        for s, key in family:
            comparisons[s][key] |= _power(differences[s, key], alpha)
        power = {"power": POWER, "alpha": alpha, "tests": tests}
        out[setting] = {"strategies": table, "compare": compare, "against": comparisons, "power": power}
    return {"tasks": list(tasks.values()), "confidence": confidence, "settings": out}


def _personal(runs: Sequence[Mapping[str, Any]], tasks: Mapping[str, Any], confidence: float) -> dict[str, Any]:
    """``delta_p``, ``delta_tasks`` ({test | local_test: {task: interval}}) and ``local_test`` ({task: interval})."""

    def over(values: Sequence[float | None]) -> dict[str, Any]:
        return _interval([v for v in values if v is not None and _finite(v)], confidence)

    by_split = {
        split: {t: over([(r.get("delta_tasks") or {}).get(split, {}).get(t) for r in runs]) for t in tasks}
        for split in TEST_SPLITS
    }
    local = {
        t: over([r.get("local_test", {}).get(f"{t}/{info['headline']}") for r in runs]) for t, info in tasks.items()
    }
    return {"delta_p": over([r.get("delta_p") for r in runs]), "delta_tasks": by_split, "local_test": local}


def _interval(values: Sequence[float], confidence: float) -> dict[str, Any]:
    return asdict(mean_ci(values, confidence))


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _kept(pairs: Sequence[tuple[float | None, float | None]]) -> list[tuple[float, float]]:
    """The pairs whose two values are finite (a diverged run has none)."""
    return [(a, b) for a, b in pairs if a is not None and b is not None and _finite(a) and _finite(b)]


def _paired(kept: Sequence[tuple[float, float]], confidence: float) -> dict[str, Any]:
    """The paired comparison over the seeds where both values are finite (:func:`_kept`)."""
    result = paired([a for a, _ in kept], [b for _, b in kept], confidence)
    effect = asdict(result.effect)
    del effect["n"]
    return {**asdict(result.difference), "p": result.p_value, "d_z": effect}


def _power(differences: Sequence[float], alpha: float) -> dict[str, Any]:
    """``detectable`` (the smallest difference found with 80 % power at ``alpha``, and its d_z) and ``seeds_needed``.

    ``seeds_needed``: the seeds with which the test finds the observed d_z with 80 % power at ``alpha``.
    NaN and None where the test has no p-value (fewer than two seeds, no spread) or the table none.
    """
    found = power_analysis(differences, alpha) if math.isfinite(alpha) else Power(math.nan, math.nan, None)
    return {"detectable": {"difference": found.difference, "d_z": found.d_z}, "seeds_needed": found.seeds}
