"""The Models Genesis 3D U-Net, with its classification and segmentation heads.

Module names follow the released PyTorch weights (``down_tr64.ops.0.conv1`` ...) so
that a released state dict maps onto this model key for key. Channel counts scale
with ``width`` (32 in the paper): the stages carry ``w, 2w | 2w, 4w | 4w, 8w | 8w, 16w``.
Tensors are ``(N, C, D, H, W)``; every spatial side must be divisible by 8.
"""

from __future__ import annotations

import torch
from torch import nn


class LUConv(nn.Module):
    """Conv3d 3x3x3 -> BatchNorm3d -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn1(self.conv1(x)))


class DownTransition(nn.Module):
    """Two blocks; returns the features before pooling (the skip) and after."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, pool: bool) -> None:
        super().__init__()
        self.ops = nn.Sequential(LUConv(in_channels, mid_channels), LUConv(mid_channels, out_channels))
        self.pool = nn.MaxPool3d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.ops(x)
        return skip, self.pool(skip)


class UpTransition(nn.Module):
    """Upsample (transposed conv or trilinear), concatenate the skip, two blocks."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, transposed: bool) -> None:
        super().__init__()
        if transposed:
            self.up_conv: nn.Module = nn.ConvTranspose3d(in_channels, in_channels, kernel_size=2, stride=2)
        else:
            self.up_conv = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.ops = nn.Sequential(
            LUConv(in_channels + skip_channels, out_channels), LUConv(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.ops(torch.cat([self.up_conv(x), skip], dim=1))


class OutputTransition(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.final_conv = nn.Conv3d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(x)


class Encoder(nn.Module):
    """The four down stages; returns the skips and the 1/8-resolution bottleneck."""

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w = width
        self.down_tr64 = DownTransition(in_channels, w, 2 * w, pool=True)
        self.down_tr128 = DownTransition(2 * w, 2 * w, 4 * w, pool=True)
        self.down_tr256 = DownTransition(4 * w, 4 * w, 8 * w, pool=True)
        self.down_tr512 = DownTransition(8 * w, 8 * w, 16 * w, pool=False)
        self.out_channels = 16 * w

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skip64, x = self.down_tr64(x)
        skip128, x = self.down_tr128(x)
        skip256, x = self.down_tr256(x)
        bottleneck, _ = self.down_tr512(x)
        return [skip64, skip128, skip256], bottleneck


class Decoder(nn.Module):
    """The three up stages and the 1x1x1 output convolution."""

    def __init__(self, width: int = 32, out_channels: int = 1, transposed: bool = True) -> None:
        super().__init__()
        w = width
        self.up_tr256 = UpTransition(16 * w, 8 * w, 8 * w, transposed)
        self.up_tr128 = UpTransition(8 * w, 4 * w, 4 * w, transposed)
        self.up_tr64 = UpTransition(4 * w, 2 * w, 2 * w, transposed)
        self.out_tr = OutputTransition(2 * w, out_channels)

    def forward(self, skips: list[torch.Tensor], bottleneck: torch.Tensor) -> torch.Tensor:
        skip64, skip128, skip256 = skips
        x = self.up_tr256(bottleneck, skip256)
        x = self.up_tr128(x, skip128)
        x = self.up_tr64(x, skip64)
        return self.out_tr(x)


class UNet3D(nn.Module):
    """Encoder + decoder; returns logits (apply a sigmoid for probabilities)."""

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, width: int = 32, transposed: bool = True
    ) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, width)
        self.decoder = Decoder(width, out_channels, transposed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, bottleneck = self.encoder(x)
        return self.decoder(skips, bottleneck)


class ClassificationHead(nn.Module):
    """Global average pool of the bottleneck -> Linear(C, 1024) -> ReLU -> Linear(1024, n)."""

    def __init__(self, in_channels: int, n_outputs: int, hidden: int = 1024) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_channels, hidden)
        self.activation = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, n_outputs)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(nn.functional.adaptive_avg_pool3d(bottleneck, 1), 1)
        return self.fc2(self.activation(self.fc1(pooled)))


class Classifier(nn.Module):
    """The encoder with a classification head; returns logits (N, n_outputs)."""

    def __init__(self, in_channels: int = 1, n_outputs: int = 1, width: int = 32) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, width)
        self.head = ClassificationHead(self.encoder.out_channels, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, bottleneck = self.encoder(x)
        return self.head(bottleneck)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
