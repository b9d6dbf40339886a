"""The LightningModule of the centralised reference: one encoder and every task's decoder, trained jointly."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from mfed.models.multitask import MultiTaskModel
from mfed.systems.module import OptimizerFactory
from mfed.tasks.base import Task


class TaskBatches:
    """Every task's batches once per epoch, interleaved in a random order: ``(task, batch)`` pairs.

    Each batch holds one task's examples (the tasks' targets differ in shape). The order of the
    tasks' turns is drawn anew each epoch from ``seed`` and the epoch's number.
    """

    def __init__(self, loaders: Mapping[str, DataLoader], seed: int) -> None:
        self.loaders, self.seed, self.epoch = dict(loaders), seed, 0

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders.values())

    def __iter__(self) -> Iterator[tuple[str, dict[str, Tensor]]]:
        turns = [task for task, loader in self.loaders.items() for _ in range(len(loader))]
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(turns))
        self.epoch += 1
        batches = {task: iter(loader) for task, loader in self.loaders.items()}
        for i in order:
            yield turns[i], next(batches[turns[i]])


class JointSystem(pl.LightningModule):
    """``sum_task loss_weight * L_task`` over a model with every task's decoder, one task's batch per step.

    Args:
        model: The multi-task model (every task's decoder).
        tasks: Task objects by name.
        optimizer: Factory taking the parameters (a Hydra partial of a torch optimizer).

    """

    def __init__(self, model: MultiTaskModel, tasks: Mapping[str, Task], optimizer: OptimizerFactory) -> None:
        super().__init__()
        missing = sorted(set(tasks) - set(model.tasks))
        if missing:
            raise ValueError(f"the model has no decoder for tasks {missing}")
        self.model, self.tasks, self.optimizer_factory = model, dict(tasks), optimizer
        self._sums: dict[str, dict[str, float]] = {}

    def training_step(self, batch: tuple[str, Mapping[str, Tensor]], batch_idx: int) -> Tensor:
        """One task's batch through the shared encoder and that task's decoder."""
        name, data = batch
        task = self.tasks[name]
        task_loss = task.loss(self.model(data["image"], name), data[task.target_key])
        loss = task.loss_weight * task_loss
        n = len(data["image"])
        sums = self._sums.setdefault(name, {"loss": 0.0, "task_loss": 0.0, "n": 0.0})
        sums["loss"] += float(loss.detach()) * n
        sums["task_loss"] += float(task_loss.detach()) * n
        sums["n"] += n
        return loss

    def on_train_epoch_start(self) -> None:
        """Report the last epoch's means only."""
        self._sums = {}

    def train_epoch_means(self) -> dict[str, dict[str, float]]:
        """Per task, the example-weighted means of the last epoch's ``loss`` (weighted) and ``task_loss``."""
        return {task: {k: v / sums["n"] for k, v in sums.items() if k != "n"} for task, sums in self._sums.items()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One optimizer over the encoder and every decoder."""
        return self.optimizer_factory(list(self.model.parameters()))
