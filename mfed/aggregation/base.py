"""What a strategy is: hyperparameters, what each sampled client does, and where its uploads fold in.

The server state is a dict of scopes (:data:`mfed.types.ServerState`). A client loads the scopes
``global``, ``task:<t>`` for each task it holds, ``personal:<its id>`` and ``client:<its id>``,
restricted to the keys its model has, and keeps nothing else. ``server`` holds the fold's stages'
own state, each under its namespace: checkpointed and screened, never sent. A strategy decides
which scopes exist.

The protocol, round by round (the driver calls it; clients and the driver never name a strategy):

1. :meth:`Strategy.configure_round` says what each sampled client does this round: its local
   steps (:class:`~mfed.types.LocalStep`), which may depend on the round and the client.
2. Each accepted update folds into the round's fold (:mod:`mfed.aggregation.fold`): route ->
   bound -> combine -> server step. The strategy is the route (:meth:`Strategy.route`, by default
   where :meth:`Strategy.targets` says) and may bring a combine (:meth:`Strategy.combine`) or server
   steps (:meth:`Strategy.server_steps`) of its own; defences, privacy and the server optimiser are
   stages from their own config groups, and work with every strategy that allows them.
3. The fold's result is the next state and the round's metrics (logged as ``agg/<name>``).

What a strategy allows is what it declares (:meth:`Strategy.declaration`,
:mod:`mfed.aggregation.contract`): no flag of a strategy is read by another stage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from mfed.aggregation.contract import ROUTED, Declaration
from mfed.aggregation.functional import WEIGHTINGS, select
from mfed.aggregation.stages import Combine, Parts, ServerStep, settings_of
from mfed.models.multitask import MultiTaskModel
from mfed.types import PARTS, ClientSpec, ClientUpdate, LocalStep, ServerState

Plan = dict[str, tuple[LocalStep, ...]]
"""What each sampled client does in a round: its local steps, by client id."""


class Strategy(ABC):
    """Base class of aggregation strategies: the route of a round's fold, and what its clients do.

    Args:
        weighting: ``examples`` (weights n_k / sum n_j) or ``uniform``.
        name: The name in run names and reports (an ablation's, e.g. ``mfed_mu0``); ``None``: the class's.

    Attributes:
        name: The strategy's name in run names and reports.

    """

    name: str = "strategy"

    def __init__(self, weighting: str = "examples", name: str | None = None) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"aggregation.weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting
        if name is not None:
            if not name or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"aggregation.name must be letters, digits, _ or -, got {name!r}")
            self.name = name

    def declaration(self) -> Declaration:
        """What the strategy gives the other stages (by default: updates routed into shared scopes)."""
        return Declaration(f"aggregation={self.name}", gives=ROUTED)

    def route(self, update: ClientUpdate, state: ServerState) -> Parts:
        """``(scope, part)`` for each part of ``update`` that folds into a scope (by default its :meth:`targets`).

        Args:
            update: An accepted update.
            state: The state the round's clients were sent.

        """
        parts: Parts = []
        for scope, prefixes in self.targets(update.tasks):
            part = select(update.state, prefixes)
            if part:  # nothing of this update goes there (e.g. no decoder parameter is shared)
                parts.append((scope, part))
        return parts

    def view(self, state: ServerState) -> ServerState:
        """The state as the fold sees it (a strategy may add fold-only scopes); by default the state itself."""
        return state

    def unview(self, view: ServerState, state: ServerState) -> ServerState:
        """The next server state from the fold's next ``view`` (``state``: the one the round started from)."""
        return view

    def combine(self) -> Combine | None:
        """A combine of the strategy's own, in place of the mean (``None``: the mean, or a robust rule)."""
        return None

    def server_steps(self) -> list[ServerStep]:
        """Server steps of the strategy's own, run before a configured server optimiser."""
        return []

    def check_round_size(self, n: int) -> None:
        """Refuse rounds of ``n`` clients this strategy cannot take (checked before a run starts); none by default."""
        return None

    def trainer(self, specs: Sequence[ClientSpec], setup: Any, seed: int) -> Any:
        """Where the model trains when not on the clients (the centralised reference's pooled data); ``None``: there."""
        return None

    def settings(self) -> dict[str, Any]:
        """Its hyperparameters (every public attribute), for the resume fingerprint and the run's info."""
        return settings_of(self)

    @property
    def steps(self) -> tuple[LocalStep, ...]:
        """Each client's steps unless :meth:`configure_round` says otherwise: train the whole model, send it."""
        return (LocalStep(sends=PARTS),)

    def configure_round(
        self, round_idx: int, state: ServerState, clients: Sequence[ClientSpec], rng: torch.Generator
    ) -> Plan:
        """What each sampled client does in round ``round_idx``: its local steps (by default :attr:`steps`).

        Args:
            round_idx: The round (from 1).
            state: The server state the clients will be sent.
            clients: The round's sampled clients, in sampling order.
            rng: A generator seeded from (run seed, round): a resumed run draws the same.

        """
        return {c.client_id: self.steps for c in clients}

    @abstractmethod
    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The server state before round 1, from the initial full multi-task model."""

    @abstractmethod
    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """Where an update from a client holding ``tasks`` folds in: ``(scope, key prefixes)`` pairs.

        Each pair averages the update's keys under those prefixes into that scope (e.g. M-Fed:
        the encoder into ``global``, each task's decoder into ``task:<task>``). Empty for a
        strategy that averages nothing.
        """

    def members(self, specs: Sequence[ClientSpec]) -> dict[str, dict[str, int]]:
        """Per scope this strategy averages into, the number of ``specs``' clients of each kind that fold into it."""
        counts: dict[str, dict[str, int]] = {}
        for spec in specs:
            for scope, _ in self.targets(spec.tasks):
                kinds = counts.setdefault(scope, {})
                kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
        return counts

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "type")
        return f"{type(self).__name__}({items})"
