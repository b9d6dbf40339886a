"""Local training: no aggregation, no communication; the reference of the multi-task delta.

Every client starts from the same deterministic initial model (see
:func:`mfed.models.multitask.build_model`) and then trains only on its own data. Its model is
private: it comes back as the update's ``private`` state, the driver keeps it under the
client's ``client:<id>`` scope (never averaged, never counted as communication) and sends it
back next round, so Local checkpoints and resumes like every other strategy.
"""

from __future__ import annotations

from collections.abc import Sequence

from mfed.aggregation.base import Strategy
from mfed.aggregation.contract import FOLDS, Declaration
from mfed.models.multitask import MultiTaskModel
from mfed.types import PARTS, LocalStep, ServerState


class Local(Strategy):
    """Each client trains its own model; the server only holds it for the client."""

    name = "local"

    def declaration(self) -> Declaration:
        """Routes nothing: no stage of the fold has anything to act on."""
        return Declaration(f"aggregation={self.name}", lacks={FOLDS: "averages no update"})

    @property
    def steps(self) -> tuple[LocalStep, ...]:
        """Train its own model (the initial one in round 1) and keep it."""
        return (LocalStep(start="own", keeps=PARTS),)

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """Nothing yet: clients build the same initial model themselves."""
        return {}

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """Nothing is averaged: each client's model comes back as its private state."""
        return []
