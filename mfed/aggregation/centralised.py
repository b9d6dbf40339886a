"""The centralised multi-task reference: every client's training data pooled, one model trained on all tasks.

Not a federation: each round, one encoder and every task's decoder are trained jointly on the
union of the clients' training shards (each example with its client's task; batches of one task
each, the tasks' batches interleaved at random), in the driver's process
(:mod:`mfed.federation.pooled`). ``budget="client"`` (the default) gives a round as many optimizer
steps as the federation's mean client takes, so a gap to it measures where the data is, not extra
optimisation; ``budget="pooled"`` gives it ``federation.local_epochs`` epochs over all pooled
data, about as many steps as every client together. It is a reference, not an upper bound:
a federation may beat it (personalised models fit their clients' data more closely). The clients
only score the result, exactly as they score a federated model, so the rows are comparable. The optimizer restarts every
round, as the clients' does, so the reference differs from a federation only in where the data
is. No model is exchanged: the bytes up and down are zero (the data moved instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mfed.aggregation.base import Strategy
from mfed.aggregation.contract import FOLDS, Declaration
from mfed.aggregation.functional import encoder_and_decoders
from mfed.models.multitask import MultiTaskModel
from mfed.types import ServerState


class Centralised(Strategy):
    """Joint multi-task training on the pooled data (a reference row, not a federated strategy).

    Args:
        budget: Optimizer steps per round: ``client`` (the federation's mean client's) or ``pooled``
            (``local_epochs`` epochs over all pooled data).
        name: Run and report name (see :class:`Strategy`).

    """

    name = "centralised"

    def __init__(self, budget: str = "client", name: str | None = None) -> None:
        super().__init__(name=name)
        if budget not in ("client", "pooled"):
            raise ValueError(f"aggregation.budget must be client or pooled, got {budget!r}")
        self.budget = budget

    def declaration(self) -> Declaration:
        """Routes nothing: the model trains on the pooled data, no update is averaged."""
        why = "trains on the pooled data and averages no update"
        return Declaration(f"aggregation={self.name}", lacks={FOLDS: why})

    def trainer(self, specs: Sequence[Any], setup: Any, seed: int) -> Any:
        """The pooled trainer (:mod:`mfed.federation.pooled`) that runs each round in the driver's process."""
        from mfed.federation.pooled import PooledTraining  # imports Lightning: only for this strategy

        return PooledTraining(specs, setup, seed, self.budget)

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The encoder, and one decoder per task: the layout every client loads its model from."""
        return encoder_and_decoders(model.state_dict(), model.tasks)

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """Nothing: no client update is averaged."""
        return []
