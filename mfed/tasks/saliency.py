"""Saliency (foreground vs background): balanced BCE, scored by maxF.

maxF follows FedHCA2's convention by default (dataset-level counts, thresholds 0.05..0.95,
F_beta with beta^2 = 0.3); MTL-PyTorch's per-image convention is ``convention=per_image``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics import SaliencyMaxF
from mfed.tasks.base import Task
from mfed.tasks.losses import balanced_bce


class Saliency(Task):
    """Binary foreground map (one output channel, logits).

    Args:
        name: Task name (default ``saliency``).
        convention: maxF convention, ``dataset`` or ``per_image``.
        pos_weight: Weight of foreground pixels; ``None`` balances per batch.
        loss_weight: Multiplies the loss (x5 in the PASCAL protocol).

    """

    out_channels = 1
    headline = "maxF"
    higher_is_better = {"maxF": True}

    def __init__(
        self,
        name: str = "saliency",
        convention: str = "dataset",
        pos_weight: float | None = None,
        loss_weight: float = 5.0,
    ) -> None:
        super().__init__(name, loss_weight)
        if pos_weight is not None and not 0.0 < pos_weight < 1.0:
            raise ValueError(f"tasks.{name}.pos_weight must lie in (0, 1) or be null, got {pos_weight}")
        self.convention, self.pos_weight = convention, pos_weight
        self.metrics()  # validates the convention now

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # (B, 1, H, W) both
        """Balanced binary cross-entropy on logits."""
        return balanced_bce(output, target, self.pos_weight)

    def activate(self, output: Tensor) -> Tensor:
        """Foreground probabilities."""
        return torch.sigmoid(output)

    def metrics(self) -> dict[str, Metric]:
        """MaxF over the set."""
        return {"maxF": SaliencyMaxF(convention=self.convention)}
