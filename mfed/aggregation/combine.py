"""The combines any averaging strategy can use: the weighted mean (streaming) and a robust rule.

:class:`Mean` keeps one running sum per scope (:class:`~mfed.aggregation.functional.RunningMean`):
the driver's memory does not grow with the number of clients. :class:`Robust` applies an order
statistic (:mod:`mfed.aggregation.rules`), which needs every value of a coordinate at once, so it
buffers the parts until its result; on a scope that clients of several kinds (task sets) fold
into, it applies the rule within each kind first and takes the coordinate-wise median of the
kinds' results (:mod:`mfed.aggregation.defences` says why).
"""

from __future__ import annotations

from mfed.aggregation.contract import FOLDS, MEANS, PARTS, UPDATES, Declaration, bounded
from mfed.aggregation.functional import RunningMean, check_same_layout
from mfed.aggregation.robust import coordinate_median
from mfed.aggregation.rules import RobustRule
from mfed.aggregation.stages import Combine, Combiner, Parts, RoundContext
from mfed.types import ClientUpdate, ServerState, State, kind_of


class Mean(Combine):
    """Each scope's weighted mean of its parts (weights: the strategy's ``weighting``)."""

    def declaration(self) -> Declaration:
        """Needs nothing; gives a mean of the bounded parts."""
        return Declaration("aggregation.weighting", gives=frozenset({PARTS, MEANS}))

    def open(self, ctx: RoundContext) -> Combiner:
        """One running mean per scope."""
        return _Means()


class _Means(Combiner):
    def __init__(self) -> None:
        self.means: dict[str, RunningMean] = {}

    def add(self, update: ClientUpdate, weight: float, parts: Parts) -> None:
        for scope, part in parts:
            self.means.setdefault(scope, RunningMean()).add(part, weight, f"client {update.client_id}")

    def result(self) -> ServerState:
        return {scope: mean.value() for scope, mean in self.means.items()}


class Robust(Combine):
    """A robust rule within each kind of client, then the coordinate-wise median of the kinds' results.

    Args:
        rule: The order statistic (unweighted: a client cannot buy influence by claiming examples).

    """

    def __init__(self, rule: RobustRule) -> None:
        self.rule = rule

    def declaration(self) -> Declaration:
        """Needs routed parts; gives a (robust) mean; voids the bounded sensitivity DP's accountant assumes."""
        why = "is an order statistic, whose sensitivity clipping does not bound"
        return Declaration(
            f"defences.robust={self.rule.name}",
            needs=frozenset({FOLDS, UPDATES, PARTS}),
            gives=frozenset({PARTS, MEANS}),
            voids={bounded("encoder"): why, bounded("decoder"): why},
        )

    def open(self, ctx: RoundContext) -> Combiner:
        """A buffer per scope and kind."""
        return _Buffered(self.rule)


class _Buffered(Combiner):
    def __init__(self, rule: RobustRule) -> None:
        self.rule = rule
        self.buffered: dict[str, dict[str, list[tuple[str, State]]]] = {}  # scope -> kind -> (client, part)

    def add(self, update: ClientUpdate, weight: float, parts: Parts) -> None:
        for scope, part in parts:
            kinds = self.buffered.setdefault(scope, {})
            kinds.setdefault(kind_of(update.tasks), []).append((f"client {update.client_id}", part))

    def result(self) -> ServerState:
        return {scope: self._combine(kinds) for scope, kinds in self.buffered.items()}

    def _combine(self, kinds: dict[str, list[tuple[str, State]]]) -> State:
        results = []
        for named in kinds.values():
            names, parts = [n for n, _ in named], [p for _, p in named]
            check_same_layout(parts, names)
            results.append(self.rule(parts))
        return results[0] if len(results) == 1 else coordinate_median(results)
