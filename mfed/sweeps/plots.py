"""A benchmark's pictures: learning curves with interval bands, delta_m per strategy, privacy against utility.

Drawn from ``results.json`` alone (:mod:`mfed.sweeps.results` writes them beside the markdown). Each
picture is drawn from its data (``*_data``: plain numbers and labels, no matplotlib), and the PNG
carries that data as JSON in its text chunk :data:`DATA_KEY` (:func:`png_data` reads it back), so a
published picture can be checked against its results without drawing it again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mfed.sweeps.entries import arrow, compared, half_width, privacy_levels, reference_name, tasks_of
from mfed.sweeps.stats import Interval, mean_ci

PERCENT = ("mIoU", "odsF", "maxF", "mAP")  # headlines in percent: in [0, 100]; every other one is >= 0
DATA_KEY = "mfed:data"  # the PNG text chunk that holds what the picture draws (JSON)


def band(cis: Sequence[Interval], headline: str) -> tuple[list[float], list[float]]:
    """The intervals' bounds (the mean where there is none), clipped to what ``headline`` can be: [0, 100] or >= 0."""
    ceiling = 100.0 if headline in PERCENT else math.inf
    low = [max(0.0, c.mean if math.isnan(c.low) else c.low) for c in cis]
    high = [min(ceiling, c.mean if math.isnan(c.high) else c.high) for c in cis]
    return low, high


def _finite_or_none(values: Sequence[float]) -> list[float | None]:
    """``values`` for JSON: NaN (nothing to draw) as None."""
    return [None if math.isnan(v) else v for v in values]


def _nan(values: Sequence[float | None]) -> list[float]:
    """The inverse of :func:`_finite_or_none`: None as NaN, which matplotlib leaves out."""
    return [math.nan if v is None else v for v in values]


def _seeds(results: Mapping[str, Any]) -> str:
    return ",".join(map(str, results["seeds"]))


