"""Each metric against an independent numpy/scipy/scikit-learn computation, and merged client
states against the metric on the concatenated data."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from mfed.metrics import (
    DepthAbsRel,
    DepthRMSE,
    EdgeODSF,
    MeanIoU,
    MultilabelMAP,
    NormalsAngularError,
    SaliencyMaxF,
    delta_m,
)  # fmt: skip

GEN = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.rand(*shape, generator=GEN)


def merged_equals_whole(make, preds, target, chunks=(0, 2, 3, 5)):
    """Update one metric per client chunk, merge into a fresh one, compare with all data at once."""
    whole = make()
    whole.update(preds, target)
    merged = make()
    for a, b in zip(chunks[:-1], chunks[1:], strict=True):
        client = make()
        client.update(preds[a:b], target[a:b])
        merged.merge_state(client.metric_state)
    torch.testing.assert_close(merged.compute(), whole.compute())
    return float(whole.compute())


def test_miou_against_per_class_loops():
    # Prepare
    target = torch.randint(0, 4, (5, 6, 7), generator=GEN)
    target[0, :2] = 255
    preds = torch.randint(0, 4, (5, 6, 7), generator=GEN)
    t, p = target.numpy(), preds.numpy()
    keep = t != 255
    ious = []
    for c in range(5):  # class 4 never occurs: left out of the mean
        tp = np.sum((t == c) & (p == c) & keep)
        union = np.sum(((t == c) | (p == c)) & keep)
        if union:
            ious.append(tp / union)
    # Execute / Assert
    value = merged_equals_whole(lambda: MeanIoU(num_classes=5), preds, target)
    assert value == pytest.approx(100 * np.mean(ious), rel=1e-6)
    metric = MeanIoU(num_classes=5)
    metric.update(torch.nn.functional.one_hot(preds, 5).permute(0, 3, 1, 2).float(), target)  # scores -> argmax
    assert float(metric.compute()) == pytest.approx(value, rel=1e-6)


def test_depth_rmse_and_absrel_against_masked_numpy():
    target = rand(5, 1, 6, 7) * 10
    target[target < 2] = 0  # invalid
    preds = target + rand(5, 1, 6, 7) - 0.5
    g, p = target.numpy().ravel(), preds.numpy().ravel()
    valid = g > 0
    rmse = merged_equals_whole(DepthRMSE, preds, target)
    assert rmse == pytest.approx(np.sqrt(np.mean((p[valid] - g[valid]) ** 2)), rel=1e-5)
    absrel = merged_equals_whole(DepthAbsRel, preds, target)
    assert absrel == pytest.approx(np.mean(np.abs(p[valid] - g[valid]) / g[valid]), rel=1e-5)
    capped = DepthRMSE(max_depth=5.0)
    capped.update(preds, target)
    in_range = valid & (g < 5.0)
    assert float(capped.compute()) == pytest.approx(np.sqrt(np.mean((p[in_range] - g[in_range]) ** 2)), rel=1e-5)


def reference_odsf(probs, gt, thresholds, radius):
    struct = np.ones((2 * radius + 1, 2 * radius + 1), bool)
    best = 0.0
    for t in thresholds:
        counts = np.zeros(4)
        for prob, edge in zip(probs, gt, strict=True):
            pred = prob >= t
            counts += [
                np.sum(pred & ndimage.binary_dilation(edge, struct)), pred.sum(),
                np.sum(edge & ndimage.binary_dilation(pred, struct)) if pred.any() else 0, edge.sum(),
            ]  # fmt: skip
        p, r = counts[0] / max(counts[1], 1), counts[2] / max(counts[3], 1)
        best = max(best, 2 * p * r / (p + r) if p + r else 0.0)
    return 100 * best


@pytest.mark.parametrize("tolerance", [0, 1, 2])
def test_edge_odsf_against_scipy_dilation(tolerance):
    gt = rand(5, 1, 12, 12) > 0.85
    probs = (gt.float() * 0.6 + rand(5, 1, 12, 12) * 0.5).clamp(0, 1)
    shifted = torch.roll(probs, shifts=1, dims=3)  # a one-pixel miss that tolerance forgives
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    value = merged_equals_whole(lambda: EdgeODSF(thresholds=thresholds, tolerance=tolerance), shifted, gt.float())
    expected = reference_odsf(shifted[:, 0].numpy(), gt[:, 0].numpy(), thresholds, tolerance)
    assert value == pytest.approx(expected, rel=1e-6)


def test_edge_odsf_perfect_prediction_and_best_threshold():
    gt = (rand(2, 1, 8, 8) > 0.8).float()
    metric = EdgeODSF()
    metric.update(gt * 0.7, gt)
    assert float(metric.compute()) == pytest.approx(100.0)
    assert metric.best_threshold() <= 0.7


def test_saliency_maxf_dataset_convention_against_numpy():
    gt = rand(5, 1, 6, 6) > 0.6
    probs = (gt.float() * 0.4 + rand(5, 1, 6, 6) * 0.6).clamp(0, 1)
    value = merged_equals_whole(SaliencyMaxF, probs, gt.float())
    g, pr = gt.numpy().ravel(), probs.numpy().ravel()
    fs = []
    for t in np.arange(1, 20) * 0.05:
        pred = pr >= t
        tp = np.sum(pred & g)
        p, r = tp / max(pred.sum(), 1), tp / max(g.sum(), 1)
        fs.append(1.3 * p * r / (0.3 * p + r) if p + r else 0)
    assert value == pytest.approx(100 * max(fs), rel=1e-6)


def test_saliency_maxf_per_image_convention_against_numpy():
    gt = rand(5, 1, 6, 6) > 0.6
    probs = (gt.float() * 0.4 + rand(5, 1, 6, 6) * 0.6).clamp(0, 1)
    value = merged_equals_whole(lambda: SaliencyMaxF(convention="per_image", beta2=1.0), probs, gt.float())
    fs = []
    for t in np.linspace(0.2, 0.9, 15):
        ps, rs = [], []
        for prob, edge in zip(probs[:, 0].numpy(), gt[:, 0].numpy(), strict=True):
            pred = prob >= t
            tp = np.sum(pred & edge)
            ps.append(tp / max(pred.sum(), 1))
            rs.append(tp / max(edge.sum(), 1))
        p, r = np.mean(ps), np.mean(rs)
        fs.append(2 * p * r / (p + r) if p + r else 0)
    assert value == pytest.approx(100 * max(fs), rel=1e-6)
    with pytest.raises(ValueError, match="convention must be one of"):
        SaliencyMaxF(convention="pixel")


def test_normals_mean_angle_against_arccos():
    target = rand(5, 3, 4, 4) - 0.5
    target[0, :, 0, 0] = 0  # invalid pixel
    preds = target + 0.3 * (rand(5, 3, 4, 4) - 0.5)
    value = merged_equals_whole(NormalsAngularError, preds, target)
    g = target.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    p = preds.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    valid = np.linalg.norm(g, axis=1) > 0
    g, p = (
        g[valid] / np.linalg.norm(g[valid], axis=1, keepdims=True),
        p[valid] / np.linalg.norm(p[valid], axis=1, keepdims=True),
    )
    angles = np.degrees(np.arccos(np.clip(np.sum(g * p, axis=1), -1, 1)))
    assert value == pytest.approx(angles.mean(), rel=1e-5)
    metric = NormalsAngularError()
    metric.update(preds, target)
    assert metric.within()["30"] == pytest.approx(100 * np.mean(angles < 30), rel=1e-6)


def test_multilabel_map_against_sklearn():
    from sklearn.metrics import average_precision_score

    target = (rand(5, 4) > 0.5).float()
    target[0] = 1  # every label has a positive
    preds = (target * 0.3 + rand(5, 4) * 0.7).clamp(0, 1)
    value = merged_equals_whole(lambda: MultilabelMAP(num_labels=4), preds, target)
    assert value == pytest.approx(
        100 * average_precision_score(target.numpy(), preds.numpy(), average="macro"), rel=1e-5
    )


def test_delta_m_hand_computed():
    # mIoU 50 -> 55 is +10 %; rmse 0.5 -> 0.45 (lower is better) is +10 %; mean +10 %
    value = delta_m({"mIoU": 55, "rmse": 0.45}, {"mIoU": 50, "rmse": 0.5}, {"mIoU": False, "rmse": True})
    assert value == pytest.approx(10.0)
    assert delta_m({"a": 40.0}, {"a": 50.0}, {"a": False}) == pytest.approx(-20.0)
    with pytest.raises(ValueError, match="same metric names"):
        delta_m({"a": 1.0}, {"b": 1.0}, {"a": False})
    with pytest.raises(ValueError, match="reference value of \\['a'\\] is 0"):
        delta_m({"a": 1.0}, {"a": 0.0}, {"a": False})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MeanIoU(num_classes=1), "num_classes must be >= 2, got 1"),
        (lambda: EdgeODSF(tolerance=-1), "tolerance must be >= 0"),
        (lambda: EdgeODSF(thresholds=[1.5]), "thresholds must lie in"),
        (lambda: DepthRMSE(min_depth=1, max_depth=1), "max_depth must exceed min_depth"),
        (lambda: MultilabelMAP(num_labels=0), "num_labels must be >= 1"),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"preds shape \(2, 3, 3\) does not match target shape \(2, 4, 4\)"):
        MeanIoU(num_classes=3).update(torch.zeros(2, 3, 3, dtype=torch.long), torch.zeros(2, 4, 4, dtype=torch.long))
