import numpy as np
import pytest
import torch

from mfed.metrics import SaliencyMaxF
from tests.unit.metrics.conftest import NONFINITE_VALUES


@pytest.fixture
def saliency_batch(gen):
    gt = torch.rand(5, 1, 6, 6, generator=gen) > 0.6
    probs = (gt.float() * 0.4 + torch.rand(5, 1, 6, 6, generator=gen) * 0.6).clamp(0, 1)
    return probs, gt.float()


def reference_dataset_maxf(probs, fg, valid, thresholds, beta2):
    """FedHCA2: counts over all valid pixels of the set, pred = prob >= t, F_beta, max."""
    best = 0.0
    for t in thresholds:
        pred = (probs >= t) & valid
        tp = np.sum(pred & fg & valid)
        p, r = tp / max(pred.sum(), 1), tp / max(np.sum(fg & valid), 1)
        best = max(best, (1 + beta2) * p * r / (beta2 * p + r) if p + r else 0.0)
    return 100 * best


def reference_per_image_maxf(probs, fg, thresholds):
    """MTL-PyTorch eval_sal: pred = prob > t, per-image P and R (eps-guarded), averaged, F = 2PR/(P+R)."""
    best = 0.0
    for t in thresholds:
        ps, rs = [], []
        for prob, gt in zip(probs, fg, strict=True):
            pred = prob > t
            tp, fp, fn = np.sum(pred & gt), np.sum(pred & ~gt), np.sum(~pred & gt)
            ps.append(tp / (tp + fp + 1e-12))
            rs.append(tp / (tp + fn + 1e-12))
        p, r = np.mean(ps), np.mean(rs)
        best = max(best, 2 * p * r / (p + r + 1e-12))
    return 100 * best


def test_dataset_convention_matches_numpy_and_merges_exactly(saliency_batch, merged_equals_whole):
    probs, gt = saliency_batch
    gt[0, 0, 0] = 255  # ignored, as in FedHCA2
    metric = merged_equals_whole(SaliencyMaxF, probs, gt)
    g = gt.numpy().ravel()
    expected = reference_dataset_maxf(probs.numpy().ravel(), g == 1, g != 255, np.arange(1, 20) * 0.05, 0.3)
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(metric.thresholds.numpy(), np.arange(1, 20) * 0.05)


def test_per_image_convention_matches_mtl_pytorch_and_merges_exactly(saliency_batch, merged_equals_whole):
    probs, gt = saliency_batch
    gt[1] = 0  # an image without foreground: recall 0 there, as in MTL-PyTorch
    metric = merged_equals_whole(lambda: SaliencyMaxF(convention="per_image"), probs, gt)
    expected = reference_per_image_maxf(probs[:, 0].numpy(), gt[:, 0].numpy() == 1, np.linspace(0.2, 0.9, 15))
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)
    assert metric.beta2 == 1.0
    assert int(metric.images) == 5


def test_explicit_beta2_and_thresholds_override_the_convention(saliency_batch):
    probs, gt = saliency_batch
    metric = SaliencyMaxF(thresholds=[0.6, 0.3], beta2=1.0, convention="dataset", ignore_index=None)
    metric.update(probs[:, 0], gt[:, 0])
    g = gt.numpy().ravel() == 1
    expected = reference_dataset_maxf(probs.numpy().ravel(), g, np.ones_like(g), [0.3, 0.6], 1.0)
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)
    assert metric.best_threshold() in (0.3, 0.6)


def test_perfect_prediction_is_100_in_both_conventions():
    gt = torch.zeros(2, 1, 4, 4)
    gt[:, :, 1:3, 1:3] = 1
    for convention in ("dataset", "per_image"):
        metric = SaliencyMaxF(convention=convention)
        metric.update(gt * 0.97, gt)
        assert float(metric.compute()) == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"convention": "pixel"}, r"saliency convention must be one of \('dataset', 'per_image'\), got 'pixel'"),
        ({"beta2": 0.0}, r"beta2 must be a finite number > 0, got 0.0"),
        ({"thresholds": [0.5, 1.2]}, r"thresholds must be a non-empty sequence of numbers in \[0, 1\]"),
        ({"ignore_index": 0}, r"ignore_index must be None or an int other than 0 and 1, got 0"),
    ],
)
def test_saliency_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SaliencyMaxF(**kwargs)


def test_saliency_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"preds shape \(2, 3, 3\) does not match target shape \(2, 4, 4\)"):
        SaliencyMaxF().update(torch.zeros(2, 1, 3, 3), torch.zeros(2, 4, 4))


@NONFINITE_VALUES
@pytest.mark.parametrize("convention", ["dataset", "per_image"])
def test_maxf_is_nan_once_one_probability_is_not_finite(saliency_batch, nan_once_nonfinite, convention, bad):
    # NaN never reaches a threshold: without the guard it would count as background.
    probs, gt = saliency_batch
    metric = nan_once_nonfinite(lambda: SaliencyMaxF(convention=convention), probs, gt, (0, 0, 1, 5), bad)
    precision, recall = metric.precision_recall()
    assert torch.isnan(precision).all() and torch.isnan(recall).all() and np.isnan(metric.best_threshold())


def test_maxf_counts_a_nan_on_an_ignored_pixel(saliency_batch):
    probs, gt = saliency_batch
    gt[2, 0, 3, 3], probs[2, 0, 3, 3] = 255, float("nan")
    metric = SaliencyMaxF()
    metric.update(probs, gt)
    assert int(metric.nonfinite) == 1 and torch.isnan(metric.compute())
