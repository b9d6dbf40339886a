"""Reading a benchmark's ``results.json`` (:mod:`mfed.sweeps.results`): its tasks, intervals and privacy levels.

A module of its own so that the markdown (:mod:`mfed.sweeps.results`) and the pictures
(:mod:`mfed.sweeps.plots`) read the file the same way without importing each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mfed.sweeps.stats import Interval


def tasks_of(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The benchmark's tasks by name, in the runs' order."""
    return {t["name"]: t for t in results["tasks"]}


def arrow(higher: bool) -> str:
    """The arrow that says which way a metric is better: ``↑`` (higher) or ``↓``."""
    return "↑" if higher else "↓"


def interval_of(entry: Mapping[str, Any]) -> Interval:
    """An interval of results.json (null where it was not finite) as the :class:`Interval` it was."""
    mean, low, high = (math.nan if entry[k] is None else float(entry[k]) for k in ("mean", "low", "high"))
    return Interval(mean, low, high, int(entry["n"]))


def half_width(entry: Mapping[str, Any]) -> float:
    """Half the interval's width; 0 where there is none (one seed)."""
    half = interval_of(entry).half_width
    return 0.0 if math.isnan(half) else half


def privacy_levels(results: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The settings as ``(setting, epsilon)``, least private first (no DP: infinity).

    Empty unless the settings are privacy levels: some run reached an epsilon and each setting's
    (its largest, to 2 significant digits) differs from the others'. A benchmark whose settings
    vary something else (clients per round) with DP strategies in each is drawn by setting instead.
    """
    levels = []
    for setting, section in results["settings"].items():
        spent = [e["epsilon"] for e in section["strategies"].values() if e.get("epsilon") is not None]
        levels.append((setting, max(spent) if spent else math.inf))
    distinct = len({f"{e:.2g}" for _, e in levels}) == len(levels)
    return sorted(levels, key=lambda level: -level[1]) if distinct and any(math.isfinite(e) for _, e in levels) else []


def private_by_setting(results: Mapping[str, Any]) -> bool:
    """Whether to draw delta_m against the settings: several settings, DP runs in them, not privacy levels."""
    private = any(e.get("epsilon") is not None for s in results["settings"].values() for e in s["strategies"].values())
    return len(results["settings"]) > 1 and private and not privacy_levels(results)


def reference_of(reference: str | Mapping[str, str] | None, strategy: str) -> str | None:
    """The strategy whose run (same setting, same seed) ``strategy``'s delta_m is taken against.

    ``reference`` is a benchmark's: one strategy for every other, or a mapping from a strategy to
    its own reference (``{mfed_eps8: mfed, fedavg_eps8: fedavg}``: each DP run against the same
    strategy without DP); a strategy that is its own reference, or has none, gets no delta_m but 0
    where it is some strategy's reference.
    """
    if isinstance(reference, Mapping):
        return reference.get(strategy) or (strategy if strategy in reference.values() else None)
    return reference


def reference_name(reference: str | Mapping[str, str] | None) -> str:
    """How reports name the reference: the strategy, or "each strategy's reference" for a mapping."""
    if isinstance(reference, Mapping):
        return "each strategy's reference"
    return str(reference)


def compared(results: Mapping[str, Any]) -> list[str]:
    """The strategies measured against another (their delta_m is not 0 by definition)."""
    reference = results.get("reference")
    return [s for s in results["strategies"] if reference_of(reference, s) not in (None, s)]
