import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mfed.metrics import MeanIoU
from tests.unit.metrics.conftest import NONFINITE_VALUES


def reference_miou(preds: np.ndarray, target: np.ndarray, num_classes: int, ignore: int = 255) -> float:
    """Explicit loop over classes; classes with an empty union are left out of the mean."""
    keep = target != ignore
    ious = []
    for c in range(num_classes):
        tp = np.sum((target == c) & (preds == c) & keep)
        fp = np.sum((target != c) & (preds == c) & keep)
        fn = np.sum((target == c) & (preds != c) & keep)
        if tp + fp + fn:
            ious.append(tp / (tp + fp + fn))
    return 100 * float(np.mean(ious))


def test_miou_matches_per_class_loops_and_merges_exactly(gen, merged_equals_whole):
    # Prepare: 4 of 5 classes occur; some ignored pixels carry out-of-range predictions
    target = torch.randint(0, 4, (5, 6, 7), generator=gen)
    preds = torch.randint(0, 4, (5, 6, 7), generator=gen)
    target[0, :2] = 255
    preds[0, 0, 0] = 99
    # Execute
    metric = merged_equals_whole(lambda: MeanIoU(num_classes=5), preds, target)
    # Assert
    assert float(metric.compute()) == pytest.approx(reference_miou(preds.numpy(), target.numpy(), 5), rel=1e-6)
    assert torch.isnan(metric.per_class_iou()[4])
    assert int(metric.confmat.sum()) == int((target != 255).sum())


def test_miou_scores_argmax_of_logits_and_channel_target(gen):
    # Prepare
    target = torch.randint(0, 3, (2, 1, 5, 5), generator=gen)
    logits = torch.randn(2, 3, 5, 5, generator=gen)
    from_logits, from_labels = MeanIoU(num_classes=3), MeanIoU(num_classes=3)
    # Execute
    from_logits.update(logits, target)
    from_labels.update(logits.argmax(1), target[:, 0])
    # Assert
    assert torch.equal(from_logits.confmat, from_labels.confmat)
    expected = reference_miou(logits.argmax(1).numpy(), target[:, 0].numpy(), 3)
    assert float(from_logits.compute()) == pytest.approx(expected, rel=1e-6)


def test_miou_perfect_prediction_is_100():
    target = torch.tensor([[[0, 1], [2, 255]]])
    metric = MeanIoU(num_classes=3)
    metric.update(F.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float(), target)
    assert float(metric.compute()) == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, r"num_classes must be >= 2, got 1"),
        ({"num_classes": 2.5}, r"num_classes must be an int, got 2.5"),
        ({"num_classes": 3, "ignore_index": 1}, r"ignore_index must not be a class label in \[0, 3\), got 1"),
        ({"num_classes": 3, "ignore_index": None}, r"ignore_index must be an int, got None"),
    ],
)
def test_miou_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MeanIoU(**kwargs)


def test_miou_rejects_mismatched_shapes_and_labels():
    metric = MeanIoU(num_classes=3)
    with pytest.raises(ValueError, match=r"preds shape \(2, 3, 3\) does not match target shape \(2, 4, 4\)"):
        metric.update(torch.zeros(2, 3, 3, dtype=torch.long), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"preds shape \(2, 4, 4, 4\) does not match target shape \(2, 4, 4\)"):
        metric.update(torch.zeros(2, 4, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target holds labels outside \[0, 3\)"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match=r"preds holds labels outside \[0, 3\)"):
        metric.update(torch.full((1, 2, 2), 3), torch.zeros(1, 2, 2, dtype=torch.long))


@NONFINITE_VALUES
def test_miou_is_nan_once_one_logit_is_not_finite(gen, nan_once_nonfinite, bad):
    # One non-finite score among the C of one pixel: argmax would read it as a class.
    target = torch.randint(0, 4, (5, 6, 7), generator=gen)
    logits = torch.randn(5, 4, 6, 7, generator=gen)
    metric = nan_once_nonfinite(lambda: MeanIoU(num_classes=4), logits, target, (1, 2, 3, 4), bad)
    assert torch.isnan(metric.per_class_iou()).all()


def test_miou_counts_a_non_finite_pixel_once_even_where_ignored(gen):
    target = torch.randint(0, 3, (1, 2, 2), generator=gen)
    target[0, 0, 0] = 255
    logits = torch.randn(1, 3, 2, 2, generator=gen)
    logits[0, :, 0, 0] = float("nan")  # all three scores of the ignored pixel
    metric = MeanIoU(num_classes=3)
    metric.update(logits, target)
    assert int(metric.nonfinite) == 1 and torch.isnan(metric.compute())
