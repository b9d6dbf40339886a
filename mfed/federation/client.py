"""The client: a plain class holding a LightningModule and its data shard.

Ray never appears here: :mod:`mfed.federation.backends` wraps this class in an actor, and the
serial backend uses it as is, so both run the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from mfed.aggregation.functional import select
from mfed.models.multitask import MultiTaskModel, part_prefixes
from mfed.tasks.base import Task
from mfed.types import (
    PARTS,
    ClientEvaluation,
    ClientSpec,
    ClientUpdate,
    LocalStep,
    ServerState,
    State,
    scopes_of,
    state_nbytes,
)  # fmt: skip

if TYPE_CHECKING:
    from mfed.systems.module import OptimizerFactory


@dataclass(frozen=True)
class ClientConfig:
    """How a client trains (the same for every client of a run).

    Attributes:
        local_epochs: Epochs over the shard per round (a step may set its own).
        batch_size: Training and evaluation batch size.
        steps: What the client does each round, from the strategy (:attr:`Strategy.steps`).
        torch_threads: Intra-op threads; 1 when several clients share the cores.
        accelerator: Lightning accelerator: ``auto`` (a GPU when the client was given one),
            ``cpu`` or ``gpu``.

    """

    local_epochs: int = 1
    batch_size: int = 32
    steps: tuple[LocalStep, ...] = (LocalStep(sends=PARTS),)
    torch_threads: int = 1
    accelerator: str = "auto"

    def __post_init__(self) -> None:
        for name in ("local_epochs", "batch_size", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"federation.{name} must be >= 1, got {getattr(self, name)}")
        if self.accelerator not in ("auto", "cpu", "gpu"):
            raise ValueError(f"federation.accelerator must be auto, cpu or gpu, got {self.accelerator!r}")
        if not self.steps:
            raise ValueError("a strategy must give its clients at least one local step")


def shard(dataset: Dataset, indices: tuple[int, ...], key: str) -> Dataset:
    """The client's examples: generated once where the dataset can, else a lazy subset."""
    materialize = getattr(dataset, "materialize", None)
    if callable(materialize):
        return materialize(indices, [key])
    return Subset(dataset, list(indices))


def round_seed(seed: int, round_idx: int) -> int:
    """The seed of one client's work in one round."""
    return int(np.random.SeedSequence([seed, round_idx]).generate_state(1)[0])


