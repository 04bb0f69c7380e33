"""The suite's decoder for encoders that have none of their own (I3D, torchvision's ResNet): U-Net-like.

``up16``, ``up8``, ``up4``, ``up2``: each upsamples (trilinear in 3D, bilinear in 2D) to the size of the
skip it joins, concatenates that skip and applies two 3x3(x3) convolution units; ``up1`` upsamples to
the input's size, with no skip; ``out``, a 1x1(x1) convolution, makes the logits. Upsampling to the
skip's exact size handles strides that differ per axis and odd sides. Channels at width 32:
256, 128, 64, 32, 16 (``UP_STAGES``), scaled as the encoder's. The unit (convolution, normalisation,
activation) is the backbone's own, so that the decoder matches its encoder's conventions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional

UP_STAGES = {"up16": 256, "up8": 128, "up4": 64, "up2": 32, "up1": 16}  # channels at width 32, in order
REFERENCE_WIDTH = 32
Unit = Callable[[int, int], nn.Module]  # (in_channels, out_channels) -> a 3x3(x3) convolution unit
MODES = {2: "bilinear", 3: "trilinear"}
OUTPUT_CONVOLUTIONS = {2: nn.Conv2d, 3: nn.Conv3d}


def scaled(channels: int, width: int) -> int:
    """A channel count given at width 32, at ``width`` (at least 1)."""
    return max(1, channels * width // REFERENCE_WIDTH)


class UpStage(nn.Module):
    """Upsampling to a given size, the skip concatenated (if any), two convolution units."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, unit: Unit, spatial_dims: int) -> None:
        super().__init__()
        self.conv1 = unit(in_channels + skip_channels, out_channels)
        self.conv2 = unit(out_channels, out_channels)
        self.mode = MODES[spatial_dims]

    def forward(self, x: torch.Tensor, size: tuple[int, ...], skip: torch.Tensor | None = None) -> torch.Tensor:
        x = functional.interpolate(x, size=tuple(size), mode=self.mode, align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class SkipDecoder(nn.Module):
    """The up stages (see the module docstring) over four skips, deepest last, and the output convolution."""

    def __init__(self, skip_channels: list[int], bottleneck_channels: int, out_channels: int, width: int,
                 unit: Unit, spatial_dims: int) -> None:
        super().__init__()
        channels = bottleneck_channels
        for (name, published), skip in zip(UP_STAGES.items(), [*reversed(skip_channels), 0]):
            self.add_module(name, UpStage(channels, skip, scaled(published, width), unit, spatial_dims))
            channels = scaled(published, width)
        self.out = OUTPUT_CONVOLUTIONS[spatial_dims](channels, out_channels, kernel_size=1)

    def forward(self, skips: list[torch.Tensor], bottleneck: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        x = bottleneck
        for stage, skip in zip((self.up16, self.up8, self.up4, self.up2), reversed(skips)):
            x = stage(x, skip.shape[2:], skip)
        return self.out(self.up1(x, size))
