"""A sweep: a grid of full federated runs (``configs/sweep/<name>.yaml``), ranked by delta_m against Local."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mfed.sweeps.plan import plan_trials
from mfed.sweeps.report import collect, write_sweep_outputs


def run_sweep(sweep: DictConfig, base: Sequence[str], sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Plan and validate every trial, run them with Ray Tune, and write sweep.json, sweep.md, sweep.png."""
    from mfed.sweeps.schedule import run_trials

    sweep_dir = Path(sweep_dir).resolve()
    trials = plan_trials(sweep, base)
    errors = run_trials(trials, base, sweep_dir, str(sweep.name), int(sweep.max_concurrent))
    rows = collect(trials, sweep_dir, errors, str(sweep.get("reference") or "local"))
    write_sweep_outputs(rows, sweep_dir, str(sweep.name))
    (sweep_dir / "trials.json").write_text(json.dumps([asdict(t) for t in trials], indent=1))
    return rows
