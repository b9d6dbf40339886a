"""Whether a run that went through every round diverged, who moved the state there, and which metrics were not finite.

A run is ``diverged``, not ``completed``, when its last round's headline metrics (validation or
test) are not finite, or a task's training loss ended more than ``LOSS_RATIO`` times above its
first round's (e.g. ``optimizer.lr=1e3`` drives the losses to 3e7 while every value stays finite).
A rise is blamed on what the round before it folded in (:func:`blame`): one client whose update
norm stands ``STANDS_OUT`` times above the others' median is named as the cause (a defence bounds
it), updates that all grew alike point at the learning rate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from mfed.tasks.base import Task
from mfed.types import ClientEvaluation

LOSS_RATIO = 100.0
"""A task's final training loss over its first round's beyond which the run has diverged."""

STANDS_OUT = 10.0
"""A client's update norm over this many times the median of the others' moved the state on its own."""

NAMED = 3
"""The largest updates a message names."""


def update_norms(row: Mapping[str, float]) -> dict[str, float]:
    """Each client's update norm in a round's row (``client/<id>/update_norm``), largest (or non-finite) first."""
    norms = {
        key.removeprefix("client/").removesuffix("/update_norm"): float(value)
        for key, value in row.items()
        if key.startswith("client/") and key.endswith("/update_norm")
    }
    return dict(sorted(norms.items(), key=lambda kv: -kv[1] if math.isfinite(kv[1]) else -math.inf))


def blame(row: Mapping[str, float]) -> str:
    """Who moved the state in ``row``'s round, with their update norms, and the fix; the learning rate without norms.

    A client whose norm is over ``STANDS_OUT`` times the median of the other clients' moved the
    state on its own: it is named, with the defences that bound it. Otherwise every update grew
    alike, and the learning rate is the likely cause.
    """
    norms = update_norms(row)
    if not norms:  # no norms logged (privacy withholds them; Local sends no update)
        return "lower optimizer.lr"
    listed = ", ".join(f"{c} {n:.3g}" for c, n in list(norms.items())[:NAMED])
    said = f"round {int(row.get('round', 0))}'s largest update norms: {listed}"
    alone = [c for c, n in norms.items() if _stands_out(n, [m for d, m in norms.items() if d != c])]
    if alone and len(alone) <= len(norms) // 2:
        return (
            f"{said}; {', '.join(alone[:NAMED])} moved the state over {STANDS_OUT:g}x more than the other clients' "
            "median: bound such updates with defences.clip_norm or defences.norm_ratio, or look into that client"
        )
    return f"{said}; the updates grew alike: lower optimizer.lr"


def _stands_out(norm: float, others: Sequence[float]) -> bool:
    finite = [m for m in others if math.isfinite(m)]
    return bool(finite) and not norm <= STANDS_OUT * statistics.median(finite)


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
            return f"{key} rose from {start:.3g} in round 1 to {end:.3g} (over {LOSS_RATIO:g}x){_rise(history, key)}"
    return None


def _rise(history: Sequence[Mapping[str, float]], key: str) -> str:
    """Where ``key`` first went over its bound, and who moved the state its clients trained from (the round before)."""
    bound = LOSS_RATIO * history[0][key]
    at = next(i for i, row in enumerate(history) if key in row and not row[key] <= bound)
    return f", first in round {int(history[at].get('round', at + 1))}: {blame(history[at - 1])}"


def nonfinite_metrics(evaluation: ClientEvaluation) -> list[str]:
    """``<task>/<metric>`` of each non-finite (or non-numeric) value a client reported."""
    return [
        f"{task}/{name}"
        for task, metrics in evaluation.metrics.items()
        for name, value in metrics.items()
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ]
