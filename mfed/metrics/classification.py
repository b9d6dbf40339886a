"""Multi-label classification: macro mean average precision (mAP) x100.

AP per label as in scikit-learn's ``average_precision_score`` (step-wise area under the
precision-recall curve, exact, no threshold grid), then the unweighted mean over labels
(``average="macro"``). A thin subclass of torchmetrics' ``MultilabelAveragePrecision``: its states
are lists of predictions and targets that concatenate on merge, so merging clients equals the
metric on their concatenated data (at the cost of keeping every prediction until ``compute``).
An image whose L probabilities hold any NaN or inf makes the result NaN (torchmetrics would still
rank the others and report a plausible mAP).
"""

from __future__ import annotations

from numbers import Integral

from torch import Tensor
from torchmetrics.classification import MultilabelAveragePrecision

from mfed.metrics._util import add_nonfinite_state, count_nonfinite, nan_if_nonfinite


class MultilabelMAP(MultilabelAveragePrecision):
    """Macro mAP x100 over labels (higher is better).

    A label without any positive in the set scores AP 0 (torchmetrics warns), as in
    scikit-learn. ``compute()`` returns a 0-d float32 tensor, NaN once any image's prediction
    (its L probabilities) held a NaN or an inf.

    Args:
        num_labels: Number of labels L (>= 2, as torchmetrics requires).

    """

    full_state_update = False
    higher_is_better = True
    nonfinite: Tensor

    def __init__(self, num_labels: int) -> None:
        if isinstance(num_labels, bool) or not isinstance(num_labels, Integral):
            raise ValueError(f"num_labels must be an int, got {num_labels!r}")
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}")
        super().__init__(num_labels=int(num_labels), average="macro", thresholds=None)
        add_nonfinite_state(self)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch.

        Args:
            preds: ``(B, L)`` probabilities. torchmetrics applies a sigmoid to a batch holding
                values outside [0, 1], so pass probabilities, not logits, to keep batches consistent.
            target: ``(B, L)`` presence in {0, 1}.

        """
        if preds.shape != target.shape or preds.ndim != 2 or preds.shape[1] != self.num_labels:
            raise ValueError(
                f"MultilabelMAP: preds shape {tuple(preds.shape)} and target shape {tuple(target.shape)} "
                f"must both be (B, {self.num_labels})"
            )
        self.nonfinite += count_nonfinite(preds, dim=1)  # one prediction per image: its L labels
        super().update(preds, target.long())

    def compute(self) -> Tensor:  # type: ignore[override]  # one tensor, not a PR curve
        """Macro mAP x100."""
        return nan_if_nonfinite((super().compute() * 100).float(), self)
