"""Local training: no aggregation, no communication; the reference of the multi-task delta.

Every client starts from the same deterministic initial model (see
:func:`mfed.models.multitask.build_model`) and then trains only on its own data.
"""

from __future__ import annotations

from collections.abc import Sequence

from mfed.aggregation.base import Strategy
from mfed.models.multitask import MultiTaskModel
from mfed.types import ClientUpdate, ServerState


class Local(Strategy):
    """Each client keeps its own model; the server holds nothing."""

    name = "local"
    uploads: tuple[str, ...] = ()

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """Nothing to send: clients build the same initial model themselves."""
        return {}

    def aggregate(self, state: ServerState, updates: Sequence[ClientUpdate]) -> ServerState:
        """Nothing to aggregate."""
        return state
