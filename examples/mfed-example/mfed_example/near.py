"""A task of the project's own: which pixels lie nearer than a depth, learnt from the depth maps.

It needs no new labels: its target is the data set's ``depth`` map, thresholded. Scored by the
intersection over union of the near region (torchmetrics' ``BinaryJaccardIndex``, whose confusion
counts merge exactly across clients); pixels without depth (0) are ignored by loss and metric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import BinaryJaccardIndex

from mfed.tasks.base import Task

IGNORED = -1  # the metric's label for pixels without depth


class Near(Task):
    """Pixels nearer than ``threshold``, as one map of logits.

    Args:
        name: Task name (default ``near``).
        threshold: Depth (in the data's units) below which a pixel is near.
        loss_weight: Multiplies the loss.

    """

    out_channels = 1
    headline = "IoU"
    higher_is_better = {"IoU": True}

    def __init__(self, name: str = "near", threshold: float = 5.0, loss_weight: float = 1.0, decoder=None) -> None:
        super().__init__(name, loss_weight, decoder)
        if threshold <= 0:
            raise ValueError(f"tasks.{name}.threshold must be > 0, got {threshold}")
        self.threshold = float(threshold)

    @property
    def target_key(self) -> str:
        """The data set's depth map: the target is derived from it."""
        return "depth"

    def labels(self, depth: Tensor) -> Tensor:
        """1 where near, 0 where far, :data:`IGNORED` where there is no depth."""
        near = (depth < self.threshold).long()
        return torch.where(depth > 0, near, torch.full_like(near, IGNORED))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # (B, 1, H, W) both
        """Binary cross-entropy over the pixels with depth."""
        labels = self.labels(target)
        valid = labels != IGNORED
        return F.binary_cross_entropy_with_logits(output[valid], labels[valid].float())

    def activate(self, output: Tensor) -> Tensor:
        """Probabilities of near."""
        return torch.sigmoid(output)

    def metrics(self) -> dict[str, Metric]:
        """IoU of the near region over the set."""
        return {"IoU": NearIoU(self)}


class NearIoU(BinaryJaccardIndex):
    """``BinaryJaccardIndex`` on labels the task derives from depth."""

    def __init__(self, task: Near) -> None:
        super().__init__(ignore_index=IGNORED)
        self.task = task

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Count the batch against its near labels."""
        super().update(preds, self.task.labels(target))
