"""What a strategy is: hyperparameters, what clients upload and keep, and where uploads fold in.

The server state is a dict of scopes (:data:`mfed.types.ServerState`). A client loads the scopes
``global``, ``task:<its task>`` and ``client:<its id>``, restricted to the keys its model has,
and keeps everything else it holds. A strategy decides which scopes exist.

Every strategy that averages offers the same defences against bad updates (see
:mod:`mfed.aggregation.robust`): ``clip_norm`` bounds each client's update of every averaged part
(the encoder, a decoder) before it is combined, and ``robust`` replaces the weighted mean by a
coordinate-wise trimmed mean or median.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from mfed.aggregation.functional import WEIGHTINGS
from mfed.aggregation.robust import ROBUST_RULES, trim_count
from mfed.aggregation.streaming import Aggregation
from mfed.models.multitask import MultiTaskModel
from mfed.types import PARTS, ClientUpdate, LocalStep, ServerState


class Strategy(ABC):
    """Base class of aggregation strategies.

    Args:
        weighting: ``examples`` (weights n_k / sum n_j) or ``uniform``.
        clip_norm: Clip each client's update of each averaged part to this L2 norm; ``None`` = off.
        robust: ``None`` (the weighted mean), ``trimmed_mean`` or ``median`` (coordinate-wise, unweighted).
        trim_fraction: Share of clients cut from each end per coordinate by ``trimmed_mean``, in [0, 0.5).
        name: The name in run names and reports (an ablation's, e.g. ``mfed_mu0``); ``None``: the class's.

    Attributes:
        name: The strategy's name in run names and reports.
        prox_mu: Strength of the proximal term(s) its clients' steps add (0 = none); part of the
            strategy's identity (its ``repr``, which a resume must match).
        pooled: The model is trained on every client's training data pooled, where the driver
            runs (:mod:`mfed.federation.pooled`); the clients only score it.

    What a client does in a round is :attr:`steps`; what it sends and keeps follows from them
    (:attr:`uploads`, :attr:`keeps`), and :meth:`targets` says where what it sends is averaged.
    Clients and the driver never name a strategy: a new one is this class's subclass and a YAML.

    """

    name: str = "strategy"
    prox_mu: float = 0.0
    pooled: bool = False  # True: trained centrally on the pooled data (the reference row), not by clients

    def __init__(
        self,
        weighting: str = "examples",
        clip_norm: float | None = None,
        robust: str | None = None,
        trim_fraction: float = 0.1,
        name: str | None = None,
    ) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"aggregation.weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"aggregation.clip_norm must be > 0 or null (off), got {clip_norm}")
        if robust is not None and robust not in ROBUST_RULES:
            raise ValueError(f"aggregation.robust must be null or one of {ROBUST_RULES}, got {robust!r}")
        trim_count(1, trim_fraction)  # validates the fraction now, not in round 1
        self.weighting, self.robust, self.trim_fraction = weighting, robust, float(trim_fraction)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        if name is not None:
            if not name or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"aggregation.name must be letters, digits, _ or -, got {name!r}")
            self.name = name

    @property
    def steps(self) -> tuple[LocalStep, ...]:
        """What each client does in a round; by default: train its whole model from the server's and send it."""
        return (LocalStep(sends=PARTS),)

    @property
    def uploads(self) -> tuple[str, ...]:
        """Parts a client sends back (over all its steps)."""
        return tuple(p for p in PARTS if any(p in s.sends for s in self.steps))

    @property
    def keeps(self) -> tuple[str, ...]:
        """Parts a client keeps between rounds (its update's ``private`` state, held under ``client:<id>``)."""
        return tuple(p for p in PARTS if any(p in s.keeps for s in self.steps))

    @abstractmethod
    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The server state before round 1, from the initial full multi-task model."""

    @abstractmethod
    def targets(self, task: str) -> list[tuple[str, tuple[str, ...]]]:
        """Where an update from a client of ``task`` folds in: ``(scope, key prefixes)`` pairs.

        Each pair averages the update's keys under those prefixes into that scope (e.g. M-Fed:
        the encoder into ``global``, the task's decoder into ``task:<task>``). Empty for a
        strategy that averages nothing.
        """

    def aggregation(self, state: ServerState) -> Aggregation:
        """A new round from ``state``: fold in the accepted updates one by one, then take its result."""
        return Aggregation(self, state)

    def aggregate(self, state: ServerState, updates: Sequence[ClientUpdate]) -> ServerState:
        """The next server state from the current one and this round's updates, folded in order."""
        round_ = self.aggregation(state)
        for update in updates:
            round_.add(update)
        return round_.result()

    def __repr__(self) -> str:
        options = f"weighting={self.weighting!r}, prox_mu={self.prox_mu}"
        if self.clip_norm is not None:
            options += f", clip_norm={self.clip_norm}"
        if self.robust is not None:
            options += f", robust={self.robust!r}, trim_fraction={self.trim_fraction}"
        return f"{type(self).__name__}({options})"
