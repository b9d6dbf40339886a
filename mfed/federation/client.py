"""The client: a plain class holding a LightningModule and its data shard.

Ray never appears here: :mod:`mfed.federation.backends` wraps this class in an actor, and the
serial backend uses it as is, so both run the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from mfed.aggregation.functional import merge_scopes, select
from mfed.aggregation.robust import clip_with_norm
from mfed.models.multitask import DECODERS_PREFIX, ENCODER_PREFIX, MultiTaskModel, part_prefixes
from mfed.systems.weighting import WEIGHTING_PREFIX, load_weighting_state, weighting_state
from mfed.tasks.base import Task
from mfed.types import (
    PARTS,
    ClientEvaluation,
    ClientSpec,
    ClientUpdate,
    LocalStep,
    ServerState,
    State,
    client_scope,
    shared_scopes_of,
)  # fmt: skip

if TYPE_CHECKING:
    from mfed.systems.module import OptimizerFactory
    from mfed.systems.weighting import WeightingFactory


@dataclass(frozen=True)
class ClientConfig:
    """How a client trains (the same for every client of a run).

    What it does in a round (its local steps) comes with each call, from the strategy
    (:meth:`~mfed.aggregation.base.Strategy.configure_round`).

    Attributes:
        local_epochs: Epochs over the shard per round (a step may set its own).
        batch_size: Training and evaluation batch size.
        torch_threads: Intra-op threads; 1 when several clients share the cores.
        accelerator: Lightning accelerator: ``auto`` (a GPU when the client was given one),
            ``cpu`` or ``gpu``.

    """

    local_epochs: int = 1
    batch_size: int = 32
    torch_threads: int = 1
    accelerator: str = "auto"

    def __post_init__(self) -> None:
        for name in ("local_epochs", "batch_size", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"federation.{name} must be >= 1, got {getattr(self, name)}")
        if self.accelerator not in ("auto", "cpu", "gpu"):
            raise ValueError(f"federation.accelerator must be auto, cpu or gpu, got {self.accelerator!r}")


DEFAULT_STEPS = (LocalStep(sends=PARTS),)
"""Train the whole model from the server's and send it (FedAvg's local work)."""


def shard(dataset: Dataset, indices: tuple[int, ...], keys: Sequence[str]) -> Dataset:
    """The client's examples with the targets ``keys``: generated once where the dataset can, else a lazy subset."""
    materialize = getattr(dataset, "materialize", None)
    if callable(materialize):
        return materialize(indices, list(keys))
    return Subset(dataset, list(indices))


def round_seed(seed: int, round_idx: int) -> int:
    """The seed of one client's work in one round."""
    return int(np.random.SeedSequence([seed, round_idx]).generate_state(1)[0])


