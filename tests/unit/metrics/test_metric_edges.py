import numpy as np
import pytest
import torch
from scipy import ndimage

from mfed.metrics import EdgeODSF
from tests.unit.metrics.conftest import NONFINITE_VALUES


def reference_odsf(probs, edges, thresholds, radius, valid=None):
    """Per threshold: counts pooled over images with scipy dilation by a (2r+1)^2 square; best F x100."""
    valid = np.ones_like(edges, bool) if valid is None else valid
    square = np.ones((2 * radius + 1, 2 * radius + 1), bool)
    grow = (lambda m: ndimage.binary_dilation(m, square)) if radius else (lambda m: m)
    best = 0.0
    for t in thresholds:
        correct = predicted = found = actual = 0
        for prob, edge, ok in zip(probs, edges, valid, strict=True):
            pred, gt = (prob >= t) & ok, edge & ok
            correct += np.sum(pred & grow(gt))
            predicted += pred.sum()
            found += np.sum(gt & grow(pred))
            actual += gt.sum()
        p, r = correct / max(predicted, 1), found / max(actual, 1)
        best = max(best, 2 * p * r / (p + r) if p + r else 0.0)
    return 100 * best


@pytest.fixture
def edge_batch(gen):
    """Five 12x12 sparse edge maps and probabilities shifted by one pixel (a miss that tolerance forgives)."""
    gt = torch.rand(5, 1, 12, 12, generator=gen) > 0.85
    probs = (gt.float() * 0.6 + torch.rand(5, 1, 12, 12, generator=gen) * 0.5).clamp(0, 1)
    return torch.roll(probs, shifts=1, dims=3), gt.float()


@pytest.mark.parametrize("tolerance", [0, 1, 2])
def test_odsf_matches_scipy_dilation_and_merges_exactly(edge_batch, merged_equals_whole, tolerance):
    probs, gt = edge_batch
    thresholds = [0.9, 0.1, 0.5, 0.3, 0.7]  # unsorted on purpose
    metric = merged_equals_whole(lambda: EdgeODSF(thresholds=thresholds, tolerance=tolerance), probs, gt)
    expected = reference_odsf(probs[:, 0].numpy(), gt[:, 0].numpy() > 0.5, thresholds, tolerance)
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)


def test_odsf_default_grid_matches_reference_with_ignored_pixels(edge_batch):
    # Prepare: a padded border marked 255, as padded edge targets are
    probs, gt = edge_batch
    gt[:, :, :, -2:] = 255
    metric = EdgeODSF()
    # Execute
    metric.update(probs, gt)
    # Assert
    grid = np.linspace(0.01, 0.99, 99)
    np.testing.assert_allclose(metric.thresholds.numpy(), grid)
    g = gt[:, 0].numpy()
    expected = reference_odsf(probs[:, 0].numpy(), g == 1, grid, 1, valid=g != 255)
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)


def test_odsf_tolerance_forgives_a_one_pixel_shift():
    gt = torch.zeros(1, 1, 8, 8)
    gt[0, 0, :, 3] = 1
    shifted = torch.roll(gt, shifts=1, dims=3) * 0.8
    exact, tolerant = EdgeODSF(tolerance=0), EdgeODSF(tolerance=1)
    exact.update(shifted, gt)
    tolerant.update(shifted, gt)
    assert float(exact.compute()) == 0.0
    assert float(tolerant.compute()) == pytest.approx(100.0)
    assert tolerant.best_threshold() <= 0.8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tolerance": -1}, r"tolerance must be >= 0 pixels, got -1"),
        ({"tolerance": 1.5}, r"tolerance must be an int, got 1.5"),
        ({"thresholds": 0}, r"thresholds must be a count >= 1 or a sequence of values, got 0"),
        ({"thresholds": [0.5, 1.5]}, r"thresholds must be a non-empty sequence of numbers in \[0, 1\]"),
        ({"thresholds": []}, r"thresholds must be a non-empty sequence"),
        ({"ignore_index": 1}, r"ignore_index must be None or an int other than 0 and 1, got 1"),
    ],
)
def test_odsf_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EdgeODSF(**kwargs)


def test_odsf_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"preds shape \(2, 3, 3\) does not match target shape \(2, 4, 4\)"):
        EdgeODSF().update(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 4, 4))


@NONFINITE_VALUES
def test_odsf_is_nan_once_one_probability_is_not_finite(edge_batch, nan_once_nonfinite, bad):
    # NaN never reaches a threshold: without the guard it would count as "no edge".
    probs, gt = edge_batch
    metric = nan_once_nonfinite(lambda: EdgeODSF(thresholds=5), probs, gt, (1, 0, 4, 4), bad)
    assert torch.isnan(metric.f_scores()).all() and np.isnan(metric.best_threshold())


def test_odsf_counts_a_nan_on_an_ignored_pixel(edge_batch):
    probs, gt = edge_batch
    gt[0, 0, 0, 0], probs[0, 0, 0, 0] = 255, float("nan")
    metric = EdgeODSF()
    metric.update(probs, gt)
    assert int(metric.nonfinite) == 1 and torch.isnan(metric.compute())
