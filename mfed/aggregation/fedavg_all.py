"""FedAvg across tasks, the "FedAvg" row of the multi-task FL literature (FedHCA2, FMTL-Bench).

One model for everyone as far as architectures allow: the encoder is averaged over all clients,
and so is the decoder (a "soup" over every task's clients) among the tasks whose decoders have
the same architecture (the same parameter names), in every parameter whose shape is the same for
all of them; the parameters whose shape depends on the task (the output head, sized by its
channels), and the whole decoder of a task whose architecture no other task shares (a task
config naming its own decoder), are averaged within each task. Every decoder of one soup starts
from the same weights. A client holding several tasks adds each of its decoders to its soup with
its weight, and its encoder once.
"""

from __future__ import annotations

from collections.abc import Sequence

from mfed.aggregation.base import Strategy
from mfed.aggregation.contract import ROUTED, Declaration, bounded
from mfed.aggregation.functional import encoder_and_decoders, select
from mfed.aggregation.stages import Parts
from mfed.models.multitask import ENCODER_PREFIX, MultiTaskModel, decoder_prefix
from mfed.types import ClientUpdate, ServerState, State, global_scope, task_scope

SOUP_PREFIX = "decoders.*."


def soup_scope(group: int) -> str:
    """A scope of the round's fold only: the server state keeps one decoder per task."""
    return f"soup:{group}"


def soups(state: ServerState) -> list[tuple[list[str], set[str]]]:
    """The soups of a state's task decoders: ``(tasks, keys)``, keys relative to ``decoders.<task>.``.

    Tasks whose decoders have the same parameter names form one soup, of the keys with one shape
    in all of them; a task alone in its architecture has none.
    """
    tasks = [scope.removeprefix("task:") for scope in state if scope.startswith("task:")]
    shapes = {t: {k[len(decoder_prefix(t)) :]: v.shape for k, v in state[task_scope(t)].items()} for t in tasks}
    groups: dict[frozenset[str], list[str]] = {}
    for task in sorted(tasks):
        groups.setdefault(frozenset(shapes[task]), []).append(task)
    out = []
    for members in groups.values():
        if len(members) > 1:
            first = shapes[members[0]]
            out.append((members, {k for k, shape in first.items() if all(shapes[t][k] == shape for t in members)}))
    return out


class FedAvgAll(Strategy):
    """Cross-task FedAvg: the encoder and the decoders' architecture-compatible parameters over all clients.

    The fold sees each soup's parameters, of all its tasks, as one scope ``soup:<i>`` (its
    :meth:`view`); the task scopes keep only their own parameters there.

    Args:
        weighting: ``examples`` or ``uniform``.
        name: Run and report name (see :class:`Strategy`).

    """

    name = "fedavg_all"

    def declaration(self) -> Declaration:
        """Routes into shared scopes; a client holding several tasks puts several decoders into one soup."""
        why = "folds decoders into soups found from their shapes, whose clients per round DP's fixed denominators miss"
        return Declaration(f"aggregation={self.name}", gives=ROUTED, voids={bounded("decoder"): why})

    def init_state(self, model: MultiTaskModel) -> ServerState:
        """The encoder and one decoder per task, whose soup parameters all start as their soup's first task's."""
        full = model.state_dict()
        state = encoder_and_decoders(full, model.tasks)
        for tasks, keys in soups(state):
            for key in keys:
                for task in tasks:
                    state[task_scope(task)][decoder_prefix(task) + key] = full[decoder_prefix(tasks[0]) + key].clone()
        return state

    def targets(self, tasks: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """The encoder into ``global``, each decoder into its task's scope (its soup part is taken out in the fold)."""
        return [(global_scope(), (ENCODER_PREFIX,)), *((task_scope(t), (decoder_prefix(t),)) for t in tasks)]

    def view(self, state: ServerState) -> ServerState:
        """Each task scope split into its own parameters and its soup's, under ``soup:<i>`` (as ``decoders.*.k``)."""
        groups = _Soups(state)
        view = {s: v for s, v in state.items() if not s.startswith("task:")}
        for scope, tensors in state.items():
            if scope.startswith("task:"):
                task = scope.removeprefix("task:")
                soup, heads = groups.split(task, tensors)
                view[scope] = heads
                if soup:
                    view[soup_scope(groups.index[task][0])] = soup
        return view

    def route(self, update: ClientUpdate, state: ServerState) -> Parts:
        """The encoder into ``global``; each decoder's soup part into its soup, the rest into its task's scope."""
        groups = _Soups(state)
        parts: Parts = []
        encoder = select(update.state, [ENCODER_PREFIX])
        if encoder:
            parts.append((global_scope(), encoder))
        for task in update.tasks:
            soup, own = groups.split(task, select(update.state, [decoder_prefix(task)]))
            if own:
                parts.append((task_scope(task), own))
            if soup:
                parts.append((soup_scope(groups.index[task][0]), soup))
        return parts

    def unview(self, view: ServerState, state: ServerState) -> ServerState:
        """Every task's decoder: its own parameters and its soup's, named back."""
        groups = _Soups(state)
        new = {s: v for s, v in view.items() if not s.startswith(("task:", "soup:"))}
        for scope in state:
            if scope.startswith("task:"):
                task = scope.removeprefix("task:")
                prefix, mixed = decoder_prefix(task), view.get(soup_scope(groups.index.get(task, (-1,))[0]), {})
                soup = {prefix + k[len(SOUP_PREFIX) :]: v for k, v in mixed.items()}
                new[scope] = {**state[scope], **view[scope], **soup}
        return new


class _Soups:
    """Which soup each task's decoder belongs to, and the soup's keys."""

    def __init__(self, state: ServerState) -> None:
        self.index = {t: (i, keys) for i, (tasks, keys) in enumerate(soups(state)) for t in tasks}

    def split(self, task: str, tensors: State) -> tuple[State, State]:
        """``task``'s decoder tensors as its soup part (named ``decoders.*.k``) and the rest (its own)."""
        prefix, keys = decoder_prefix(task), self.index.get(task, (0, set()))[1]
        soup = {SOUP_PREFIX + k[len(prefix) :]: v for k, v in tensors.items() if k[len(prefix) :] in keys}
        return soup, {k: v for k, v in tensors.items() if k[len(prefix) :] not in keys}
