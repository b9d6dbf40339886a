"""history.json: every round's metrics with the same keys as W&B, rewritten after each round."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mfed.federation.driver import Driver, Row


def _jsonable(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_json(obj: Any, path: Path) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_history(out_dir: str | Path) -> list[dict[str, float]]:
    """Rows of ``<out_dir>/history.json`` (NaN and inf are stored as null)."""
    path = Path(out_dir) / "history.json"
    if not path.exists():
        raise FileNotFoundError(f"no history.json in {out_dir}: is it a run's output directory?")
    return json.loads(path.read_text())


class HistoryWriter:
    """Writes ``history.json`` after every round and ``summary.json`` at the end.

    ``history.json`` is a list of per-round rows. ``summary.json`` holds the last row plus each
    task's headline metric and directions (what a sweep needs to rank runs and compute Δm).
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / "history.json"

    def on_start(self, driver: Driver) -> None:
        """Create the output directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Rewrite the file with every row so far."""
        write_json([{k: _jsonable(v) for k, v in r.items()} for r in driver.history], self.path)

    def on_end(self, driver: Driver) -> None:
        """Write summary.json when at least one round finished."""
        if not driver.history:
            return
        tasks = {
            t.name: {"headline": t.headline, "higher_is_better": dict(t.higher_is_better)}
            for t in driver.tasks.values()
        }
        final = {k: _jsonable(v) for k, v in driver.history[-1].items()}
        summary = {"rounds": len(driver.history), "tasks": tasks, "clients": driver.client_ids, "final": final}
        write_json(summary, self.path.with_name("summary.json"))
