"""The centralised multi-task reference: every client's training data pooled, one model trained on all tasks.

Not a federation: each round, one encoder and every task's decoder are trained jointly for
``federation.local_epochs`` epochs over the union of the clients' training shards (each example
with its client's task; batches of one task each, the tasks' batches interleaved at random), in
the driver's process (:mod:`mfed.federation.pooled`). The clients only score the result, exactly
as they score a federated model, so the rows are comparable. The optimizer restarts every
round, as the clients' does, so the reference differs from a federation only in where the data
is. No model is exchanged: the bytes up and down are zero (the data moved instead).
"""

from __future__ import annotations

from collections.abc import Sequence

from mfed.aggregation.base import Strategy
from mfed.aggregation.functional import encoder_and_decoders
from mfed.models.multitask import MultiTaskModel
from mfed.types import ServerState


class Centralised(Strategy):
    """Joint multi-task training on the pooled data (a reference row, not a federated strategy).

    Args:
        name: Run and report name (see :class:`Strategy`).

    """

    name = "centralised"
    pooled = True
    averages = False

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The encoder, and one decoder per task: the layout every client loads its model from."""
        return encoder_and_decoders(model.state_dict(), model.tasks)

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """Nothing: no client update is averaged."""
        return []

    def __repr__(self) -> str:
        return "Centralised()"
