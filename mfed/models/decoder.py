"""Task decoders: map encoder features back to a dense prediction at input resolution."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mfed.models.layers import conv_block


class ConvDecoder(nn.Module):
    """Conv block at feature resolution, bilinear upsampling, conv block, 1x1 prediction head.

    Args:
        in_channels: Channels of the encoder features.
        out_channels: Channels of the prediction (set by the task).
        hidden: Channels of the decoder's conv blocks.
        norm: ``batch``, ``group`` or ``none``.

    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 32, norm: str = "batch"):
        super().__init__()
        if min(in_channels, out_channels, hidden) < 1:
            raise ValueError(
                "decoder channels must be >= 1, got "
                f"in_channels={in_channels}, out_channels={out_channels}, hidden={hidden}"
            )
        self.body = conv_block(in_channels, hidden, norm)
        self.refine = conv_block(hidden, hidden, norm)
        self.head = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, C_in, h, w) features -> (B, C_out, H, W) prediction at ``size = (H, W)``."""
        x = self.body(features)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.head(self.refine(x))
