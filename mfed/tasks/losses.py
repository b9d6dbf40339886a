"""Losses shared by several tasks, and the base of the binary-map tasks (edges, saliency)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mfed.tasks.base import DecoderFactory, Task


def balanced_bce(logits: Tensor, target: Tensor, pos_weight: float | None) -> Tensor:
    """Class-balanced binary cross-entropy on logits.

    Positives get weight ``w``, negatives ``1 - w``. With ``pos_weight=None``, ``w`` is the share
    of negatives in the batch (MTL-PyTorch's BalancedCrossEntropyLoss), so rare positives count
    as much as the many negatives.
    """
    positive = target > 0.5
    if pos_weight is None:
        pos_weight = 1.0 - float(positive.float().mean())
    weight = torch.where(positive, pos_weight, 1.0 - pos_weight)
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


class BinaryMapTask(Task):
    """A one-channel map of logits trained with class-balanced BCE, scored on probabilities.

    Args:
        name: Task name.
        pos_weight: Weight of positive pixels in (0, 1); ``None`` balances per batch.
        loss_weight: Multiplies the loss.

    """

    out_channels = 1

    def __init__(
        self, name: str, pos_weight: float | None, loss_weight: float, decoder: DecoderFactory | None = None
    ) -> None:
        super().__init__(name, loss_weight, decoder)
        if pos_weight is not None and not 0.0 < pos_weight < 1.0:
            raise ValueError(f"tasks.{name}.pos_weight must lie in (0, 1) or be null, got {pos_weight}")
        self.pos_weight = pos_weight

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # (B, 1, H, W) both
        """Class-balanced binary cross-entropy on logits."""
        return balanced_bce(output, target, self.pos_weight)

    def activate(self, output: Tensor) -> Tensor:
        """Probabilities of the positive class."""
        return torch.sigmoid(output)
