import numpy as np
import pytest
import torch

from mfed.metrics import DepthAbsRel, DepthRMSE
from tests.unit.metrics.conftest import NONFINITE_VALUES


@pytest.fixture
def depth_batch(gen):
    """Five (1, 6, 7) depth maps with about a fifth of the pixels missing (0), and noisy predictions."""
    target = torch.rand(5, 1, 6, 7, generator=gen) * 10
    target[target < 2] = 0
    preds = target + torch.rand(5, 1, 6, 7, generator=gen) - 0.5
    return preds, target


def masked(preds, target, low=0.0, high=np.inf):
    g, p = target.numpy().astype(np.float64).ravel(), preds.numpy().astype(np.float64).ravel()
    return np.ma.masked_where(~((g > low) & (g < high)), p), np.ma.masked_where(~((g > low) & (g < high)), g)


def test_rmse_pools_valid_pixels_of_the_set(depth_batch, merged_equals_whole):
    preds, target = depth_batch
    p, g = masked(preds, target)
    metric = merged_equals_whole(DepthRMSE, preds, target)
    assert float(metric.compute()) == pytest.approx(float(np.sqrt(((p - g) ** 2).mean())), rel=1e-6)
    assert int(metric.count) == int(g.count())


def test_absrel_pools_valid_pixels_of_the_set(depth_batch, merged_equals_whole):
    preds, target = depth_batch
    p, g = masked(preds, target)
    metric = merged_equals_whole(DepthAbsRel, preds, target)
    assert float(metric.compute()) == pytest.approx(float((abs(p - g) / g).mean()), rel=1e-6)


def test_depth_range_limits_and_channelless_maps(depth_batch):
    # Prepare: FedHCA2's 0 < gt < 80 analogue with a cap at 5 and a floor at 3
    preds, target = depth_batch
    p, g = masked(preds, target, low=3.0, high=5.0)
    rmse, absrel = DepthRMSE(min_depth=3.0, max_depth=5.0), DepthAbsRel(min_depth=3.0, max_depth=5.0)
    # Execute
    rmse.update(preds[:, 0], target[:, 0])
    absrel.update(preds[:, 0], target[:, 0])
    # Assert
    assert float(rmse.compute()) == pytest.approx(float(np.sqrt(((p - g) ** 2).mean())), rel=1e-6)
    assert float(absrel.compute()) == pytest.approx(float((abs(p - g) / g).mean()), rel=1e-6)


def test_rmse_differs_from_mean_of_per_image_rmse():
    # One image with a large error on one pixel, one perfect image with many pixels: pooling weighs pixels.
    target = torch.ones(2, 1, 1, 4)
    target[0, 0, 0, 1:] = 0
    preds = target.clone()
    preds[0, 0, 0, 0] = 3.0
    metric = DepthRMSE()
    metric.update(preds, target)
    assert float(metric.compute()) == pytest.approx(np.sqrt(4 / 5))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DepthRMSE(min_depth=1.0, max_depth=1.0), r"max_depth must exceed min_depth, got max_depth=1.0"),
        (lambda: DepthRMSE(min_depth=float("nan")), r"min_depth must be finite, got nan"),
        (lambda: DepthAbsRel(min_depth=-1.0), r"min_depth must be >= 0 for a relative error, got -1.0"),
    ],
)
def test_depth_rejects_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_depth_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"preds shape \(2, 3, 3\) does not match target shape \(2, 4, 4\)"):
        DepthRMSE().update(torch.zeros(2, 1, 3, 3), torch.zeros(2, 4, 4))


@NONFINITE_VALUES
@pytest.mark.parametrize("make", [DepthRMSE, DepthAbsRel], ids=["rmse", "abs_rel"])
def test_depth_is_nan_once_one_predicted_pixel_is_not_finite(depth_batch, nan_once_nonfinite, make, bad):
    preds, target = depth_batch
    nan_once_nonfinite(make, preds, target, (0, 0, 2, 3), bad)


def test_depth_counts_a_non_finite_prediction_on_an_invalid_pixel():
    # NaN where the ground truth is missing: the error sum is untouched, the model still diverged.
    target, preds = torch.tensor([[[0.0, 2.0]]]), torch.tensor([[[float("nan"), 2.0]]])
    metric = DepthRMSE()
    metric.update(preds, target)
    assert float(metric.total) == 0.0 and int(metric.nonfinite) == 1 and torch.isnan(metric.compute())
