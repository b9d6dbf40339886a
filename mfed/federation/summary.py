"""Turn one round's client messages into the flat metric row the loggers write, one message at a time.

Each tally takes the messages as the driver receives them (in the order the clients were
sampled) and keeps only sums and per-client scalars, so a round of any number of clients
costs the driver the same memory.

Keys use slashes so W&B groups panels: ``round``, ``train/<task>/loss``,
``val/<task>/<metric>``, ``client/<id>/<task>/<metric>`` (per client and task),
``client/<id>/train_loss``, ``comm/bytes_up`` (of which the encoder: ``comm/bytes_up_encoder``),
``comm/bytes_down`` (every scope a client is sent: global, its tasks', its personal one, whose keys replace
the shared copies, which are then not counted) and
``comm/private_bytes`` (state the driver holds for clients, e.g. Local's models: not
communication), ``client/<id>/update_norm`` and ``diag/cos/<kind>~<kind>`` (:class:`UpdateTally`).

A client holding several tasks counts in each of its tasks' entries: ``train/<task>/task_loss``
is the example-weighted mean of that task's loss over every client holding it, and
``train/<task>/loss`` (and ``reg``) the mean objective of those clients.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor
from torchmetrics import Metric

from mfed.aggregation.functional import merge_scopes
from mfed.models.multitask import ENCODER_PREFIX
from mfed.tasks.base import Task
from mfed.types import ClientEvaluation, ClientUpdate, ServerState, kind_of, shared_scopes_of, state_nbytes


def _computed(metrics: Mapping[str, Metric]) -> dict[str, float]:
    with warnings.catch_warnings():
        # merge_state does not count as an update, so torchmetrics would warn on compute.
        warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
        return {name: float(metric.compute()) for name, metric in metrics.items()}


def merge_evaluations(task: Task, evaluations: Iterable[ClientEvaluation]) -> dict[str, float]:
    """``task``'s metrics over the union of the clients' data (metric states merged exactly); each holds ``task``."""
    metrics = task.metrics()
    for evaluation in evaluations:
        for name, metric in metrics.items():
            metric.merge_state(dict(evaluation.metric_states[task.name][name]))
    return _computed(metrics)


def task_metrics(metrics: Mapping[str, float], task: str) -> dict[str, float]:
    """A client's training metrics as they concern ``task``: its own (``<task>/x`` as ``x``) and the client's."""
    prefix = f"{task}/"
    return {k.removeprefix(prefix): v for k, v in metrics.items() if "/" not in k or k.startswith(prefix)}


class TrainTally:
    """Per-task example-weighted training losses, per-client losses and bytes moved.

    Args:
        state: The server state the round's clients were sent (what they downloaded).

    """

    def __init__(self, state: ServerState | None = None) -> None:
        self.state = state or {}
        self.losses: dict[str, dict[str, float]] = {}  # task -> metric -> sum of metric * examples
        self.examples: dict[str, int] = {}
        self.clients: dict[str, float] = {}
        self.bytes = dict.fromkeys(
            ("comm/bytes_up", "comm/bytes_up_encoder", "comm/bytes_down", "comm/private_bytes"), 0.0
        )
        self._scope_bytes: dict[str, int] = {}

    def add(self, u: ClientUpdate) -> None:
        """Count one accepted update."""
        for task in u.tasks:
            metrics = task_metrics(u.metrics, task)
            sums = self.losses.setdefault(task, dict.fromkeys(metrics, 0.0))
            for key in sums:
                sums[key] += metrics.get(key, float("nan")) * u.num_examples
            self.examples[task] = self.examples.get(task, 0) + u.num_examples
        self.clients[f"client/{u.client_id}/train_loss"] = u.metrics.get("loss", float("nan"))
        self.bytes["comm/bytes_up"] += state_nbytes(u.state)
        self.bytes["comm/bytes_up_encoder"] += state_nbytes(
            {k: v for k, v in u.state.items() if k.startswith(ENCODER_PREFIX)}
        )
        scopes = shared_scopes_of(u.client_id, u.tasks)
        personal = self.state.get(scopes[-1], {})
        self.bytes["comm/bytes_down"] += (
            sum(self._nbytes(s) for s in scopes)
            - sum(  # a personal key: sent once
                state_nbytes({k: v for k, v in self.state.get(s, {}).items() if k in personal}) for s in scopes[:-1]
            )
        )
        self.bytes["comm/private_bytes"] += state_nbytes(u.private)  # kept for clients, not sent

    def _nbytes(self, scope: str) -> int:
        if scope not in self._scope_bytes:
            self._scope_bytes[scope] = state_nbytes(self.state.get(scope, {}))
        return self._scope_bytes[scope]

    def row(self) -> dict[str, float]:
        """The round's training entries."""
        row = {
            f"train/{task}/{key}": total / self.examples[task]
            for task, sums in self.losses.items()
            for key, total in sums.items()
        }
        return {**row, **self.clients, **self.bytes, "comm/clients": float(len(self.clients))}


