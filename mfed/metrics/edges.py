"""Edge detection: odsF (approximation), the optimal-dataset-scale F-measure in Python.

Implements PROTOCOL.md section 2's "odsF (approximation)": per threshold, TP/FP/FN-style counts
pooled over the whole set, best F over thresholds (ODS). The field's numbers (MTI-Net, FedHCA2)
come from the MATLAB SEISM package (Pont-Tuset & Marques); :class:`EdgeODSF` says how this
differs. Merging clients = summing the ``(4, T)`` count state. A NaN or inf probability at any
pixel (ignored pixels included) makes the result NaN: NaN never reaches a threshold, so it would
otherwise count as "no edge" and give a plausible score.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from mfed.metrics._util import (
    add_nonfinite_state,
    as_maps,
    as_probabilities,
    check_binary_ignore_index,
    count_nonfinite,
    count_reaching,
    count_reaching_masks,
    nan_if_nonfinite,
    threshold_grid,
)


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Boolean dilation of ``(B, H, W)`` maps by a square of side ``2 * radius + 1`` (Chebyshev ball)."""
    if radius == 0:
        return mask
    return F.max_pool2d(mask[:, None].float(), 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


class EdgeODSF(Metric):
    """odsF (approximation) x100: best F over thresholds of match counts pooled over the set.

    For each threshold t the predicted edge map is ``probs >= t``. A predicted pixel is correct
    when a ground-truth edge pixel lies within ``tolerance`` pixels (Chebyshev distance, i.e. in
    the (2 tolerance + 1)^2 square around it); a ground-truth pixel is found when a predicted pixel
    does. Precision = correct / predicted and recall = found / ground truth, from counts pooled over
    the whole set; F = 2PR / (P + R); ``compute()`` returns the best F over thresholds (odsF) x100,
    or NaN once any pixel's predicted probability was NaN or inf (ignored pixels included).

    This approximates, and is not, the MATLAB SEISM protocol behind published odsF (MTI-Net,
    FedHCA2), so its values are close to but not comparable with published ones:

    - no non-maximum suppression or thinning of the predictions: a thick predicted edge counts
      every pixel, which lowers precision against thin ground truth;
    - matching by dilation, not one-to-one bipartite matching: several predicted pixels may claim
      the same ground-truth pixel and vice versa;
    - the tolerance is a fixed number of pixels, not maxDist = 0.0075 (PASCAL) / 0.011 (NYUD)
      of the image diagonal (about 4.7 pixels on a 500 x 375 PASCAL image, 8.8 on a 480 x 640
      NYUD one).

    Args:
        thresholds: Number of thresholds in linspace(0.01, 0.99) (99 by default, as SEISM), or
            the threshold values in [0, 1].
        tolerance: Match distance in pixels (int >= 0; 0 requires the exact pixel).
        ignore_index: Target value whose pixels are skipped (neither ground truth nor prediction);
            ``None`` keeps all pixels.

    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    thresholds: Tensor
    counts: Tensor
    nonfinite: Tensor

    def __init__(
        self, thresholds: int | Sequence[float] = 99, tolerance: int = 1, ignore_index: int | None = 255
    ) -> None:
        super().__init__()
        if isinstance(tolerance, bool) or not isinstance(tolerance, Integral):
            raise ValueError(f"tolerance must be an int, got {tolerance!r}")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
        check_binary_ignore_index(ignore_index)
        if isinstance(thresholds, Integral) and not isinstance(thresholds, bool):
            if thresholds < 1:
                raise ValueError(f"thresholds must be a count >= 1 or a sequence of values, got {thresholds!r}")
            thresholds = torch.linspace(0.01, 0.99, int(thresholds), dtype=torch.float64).tolist()
        self.tolerance: int = int(tolerance)
        self.ignore_index: int | None = ignore_index
        self.register_buffer("thresholds", threshold_grid(thresholds), persistent=False)
        # rows: correct predictions, predictions, found ground truth, ground truth; one column per threshold
        self.add_state("counts", torch.zeros(4, len(self.thresholds), dtype=torch.int64), dist_reduce_fx="sum")
        add_nonfinite_state(self)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch.

        Args:
            preds: Edge probabilities ``(B, 1, H, W)`` or ``(B, H, W)``.
            target: Binary edges (> 0.5 is an edge) of the same shape.

        """
        preds, target = as_maps(preds, target, "EdgeODSF")
        self.nonfinite += count_nonfinite(preds)
        valid = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        gt = (target > 0.5) & valid
        # -inf never reaches a threshold: ignored pixels predict nothing, also inside the max-pool.
        probs = as_probabilities(preds).masked_fill(~valid, float("-inf"))
        # A gt pixel is found at t iff the largest probability within the tolerance reaches t.
        nearby_max = probs
        if self.tolerance:
            side = 2 * self.tolerance + 1
            nearby_max = F.max_pool2d(probs[:, None], side, stride=1, padding=self.tolerance)[:, 0]
        near_gt = dilate(gt, self.tolerance) & valid
        rows = [
            *count_reaching_masks(
                probs.reshape(1, -1), (near_gt.reshape(1, -1), valid.reshape(1, -1)), self.thresholds
            ),  # one threshold search for both rows
            count_reaching(nearby_max.reshape(1, -1), gt.reshape(1, -1), self.thresholds),
            gt.sum().expand(1, len(self.thresholds)),
        ]
        self.counts += torch.cat(rows)

    def f_scores(self) -> Tensor:
        """F-measure at every threshold, ``(T,)`` float64.

        0 where precision and recall are both 0; NaN everywhere after a non-finite prediction.
        """
        counts = self.counts.double()
        precision = counts[0] / counts[1].clamp(min=1)
        recall = counts[2] / counts[3].clamp(min=1)
        return nan_if_nonfinite(2 * precision * recall / (precision + recall).clamp(min=1e-12), self)

    def best_threshold(self) -> float:
        """The threshold of the best F (the lowest one on a tie; NaN after a non-finite prediction)."""
        if int(self.nonfinite):
            return float("nan")
        return float(self.thresholds[int(torch.argmax(self.f_scores()))])

    def compute(self) -> Tensor:
        """Best F over thresholds (odsF, approximation), x100, as a 0-d float32 tensor."""
        return (self.f_scores().max() * 100).float()
