import pytest
import torch
from sklearn.metrics import average_precision_score

from mfed.metrics import MultilabelMAP
from tests.unit.metrics.conftest import NONFINITE_VALUES


def test_map_matches_sklearn_macro_and_merges_exactly(gen, merged_equals_whole):
    target = (torch.rand(5, 4, generator=gen) > 0.5).float()
    target[0] = 1  # every label has a positive
    preds = (target * 0.3 + torch.rand(5, 4, generator=gen) * 0.7).clamp(0, 1)
    metric = merged_equals_whole(lambda: MultilabelMAP(num_labels=4), preds, target)
    expected = 100 * average_precision_score(target.numpy(), preds.numpy(), average="macro")
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-5)
    assert MultilabelMAP.higher_is_better is True


def test_map_counts_a_label_without_positives_as_zero_like_sklearn():
    target = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    preds = torch.tensor([[0.9, 0.2, 0.1], [0.3, 0.8, 0.4], [0.6, 0.4, 0.2], [0.1, 0.5, 0.3]])
    metric = MultilabelMAP(num_labels=3)
    metric.update(preds, target)
    with pytest.warns(UserWarning, match="No positive samples"):
        value = float(metric.compute())
    with pytest.warns(UserWarning):
        expected = 100 * average_precision_score(target.numpy(), preds.numpy(), average="macro")
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("num_labels", "message"),
    [(1, r"num_labels must be >= 2, got 1"), (2.0, r"num_labels must be an int, got 2.0")],
)
def test_map_rejects_bad_arguments(num_labels, message):
    with pytest.raises(ValueError, match=message):
        MultilabelMAP(num_labels=num_labels)


def test_map_rejects_mismatched_shapes():
    metric = MultilabelMAP(num_labels=3)
    with pytest.raises(ValueError, match=r"preds shape \(2, 3\) and target shape \(2, 4\) must both be \(B, 3\)"):
        metric.update(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"preds shape \(2, 4\) and target shape \(2, 4\) must both be \(B, 3\)"):
        metric.update(torch.zeros(2, 4), torch.zeros(2, 4))


@NONFINITE_VALUES
def test_map_is_nan_once_one_probability_is_not_finite(gen, nan_once_nonfinite, bad):
    target = (torch.rand(5, 4, generator=gen) > 0.5).float()
    target[[0, 2, 3]] = 1  # every client (rows 0-1, 2, 3-4) has a positive of every label: no warnings
    preds = torch.rand(5, 4, generator=gen)
    nan_once_nonfinite(lambda: MultilabelMAP(num_labels=4), preds, target, (1, 2), bad)


def test_map_counts_an_image_once():
    metric = MultilabelMAP(num_labels=3)
    metric.update(
        torch.tensor([[float("nan"), float("inf"), 0.5], [0.2, 0.3, 0.4]]), torch.tensor([[1, 0, 1], [0, 1, 0]])
    )
    assert int(metric.nonfinite) == 1 and torch.isnan(metric.compute())
