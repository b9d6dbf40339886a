"""FedAvg across tasks, the "FedAvg" row of the multi-task FL literature (FedHCA2, FMTL-Bench).

One model for everyone as far as shapes allow: the encoder is averaged over all clients, and so
is the decoder (a "soup" over every task's clients) in every parameter whose shape is the same
for all the run's tasks; the parameters whose shape depends on the task (the output head, sized
by its channels) are averaged within each task. Every task's decoder starts from the same
soup. Decoders whose parameter names differ between tasks (different decoder architectures)
cannot be mixed: that is a clear error naming the tasks.
"""

from __future__ import annotations

import dataclasses

from mfed.aggregation.base import Strategy
from mfed.aggregation.functional import encoder_and_decoders
from mfed.aggregation.streaming import Aggregation
from mfed.models.multitask import ENCODER_PREFIX, MultiTaskModel, decoder_prefix
from mfed.types import ClientUpdate, ServerState, State, global_scope, task_scope

SOUP = "soup"  # a scope of the round's fold only; the server state keeps one decoder per task
SOUP_PREFIX = "decoders.*."


def soup_keys(state: ServerState) -> set[str]:
    """Decoder parameter names (relative to ``decoders.<task>.``) of one shape in every task scope.

    Raises:
        ValueError: Two tasks' decoders have different parameter names (naming both).

    """
    tasks = [scope.removeprefix("task:") for scope in state if scope.startswith("task:")]
    decoders = {t: {k[len(decoder_prefix(t)) :]: v.shape for k, v in state[task_scope(t)].items()} for t in tasks}
    first, *rest = sorted(decoders)
    for task in rest:
        if set(decoders[task]) != set(decoders[first]):
            raise ValueError(
                f"aggregation=fedavg_all: the decoders of tasks {first!r} and {task!r} have different parameters "
                "(different decoder configs), so they cannot be averaged into one: use the same decoder for every "
                "task, or aggregation=mfed"
            )
    return {k for k, shape in decoders[first].items() if all(decoders[t][k] == shape for t in rest)}


class FedAvgAll(Strategy):
    """Cross-task FedAvg: encoder and the shape-compatible decoder parameters over all clients.

    Args:
        weighting: ``examples`` or ``uniform``.
        clip_norm, robust, trim_fraction: Defences against bad updates (see :class:`Strategy`);
            the shared decoder parameters and the head are clipped as parts of their own.
        name: Run and report name (see :class:`Strategy`).

    """

    name = "fedavg_all"

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The encoder and one decoder per task, whose shared parameters all start as the first task's."""
        full = model.state_dict()
        state = encoder_and_decoders(full, model.tasks)
        first = sorted(model.tasks)[0]
        for key in soup_keys(state):
            for task in model.tasks:
                state[task_scope(task)][decoder_prefix(task) + key] = full[decoder_prefix(first) + key].clone()
        return state

    def targets(self, task: str) -> list[tuple[str, tuple[str, ...]]]:
        """The encoder into ``global``, shared decoder parameters into the soup, the head into the task's scope."""
        head = (task_scope(task), (decoder_prefix(task),))
        return [(global_scope(), (ENCODER_PREFIX,)), (SOUP, (SOUP_PREFIX,)), head]

    def aggregation(self, state: ServerState) -> Aggregation:
        """A round that folds each task's shared decoder parameters into one soup."""
        return _SoupRound(self, state)


class _SoupRound(Aggregation):
    """:class:`Aggregation` over a view where every task's shared decoder parameters are one scope."""

    def __init__(self, strategy: Strategy, state: ServerState) -> None:
        self.real, self.soup = state, soup_keys(state)
        view = {scope: self._split(scope, tensors) for scope, tensors in state.items()}
        shared = next((v for s, v in view.items() if s.startswith("task:")), {})
        view = {s: {k: t for k, t in v.items() if not k.startswith(SOUP_PREFIX)} for s, v in view.items()}
        view[SOUP] = {k: t for k, t in shared.items() if k.startswith(SOUP_PREFIX)}
        super().__init__(strategy, view)

    def _split(self, scope_or_task: str, tensors: State) -> State:
        """Rename a task's shared decoder parameters ``decoders.<task>.k`` to ``decoders.*.k``."""
        task = scope_or_task.removeprefix("task:")
        prefix = decoder_prefix(task)
        return {
            SOUP_PREFIX + k[len(prefix) :] if k.startswith(prefix) and k[len(prefix) :] in self.soup else k: v
            for k, v in tensors.items()
        }

    def add(self, update: ClientUpdate) -> None:
        """Fold ``update`` in, its shared decoder parameters into the soup."""
        super().add(dataclasses.replace(update, state=self._split(update.task, update.state)))

    def result(self) -> ServerState:
        """Every task's decoder: its head (its own task's mean) and the soup, named back."""
        view = super().result()
        new = dict(self.real)
        new[global_scope()] = view[global_scope()]
        for scope in self.real:
            if scope.startswith("task:"):
                prefix = decoder_prefix(scope[len("task:") :])
                soup = {prefix + k[len(SOUP_PREFIX) :]: v for k, v in view[SOUP].items()}
                new[scope] = {**self.real[scope], **view[scope], **soup}
        return new
