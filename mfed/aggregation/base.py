"""What a strategy is: hyperparameters, what each sampled client does, and where its uploads fold in.

The server state is a dict of scopes (:data:`mfed.types.ServerState`). A client loads the scopes
``global``, ``task:<t>`` for each task it holds, ``personal:<its id>`` and ``client:<its id>``,
restricted to the keys its model has, and keeps nothing else. ``server`` is the strategy's own:
checkpointed and screened, never sent. A strategy decides which scopes exist.

The protocol, round by round (the driver calls it; clients and the driver never name a strategy):

1. :meth:`Strategy.configure_round` says what each sampled client does this round: its local
   steps (:class:`~mfed.types.LocalStep`), which may depend on the round and the client.
2. Each accepted update folds into :meth:`Strategy.aggregation`, a round of
   :class:`~mfed.aggregation.streaming.Aggregation` given the round and a generator seeded from
   (run seed, round); by default its parts go where :meth:`Strategy.targets` says.
3. The round's ``result()`` is the next state and metrics (logged as ``agg/<name>``).

Defences (clipping, robust rules) are not a strategy's: they are declared once
(:class:`~mfed.aggregation.defences.Defences`, config group ``defences``) and wrap the fold of
every averaging strategy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from mfed.aggregation.defences import Defences
from mfed.aggregation.functional import WEIGHTINGS
from mfed.aggregation.privacy import DifferentialPrivacy
from mfed.aggregation.streaming import Aggregation
from mfed.models.multitask import MultiTaskModel
from mfed.types import PARTS, ClientSpec, ClientUpdate, LocalStep, ServerState

Plan = dict[str, tuple[LocalStep, ...]]
"""What each sampled client does in a round: its local steps, by client id."""


class Strategy(ABC):
    """Base class of aggregation strategies.

    Args:
        weighting: ``examples`` (weights n_k / sum n_j) or ``uniform``.
        name: The name in run names and reports (an ablation's, e.g. ``mfed_mu0``); ``None``: the class's.

    Attributes:
        name: The strategy's name in run names and reports.
        prox_mu: Strength of the proximal term(s) its clients' steps add (0 = none); part of the
            strategy's identity (its ``repr``, which a resume must match).
        pooled: The model is trained on every client's training data pooled, where the driver
            runs (:mod:`mfed.federation.pooled`); the clients only score it.
        averages: It averages clients' updates (so defences apply); ``False`` for Local and the
            centralised reference.
        defences: Clipping and robust rules wrapping its fold (:meth:`with_defences`).

    """

    name: str = "strategy"
    prox_mu: float = 0.0
    pooled: bool = False  # True: trained centrally on the pooled data (the reference row), not by clients
    averages: bool = True
    defences: Defences = Defences()
    privacy: DifferentialPrivacy | None = None
    soups_decoders: bool = False  # several decoders of one client fold into one scope (fedavg_all)
    combines: str | None = None  # how it combines updates where that is not a mean: defences and DP refuse it

    def __init__(self, weighting: str = "examples", name: str | None = None) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"aggregation.weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting
        if name is not None:
            if not name or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"aggregation.name must be letters, digits, _ or -, got {name!r}")
            self.name = name

    def with_defences(self, defences: Defences) -> Strategy:
        """Wrap this strategy's fold in ``defences``; refused (naming the keys) where it averages nothing."""
        keys = " and ".join(f"defences.{k}" for k in defences.active)
        if defences.active and not self.averages:
            raise ValueError(f"{keys} cannot apply to aggregation={self.name}: it averages no update; unset them")
        if defences.active and self.combines:
            raise ValueError(
                f"{keys} cannot apply to aggregation={self.name}: it combines updates by {self.combines}, not a "
                "mean, so no rule bounds an attacker's pull; unset them (update screening still applies)"
            )
        self.defences = defences
        return self

    def with_privacy(self, privacy: DifferentialPrivacy | None) -> Strategy:
        """Wrap this strategy's fold in client-level DP; refused (naming the keys) where it would void the guarantee."""
        if privacy is None:
            return self
        if not self.averages:
            raise ValueError(
                f"privacy=dp cannot apply to aggregation={self.name}: it averages no update; use privacy=null"
            )
        if self.combines:
            raise ValueError(
                f"privacy=dp cannot apply to aggregation={self.name}: it combines updates by {self.combines}, "
                "whose sensitivity the accountant does not bound; use privacy=none"
            )
        if self.defences.robust is not None:
            raise ValueError(
                f"privacy=dp with defences.robust={self.defences.robust}: an order statistic's sensitivity is not "
                "bounded by the clipping the accountant assumes; unset defences.robust"
            )
        if "decoder" in privacy.parts and self.soups_decoders:
            raise ValueError(
                f"privacy.parts=[..., decoder] with aggregation={self.name}: a client holding several tasks adds "
                "several decoders to one soup, beyond the bound of one client; protect the encoder only"
            )
        self.privacy = privacy
        return self

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

    def aggregation(self, state: ServerState, round_idx: int = 0, rng: torch.Generator | None = None) -> Aggregation:
        """A new round from ``state``: fold in the accepted updates one by one, then take its result."""
        return Aggregation(self, state, round_idx, rng)

    def aggregate(
        self,
        state: ServerState,
        updates: Sequence[ClientUpdate],
        round_idx: int = 0,
        rng: torch.Generator | None = None,
    ) -> ServerState:
        """The next server state from the current one and this round's updates, folded in order."""
        round_ = self.aggregation(state, round_idx, rng)
        for update in updates:
            round_.add(update)
        return round_.result()[0]

    def __repr__(self) -> str:
        dp = self.privacy.describe() if self.privacy is not None else ""
        return (
            f"{type(self).__name__}(weighting={self.weighting!r}, prox_mu={self.prox_mu}{self.defences.describe()}{dp})"
        )
