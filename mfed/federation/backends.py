"""Where clients run: in this process (serial) or one Ray actor per client (ray).

Both backends drive the same :class:`mfed.federation.client.Client`; for the same seed they give
the same global state (tested). Ray is imported only inside :class:`RayBackend`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from torch.utils.data import Dataset

from mfed.federation.client import Client, ClientConfig
from mfed.federation.gather import gather
from mfed.models.multitask import MultiTaskModel
from mfed.systems.module import OptimizerFactory
from mfed.tasks.base import Task
from mfed.types import ClientEvaluation, ClientFailure, ClientSpec, ClientUpdate, ServerState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientSetup:
    """Everything clients share, picklable: built by the driver, sent once to each client."""

    tasks: dict[str, Task]
    dataset: Dataset
    model_factory: Callable[[list[Task]], MultiTaskModel]
    optimizer: OptimizerFactory
    config: ClientConfig
    test_dataset: Dataset | None = None

    def client_args(self, spec: ClientSpec, datasets: tuple[Any, Any] | None = None) -> tuple[Any, ...]:
        """Constructor arguments of the client ``spec``.

        ``datasets`` replaces ``(dataset, test_dataset)``, e.g. by Ray ObjectRefs.
        """
        pool, test = datasets if datasets is not None else (self.dataset, self.test_dataset)
        return (spec, self.tasks[spec.task], pool, self.model_factory, self.optimizer, self.config, test)


class Backend(Protocol):
    """Runs clients' work for the driver."""

    def check(self, n_clients: int) -> None:
        """Refuse, before anything starts, a federation of ``n_clients`` that cannot fit."""
        ...

    def start(self, specs: Sequence[ClientSpec], setup: ClientSetup) -> None:
        """Create one client per spec."""
        ...

    def fit(
        self, client_ids: Sequence[str], state: ServerState, round_idx: int
    ) -> Sequence[ClientUpdate | ClientFailure]:
        """Train the given clients from ``state``.

        Returns one result per client, in the order of ``client_ids``, then any ``restarted`` notes.
        """
        ...

    def evaluate(
        self, client_ids: Sequence[str], state: ServerState, split: str = "val"
    ) -> Sequence[ClientEvaluation | ClientFailure]:
        """Score the given clients' next-round models on ``split``; results as :meth:`fit`'s."""
        ...

    def shutdown(self) -> None:
        """Release clients and anything the backend started."""
        ...


