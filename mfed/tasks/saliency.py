"""Saliency (foreground vs background): balanced BCE, scored by maxF.

maxF follows FedHCA2's convention by default (dataset-level counts, thresholds 0.05..0.95,
F_beta with beta^2 = 0.3); MTL-PyTorch's per-image convention is ``convention=per_image``.
"""

from __future__ import annotations

from torchmetrics import Metric

from mfed.metrics import SaliencyMaxF
from mfed.tasks.base import DecoderFactory
from mfed.tasks.losses import BinaryMapTask


class Saliency(BinaryMapTask):
    """Binary foreground map (one output channel, logits).

    Args:
        name: Task name (default ``saliency``).
        convention: maxF convention, ``dataset`` or ``per_image``.
        pos_weight: Weight of foreground pixels; ``None`` balances per batch.
        loss_weight: Multiplies the loss (x5 in the PASCAL protocol).

    """

    headline = "maxF"
    higher_is_better = {"maxF": True}

    def __init__(
        self,
        name: str = "saliency",
        convention: str = "dataset",
        pos_weight: float | None = None,
        loss_weight: float = 5.0,
        decoder: DecoderFactory | None = None,
    ) -> None:
        super().__init__(name, pos_weight, loss_weight, decoder)
        self.convention = convention
        self.metrics()  # validates the convention now

    def metrics(self) -> dict[str, Metric]:
        """MaxF over the set."""
        return {"maxF": SaliencyMaxF(convention=self.convention)}
