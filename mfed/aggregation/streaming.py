"""One round of a strategy, folding the accepted updates in one at a time as they arrive.

Each update's parts fold into the scopes the strategy names for its task
(:meth:`~mfed.aggregation.base.Strategy.targets`), clipped first when the strategy clips, into a
:class:`~mfed.aggregation.functional.RunningMean` per scope; its private state is kept under its
``client:<id>`` scope. The driver therefore holds one running sum per scope, never every
client's tensors: its memory does not grow with the number of clients. The robust rules
(median, trimmed mean) are order statistics that need every value of a coordinate at once:
under them the parts are buffered until :meth:`Aggregation.result`.

The same updates folded in the same order give bit-identical states whether they come at once
(:meth:`Strategy.aggregate`) or one by one; the driver folds them in the order the clients were
sampled, whatever order they arrive in, so results do not depend on timing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mfed.aggregation.functional import RunningMean, check_same_layout, select, update_weight
from mfed.aggregation.robust import clip_update, coordinate_median, trimmed_mean
from mfed.types import ClientUpdate, ServerState, State, client_scope

if TYPE_CHECKING:
    from mfed.aggregation.base import Strategy


class Aggregation:
    """One round of ``strategy`` from ``state``: :meth:`add` each accepted update, then :meth:`result`.

    Args:
        strategy: Decides where each update's parts go, their weights and the defences.
        state: The server state the round's clients were sent (clipping measures from it).

    Attributes:
        count: Updates folded in so far.

    """

    def __init__(self, strategy: Strategy, state: ServerState) -> None:
        self.strategy, self.state = strategy, state
        self.means: dict[str, RunningMean] = {}
        self.buffered: dict[str, list[tuple[str, State]]] = {}
        self.private: ServerState = {}
        self.count = 0

    def add(self, update: ClientUpdate) -> None:
        """Fold ``update`` in; its tensors are not kept (except its private state, and under a robust rule)."""
        strategy, name = self.strategy, f"client {update.client_id}"
        weight = update_weight(update, strategy.weighting)
        for scope, prefixes in strategy.targets(update.task):
            part = select(update.state, prefixes)
            if not part:  # nothing of this update goes there (e.g. no decoder parameter is shared)
                continue
            if strategy.clip_norm is not None:
                part = clip_update(part, self.state[scope], strategy.clip_norm)
            if strategy.robust is None:
                self.means.setdefault(scope, RunningMean()).add(part, weight, name)
            else:
                self.buffered.setdefault(scope, []).append((name, part))
        if update.private:
            self.private[client_scope(update.client_id)] = dict(update.private)
        self.count += 1

    def result(self) -> ServerState:
        """The next server state: each scope that got updates replaced, every other one kept."""
        new = dict(self.state)
        new.update({scope: mean.value() for scope, mean in self.means.items()})
        for scope, named in self.buffered.items():
            names, parts = [n for n, _ in named], [p for _, p in named]
            check_same_layout(parts, names)
            if self.strategy.robust == "median":
                new[scope] = coordinate_median(parts)
            else:
                new[scope] = trimmed_mean(parts, self.strategy.trim_fraction)
        new.update(self.private)
        return new
