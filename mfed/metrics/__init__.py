"""Dense multi-task metrics as torchmetrics Metrics whose states merge exactly across clients."""

from mfed.metrics.classification import MultilabelMAP
from mfed.metrics.delta import delta_m
from mfed.metrics.depth import DepthAbsRel, DepthRMSE
from mfed.metrics.edges import EdgeODSF
from mfed.metrics.normals import NormalsAngularError
from mfed.metrics.saliency import SaliencyMaxF
from mfed.metrics.segmentation import MeanIoU

__all__ = [
    "DepthAbsRel", "DepthRMSE", "EdgeODSF", "MeanIoU", "MultilabelMAP",
    "NormalsAngularError", "SaliencyMaxF", "delta_m",
]  # fmt: skip
