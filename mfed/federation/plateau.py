"""Stop when validation plateaus: the stated rule that ends a run before ``federation.rounds``.

A benchmark that compares strategies after a fixed handful of rounds compares them mid-training;
one that runs each until its validation stops improving compares what each reaches. The rule,
with ``federation.patience = P`` and ``federation.min_delta = d``:

* each evaluation's **score** is the mean over tasks of the signed relative change of the task's
  headline validation metric against the run's first evaluation,
  ``s_r = (1/T) sum_t sign_t (M_t,r - M_t,1) / |M_t,1|`` (``sign_t`` = -1 where lower is better);
  a task whose first value is 0 counts its absolute change;
* an evaluation **improves** when its score exceeds the best earlier score by more than ``d``
  (0.005: half a percent of the first evaluation's value, averaged over tasks);
* the run **stops** after the evaluation at which the last ``P`` evaluations have not improved;
  the global and local test sets are then scored on the model of that round (the last one, as
  FMTL-Bench reports: no best-round selection, which would choose on validation twice).

``patience: null`` (the default) runs every round. The score uses the validation figures that
every evaluation logs (``val/<task>/<headline>``), so a resumed run decides as the uninterrupted
one would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mfed.tasks.base import Task


@dataclass(frozen=True)
class Plateau:
    """The rule: stop after ``patience`` evaluations without an improvement above ``min_delta``.

    Args:
        patience: Evaluations without improvement that end the run (>= 1).
        min_delta: The smallest rise of the score that counts as an improvement (>= 0).

    """

    patience: int
    min_delta: float = 0.005

    def __post_init__(self) -> None:
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"federation.patience must be an integer >= 1 or null (every round), got {self.patience}")
        if not self.min_delta >= 0:
            raise ValueError(f"federation.min_delta must be >= 0, got {self.min_delta}")

    def scores(self, history: Sequence[Mapping[str, float]], tasks: Mapping[str, Task]) -> list[float]:
        """The score of every evaluation in ``history`` (rows without every task's validation headline are skipped)."""
        keys = {t.name: f"val/{t.name}/{t.headline}" for t in tasks.values()}
        rows = [r for r in history if all(r.get(k) is not None for k in keys.values())]
        if not rows:
            return []
        first = rows[0]
        out = []
        for row in rows:
            changes = []
            for task in tasks.values():
                key = keys[task.name]
                sign = 1.0 if task.higher_is_better[task.headline] else -1.0
                base = abs(first[key]) or 1.0
                changes.append(sign * (row[key] - first[key]) / base)
            out.append(sum(changes) / len(changes))
        return out

    def reached(self, history: Sequence[Mapping[str, float]], tasks: Mapping[str, Task]) -> bool:
        """Whether the last ``patience`` evaluations of ``history`` did not improve on the best before them."""
        scores = [s if math.isfinite(s) else -math.inf for s in self.scores(history, tasks)]
        if len(scores) <= self.patience:
            return False
        best = max(scores[: -self.patience])
        return all(s <= best + self.min_delta for s in scores[-self.patience :])

    def describe(self) -> str:
        """The rule in words, for the run's summary and console."""
        return (
            f"validation plateau: no evaluation in {self.patience} improved the mean relative headline change "
            f"by more than {self.min_delta:g}"
        )