class SerialBackend:
    """All clients in this process, one after another (tests, debugging).

    A client that raises ends the run with its traceback (the point of debugging in one
    process); isolating failed and late clients is the Ray backend's work.

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

    def check(self, n_clients: int) -> None:
        """Any number of clients fits in this process."""

    def start(self, specs: Sequence[ClientSpec], setup: ClientSetup) -> None:
        """Build every client here."""
        self.clients = {s.client_id: Client(*setup.client_args(s)) for s in specs}

    def fit(self, client_ids: Sequence[str], state: ServerState, round_idx: int) -> list[ClientUpdate]:
        """Train clients one by one."""
        return [self.clients[c].fit(state, round_idx) for c in client_ids]

    def evaluate(self, client_ids: Sequence[str], state: ServerState, split: str = "val") -> list[ClientEvaluation]:
        """Evaluate clients one by one."""
        return [self.clients[c].evaluate(state, split) for c in client_ids]

    def shutdown(self) -> None:
        """Drop the clients."""
        self.clients = {}


class RayBackend:
    """One long-lived Ray actor per client; the server state is ``ray.put`` once per call.

    Args:
        address: Ray address to join; ``None`` joins ``RAY_ADDRESS`` when set, else starts an
            embedded local Ray with all of this machine's cores.
        num_cpus_per_client: CPUs each actor requests; ``None`` shares the cluster's CPUs evenly
            (at most 1 each) so every actor fits at once.
        num_gpus_per_client: GPUs (may be fractional) each actor requests.
        placement: ``pack`` (Ray's default: fill nodes) or ``spread`` (clients across nodes, as
            real participants would be).
        max_retries: Times a client whose actor died is retried on a new actor within one call.
        round_timeout_s: Seconds a round's training (and each evaluation) may take; clients still
            running then are dropped and reported, and their actors replaced. ``None``: no limit.

    A client whose actor dies, whose code raises, or that runs late becomes a
    :class:`~mfed.types.ClientFailure` in the results (see :mod:`mfed.federation.gather`); the
    others' results are unaffected.

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
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"federation.max_retries must be >= 0, got {max_retries}")
        if round_timeout_s is not None and not round_timeout_s > 0:
            raise ValueError(f"federation.round_timeout_s must be > 0 or null (no limit), got {round_timeout_s}")
        self.max_retries, self.round_timeout_s = int(max_retries), round_timeout_s
        if placement not in self.PLACEMENTS:
            raise ValueError(f"backend.placement must be one of {tuple(self.PLACEMENTS)}, got {placement!r}")
        self.placement = placement
        if num_cpus_per_client is not None and num_cpus_per_client <= 0:
            raise ValueError(f"backend.num_cpus_per_client must be > 0 or null (auto), got {num_cpus_per_client}")
        if num_gpus_per_client < 0:
            raise ValueError(f"backend.num_gpus_per_client must be >= 0, got {num_gpus_per_client}")
        self.address, self.num_cpus, self.num_gpus = address, num_cpus_per_client, num_gpus_per_client
        self.actors: dict[str, Any] = {}
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

    def check(self, n_clients: int) -> None:
        """Refuse CPU and GPU requests the cluster cannot hold at once (before Ray or W&B start)."""
        resources = self._known_cluster()
        if resources is None:
            return
        self._cpus_per_client(n_clients, resources.get("CPU", 0.0))
        gpus = resources.get("GPU", 0.0)
        if self.num_gpus * n_clients > gpus + 1e-9:
            raise ValueError(
                f"backend.num_gpus_per_client={self.num_gpus} x {n_clients} clients needs "
                f"{self.num_gpus * n_clients:g} GPUs but the cluster has {gpus:g}: lower it (fractions share a GPU) "
                "or set it to 0"
            )

    def _cpus_per_client(self, n_clients: int, total: float | None = None) -> float:
        import ray

        if total is None:
            total = float(ray.cluster_resources().get("CPU", 0.0))
        if self.num_cpus is None:
            # Floor to 1/100 so n * share never exceeds the total by rounding.
            share = min(1.0, math.floor(100 * total / n_clients) / 100)
            if share <= 0:
                raise ValueError(
                    f"{n_clients} clients, one actor each, cannot share {total:g} CPUs (at least 0.01 each): "
                    "lower federation.clients_per_task or use a larger cluster"
                )
            return share
        if self.num_cpus * n_clients > total + 1e-9:
            raise ValueError(
                f"backend.num_cpus_per_client={self.num_cpus} x {n_clients} clients needs "
                f"{self.num_cpus * n_clients:g} CPUs but the cluster has {total:g}: actors that do "
                "not fit wait forever; lower it or leave it null (auto)"
            )
        return self.num_cpus

    def start(self, specs: Sequence[ClientSpec], setup: ClientSetup) -> None:
        """Start one actor per client and wait until all are built."""
        import ray

        self._init_ray()
        cpus = self._cpus_per_client(len(specs))
        log.info("starting %d client actors (%.2f CPU, %g GPU each)", len(specs), cpus, self.num_gpus)
        remote_client = ray.remote(Client).options(
            num_cpus=cpus, num_gpus=self.num_gpus, scheduling_strategy=self.PLACEMENTS[self.placement]
        )
        # Each dataset enters the object store once; top-level ObjectRef args reach actors as values.
        refs = (ray.put(setup.dataset), ray.put(setup.test_dataset))
        by_id = {s.client_id: s for s in specs}
        self._make_actor = lambda c: remote_client.remote(*setup.client_args(by_id[c], refs))
        self.actors = {c: self._make_actor(c) for c in by_id}
        ray.get([a.__ray_ready__.remote() for a in self.actors.values()])

    def recreate(self, client_id: str) -> None:
        """Replace the client's actor by a new one and wait until it is built.

        The old one is killed if it still runs (a hung or stopped process). Waiting here keeps
        the new actor's start-up (seconds: imports, the shard) out of the next call's time limit.
        """
        import ray

        assert self._make_actor is not None, "start() first"
        ray.kill(self.actors[client_id], no_restart=True)
        self.actors[client_id] = self._make_actor(client_id)
        ray.get(self.actors[client_id].__ray_ready__.remote())

    def _call(self, client_ids: Sequence[str], submit: Callable[[str], Any], label: str) -> list[Any]:
        results, notes = gather(client_ids, submit, self.recreate, self.max_retries, self.round_timeout_s, label)
        return [results[c] for c in client_ids] + notes

    def fit(self, client_ids: Sequence[str], state: ServerState, round_idx: int) -> list[ClientUpdate | ClientFailure]:
        """Every actor reads the same ObjectRef of the state and trains concurrently."""
        import ray

        ref = ray.put(state)
        return self._call(client_ids, lambda c: self.actors[c].fit.remote(ref, round_idx), f"round {round_idx} fit")

    def evaluate(
        self, client_ids: Sequence[str], state: ServerState, split: str = "val"
    ) -> list[ClientEvaluation | ClientFailure]:
        """Concurrent evaluation from one ObjectRef of the state."""
        import ray

        ref = ray.put(state)
        return self._call(client_ids, lambda c: self.actors[c].evaluate.remote(ref, split), f"{split} evaluation")

    def shutdown(self) -> None:
        """Kill the actors, and Ray itself when this backend started it."""
        import ray

        for actor in self.actors.values():
            ray.kill(actor)
        self.actors, self._make_actor = {}, None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
