import numpy as np
import pytest
import torch

from mfed.metrics import NormalsAngularError
from tests.unit.metrics.conftest import NONFINITE_VALUES


def reference_angles(preds, target, mask=None):
    """Degrees via arccos of clipped dot products of unit vectors, over pixels with non-zero target."""
    g = target.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    p = preds.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    valid = np.linalg.norm(g, axis=1) > 0
    if mask is not None:
        valid &= mask.reshape(-1).numpy()
    g = g[valid] / np.linalg.norm(g[valid], axis=1, keepdims=True)
    p = p[valid] / np.linalg.norm(p[valid], axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(g * p, axis=1), -1, 1)))


@pytest.fixture
def normals_batch(gen):
    target = torch.rand(5, 3, 4, 4, generator=gen) - 0.5
    target[0, :, 0, 0] = 0  # invalid pixel
    preds = target + 0.4 * (torch.rand(5, 3, 4, 4, generator=gen) - 0.5)
    return preds, target


def test_mean_angle_and_within_shares_match_arccos(normals_batch, merged_equals_whole):
    preds, target = normals_batch
    angles = reference_angles(preds, target)
    metric = merged_equals_whole(NormalsAngularError, preds, target)
    assert float(metric.compute()) == pytest.approx(float(angles.mean()), rel=1e-5)
    assert int(metric.count) == 5 * 16 - 1
    expected = {
        key: 100 * float(np.mean(angles < limit)) for key, limit in (("11.25", 11.25), ("22.5", 22.5), ("30", 30))
    }
    assert metric.within() == pytest.approx(expected)


def test_within_shares_survive_the_merge(normals_batch):
    preds, target = normals_batch
    whole, merged = NormalsAngularError(), NormalsAngularError()
    whole.update(preds, target)
    for chunk in (slice(0, 2), slice(2, 5)):
        client = NormalsAngularError()
        client.update(preds[chunk], target[chunk])
        merged.merge_state(client.metric_state)
    assert merged.within() == whole.within()


def test_optional_mask_restricts_the_pixels(normals_batch, gen):
    preds, target = normals_batch
    mask = torch.rand(5, 1, 4, 4, generator=gen) > 0.5
    metric = NormalsAngularError()
    metric.update(preds, target, mask)
    assert float(metric.compute()) == pytest.approx(float(reference_angles(preds, target, mask).mean()), rel=1e-5)


def test_identical_and_opposite_normals_give_exact_angles():
    target = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    same, opposite = NormalsAngularError(), NormalsAngularError()
    same.update(4 * target, target)  # length does not matter (x4 is exact in floating point)
    opposite.update(-target, target)
    assert float(same.compute()) == 0.0
    assert same.within() == {"11.25": 100.0, "22.5": 100.0, "30": 100.0}
    assert float(opposite.compute()) == pytest.approx(180.0)


def test_normals_reject_bad_shapes():
    metric = NormalsAngularError()
    with pytest.raises(ValueError, match=r"preds shape \(2, 2, 4, 4\) and target shape \(2, 2, 4, 4\) must both be"):
        metric.update(torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"preds shape \(2, 3, 4, 4\) and target shape \(2, 3, 5, 5\)"):
        metric.update(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"mask shape \(2, 5, 5\) does not match"):
        metric.update(torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4), torch.ones(2, 5, 5, dtype=torch.bool))


@NONFINITE_VALUES
def test_merr_is_nan_once_one_component_is_not_finite(normals_batch, nan_once_nonfinite, bad):
    preds, target = normals_batch
    metric = nan_once_nonfinite(NormalsAngularError, preds, target, (1, 2, 3, 0), bad)
    assert all(np.isnan(v) for v in metric.within().values())


def test_merr_counts_a_pixel_once_and_also_where_the_target_is_invalid(normals_batch):
    preds, target = normals_batch
    preds[0, :, 0, 0] = float("nan")  # all three components, on the invalid pixel of the fixture
    metric = NormalsAngularError()
    metric.update(preds, target)
    assert int(metric.nonfinite) == 1 and torch.isnan(metric.compute())
