"""What a task is: a decoder output size, a loss, metrics and which direction is better.

A task is one file in ``mfed/tasks/`` and one YAML in ``configs/task/``. The task object is small
and picklable: the driver builds it from config and hands it to every client of that task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from torch import Tensor
from torchmetrics import Metric


class Task(ABC):
    """A dense prediction task.

    Subclasses set ``out_channels``, ``headline`` (the metric the field reports) and
    ``higher_is_better`` (one entry per metric name), and implement :meth:`loss`,
    :meth:`metrics` and :meth:`activate`.

    Args:
        name: The task's name; also the key of its target in a dataset sample.
        loss_weight: Multiplies the task loss (the field weights tasks, e.g. edges x50).

    """

    out_channels: int
    headline: str
    higher_is_better: Mapping[str, bool]

    def __init__(self, name: str, loss_weight: float = 1.0) -> None:
        if not name or not name.replace("_", "").isalnum():
            raise ValueError(f"task name must be a non-empty identifier, got {name!r}")
        if loss_weight <= 0:
            raise ValueError(f"tasks.{name}.loss_weight must be > 0, got {loss_weight}")
        self.name = name
        self.loss_weight = float(loss_weight)

    @property
    def target_key(self) -> str:
        """Key of this task's target in a dataset sample."""
        return self.name

    @abstractmethod
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Return the unweighted scalar loss of raw decoder ``output`` against ``target``."""

    @abstractmethod
    def metrics(self) -> dict[str, Metric]:
        """Return fresh metric objects by name (states merge exactly across clients)."""

    def activate(self, output: Tensor) -> Tensor:
        """Map raw decoder output to what the metrics expect (identity by default)."""
        return output

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, loss_weight={self.loss_weight})"