class EvalTally:
    """Per-task validation metrics over the union of the clients' data, and per-client ones."""

    def __init__(self, tasks: Mapping[str, Task]) -> None:
        self.tasks = tasks
        self.metrics: dict[str, dict[str, Metric]] = {}
        self.clients: dict[str, float] = {}

    def add(self, e: ClientEvaluation) -> None:
        """Merge one client's metric states, task by task."""
        for task in e.tasks:
            if task not in self.metrics:
                self.metrics[task] = self.tasks[task].metrics()
            for name, metric in self.metrics[task].items():
                metric.merge_state(dict(e.metric_states[task][name]))
            self.clients.update({f"client/{e.client_id}/{task}/{m}": value for m, value in e.metrics[task].items()})

    def row(self) -> dict[str, float]:
        """The round's validation entries."""
        row = {f"val/{task}/{m}": v for task, metrics in self.metrics.items() for m, v in _computed(metrics).items()}
        return {**row, **self.clients}


class TestTally:
    """A test split: each scoring client's metrics and, per task, their mean over those clients.

    ``test`` is the global test set (G-FL): every client holding a task scores the whole of it
    (the FedHCA2 / FMTL-Bench protocol), so the task's figure is the mean of those clients'
    figures. Where clients of one kind hold one model, one of them scores it for all
    (:meth:`mfed.federation.driver.Driver.test_scorers`). ``local_test`` is each client's own
    held-out part of its data (P-FL): each client scores its own, and the task's figure is again
    the mean over the task's clients (FMTL-Bench's personalised evaluation).
    """

    __test__ = False  # not a pytest class

    def __init__(self, split: str = "test") -> None:
        self.split = split
        self.sums: dict[str, dict[str, float]] = {}
        self.counts: dict[str, int] = {}
        self.clients: dict[str, float] = {}

    def add(self, e: ClientEvaluation) -> None:
        """Count one client's test metrics, task by task."""
        for task in e.tasks:
            sums = self.sums.setdefault(task, dict.fromkeys(e.metrics[task], 0.0))
            for metric in sums:
                sums[metric] += e.metrics[task][metric]
            self.counts[task] = self.counts.get(task, 0) + 1
            prefix = f"client/{e.client_id}/{task}/{self.split}_"
            self.clients.update({f"{prefix}{m}": v for m, v in e.metrics[task].items()})

    def row(self) -> dict[str, float]:
        """The split's entries: ``<split>/<task>/<metric>`` and ``client/<id>/<task>/<split>_<metric>``."""
        sums = self.sums.items()
        row = {
            f"{self.split}/{t}/{m}": total / self.counts[t] for t, by_metric in sums for m, total in by_metric.items()
        }
        return {**row, **self.clients}


class UpdateTally:
    """What the seed asks to watch every round: each client's update norm, and how tasks pull the encoder.

    A client's update is what it sends minus what it was sent (the shared copy it started from).
    Per kind of client (its task set: ``semseg``, or ``semseg+depth`` for a client holding both),
    the example-weighted mean of its clients' encoder updates is kept (one encoder-sized float32
    sum per kind); the cosine similarity of every pair of kinds' means says whether they pull the
    shared encoder the same way (near 1), apart (near -1) or unrelatedly (near 0). Only floating
    tensors count (not BatchNorm's batch counters).
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.norms: dict[str, float] = {}
        self.tasks: dict[str, str] = {}
        self.encoder: dict[str, dict[str, Tensor]] = {}
        self.weights: dict[str, float] = {}

    def add(self, u: ClientUpdate) -> None:
        """Count one accepted update."""
        shared = merge_scopes(self.state, shared_scopes_of(u.client_id, u.tasks))
        deltas = {k: v.float() - shared[k].float() for k, v in u.state.items() if k in shared and v.is_floating_point()}
        if not deltas:
            return  # it sends nothing it was sent (Local): no update to measure
        self.norms[u.client_id] = math.sqrt(sum(float(d.double().square().sum()) for d in deltas.values()))
        kind = kind_of(u.tasks)
        self.tasks[u.client_id] = kind
        encoder = {k: d for k, d in deltas.items() if k.startswith(ENCODER_PREFIX)}
        if encoder:
            sums = self.encoder.setdefault(kind, {k: torch.zeros_like(d) for k, d in encoder.items()})
            for k, d in encoder.items():
                sums[k] += d * u.num_examples
            self.weights[kind] = self.weights.get(kind, 0.0) + u.num_examples

    def row(self) -> dict[str, float]:
        """``client/<id>/update_norm``, ``diag/<kind>/update_norm`` (mean) and ``diag/cos/<kind>~<kind>``."""
        row = {f"client/{c}/update_norm": n for c, n in self.norms.items()}
        for task in dict.fromkeys(self.tasks.values()):
            norms = [n for c, n in self.norms.items() if self.tasks[c] == task]
            row[f"diag/{task}/update_norm"] = sum(norms) / len(norms)
        means = {
            t: torch.cat([v.flatten() for v in sums.values()]) / self.weights[t] for t, sums in self.encoder.items()
        }
        for a, b in itertools.combinations(means, 2):
            row[f"diag/cos/{a}~{b}"] = float(torch.nn.functional.cosine_similarity(means[a], means[b], dim=0))
        return row
