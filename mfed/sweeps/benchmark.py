"""A benchmark: every selected strategy x seeds (x settings), run as Ray Tune trials, with intervals and paired tests.

``configs/benchmark/<name>.yaml`` names the strategies (a ``configs/aggregation`` name, or
``{label: [overrides]}`` for a variant such as M-Fed with GroupNorm), the seeds, the overrides of
every run and optionally a grid of ``settings`` (each one a whole comparison, e.g. the data per
client). Seed ``s`` fixes the data, the partition and the initial model, so the runs of one seed
differ only in the strategy: M-Fed is compared with each baseline seed by seed (a paired
t-test), and delta_m of a run is taken against the reference strategy's run of the same setting
and seed, client by client. The outputs (``results.json``, ``results.md``, the PNGs) are
described in :mod:`mfed.sweeps.results`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mfed.aggregation.functional import select
from mfed.loggers.report import TEST_SPLITS
from mfed.models.multitask import ENCODER_PREFIX, decoder_prefix
from mfed.sweeps.entries import reference_of
from mfed.sweeps.plan import Trial, expand_grid, merge_overrides, override_key, seeded_trials, trial_name
from mfed.sweeps.report import client_delta, client_tasks
from mfed.sweeps.results import write_results
from mfed.sweeps.summary import summarise
from mfed.types import state_nbytes


def strategy_runs(entries: Sequence[Any]) -> dict[str, list[str]]:
    """``{label: overrides}`` of the benchmark's strategies: ``mfed`` -> ``[aggregation=mfed]``; a mapping as given."""
    from mfed.config_dir import group_options

    runs: dict[str, list[str]] = {}
    options = group_options("aggregation")
    for entry in entries:
        if isinstance(entry, str):
            if entry not in options:  # before the roles are checked against the list: name the real mistake
                raise ValueError(
                    f"benchmark.strategies: {entry!r}: there is no configs/aggregation/{entry}.yaml; choose one of "
                    f"{', '.join(options)}, or give {{label: [aggregation=<name>, ...]}} for a variant"
                )
            label, overrides = entry, [f"aggregation={entry}"]
        elif isinstance(entry, Mapping) and len(entry) == 1:
            label, overrides = next(iter(entry.items()))
            overrides = [str(o) for o in overrides]
            if not any(override_key(o) == "aggregation" for o in overrides):
                raise ValueError(f"benchmark.strategies: {label!r} must pick a strategy: add aggregation=<name>")
        else:
            raise ValueError(
                f"benchmark.strategies: each entry is a strategy name or {{label: [overrides]}}, got {entry!r}"
            )
        if label in runs:
            raise ValueError(f"benchmark.strategies: {label!r} appears twice")
        if not label.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"benchmark.strategies: label {label!r} must be letters, digits, _ or -")
        runs[label] = overrides
    if not runs:
        raise ValueError("benchmark.strategies is empty: name at least two, e.g. [local, mfed]")
    return runs


def benchmark_seeds(bench: DictConfig) -> list[int]:
    """The seeds, checked: whole numbers, no repeats."""
    seeds = list(bench.seeds)
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"benchmark.seeds must be distinct integers, e.g. [0, 1, 2], got {seeds}")
    return seeds


def benchmark_reference(bench: DictConfig) -> str | dict[str, str] | None:
    """``benchmark.reference``: one strategy, or a mapping from a strategy to its own reference."""
    reference = bench.get("reference")
    if isinstance(reference, DictConfig):
        return {str(k): str(v) for k, v in reference.items()}
    return None if reference is None else str(reference)


def plan_benchmark(
    bench: DictConfig, base: Sequence[str], tuned: Mapping[tuple[str, str], Sequence[str]] | None = None
) -> list[Trial]:
    """Every (setting, strategy, seed) run, in that order; one run of each (setting, strategy) is built to check it.

    ``tuned``: each (setting, strategy)'s chosen hyperparameters as overrides (:mod:`mfed.sweeps.tuning`).
    """
    runs, seeds, settings, grid = benchmark_grid(bench, base)
    common = [str(o) for o in bench.get("overrides") or []]
    reference = benchmark_reference(bench)
    trials = []
    for setting in settings:
        setting_name = trial_name(setting) or "default"
        for label, chosen in runs.items():
            own = list((tuned or {}).get((setting_name, label), []))
            overrides = merge_overrides(["backend=ray"], common, setting, base, chosen, own)
            name = f"{setting_name}_{label}" if grid else label
            labels = {"strategy": label, "setting": setting_name}
            trials += seeded_trials(name, overrides, seeds, labels, reference=reference_of(reference, label) == label)
    return trials


