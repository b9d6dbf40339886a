"""Saliency maxF: the F-measure at the best threshold of the foreground probability.

Two conventions exist (PROTOCOL.md section 2):

- ``dataset`` (FedHCA2; the default): TP/FP/FN counted over all pixels of the set per threshold,
  thresholds 0.05..0.95 step 0.05, F_beta with beta^2 = 0.3, max over thresholds;
- ``per_image`` (MTI-Net / Multi-Task-Learning-PyTorch): precision and recall per image, averaged
  over images, thresholds linspace(0.2, 0.9, 15), F = (1 + beta^2) P R / (beta^2 P + R)
  (MTL-PyTorch uses beta^2 = 1, i.e. pass ``beta2=1.0``).

Both are reported x100. States are sums, so merging clients is exact for both.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics._util import as_maps

CONVENTIONS = ("dataset", "per_image")
_DEFAULT_THRESHOLDS = {
    "dataset": torch.arange(1, 20, dtype=torch.float64) * 0.05,
    "per_image": torch.linspace(0.2, 0.9, 15, dtype=torch.float64),
}


class SaliencyMaxF(Metric):
    """maxF x100 over a set.

    Args:
        thresholds: Threshold values; ``None`` takes the convention's grid.
        beta2: beta^2 of the F-measure (0.3 emphasises precision, as in the saliency literature).
        convention: ``dataset`` or ``per_image``.

    """

    full_state_update = False
    higher_is_better = True
    thresholds: Tensor
    sums: Tensor
    images: Tensor

    def __init__(
        self, thresholds: Sequence[float] | None = None, beta2: float = 0.3, convention: str = "dataset"
    ) -> None:
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"saliency convention must be one of {CONVENTIONS}, got {convention!r}")
        if beta2 <= 0:
            raise ValueError(f"beta2 must be > 0, got {beta2}")
        grid = (
            _DEFAULT_THRESHOLDS[convention]
            if thresholds is None
            else torch.tensor(list(thresholds), dtype=torch.float64)
        )
        self.convention, self.beta2 = convention, float(beta2)
        self.register_buffer("thresholds", grid, persistent=False)
        # dataset: rows TP, predicted positives, gt positives; per_image: rows sum P, sum R, unused
        self.add_state("sums", torch.zeros(3, len(grid), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``: foreground probabilities, ``target``: binary; ``(B, 1, H, W)`` or ``(B, H, W)``."""
        preds, target = as_maps(preds, target, "SaliencyMaxF")
        gt = (target > 0.5).flatten(1)  # (B, HW)
        probs = preds.flatten(1)
        for i, t in enumerate(self.thresholds.tolist()):
            pred = probs >= t
            tp = (pred & gt).sum(1).double()
            if self.convention == "dataset":
                self.sums[:, i] += torch.stack([tp.sum(), pred.sum().double(), gt.sum().double()])
            else:
                self.sums[0, i] += (tp / pred.sum(1).clamp(min=1)).sum()
                self.sums[1, i] += (tp / gt.sum(1).clamp(min=1)).sum()
        self.images += len(gt)

    def f_scores(self) -> Tensor:
        """F_beta at every threshold."""
        if self.convention == "dataset":
            precision = self.sums[0] / self.sums[1].clamp(min=1)
            recall = self.sums[0] / self.sums[2].clamp(min=1)
        else:
            precision, recall = self.sums[0] / self.images.clamp(min=1), self.sums[1] / self.images.clamp(min=1)
        return (1 + self.beta2) * precision * recall / (self.beta2 * precision + recall).clamp(min=1e-12)

    def compute(self) -> Tensor:
        """Best F over thresholds, x100."""
        return (self.f_scores().max() * 100).float()
