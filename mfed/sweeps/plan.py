"""Planning trials: which runs, with which overrides, and how many CPUs each of their actors gets.

A sweep's grid (``configs/sweep/<name>.yaml``) maps Hydra override keys to values; each trial is
the base overrides plus one combination. Every trial is validated (``build``) before any starts.
Each trial runs in its own Tune placement group: one small bundle for the trial's driver and one
per client actor (one per client, or fewer hosting many with ``backend.clients_per_actor``), so
client actors of concurrent trials never wait on each other's CPUs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mfed.config import load_config
from mfed.federation.ray_backend import actor_count
from mfed.run import build

DRIVER_CPU = 0.01  # a trial's driver mostly waits on its clients


@dataclass(frozen=True)
class Trial:
    """One run of a sweep or benchmark: its name, its overrides, its clients and how many share an actor.

    ``per_actor`` is the trial's ``backend.clients_per_actor`` (1, K or ``auto``); the sweep turns
    it into a fixed number of actors per trial (:func:`actor_layout`), one placement bundle each.
    ``labels`` are what a benchmark reports the trial under (strategy, seed, setting).
    """

    name: str
    overrides: tuple[str, ...]
    clients: int
    reference: bool = False  # added as the delta_m reference
    per_actor: int | str = 1
    labels: Mapping[str, Any] = field(default_factory=dict)


def actor_layout(trial: Trial, cpus_per_trial: float) -> tuple[int, int]:
    """``(clients per actor, actors)`` of ``trial``: an actor per client, per K clients, or per CPU of its share."""
    if trial.per_actor == "auto":
        per_actor = math.ceil(trial.clients / actor_count(trial.clients, "auto", cpus_per_trial))
    else:
        per_actor = int(trial.per_actor)
    return per_actor, math.ceil(trial.clients / per_actor)


def expand_grid(grid: Mapping[str, Sequence[Any] | Any]) -> list[tuple[str, ...]]:
    """Cartesian product of ``{key: values}`` as override tuples (a scalar is one value)."""
    if not grid:
        raise ValueError("sweep.grid is empty: give at least one key with values, e.g. task_mix: [default, seg_depth]")
    axes = []
    for key, values in grid.items():
        values = list(values) if isinstance(values, Sequence) and not isinstance(values, str) else [values]
        if not values:
            raise ValueError(f"sweep.grid.{key} has no values")
        axes.append([f"{key}={v}" for v in values])
    return list(itertools.product(*axes))


def reference_overrides(overrides: Sequence[str], reference: str) -> tuple[str, ...]:
    """The reference run of a trial: the same overrides with the strategy (and its settings) replaced."""
    keep = [o for o in overrides if o.split("=", 1)[0].split(".")[0] != "aggregation"]
    return tuple(sorted([*keep, f"aggregation={reference}"]))


def override_key(override: str) -> str:
    """The key an override sets: ``federation.rounds=3`` -> ``federation.rounds``; ``~tasks.x`` -> ``tasks.x``."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(*lists: Sequence[str]) -> list[str]:
    """Overrides of every list in order, a later list's value replacing an earlier one's for the same key."""
    merged: dict[str, str] = {}
    for overrides in lists:
        for o in overrides:
            merged.pop(override_key(o), None)
            merged[override_key(o)] = o
    return list(merged.values())


def checked_trial(name: str, overrides: Sequence[str], base: Sequence[str], **fields: Any) -> Trial:
    """A trial of ``base`` + ``overrides``, built (and so checked) now: bad input fails before any trial starts."""
    cfg = load_config([*base, *overrides, "out_dir=unused", "logger=none"])
    driver = build(cfg)
    per_actor = cfg.backend.get("clients_per_actor", 1)  # the serial backend's trials run on Ray, one per client
    return Trial(name, tuple(overrides), len(driver.specs), per_actor=per_actor, **fields)


def seeded_trials(
    name: str, overrides: Sequence[str], seeds: Sequence[int], labels: Mapping[str, Any], reference: bool = False
) -> list[Trial]:
    """One trial of ``overrides`` per seed, ``<name>-s<seed>`` labelled ``labels`` and its seed.

    The first is built to check them all: a seed changes no shape.
    """
    trials: list[Trial] = []
    for seed in seeds:
        full, labels_of_seed = merge_overrides(overrides, [f"seed={seed}"]), {**labels, "seed": seed}
        if not trials:
            trials.append(checked_trial(f"{name}-s{seed}", full, [], labels=labels_of_seed, reference=reference))
        else:
            first = trials[0]
            trials.append(
                Trial(f"{name}-s{seed}", tuple(full), first.clients, first.reference, first.per_actor, labels_of_seed)
            )
    return trials


def trial_name(overrides: Sequence[str]) -> str:
    """A folder-safe name from overrides: ``aggregation=mfed, seed=1`` -> ``aggregation-mfed_seed-1``."""
    return "_".join(o.replace("=", "-").replace("/", "-") for o in overrides)


def plan_trials(sweep: DictConfig, base: Sequence[str]) -> list[Trial]:
    """The sweep's trials, plus the reference runs that delta_m needs; each validated by ``build``."""
    grid = OmegaConf.to_container(sweep.grid, resolve=True) if sweep.get("grid") else {}
    combos = expand_grid(grid)  # type: ignore[arg-type]
    n_grid = len(combos)
    reference = sweep.get("reference")
    if reference is not None:
        have = {tuple(sorted(c)) for c in combos}
        for combo in list(combos):
            ref = reference_overrides(combo, str(reference))
            if ref not in have:
                have.add(ref)
                combos.append(ref)
    return [checked_trial(trial_name(c), c, base, reference=i >= n_grid) for i, c in enumerate(combos)]


def per_trial_cpus(trials: Sequence[Trial], total_cpus: float, max_concurrent: int) -> float:
    """The CPUs each of ``max_concurrent`` concurrent trials may use."""
    if max_concurrent < 1:
        raise ValueError(f"sweep.max_concurrent must be >= 1, got {max_concurrent}")
    return total_cpus / min(max_concurrent, len(trials))


def cpus_per_actor(trials: Sequence[Trial], total_cpus: float, max_concurrent: int) -> float:
    """The CPU share per client actor that lets ``max_concurrent`` of the largest trials run at once (1/100 steps)."""
    per_trial = per_trial_cpus(trials, total_cpus, max_concurrent)
    most = max(actor_layout(t, per_trial)[1] for t in trials)
    share = math.floor(100 * (per_trial - DRIVER_CPU) / most) / 100
    if share <= 0:
        raise ValueError(
            f"{total_cpus:g} CPUs cannot hold {max_concurrent} trials of up to {most} client actors: lower "
            "sweep.max_concurrent, or set backend.clients_per_actor=auto (actors host many clients)"
        )
    return min(1.0, share)


def trial_overrides(
    trial: Trial, base: Sequence[str], sweep_dir: Path, group: str, cpus: float, per_actor: int
) -> list[str]:
    """Everything a trial's config needs: base, its grid values, where and how it runs (these last win)."""
    return merge_overrides(base, trial.overrides, [
        f"out_dir={sweep_dir / trial.name}", f"name={trial.name}", f"group={group}",
        "backend=ray", f"backend.num_cpus_per_client={cpus}", "backend.placement=pack",
        f"backend.clients_per_actor={per_actor}",
    ])  # fmt: skip
