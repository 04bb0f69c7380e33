"""The Models Genesis U-Net (3D, and the same design in 2D), with its classification and segmentation heads.

Module names follow the released PyTorch weights (``down_tr64.ops.0.conv1`` ...) so
that a released state dict maps onto this model key for key. Channel counts scale
with ``width`` (32 in the paper): the stages carry ``w, 2w | 2w, 4w | 4w, 8w | 8w, 16w``.

Every class takes ``spatial_dims`` (3, the default, or 2): the number of spatial axes, which
chooses Conv3d/Conv2d, BatchNorm3d/2d, MaxPool3d/2d, ConvTranspose3d/2d, trilinear/bilinear
upsampling and 3D/2D global average pooling. Nothing else changes: the module names, the
state-dict keys and the channel counts are the same in 2D, only the kernels lose an axis.
Tensors are ``(N, C, D, H, W)`` in 3D, ``(N, C, H, W)`` in 2D; every spatial side must be
divisible by 8. ``UNet2D`` is ``UNet3D`` with ``spatial_dims=2`` (the ``unet2d`` backbone).
"""

from __future__ import annotations

import torch
from torch import nn

SPATIAL_DIMS = (2, 3)
CONV = {2: nn.Conv2d, 3: nn.Conv3d}
CONV_TRANSPOSE = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
MAX_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
INTERPOLATION = {2: "bilinear", 3: "trilinear"}
GLOBAL_AVERAGE_POOL = {2: nn.functional.adaptive_avg_pool2d, 3: nn.functional.adaptive_avg_pool3d}


def checked_spatial_dims(spatial_dims: int) -> int:
    """``spatial_dims`` if it is 2 or 3, else a ValueError."""
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return spatial_dims


class LUConv(nn.Module):
    """Conv 3x3(x3) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int = 3) -> None:
        super().__init__()
        dims = checked_spatial_dims(spatial_dims)
        self.conv1 = CONV[dims](in_channels, out_channels, kernel_size=3, padding=1)
        self.bn1 = BATCH_NORM[dims](out_channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn1(self.conv1(x)))


class DownTransition(nn.Module):
    """Two blocks; returns the features before pooling (the skip) and after."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, pool: bool,
                 spatial_dims: int = 3) -> None:
        super().__init__()
        dims = checked_spatial_dims(spatial_dims)
        self.ops = nn.Sequential(LUConv(in_channels, mid_channels, dims), LUConv(mid_channels, out_channels, dims))
        self.pool = MAX_POOL[dims](2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.ops(x)
        return skip, self.pool(skip)


class UpTransition(nn.Module):
    """Upsample (transposed conv, or trilinear / bilinear), concatenate the skip, two blocks."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, transposed: bool,
                 spatial_dims: int = 3) -> None:
        super().__init__()
        dims = checked_spatial_dims(spatial_dims)
        if transposed:
            self.up_conv: nn.Module = CONV_TRANSPOSE[dims](in_channels, in_channels, kernel_size=2, stride=2)
        else:
            self.up_conv = nn.Upsample(scale_factor=2, mode=INTERPOLATION[dims], align_corners=False)
        self.ops = nn.Sequential(
            LUConv(in_channels + skip_channels, out_channels, dims), LUConv(out_channels, out_channels, dims)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.ops(torch.cat([self.up_conv(x), skip], dim=1))


class OutputTransition(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.final_conv = CONV[checked_spatial_dims(spatial_dims)](in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(x)


class Encoder(nn.Module):
    """The four down stages; returns the skips and the 1/8-resolution bottleneck."""

    def __init__(self, in_channels: int = 1, width: int = 32, spatial_dims: int = 3) -> None:
        super().__init__()
        w, dims = width, checked_spatial_dims(spatial_dims)
        self.down_tr64 = DownTransition(in_channels, w, 2 * w, pool=True, spatial_dims=dims)
        self.down_tr128 = DownTransition(2 * w, 2 * w, 4 * w, pool=True, spatial_dims=dims)
        self.down_tr256 = DownTransition(4 * w, 4 * w, 8 * w, pool=True, spatial_dims=dims)
        self.down_tr512 = DownTransition(8 * w, 8 * w, 16 * w, pool=False, spatial_dims=dims)
        self.out_channels = 16 * w

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skip64, x = self.down_tr64(x)
        skip128, x = self.down_tr128(x)
        skip256, x = self.down_tr256(x)
        bottleneck, _ = self.down_tr512(x)
        return [skip64, skip128, skip256], bottleneck


class Decoder(nn.Module):
    """The three up stages and the 1x1(x1) output convolution."""

    def __init__(self, width: int = 32, out_channels: int = 1, transposed: bool = True, spatial_dims: int = 3) -> None:
        super().__init__()
        w, dims = width, checked_spatial_dims(spatial_dims)
        self.up_tr256 = UpTransition(16 * w, 8 * w, 8 * w, transposed, dims)
        self.up_tr128 = UpTransition(8 * w, 4 * w, 4 * w, transposed, dims)
        self.up_tr64 = UpTransition(4 * w, 2 * w, 2 * w, transposed, dims)
        self.out_tr = OutputTransition(2 * w, out_channels, dims)

    def forward(self, skips: list[torch.Tensor], bottleneck: torch.Tensor) -> torch.Tensor:
        skip64, skip128, skip256 = skips
        x = self.up_tr256(bottleneck, skip256)
        x = self.up_tr128(x, skip128)
        x = self.up_tr64(x, skip64)
        return self.out_tr(x)


class UNet3D(nn.Module):
    """Encoder + decoder; returns logits (apply a sigmoid for probabilities)."""

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, width: int = 32, transposed: bool = True,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, width, spatial_dims)
        self.decoder = Decoder(width, out_channels, transposed, spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, bottleneck = self.encoder(x)
        return self.decoder(skips, bottleneck)


class UNet2D(UNet3D):
    """The same U-Net with 2D operations: ``(N, C, H, W)`` -> ``(N, out_channels, H, W)`` logits."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32, transposed: bool = True) -> None:
        super().__init__(in_channels, out_channels, width, transposed, spatial_dims=2)


class ClassificationHead(nn.Module):
    """Global average pool of the bottleneck -> Linear(C, 1024) -> ReLU -> Linear(1024, n)."""

    def __init__(self, in_channels: int, n_outputs: int, hidden: int = 1024, spatial_dims: int = 3) -> None:
        super().__init__()
        self.spatial_dims = checked_spatial_dims(spatial_dims)
        self.fc1 = nn.Linear(in_channels, hidden)
        self.activation = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, n_outputs)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(GLOBAL_AVERAGE_POOL[self.spatial_dims](bottleneck, 1), 1)
        return self.fc2(self.activation(self.fc1(pooled)))


class Classifier(nn.Module):
    """An encoder (``forward(x) -> (skips, bottleneck)``) with a head on its bottleneck; returns logits."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, bottleneck = self.encoder(x)
        return self.head(bottleneck)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