class Client:
    """One participant: its tasks, its model (encoder + one decoder per task) and its data.

    Args:
        spec: Id, tasks, example indices and seed.
        tasks: The task objects of ``spec.tasks``, in that order (losses, metrics).
        dataset: The training pool the indices refer to.
        model_factory: Builds the initial model for a list of tasks (identical in every process).
        optimizer: Optimizer factory (a Hydra partial).
        config: Training settings.
        test_dataset: The global test set (every client scores all of it), if any.
        weighting: Builds the loss weighting for the client's task names; ``None``: equal weights.

    """

    def __init__(
        self,
        spec: ClientSpec,
        tasks: Sequence[Task],
        dataset: Dataset,
        model_factory: Callable[[list[Task]], MultiTaskModel],
        optimizer: OptimizerFactory,
        config: ClientConfig,
        test_dataset: Dataset | None = None,
        weighting: WeightingFactory | None = None,
    ) -> None:
        if [t.name for t in tasks] != list(spec.tasks):
            raise ValueError(
                f"client {spec.client_id} holds tasks {list(spec.tasks)} but got task objects {[t.name for t in tasks]}"
            )
        # Lightning (about 3 s to import here) loads where a client is built, not in the driver.
        from mfed.systems.module import TaskSystem

        torch.set_num_threads(config.torch_threads)
        self.spec, self.config = spec, config
        self.keys = [t.target_key for t in tasks]
        weights = weighting(list(spec.tasks)) if weighting is not None else None
        self.system = TaskSystem(model_factory(list(tasks)), tasks, optimizer, weights)
        self._initial = {k: v.clone() for k, v in self.system.model.state_dict().items()}
        self._initial_weighting = weighting_state(self.system.weighting)
        self.train_data = shard(dataset, spec.train_indices, self.keys)
        self.val_data = shard(dataset, spec.val_indices, self.keys)
        self.local_test_data = shard(dataset, spec.local_test_indices, self.keys) if spec.local_test_indices else None
        self._test_source = test_dataset
        self._test_data: Dataset | None = None

    @property
    def test_data(self) -> Dataset | None:
        """The global test set (its domain's part), built on first use (only the clients that score it build it)."""
        if self._test_data is None and self._test_source is not None:
            start, stop = self.spec.test_span or (0, len(self._test_source))  # type: ignore[arg-type]
            self._test_data = shard(self._test_source, tuple(range(start, stop)), self.keys)
        return self._test_data

    @property
    def client_id(self) -> str:
        """The client's id."""
        return self.spec.client_id

    def _start(self, shared: State, own: State, start: str) -> None:
        """Load the model a step starts from: the initial model, under the client's own state and the shared one.

        ``start="shared"``: the shared copy wins where both hold a part; ``"own"``: the kept one.
        The loss weighting's parameters (``weighting.*``) come from the client's own state only.
        """
        own_model = {k: v for k, v in own.items() if not k.startswith(WEIGHTING_PREFIX)}
        lower, upper = (own_model, shared) if start == "shared" else (shared, own_model)
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
        load_weighting_state(self.system.weighting, {**self._initial_weighting, **own})

    def _scopes(self, server_state: ServerState) -> tuple[State, State]:
        """The shared state this client loads (global, its tasks', its personal one) and its own kept state."""
        shared = merge_scopes(server_state, shared_scopes_of(self.client_id, self.spec.tasks))
        return shared, dict(server_state.get(client_scope(self.client_id), {}))

    def fit(
        self, server_state: ServerState, round_idx: int, steps: Sequence[LocalStep] = DEFAULT_STEPS
    ) -> ClientUpdate:
        """Run the local ``steps`` the strategy asked for from the server's state; return what they send and keep."""
        from mfed.federation.trainer import quiet_trainer

        if not steps:
            raise ValueError(f"client {self.client_id}: a strategy must give its clients at least one local step")
        shared, own = self._scopes(server_state)
        seed = round_seed(self.spec.seed, round_idx)
        sent: State = {}
        kept: State = {}
        metrics: dict[str, float] = {}
        within: bool | None = None
        for i, step in enumerate(steps):
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
            metrics.update(_named(self.system.train_epoch_means(), step.name))
            step_sent, step_within = self._clipped(self._parts(step.sends), shared, step.clip)
            sent.update(step_sent)
            within = within if step_within is None else step_within and within is not False
            kept.update(self._parts(step.keeps))
            own = {**own, **weighting_state(self.system.weighting)}  # the next step goes on with the learnt weights
        kept.update(weighting_state(self.system.weighting))
        return ClientUpdate(
            client_id=self.client_id,
            tasks=self.spec.tasks,
            num_examples=len(self.train_data),  # type: ignore[arg-type]
            state=sent,
            metrics=metrics,
            private=kept,
            within_bound=within,
        )

    def _clipped(
        self, sent: State, shared: State, clip: tuple[tuple[str, ...], float] | None
    ) -> tuple[State, bool | None]:
        """``sent`` with its update of the clipped parts bounded as one vector, and whether it was within the bound.

        ``None`` for a step that clips nothing (no clip asked, or none of those parts sent).
        """
        if clip is None:
            return sent, None
        parts, bound = clip
        chosen = {k: v for k, v in select(sent, part_prefixes(parts, self.spec.tasks)).items() if k in shared}
        if not chosen:
            return sent, None
        clipped, norm = clip_with_norm(chosen, shared, bound)
        return {**sent, **clipped}, norm <= bound

    def _part_of(self, state: State, part: str) -> dict[str, Tensor]:
        """``part``'s parameters in ``state``, by the part module's own names (a proximal term's reference)."""
        prefix = ENCODER_PREFIX if part == "encoder" else DECODERS_PREFIX
        named = dict(self.system.part(part).named_parameters())
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix) :] in named}

    def _parts(self, parts: tuple[str, ...]) -> State:
        """The model's ``parts`` (``encoder``, ``decoder``) as detached CPU tensors (what messages carry)."""
        chosen = select(self.system.model.state_dict(), part_prefixes(parts, self.spec.tasks))
        return {k: v.detach().cpu().clone() for k, v in chosen.items()}

    def evaluate(self, server_state: ServerState, split: str = "val") -> ClientEvaluation:
        """Score the model this client would train next round on ``split``, every task.

        ``split``: ``val``, ``test`` (the global test set: G-FL) or ``local_test`` (its own held-out
        part of its data: P-FL, ``data.local_test_fraction``).
        """
        splits = {"val": self.val_data, "test": self.test_data, "local_test": self.local_test_data}
        data = splits.get(split)
        if data is None:
            raise ValueError(
                f"client {self.client_id} has no {split!r} data (splits: val; test and local_test when configured)"
            )
        shared, own = self._scopes(server_state)
        self._start(shared, own, "own")  # the model it would use: its own part where it keeps one
        loader = DataLoader(data, batch_size=self.config.batch_size)
        from mfed.federation.trainer import evaluation_trainer

        evaluation_trainer(self.config.accelerator).validate(self.system, loader, verbose=False)
        self.system.trainer = None
        return ClientEvaluation(
            client_id=self.client_id,
            tasks=self.spec.tasks,
            num_examples=len(data),  # type: ignore[arg-type]
            metrics=self.system.computed_metrics(),
            metric_states=self.system.metric_states(),
        )


def _named(means: dict[str, float], step: str) -> dict[str, float]:
    """A named step's metrics: ``loss`` -> ``personal_loss``, ``semseg/task_loss`` -> ``semseg/personal_task_loss``."""
    if not step:
        return means
    out = {}
    for key, value in means.items():
        head, _, name = key.rpartition("/")
        out[f"{head}/{step}_{name}" if head else f"{step}_{name}"] = value
    return out
