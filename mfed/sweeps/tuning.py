"""``benchmark.tune``: each strategy's hyperparameters chosen on validation with one budget, before the comparison.

A comparison in which every strategy shares one learning rate favours whichever strategy that rate
suits. With ``benchmark.tune`` each strategy of each setting first runs ``samples`` configurations
on the tuning seeds (disjoint from the comparison's), and the comparison then runs each strategy
with the configuration it did best with, on the benchmark's seeds.

- **Space**: ``tune.space`` maps ``all`` (every strategy) and a strategy's label to ``{key:
  [low, high]}``; each key is drawn log-uniformly in ``[low, high]``. A key's ``i``-th draw is
  the same for every strategy (common random numbers: strategies are tried at the same learning
  rates), seeded from the key and ``i``.
- **Budget**: every strategy gets ``samples`` configurations times the tuning seeds, whatever
  the size of its space (a strategy with one more key spreads the same runs over more keys).
- **Choice**: on validation only (never the test sets): per task, the configurations are ranked
  by the task's headline validation figure after the last round (mean over the tuning seeds;
  equal figures share their ranks' mean); a configuration's score is its mean rank over tasks;
  the best score wins (ties: the earlier draw). A configuration with a failed or non-finite run
  ranks last on every task.

The chosen values, every configuration's figures and the budget go into ``results.json``
(``"tuning"``) and the report.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mfed.sweeps.plan import Trial, merge_overrides, seeded_trials


def tune_space(bench: DictConfig, labels: Sequence[str]) -> dict[str, dict[str, tuple[float, float]]]:
    """``{label: {key: (low, high)}}``: ``all`` and each label's own keys, checked."""
    tune = bench.tune
    raw = OmegaConf.to_container(tune.get("space") or {}, resolve=True)
    assert isinstance(raw, dict)
    from mfed.config_dir import group_options

    # a space for a strategy left out of this benchmark (benchmark.strategies=[...] on the command line)
    # is unused; one naming no strategy at all is a mistake
    unknown = [str(k) for k in raw if k != "all" and k not in labels and k not in group_options("aggregation")]
    if unknown:
        raise ValueError(f"benchmark.tune.space.{unknown[0]}: not a strategy; use all or one of {labels}")
    spaces: dict[str, dict[str, tuple[float, float]]] = {}
    for label in labels:
        keys = {**(raw.get("all") or {}), **(raw.get(label) or {})}
        space = {}
        for key, bounds in keys.items():
            ok = isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds)
            if not ok or not 0 < bounds[0] <= bounds[1]:
                raise ValueError(
                    f"benchmark.tune.space: {key}={bounds}: give [low, high] with 0 < low <= high (drawn log-uniformly)"
                )
            space[str(key)] = (float(bounds[0]), float(bounds[1]))
        spaces[label] = space
    if not any(spaces.values()):
        raise ValueError("benchmark.tune.space is empty: give e.g. {all: {optimizer.lr: [3.0e-4, 3.0e-3]}}")
    return spaces


def draw(key: str, i: int, low: float, high: float) -> float:
    """The ``i``-th log-uniform draw of ``key`` in ``[low, high]``, the same for every strategy (4 digits)."""
    rng = np.random.default_rng([zlib.crc32(key.encode()), i])
    return float(f"{math.exp(rng.uniform(math.log(low), math.log(high))):.4g}")


def configurations(space: Mapping[str, tuple[float, float]], samples: int) -> list[dict[str, float]]:
    """``samples`` configurations of ``space`` (:func:`draw`)."""
    return [{key: draw(key, i, *bounds) for key, bounds in space.items()} for i in range(samples)]


def tuning_plan(
    bench: DictConfig, base: Sequence[str], runs: Mapping[str, list[str]], settings: Sequence[tuple[str, ...]]
) -> tuple[list[Trial], dict[tuple[str, str], list[dict[str, float]]]]:
    """The tuning trials (every setting x strategy x configuration x tuning seed) and each one's configurations."""
    from mfed.sweeps.plan import trial_name

    tune = bench.tune
    samples, seeds = int(tune.samples), [int(s) for s in tune.seeds]
    if samples < 1 or not seeds:
        raise ValueError(f"benchmark.tune needs samples >= 1 and seeds, got samples={samples}, seeds={seeds}")
    overlap = sorted(set(seeds) & {int(s) for s in bench.seeds})
    if overlap:
        raise ValueError(f"benchmark.tune.seeds {overlap} are among benchmark.seeds: tune on fresh seeds")
    spaces = tune_space(bench, list(runs))
    common = [str(o) for o in bench.get("overrides") or []] + [str(o) for o in tune.get("overrides") or []]
    trials, configs = [], {}
    for setting in settings:
        setting_name = trial_name(setting) or "default"
        for label, chosen in runs.items():
            configs[setting_name, label] = configurations(spaces[label], samples)
            for i, values in enumerate(configs[setting_name, label]):
                drawn = [f"{k}={v}" for k, v in values.items()]
                overrides = merge_overrides(["backend=ray"], common, setting, base, chosen, drawn)
                labels = {"strategy": label, "setting": setting_name, "config": i}
                trials += seeded_trials(f"tune-{setting_name}_{label}-c{i}", overrides, seeds, labels)
    return trials, configs


