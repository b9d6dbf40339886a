"""Turn one round's client messages into the flat metric row the loggers write.

Keys use slashes so W&B groups panels: ``round``, ``train/<task>/loss``,
``val/<task>/<metric>``, ``client/<id>/...``, ``comm/bytes_up``, ``comm/bytes_down`` and
``comm/private_bytes`` (state the driver holds for clients, e.g. Local's models: not communication).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

from mfed.aggregation.functional import group_by_task
from mfed.tasks.base import Task
from mfed.types import ClientEvaluation, ClientUpdate, state_nbytes


def merge_evaluations(task: Task, evaluations: Sequence[ClientEvaluation]) -> dict[str, float]:
    """Task metrics over the union of the clients' validation data (metric states merged exactly)."""
    metrics = task.metrics()
    for evaluation in evaluations:
        for name, metric in metrics.items():
            metric.merge_state(dict(evaluation.metric_states[name]))
    with warnings.catch_warnings():
        # merge_state does not count as an update, so torchmetrics would warn on compute.
        warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
        return {name: float(metric.compute()) for name, metric in metrics.items()}


def train_row(updates: Sequence[ClientUpdate]) -> dict[str, float]:
    """Per-task example-weighted training losses, per-client losses and bytes moved."""
    row: dict[str, float] = {}
    for task, group in group_by_task(updates).items():
        total = sum(u.num_examples for u in group)
        for key in group[0].metrics:
            row[f"train/{task}/{key}"] = sum(u.metrics[key] * u.num_examples for u in group) / total
    for u in updates:
        row[f"client/{u.client_id}/train_loss"] = u.metrics.get("loss", float("nan"))
    row["comm/bytes_up"] = float(sum(state_nbytes(u.state) for u in updates))
    row["comm/bytes_down"] = float(sum(u.bytes_down for u in updates))
    row["comm/private_bytes"] = float(sum(state_nbytes(u.private) for u in updates))  # kept for clients, not sent
    row["comm/clients"] = float(len(updates))
    return row


def eval_row(tasks: Mapping[str, Task], evaluations: Sequence[ClientEvaluation]) -> dict[str, float]:
    """Per-task merged validation metrics and per-client ones."""
    row: dict[str, float] = {}
    for task_name, group in group_by_task(evaluations).items():
        for metric, value in merge_evaluations(tasks[task_name], group).items():
            row[f"val/{task_name}/{metric}"] = value
    for e in evaluations:
        for metric, value in e.metrics.items():
            row[f"client/{e.client_id}/{metric}"] = value
    return row


def test_row(evaluations: Sequence[ClientEvaluation]) -> dict[str, float]:
    """Global test set: each scoring client's metrics and, per task, their mean over those clients.

    Every client of a task scores the whole test set (the FedHCA2 / FMTL-Bench protocol), so the
    task's figure is the mean of its clients' figures. Where a task's clients hold one model, one
    of them scores it for all (:meth:`mfed.federation.driver.Driver.test_scorers`).
    """
    row: dict[str, float] = {}
    for task_name, group in group_by_task(evaluations).items():
        for metric in group[0].metrics:
            row[f"test/{task_name}/{metric}"] = sum(e.metrics[metric] for e in group) / len(group)
    for e in evaluations:
        for metric, value in e.metrics.items():
            row[f"client/{e.client_id}/test_{metric}"] = value
    return row
