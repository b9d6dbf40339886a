"""A strategy of the project's own: M-Fed whose decoder pull grows from 0 over the first rounds.

Early on a client's decoder is free to fit its data; from round ``warmup`` on it is pulled toward
its task's global decoder with M-Fed's full ``mu``. The weight each round used is logged as
``agg/prox_mu``.
"""

from __future__ import annotations

from dataclasses import replace

from mfed.aggregation.contract import Declaration
from mfed.aggregation.mfed import MFed
from mfed.aggregation.stages import ServerStep


class WarmupMFed(MFed):
    """M-Fed with ``mu_t = mu * min(1, t / warmup)`` in round ``t``.

    Args:
        mu: The proximal weight from round ``warmup`` on.
        warmup: Rounds over which the weight grows (>= 1).
        weighting: ``examples`` or ``uniform``.
        name: Run and report name.

    """

    name = "mfed_warmup"

    def __init__(self, mu: float = 0.01, warmup: int = 5, weighting: str = "examples", name: str | None = None):
        super().__init__(mu=mu, weighting=weighting, name=name)
        if warmup < 1:
            raise ValueError(f"aggregation.warmup must be >= 1 round, got {warmup}")
        self.warmup = int(warmup)

    def mu_at(self, round_idx: int) -> float:
        """The proximal weight of round ``round_idx`` (from 1)."""
        return self.prox_mu * min(1.0, round_idx / self.warmup)

    def configure_round(self, round_idx, state, clients, rng):
        """M-Fed's step, with this round's proximal weight."""
        (step,) = self.steps
        pulled = replace(step, prox=(("decoder", self.mu_at(round_idx)),))
        return {c.client_id: (pulled,) for c in clients}

    def server_steps(self):
        """M-Fed's, then one that logs the round's proximal weight."""
        return [*super().server_steps(), LogMu(self)]


class LogMu(ServerStep):
    """Logs the round's proximal weight as ``agg/prox_mu``; leaves the aggregates as they are."""

    def __init__(self, strategy: WarmupMFed) -> None:
        self.strategy = strategy

    def declaration(self):
        """How a user turns this step on: it comes with the strategy."""
        return Declaration("aggregation=mfed_warmup")

    def step(self, ctx, aggregates):
        """Record the weight the round's clients trained with."""
        ctx.metrics["prox_mu"] = self.strategy.mu_at(ctx.round)
        return aggregates
