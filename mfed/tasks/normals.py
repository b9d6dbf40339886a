"""Surface normals: L1 between unit vectors on valid pixels, scored by mean angular error (mErr).

As in the dense multi-task protocol (MTI-Net, FedHCA2): predictions are normalised to unit
length; pixels whose target has zero norm are invalid. Lower mErr (degrees) is better.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics import NormalsAngularError
from mfed.tasks.base import DecoderFactory, Task


class Normals(Task):
    """Per-pixel unit normal (three output channels).

    Args:
        name: Task name (default ``normals``).
        loss_weight: Multiplies the loss (x10 in the PASCAL and NYUD protocols).

    """

    out_channels = 3
    headline = "mErr"
    higher_is_better = {"mErr": False}

    def __init__(self, name: str = "normals", loss_weight: float = 10.0, decoder: DecoderFactory | None = None) -> None:
        super().__init__(name, loss_weight, decoder)

    def activate(self, output: Tensor) -> Tensor:
        """Unit-length normals (B, 3, H, W)."""
        return F.normalize(output, dim=1)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # (B, 3, H, W) both
        """Mean absolute difference of unit vectors over valid pixels."""
        valid = (target.norm(dim=1, keepdim=True) > 0).expand_as(target)
        if not bool(valid.any()):
            return output.sum() * 0.0
        return (self.activate(output) - target).abs()[valid].mean()

    def metrics(self) -> dict[str, Metric]:
        """Mean angular error in degrees."""
        return {"mErr": NormalsAngularError()}
