"""Messages exchanged between the driver and the clients: small frozen dataclasses.

A state is a flat ``dict[str, Tensor]`` keyed by parameter name. Names are the contract between
model and aggregation: shared parameters live under ``encoder.``, task parameters under
``decoders.<task>.`` (see :mod:`mfed.models.multitask`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

State = dict[str, Tensor]
"""A flat parameter/buffer dictionary, as returned by ``nn.Module.state_dict()``."""

ServerState = dict[str, State]
"""The server's state, by scope: ``"global"``, ``"task:<name>"`` or ``"client:<id>"``.

A client loads the scopes that concern it (global, then its task's, then its own), restricted to
the keys its model has. A strategy decides which scopes it keeps.
"""


def global_scope() -> str:
    """Return the scope every client loads."""
    return "global"


def task_scope(task: str) -> str:
    """Return the scope the clients of ``task`` load."""
    return f"task:{task}"


def client_scope(client_id: str) -> str:
    """Return the scope only ``client_id`` loads."""
    return f"client:{client_id}"


def scopes_of(client_id: str, task: str) -> tuple[str, str, str]:
    """Every scope a client of ``task`` loads, in loading order: nothing else of the server state reaches it."""
    return global_scope(), task_scope(task), client_scope(client_id)


@dataclass(frozen=True)
class ClientSpec:
    """Who a client is and which examples it holds.

    Attributes:
        client_id: Unique id, e.g. ``"semseg-0"``.
        task: Name of the client's task.
        train_indices: Indices into the training pool of the dataset.
        val_indices: Indices into the training pool held out for the client's validation.
        seed: Seed from which every random choice of the client derives.

    """

    client_id: str
    task: str
    train_indices: tuple[int, ...]
    val_indices: tuple[int, ...]
    seed: int


PARTS = ("encoder", "decoder")
"""The parts of a client's model: the shared encoder and its task's decoder."""


@dataclass(frozen=True)
class LocalStep:
    """One local training pass a strategy asks of its clients in a round (Flower's ``configure_fit``).

    A client starts each step from the server's state: where it holds both the shared copy of
    a part (``global`` / ``task:<task>`` scopes) and its own (``client:<id>``), ``start`` says
    which wins; anything in neither is the deterministic initial model, so a step never sees
    what an earlier round left behind.

    Attributes:
        start: ``shared`` (the server's copy wins) or ``own`` (the client's kept copy wins).
        train: Parts trained; the others are frozen (no gradient, not in the optimizer).
        prox: ``(part, mu)`` pairs: add ``mu/2 ||w - w_sent||^2`` over that part's parameters,
            toward what the server sent (its shared copy; a part it did not send has no term).
        sends: Parts uploaded after this step (the update's ``state``).
        keeps: Parts kept after this step (the update's ``private`` state, held by the driver).
        epochs: Local epochs of this step; ``None``: ``federation.local_epochs``.
        name: Prefix of this step's training metrics (``""``: ``loss``; ``"personal"``: ``personal_loss``).

    """

    start: str = "shared"
    train: tuple[str, ...] = PARTS
    prox: tuple[tuple[str, float], ...] = ()
    sends: tuple[str, ...] = ()
    keeps: tuple[str, ...] = ()
    epochs: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.start not in ("shared", "own"):
            raise ValueError(f"a local step starts from 'shared' or 'own', got {self.start!r}")
        for field_name in ("train", "sends", "keeps"):
            bad = sorted(set(getattr(self, field_name)) - set(PARTS))
            if bad:
                raise ValueError(f"a local step's {field_name} may hold only {PARTS}, got {bad}")
        for part, mu in self.prox:
            if part not in PARTS or not mu >= 0:
                raise ValueError(f"a proximal term needs a part of {PARTS} and mu >= 0, got ({part!r}, {mu})")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"a local step's epochs must be >= 1 or null, got {self.epochs}")


@dataclass(frozen=True)
class ClientUpdate:
    """What a client returns after local training.

    Attributes:
        client_id: The client's id.
        task: The client's task.
        num_examples: Training examples seen per epoch (the aggregation weight).
        state: The trained tensors the strategy asked for (never optimizer state or data).
        metrics: Scalar training metrics, e.g. ``{"loss": ..., "task_loss": ..., "reg": ...}``.
        bytes_down: Bytes of shared server state (global and task scopes) the client loaded.
        private: What the client keeps between rounds (e.g. Local's model). The driver holds it
            under the client's ``client:<id>`` scope and sends it back next round, so clients are
            stateless; it is not communication and is counted apart from bytes up and down.

    """

    client_id: str
    task: str
    num_examples: int
    state: State
    metrics: Mapping[str, float] = field(default_factory=dict)
    bytes_down: int = 0
    private: State = field(default_factory=dict)


@dataclass(frozen=True)
class ClientEvaluation:
    """What a client returns after scoring the model it would train next round.

    Attributes:
        client_id: The client's id.
        task: The client's task.
        num_examples: Validation examples scored.
        metrics: Scalar metrics computed on the client's own validation split.
        metric_states: ``{metric_name: metric_state}`` so the driver can merge clients exactly.

    """

    client_id: str
    task: str
    num_examples: int
    metrics: Mapping[str, float]
    metric_states: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class ClientFailure:
    """A client's work that produced no message: its actor died past its retries, or it ran out of time.

    Attributes:
        client_id: The client.
        kind: ``failed`` (its actor died past its retries, or its code raised), ``timeout``
            (past ``federation.round_timeout_s``; its late result is dropped) or ``restarted``
            (a note: its actor died and was replaced for a retry, whose result may have come).
        reason: What happened, in words.

    """

    client_id: str
    kind: str
    reason: str

    @property
    def note(self) -> bool:
        """Whether this only reports what happened on the way (a retry); the client's result comes apart."""
        return self.kind == "restarted"


def state_nbytes(state: Mapping[str, Tensor]) -> int:
    """Return the bytes the tensors of ``state`` occupy (what crosses the network)."""
    return sum(t.numel() * t.element_size() for t in state.values())