def validation(folder: Path) -> dict[str, tuple[float | None, bool]] | None:
    """``{task: (headline validation figure, higher is better)}`` after a run's last round; None unless it completed."""
    path = folder / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if summary.get("status") != "completed":
        return None
    final = summary["final"]
    return {
        t: (final.get(f"val/{t}/{info['headline']}"), info["higher_is_better"][info["headline"]])
        for t, info in summary["tasks"].items()
    }


def choose(figures: Sequence[Mapping[str, float] | None], higher: Mapping[str, bool]) -> tuple[int, list[float | None]]:
    """The best configuration by mean rank over tasks, and each configuration's mean rank (None: no result).

    ``figures``: each configuration's ``{task: validation headline}`` (mean over tuning seeds), or
    None where a run failed; ``higher``: per task, whether higher is better.
    """
    from scipy.stats import rankdata

    n = len(figures)
    ranks = np.zeros(n)
    for task, up in higher.items():
        values = np.full(n, np.inf)  # failures last (tied among themselves)
        for i, f in enumerate(figures):
            v = None if f is None else f.get(task)
            if v is not None and math.isfinite(v):
                values[i] = -v if up else v
        ranks += rankdata(values, method="average")  # equal figures share their ranks' mean
    scores = [float(r / len(higher)) for r in ranks]
    best = min(range(n), key=lambda i: (scores[i], i))
    return best, [None if f is None else s for f, s in zip(figures, scores, strict=True)]


def tuning_results(
    trials: Sequence[Trial], configs: Mapping[tuple[str, str], list[dict[str, float]]], out_dir: Path
) -> dict[str, dict[str, Any]]:
    """``{setting: {strategy: {"chosen", "configs": [{"values", "val", "rank", "runs"}], "budget"}}}``."""
    out: dict[str, dict[str, Any]] = {}
    for (setting, label), values in configs.items():
        mine = [t for t in trials if t.labels["setting"] == setting and t.labels["strategy"] == label]
        figures: list[dict[str, float] | None] = []
        higher: dict[str, bool] = {}
        for i in range(len(values)):
            runs = [validation(out_dir / t.name) for t in mine if t.labels["config"] == i]
            done = [r for r in runs if r is not None]
            if not runs or len(done) < len(runs):
                figures.append(None)
                continue
            higher = {task: up for task, (_, up) in done[0].items()}
            figures.append({task: float(np.mean([r[task][0] for r in done])) for task in higher})
        if not higher:
            raise RuntimeError(f"tuning {label} ({setting}): no configuration completed; see {out_dir}/tune-*")
        best, scores = choose(figures, higher)
        out.setdefault(setting, {})[label] = {
            "chosen": values[best],
            "configs": [{"values": v, "val": f, "rank": s} for v, f, s in zip(values, figures, scores, strict=True)],
            "budget": len(mine),
        }
    return out


def tuning_lines(tuning: Mapping[str, Mapping[str, Any]], setting: str) -> list[str]:
    """The report's lines on one setting's tuning: the budget, each strategy's chosen values."""
    chosen = tuning.get(setting)
    if not chosen:
        return []
    budgets = {entry["budget"] for entry in chosen.values()}
    lines = [
        "",
        f"**Tuned on validation** ({'/'.join(map(str, sorted(budgets)))} runs per strategy, on seeds apart from the "
        "comparison's; chosen by mean rank over tasks of the headline validation figure, `mfed/sweeps/tuning.py`):",
        "",
        "| strategy | chosen | configurations (mean rank) |",
        "|---|---|---|",
    ]
    for label, entry in chosen.items():
        values = ", ".join(f"{k}={v:g}" for k, v in entry["chosen"].items())
        tried = "; ".join(
            ", ".join(f"{v:g}" for v in c["values"].values())
            + (f" ({c['rank']:.1f})" if c["rank"] is not None else " (failed)")
            for c in entry["configs"]
        )
        lines.append(f"| {label} | {values} | {tried} |")
    return lines
