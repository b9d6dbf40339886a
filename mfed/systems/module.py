"""The LightningModule every client trains: one task's view of a MultiTaskModel."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    """Trains ``model``'s encoder and ``task``'s decoder (or one of them) on that task's loss.

    The loss is ``loss_weight * L_task + sum_part mu_part/2 * ||part - reference||^2`` over the
    proximal terms set by :meth:`configure_step` (M-Fed: the decoder toward its task's global
    decoder; FedProx and Ditto: both parts toward the server's model).

    Args:
        model: A model with a decoder for ``task``.
        task: The task to train.
        optimizer: Factory taking the parameters (a Hydra partial of a torch optimizer).

    """

    def __init__(self, model: MultiTaskModel, task: Task, optimizer: OptimizerFactory):
        super().__init__()
        if task.name not in model.tasks:
            raise ValueError(f"model has no decoder for task {task.name!r}; decoders: {list(model.tasks)}")
        self.model, self.task, self.optimizer_factory = model, task, optimizer
        metrics: dict[str, Metric | MetricCollection] = dict(task.metrics())
        self.val_metrics = MetricCollection(metrics, compute_groups=False)
        self.trained: tuple[str, ...] = ("encoder", "decoder")
        self._prox: dict[str, tuple[float, dict[str, Tensor]]] = {}
        self._epoch_sums: dict[str, float] = {}

    @property
    def decoder(self) -> torch.nn.Module:
        """The decoder of this system's task."""
        return self.model.decoders[self.task.name]

    def part(self, name: str) -> torch.nn.Module:
        """The module of a part: ``encoder`` or ``decoder``."""
        return self.model.encoder if name == "encoder" else self.decoder

    def configure_step(self, train: Sequence[str], prox: Mapping[str, tuple[float, Mapping[str, Tensor]]]) -> None:
        """Set what the next fit trains and which proximal terms it adds.

        Args:
            train: Parts trained; the others are frozen (no gradient, kept in eval mode, so a
                frozen encoder's BatchNorm statistics do not move either).
            prox: ``{part: (mu, reference)}``, the reference by the part's own parameter names.

        """
        self.trained = tuple(train)
        for name in ("encoder", "decoder"):
            self.part(name).requires_grad_(name in self.trained).train(name in self.trained)
        self._prox = {part: (mu, {k: v.detach().clone() for k, v in ref.items()}) for part, (mu, ref) in prox.items()}

    def forward(self, image: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C_task, H, W)
        """Raw prediction of this task."""
        return self.model(image, self.task.name)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """Weighted task loss plus the decoder proximal term."""
        output = self(batch["image"])
        task_loss = self.task.loss(output, batch[self.task.target_key])
        loss = self.task.loss_weight * task_loss
        reg = torch.zeros(())
        for part, (mu, reference) in self._prox.items():
            if mu > 0 and reference:
                reg = reg + proximal_term(self.part(part).named_parameters(), reference, mu)
        loss = loss + reg
        n = len(batch["image"])
        for key, value in (("loss", loss), ("task_loss", task_loss), ("reg", reg)):
            self._epoch_sums[key] = self._epoch_sums.get(key, 0.0) + float(value.detach()) * n
        self._epoch_sums["n"] = self._epoch_sums.get("n", 0.0) + n
        return loss

    def on_train_epoch_start(self) -> None:
        """Report the last epoch's means only; frozen parts stay in eval mode."""
        self._epoch_sums = {}
        for name in ("encoder", "decoder"):
            if name not in self.trained:
                self.part(name).eval()

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
        """A fresh optimizer over the trained parts (rebuilt every step of every round)."""
        return self.optimizer_factory([p for name in self.trained for p in self.part(name).parameters()])


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value
