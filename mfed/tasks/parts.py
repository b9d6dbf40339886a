"""Part segmentation (PASCAL's human parts; FashionScenes' upper/lower halves), scored by mIoU.

The same loss and metric as semantic segmentation (MTI-Net's PASCAL protocol weights parts x2).
"""

from __future__ import annotations

from mfed.tasks.base import DecoderFactory
from mfed.tasks.semseg import SemanticSegmentation


class PartSegmentation(SemanticSegmentation):
    """Per-pixel part labels (background included; 255 ignored).

    Args:
        name: Task name (default ``parts``).
        num_classes: Parts + background (3 for FashionScenes, 7 for PASCAL's human parts).
        loss_weight: Multiplies the loss.

    """

    def __init__(
        self, name: str = "parts", num_classes: int = 3, loss_weight: float = 2.0, decoder: DecoderFactory | None = None
    ) -> None:
        super().__init__(name=name, num_classes=num_classes, loss_weight=loss_weight, decoder=decoder)
