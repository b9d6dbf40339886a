"""A benchmark's pictures: learning curves with interval bands, delta_m per strategy, privacy against utility.

Drawn from ``results.json`` alone (:mod:`mfed.sweeps.results` writes them beside the markdown).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mfed.sweeps.entries import arrow, compared, half_width, privacy_levels, reference_name, tasks_of
from mfed.sweeps.stats import Interval, mean_ci

PERCENT = ("mIoU", "odsF", "maxF", "mAP")  # headlines in percent: in [0, 100]; every other one is >= 0


def band(cis: Sequence[Interval], headline: str) -> tuple[list[float], list[float]]:
    """The intervals' bounds (the mean where there is none), clipped to what ``headline`` can be: [0, 100] or >= 0."""
    ceiling = 100.0 if headline in PERCENT else math.inf
    low = [max(0.0, c.mean if math.isnan(c.low) else c.low) for c in cis]
    high = [min(ceiling, c.mean if math.isnan(c.high) else c.high) for c in cis]
    return low, high


def plot_curves(results: Mapping[str, Any], setting: str, task: str, path: Path) -> None:
    """Validation headline per round: each strategy's mean over seeds, its interval as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    info = tasks_of(results)[task]
    key = f"val/{task}/{info['headline']}"
    fig, ax = plt.subplots(figsize=(8, 4.6))
    colours = plt.get_cmap("tab20")
    for i, strategy in enumerate(results["strategies"]):
        runs = [r for r in results["runs"] if r["setting"] == setting and r["strategy"] == strategy]
        by_round: dict[float, list[float]] = {}
        for r in runs:
            for rnd, value in r.get("curves", {}).get(key, []):
                if value is not None and math.isfinite(value):
                    by_round.setdefault(rnd, []).append(value)
        if not by_round:
            continue
        rounds = sorted(by_round)
        cis = [mean_ci(by_round[r], results["confidence"]) for r in rounds]
        width = 2.6 if strategy == results["settings"][setting]["compare"] else 1.4
        colour, style = colours(i % 20), ("-", "--", "-.", ":")[i // 10 % 4]
        ax.plot(rounds, [c.mean for c in cis], color=colour, linestyle=style, label=strategy, linewidth=width)
        low, high = band(cis, info["headline"])
        ax.fill_between(rounds, low, high, color=colour, alpha=0.08, linewidth=0)
    seeds = ",".join(map(str, results["seeds"]))
    where = "" if setting == "default" else f", {setting}"
    ax.set_title(f"{results['benchmark']}: val {task} {info['headline']} {arrow(info['higher_is_better'])}"
                 f"{where} (seeds {seeds}; band: {results['confidence']:.0%} interval)", fontsize=9)  # fmt: skip
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{info['headline']} {arrow(info['higher_is_better'])}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.text(0.5, 0.5, f"no run logged {key}", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_delta_m(results: Mapping[str, Any], path: Path) -> None:
    """One panel per setting: each strategy's delta_m with its interval, the value printed on the bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(results["settings"])
    n = len(results["strategies"])
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 0.9 + 0.38 * n), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        table = results["settings"][setting]["strategies"]
        names = [s for s in results["strategies"] if s in table]
        means = [table[s]["delta_m"]["mean"] or 0.0 for s in names]  # null: no reference to compare with
        errors = [half_width(table[s]["delta_m"]) for s in names]
        colours = ["C2" if m > 0 else "C3" if m < 0 else "C7" for m in means]
        ax.barh(names, means, xerr=errors, color=colours, capsize=3)
        for y, (m, e) in enumerate(zip(means, errors, strict=True)):
            label = f"{m:+.2f}" + (f" ± {e:.2f}" if e else "")
            side = {"xytext": (4, 0), "ha": "left"} if m >= 0 else {"xytext": (-4, 0), "ha": "right"}
            end = m + e if m >= 0 else m - e  # beyond the error bar
            ax.annotate(label, (end, y), textcoords="offset points", va="center", fontsize=7, **side)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.invert_yaxis()
        ax.margins(x=0.35)
        ax.set_xlabel(f"Δm vs {reference_name(results.get('reference'))} (%) ↑")
        where = "" if setting == "default" else f": {setting}"
        seeds = ",".join(map(str, results["seeds"]))
        ax.set_title(f"{results['benchmark']}{where} (seeds {seeds}; {results['confidence']:.0%} interval)", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_privacy(results: Mapping[str, Any], path: Path) -> None:
    """Delta_m of each strategy against the epsilon its setting reached (the privacy-utility trade-off)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = privacy_levels(results)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = list(range(len(levels)))
    for i, strategy in enumerate(compared(results)):
        entries = [results["settings"][setting]["strategies"].get(strategy) for setting, _ in levels]
        means = [e["delta_m"]["mean"] if e and e["delta_m"]["mean"] is not None else math.nan for e in entries]
        errors = [half_width(e["delta_m"]) if e else 0.0 for e in entries]
        ax.errorbar([p + 0.06 * i for p in x], means, yerr=errors, marker="o", capsize=3, label=strategy)
    ax.axhline(0, color="black", linewidth=0.8, label=f"{reference_name(results.get('reference'))} (shares nothing)")
    ax.set_xticks(x, ["∞ (no DP)" if not math.isfinite(e) else f"{e:.3g}" for _, e in levels])
    ax.set_xlabel("epsilon reached (delta 1e-5), client-level")
    ax.set_ylabel(f"Δm vs {reference_name(results.get('reference'))} (%) ↑")
    seeds = ",".join(map(str, results["seeds"]))
    title = f"{results['benchmark']}: privacy-utility (seeds {seeds}; {results['confidence']:.0%} interval)"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_by_setting(results: Mapping[str, Any], path: Path) -> None:
    """Delta_m of each strategy across the settings, in their order (e.g. clients per round under DP)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(results["settings"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = list(range(len(settings)))
    for i, strategy in enumerate(compared(results)):
        entries = [results["settings"][setting]["strategies"].get(strategy) for setting in settings]
        means = [e["delta_m"]["mean"] if e and e["delta_m"]["mean"] is not None else math.nan for e in entries]
        errors = [half_width(e["delta_m"]) if e and e["delta_m"]["mean"] is not None else 0.0 for e in entries]
        ax.errorbar([p + 0.04 * i for p in x], means, yerr=errors, marker="o", capsize=3, label=strategy)
    ax.axhline(0, color="black", linewidth=0.8, label=reference_name(results.get("reference")))
    ax.set_xticks(x, settings, fontsize=8)
    ax.set_xlabel("setting")
    ax.set_ylabel(f"Δm vs {reference_name(results.get('reference'))} (%) ↑")
    seeds = ",".join(map(str, results["seeds"]))
    ax.set_title(
        f"{results['benchmark']}: Δm by setting (seeds {seeds}; {results['confidence']:.0%} interval)", fontsize=9
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