def curves_data(results: Mapping[str, Any], setting: str, task: str) -> dict[str, Any]:
    """What :func:`draw_curves` draws: per strategy with values, its mean per round and its interval band."""
    info = tasks_of(results)[task]
    key = f"val/{task}/{info['headline']}"
    series = []
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
        low, high = band(cis, info["headline"])
        series.append({
            "label": strategy, "colour": i % 20, "style": ("-", "--", "-.", ":")[i // 10 % 4],
            "width": 2.6 if strategy == results["settings"][setting]["compare"] else 1.4,
            "rounds": rounds, "mean": [c.mean for c in cis], "low": low, "high": high,
        })  # fmt: skip
    where = "" if setting == "default" else f", {setting}"
    title = (f"{results['benchmark']}: val {task} {info['headline']} {arrow(info['higher_is_better'])}{where} "
             f"(seeds {_seeds(results)}; band: {results['confidence']:.0%} interval)")  # fmt: skip
    ylabel = f"{info['headline']} {arrow(info['higher_is_better'])}"
    return {"kind": "curves", "title": title, "ylabel": ylabel, "empty": f"no run logged {key}", "series": series}


def delta_m_data(results: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`draw_delta_m` draws: per setting, each strategy's delta_m and its interval's half-width."""
    panels = []
    for setting in results["settings"]:
        table = results["settings"][setting]["strategies"]
        names = [s for s in results["strategies"] if s in table]
        where = "" if setting == "default" else f": {setting}"
        panels.append({
            "title": f"{results['benchmark']}{where} (seeds {_seeds(results)}; {results['confidence']:.0%} interval)",
            "names": names,
            "means": [table[s]["delta_m"]["mean"] or 0.0 for s in names],  # null: no reference to compare with
            "errors": [half_width(table[s]["delta_m"]) for s in names],
        })  # fmt: skip
    xlabel = f"Δm vs {reference_name(results.get('reference'))} (%) ↑"
    return {"kind": "delta_m", "rows": len(results["strategies"]), "xlabel": xlabel, "panels": panels}


def _across(results: Mapping[str, Any], settings: Sequence[str], strategy: str) -> tuple[list[float], list[float]]:
    """``strategy``'s delta_m means (NaN where it has none) and half-widths over ``settings``."""
    entries = [results["settings"][setting]["strategies"].get(strategy) for setting in settings]
    means = [e["delta_m"]["mean"] if e and e["delta_m"]["mean"] is not None else math.nan for e in entries]
    errors = [half_width(e["delta_m"]) if e and e["delta_m"]["mean"] is not None else 0.0 for e in entries]
    return means, errors


def privacy_data(results: Mapping[str, Any]) -> dict[str, Any]:
    """The trade-off :func:`draw_across` draws: each compared strategy's delta_m per privacy level, no DP first."""
    levels = privacy_levels(results)
    x = list(range(len(levels)))
    series = []
    for i, strategy in enumerate(compared(results)):
        means, errors = _across(results, [setting for setting, _ in levels], strategy)
        series.append({"label": strategy, "x": [p + 0.06 * i for p in x], "mean": _finite_or_none(means),
                       "error": errors})  # fmt: skip
    reference = reference_name(results.get("reference"))
    ticks = ["∞ (no DP)" if not math.isfinite(e) else f"{e:.3g}" for _, e in levels]
    interval = f"seeds {_seeds(results)}; {results['confidence']:.0%} interval"
    return {
        "kind": "tradeoff", "series": series, "ticks": ticks, "zero": f"{reference} (shares nothing)",
        "ylabel": f"Δm vs {reference} (%) ↑", "title": f"{results['benchmark']}: privacy-utility ({interval})",
    }  # fmt: skip


def by_setting_data(results: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`draw_across` draws by setting: each compared strategy's delta_m in each setting, in their order."""
    settings = list(results["settings"])
    series = []
    for i, strategy in enumerate(compared(results)):
        means, errors = _across(results, settings, strategy)
        series.append({"label": strategy, "x": [p + 0.04 * i for p in range(len(settings))],
                       "mean": _finite_or_none(means), "error": errors})  # fmt: skip
    reference = reference_name(results.get("reference"))
    interval = f"seeds {_seeds(results)}; {results['confidence']:.0%} interval"
    return {
        "kind": "by_setting", "series": series, "zero": reference, "ylabel": f"Δm vs {reference} (%) ↑",
        "ticks": settings, "title": f"{results['benchmark']}: Δm by setting ({interval})",
    }  # fmt: skip


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, data: Mapping[str, Any]) -> None:
    """Write ``fig`` as PNG with ``data`` in its text chunk :data:`DATA_KEY`, then close it."""
    fig.savefig(path, dpi=100, metadata={DATA_KEY: json.dumps(data)})
    _pyplot().close(fig)


def png_data(path: Path) -> dict[str, Any] | None:
    """The data a picture written here draws (its :data:`DATA_KEY` chunk); None for a PNG without it."""
    from PIL import Image

    with Image.open(path) as image:  # the text chunks before the pixels, read without decoding them
        text = image.info.get(DATA_KEY)
    return None if text is None else json.loads(text)


def draw_curves(data: Mapping[str, Any], path: Path) -> None:
    """The learning curves of :func:`curves_data`: each strategy's mean per round, its interval as a band."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.6))
    colours = plt.get_cmap("tab20")
    for line in data["series"]:
        colour = colours(line["colour"])
        ax.plot(line["rounds"], line["mean"], color=colour, linestyle=line["style"], label=line["label"],
                linewidth=line["width"])  # fmt: skip
        ax.fill_between(line["rounds"], line["low"], line["high"], color=colour, alpha=0.08, linewidth=0)
    ax.set_title(data["title"], fontsize=9)
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(data["ylabel"])
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.text(0.5, 0.5, data["empty"], transform=ax.transAxes, ha="center")
    fig.tight_layout()
    _save(fig, path, data)


def draw_delta_m(data: Mapping[str, Any], path: Path) -> None:
    """The bars of :func:`delta_m_data`: one panel per setting, each value printed beyond its error bar."""
    plt = _pyplot()
    panels = data["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.9 + 0.38 * data["rows"]), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        means, errors = panel["means"], panel["errors"]
        colours = ["C2" if m > 0 else "C3" if m < 0 else "C7" for m in means]
        ax.barh(panel["names"], means, xerr=errors, color=colours, capsize=3)
        for y, (m, e) in enumerate(zip(means, errors, strict=True)):
            label = f"{m:+.2f}" + (f" ± {e:.2f}" if e else "")
            side = {"xytext": (4, 0), "ha": "left"} if m >= 0 else {"xytext": (-4, 0), "ha": "right"}
            end = m + e if m >= 0 else m - e  # beyond the error bar
            ax.annotate(label, (end, y), textcoords="offset points", va="center", fontsize=7, **side)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.invert_yaxis()
        ax.margins(x=0.35)
        ax.set_xlabel(data["xlabel"])
        ax.set_title(panel["title"], fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    _save(fig, path, data)


def draw_across(data: Mapping[str, Any], path: Path) -> None:
    """The lines of :func:`privacy_data` (against epsilon) or :func:`by_setting_data` (against the settings)."""
    plt = _pyplot()
    by_setting = data["kind"] == "by_setting"
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for line in data["series"]:
        ax.errorbar(line["x"], _nan(line["mean"]), yerr=line["error"], marker="o", capsize=3, label=line["label"])
    ax.axhline(0, color="black", linewidth=0.8, label=data["zero"])
    x = list(range(len(data["ticks"])))
    if by_setting:
        ax.set_xticks(x, data["ticks"], fontsize=8)
        ax.set_xlabel("setting")
    else:
        ax.set_xticks(x, data["ticks"])
        ax.set_xlabel("epsilon reached (delta 1e-5), client-level")
    ax.set_ylabel(data["ylabel"])
    ax.set_title(data["title"], fontsize=9)
    ax.legend(fontsize=7 if by_setting else 8)
    fig.tight_layout()
    _save(fig, path, data)


DRAW = {"curves": draw_curves, "delta_m": draw_delta_m, "tradeoff": draw_across, "by_setting": draw_across}


def draw(data: Mapping[str, Any], path: Path) -> None:
    """Draw a picture's data (any ``*_data`` of this module) to the PNG ``path``."""
    DRAW[data["kind"]](data, path)
