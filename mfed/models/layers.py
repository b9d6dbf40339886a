"""Small building blocks shared by encoders and decoders."""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "group", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Return a normalisation layer.

    Args:
        kind: ``batch`` (BatchNorm2d: running statistics are buffers, averaged by the server),
            ``group`` (GroupNorm with up to 8 groups: no buffers, robust to per-client statistics)
            or ``none``.
        channels: Number of channels.

    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"model norm must be one of {NORMS}, got {kind!r}")


def conv_block(in_ch: int, out_ch: int, norm: str, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, normalisation, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=norm == "none"),
        norm_layer(norm, out_ch),
        nn.ReLU(inplace=True),
    )
