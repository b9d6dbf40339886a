"""Mean intersection over union from a confusion matrix pooled over the whole set.

Definition (MTI-Net / Multi-Task-Learning-PyTorch, PROTOCOL.md section 2): per class
IoU_c = TP / (TP + FP + FN) over all pixels of the set, label 255 ignored, mean over classes, x100.
Classes that never occur in prediction or target (union 0) are left out of the mean: they carry
no evidence either way. Merging clients = summing their confusion matrices.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class MeanIoU(Metric):
    """mIoU x100 over a set, from a ``(C, C)`` int64 confusion matrix (rows: target, cols: pred).

    Args:
        num_classes: Number of classes (>= 2).
        ignore_index: Target label that is skipped.

    """

    full_state_update = False
    higher_is_better = True
    confmat: Tensor

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``: ``(B, C, H, W)`` scores (argmax taken) or ``(B, H, W)`` labels; ``target``: ``(B, H, W)``."""
        if preds.ndim == target.ndim + 1:
            if preds.shape[1] != self.num_classes:
                raise ValueError(f"preds have {preds.shape[1]} channels but num_classes={self.num_classes}")
            preds = preds.argmax(dim=1)
        if preds.shape != target.shape:
            raise ValueError(f"preds shape {tuple(preds.shape)} does not match target shape {tuple(target.shape)}")
        keep = target != self.ignore_index
        t, p = target[keep].long(), preds[keep].long()
        if t.numel() and (t.max() >= self.num_classes or t.min() < 0):
            raise ValueError(f"target holds labels outside [0, {self.num_classes}) other than {self.ignore_index}")
        self.confmat += torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2).view(
            self.num_classes, self.num_classes
        )

    def per_class_iou(self) -> Tensor:
        """IoU of every class (NaN where the class never occurs)."""
        cm = self.confmat.double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def compute(self) -> Tensor:
        """Mean IoU over classes that occur, x100."""
        return (torch.nanmean(self.per_class_iou()) * 100).float()
