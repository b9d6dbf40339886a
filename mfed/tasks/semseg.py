"""Semantic segmentation: per-pixel cross-entropy, scored by mIoU (label 255 ignored).

Metric as in the dense multi-task literature (Vandenhende et al., MTI-Net): per-class
TP/(TP+FP+FN) over the whole set, mean over classes, x100.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics import MeanIoU
from mfed.tasks.base import DecoderFactory, Task

IGNORE_INDEX = 255


class SemanticSegmentation(Task):
    """Per-pixel classification into ``num_classes`` classes (background included).

    Args:
        name: Task name (default ``semseg``).
        num_classes: Number of classes including background.
        loss_weight: Multiplies the loss.

    """

    headline = "mIoU"
    higher_is_better = {"mIoU": True}

    def __init__(
        self,
        name: str = "semseg",
        num_classes: int = 11,
        loss_weight: float = 1.0,
        decoder: DecoderFactory | None = None,
    ) -> None:
        super().__init__(name, loss_weight, decoder)
        if num_classes < 2:
            raise ValueError(f"tasks.{name}.num_classes must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.out_channels = self.num_classes

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # (B, C, H, W), (B, H, W)
        """Cross-entropy over pixels, ignoring label 255."""
        return F.cross_entropy(output, target, ignore_index=IGNORE_INDEX)

    def metrics(self) -> dict[str, Metric]:
        """MIoU over the set."""
        return {"mIoU": MeanIoU(num_classes=self.num_classes, ignore_index=IGNORE_INDEX)}
