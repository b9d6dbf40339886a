"""One round of a strategy, folding the accepted updates in one at a time as they arrive.

Each update's parts fold into the scopes the strategy names for its tasks
(:meth:`~mfed.aggregation.base.Strategy.targets`), clipped first when the defences clip, into a
:class:`~mfed.aggregation.functional.RunningMean` per scope; its private state is kept under its
``client:<id>`` scope. The driver therefore holds one running sum per scope, never every
client's tensors: its memory does not grow with the number of clients. The robust rules
(median, trimmed mean) are order statistics that need every value of a coordinate at once:
under them the parts are buffered until :meth:`Aggregation.result`, which applies the rule
within each kind of client (task set) and takes the coordinate-wise median of the kinds' results
(:mod:`mfed.aggregation.defences`).

The same updates folded in the same order give bit-identical states whether they come at once
(:meth:`Strategy.aggregate`) or one by one; the driver folds them in the order the clients were
sampled, whatever order they arrive in, so results do not depend on timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from mfed.aggregation.functional import RunningMean, check_same_layout, select, update_weight
from mfed.aggregation.privacy import PrivateSums
from mfed.aggregation.robust import clip_with_norm, coordinate_median, trimmed_mean
from mfed.types import ClientUpdate, ServerState, State, client_scope, kind_of

if TYPE_CHECKING:
    from mfed.aggregation.base import Strategy


class Aggregation:
    """One round of ``strategy`` from ``state``: :meth:`add` each accepted update, then :meth:`result`.

    Args:
        strategy: Decides where each update's parts go, their weights and the defences.
        state: The server state the round's clients were sent (clipping measures from it).
        round_idx: The round (from 1; 0 outside a run).
        rng: A generator seeded from (run seed, round), for a strategy whose fold draws at random.

    Attributes:
        count: Updates folded in so far.
        metrics: The round's own figures, returned by :meth:`result` (logged as ``agg/<name>``).

    """

    def __init__(
        self, strategy: Strategy, state: ServerState, round_idx: int = 0, rng: torch.Generator | None = None
    ) -> None:
        self.strategy, self.state, self.round, self.rng = strategy, state, round_idx, rng
        self.means: dict[str, RunningMean] = {}
        self.buffered: dict[str, dict[str, list[tuple[str, State]]]] = {}  # scope -> kind -> (client, part)
        self.private: ServerState = {}
        self.count = 0
        self.metrics: dict[str, float] = {}
        privacy = strategy.privacy
        self.dp = PrivateSums(privacy, state, rng) if privacy is not None else None

    def contributions(self, update: ClientUpdate) -> Iterator[tuple[str, State]]:
        """``(scope, part)`` for each part of ``update`` that folds into a scope (the strategy's targets)."""
        for scope, prefixes in self.strategy.targets(update.tasks):
            part = select(update.state, prefixes)
            if part:  # nothing of this update goes there (e.g. no decoder parameter is shared)
                yield scope, part

    def add(self, update: ClientUpdate) -> None:
        """Fold ``update`` in; its tensors are not kept (except its private state, and under a robust rule)."""
        defences, name = self.strategy.defences, f"client {update.client_id}"
        weight = update_weight(update, self.strategy.weighting)
        protected: list[tuple[str, State]] = []
        for scope, whole in self.contributions(update):
            part = whole
            if self.dp is not None:  # the protected parts go through the DP mechanism, the rest folds as usual
                secret, part = self.dp.split(whole)
                protected += [(scope, secret)] if secret else []
                if not part:
                    continue
            if defences.clip_norm is not None:
                part, norm = clip_with_norm(part, self.state[scope], defences.clip_norm)
                self.metrics["clipped"] = self.metrics.get("clipped", 0.0) + float(norm > defences.clip_norm)
            if defences.robust is None:
                self.means.setdefault(scope, RunningMean()).add(part, weight, name)
            else:
                self.buffered.setdefault(scope, {}).setdefault(kind_of(update.tasks), []).append((name, part))
        if self.dp is not None:
            self.dp.add(protected)
        if update.private:
            self.private[client_scope(update.client_id)] = dict(update.private)
        self.count += 1

    def result(self) -> tuple[ServerState, dict[str, float]]:
        """The next server state (scopes that got updates replaced, the others kept) and the round's metrics."""
        folded = {scope: mean.value() for scope, mean in self.means.items()}
        folded.update({scope: self._robust(kinds) for scope, kinds in self.buffered.items()})
        metrics = dict(self.metrics)
        if self.dp is not None:
            noised, dp_metrics = self.dp.result()
            metrics.update(dp_metrics)
            for scope, tensors in noised.items():  # a scope may hold protected and ordinary parts
                folded[scope] = {**self.state.get(scope, {}), **folded.get(scope, {}), **tensors}
        new = {**self.state, **folded, **self.private}
        return new, metrics

    def _robust(self, kinds: dict[str, list[tuple[str, State]]]) -> State:
        """The robust rule within each kind of client, then the coordinate-wise median of the kinds' results."""
        results = []
        for named in kinds.values():
            names, parts = [n for n, _ in named], [p for _, p in named]
            check_same_layout(parts, names)
            defences = self.strategy.defences
            median = defences.robust == "median"
            results.append(coordinate_median(parts) if median else trimmed_mean(parts, defences.trim_fraction))
        return results[0] if len(results) == 1 else coordinate_median(results)