def benchmark_grid(
    bench: DictConfig, base: Sequence[str]
) -> tuple[dict[str, list[str]], list[int], list[tuple[str, ...]], dict[str, Any]]:
    """The strategies' overrides, the seeds, the settings and their grid, checked against the command line."""
    bad = [o for o in base if override_key(o) in ("aggregation", "seed")]
    if bad:
        raise ValueError(f"{bad[0]}: a benchmark picks the strategies and seeds itself (benchmark.strategies, "
                         "benchmark.seeds); leave it off the command line")  # fmt: skip
    if "backend=serial" in base:
        raise ValueError("backend=serial: a benchmark runs every run as a Ray Tune trial; leave it off")
    runs, seeds = strategy_runs(OmegaConf.to_container(bench.strategies)), benchmark_seeds(bench)  # type: ignore[arg-type]
    reference = benchmark_reference(bench)
    named = {"compare": bench.get("compare")}
    if isinstance(reference, dict):  # each key and each value is a strategy
        named.update({f"reference.{k}": v for k, v in reference.items()})
        named.update({f"reference.{k} (the key)": k for k in reference})
    else:
        named["reference"] = reference
    for role, value in named.items():
        if value is not None and value not in runs:
            raise ValueError(f"benchmark.{role}={value} is not among benchmark.strategies {list(runs)}")
    grid = OmegaConf.to_container(bench.settings, resolve=True) if bench.get("settings") else {}
    settings = expand_grid(grid) if grid else [()]  # type: ignore[arg-type]
    varied = [o for o in base if override_key(o) in grid]  # type: ignore[operator]
    if varied:
        raise ValueError(f"{varied[0]}: benchmark.settings varies {override_key(varied[0])}; leave it off the "
                         "command line (or set benchmark.settings={})")  # fmt: skip
    return runs, seeds, settings, grid  # type: ignore[return-value]


def _curves(history: Sequence[Mapping[str, Any]]) -> dict[str, list[list[float]]]:
    """``{key: [[round, value], ...]}`` of every per-task validation metric, training loss and diagnostic."""
    curves: dict[str, list[list[float]]] = {}
    for row in history:
        for key, value in row.items():
            if key.startswith(("val/", "train/", "diag/")) and key.count("/") == 2 and value is not None:
                curves.setdefault(key, []).append([float(row["round"]), float(value)])
    return curves


