"""The LightningModule every client trains: its tasks' view of a MultiTaskModel."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection

from mfed.models.multitask import MultiTaskModel
from mfed.systems.regularisers import proximal_term
from mfed.systems.weighting import Equal, Weighting
from mfed.tasks.base import Task

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class TaskSystem(pl.LightningModule):
    """Trains ``model``'s encoder and its tasks' decoders (or some of them) on the client's tasks.

    Each batch carries every task's target. The objective is
    ``weighting({t: loss_weight_t * L_t}) + sum_part mu_part/2 * ||part - reference||^2``: the
    tasks' weighted losses combined by the weighting method (:mod:`mfed.systems.weighting`; a
    single task's is its ``loss_weight * L``), plus the proximal terms set by
    :meth:`configure_step` (M-Fed: the decoders toward their tasks' global decoders; FedProx and
    Ditto: both parts toward the server's model). A gradient-based weighting (PCGrad) reshapes
    the encoder's gradient in :meth:`backward`. The weighting's hooks run around each fit: its
    ``on_fit_start``, its ``on_train_epoch_end`` with each task's mean ``loss_weight * L_t`` over
    the epoch, and its ``on_fit_end``.

    Args:
        model: A model with a decoder for each of ``tasks``.
        tasks: The client's tasks.
        optimizer: Factory taking the parameters (a Hydra partial of a torch optimizer).
        weighting: How the tasks' losses combine; ``None``: :class:`~mfed.systems.weighting.Equal`.

    """

    def __init__(
        self,
        model: MultiTaskModel,
        tasks: Sequence[Task],
        optimizer: OptimizerFactory,
        weighting: Weighting | None = None,
    ) -> None:
        super().__init__()
        names = [t.name for t in tasks]
        missing = [t for t in names if t not in model.tasks]
        if missing or not names:
            raise ValueError(f"model has no decoder for tasks {missing or names}; decoders: {list(model.tasks)}")
        self.model, self.tasks, self.optimizer_factory = model, {t.name: t for t in tasks}, optimizer
        self.weighting = weighting if weighting is not None else Equal(names)
        if list(self.weighting.tasks) != names:
            raise ValueError(f"the loss weighting is for tasks {list(self.weighting.tasks)}, the client holds {names}")
        self.val_metrics = nn.ModuleDict(
            {t.name: MetricCollection(dict(t.metrics()), compute_groups=False) for t in tasks}
        )  # fmt: skip
        self.trained: tuple[str, ...] = ("encoder", "decoder")
        self._prox: dict[str, tuple[float, dict[str, Tensor]]] = {}
        self._epoch_sums: dict[str, float] = {}
        self._terms: dict[str, Tensor] = {}

    def part(self, name: str) -> nn.Module:
        """The module of a part: ``encoder``, or ``decoder`` (every decoder the client holds, by task)."""
        return self.model.encoder if name == "encoder" else self.model.decoders

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

    def forward(self, image: Tensor) -> dict[str, Tensor]:  # (B, C, H, W) -> {task: (B, C_task, H, W)}
        """Raw predictions of every task, the encoder run once."""
        return self.model.predict(image, self.tasks)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """The weighted tasks' losses plus the proximal terms."""
        outputs = self(batch["image"])
        task_losses = {name: task.loss(outputs[name], batch[task.target_key]) for name, task in self.tasks.items()}
        self._terms = {name: self.tasks[name].loss_weight * value for name, value in task_losses.items()}
        loss = self.weighting.combine(self._terms)
        reg = torch.zeros(())
        for part, (mu, reference) in self._prox.items():
            if mu > 0 and reference:
                reg = reg + proximal_term(self.part(part).named_parameters(), reference, mu)
        loss = loss + reg
        n = len(batch["image"])
        sums = self._epoch_sums
        entries = [("loss", loss), ("reg", reg), *((f"{t}/task_loss", v) for t, v in task_losses.items())]
        for key, value in entries:
            sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
        for task, weight in self.weighting.weights().items():
            sums[f"{task}/weight"] = sums.get(f"{task}/weight", 0.0) + weight * n
        sums["n"] = sums.get("n", 0.0) + n
        return loss

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Backpropagate through the weighting, which may reshape the shared encoder's gradient (PCGrad)."""
        shared = [p for p in self.model.encoder.parameters() if p.requires_grad]
        self.weighting.backward(loss, self._terms, shared)

    def on_fit_start(self) -> None:
        """Tell the weighting a local fit starts."""
        self.weighting.on_fit_start()

    def on_fit_end(self) -> None:
        """Tell the weighting the local fit ended."""
        self.weighting.on_fit_end()

    def on_train_epoch_end(self) -> None:
        """Give the weighting each task's mean ``loss_weight * L_t`` over the epoch (none for an empty epoch)."""
        means = self.train_epoch_means()
        if means:
            self.weighting.on_train_epoch_end(
                {name: task.loss_weight * means[f"{name}/task_loss"] for name, task in self.tasks.items()}
            )

    def on_train_epoch_start(self) -> None:
        """Report the last epoch's means only; frozen parts stay in eval mode."""
        self._epoch_sums = {}
        for name in ("encoder", "decoder"):
            if name not in self.trained:
                self.part(name).eval()

    def train_epoch_means(self) -> dict[str, float]:
        """Example-weighted means of the last epoch: ``loss``, ``reg``, ``<task>/task_loss``, ``<task>/weight``."""
        n = self._epoch_sums.get("n", 0.0)
        return {k: v / n for k, v in self._epoch_sums.items() if k != "n"} if n else {}

    def on_validation_epoch_start(self) -> None:
        """Start from empty metric states."""
        for metrics in self._collections().values():
            metrics.reset()

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        """Accumulate every task's metric states (read by the client, merged by the driver)."""
        outputs = self(batch["image"])
        collections = self._collections()
        for name, task in self.tasks.items():
            collections[name].update(task.activate(outputs[name]), batch[task.target_key])

    def computed_metrics(self) -> dict[str, dict[str, float]]:
        """``{task: {metric: value}}`` of the last validation run."""
        return {t: {n: float(m.compute()) for n, m in metrics.items()} for t, metrics in self._collections().items()}

    def metric_states(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{task: {metric: state}}`` of the last validation run, detached on CPU."""
        states: dict[str, dict[str, dict[str, Any]]] = {}
        for task, metrics in self._collections().items():
            for name, metric in metrics.items():
                assert isinstance(metric, Metric)
                states.setdefault(task, {})[name] = {k: _to_cpu(v) for k, v in metric.metric_state.items()}
        return states

    def _collections(self) -> dict[str, MetricCollection]:
        """Each task's metrics (the ModuleDict typed for what it holds)."""
        return {t: cast(MetricCollection, m) for t, m in self.val_metrics.items()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """A fresh optimizer over the trained parts and the weighting's own parameters (rebuilt every step)."""
        params = [p for name in self.trained for p in self.part(name).parameters()]
        return self.optimizer_factory(params + list(self.weighting.parameters()))


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value
