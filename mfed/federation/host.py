"""A worker that hosts many clients and runs their work one call at a time (a plain class; Ray wraps it).

Clients are stateless, so any host can serve any client: a host keeps the clients it built
in a small LRU cache (their model and shard; nothing the server does not also hold) and
rebuilds an evicted one from its spec and the dataset. With one client per host and a cache
of one, a host is the classic resident actor. Work on one client that raises is reported as
that client's :class:`~mfed.types.ClientFailure`; the host's other clients go on. Each call
is one client's, so its result reaches the driver as soon as that client is done.

The server state arrives as scope names plus one tensor dict per scope, so that the Ray
backend can pass each scope as its own top-level ObjectRef (Ray resolves those before the call):
a host receives only the scopes its clients need.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from torch.utils.data import Dataset

from mfed.federation.client import Client
from mfed.federation.setup import ClientSetup
from mfed.secure.session import Instructions, Sessions
from mfed.types import ClientEvaluation, ClientFailure, ClientSpec, ClientUpdate, LocalStep, ServerState, State

log = logging.getLogger(__name__)
T = TypeVar("T")


class ClientHost:
    """Runs the work of any of ``specs``' clients, one call at a time.

    Args:
        specs: Every client this host may be asked to serve (a backend may move clients between
            hosts, e.g. off a lost node).
        setup: What every client is built from.
        dataset: The training pool (replaces ``setup.dataset``; e.g. resolved from the object store).
        test_dataset: The global test set (replaces ``setup.test_dataset``).
        cache: Clients kept built; an evicted client is rebuilt on its next call.
        build_now: Clients to build at construction (a resident host's own client).

    """

    def __init__(
        self,
        specs: Sequence[ClientSpec],
        setup: ClientSetup,
        dataset: Dataset,
        test_dataset: Dataset | None,
        cache: int = 1,
        build_now: Sequence[str] = (),
    ) -> None:
        if cache < 1:
            raise ValueError(f"backend.client_cache must be >= 1, got {cache}")
        self.specs = {s.client_id: s for s in specs}
        self.setup, self.dataset, self.test_dataset, self.cache = setup, dataset, test_dataset, cache
        self._clients: OrderedDict[str, Client] = OrderedDict()
        self.sessions = Sessions()  # secure aggregation: each client's update, keys and seeds stay here
        for client_id in list(build_now)[:cache]:
            self.client(client_id)

    def client(self, client_id: str) -> Client:
        """The built client ``client_id`` (built now if it is not cached)."""
        if client_id in self._clients:
            self._clients.move_to_end(client_id)
            return self._clients[client_id]
        spec = self.specs[client_id]
        client = Client(*self.setup.client_args(spec, (self.dataset, self.test_dataset)))
        self._clients[client_id] = client
        while len(self._clients) > self.cache:
            self._clients.popitem(last=False)
        return client

    def fit(
        self,
        client_id: str,
        work: tuple[int, Sequence[LocalStep], Instructions | None],
        scopes: Sequence[str],
        *tensors: State,
    ) -> ClientUpdate | ClientFailure:
        """Train ``client_id`` for ``work`` (round, local steps, secure instructions) from ``scopes``' ``tensors``.

        With secure instructions the update stays here, in the client's session, and goes back without its tensors.
        """
        state: ServerState = dict(zip(scopes, tensors, strict=True))
        round_idx, steps, secure = work

        def fit(client: Client) -> ClientUpdate:
            update = client.fit(state, round_idx, steps)
            return update if secure is None else self.sessions.open(update, state, secure)

        return self._run(client_id, fit)

    def secure(self, client_id: str, step: str, payload: Mapping[str, object]) -> dict[str, object]:
        """``client_id``'s answer to a secure aggregation step (raises where it cannot: the driver counts a dropout)."""
        return self.sessions.step(client_id, step, payload)

    def evaluate(
        self, client_id: str, split: str, scopes: Sequence[str], *tensors: State
    ) -> ClientEvaluation | ClientFailure:
        """Score ``client_id`` on ``split``."""
        state: ServerState = dict(zip(scopes, tensors, strict=True))
        return self._run(client_id, lambda client: client.evaluate(state, split))

    def _run(self, client_id: str, work: Callable[[Client], T]) -> T | ClientFailure:
        try:
            return work(self.client(client_id))
        except Exception as err:  # one client's failure must not take the host's other clients down
            log.exception("client %s failed", client_id)
            text = str(err).strip().splitlines()
            return ClientFailure(client_id, "failed", f"raised {type(err).__name__}: {text[0] if text else ''}")