def _per_round(history: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """Mean over rounds of ``comm/<key>`` per trained client (None where no client trained)."""
    values = [row[key] / row["comm/clients"] for row in history if row.get("comm/clients")]
    return sum(values) / len(values) if values else None


def collect_runs(
    trials: Sequence[Trial], out_dir: Path, errors: Mapping[str, str], reference: str | Mapping[str, str] | None
) -> list[dict[str, Any]]:
    """One record per trial (see :mod:`mfed.sweeps.results`), delta_m against its reference (same setting, seed).

    ``reference``: one strategy for all, or each strategy's own (:func:`mfed.sweeps.entries.reference_of`).

    ``clients`` holds the final per-(client, task) test metrics, keyed ``<id>/<task>/test_<metric>``
    (``<id>/test_<metric>`` in runs written before ``client_tasks``); ``task_order`` is the tasks in
    the order the clients first hold them (:func:`mfed.sweeps.report.client_tasks`).
    """
    summaries: dict[str, dict[str, Any]] = {}
    records = []
    for t in trials:
        folder = out_dir / t.name
        record: dict[str, Any] = {**t.labels, "trial": t.name, "overrides": list(t.overrides), "out_dir": t.name}
        summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").exists() else None
        if summary is None or summary.get("status") != "completed":
            record["status"] = summary["status"] if summary else "failed"
            record["error"] = errors.get(t.name) or (summary or {}).get("error") or "no summary.json: it did not finish"
            records.append(record)
            continue
        summaries[t.name] = summary
        history = json.loads((folder / "history.json").read_text())
        final = summary["final"]
        record["status"] = "completed"
        for split in ("val", *TEST_SPLITS):
            record[split] = {k[len(split) + 1 :]: v for k, v in final.items() if k.startswith(f"{split}/")}
        record["clients"] = {
            k[len("client/") :]: v
            for k, v in final.items()
            if k.startswith("client/") and ("/test_" in k or "/local_test_" in k)
        }
        record["curves"] = _curves(history)
        record["comm"] = {
            k: _per_round(history, f"comm/{k}") for k in ("bytes_up", "bytes_up_encoder", "bytes_down", "private_bytes")
        }
        record["tasks"] = summary["tasks"]
        record["epsilon"] = final.get("privacy/epsilon")  # under privacy=dp: epsilon reached after the last round
        record["machine"] = summary.get("machine")
        record["task_order"] = list(dict.fromkeys(t for tasks in client_tasks(summary).values() for t in tasks))
        records.append(record)
    by_labels = {(r["setting"], r["strategy"], r["seed"]): r for r in records}
    for r in records:
        against = reference_of(reference, r["strategy"])
        ref = by_labels.get((r["setting"], against, r["seed"])) if against else None
        ours, theirs = summaries.get(r["trial"]), summaries.get(ref["trial"]) if ref else None
        if ours is None or theirs is None:
            r["delta_m"] = None
            continue
        r["delta_m"] = client_delta(ours, theirs)
        if r.get("local_test"):  # FMTL-Bench's view: per task, on the global test set (ΔG) and clients' own (ΔP)
            r["delta_p"] = client_delta(ours, theirs, "local_test")
            r["delta_tasks"] = {
                split: {t: client_delta(ours, theirs, split, t) for t in r["task_order"]} for split in TEST_SPLITS
            }
    return records


def model_bytes(overrides: Sequence[str]) -> dict[str, Any]:
    """Bytes of the encoder, of each task's decoder and of the full multi-task model (all of them) of a run."""
    from mfed.config import load_config
    from mfed.models.multitask import ModelFactory
    from mfed.run import build_tasks, instantiate

    cfg = load_config([*overrides, "out_dir=unused", "logger=none"])
    tasks = build_tasks(cfg)
    model = ModelFactory(instantiate(cfg.model.encoder), instantiate(cfg.model.decoder), int(cfg.seed))(
        list(tasks.values())
    )
    full = model.state_dict()
    encoder = state_nbytes(select(full, [ENCODER_PREFIX]))
    decoders = {t: state_nbytes(select(full, [decoder_prefix(t)])) for t in tasks}
    return {"encoder": encoder, "decoders": decoders, "full": encoder + sum(decoders.values())}


def run_benchmark(bench: DictConfig, base: Sequence[str], out_dir: str | Path) -> dict[str, Any]:
    """Plan and check every run, run them with Ray Tune, and write results.json, results.md and the PNGs."""
    from mfed.sweeps.schedule import run_trials

    out_dir = Path(out_dir).resolve()
    trials = plan_benchmark(bench, base)  # every run checked before anything runs, tuning included
    tuning: dict[str, Any] = {}
    tuned: dict[tuple[str, str], list[str]] = {}
    if bench.get("tune"):  # each strategy's hyperparameters first, on validation, on the tuning seeds
        from mfed.sweeps.tuning import tuning_plan, tuning_results

        runs, _, settings, _ = benchmark_grid(bench, base)
        tune_trials, configs = tuning_plan(bench, base, runs, settings)
        run_trials(tune_trials, [], out_dir, f"{bench.name}-tune", int(bench.max_concurrent))
        tuning = tuning_results(tune_trials, configs, out_dir)
        tuned = {
            (setting, label): [f"{k}={v}" for k, v in entry["chosen"].items()]
            for setting, by_label in tuning.items()
            for label, entry in by_label.items()
        }
        trials = plan_benchmark(bench, base, tuned)
    firsts = {t.labels["setting"]: t for t in reversed(trials)}
    sizes = {setting: model_bytes(t.overrides) for setting, t in firsts.items()}
    errors = run_trials(trials, [], out_dir, str(bench.name), int(bench.max_concurrent))
    confidence = float(bench.get("confidence", 0.95))
    common = [str(o) for o in bench.get("overrides") or []]
    reference = benchmark_reference(bench)
    records = collect_runs(trials, out_dir, errors, reference)
    results = {
        "benchmark": str(bench.name), "overrides": merge_overrides(common, base),
        "strategies": list(dict.fromkeys(t.labels["strategy"] for t in trials)), "seeds": benchmark_seeds(bench),
        "reference": reference, "compare": bench.get("compare"), "model_bytes": sizes,
        "aliases": OmegaConf.to_container(bench.aliases) if bench.get("aliases") else {},
        **summarise(records, bench.get("compare"), confidence), "runs": records,
        **({"tuning": tuning} if tuning else {}),
    }  # fmt: skip
    write_results(results, out_dir)
    return results
