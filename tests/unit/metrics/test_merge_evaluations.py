"""The driver's merge of client metric states (federation/summary.py) keeps the non-finite count."""

import math

import pytest
import torch

from mfed.federation.summary import merge_evaluations
from mfed.tasks.classification import MultiLabelClassification
from mfed.tasks.semseg import SemanticSegmentation
from mfed.types import ClientEvaluation


def evaluation(task, client_id, preds, target):
    """What a client sends: its metric states, detached copies as the Lightning system makes them."""
    states = {}
    for name, metric in task.metrics().items():
        metric.update(preds, target)
        states[name] = {
            k: [t.clone() for t in v] if isinstance(v, list) else v.clone() for k, v in metric.metric_state.items()
        }
    return ClientEvaluation(client_id, task.name, len(target), metrics={}, metric_states={task.name: states})


def whole(task, preds, target):
    return {name: float(m(preds, target)) for name, m in task.metrics().items()}


@pytest.fixture
def semseg_data(gen):
    return torch.randn(4, 3, 5, 5, generator=gen), torch.randint(0, 3, (4, 5, 5), generator=gen)


@pytest.fixture
def classification_data(gen):
    target = (torch.rand(4, 3, generator=gen) > 0.5).float()
    target[[0, 2]] = 1  # both clients have a positive of every label
    return torch.rand(4, 3, generator=gen), target


@pytest.mark.parametrize(
    ("task", "data"),
    [
        (SemanticSegmentation(num_classes=3), "semseg_data"),
        (MultiLabelClassification(num_labels=3), "classification_data"),
    ],
    ids=["sum-states", "list-states"],
)
def test_merge_evaluations_is_nan_when_one_client_saw_nan_and_exact_otherwise(task, data, request):
    preds, target = request.getfixturevalue(data)
    poisoned = preds.clone()
    poisoned[3].view(-1)[0] = float("nan")  # one score of the second client
    clean = [evaluation(task, f"c{k}", preds[k * 2 : k * 2 + 2], target[k * 2 : k * 2 + 2]) for k in range(2)]
    dirty = [clean[0], evaluation(task, "c1", poisoned[2:], target[2:])]

    merged_clean, merged_dirty = merge_evaluations(task, clean), merge_evaluations(task, dirty)

    assert merged_clean == pytest.approx(whole(task, preds, target), rel=1e-6)
    assert all(math.isfinite(v) for v in merged_clean.values())
    assert all(math.isnan(v) for v in merged_dirty.values()) and merged_dirty.keys() == merged_clean.keys()
    assert all(int(states["nonfinite"]) == 1 for states in dirty[1].metric_states[task.name].values())
