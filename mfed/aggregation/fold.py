"""A round's fold as stages: route -> bound -> combine -> server step.

:class:`Pipeline` composes them once per run: the strategy routes each update's parts into scopes
(:meth:`~mfed.aggregation.base.Strategy.route`); the defences' bound stages clip them
(:mod:`mfed.aggregation.defences`); one combine makes each scope's aggregate (the weighted mean,
a robust rule, or the strategy's own), wrapped by differential privacy when it is on
(:mod:`mfed.aggregation.privacy`); then the strategy's own server steps (``mfed_ca``'s
conflict-averse step) and the configured server optimiser (:mod:`mfed.aggregation.server_optimizers`)
turn aggregates into the next state. The stages' declarations are checked when the pipeline is
built (:mod:`mfed.aggregation.contract`): a combination that cannot hold is refused in one line.

A :class:`Fold` is one round of it. Updates fold in one at a time as they arrive: the mean keeps
one running sum per scope, so the driver never holds every client's tensors (only a rule that
needs every update at once buffers them). The same updates folded in the same order give
bit-identical states, whether they come at once (:func:`aggregate`) or one by one; the driver
folds them in the order the clients were sampled, whatever order they arrive in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from mfed.aggregation.base import Strategy
from mfed.aggregation.combine import Mean
from mfed.aggregation.contract import Declaration, check
from mfed.aggregation.defences import Defences
from mfed.aggregation.functional import update_weight
from mfed.aggregation.privacy import DifferentialPrivacy, PrivateCombine
from mfed.aggregation.stages import Bound, Combine, RoundContext, ServerStep, Stage, settings_of
from mfed.secure.rounds import SecureAggregation, Secured
from mfed.types import ClientUpdate, ServerState, client_scope, server_scope


class Pipeline:
    """A strategy's fold composed with the defences, privacy and a server optimiser; checked when built.

    Args:
        strategy: The route (and its own combine or server steps, if it has them).
        defences: Clipping (bound) and a robust rule (combine); ``None``: none.
        privacy: Client-level DP around the combine; ``None``: off.
        server_optimizer: A server step after the strategy's own; ``None``: none.
        secure: Secure aggregation (:mod:`mfed.secure.rounds`): the clients' updates reach the
            fold as each scope's mean only (:meth:`Fold.add_secured`); ``None``: off.

    Raises:
        ValueError: The stages cannot hold together (one line naming both config keys).

    """

    def __init__(
        self,
        strategy: Strategy,
        defences: Defences | None = None,
        privacy: DifferentialPrivacy | None = None,
        server_optimizer: ServerStep | None = None,
        secure: SecureAggregation | None = None,
    ) -> None:
        self.strategy, self.defences, self.privacy, self.secure = strategy, defences or Defences(), privacy, secure
        self.bounds: list[Bound] = self.defences.bounds()
        robust = self.defences.combine()
        inner: Combine = strategy.combine() or robust or Mean()
        self.combine: Combine = privacy.around(inner) if privacy is not None else inner
        self.steps: list[ServerStep] = [*strategy.server_steps(), *([server_optimizer] if server_optimizer else [])]
        unused = [robust] if robust is not None and robust is not inner else []
        check(self.declarations(extra=[*unused, *([secure] if secure is not None else [])]))
        if secure is not None:
            secure.check_privacy(privacy)

    def stages(self) -> Iterator[Stage]:
        """Every stage after the route, in fold order (a private combine and the combine it wraps)."""
        yield from self.bounds
        if isinstance(self.combine, PrivateCombine):
            yield self.combine.inner
        yield self.combine
        yield from self.steps

    def declarations(self, extra: Sequence[Stage | SecureAggregation] = ()) -> list[Declaration]:
        """The strategy's declaration, then every stage's (``extra``: configured stages the fold leaves out)."""
        return [self.strategy.declaration(), *(s.declaration() for s in [*self.stages(), *extra])]

    def describe(self) -> str:
        """The stages in fold order, by class, e.g. ``MFed -> Clip -> Mean -> Adam`` (the console's first line)."""
        secure = [self.secure] if self.secure is not None else []
        return " -> ".join(type(s).__name__ for s in [self.strategy, *self.bounds, *secure, self.combine, *self.steps])

    def settings(self) -> dict[str, Any]:
        """Every stage's hyperparameters, derived from their attributes (what a resume must match)."""
        out = {"strategy": self.strategy.settings(), "stages": [s.settings() for s in self.stages()]}
        return {**out, "secure": settings_of(self.secure)} if self.secure is not None else out

    def round(self, state: ServerState, round_idx: int = 0, rng: torch.Generator | None = None) -> Fold:
        """A new round from ``state``: fold in the accepted updates one by one, then take its result."""
        return Fold(self, state, round_idx, rng)


class Fold:
    """One round of a :class:`Pipeline`: :meth:`add` each accepted update, then :meth:`result`.

    Args:
        pipeline: The stages.
        state: The server state the round's clients were sent.
        round_idx: The round (from 1; 0 outside a run).
        rng: A generator seeded from (run seed, round), for stages that draw at random.

    Attributes:
        count: Updates folded in so far.
        parts: Routed parts folded in so far (an update routes one per scope it folds into).

    """

    def __init__(
        self, pipeline: Pipeline, state: ServerState, round_idx: int = 0, rng: torch.Generator | None = None
    ) -> None:
        self.pipeline, self.state = pipeline, state
        self.ctx = RoundContext(pipeline.strategy.view(state), round_idx)
        if rng is not None:
            self.ctx.rng = rng
        self.combiner = pipeline.combine.open(self.ctx)
        self.private: ServerState = {}
        self.count = self.parts = 0

    def add(self, update: ClientUpdate) -> None:
        """Route, bound and combine ``update``; its tensors are not kept (its private state is; a rule may buffer)."""
        strategy = self.pipeline.strategy
        parts = strategy.route(update, self.state)
        for stage in self.pipeline.bounds:
            parts = stage.bound(self.ctx, update, parts)
        self.ctx.folded.update(scope for scope, _ in parts)
        self.combiner.add(update, update_weight(update, strategy.weighting), parts)
        self.parts += len(parts)
        if update.private:
            self.private[client_scope(update.client_id)] = dict(update.private)
        self.count += 1

    def add_secured(self, secured: Secured) -> None:
        """Fold in what secure aggregation released: each scope's mean, and under DP the clipped changes' sums."""
        for scope, (mean, weight) in secured.means.items():
            self.ctx.folded.add(scope)
            if mean:
                self.combiner.add(ClientUpdate(f"mean of {scope}", ("-",), 0, {}), weight, [(scope, mean)])
                self.parts += 1
        if secured.sums:
            self.combiner.add_sums(secured.sums, secured.within, secured.noised)

    def result(self) -> tuple[ServerState, dict[str, float]]:
        """The next server state (scopes that folded replaced, the others kept) and the round's metrics."""
        aggregates = self.combiner.result()
        for step in self.pipeline.steps:
            aggregates = step.step(self.ctx, aggregates)
        new = self.pipeline.strategy.unview({**self.ctx.state, **aggregates}, self.state)
        if self.ctx.written:
            new[server_scope()] = self.ctx.server()
        return {**new, **self.private}, dict(self.ctx.metrics)


def aggregate(
    fold: Pipeline | Strategy,
    state: ServerState,
    updates: Sequence[ClientUpdate],
    round_idx: int = 0,
    rng: torch.Generator | None = None,
) -> ServerState:
    """The next server state from ``state`` and a round's ``updates``, folded in order (a strategy: its plain fold)."""
    pipeline = fold if isinstance(fold, Pipeline) else Pipeline(fold)
    round_ = pipeline.round(state, round_idx, rng)
    for update in updates:
        round_.add(update)
    return round_.result()[0]
