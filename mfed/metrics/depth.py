"""Depth errors pooled over the valid pixels of the whole set.

RMSE = sqrt(sum (pred - gt)^2 / N_valid) (MTI-Net, FedHCA2; PROTOCOL.md section 2); absolute
relative error = sum |pred - gt| / gt / N_valid. Valid: gt > min_depth (and < max_depth when
given; FedHCA2 uses 0 < gt < 80). Merging clients = summing the sums and counts.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics._util import as_maps


class _PooledDepth(Metric):
    full_state_update = False
    higher_is_better = False
    total: Tensor
    count: Tensor

    def __init__(self, min_depth: float = 0.0, max_depth: float | None = None) -> None:
        super().__init__()
        if max_depth is not None and max_depth <= min_depth:
            raise ValueError(f"max_depth must exceed min_depth, got {max_depth} <= {min_depth}")
        self.min_depth, self.max_depth = min_depth, max_depth
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def _valid(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        preds, target = as_maps(preds, target, type(self).__name__)
        valid = target > self.min_depth
        if self.max_depth is not None:
            valid &= target < self.max_depth
        return preds[valid].double(), target[valid].double()

    @abstractmethod
    def _error(self, preds: Tensor, target: Tensor) -> Tensor:
        """Per-pixel error to sum."""

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``, ``target``: ``(B, 1, H, W)`` or ``(B, H, W)`` depths."""
        p, t = self._valid(preds, target)
        self.total += self._error(p, t).sum()
        self.count += t.numel()


class DepthRMSE(_PooledDepth):
    """Root mean squared error over all valid pixels of the set (lower is better)."""

    def _error(self, preds: Tensor, target: Tensor) -> Tensor:
        return (preds - target) ** 2

    def compute(self) -> Tensor:
        """Pooled RMSE."""
        return torch.sqrt(self.total / self.count).float()


class DepthAbsRel(_PooledDepth):
    """Mean absolute relative error over all valid pixels of the set (lower is better)."""

    def _error(self, preds: Tensor, target: Tensor) -> Tensor:
        return (preds - target).abs() / target

    def compute(self) -> Tensor:
        """Pooled absolute relative error."""
        return (self.total / self.count).float()
