"""Messages exchanged between the driver and the clients: small frozen dataclasses.

A state is a flat ``dict[str, Tensor]`` keyed by parameter name. Names are the contract between
model and aggregation: shared parameters live under ``encoder.``, task parameters under
``decoders.<task>.`` (see :mod:`mfed.models.multitask`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def personal_scope(client_id: str) -> str:
    """Return the scope the server computes for ``client_id`` alone (a personalised model): a download."""
    return f"personal:{client_id}"


def client_scope(client_id: str) -> str:
    """Return the scope holding what ``client_id`` keeps between rounds (private state, not communication)."""
    return f"client:{client_id}"


def server_scope() -> str:
    """Return the server-only scope: checkpointed and screened, never sent to a client."""
    return "server"


def shared_scopes_of(client_id: str, tasks: Sequence[str]) -> tuple[str, ...]:
    """The scopes a client holding ``tasks`` downloads, in loading order: global, each task's, its personal one."""
    return (global_scope(), *(task_scope(t) for t in tasks), personal_scope(client_id))


def scopes_of(client_id: str, tasks: Sequence[str]) -> tuple[str, ...]:
    """Every scope a client holding ``tasks`` loads, its own kept state last: nothing else reaches it."""
    return (*shared_scopes_of(client_id, tasks), client_scope(client_id))


def kind_of(tasks: Sequence[str], domain: str = "") -> str:
    """The name of a task set (``semseg`` or ``semseg+depth+edges``): clients of one kind hold the same tasks.

    With a ``domain`` (a cross-domain federation's other data set): ``parts+normals@shapes``.
    """
    return "+".join(tasks) + (f"@{domain}" if domain else "")


def _task_tuple(owner: object, tasks: str | Sequence[str], what: str) -> None:
    """Normalise ``owner.tasks`` (a name, or names) to a non-empty tuple of unique names."""
    value = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if not value or len(set(value)) != len(value) or not all(isinstance(t, str) and t for t in value):
        raise ValueError(f"{what} must hold one or more distinct task names, got {tasks!r}")
    object.__setattr__(owner, "tasks", value)


@dataclass(frozen=True)
class ClientSpec:
    """Who a client is and which examples it holds.

    Attributes:
        client_id: Unique id, e.g. ``"semseg-0"`` or ``"semseg+depth-1"``.
        tasks: The client's tasks (one or more; a single name is taken as one task): its examples
            carry every one of their targets.
        train_indices: Indices into the training pool of the dataset.
        val_indices: Indices into the training pool held out for the client's validation.
        seed: Seed from which every random choice of the client derives.
        local_test_indices: Indices into the training pool held out as the client's own test set
            (``data.local_test_fraction``: FMTL-Bench's personalised, P-FL, evaluation); empty: none.
        domain: The data set its examples come from: ``""`` for the run's own (``data``), else a
            name of ``federation.domains`` (a cross-domain federation; indices then point into
            the domains' pools joined in order, :class:`mfed.data.domains.Joined`).
        test_span: ``(start, stop)``: the part of the (joined) global test set that is its
            domain's; ``None``: all of it.

    """

    client_id: str
    tasks: tuple[str, ...]
    train_indices: tuple[int, ...]
    val_indices: tuple[int, ...]
    seed: int
    local_test_indices: tuple[int, ...] = ()
    domain: str = ""
    test_span: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _task_tuple(self, self.tasks, f"client {self.client_id}'s tasks")
        if self.domain and not self.domain.replace("_", "").isalnum():
            raise ValueError(f"a domain's name must be letters, digits or _, got {self.domain!r}")
        if not self.client_id or "/" in self.client_id or ":" in self.client_id:
            raise ValueError(f"a client id must be non-empty, without '/' or ':', got {self.client_id!r}")

    @property
    def kind(self) -> str:
        """The client's task set as one name (see :func:`kind_of`), and its domain where not the run's own.

        ``semseg+depth``; ``parts+normals@shapes`` for a client of the domain ``shapes``.
        """
        return kind_of(self.tasks, self.domain)


PARTS = ("encoder", "decoder")
"""The parts of a client's model: the shared encoder and its tasks' decoders (every one it holds)."""


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
        clip: ``(parts, bound)``: the client clips its update of those parts (what it sends minus
            what it was sent), all of them as one vector, to this L2 norm before sending it, and
            says whether it was within (client-side DP clipping); ``None``: no clipping.

    """

    start: str = "shared"
    train: tuple[str, ...] = PARTS
    prox: tuple[tuple[str, float], ...] = ()
    sends: tuple[str, ...] = ()
    keeps: tuple[str, ...] = ()
    epochs: int | None = None
    name: str = ""
    clip: tuple[tuple[str, ...], float] | None = None

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
        if self.clip is not None and (not set(self.clip[0]) <= set(PARTS) or not self.clip[1] > 0):
            raise ValueError(f"a local step's clip needs parts of {PARTS} and a bound > 0, got {self.clip}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"a local step's epochs must be >= 1 or null, got {self.epochs}")


@dataclass(frozen=True)
class ClientUpdate:
    """What a client returns after local training.

    Attributes:
        client_id: The client's id.
        tasks: The client's tasks (a single name is taken as one task).
        num_examples: Training examples seen per epoch (the aggregation weight).
        state: The trained tensors the strategy asked for (never optimizer state or data).
        metrics: Scalar training metrics: the client's objective ``loss`` and ``reg`` (its
            proximal terms), and per task ``<task>/task_loss`` (unweighted) and ``<task>/weight``;
            a step with a name prefixes its metrics' names (``personal_loss``, ``<task>/personal_task_loss``).
        private: What the client keeps between rounds (e.g. Local's model, its loss weighting's
            parameters). The driver holds it under the client's ``client:<id>`` scope and sends it
            back next round, so clients are stateless; it is not communication and is counted
            apart from bytes up and down.
        within_bound: Under client-side DP clipping, whether the update was within the bound
            before the client clipped it (adaptive clipping's count); ``None``: not clipped.

    """

    client_id: str
    tasks: tuple[str, ...]
    num_examples: int
    state: State
    metrics: Mapping[str, float] = field(default_factory=dict)
    private: State = field(default_factory=dict)
    within_bound: bool | None = None

    def __post_init__(self) -> None:
        _task_tuple(self, self.tasks, f"update of {self.client_id}: tasks")


@dataclass(frozen=True)
class ClientEvaluation:
    """What a client returns after scoring the model it would train next round.

    Attributes:
        client_id: The client's id.
        tasks: The client's tasks (a single name is taken as one task).
        num_examples: Examples scored (each carries every task's target).
        metrics: ``{task: {metric: value}}`` computed on the scored split.
        metric_states: ``{task: {metric: metric_state}}`` so the driver can merge clients exactly.

    """

    client_id: str
    tasks: tuple[str, ...]
    num_examples: int
    metrics: Mapping[str, Mapping[str, float]]
    metric_states: Mapping[str, Mapping[str, Mapping[str, Any]]]

    def __post_init__(self) -> None:
        _task_tuple(self, self.tasks, f"evaluation of {self.client_id}: tasks")


@dataclass(frozen=True)
class ClientFailure:
    """A client's work that produced no message: its actor died past its retries, or it ran out of time.

    Attributes:
        client_id: The client.
        kind: ``failed`` (its actor died past its retries, or its code raised), ``timeout``
            (past ``federation.round_timeout_s``; its late result is dropped), ``rejected`` (its
            message claims to be another client's: dropped) or ``restarted`` (a note: its actor
            died and was replaced for a retry, whose result may have come).
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
