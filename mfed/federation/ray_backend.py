"""Clients on Ray: worker actors that host one client each (resident) or many (pooled).

Each actor is a :class:`~mfed.federation.host.ClientHost`. With ``clients_per_actor=1`` (the
default) every client has its own long-lived actor, built at start. With an integer K, or
``auto`` (one actor per CPU of the cluster), each actor hosts a contiguous share of the clients
and trains the sampled ones in turn; the results are the same for the same seed (tested),
because clients are stateless and every random choice derives from (seed, round, client).

Each round every scope of the server state is ``ray.put`` once and an actor receives only the
scopes its clients load (global, their tasks', their own). Results come through
:func:`mfed.federation.gather.gather`: a dead actor is recreated and its call retried, a late one
dropped at ``round_timeout_s``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from mfed.federation.gather import gather
from mfed.federation.host import ClientHost
from mfed.federation.setup import ClientSetup
from mfed.types import (
    ClientEvaluation,
    ClientFailure,
    ClientSpec,
    ClientUpdate,
    ServerState,
    client_scope,
    global_scope,
    task_scope,
)  # fmt: skip

log = logging.getLogger(__name__)

RECREATE_WAIT_S = 120.0


class RayBackend:
    """Clients in Ray actors; the server state is ``ray.put`` once per call, scope by scope.

    Args:
        address: Ray address to join; ``None`` joins ``RAY_ADDRESS`` when set, else starts an
            embedded local Ray with all of this machine's cores.
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
        self.groups: dict[str, list[ClientSpec]] = {}
        self.host_of: dict[str, str] = {}
        self._make_actor: Callable[[str], Any] | None = None
        self._started_ray = False

    def _init_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            from mfed.federation.local_ray import init_local_ray

            init_local_ray(num_cpus=os.cpu_count())
        self._started_ray = True

    def _known_cluster(self) -> dict[str, float] | None:
        """The cluster's resources when known without connecting: a running Ray, or the embedded one to start."""
        import ray

        if ray.is_initialized():
            return {k: float(v) for k, v in ray.cluster_resources().items()}
        if self.address or os.environ.get("RAY_ADDRESS"):
            return None  # a remote cluster: checked when joined
        import torch

        return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}

    def n_actors(self, n_clients: int, total_cpus: float) -> int:
        """Actors for ``n_clients``: one each, ``ceil(n / K)``, or one per CPU (``auto``)."""
        if self.clients_per_actor == "auto":
            return max(1, min(n_clients, int(total_cpus)))
        return math.ceil(n_clients / int(self.clients_per_actor))

    def check(self, n_clients: int) -> None:
        """Refuse CPU and GPU requests the cluster cannot hold at once (before Ray or W&B start)."""
        resources = self._known_cluster()
        if resources is None:
            return
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
        import ray

        self._init_ray()
        total = float(ray.cluster_resources().get("CPU", 0.0))
        n = self.n_actors(len(specs), total)
        cpus = self._cpus_per_actor(n, total)
        per_actor = math.ceil(len(specs) / n)
        resident = per_actor == 1
        self.groups = {
            (chunk[0].client_id if resident else f"host-{i}"): chunk
            for i, chunk in enumerate(list(specs[k : k + per_actor]) for k in range(0, len(specs), per_actor))
        }  # contiguous shares: clients of one task mostly share an actor and its scopes
        self.host_of = {s.client_id: host for host, chunk in self.groups.items() for s in chunk}
        cache = self.client_cache or min(per_actor, 64)
        log.info("starting %d actors of %d clients (%.2f CPU, %g GPU each)", n, per_actor, cpus, self.num_gpus)
        remote_host = ray.remote(ClientHost).options(
            num_cpus=cpus, num_gpus=self.num_gpus, scheduling_strategy=self.PLACEMENTS[self.placement]
        )
        # Each dataset enters the object store once; top-level ObjectRef args reach actors as values.
        data = (ray.put(setup.dataset), ray.put(setup.test_dataset))
        bare = setup.without_data()
        self._make_actor = lambda h: remote_host.remote(self.groups[h], bare, *data, cache, resident)
        self.actors = {h: self._make_actor(h) for h in self.groups}
        ray.get([a.__ray_ready__.remote() for a in self.actors.values()])

    def recreate(self, host: str) -> None:
        """Replace an actor by a new one and wait (up to ``RECREATE_WAIT_S``) until it is built.

        The old one is killed if it still runs (a hung or stopped process). Waiting here keeps
        the new actor's start-up (seconds: imports, the shards) out of the next call's time limit.
        A new actor that is not running by then (no room left after a lost node) is logged; calls
        to it wait for it, up to ``round_timeout_s`` when one is set.
        """
        import ray

        assert self._make_actor is not None, "start() first"
        ray.kill(self.actors[host], no_restart=True)
        self.actors[host] = self._make_actor(host)
        ready, _ = ray.wait([self.actors[host].__ray_ready__.remote()], timeout=RECREATE_WAIT_S)
        if not ready:
            log.warning(
                "the new actor of %s is not running after %.0f s: the cluster may have no room for it "
                "(a lost node?); its calls wait for it (set federation.round_timeout_s to bound that)",
                host, RECREATE_WAIT_S,
            )  # fmt: skip

    def _call(self, client_ids: Sequence[str], state: ServerState, method: str, *args: Any) -> list[Any]:
        """Run ``method`` for ``client_ids`` on their actors; per client a result or a failure, then notes."""
        import ray

        by_host: dict[str, list[str]] = {}
        for c in client_ids:
            by_host.setdefault(self.host_of[c], []).append(c)
        task_of = {s.client_id: s.task for chunk in self.groups.values() for s in chunk}
        scopes = {
            host: [
                n
                for n in (global_scope(), *{task_scope(task_of[c]) for c in ids}, *(client_scope(c) for c in ids))
                if n in state
            ]
            for host, ids in by_host.items()
        }  # what each actor's clients load; only those scopes enter the object store
        refs = {n: ray.put(state[n]) for n in {n for names in scopes.values() for n in names}}

        def submit(host: str) -> Any:
            names = scopes[host]
            return getattr(self.actors[host], method).remote(by_host[host], *args, names, *(refs[n] for n in names))

        label = f"round {args[0]} fit" if method == "fit" else f"{args[0]} evaluation"
        results, notes = gather(list(by_host), submit, self.recreate, self.max_retries, self.round_timeout_s, label)
        per_client: dict[str, Any] = {}
        for host, ids in by_host.items():
            result = results[host]
            if isinstance(result, ClientFailure):  # the whole actor failed: each of its clients did
                per_client.update({c: ClientFailure(c, result.kind, result.reason) for c in ids})
            else:
                per_client.update(zip(ids, result, strict=True))
        expanded = [ClientFailure(c, n.kind, n.reason) for n in notes for c in by_host[n.client_id]]
        return [per_client[c] for c in client_ids] + expanded

    def fit(self, client_ids: Sequence[str], state: ServerState, round_idx: int) -> list[ClientUpdate | ClientFailure]:
        """Every actor trains its sampled clients; actors run concurrently."""
        return self._call(client_ids, state, "fit", round_idx)

    def evaluate(
        self, client_ids: Sequence[str], state: ServerState, split: str = "val"
    ) -> list[ClientEvaluation | ClientFailure]:
        """Every actor scores its clients on ``split``; actors run concurrently."""
        return self._call(client_ids, state, "evaluate", split)

    def shutdown(self) -> None:
        """Kill the actors, and Ray itself when this backend started it."""
        import ray

        for actor in self.actors.values():
            ray.kill(actor)
        self.actors, self._make_actor = {}, None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
