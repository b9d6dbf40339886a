"""Edge detection: class-balanced BCE, scored by odsF (approximation).

Loss as in MTL-PyTorch / FedHCA2 (positive weight 0.95, negatives 0.05, since edge pixels are
rare). The metric is the optimal-dataset-scale F-measure computed in Python with a pixel match
tolerance; it approximates, and is not, the MATLAB SEISM protocol (see :class:`EdgeODSF`).
"""

from __future__ import annotations

from torchmetrics import Metric

from mfed.metrics import EdgeODSF
from mfed.tasks.base import DecoderFactory
from mfed.tasks.losses import BinaryMapTask


class Edges(BinaryMapTask):
    """Binary boundary map (one output channel, logits).

    Args:
        name: Task name (default ``edges``).
        pos_weight: Weight of edge pixels in the BCE; non-edge pixels get ``1 - pos_weight``.
        tolerance: Match tolerance of the F-measure in pixels.
        loss_weight: Multiplies the loss.

    """

    headline = "odsF"
    higher_is_better = {"odsF": True}

    def __init__(
        self,
        name: str = "edges",
        pos_weight: float = 0.95,
        tolerance: int = 1,
        loss_weight: float = 1.0,
        decoder: DecoderFactory | None = None,
    ) -> None:
        super().__init__(name, pos_weight, loss_weight, decoder)
        if tolerance < 0:
            raise ValueError(f"tasks.{name}.tolerance must be >= 0 pixels, got {tolerance}")
        self.tolerance = int(tolerance)

    def metrics(self) -> dict[str, Metric]:
        """OdsF (approximation) over the set."""
        return {"odsF": EdgeODSF(tolerance=self.tolerance)}