class Client:
    """One participant: its task, its model (encoder + its task's decoder) and its data.

    Args:
        spec: Id, task, example indices and seed.
        task: The task object (loss, metrics).
        dataset: The training pool the indices refer to.
        model_factory: Builds the initial model for a list of tasks (identical in every process).
        optimizer: Optimizer factory (a Hydra partial).
        config: Training settings.
        test_dataset: The global test set (every client of a task scores all of it), if any.

    """

    def __init__(
        self,
        spec: ClientSpec,
        task: Task,
        dataset: Dataset,
        model_factory: Callable[[list[Task]], MultiTaskModel],
        optimizer: OptimizerFactory,
        config: ClientConfig,
        test_dataset: Dataset | None = None,
    ) -> None:
        if spec.task != task.name:
            raise ValueError(f"client {spec.client_id} has task {spec.task!r} but got task object {task.name!r}")
        # Lightning (about 3 s to import here) loads where a client is built, not in the driver.
        from mfed.systems.module import TaskSystem

        torch.set_num_threads(config.torch_threads)
        self.spec, self.config = spec, config
        self.system = TaskSystem(model_factory([task]), task, optimizer)
        self._initial = {k: v.clone() for k, v in self.system.model.state_dict().items()}
        self.train_data = shard(dataset, spec.train_indices, task.target_key)
        self.val_data = shard(dataset, spec.val_indices, task.target_key)
        self._test_source = test_dataset
        self._test_data: Dataset | None = None

    @property
    def test_data(self) -> Dataset | None:
        """The global test set, built on first use (only the clients that score it build it)."""
        if self._test_data is None and self._test_source is not None:
            n = len(self._test_source)  # type: ignore[arg-type]
            self._test_data = shard(self._test_source, tuple(range(n)), self.system.task.target_key)
        return self._test_data

    @property
    def client_id(self) -> str:
        """The client's id."""
        return self.spec.client_id

    def _start(self, shared: State, own: State, start: str) -> None:
        """Load the model a step starts from: the initial model, under the client's own state and the shared one.

        ``start="shared"``: the shared copy wins where both hold a part; ``"own"``: the kept one.
        """
        lower, upper = (own, shared) if start == "shared" else (shared, own)
        initial = self._initial
        payload = {**initial, **lower, **upper}
        for key, value in payload.items():
            if key not in initial:
                raise ValueError(f"client {self.client_id}: server sent {key!r}, which its model lacks")
            if value.shape != initial[key].shape:
                raise ValueError(
                    f"client {self.client_id}: {key} is {tuple(value.shape)} on the server but "
                    f"{tuple(initial[key].shape)} locally: encoder/decoder configs differ"
                )
        self.system.model.load_state_dict(payload)

    def _scopes(self, server_state: ServerState) -> tuple[State, State]:
        """The shared state this client loads (global, then its task's) and its own kept state."""
        *shared_scopes, own_scope = scopes_of(self.client_id, self.spec.task)
        shared: State = {}
        for scope in shared_scopes:
            shared.update(server_state.get(scope, {}))
        return shared, dict(server_state.get(own_scope, {}))

    def fit(self, server_state: ServerState, round_idx: int) -> ClientUpdate:
        """Run the strategy's local steps from the server's state; return what they send and keep."""
        from mfed.federation.trainer import quiet_trainer

        shared, own = self._scopes(server_state)
        seed = round_seed(self.spec.seed, round_idx)
        sent: State = {}
        kept: State = {}
        metrics: dict[str, float] = {}
        for i, step in enumerate(self.config.steps):
            self._start(shared, own, step.start)
            prox = {part: (mu, self._part_of(shared, part)) for part, mu in step.prox}
            self.system.configure_step(step.train, prox)
            step_seed = seed if i == 0 else round_seed(seed, i)
            torch.manual_seed(step_seed)
            loader = DataLoader(
                self.train_data,
                batch_size=self.config.batch_size,
                shuffle=True,
                generator=torch.Generator().manual_seed(step_seed),
            )
            quiet_trainer(step.epochs or self.config.local_epochs, self.config.accelerator).fit(self.system, loader)
            self.system.trainer = None  # drop the Trainer (optimizer, loaders) with the call
            means = self.system.train_epoch_means()
            metrics.update({f"{step.name}_{k}" if step.name else k: v for k, v in means.items()})
            sent.update(self._parts(step.sends))
            kept.update(self._parts(step.keeps))
        return ClientUpdate(
            client_id=self.client_id,
            task=self.spec.task,
            num_examples=len(self.train_data),  # type: ignore[arg-type]
            state=sent,
            metrics=metrics,
            bytes_down=state_nbytes(shared),
            private=kept,
        )

    def _part_of(self, state: State, part: str) -> dict[str, Tensor]:
        """``part``'s parameters in ``state``, by the part module's own names (a proximal term's reference)."""
        prefix = part_prefixes((part,), self.spec.task)[0]
        named = dict(self.system.part(part).named_parameters())
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix) :] in named}

    def _parts(self, parts: tuple[str, ...]) -> State:
        """The model's ``parts`` (``encoder``, ``decoder``) as detached CPU tensors (what messages carry)."""
        chosen = select(self.system.model.state_dict(), part_prefixes(parts, self.spec.task))
        return {k: v.detach().cpu().clone() for k, v in chosen.items()}

    def evaluate(self, server_state: ServerState, split: str = "val") -> ClientEvaluation:
        """Score the model this client would train next round on ``split`` (``val`` or ``test``)."""
        data = self.val_data if split == "val" else self.test_data if split == "test" else None
        if data is None:
            raise ValueError(f"client {self.client_id} has no {split!r} data (splits: val, and test when configured)")
        shared, own = self._scopes(server_state)
        self._start(shared, own, "own")  # the model it would use: its own part where it keeps one
        loader = DataLoader(data, batch_size=self.config.batch_size)
        from mfed.federation.trainer import evaluation_trainer

        evaluation_trainer(self.config.accelerator).validate(self.system, loader, verbose=False)
        self.system.trainer = None
        metrics = {name: float(m.compute()) for name, m in self.system.val_metrics.items()}
        return ClientEvaluation(
            client_id=self.client_id,
            task=self.spec.task,
            num_examples=len(data),  # type: ignore[arg-type]
            metrics=metrics,
            metric_states=self.system.metric_states(),
        )
