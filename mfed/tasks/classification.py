"""Multi-label classification (which classes appear in the image), scored by mAP.

The decoder is the same dense decoder as every other task; its class maps are averaged over the
image (global average pooling of logits) to give one logit per class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics import MultilabelMAP
from mfed.tasks.base import DecoderFactory, Task


class MultiLabelClassification(Task):
    """Presence of each of ``num_labels`` classes.

    Args:
        name: Task name (default ``classification``).
        num_labels: Number of classes.
        loss_weight: Multiplies the loss.

    """

    headline = "mAP"
    higher_is_better = {"mAP": True}

    def __init__(
        self,
        name: str = "classification",
        num_labels: int = 10,
        loss_weight: float = 1.0,
        decoder: DecoderFactory | None = None,
    ) -> None:
        super().__init__(name, loss_weight, decoder)
        if num_labels < 1:
            raise ValueError(f"tasks.{name}.num_labels must be >= 1, got {num_labels}")
        self.num_labels = self.out_channels = int(num_labels)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # (B, L, H, W), (B, L)
        """Binary cross-entropy of the pooled logits."""
        return F.binary_cross_entropy_with_logits(output.mean(dim=(2, 3)), target)

    def activate(self, output: Tensor) -> Tensor:
        """Class probabilities (B, L)."""
        return torch.sigmoid(output.mean(dim=(2, 3)))

    def metrics(self) -> dict[str, Metric]:
        """Macro mean average precision over classes."""
        return {"mAP": MultilabelMAP(num_labels=self.num_labels)}
