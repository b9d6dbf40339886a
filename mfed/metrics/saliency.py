"""Saliency maxF: the F-measure at the best threshold of the foreground probability.

Two conventions exist (PROTOCOL.md section 2); both are reported x100:

- ``dataset`` (FedHCA2; the default): a pixel is foreground when prob >= t; TP, predicted and
  actual positives are counted over all pixels of the set per threshold t in 0.05..0.95 (step
  0.05); F_beta with beta^2 = 0.3; max over thresholds. Target pixels equal to ``ignore_index``
  (255) are skipped, as in FedHCA2.
- ``per_image`` (MTI-Net / Multi-Task-Learning-PyTorch ``eval_sal``): a pixel is foreground when
  prob > t (strict, as there); precision and recall per image (0 where the image has no predicted
  or no actual positive), averaged over images, t in linspace(0.2, 0.9, 15); then
  F = (1 + beta^2) P R / (beta^2 P + R) with beta^2 = 1 by default, i.e. MTL-PyTorch's 2PR/(P+R).

States are sums (integer counts, or sums of per-image precision and recall with an image count),
so merging clients equals the metric on their concatenated data for both conventions. A NaN or
inf probability at any pixel (ignored pixels included) makes the result NaN in both: NaN never
reaches a threshold, so it would otherwise count as background and give a plausible score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics._util import (
    add_nonfinite_state,
    as_maps,
    as_probabilities,
    check_binary_ignore_index,
    count_nonfinite,
    count_reaching_masks,
    nan_if_nonfinite,
    threshold_grid,
)

CONVENTIONS = ("dataset", "per_image")
_DEFAULT_THRESHOLDS = {
    "dataset": [0.05 * k for k in range(1, 20)],
    "per_image": torch.linspace(0.2, 0.9, 15, dtype=torch.float64).tolist(),
}
_DEFAULT_BETA2 = {"dataset": 0.3, "per_image": 1.0}


class SaliencyMaxF(Metric):
    """maxF x100 over a set (higher is better); see the module docstring for the conventions.

    Args:
        thresholds: Threshold values in [0, 1]; ``None`` takes the convention's grid.
        beta2: beta^2 of the F-measure (> 0); ``None`` takes the convention's (0.3 for ``dataset``,
            1.0 for ``per_image``). 0.3 weighs precision more, as the saliency literature does.
        convention: ``dataset`` (FedHCA2) or ``per_image`` (MTL-PyTorch).
        ignore_index: Target value whose pixels are skipped; ``None`` keeps all pixels.

    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    thresholds: Tensor
    counts: Tensor  # dataset convention
    sums: Tensor  # per_image convention
    images: Tensor  # per_image convention
    nonfinite: Tensor

    def __init__(
        self,
        thresholds: Sequence[float] | None = None,
        beta2: float | None = None,
        convention: str = "dataset",
        ignore_index: int | None = 255,
    ) -> None:
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"saliency convention must be one of {CONVENTIONS}, got {convention!r}")
        check_binary_ignore_index(ignore_index)
        beta2 = _DEFAULT_BETA2[convention] if beta2 is None else beta2
        if not (math.isfinite(beta2) and beta2 > 0):
            raise ValueError(f"beta2 must be a finite number > 0, got {beta2}")
        grid = threshold_grid(_DEFAULT_THRESHOLDS[convention] if thresholds is None else thresholds)
        self.convention: str = convention
        self.beta2: float = float(beta2)
        self.ignore_index: int | None = ignore_index
        self.strict: bool = convention == "per_image"  # MTL-PyTorch binarises with prob > t, FedHCA2 with >=
        self.register_buffer("thresholds", grid, persistent=False)
        if convention == "dataset":
            # rows: true positives, predicted positives, actual positives; one column per threshold
            self.add_state("counts", torch.zeros(3, len(grid), dtype=torch.int64), dist_reduce_fx="sum")
        else:
            # rows: sum over images of precision, of recall; one column per threshold
            self.add_state("sums", torch.zeros(2, len(grid), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        add_nonfinite_state(self)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch.

        Args:
            preds: Foreground probabilities ``(B, 1, H, W)`` or ``(B, H, W)``.
            target: Binary foreground (> 0.5 is foreground) of the same shape.

        """
        preds, target = as_maps(preds, target, "SaliencyMaxF")
        self.nonfinite += count_nonfinite(preds)
        valid = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        gt = ((target > 0.5) & valid).flatten(1)  # (B, HW)
        valid, probs = valid.flatten(1), as_probabilities(preds).flatten(1)
        if self.convention == "dataset":
            probs, gt, valid = probs.reshape(1, -1), gt.reshape(1, -1), valid.reshape(1, -1)
        tp, predicted = count_reaching_masks(probs, (gt, valid), self.thresholds, self.strict)  # (B or 1, T) each
        positives = gt.sum(1, keepdim=True)
        if self.convention == "dataset":
            self.counts += torch.cat([tp, predicted, positives.expand_as(tp)])
        else:
            precision = tp.double() / predicted.clamp(min=1)
            recall = tp.double() / positives.clamp(min=1)
            self.sums += torch.stack([precision.sum(0), recall.sum(0)])
            self.images += len(gt)

    def precision_recall(self) -> tuple[Tensor, Tensor]:
        """Precision and recall at every threshold, each ``(T,)`` float64 (NaN after a non-finite prediction)."""
        if self.convention == "dataset":
            counts = self.counts.double()
            precision, recall = counts[0] / counts[1].clamp(min=1), counts[0] / counts[2].clamp(min=1)
        else:
            images = self.images.clamp(min=1).double()
            precision, recall = self.sums[0] / images, self.sums[1] / images
        return nan_if_nonfinite(precision, self), nan_if_nonfinite(recall, self)

    def f_scores(self) -> Tensor:
        """F_beta at every threshold (0 where precision and recall are both 0)."""
        precision, recall = self.precision_recall()
        return (1 + self.beta2) * precision * recall / (self.beta2 * precision + recall).clamp(min=1e-12)

    def best_threshold(self) -> float:
        """The threshold of the best F (the lowest one on a tie; NaN after a non-finite prediction)."""
        if int(self.nonfinite):
            return float("nan")
        return float(self.thresholds[int(torch.argmax(self.f_scores()))])

    def compute(self) -> Tensor:
        """Best F over thresholds, x100, as a 0-d float32 tensor (NaN after a non-finite prediction)."""
        return (self.f_scores().max() * 100).float()
