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
from torch.utils.data import DataLoader, Dataset, Subset

from mfed.aggregation.functional import select
from mfed.models.multitask import MultiTaskModel, decoder_prefix, part_prefixes
from mfed.tasks.base import Task
from mfed.types import (
    ClientEvaluation,
    ClientSpec,
    ClientUpdate,
    ServerState,
    State,
    client_scope,
    global_scope,
    state_nbytes,
    task_scope,
)  # fmt: skip

if TYPE_CHECKING:
    from mfed.systems.module import OptimizerFactory


@dataclass(frozen=True)
class ClientConfig:
    """How a client trains (the same for every client of a run).

    Attributes:
        local_epochs: Epochs over the shard per round.
        batch_size: Training and evaluation batch size.
        prox_mu: Strength of the decoder proximal term (set by the strategy).
        uploads: Parts sent back: a subset of ``("encoder", "decoder")`` (set by the strategy).
        keeps: Parts the client keeps between rounds, returned as the update's ``private`` state
            (set by the strategy).
        torch_threads: Intra-op threads; 1 when several clients share the cores.
        accelerator: Lightning accelerator: ``auto`` (a GPU when the client was given one),
            ``cpu`` or ``gpu``.

    """

    local_epochs: int = 1
    batch_size: int = 32
    prox_mu: float = 0.0
    uploads: tuple[str, ...] = ("encoder", "decoder")
    keeps: tuple[str, ...] = ()
    torch_threads: int = 1
    accelerator: str = "auto"

    def __post_init__(self) -> None:
        for name in ("local_epochs", "batch_size", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"federation.{name} must be >= 1, got {getattr(self, name)}")
        if self.prox_mu < 0:
            raise ValueError(f"aggregation.mu must be >= 0, got {self.prox_mu}")
        if self.accelerator not in ("auto", "cpu", "gpu"):
            raise ValueError(f"federation.accelerator must be auto, cpu or gpu, got {self.accelerator!r}")
        for name in ("uploads", "keeps"):
            bad = sorted(set(getattr(self, name)) - {"encoder", "decoder"})
            if bad:
                raise ValueError(f"a strategy's {name} may hold only 'encoder' and 'decoder', got {bad}")


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
        self.system = TaskSystem(model_factory([task]), task, optimizer, prox_mu=config.prox_mu)
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

    def load(self, server_state: ServerState) -> int:
        """Load the scopes of ``server_state`` that concern this client; return the shared bytes loaded.

        The client's own scope (its private state) is loaded last and is not communication.
        """
        payload: State = {}
        for scope in (global_scope(), task_scope(self.spec.task)):
            payload.update(server_state.get(scope, {}))
        shared = state_nbytes(payload)
        payload.update(server_state.get(client_scope(self.client_id), {}))
        own = self.system.model.state_dict()
        for key, value in payload.items():
            if key not in own:
                raise ValueError(f"client {self.client_id}: server sent {key!r}, which its model lacks")
            if value.shape != own[key].shape:
                raise ValueError(
                    f"client {self.client_id}: {key} is {tuple(value.shape)} on the server but "
                    f"{tuple(own[key].shape)} locally: encoder/decoder configs differ"
                )
        self.system.model.load_state_dict(payload, strict=False)
        prefix = decoder_prefix(self.spec.task)
        reference = {k[len(prefix) :]: v for k, v in payload.items() if k.startswith(prefix)}
        named = dict(self.system.decoder.named_parameters())
        self.system.set_decoder_reference({k: v for k, v in reference.items() if k in named})
        return shared

    def fit(self, server_state: ServerState, round_idx: int) -> ClientUpdate:
        """Load the global state, train ``local_epochs`` and return the trained tensors."""
        bytes_down = self.load(server_state)
        seed = round_seed(self.spec.seed, round_idx)
        torch.manual_seed(seed)
        loader = DataLoader(
            self.train_data,
            batch_size=self.config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        from mfed.federation.trainer import quiet_trainer

        quiet_trainer(self.config.local_epochs, self.config.accelerator).fit(self.system, loader)
        self.system.trainer = None  # drop the Trainer (optimizer, loaders) with the call
        return ClientUpdate(
            client_id=self.client_id,
            task=self.spec.task,
            num_examples=len(self.train_data),  # type: ignore[arg-type]
            state=self._parts(self.config.uploads),
            metrics=self.system.train_epoch_means(),
            bytes_down=bytes_down,
            private=self._parts(self.config.keeps),
        )

    def _parts(self, parts: tuple[str, ...]) -> State:
        """The model's ``parts`` (``encoder``, ``decoder``) as detached CPU tensors (what messages carry)."""
        chosen = select(self.system.model.state_dict(), part_prefixes(parts, self.spec.task))
        return {k: v.detach().cpu().clone() for k, v in chosen.items()}

    def evaluate(self, server_state: ServerState, split: str = "val") -> ClientEvaluation:
        """Score the model this client would train next round on ``split`` (``val`` or ``test``)."""
        data = self.val_data if split == "val" else self.test_data if split == "test" else None
        if data is None:
            raise ValueError(f"client {self.client_id} has no {split!r} data (splits: val, and test when configured)")
        self.load(server_state)
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
