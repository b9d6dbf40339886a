"""history.json (every round's metrics, the W&B keys) and summary.json (how the run ended).

Both are rewritten atomically, so a run killed mid-write leaves the previous complete file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfed.atomic import write_json
from mfed.machine import machine

if TYPE_CHECKING:
    from mfed.federation.driver import Driver, Row


def _jsonable(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def read_history(out_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of ``<out_dir>/history.json`` (NaN and inf are stored as null)."""
    path = Path(out_dir) / "history.json"
    if not path.exists():
        raise FileNotFoundError(f"no history.json in {out_dir}: is it a run's output directory?")
    return json.loads(path.read_text())


def history_rows(driver: Driver) -> list[dict[str, Any]]:
    """The history as JSON rows; a round with rejected updates lists them under ``faults``."""
    by_round: dict[int, list[dict[str, Any]]] = {}
    for fault in driver.faults:
        by_round.setdefault(fault.round, []).append(asdict(fault))
    rows = []
    for row in driver.history:
        out: dict[str, Any] = {k: _jsonable(v) for k, v in row.items()}
        if int(row["round"]) in by_round:
            out["faults"] = by_round[int(row["round"])]
        rows.append(out)
    return rows


def summary(driver: Driver) -> dict[str, Any]:
    """How the run ended: status, planned and done rounds, the error, the faults, the warnings and the final row.

    ``warnings`` lists what the run's figures say about its settings (e.g. a ``defences.clip_norm``
    that clipped every update in round 1), each ``{"round", "setting", "message"}``
    (:mod:`mfed.federation.advice`); empty when there is nothing to say. Under ``privacy=dp``,
    ``privacy`` states the guarantee reached and what it rests on. ``machine`` says where the run
    was made (:func:`mfed.machine.machine`).
    """
    privacy = driver.fold.privacy
    tasks = {
        t.name: {"headline": t.headline, "higher_is_better": dict(t.higher_is_better)} for t in driver.tasks.values()
    }
    final = {k: _jsonable(v) for k, v in driver.history[-1].items()} if driver.history else {}
    return {
        "status": driver.status,
        "error": driver.error,
        "rounds": len(driver.history),
        "rounds_planned": driver.rounds,
        "stopped": driver.meta.get("stopped"),
        "tasks": tasks,
        "clients": driver.client_ids,
        "client_tasks": {s.client_id: list(s.tasks) for s in driver.specs},
        "faults": [asdict(f) for f in driver.faults],
        "warnings": list(driver.meta.get("warnings", [])),
        "final": final,
        "machine": machine(driver.setup.config.torch_threads, driver.setup.config.accelerator),
        **({"privacy": privacy.statement(len(driver.history))} if privacy is not None and driver.history else {}),
    }


class HistoryWriter:
    """Writes ``history.json`` after every round and ``summary.json`` at the end, however the run ended.

    ``summary.json``'s ``status`` is ``completed``, ``diverged``, ``failed`` or ``interrupted``; only a completed
    run's ``final`` row is its result (a sweep ranks only those).
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / "history.json"

    def on_start(self, driver: Driver) -> None:
        """Create the output directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Rewrite the file with every row so far."""
        write_json(history_rows(driver), self.path)

    def on_end(self, driver: Driver) -> None:
        """Write summary.json."""
        write_json(summary(driver), self.path.with_name("summary.json"))
