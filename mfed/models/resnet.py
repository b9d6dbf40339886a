"""ResNet-18/50 encoders (He et al., 2016) with torchvision's parameter names, so its ImageNet weights load.

The encoder returns the backbone's multi-scale features fused for dense prediction, as the
multi-task literature's HRNet/ResNet heads do: the chosen stages' maps are upsampled to the
finest one's resolution and concatenated, so any decoder of :mod:`mfed.models.decoder` takes
them (``out_channels`` is the sum of the stages' channels).

Weights come from a local file (nothing is downloaded): a state dict with torchvision's names
(``conv1.weight``, ``layer1.0.conv1.weight``, ...), e.g. ``resnet18-f37072fd.pth`` as torchvision
saves it, or a checkpoint holding one under ``state_dict`` or ``model``. Its ``fc.*`` classifier
is dropped. For inputs with fewer than three channels the first convolution's pretrained filters
are summed over RGB (the usual grey-scale adaptation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mfed.models.layers import norm_layer

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, width, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        """Residual block."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided, as torchvision's "ResNet v1.5"), 1x1 x4 convolutions with a residual (ResNet-50)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, norm: str) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = norm_layer(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = norm_layer(norm, width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = norm_layer(norm, out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        """Residual block."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _shortcut(in_ch: int, out_ch: int, stride: int, norm: str) -> nn.Sequential | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), norm_layer(norm, out_ch))


class ResNetEncoder(nn.Module):
    """A ResNet backbone whose chosen stages are fused into one map at the finest chosen stage's resolution.

    Args:
        depth: 18, 34 or 50.
        in_channels: Channels of the input image.
        stages: Which of the four stages (1-4) to fuse; ``(1, 2, 3, 4)``: all (stride 4 output).
        weights: Path of pretrained weights with torchvision's names; ``None``: random initialisation.
        norm: ``batch`` (pretrained weights need it) or ``group``.

    """

    def __init__(
        self,
        depth: int = 18,
        in_channels: int = 3,
        stages: Sequence[int] = (1, 2, 3, 4),
        weights: str | None = None,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"model.encoder.depth must be one of {sorted(DEPTHS)}, got {depth}")
        self.stages = tuple(sorted({int(s) for s in stages}))
        if not self.stages or not set(self.stages) <= {1, 2, 3, 4}:
            raise ValueError(f"model.encoder.stages must be a non-empty subset of [1, 2, 3, 4], got {list(stages)}")
        if in_channels < 1:
            raise ValueError(f"model.encoder.in_channels must be >= 1, got {in_channels}")
        if weights is not None and norm != "batch":
            raise ValueError(f"model.encoder.norm={norm}: pretrained ResNet weights need norm=batch")
        self.depth = depth
        kind, blocks = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = norm_layer(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels, widths = 64, (64, 128, 256, 512)
        stage_channels = []
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True), 1):
            layers = []
            for j in range(count):
                layers.append(block(channels, width, 2 if j == 0 and i > 1 else 1, norm))
                channels = width * block.expansion
            setattr(self, f"layer{i}", nn.Sequential(*layers))
            stage_channels.append(channels)
        self.out_channels = sum(stage_channels[s - 1] for s in self.stages)
        self.reduction = 2 ** (self.stages[0] + 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if weights is not None:
            self.load_pretrained(weights)

    def load_pretrained(self, path: str) -> None:
        """Load torchvision-named weights from ``path`` (see the module's docs); a clear error if they do not fit."""
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(
                f"model.encoder.weights={path}: no such file (nothing is downloaded: give the path of a local "
                "torchvision ResNet state dict, or null for random weights)"
            )
        try:
            loaded = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"model.encoder.weights={path}: not a torch weights file ({err})") from None
        for key in ("state_dict", "model"):
            if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
                loaded = loaded[key]
        if not isinstance(loaded, dict):
            raise ValueError(f"model.encoder.weights={path}: holds a {type(loaded).__name__}, not a state dict")
        state = {k.removeprefix("module."): v for k, v in loaded.items() if not k.startswith(("fc.", "module.fc."))}
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"model.encoder.weights={path} does not fit a ResNet-{self.depth}: missing "
                             f"{missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
                             f"{'...' if len(unexpected) > 3 else ''} (is it another depth?)")  # fmt: skip
        first = state["conv1.weight"]
        if first.shape[1] != own["conv1.weight"].shape[1]:
            if own["conv1.weight"].shape[1] > first.shape[1]:
                raise ValueError(f"model.encoder.in_channels={own['conv1.weight'].shape[1]}: the weights take "
                                 f"{first.shape[1]} input channels")  # fmt: skip
            state["conv1.weight"] = first.sum(dim=1, keepdim=True).repeat(1, own["conv1.weight"].shape[1], 1, 1)
        wrong = [k for k, v in state.items() if v.shape != own[k].shape]
        if wrong:
            raise ValueError(f"model.encoder.weights={path}: {wrong[0]} is {tuple(state[wrong[0]].shape)}, the "
                             f"encoder's is {tuple(own[wrong[0]].shape)}")  # fmt: skip
        self.load_state_dict(state)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, out_channels, H / reduction, W / reduction): the chosen stages, fused."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for i in range(1, max(self.stages) + 1):
            x = getattr(self, f"layer{i}")(x)
            if i in self.stages:
                maps.append(x)
        size = maps[0].shape[-2:]
        fused = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
        return torch.cat(fused, dim=1)
