"""The shared encoder: a plain convolutional feature extractor."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mfed.models.layers import conv_block, norm_layer


class ConvEncoder(nn.Module):
    """A stack of conv stages; each stage after the first halves the resolution.

    Args:
        in_channels: Channels of the input image.
        widths: Output channels of each stage; ``len(widths) - 1`` downsamplings.
        norm: ``batch``, ``group`` or ``none`` (see :func:`mfed.models.layers.norm_layer`).

    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64), norm: str = "batch"):
        super().__init__()
        widths = list(widths)
        if in_channels < 1:
            raise ValueError(f"model.encoder.in_channels must be >= 1, got {in_channels}")
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"model.encoder.widths must be positive integers, got {widths}")
        norm_layer(norm, 1)  # validates the name before building anything
        stages = [nn.Sequential(conv_block(in_channels, widths[0], norm), conv_block(widths[0], widths[0], norm))]
        for prev, width in zip(widths[:-1], widths[1:], strict=True):
            stages.append(nn.Sequential(conv_block(prev, width, norm, stride=2), conv_block(width, width, norm)))
        self.stages = nn.Sequential(*stages)
        self.out_channels = widths[-1]
        self.reduction = 2 ** (len(widths) - 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H / reduction, W / reduction)."""
        return self.stages(x)
