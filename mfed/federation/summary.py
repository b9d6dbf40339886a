"""Turn one round's client messages into the flat metric row the loggers write, one message at a time.

Each tally takes the messages as the driver receives them (in the order the clients were
sampled) and keeps only sums and per-client scalars, so a round of any number of clients
costs the driver the same memory.

Keys use slashes so W&B groups panels: ``round``, ``train/<task>/loss``,
``val/<task>/<metric>``, ``client/<id>/...``, ``comm/bytes_up`` (of which the encoder:
``comm/bytes_up_encoder``), ``comm/bytes_down`` and ``comm/private_bytes`` (state the driver
holds for clients, e.g. Local's models: not communication), ``client/<id>/update_norm`` and
``diag/cos/<task>~<task>`` (:class:`UpdateTally`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor
from torchmetrics import Metric

from mfed.models.multitask import ENCODER_PREFIX
from mfed.tasks.base import Task
from mfed.types import ClientEvaluation, ClientUpdate, ServerState, scopes_of, state_nbytes


def _computed(metrics: Mapping[str, Metric]) -> dict[str, float]:
    with warnings.catch_warnings():
        # merge_state does not count as an update, so torchmetrics would warn on compute.
        warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
        return {name: float(metric.compute()) for name, metric in metrics.items()}


def merge_evaluations(task: Task, evaluations: Iterable[ClientEvaluation]) -> dict[str, float]:
    """Task metrics over the union of the clients' validation data (metric states merged exactly)."""
    metrics = task.metrics()
    for evaluation in evaluations:
        for name, metric in metrics.items():
            metric.merge_state(dict(evaluation.metric_states[name]))
    return _computed(metrics)


class TrainTally:
    """Per-task example-weighted training losses, per-client losses and bytes moved."""

    def __init__(self) -> None:
        self.losses: dict[str, dict[str, float]] = {}  # task -> metric -> sum of metric * examples
        self.examples: dict[str, int] = {}
        self.clients: dict[str, float] = {}
        self.bytes = dict.fromkeys(
            ("comm/bytes_up", "comm/bytes_up_encoder", "comm/bytes_down", "comm/private_bytes"), 0.0
        )

    def add(self, u: ClientUpdate) -> None:
        """Count one accepted update."""
        sums = self.losses.setdefault(u.task, dict.fromkeys(u.metrics, 0.0))
        for key in sums:
            sums[key] += u.metrics[key] * u.num_examples
        self.examples[u.task] = self.examples.get(u.task, 0) + u.num_examples
        self.clients[f"client/{u.client_id}/train_loss"] = u.metrics.get("loss", float("nan"))
        self.bytes["comm/bytes_up"] += state_nbytes(u.state)
        self.bytes["comm/bytes_up_encoder"] += state_nbytes(
            {k: v for k, v in u.state.items() if k.startswith(ENCODER_PREFIX)}
        )
        self.bytes["comm/bytes_down"] += u.bytes_down
        self.bytes["comm/private_bytes"] += state_nbytes(u.private)  # kept for clients, not sent

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
        """Merge one client's metric states."""
        if e.task not in self.metrics:
            self.metrics[e.task] = self.tasks[e.task].metrics()
        for name, metric in self.metrics[e.task].items():
            metric.merge_state(dict(e.metric_states[name]))
        self.clients.update({f"client/{e.client_id}/{metric}": value for metric, value in e.metrics.items()})

    def row(self) -> dict[str, float]:
        """The round's validation entries."""
        row = {f"val/{task}/{m}": v for task, metrics in self.metrics.items() for m, v in _computed(metrics).items()}
        return {**row, **self.clients}


class TestTally:
    """Global test set: each scoring client's metrics and, per task, their mean over those clients.

    Every client of a task scores the whole test set (the FedHCA2 / FMTL-Bench protocol), so the
    task's figure is the mean of its clients' figures. Where a task's clients hold one model, one
    of them scores it for all (:meth:`mfed.federation.driver.Driver.test_scorers`).
    """

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, float]] = {}
        self.counts: dict[str, int] = {}
        self.clients: dict[str, float] = {}

    def add(self, e: ClientEvaluation) -> None:
        """Count one client's test metrics."""
        sums = self.sums.setdefault(e.task, dict.fromkeys(e.metrics, 0.0))
        for metric in sums:
            sums[metric] += e.metrics[metric]
        self.counts[e.task] = self.counts.get(e.task, 0) + 1
        self.clients.update({f"client/{e.client_id}/test_{metric}": value for metric, value in e.metrics.items()})

    def row(self) -> dict[str, float]:
        """The round's test entries."""
        row = {f"test/{t}/{m}": total / self.counts[t] for t, sums in self.sums.items() for m, total in sums.items()}
        return {**row, **self.clients}


class UpdateTally:
    """What the seed asks to watch every round: each client's update norm, and how tasks pull the encoder.

    A client's update is what it sends minus what it was sent (the shared copy it started from).
    Per task, the example-weighted mean of its clients' encoder updates is kept (one encoder-sized
    float32 sum per task); the cosine similarity of every pair of tasks' means says whether the
    tasks pull the shared encoder the same way (near 1), apart (near -1) or unrelatedly (near 0).
    Only floating tensors count (not BatchNorm's batch counters).
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.norms: dict[str, float] = {}
        self.tasks: dict[str, str] = {}
        self.encoder: dict[str, dict[str, Tensor]] = {}
        self.weights: dict[str, float] = {}

    def add(self, u: ClientUpdate) -> None:
        """Count one accepted update."""
        shared = {k: v for scope in scopes_of(u.client_id, u.task)[:2] for k, v in self.state.get(scope, {}).items()}
        deltas = {k: v.float() - shared[k].float() for k, v in u.state.items() if k in shared and v.is_floating_point()}
        if not deltas:
            return  # it sends nothing it was sent (Local): no update to measure
        self.norms[u.client_id] = math.sqrt(sum(float(d.double().square().sum()) for d in deltas.values()))
        self.tasks[u.client_id] = u.task
        encoder = {k: d for k, d in deltas.items() if k.startswith(ENCODER_PREFIX)}
        if encoder:
            sums = self.encoder.setdefault(u.task, {k: torch.zeros_like(d) for k, d in encoder.items()})
            for k, d in encoder.items():
                sums[k] += d * u.num_examples
            self.weights[u.task] = self.weights.get(u.task, 0.0) + u.num_examples

    def row(self) -> dict[str, float]:
        """``client/<id>/update_norm``, ``diag/<task>/update_norm`` (mean) and ``diag/cos/<task>~<task>``."""
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
