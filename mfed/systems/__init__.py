"""The LightningModule clients train, and the M-Fed regulariser."""

from mfed.systems.module import TaskSystem
from mfed.systems.regularisers import proximal_term

__all__ = ["TaskSystem", "proximal_term"]
