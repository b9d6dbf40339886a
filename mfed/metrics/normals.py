"""Surface normals: mean angular error in degrees over all valid pixels of the set (mErr).

PROTOCOL.md section 2 (MTI-Net / MTL-PyTorch ``eval_normals``): prediction and target are
unit-normalised; a pixel is valid where the target has non-zero norm; the per-pixel angles are
pooled over the whole set. The angle is computed as 2 atan2(||p - g||, ||p + g||), equal to
arccos(p . g) for unit vectors but accurate near 0 and 180 degrees where arccos is not. Also the
share of pixels under 11.25, 22.5 and 30 degrees (strictly, as MTL-PyTorch), which the NYUD
literature reports. Merging clients = summing the angle sum and the counts. A pixel whose
predicted vector has any NaN or inf component (invalid pixels included) makes both NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics._util import add_nonfinite_state, count_nonfinite, nan_if_nonfinite

WITHIN = (11.25, 22.5, 30.0)


class NormalsAngularError(Metric):
    """Mean angular error in degrees over all valid pixels of the set (lower is better).

    ``compute()`` returns the mean angle (mErr) as a 0-d float32 tensor (NaN while no valid pixel
    has been seen, and once any pixel's predicted vector had a NaN or inf component, invalid
    pixels included); :meth:`within` gives the shares under :data:`WITHIN` degrees (NaN alike).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False
    total: Tensor
    count: Tensor
    within_counts: Tensor
    nonfinite: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("within_counts", torch.zeros(len(WITHIN), dtype=torch.int64), dist_reduce_fx="sum")
        add_nonfinite_state(self)

    def update(self, preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add the valid pixels of a batch.

        Args:
            preds: Predicted normals ``(B, 3, H, W)``, any length (normalised here).
            target: Ground-truth normals ``(B, 3, H, W)``; zero vectors mark invalid pixels.
            mask: Optional ``(B, H, W)`` or ``(B, 1, H, W)`` boolean map of further valid pixels.

        """
        if preds.shape != target.shape or preds.ndim != 4 or preds.shape[1] != 3:
            raise ValueError(
                f"NormalsAngularError: preds shape {tuple(preds.shape)} and target shape {tuple(target.shape)} "
                "must both be (B, 3, H, W)"
            )
        valid = target.norm(dim=1) > 0  # (B, H, W)
        if mask is not None:
            if mask.ndim == 4 and mask.shape[1] == 1:
                mask = mask[:, 0]
            if mask.shape != valid.shape:
                raise ValueError(
                    f"NormalsAngularError: mask shape {tuple(mask.shape)} does not match (B, H, W) "
                    f"of preds shape {tuple(preds.shape)}"
                )
            valid &= mask.bool()
        self.nonfinite += count_nonfinite(preds, dim=1)  # one prediction per pixel: its 3 components
        p = F.normalize(preds.double(), dim=1).permute(0, 2, 3, 1)[valid]  # (N, 3)
        g = F.normalize(target.double(), dim=1).permute(0, 2, 3, 1)[valid]
        angles = torch.rad2deg(2 * torch.atan2((p - g).norm(dim=1), (p + g).norm(dim=1)))
        self.total += angles.sum()
        self.count += angles.numel()
        self.within_counts += torch.stack([(angles < w).sum() for w in WITHIN])

    def within(self) -> dict[str, float]:
        """Percentage of valid pixels under each angle of :data:`WITHIN`, keyed ``"11.25"``, ``"22.5"``, ``"30"``."""
        count = max(int(self.count), 1)
        if int(self.nonfinite):
            return {f"{w:g}": float("nan") for w in WITHIN}
        return {f"{w:g}": float(c) * 100 / count for w, c in zip(WITHIN, self.within_counts.tolist(), strict=True)}

    def compute(self) -> Tensor:
        """Mean angle in degrees (mErr)."""
        return nan_if_nonfinite((self.total / self.count).float(), self)
