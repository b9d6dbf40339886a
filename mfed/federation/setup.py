"""What every client is built from: tasks, data, model and optimizer factories, training settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch.utils.data import Dataset

from mfed.federation.client import ClientConfig
from mfed.models.multitask import MultiTaskModel
from mfed.tasks.base import Task
from mfed.types import ClientSpec

if TYPE_CHECKING:
    from mfed.systems.module import OptimizerFactory
    from mfed.systems.weighting import WeightingFactory


@dataclass(frozen=True)
class ClientSetup:
    """Everything clients share, picklable: built by the driver, sent once to each client."""

    tasks: dict[str, Task]
    dataset: Dataset
    model_factory: Callable[[list[Task]], MultiTaskModel]
    optimizer: OptimizerFactory
    config: ClientConfig
    test_dataset: Dataset | None = None
    weighting: WeightingFactory | None = None

    def tasks_of(self, spec: ClientSpec) -> list[Task]:
        """The task objects of the client ``spec``, in its order."""
        return [self.tasks[t] for t in spec.tasks]

    def client_args(self, spec: ClientSpec, datasets: tuple[Any, Any] | None = None) -> tuple[Any, ...]:
        """Constructor arguments of the client ``spec``.

        ``datasets`` replaces ``(dataset, test_dataset)``, e.g. by Ray ObjectRefs.
        """
        pool, test = datasets if datasets is not None else (self.dataset, self.test_dataset)
        return (spec, self.tasks_of(spec), pool, self.model_factory, self.optimizer, self.config, test, self.weighting)

    def without_data(self) -> ClientSetup:
        """The same setup without the datasets (they travel once, through the object store)."""
        return dataclasses.replace(self, dataset=None, test_dataset=None)  # type: ignore[arg-type]
