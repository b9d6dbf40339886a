"""Monocular depth: L1 on valid pixels, scored by RMSE pooled over the set (lower is better).

Loss and metric as in the NYUD-v2 multi-task protocol (MTI-Net, FedHCA2): invalid pixels carry
depth 0 and are left out of both.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics import DepthAbsRel, DepthRMSE
from mfed.tasks.base import DecoderFactory, Task


class Depth(Task):
    """Per-pixel depth regression (one output channel, metres or scene units).

    The decoder predicts ``depth - offset``: with ``offset`` near the data's typical depth, a
    freshly initialised decoder (output near 0) starts at a sensible depth instead of spending
    its first hundreds of steps growing a bias.

    Args:
        name: Task name (default ``depth``).
        offset: Added to the decoder's output (scene units / metres).
        loss_weight: Multiplies the loss.

    """

    out_channels = 1
    headline = "rmse"
    higher_is_better = {"rmse": False, "abs_rel": False}

    def __init__(
        self, name: str = "depth", offset: float = 0.0, loss_weight: float = 1.0, decoder: DecoderFactory | None = None
    ) -> None:
        super().__init__(name, loss_weight, decoder)
        self.offset = float(offset)

    def activate(self, output: Tensor) -> Tensor:
        """Depth: the decoder output plus the offset."""
        return output + self.offset

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # (B, 1, H, W) both
        """Mean absolute error over pixels with a valid (positive) depth."""
        valid = target > 0
        if not bool(valid.any()):
            return output.sum() * 0.0  # keeps the graph; a batch with no valid pixel adds nothing
        return torch.abs(self.activate(output)[valid] - target[valid]).mean()

    def metrics(self) -> dict[str, Metric]:
        """Pooled RMSE and absolute relative error over valid pixels."""
        return {"rmse": DepthRMSE(), "abs_rel": DepthAbsRel()}
