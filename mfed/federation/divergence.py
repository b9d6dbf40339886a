"""Whether a run that went through every round diverged, and which client's metrics were not finite.

A run is ``diverged``, not ``completed``, when its last round's headline metrics (validation or
test) are not finite, or a task's training loss ended more than ``LOSS_RATIO`` times above its
first round's (e.g. ``optimizer.lr=1e3`` drives the losses to 3e7 while every value stays finite).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from mfed.tasks.base import Task
from mfed.types import ClientEvaluation

LOSS_RATIO = 100.0
"""A task's final training loss over its first round's beyond which the run has diverged."""


def divergence(history: Sequence[Mapping[str, float]], tasks: Mapping[str, Task]) -> str | None:
    """Why the run diverged, in words, or ``None``."""
    if not history:
        return None
    first, last = history[0], history[-1]
    bad = [
        key
        for task in tasks.values()
        for key in (f"val/{task.name}/{task.headline}", f"test/{task.name}/{task.headline}")
        if key in last and not math.isfinite(last[key])
    ]
    if bad:
        return f"non-finite headline metrics after the last round: {', '.join(bad)}"
    for task in tasks:
        key = f"train/{task}/loss"
        start, end = first.get(key), last.get(key)
        if start is not None and end is not None and start > 0 and not end <= LOSS_RATIO * start:
            return f"{key} rose from {start:.3g} in round 1 to {end:.3g} (over {LOSS_RATIO:g}x): lower optimizer.lr"
    return None


def nonfinite_metrics(evaluation: ClientEvaluation) -> list[str]:
    """``<task>/<metric>`` of each non-finite (or non-numeric) value a client reported."""
    return [
        f"{task}/{name}"
        for task, metrics in evaluation.metrics.items()
        for name, value in metrics.items()
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ]
