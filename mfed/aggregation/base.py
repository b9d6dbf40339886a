"""What a strategy is: hyperparameters, what clients upload, and ``aggregate``.

The server state is a dict of scopes (:data:`mfed.types.ServerState`). A client loads the scopes
``global``, ``task:<its task>`` and ``client:<its id>``, restricted to the keys its model has,
and keeps everything else it holds. A strategy decides which scopes exist.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from mfed.aggregation.functional import WEIGHTINGS
from mfed.models.multitask import MultiTaskModel
from mfed.types import ClientUpdate, ServerState

PARTS = ("encoder", "decoder")


class Strategy(ABC):
    """Base class of aggregation strategies.

    Args:
        weighting: ``examples`` (weights n_k / sum n_j) or ``uniform``.

    Attributes:
        uploads: Which parts a client sends back: a subset of ``("encoder", "decoder")``.
        prox_mu: Strength of the client's decoder proximal term (0 = off).

    """

    name: str = "strategy"
    uploads: tuple[str, ...] = PARTS
    prox_mu: float = 0.0

    def __init__(self, weighting: str = "examples") -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"aggregation.weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting

    @abstractmethod
    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The server state before round 1, from the initial full multi-task model."""

    @abstractmethod
    def aggregate(self, state: ServerState, updates: Sequence[ClientUpdate]) -> ServerState:
        """Return the next server state from the current one and this round's updates."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weighting={self.weighting!r}, prox_mu={self.prox_mu})"
