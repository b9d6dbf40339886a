"""Edge detection: odsF (approximation), the optimal-dataset-scale F-measure in Python.

The field's protocol is MATLAB SEISM (Pont-Tuset & Marques) after non-maximum suppression:
thresholds 0.01..0.99, predicted and ground-truth edge pixels matched one-to-one (bipartite
matching) within maxDist = 0.0075 (PASCAL) / 0.011 (NYUD) of the image diagonal, TP/FP/FN pooled
over the set per threshold, best F. This approximation differs in three ways, so its numbers are
close to but not comparable with published odsF:

- no non-maximum suppression or thinning of the prediction;
- matching by dilation within ``tolerance`` pixels (Chebyshev distance), not one-to-one: a
  predicted pixel counts as correct when any ground-truth edge lies within the tolerance, and a
  ground-truth pixel as found when any predicted edge does;
- the tolerance is a fixed number of pixels, not a fraction of the diagonal.

Per threshold t the state holds (correct predictions, predictions, found gt, gt), pooled over
the set, so merging clients = summing states.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics._util import as_maps


def _thresholds(thresholds: int | Sequence[float]) -> Tensor:
    if isinstance(thresholds, int):
        if thresholds < 1:
            raise ValueError(f"thresholds must be >= 1, got {thresholds}")
        return torch.linspace(0.01, 0.99, thresholds, dtype=torch.float64)
    values = torch.tensor(list(thresholds), dtype=torch.float64)
    if values.numel() == 0 or values.min() < 0 or values.max() > 1:
        raise ValueError(f"thresholds must lie in [0, 1], got {list(thresholds)}")
    return values


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Boolean dilation of ``(B, H, W)`` maps by a square of side ``2 * radius + 1``."""
    if radius == 0:
        return mask
    return F.max_pool2d(mask[:, None].float(), 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


class EdgeODSF(Metric):
    """odsF (approximation) x100: best F over thresholds of counts pooled over the set.

    Args:
        thresholds: Number of thresholds in linspace(0.01, 0.99) (99 by default) or the values.
        tolerance: Match distance in pixels (>= 0).

    """

    full_state_update = False
    higher_is_better = True
    thresholds: Tensor
    counts: Tensor

    def __init__(self, thresholds: int | Sequence[float] = 99, tolerance: int = 1) -> None:
        super().__init__()
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
        self.tolerance = int(tolerance)
        self.register_buffer("thresholds", _thresholds(thresholds), persistent=False)
        self.add_state("counts", torch.zeros(4, len(self.thresholds), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``: edge probabilities, ``target``: binary edges; ``(B, 1, H, W)`` or ``(B, H, W)``."""
        preds, target = as_maps(preds, target, "EdgeODSF")
        gt = target > 0.5
        near_gt = dilate(gt, self.tolerance)
        for i, t in enumerate(self.thresholds.tolist()):
            pred = preds >= t
            self.counts[0, i] += (pred & near_gt).sum()
            self.counts[1, i] += pred.sum()
            self.counts[2, i] += (gt & dilate(pred, self.tolerance)).sum()
            self.counts[3, i] += gt.sum()

    def f_scores(self) -> Tensor:
        """F-measure at every threshold."""
        precision = self.counts[0] / self.counts[1].clamp(min=1)
        recall = self.counts[2] / self.counts[3].clamp(min=1)
        return 2 * precision * recall / (precision + recall).clamp(min=1e-12)

    def best_threshold(self) -> float:
        """The threshold of the best F."""
        return float(self.thresholds[int(torch.argmax(self.f_scores()))])

    def compute(self) -> Tensor:
        """Best F over thresholds, x100."""
        return (self.f_scores().max() * 100).float()
