"""Training the centralised reference where the driver runs: every client's training shard pooled per task.

Used by the driver for a strategy with ``pooled = True`` (:class:`mfed.aggregation.centralised.Centralised`).
Each task's pool is the training shards of every client holding the task (with that task's
target), so the pooled model sees exactly the federation's data, in one place; a client holding
several tasks adds its images to each of its tasks' pools. By default (``budget="client"``) a round
takes as many optimizer steps as the federation's mean client takes in its round, so the gap to a
federation measures where the data is, not how much optimisation each model got; with
``budget="pooled"`` a round is ``local_epochs`` epochs over every pooled batch (about as many steps
as all clients together). Lightning is imported here, on first use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from mfed.aggregation.functional import encoder_and_decoders
from mfed.federation.client import round_seed, shard
from mfed.federation.setup import ClientSetup
from mfed.federation.summary import TrainTally
from mfed.types import ClientSpec, ServerState


class PooledTraining:
    """One model with every task's decoder, trained on the union of the clients' training shards.

    Args:
        specs: The federation's clients (their tasks and training indices).
        setup: Tasks, dataset, model factory, optimizer and training settings of the run.
        seed: The run's seed (the data order of every round derives from it).

    """

    def __init__(self, specs: Sequence[ClientSpec], setup: ClientSetup, seed: int, budget: str = "client") -> None:
        from mfed.systems.joint import JointSystem

        self.setup, self.seed = setup, seed
        config = setup.config
        per_client = [math.ceil(len(s.train_indices) / config.batch_size) * config.local_epochs for s in specs]
        # "client": the optimizer steps of the federation's mean client per round; "pooled": every pooled batch
        self.max_steps = max(1, round(sum(per_client) / len(per_client))) if budget == "client" else -1
        tasks = {t: setup.tasks[t] for t in dict.fromkeys(t for s in specs for t in s.tasks)}
        self.data: dict[str, Dataset] = {
            name: ConcatDataset(
                [shard(setup.dataset, s.train_indices, [task.target_key]) for s in specs if name in s.tasks]
            )
            for name, task in tasks.items()
        }
        self.system = JointSystem(setup.model_factory(list(tasks.values())), tasks, setup.optimizer)

    def fit(self, state: ServerState, round_idx: int) -> tuple[ServerState, dict[str, float]]:
        """One round: ``local_epochs`` epochs from ``state``; the next state and the round's training entries."""
        from mfed.federation.trainer import quiet_trainer
        from mfed.systems.joint import TaskBatches

        config = self.setup.config
        torch.set_num_threads(config.torch_threads)  # the run's CPU share, and bit-for-bit results by seed
        model = self.system.model
        model.load_state_dict({k: v for scope in state.values() for k, v in scope.items()})
        seed = round_seed(self.seed, round_idx)
        torch.manual_seed(seed)
        loaders = {
            name: DataLoader(
                data, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed + i)
            )
            for i, (name, data) in enumerate(self.data.items())
        }
        batches = TaskBatches(loaders, seed)
        epochs = config.local_epochs if self.max_steps < 0 else math.ceil(self.max_steps / len(batches))
        quiet_trainer(epochs, config.accelerator, self.max_steps).fit(self.system, batches)
        self.system.trainer = None
        full = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        means = self.system.train_epoch_means()
        row = TrainTally().row()  # no client trained: zero clients and bytes
        row.update({f"train/{task}/{key}": value for task, losses in means.items() for key, value in losses.items()})
        return encoder_and_decoders(full, model.tasks), row
