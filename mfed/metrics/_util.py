"""Shape checks shared by the dense metrics."""

from __future__ import annotations

from torch import Tensor


def as_maps(preds: Tensor, target: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """Bring single-channel ``(B, 1, H, W)`` maps to ``(B, H, W)`` and check the shapes agree."""
    if preds.ndim == 4 and preds.shape[1] == 1:
        preds = preds[:, 0]
    if target.ndim == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if preds.shape != target.shape:
        raise ValueError(f"{name}: preds shape {tuple(preds.shape)} does not match target shape {tuple(target.shape)}")
    return preds, target
