"""Depth errors pooled over the valid pixels of the whole set.

RMSE = sqrt(sum (pred - gt)^2 / N_valid) (PROTOCOL.md section 2; MTI-Net / MTL-PyTorch
``eval_depth``, FedHCA2), pooled over every valid pixel of the set rather than averaged per image;
absolute relative error = sum |pred - gt| / gt / N_valid. Valid: gt > min_depth (and gt < max_depth
when given; FedHCA2 uses 0 < gt < 80 on NYUD-v2). Merging clients = summing the sums and counts.
Both are NaN once any predicted pixel was NaN or inf (invalid pixels included): a diverged model
must not report a number.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics._util import add_nonfinite_state, as_maps, count_nonfinite, nan_if_nonfinite


class _PooledDepth(Metric):
    """Sum of a per-pixel error and the count of valid pixels (lower is better).

    Args:
        min_depth: Pixels need gt > min_depth (0 marks missing depth in NYUD-v2).
        max_depth: If given, pixels also need gt < max_depth.

    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False
    total: Tensor
    count: Tensor
    nonfinite: Tensor

    def __init__(self, min_depth: float = 0.0, max_depth: float | None = None) -> None:
        super().__init__()
        if not math.isfinite(min_depth):
            raise ValueError(f"min_depth must be finite, got {min_depth}")
        if max_depth is not None and not max_depth > min_depth:
            raise ValueError(f"max_depth must exceed min_depth, got max_depth={max_depth} <= min_depth={min_depth}")
        self.min_depth: float = float(min_depth)
        self.max_depth: float | None = max_depth
        # float64 sum: float32 loses digits over millions of pixels.
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        add_nonfinite_state(self)  # predicted pixels (valid or not) that are NaN or inf

    @abstractmethod
    def _error(self, preds: Tensor, target: Tensor) -> Tensor:
        """Per-pixel error to sum, on valid pixels only."""

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add the valid pixels of a batch.

        Args:
            preds: Predicted depth ``(B, 1, H, W)`` or ``(B, H, W)``.
            target: Ground-truth depth of the same shape; invalid pixels fall outside (min_depth, max_depth).

        """
        preds, target = as_maps(preds, target, type(self).__name__)
        self.nonfinite += count_nonfinite(preds)
        valid = target > self.min_depth
        if self.max_depth is not None:
            valid &= target < self.max_depth
        p, t = preds[valid].double(), target[valid].double()
        self.total += self._error(p, t).sum()
        self.count += t.numel()


class DepthRMSE(_PooledDepth):
    """Root mean squared error over all valid pixels of the set (lower is better).

    ``compute()`` returns sqrt(sum (pred - gt)^2 / N_valid) in the depth unit as a 0-d float32
    tensor (NaN while no valid pixel has been seen, and once any predicted pixel was NaN or inf).
    """

    def _error(self, preds: Tensor, target: Tensor) -> Tensor:
        return (preds - target) ** 2

    def compute(self) -> Tensor:
        """Pooled RMSE."""
        return nan_if_nonfinite(torch.sqrt(self.total / self.count).float(), self)


class DepthAbsRel(_PooledDepth):
    """Mean absolute relative error over all valid pixels of the set (lower is better).

    ``compute()`` returns sum |pred - gt| / gt / N_valid as a 0-d float32 tensor (NaN while no
    valid pixel has been seen, and once any predicted pixel was NaN or inf).
    """

    def __init__(self, min_depth: float = 0.0, max_depth: float | None = None) -> None:
        if min_depth < 0:  # the ratio divides by gt
            raise ValueError(f"min_depth must be >= 0 for a relative error, got {min_depth}")
        super().__init__(min_depth, max_depth)

    def _error(self, preds: Tensor, target: Tensor) -> Tensor:
        return (preds - target).abs() / target

    def compute(self) -> Tensor:
        """Pooled absolute relative error."""
        return nan_if_nonfinite((self.total / self.count).float(), self)
