"""Multi-label classification: macro mean average precision x100.

A thin wrapper of torchmetrics' MultilabelAveragePrecision (exact, threshold-free): its list
states concatenate, so merging clients equals the metric on their concatenated predictions.
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics.classification import MultilabelAveragePrecision


class MultilabelMAP(MultilabelAveragePrecision):
    """mAP x100 over labels (macro average).

    Args:
        num_labels: Number of labels (>= 1).

    """

    def __init__(self, num_labels: int) -> None:
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        super().__init__(num_labels=num_labels, average="macro", thresholds=None)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``: ``(B, L)`` probabilities; ``target``: ``(B, L)`` in {0, 1}."""
        if preds.shape != target.shape:
            raise ValueError(f"preds shape {tuple(preds.shape)} does not match target shape {tuple(target.shape)}")
        super().update(preds, target.long())

    def compute(self) -> Tensor:  # type: ignore[override]  # one tensor, not a PR curve
        """Macro mAP x100."""
        return super().compute() * 100
