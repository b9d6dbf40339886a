"""Losses shared by several tasks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
