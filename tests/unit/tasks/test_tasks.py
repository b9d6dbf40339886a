import math

import pytest
import torch

from mfed.tasks.classification import MultiLabelClassification
from mfed.tasks.depth import Depth
from mfed.tasks.edges import Edges
from mfed.tasks.losses import balanced_bce
from mfed.tasks.normals import Normals
from mfed.tasks.parts import PartSegmentation
from mfed.tasks.saliency import Saliency
from mfed.tasks.semseg import SemanticSegmentation


def test_balanced_bce_weights_positives_and_negatives_by_hand():
    logits, target = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])
    # each term is -log(0.5); weights 0.9 and 0.1; mean over 2 pixels
    assert float(balanced_bce(logits, target, 0.9)) == pytest.approx((0.9 + 0.1) * math.log(2) / 2)
    # per-batch balance: one positive in four -> w = 0.75
    logits4, target4 = torch.zeros(4), torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert float(balanced_bce(logits4, target4, None)) == pytest.approx((0.75 + 3 * 0.25) * math.log(2) / 4)


def test_depth_ignores_invalid_pixels_and_adds_its_offset():
    task = Depth(offset=5.0)
    target = torch.tensor([[[[0.0, 6.0], [7.0, 0.0]]]])  # zeros are invalid
    output = torch.zeros_like(target)  # predicts 5 everywhere
    assert float(task.loss(output, target)) == pytest.approx((1.0 + 2.0) / 2)
    assert torch.equal(task.activate(output), output + 5.0)
    assert float(task.loss(output, torch.zeros_like(target))) == 0.0


def test_normals_loss_uses_unit_predictions_on_valid_pixels():
    task = Normals()
    target = torch.zeros(1, 3, 1, 2)
    target[0, 2, 0, 0] = 1.0  # one valid pixel pointing at z; the other invalid
    output = torch.zeros(1, 3, 1, 2)
    output[0, 2] = 7.0  # any length: normalised before the loss
    assert float(task.loss(output, target)) == pytest.approx(0.0)
    assert torch.allclose(task.activate(output).norm(dim=1), torch.ones(1, 1, 2))


def test_classification_pools_the_class_maps():
    task = MultiLabelClassification(num_labels=3)
    output = torch.zeros(2, 3, 4, 4)
    output[:, 0] = 10.0
    probs = task.activate(output)
    assert probs.shape == (2, 3) and float(probs[0, 0]) > 0.99 and float(probs[0, 1]) == pytest.approx(0.5)
    assert float(task.loss(output, torch.tensor([[1.0, 0.5, 0.5]] * 2))) < float(task.loss(output, torch.zeros(2, 3)))


def test_segmentation_tasks_ignore_label_255():
    task = PartSegmentation(num_classes=3)
    output = torch.zeros(1, 3, 1, 2)
    output[0, 1, 0, 0] = 5.0
    target = torch.tensor([[[1, 255]]])
    expected = -torch.log_softmax(torch.tensor([0.0, 5.0, 0.0]), 0)[1]
    assert float(task.loss(output, target)) == pytest.approx(float(expected))
    assert task.loss_weight == 2.0 and task.name == "parts"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SemanticSegmentation(num_classes=1), "tasks.semseg.num_classes must be >= 2"),
        (lambda: Edges(pos_weight=1.0), r"tasks.edges.pos_weight must lie in \(0, 1\)"),
        (lambda: Edges(tolerance=-1), "tolerance must be >= 0 pixels"),
        (lambda: Saliency(convention="pixel"), "convention must be one of"),
        (lambda: Depth(loss_weight=0), "tasks.depth.loss_weight must be > 0"),
        (lambda: MultiLabelClassification(num_labels=0), "num_labels must be >= 1"),
        (lambda: Depth(name="bad name"), "task name must be a non-empty identifier"),
    ],
)
def test_bad_task_arguments_name_the_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()
