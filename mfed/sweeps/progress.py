"""The sweep's console: one line per finished trial, in place of Ray Tune's status table."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ray.tune import Callback


def headline_of(result: Mapping[str, Any]) -> str:
    """The test metrics of a finished trial's result, short: ``semseg/mIoU 30.12, depth/rmse 1.071``."""
    tests = sorted((k.removeprefix("test/"), v) for k, v in result.items() if k.startswith("test/"))
    return ", ".join(f"{k} {v:.4g}" for k, v in tests[:6])


class TrialLines(Callback):
    """A Tune callback printing ``[k/n] <trial>: completed; test ... (41 s)`` as each trial ends."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.started: dict[str, float] = {}

    def _print(self, text: str) -> None:
        print(text, flush=True)  # the sweep's own console, like the run's ConsoleReporter

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Note the start time."""
        self.started[trial.config["trial"]] = time.monotonic()

    def _ended(self, trial: Any, text: str) -> None:
        self.done += 1
        name = trial.config["trial"]
        took = time.monotonic() - self.started.get(name, time.monotonic())
        self._print(f"[{self.done}/{self.total}] {name}: {text} ({took:.0f} s)")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """One line: completed, with its test metrics."""
        self._ended(trial, f"completed; test {headline_of(trial.last_result or {})}")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """One line: failed (the reason is in the report and the trial's error.log)."""
        self._ended(trial, "failed: see its console.log")
