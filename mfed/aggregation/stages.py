"""The stages of a round's fold, as interfaces: bound, combine, server step (the route is the strategy).

Each stage is a small object built from its config group; :mod:`mfed.aggregation.fold` composes
them. Every stage is told the round through a :class:`RoundContext`: the state the round's clients
were sent, the round, a generator seeded from (run seed, round), the metrics of the round, the
scopes that folded, and its own namespace of the ``server`` scope (checkpointed, never sent).
Each declares what it needs and gives (:meth:`Stage.declaration`, :mod:`mfed.aggregation.contract`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, is_dataclass
from typing import Any

import torch

from mfed.aggregation.contract import Declaration
from mfed.types import ClientUpdate, ServerState, State, server_scope

Parts = list[tuple[str, State]]
"""One update's routed parts: ``(scope, tensors)`` pairs."""


@dataclass
class RoundContext:
    """What every stage of one round is told.

    Attributes:
        state: The state the round's clients were sent, in the strategy's view (fold-only scopes
            such as cross-task FedAvg's soups included).
        round: The round (from 1; 0 outside a run).
        rng: A generator seeded from (run seed, round).
        metrics: The round's figures (logged as ``agg/<name>``); stages add to it.
        folded: The scopes that received at least one part this round (set before the server steps).

    """

    state: ServerState
    round: int = 0
    rng: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))
    metrics: dict[str, float] = field(default_factory=dict)
    folded: set[str] = field(default_factory=set)
    written: dict[str, State] = field(default_factory=dict)

    def kept(self, namespace: str) -> State:
        """The stage's server-only state from the last round: the ``server`` scope's ``<namespace>/`` keys."""
        prefix = f"{namespace}/"
        server = self.state.get(server_scope(), {})
        return {k[len(prefix) :]: v for k, v in server.items() if k.startswith(prefix)}

    def keep(self, namespace: str, values: State) -> None:
        """Replace the stage's server-only state with ``values`` (its namespace's keys only)."""
        self.written[namespace] = dict(values)

    def server(self) -> State:
        """The next ``server`` scope: every namespace kept as it was, except those written this round."""
        old = self.state.get(server_scope(), {})
        out = {k: v for k, v in old.items() if k.split("/", 1)[0] not in self.written}
        for namespace, values in self.written.items():
            out.update({f"{namespace}/{k}": v for k, v in values.items()})
        return out


class Stage(ABC):
    """A stage of the fold: it declares what it needs from the others and what it gives."""

    @abstractmethod
    def declaration(self) -> Declaration:
        """What this stage needs, gives and voids (:mod:`mfed.aggregation.contract`)."""

    def settings(self) -> dict[str, Any]:
        """Its hyperparameters (every public attribute), for the resume fingerprint: never hand-written."""
        return settings_of(self)


def settings_of(obj: object) -> dict[str, Any]:
    """``obj``'s type and public attributes as plain values (objects by their own settings): what defines it."""
    return {"type": type(obj).__name__, **{k: plain(v) for k, v in vars(obj).items() if not k.startswith("_")}}


def plain(value: Any) -> Any:
    """``value`` as numbers, strings, lists and dicts: a stage or rule by its settings, anything else by its repr."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Stage):
        return value.settings()
    return settings_of(value) if hasattr(value, "__dict__") and not is_dataclass(value) else repr(value)


class Bound(Stage):
    """Acts on one client's whole update (its routed parts) before it is combined: screening, clipping."""

    @abstractmethod
    def bound(self, ctx: RoundContext, update: ClientUpdate, parts: Parts) -> Parts:
        """``update``'s parts, bounded."""


class Combiner(ABC):
    """One round of a combine: fold updates in as they arrive, then the scopes' aggregates."""

    @abstractmethod
    def add(self, update: ClientUpdate, weight: float, parts: Parts) -> None:
        """Fold in one accepted update, whose routed and bounded parts are ``parts``."""

    @abstractmethod
    def result(self) -> ServerState:
        """Each folded scope's aggregate (scopes not folded are left out)."""

    def add_sums(self, sums: ServerState, within: float, noised: bool = False) -> None:
        """Fold in sums of clipped changes made outside the fold (secure aggregation under DP): DP's combine only."""
        raise TypeError(f"{type(self).__name__} takes updates, not sums of clipped changes")


class Combine(Stage):
    """Makes each scope's aggregate from the round's bounded parts."""

    @abstractmethod
    def open(self, ctx: RoundContext) -> Combiner:
        """A new round's combiner."""


class OwnCombine(Combine):
    """A strategy's own combine of whole updates: its declaration, and each round ``opener(strategy, ctx)``.

    Its hyperparameters are the strategy's, so its settings are its name only.
    """

    def __init__(self, strategy: Any, opener: Callable[[Any, RoundContext], Combiner]) -> None:
        self.strategy, self.opener = strategy, opener

    def declaration(self) -> Declaration:
        """The strategy's."""
        return self.strategy.declaration()

    def settings(self) -> dict[str, Any]:
        """Its strategy's name (its hyperparameters are the strategy's)."""
        return {"type": type(self.strategy).__name__}

    def open(self, ctx: RoundContext) -> Combiner:
        """The strategy's round."""
        return self.opener(self.strategy, ctx)


class ServerStep(Stage):
    """Turns the round's aggregates into the next state (scopes it does not return are kept as combined)."""

    namespace: str = "server_step"

    @abstractmethod
    def step(self, ctx: RoundContext, aggregates: ServerState) -> ServerState:
        """The next values of the folded scopes, from their aggregates and the state sent (``ctx.state``)."""


def floating_parameters(state: State) -> Sequence[str]:
    """The keys of ``state`` a server step moves: floating tensors that are not BatchNorm statistics.

    BatchNorm's running mean and variance are estimates, not parameters: they take the combined
    value (a server optimiser would otherwise drive a variance negative); counters are integers.
    """
    return [k for k, v in state.items() if v.is_floating_point() and not is_statistic(k)]


STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def is_statistic(key: str) -> bool:
    """A BatchNorm buffer (running mean, variance or count), not a trained parameter."""
    return key.endswith(STATISTICS)
