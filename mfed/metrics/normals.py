"""Surface normals: mean angular error in degrees over all valid pixels of the set (mErr).

Prediction and target are unit-normalised; a pixel is valid where the target has non-zero norm;
the angle is 2 atan2(||p - g||, ||p + g||), which is accurate near 0 and 180 degrees unlike
arccos of the dot product (PROTOCOL.md section 2). Also the share of pixels within 11.25, 22.5
and 30 degrees, as the NYUD literature reports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

WITHIN = (11.25, 22.5, 30.0)


class NormalsAngularError(Metric):
    """Mean angular error in degrees (lower is better)."""

    full_state_update = False
    higher_is_better = False
    total: Tensor
    count: Tensor
    within_counts: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("within_counts", torch.zeros(len(WITHIN), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``, ``target``: ``(B, 3, H, W)`` normals (any length; zero target = invalid)."""
        if preds.shape != target.shape or preds.ndim != 4 or preds.shape[1] != 3:
            raise ValueError(f"normals must both be (B, 3, H, W), got {tuple(preds.shape)} and {tuple(target.shape)}")
        valid = target.norm(dim=1) > 0  # (B, H, W)
        p = F.normalize(preds.double(), dim=1).permute(0, 2, 3, 1)[valid]  # (N, 3)
        g = F.normalize(target.double(), dim=1).permute(0, 2, 3, 1)[valid]
        angles = torch.rad2deg(2 * torch.atan2((p - g).norm(dim=1), (p + g).norm(dim=1)))
        self.total += angles.sum()
        self.count += angles.numel()
        self.within_counts += torch.stack([(angles < w).sum() for w in WITHIN])

    def within(self) -> dict[str, float]:
        """Percentage of valid pixels within each angle of :data:`WITHIN`."""
        return {
            f"{w:g}": float(c) * 100 / max(int(self.count), 1) for w, c in zip(WITHIN, self.within_counts, strict=True)
        }

    def compute(self) -> Tensor:
        """Mean angle in degrees."""
        return (self.total / self.count).float()
