"""Clients on Ray: worker actors that host one client each (resident) or many (pooled).

Each actor is a :class:`~mfed.federation.host.ClientHost`. With ``clients_per_actor=1`` (the
default) every client has its own long-lived actor, built at start. With an integer K, or
``auto`` (one actor per CPU of the cluster), the clients are dealt to the actors round-robin and
each actor trains its sampled ones in turn; the results are the same for the same seed (tested),
because clients are stateless and every random choice derives from (seed, round, client).

Each round every scope of the server state is ``ray.put`` once, and each client's call (one
actor call per client) carries only the scopes it loads (global, its task's, its own). Results
come through :func:`mfed.federation.gather.gather` as they arrive: a dead actor is replaced and
its calls retried, a late one dropped at ``round_timeout_s``. An actor whose node is gone, or for
which the cluster has no room any more, is not replaced: its clients move to the live actors.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from mfed.federation.backends import Plan, Secure
from mfed.federation.gather import gather, short_error
from mfed.federation.host import ClientHost
from mfed.federation.ray_join import join_cluster
from mfed.federation.setup import ClientSetup
from mfed.interrupts import reclaim, uninterruptible
from mfed.types import (
    ClientEvaluation,
    ClientFailure,
    ClientSpec,
    ClientUpdate,
    ServerState,
    scopes_of,
)  # fmt: skip

log = logging.getLogger(__name__)

RECREATE_WAIT_S = 120.0
START_WAIT_S = 300.0  # the longest start-up waits for every actor to run (placement, imports, shards)


def actor_count(n_clients: int, clients_per_actor: int | str, total_cpus: float) -> int:
    """Actors for ``n_clients``: one each (1), ``ceil(n / K)`` (K), or one per whole CPU (``auto``)."""
    if clients_per_actor == "auto":
        return max(1, min(n_clients, math.floor(total_cpus + 1e-9)))
    return math.ceil(n_clients / int(clients_per_actor))


class _RayHost(ClientHost):
    """A :class:`ClientHost` as a Ray actor, which can say which node it runs on."""

    def node_id(self) -> str:
        """The Ray node this actor runs on."""
        import ray

        return str(ray.get_runtime_context().get_node_id())


class RayBackend:
    """Clients in Ray actors; the server state is ``ray.put`` once per call, scope by scope.

    Args:
        address: Ray address to join; ``None`` joins ``RAY_ADDRESS`` when set, else starts an
            embedded local Ray with all of this machine's cores. A ``host:port`` or
            ``ray://host:port`` address is probed with a TCP connect first, so one where nothing
            listens fails in seconds (``auto`` and other forms are left to Ray).
        num_cpus_per_client: CPUs each actor requests (an actor hosts ``clients_per_actor``
            clients); ``None`` shares the cluster's CPUs evenly (at most 1 each) so every actor
            fits at once.
        num_gpus_per_client: GPUs (may be fractional) each actor requests.
        placement: ``pack`` (Ray's default: fill nodes) or ``spread`` (actors across nodes, as
            real participants would be).
        max_retries: Times a call whose actor died is retried on a new actor.
        round_timeout_s: Seconds a round's training (and each evaluation) may take; clients still
            running then are dropped and reported, and their actors replaced. ``None``: no limit.
        clients_per_actor: ``1`` (one resident actor per client), an integer K, or ``auto``
            (as many actors as the cluster has CPUs, the clients shared among them).
        client_cache: Clients an actor keeps built (model and shard); ``None``: all of its
            clients up to 64. An evicted client is rebuilt from its spec on its next call.

    A client whose actor dies past its retries, whose code raises, or that runs late becomes a
    :class:`~mfed.types.ClientFailure` in the results; the others' results are unaffected.

    """

    # None keeps Ray's default, which also keeps actors inside an enclosing placement group (a
    # Ray Tune trial's); "SPREAD" places them across nodes.
    PLACEMENTS = {"pack": None, "spread": "SPREAD"}

    def __init__(
        self,
        address: str | None = None,
        num_cpus_per_client: float | None = None,
        num_gpus_per_client: float = 0.0,
        placement: str = "pack",
        max_retries: int = 2,
        round_timeout_s: float | None = None,
        clients_per_actor: int | str = 1,
        client_cache: int | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"federation.max_retries must be >= 0, got {max_retries}")
        if round_timeout_s is not None and not round_timeout_s > 0:
            raise ValueError(f"federation.round_timeout_s must be > 0 or null (no limit), got {round_timeout_s}")
        if placement not in self.PLACEMENTS:
            raise ValueError(f"backend.placement must be one of {tuple(self.PLACEMENTS)}, got {placement!r}")
        if num_cpus_per_client is not None and num_cpus_per_client <= 0:
            raise ValueError(f"backend.num_cpus_per_client must be > 0 or null (auto), got {num_cpus_per_client}")
        if num_gpus_per_client < 0:
            raise ValueError(f"backend.num_gpus_per_client must be >= 0, got {num_gpus_per_client}")
        if clients_per_actor != "auto" and not (isinstance(clients_per_actor, int) and clients_per_actor >= 1):
            raise ValueError(f"backend.clients_per_actor must be an integer >= 1 or auto, got {clients_per_actor!r}")
        if client_cache is not None and client_cache < 1:
            raise ValueError(f"backend.client_cache must be >= 1 or null, got {client_cache}")
        self.max_retries, self.round_timeout_s = int(max_retries), round_timeout_s
        self.address, self.num_cpus, self.num_gpus = address, num_cpus_per_client, num_gpus_per_client
        self.placement, self.clients_per_actor, self.client_cache = placement, clients_per_actor, client_cache
        self.actors: dict[str, Any] = {}  # by host key: the client's id for a resident actor
        self.node_of: dict[str, str] = {}  # host -> the Ray node its actor runs on
        self.host_of: dict[str, str] = {}  # client -> host
        self.tasks_of: dict[str, tuple[str, ...]] = {}
        self._ran_on: dict[Any, tuple[str, Any]] = {}  # this call's ObjectRefs -> (host, actor)
        self._placed: dict[str, tuple[str, Any]] = {}  # client -> (host, actor) of its last call: its secure session
        self._make_actor: Callable[[str], Any] | None = None
        self._starting: dict[str, tuple[Any, float]] = {}  # replaced hosts not yet running: (node_id ref, deadline)
        self._started_ray = False

    def _init_ray(self) -> None:
        """Join the given cluster, or start the embedded one (which sets its mode before Ray is first imported)."""
        loaded = sys.modules.get("ray")
        if loaded is not None and loaded.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS")
        if address:
            join_cluster(address, "backend.address" if self.address else "RAY_ADDRESS")
        else:
            from mfed.federation.local_ray import init_local_ray

            init_local_ray(num_cpus=os.cpu_count())
        reclaim()  # Ray's core took SIGTERM: a stop must still end the run as interrupted
        self._started_ray = True

    def _known_cluster(self) -> dict[str, float]:
        """The cluster's resources: a running Ray's, a cluster's to join (joined now), or the embedded one's to start.

        A run given a cluster (``backend.address``, or ``RAY_ADDRESS`` as inside a submitted job)
        joins it here, so its requests are checked before W&B or the run's folder start.
        """
        if self.address or os.environ.get("RAY_ADDRESS"):
            self._init_ray()
        ray = sys.modules.get("ray")  # not imported here otherwise: the embedded Ray sets its mode before that
        if ray is not None and ray.is_initialized():
            return {k: float(v) for k, v in ray.cluster_resources().items()}
        import torch

        return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}

    def n_actors(self, n_clients: int, total_cpus: float) -> int:
        """Actors for ``n_clients`` on ``total_cpus`` (see :func:`actor_count`)."""
        return actor_count(n_clients, self.clients_per_actor, total_cpus)

    def check(self, n_clients: int) -> None:
        """Refuse CPU and GPU requests the cluster cannot hold at once (before Ray or W&B start)."""
        resources = self._known_cluster()
        n = self.n_actors(n_clients, resources.get("CPU", 0.0))
        self._cpus_per_actor(n, resources.get("CPU", 0.0))
        gpus = resources.get("GPU", 0.0)
        if self.num_gpus * n > gpus + 1e-9:
            raise ValueError(
                f"backend.num_gpus_per_client={self.num_gpus} x {n} actors needs "
                f"{self.num_gpus * n:g} GPUs but the cluster has {gpus:g}: lower it (fractions share a GPU) "
                "or set it to 0"
            )

    def _cpus_per_actor(self, n_actors: int, total: float) -> float:
        if self.num_cpus is None:
            # Floor to 1/100 so n * share never exceeds the total by rounding.
            share = min(1.0, math.floor(100 * total / n_actors) / 100)
            if share <= 0:
                raise ValueError(
                    f"{n_actors} client actors cannot share {total:g} CPUs (at least 0.01 each): set "
                    "backend.clients_per_actor=auto (actors host many clients) or use a larger cluster"
                )
            return share
        if self.num_cpus * n_actors > total + 1e-9:
            raise ValueError(
                f"backend.num_cpus_per_client={self.num_cpus} x {n_actors} actors needs "
                f"{self.num_cpus * n_actors:g} CPUs but the cluster has {total:g}: actors that do "
                "not fit wait forever; lower it or leave it null (auto)"
            )
        return self.num_cpus

    def start(self, specs: Sequence[ClientSpec], setup: ClientSetup) -> None:
        """Start the actors, each hosting its share of the clients, and wait until all are built."""
        self._init_ray()
        import ray

        total = float(ray.cluster_resources().get("CPU", 0.0))
        n = self.n_actors(len(specs), total)
        cpus = self._cpus_per_actor(n, total)
        resident = n == len(specs)
        hosts = [s.client_id for s in specs] if resident else [f"host-{i}" for i in range(n)]
        # Round-robin: consecutive clients on different hosts, so results arrive about in the
        # order they are folded in (the driver holds an early one only until those before it came).
        self.host_of = {s.client_id: hosts[i % n] for i, s in enumerate(specs)}
        self.tasks_of = {s.client_id: s.tasks for s in specs}
        per_actor = math.ceil(len(specs) / n)
        cache = self.client_cache or min(per_actor, 64)
        log.info("starting %d actors of %d clients (%.2f CPU, %g GPU each)", n, per_actor, cpus, self.num_gpus)
        remote_host = ray.remote(_RayHost).options(
            num_cpus=cpus, num_gpus=self.num_gpus, scheduling_strategy=self.PLACEMENTS[self.placement]
        )
        # The specs and each dataset enter the object store once; top-level ObjectRef args reach
        # actors as values (any host can serve any client: clients move off a lost node).
        shared = [ray.put(x) for x in (list(specs), setup.without_data(), setup.dataset, setup.test_dataset)]
        self._make_actor = lambda h: remote_host.remote(*shared, cache, [h] if resident else [])
        self.actors = {h: self._make_actor(h) for h in hosts}
        where = [a.node_id.remote() for a in self.actors.values()]
        deadline = time.monotonic() + START_WAIT_S
        ready: list[Any] = []
        while len(ready) < len(where) and time.monotonic() < deadline:
            with uninterruptible():  # a stop signal raises between the waits, not through Ray's core
                ready, _ = ray.wait(where, num_returns=len(where), timeout=1.0)
        if len(ready) < len(where):
            free = ray.available_resources()
            raise RuntimeError(
                f"{len(where) - len(ready)} of {n} client actors were not running after {START_WAIT_S:.0f} s; "
                f"each asks {cpus:g} CPU and {self.num_gpus:g} GPU, and the cluster has {free.get('CPU', 0):g} CPU "
                f"and {free.get('GPU', 0):g} GPU free: lower backend.num_cpus_per_client or num_gpus_per_client"
            )
        self.node_of = dict(zip(hosts, ray.get(where), strict=True))

    def _lost(self, client: str, ref: Any) -> None:
        """The actor that ran ``ref`` for ``client`` died or hung: replace it, once however many calls say so."""
        host, actor = self._ran_on.pop(ref)
        if self.actors.get(host) is actor:
            self._replace(host)

    def _replace(self, host: str) -> None:
        """Kill ``host``'s actor and start a new one in the background; retire it if its node is gone.

        Every other host whose node is gone is retired with it (its calls would fail next). The
        new actor's start-up (seconds: imports, the shards) does not hold up the other clients'
        results: calls sent to it wait in its queue, other hosts take waiting work meanwhile
        (:meth:`_live_hosts`), and one that is not running after ``RECREATE_WAIT_S`` (no room in
        the cluster) is retired, its clients dealt to the live hosts. The next round's (or
        evaluation's) calls wait for it first (:meth:`_await_started`), so its start-up does not count
        against their ``round_timeout_s`` (this round's calls queued on it do wait for it).
        """
        import ray

        assert self._make_actor is not None, "start() first"
        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        gone = [h for h, node in self.node_of.items() if node not in alive]
        if gone:
            self._retire(gone, "node gone")
        if host in gone:
            return
        ray.kill(self.actors[host], no_restart=True)
        self.actors[host] = actor = self._make_actor(host)
        self._starting[host] = (actor.node_id.remote(), time.monotonic() + RECREATE_WAIT_S)

    def _await_started(self) -> None:
        """Before new calls: wait for replacements still starting (to their deadline), so start-up is not call time."""
        import ray

        while self._starting:
            with uninterruptible():  # a stop signal raises between the waits, not through Ray's core
                ray.wait([where for where, _ in self._starting.values()], num_returns=len(self._starting), timeout=1.0)
            self._live_hosts()

    def _live_hosts(self) -> list[str]:
        """The hosts running now: a replacement that has started joins, one not running in time is retired."""
        import ray

        for host, (where, deadline) in list(self._starting.items()):
            ready, _ = ray.wait([where], timeout=0)
            if ready:
                del self._starting[host]
                self.node_of[host] = ray.get(where)
            elif time.monotonic() > deadline:
                del self._starting[host]
                self._retire([host], f"no new actor running after {RECREATE_WAIT_S:.0f} s: no room in the cluster?")
        return [h for h in self.actors if h not in self._starting]

    def _retire(self, hosts: Sequence[str], why: str) -> None:
        """Drop ``hosts`` and deal their clients to the live hosts, round-robin (clients are stateless)."""
        import ray

        for host in hosts:
            ray.kill(self.actors.pop(host), no_restart=True)
            del self.node_of[host]
        if not self.actors:
            raise RuntimeError(f"every client actor is lost (the last: {', '.join(hosts)}, {why}); no room is left")
        moved = [c for c, h in self.host_of.items() if h in hosts]
        live = list(self.actors)
        self.host_of.update({c: live[i % len(live)] for i, c in enumerate(moved)})
        log.warning(
            "%s not replaced (%s): %d clients move to %d live actors", ", ".join(hosts), why, len(moved), len(live)
        )

    def _call(
        self, client_ids: Sequence[str], state: ServerState, method: str, label: str, args: Mapping[str, Any]
    ) -> Iterator[Any]:
        """Run ``method(client, args[client], ...)`` for each client on its actor; yield results as they come."""
        import ray

        self._await_started()
        scopes = {c: [n for n in scopes_of(c, self.tasks_of[c]) if n in state] for c in client_ids}
        # what each client loads; only those scopes enter the object store, once each
        refs = {n: ray.put(state[n]) for n in {n for names in scopes.values() for n in names}}
        self._ran_on = {}

        def submit(client: str, host: str) -> Any:
            actor, names = self.actors[host], scopes[client]
            # Top-level ObjectRefs: Ray fetches them before the call. (Passing them in a list for the
            # host to fetch and cache cost about 3 s more per round of the default run: measured.)
            ref = getattr(actor, method).remote(client, args[client], names, *(refs[n] for n in names))
            self._ran_on[ref] = self._placed[client] = (host, actor)
            return ref

        yield from gather(
            client_ids, submit, self._lost, self.host_of.__getitem__, self._live_hosts,
            self.max_retries, self.round_timeout_s, label,
        )  # fmt: skip

    def fit(
        self, client_ids: Sequence[str], state: ServerState, round_idx: int, plan: Plan, secure: Secure | None = None
    ) -> Iterator[ClientUpdate | ClientFailure]:
        """Train the sampled clients, each with its local steps, on their actors (concurrently across actors)."""
        work = {c: (round_idx, tuple(plan[c]), secure[c] if secure is not None else None) for c in client_ids}
        return self._call(client_ids, state, "fit", f"round {round_idx} fit", work)

    def secure(self, step: str, payloads: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, object]]:
        """Each client's answer from the actor it trained on; one whose actor is gone, late or raising drops out."""
        import ray

        calls: dict[Any, str] = {}
        for client, payload in payloads.items():
            host, actor = self._placed.get(client, ("", None))
            if actor is None or self.actors.get(host) is not actor:
                log.warning("secure aggregation %s: %s dropped out (its actor was replaced)", step, client)
                continue
            calls[actor.secure.remote(client, step, payload)] = client  # type: ignore[union-attr]
        with uninterruptible():
            done, late = ray.wait(list(calls), num_returns=len(calls), timeout=self.round_timeout_s)
        replies = {}
        for ref in done:
            try:
                replies[calls[ref]] = ray.get(ref)
            except Exception as err:  # a dead actor or a raising client: a dropout of this round's protocol
                log.warning("secure aggregation %s: %s dropped out (%s)", step, calls[ref], short_error(err))
        for ref in late:
            ray.cancel(ref)
            log.warning("secure aggregation %s: %s dropped out (late)", step, calls[ref])
        return replies

    def evaluate(
        self, client_ids: Sequence[str], state: ServerState, split: str = "val"
    ) -> Iterator[ClientEvaluation | ClientFailure]:
        """Score the clients on ``split`` on their actors."""
        return self._call(client_ids, state, "evaluate", f"{split} evaluation", dict.fromkeys(client_ids, split))

    def shutdown(self) -> None:
        """Kill the actors, and Ray itself when this backend started it."""
        import ray

        for actor in self.actors.values():
            ray.kill(actor)
        self.actors, self._make_actor, self._starting = {}, None, {}
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
