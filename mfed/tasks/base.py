"""What a task is: a decoder output size, a loss, metrics and which direction is better.

A task is one file in ``mfed/tasks/`` and one YAML in ``configs/task/``. The task object is small
and picklable: the driver builds it from config and hands it to every client of that task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

from torch import Tensor, nn
from torchmetrics import Metric

DecoderFactory = Callable[..., nn.Module]


class Task(ABC):
    """A dense prediction task.

    Subclasses set ``out_channels``, ``headline`` (the metric the field reports) and
    ``higher_is_better`` (one entry per metric name), and implement :meth:`loss`,
    :meth:`metrics` and :meth:`activate`.

    Args:
        name: The task's name; also the key of its target in a dataset sample.
        loss_weight: Multiplies the task loss (the field weights tasks, e.g. edges x50).
        decoder: This task's decoder factory (a Hydra partial taking ``in_channels`` and
            ``out_channels``), e.g. a lighter head for edges; ``None``: the model's ``decoder``.

    """

    out_channels: int
    headline: str
    higher_is_better: Mapping[str, bool]

    def __init__(self, name: str, loss_weight: float = 1.0, decoder: DecoderFactory | None = None) -> None:
        if not name or not name.replace("_", "").isalnum():
            raise ValueError(f"task name must be a non-empty identifier, got {name!r}")
        if loss_weight <= 0:
            raise ValueError(f"tasks.{name}.loss_weight must be > 0, got {loss_weight}")
        if decoder is not None and not callable(decoder):
            raise ValueError(f"tasks.{name}.decoder must be a decoder config with _partial_: true, got {decoder!r}")
        self.name = name
        self.loss_weight = float(loss_weight)
        self.decoder = decoder

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
        own = "" if self.decoder is None else f", decoder={_describe(self.decoder)}"
        return f"{type(self).__name__}(name={self.name!r}, loss_weight={self.loss_weight}{own})"


def _describe(factory: DecoderFactory) -> str:
    """A factory as its class and fixed arguments (a Hydra partial's), for a readable repr."""
    func = getattr(factory, "func", factory)
    kwargs = getattr(factory, "keywords", {}) or {}
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"{getattr(func, '__name__', type(func).__name__)}({args})"
