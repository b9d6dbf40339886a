"""Edge detection: class-balanced BCE, scored by odsF (approximation).

Loss as in MTL-PyTorch / FedHCA2 (positive weight 0.95, negatives 0.05, since edge pixels are
rare). The metric is the optimal-dataset-scale F-measure computed in Python with a pixel match
tolerance; it approximates, and is not, the MATLAB SEISM protocol (see :class:`EdgeODSF`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics import EdgeODSF
from mfed.tasks.base import Task
from mfed.tasks.losses import balanced_bce


class Edges(Task):
    """Binary boundary map (one output channel, logits).

    Args:
        name: Task name (default ``edges``).
        pos_weight: Weight of edge pixels in the BCE; non-edge pixels get ``1 - pos_weight``.
        tolerance: Match tolerance of the F-measure in pixels.
        loss_weight: Multiplies the loss.

    """

    out_channels = 1
    headline = "odsF"
    higher_is_better = {"odsF": True}

    def __init__(
        self,
        name: str = "edges",
        pos_weight: float = 0.95,
        tolerance: int = 1,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(name, loss_weight)
        if not 0.0 < pos_weight < 1.0:
            raise ValueError(f"tasks.{name}.pos_weight must lie in (0, 1), got {pos_weight}")
        if tolerance < 0:
            raise ValueError(f"tasks.{name}.tolerance must be >= 0 pixels, got {tolerance}")
        self.pos_weight = float(pos_weight)
        self.tolerance = int(tolerance)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # (B, 1, H, W) both
        """Class-balanced binary cross-entropy on logits."""
        return balanced_bce(output, target, self.pos_weight)

    def activate(self, output: Tensor) -> Tensor:
        """Edge probabilities."""
        return torch.sigmoid(output)

    def metrics(self) -> dict[str, Metric]:
        """OdsF (approximation) over the set."""
        return {"odsF": EdgeODSF(tolerance=self.tolerance)}
