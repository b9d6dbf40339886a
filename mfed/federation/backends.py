"""Where clients run: the protocol, and the serial backend (this process, one client after another).

The Ray backend (:mod:`mfed.federation.ray_backend`) drives the same
:class:`mfed.federation.client.Client`; for the same seed both give the same global state (tested).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol, TypeVar

from mfed.federation.client import Client
from mfed.federation.setup import ClientSetup
from mfed.secure.session import Instructions, Sessions
from mfed.types import ClientEvaluation, ClientFailure, ClientSpec, ClientUpdate, LocalStep, ServerState

Secure = Mapping[str, Instructions]
"""Each client's secure aggregation instructions this round, by id (``None``: updates travel in the clear)."""

Plan = Mapping[str, Sequence[LocalStep]]
"""Each client's local steps this round, by id (from the strategy's ``configure_round``)."""

__all__ = ["Backend", "ClientSetup", "SerialBackend", "attributed"]

log = logging.getLogger(__name__)
M = TypeVar("M")


def attributed(client_id: str, message: M) -> M | ClientFailure:
    """``message``, returned by the call made for ``client_id``; one that names another client is a ``rejected`` fault.

    Who sent a message is the client the backend called, not what the message says: an update
    labelled as another sampled client's would otherwise be averaged as that client's and the real
    one refused as a second. The fault names both ids and costs the named client nothing (its own
    message still comes from its own call).

    Args:
        client_id: The client whose call returned ``message``.
        message: What the call returned (an update, an evaluation, a failure).

    """
    claimed = getattr(message, "client_id", None)
    if claimed == client_id:
        return message
    return ClientFailure(
        client_id,
        "rejected",
        f"its message claims to be client {str(claimed)[:80]!r}, but came from the call made for {client_id!r}; "
        "dropped (the named client's own message still counts)",
    )


class Backend(Protocol):
    """Runs clients' work for the driver."""

    def check(self, n_clients: int) -> None:
        """Refuse, before anything starts, a federation of ``n_clients`` that cannot fit."""
        ...

    def start(self, specs: Sequence[ClientSpec], setup: ClientSetup) -> None:
        """Create one client per spec."""
        ...

    def fit(
        self, client_ids: Sequence[str], state: ServerState, round_idx: int, plan: Plan, secure: Secure | None = None
    ) -> Iterator[ClientUpdate | ClientFailure]:
        """Train the given clients from ``state``, each running the local steps ``plan`` gives it.

        With ``secure``, each client keeps its update in a secure session where it trained
        (:class:`~mfed.secure.session.Sessions`) and sends it without its tensors; the driver
        then runs the protocol's steps with :meth:`secure`.

        Yields each client's result as it comes, in any order (one per client: an update or a
        failure), and ``restarted`` notes along the way. The driver folds each result in as it
        arrives, so a backend never needs to hold them all. A result carries the id of the client
        it was asked of: one whose message names another client comes as that client's
        ``rejected`` failure (:func:`attributed`), never under the id it claims.
        """
        ...

    def secure(self, step: str, payloads: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, object]]:
        """Each client's answer to a secure aggregation step, from its session; a client that did not answer is absent.

        A client answers where it trained (its session is there): one whose host is gone, or
        that raises, is a dropout (logged), never retried elsewhere.
        """
        ...

    def evaluate(
        self, client_ids: Sequence[str], state: ServerState, split: str = "val"
    ) -> Iterator[ClientEvaluation | ClientFailure]:
        """Score the given clients' next-round models on ``split``; results as :meth:`fit`'s."""
        ...

    def shutdown(self) -> None:
        """Release clients and anything the backend started."""
        ...


class SerialBackend:
    """All clients in this process, one after another (tests, debugging).

    A client that raises ends the run with its traceback (the point of debugging in one
    process); isolating failed and late clients is the Ray backend's work. As on Ray, each
    result is the called client's: a message naming another client is rejected (:func:`attributed`).

    Args:
        round_timeout_s: Must be ``None``: a client in this process cannot be stopped mid-fit.

    """

    def __init__(self, round_timeout_s: float | None = None) -> None:
        if round_timeout_s is not None:
            raise ValueError(
                f"federation.round_timeout_s={round_timeout_s} needs backend=ray: a client in the serial "
                "backend's process cannot be stopped mid-fit; set it to null"
            )
        self.clients: dict[str, Client] = {}
        self.sessions = Sessions()

    def check(self, n_clients: int) -> None:
        """Any number of clients fits in this process."""

    def start(self, specs: Sequence[ClientSpec], setup: ClientSetup) -> None:
        """Build every client here."""
        self.clients = {s.client_id: Client(*setup.client_args(s)) for s in specs}

    def fit(
        self, client_ids: Sequence[str], state: ServerState, round_idx: int, plan: Plan, secure: Secure | None = None
    ) -> Iterator[ClientUpdate | ClientFailure]:
        """Train clients one by one; each result is attributed to the client called."""
        for c in client_ids:
            update = attributed(c, self.clients[c].fit(state, round_idx, plan[c]))
            if secure is not None and isinstance(update, ClientUpdate):
                update = self.sessions.open(update, state, secure[c])
            yield update

    def secure(self, step: str, payloads: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, object]]:
        """Each client's answer from its session here (a client that raises ends the run, as in :meth:`fit`)."""
        return {c: self.sessions.step(c, step, payload) for c, payload in payloads.items()}

    def evaluate(
        self, client_ids: Sequence[str], state: ServerState, split: str = "val"
    ) -> Iterator[ClientEvaluation | ClientFailure]:
        """Evaluate clients one by one; each result is attributed to the client called."""
        return (attributed(c, self.clients[c].evaluate(state, split)) for c in client_ids)

    def shutdown(self) -> None:
        """Drop the clients."""
        self.clients = {}
