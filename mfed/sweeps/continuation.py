"""Continuing a sweep or benchmark in the folder of an earlier one that stopped part way.

Giving ``mfed benchmark`` (or ``mfed sweep``) the ``out_dir`` of an earlier, stopped command with
the same settings picks up where it stopped, trial by trial:

- a trial whose folder holds a finished run (completed, or diverged: a result too) is **kept**:
  read into the report, not rerun;
- one that stopped with a checkpoint (interrupted, failed or killed part way) **resumes** from it;
- one that left no checkpoint is **moved aside** to ``<name>.earlier-<k>`` and runs afresh;
- a folder with **other settings** stops the command before Ray starts, naming the trial and the
  first setting that differs. Compared is the run's ``config.yaml`` against the planned config,
  leaving out where and how it ran (:data:`IGNORED`). A key that the earlier run's config lacks
  (a setting added to mfed since) counts as a difference: its runs are not silently mixed in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mfed.sweeps.plan import Trial, trial_overrides

FINISHED = ("completed", "diverged")  # a run's final outcomes; interrupted and failed runs go on
# How a run ran and what its options are called, not what it computes
IGNORED = ("out_dir", "resume", "backend", "logger", "storage", "choices")


@dataclass
class Earlier:
    """What an out_dir already holds of the planned trials: kept (finished), resumed, or moved aside."""

    kept: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    moved: dict[str, str] = field(default_factory=dict)  # trial -> the folder its leftovers now live in

    def line(self, out_dir: Path) -> str | None:
        """One console line saying what was found, or None for a fresh out_dir."""
        parts = [f"{len(self.kept)} kept"] if self.kept else []
        parts += [f"{len(self.resumed)} resumed from their checkpoints"] if self.resumed else []
        parts += [f"{len(self.moved)} without a checkpoint moved aside to <trial>.earlier-<k>"] if self.moved else []
        return f"continuing in {out_dir}: " + ", ".join(parts) if parts else None


def _settings(config: Any) -> dict[str, Any]:
    values = OmegaConf.to_container(config, resolve=True)
    assert isinstance(values, dict)
    return {str(k): v for k, v in values.items() if k not in IGNORED}


def _status(folder: Path) -> str | None:
    summary = folder / "summary.json"
    return json.loads(summary.read_text()).get("status") if summary.is_file() else None


def find_earlier(trials: Sequence[Trial], base: Sequence[str], out_dir: Path, group: str) -> Earlier:
    """Sort the planned trials by what ``out_dir`` holds of them; moves leftovers aside; raises on other settings."""
    from mfed.config import first_difference, load_config

    earlier = Earlier()
    found = [t for t in trials if (out_dir / t.name).is_dir() and any((out_dir / t.name).iterdir())]
    for t in found:  # every clash is found before anything is moved
        saved = out_dir / t.name / "config.yaml"
        if not saved.is_file():
            continue
        planned = load_config(trial_overrides(t, base, out_dir, group, 1.0, 1))
        differs = first_difference(_settings(planned), _settings(OmegaConf.load(saved)), "", ("now", "there"))
        if differs:
            raise ValueError(
                f"out_dir={out_dir} holds trial {t.name}, run with other settings ({differs}): "
                "give a new out_dir, or the earlier command's settings to continue it"
            )
    for t in found:
        folder = out_dir / t.name
        if _status(folder) in FINISHED:
            earlier.kept.append(t.name)
        elif (folder / "checkpoint.pt").is_file() and (folder / "config.yaml").is_file():
            earlier.resumed.append(t.name)
        else:
            k = 1
            while folder.with_name(f"{t.name}.earlier-{k}").exists():
                k += 1
            earlier.moved[t.name] = str(folder.rename(folder.with_name(f"{t.name}.earlier-{k}")))
    return earlier
