"""The LightningModule every client trains: one task's view of a MultiTaskModel."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from mfed.models.multitask import MultiTaskModel
from mfed.systems.regularisers import proximal_term
from mfed.tasks.base import Task

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class TaskSystem(pl.LightningModule):
    """Trains ``model``'s encoder and ``task``'s decoder on that task's loss.

    The loss is ``loss_weight * L_task + mu/2 * ||decoder - global decoder||^2`` where the second
    term is active once :meth:`set_decoder_reference` has been given a global decoder and
    ``prox_mu > 0``.

    Args:
        model: A model with a decoder for ``task``.
        task: The task to train.
        optimizer: Factory taking the parameters (a Hydra partial of a torch optimizer).
        prox_mu: Strength of the decoder proximal term.

    """

    def __init__(self, model: MultiTaskModel, task: Task, optimizer: OptimizerFactory, prox_mu: float = 0.0):
        super().__init__()
        if task.name not in model.tasks:
            raise ValueError(f"model has no decoder for task {task.name!r}; decoders: {list(model.tasks)}")
        if prox_mu < 0:
            raise ValueError(f"aggregation.mu must be >= 0, got {prox_mu}")
        self.model, self.task, self.optimizer_factory, self.prox_mu = model, task, optimizer, prox_mu
        metrics: dict[str, Metric | MetricCollection] = dict(task.metrics())
        self.val_metrics = MetricCollection(metrics, compute_groups=False)
        self._reference: dict[str, Tensor] = {}
        self._epoch_sums: dict[str, float] = {}

    @property
    def decoder(self) -> torch.nn.Module:
        """The decoder of this system's task."""
        return self.model.decoders[self.task.name]

    def set_decoder_reference(self, state: Mapping[str, Tensor]) -> None:
        """Remember the global decoder (by decoder-local parameter names) for the proximal term."""
        self._reference = {k: v.detach().clone() for k, v in state.items()}

    def forward(self, image: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C_task, H, W)
        """Raw prediction of this task."""
        return self.model(image, self.task.name)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """Weighted task loss plus the decoder proximal term."""
        output = self(batch["image"])
        task_loss = self.task.loss(output, batch[self.task.target_key])
        loss = self.task.loss_weight * task_loss
        reg = torch.zeros(())
        if self.prox_mu > 0 and self._reference:
            reg = proximal_term(self.decoder.named_parameters(), self._reference, self.prox_mu)
            loss = loss + reg
        n = len(batch["image"])
        for key, value in (("loss", loss), ("task_loss", task_loss), ("reg", reg)):
            self._epoch_sums[key] = self._epoch_sums.get(key, 0.0) + float(value.detach()) * n
        self._epoch_sums["n"] = self._epoch_sums.get("n", 0.0) + n
        return loss

    def on_train_epoch_start(self) -> None:
        """Report the last epoch's means only."""
        self._epoch_sums = {}

    def train_epoch_means(self) -> dict[str, float]:
        """Example-weighted means of the last training epoch's loss terms."""
        n = self._epoch_sums.get("n", 0.0)
        return {k: v / n for k, v in self._epoch_sums.items() if k != "n"} if n else {}

    def on_validation_epoch_start(self) -> None:
        """Start from empty metric states."""
        self.val_metrics.reset()

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        """Accumulate metric states (read by the client, merged by the driver)."""
        output = self.task.activate(self(batch["image"]))
        self.val_metrics.update(output, batch[self.task.target_key])

    def metric_states(self) -> dict[str, dict[str, Any]]:
        """``{metric: state}`` of the last validation run, detached on CPU."""
        states: dict[str, dict[str, Any]] = {}
        for name, metric in self.val_metrics.items():
            assert isinstance(metric, Metric)
            states[name] = {k: _to_cpu(v) for k, v in metric.metric_state.items()}
        return states

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """A fresh optimizer over encoder and this task's decoder (rebuilt every round)."""
        params = list(self.model.encoder.parameters()) + list(self.decoder.parameters())
        return self.optimizer_factory(params)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value
