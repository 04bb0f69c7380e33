"""torchvision's ResNet-18, -34 and -50 (He et al., "Deep Residual Learning for Image Recognition",
CVPR 2016) as the encoder of a 2D U-Net: the ImageNet-pretrained 2D networks of the paper's
comparison of 3D Models Genesis with 2D transfer learning.

The encoder, in torchvision's layout (``torchvision/models/resnet.py``; its keys prefixed ``encoder.``):

* stem: ``conv1`` 7x7, stride 2, padding 3, no bias (``(64, 3, 7, 7)`` in the released files) ->
  ``bn1`` -> ReLU -> max-pool 3, stride 2, padding 1;
* ``layer1`` ... ``layer4`` with 64, 128, 256, 512 planes and strides 1, 2, 2, 2: basic blocks (two
  3x3 conv-BN, expansion 1) for ResNet-18 (2, 2, 2, 2 blocks per layer) and -34 (3, 4, 6, 3);
  bottleneck blocks (1x1, 3x3, 1x1 conv-BN, expansion 4) for ResNet-50 (3, 4, 6, 3), with the stride
  on the 3x3 convolution (torchvision's "ResNet v1.5"). Keys ``layerL.B.conv1.weight``,
  ``layerL.B.bn1.{weight,bias,running_mean,running_var,num_batches_tracked}``, ``conv2``/``bn2``,
  and ``conv3``/``bn3`` in a bottleneck. No convolution has a bias.
* the first block of a layer whose output shape differs from its input's (``layer2`` ... ``layer4``
  for 18/34, every layer for 50) has ``downsample``: ``.0`` a 1x1 convolution with the block's
  stride, ``.1`` batch norm.
* torchvision's ``avgpool`` and ``fc`` (the 1000 ImageNet classes) are not part of the encoder.

The suite's choices:

* ``width`` scales every channel count ``c`` to ``max(1, c * width // 32)``: width 32 is torchvision's
  (64 stem channels); ``encoder.out_channels`` = 16 * width * expansion (512 or 2048 at width 32).
* Segmentation target: a U-Net decoder (ResNet has none). The encoder returns four skips, the stem's
  features (after ReLU, 1/2 of the input's side), ``layer1`` (1/4), ``layer2`` (1/8), ``layer3`` (1/16),
  and ``layer4`` (1/32) as the bottleneck. Five decoder stages, ``up16``, ``up8``, ``up4``, ``up2``
  (named by the stride they end at, each concatenating the skip of that stride) and ``up1`` (to the
  input's size, no skip), each upsample bilinearly x2 (to the skip's or input's size) and apply two
  3x3 conv-BN-ReLU units (no bias) of 256, 128, 64, 32, 16 channels at width 32; then ``decoder.out``,
  a 1x1 convolution, the fresh output layer. Logits come out at the input's size.
* Classification target: the suite's head on the bottleneck (global average pool, Linear(C, 1024),
  ReLU, Linear), not torchvision's ``fc``.
* Sides (Y, X) must be multiples of 32 (``size_multiple``: the total stride) and at least 32
  (``min_size``). At 32 x 32 the bottleneck is 1 x 1, so batch norm in training needs a batch of at
  least 2 (one value per channel per image); a batch of 1 needs sides of at least 64.
* ImageNet's per-channel normalisation (mean 0.485, 0.456, 0.406; standard deviation 0.229, 0.224,
  0.225), which the released weights were trained with, is not applied: the suite's images are in
  [0, 1], for every backbone alike. On a grey image it would subtract a constant and scale by about
  4.4, which the batch norm after ``conv1`` largely absorbs once fine-tuning has re-estimated its
  statistics (not exactly at the borders, where the convolution's zero padding sees the offset).

Parameters at width 32 (``tests/test_backbone_2d.py``): torchvision publishes 11,689,512 (ResNet-18),
21,797,672 (-34) and 25,557,032 (-50) for its whole RGB model; without ``fc`` (512 * 1000 + 1000 =
513,000; 2048 * 1000 + 1000 = 2,049,000) that is this encoder with three input channels:

======  ===================  ======================  ===================  ====================
depth   encoder, RGB input   encoder, one channel    classifier (1 ch.)   segmenter (1 ch.)
======  ===================  ======================  ===================  ====================
18       11,176,512           11,170,240              11,696,577           14,321,809
34       21,284,672           21,278,400              21,804,737           24,429,969
50       23,508,032           23,501,760              25,600,961           32,514,705
======  ===================  ======================  ===================  ====================

Released weights (``read_released``): torchvision's ImageNet state dicts (``resnet18-f37072fd.pth``,
``resnet34-b627a593.pth``, ``resnet50-0676ba61.pth`` and ``resnet50-11ad3fa6.pth``, the V1 and V2
ResNet-50, from download.pytorch.org/models/; also the earlier ``resnet18-5c106cde.pth``,
``resnet34-333f7ec4.pth``, ``resnet50-19c8e357.pth``): bare state dicts; also accepted with keys prefixed
``module.``, wrapped as ``{'state_dict': ...}``, or as safetensors. ``fc.weight`` and ``fc.bias`` (any
number of classes) are accepted and dropped: never transferred. Batch-norm ``num_batches_tracked``
counters, absent from files saved before PyTorch 0.4.1 (torchvision's first ResNet files), are filled
with 0 where missing (never used). The depth is read off the file (the block type, bottleneck if any
block has a ``conv3``, and the blocks per layer), the width off ``conv1`` (output channels / 2); every
other key must be there with the shape the encoder has: a missing, unexpected or mis-shaped key is a
one-line error naming it. The RGB kernels of ``conv1`` ``(64, 3, 7, 7)`` are summed over their three
input channels into one channel: a grey image fed as R = G = B gives exactly the original network's
response (noted ``{"rgb_kernels": "summed"}``); the suite inflates the kernel to the task's channels.
A file whose ``conv1`` has another number of input channels is taken as it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.api.backbone import Backbone, PretrainedWeights
from benchmark.api.registry import BACKBONES
from benchmark.errors import UserError
from benchmark.model.decoders import SkipDecoder
from benchmark.model.weights import (
    check_finite,
    check_state,
    file_fingerprint,
    listing,
    module_prefix,
    released_state_dict,
)

SPATIAL_DIMS = 2
REFERENCE_WIDTH = 32  # the width at which every channel count is torchvision's
STEM_CHANNELS = 64
PLANES = (64, 128, 256, 512)  # planes of layer1 ... layer4 at the reference width
STRIDES = (1, 2, 2, 2)
BLOCKS: dict[int, tuple[str, tuple[int, int, int, int]]] = {  # depth: (block type, blocks per layer)
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
FIRST_CONV = "conv1.weight"  # in torchvision's layout
CLASSIFIER_KEYS = ("fc.weight", "fc.bias")
RGB = 3


def scaled(channels: int, width: int) -> int:
    """A channel count of torchvision's network at ``width``."""
    return max(1, channels * width // REFERENCE_WIDTH)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN (the first strided), the shortcut added, ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided: ResNet v1.5), 1x1 (4x the planes) conv-BN, the shortcut added, ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def make_layer(block: type[BasicBlock | Bottleneck], in_channels: int, planes: int, blocks: int,
               stride: int) -> nn.Sequential:
    """A layer of ``blocks`` blocks; the first has the stride and, where the shape changes, ``downsample``."""
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    layers = [block(in_channels, planes, stride, downsample)]
    layers += [block(out_channels, planes, 1, None) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetEncoder(nn.Module):
    """The stem and layer1 ... layer4; returns the skips (stem, layer1, layer2, layer3) and layer4."""

    def __init__(self, in_channels: int, width: int, depth: int) -> None:
        super().__init__()
        kind, blocks = BLOCKS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        stem = scaled(STEM_CHANNELS, width)
        self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels, self.skip_channels = stem, [stem]
        for index, (planes, count, stride) in enumerate(zip(PLANES, blocks, STRIDES), start=1):
            planes = scaled(planes, width)
            self.add_module(f"layer{index}", make_layer(block, channels, planes, count, stride))
            channels = planes * block.expansion
            self.skip_channels.append(channels)
        self.out_channels = self.skip_channels.pop()  # layer4's: the bottleneck, not a skip

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        features1 = self.layer1(self.maxpool(stem))
        features2 = self.layer2(features1)
        features3 = self.layer3(features2)
        return [stem, features1, features2, features3], self.layer4(features3)


class ConvUnit(nn.Module):
    """3x3 convolution (no bias) -> BatchNorm2d -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(in_channels, out_channels)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class ResNetUNet(nn.Module):
    """Encoder + decoder; returns logits at the input's size."""

    def __init__(self, in_channels: int, out_channels: int, width: int, depth: int) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(in_channels, width, depth)
        self.decoder = SkipDecoder(self.encoder.skip_channels, self.encoder.out_channels, out_channels, width,
                                   ConvUnit, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, bottleneck = self.encoder(x)
        return self.decoder(skips, bottleneck, x.shape[2:])


@BACKBONES.register
class ResNet2D(Backbone):
    name = "resnet2d"
    description = ("torchvision ResNet-18/34/50 (He et al. 2016) as a 2D U-Net encoder, on (Y, X) slices; "
                   "setting depth (width 32 = torchvision's)")
    stages = ("layer1", "layer2", "layer3", "layer4")
    stem = ("conv1", "bn1")
    first_conv = f"encoder.{FIRST_CONV}"
    output_layer = "decoder.out"
    size_multiple = 32  # the total stride
    min_size = 32  # a 1 x 1 bottleneck: batch norm in training then needs a batch of 2 or more
    spatial_dims = SPATIAL_DIMS
    published = ("torchvision, the whole RGB model with its 1000-class fc: ResNet-18 11,689,512, -34 21,797,672, "
                 "-50 25,557,032; without fc (the encoder here, RGB input): 11,176,512 / 21,284,672 / 23,508,032")
    weights_source = ("torchvision's ImageNet files, https://download.pytorch.org/models/resnet18-f37072fd.pth "
                      "(resnet34-b627a593.pth, resnet50-0676ba61.pth, resnet50-11ad3fa6.pth): "
                      "benchmark run --method imagenet-2d --task ncc --weights resnet18-f37072fd.pth")

    def __init__(self, depth: int = 18) -> None:
        if depth not in BLOCKS:
            raise ValueError(f"depth must be one of {', '.join(map(str, BLOCKS))}, got {depth}")
        self.depth = int(depth)

    def build_encoder(self, in_channels: int, width: int) -> nn.Module:
        return ResNetEncoder(in_channels, width, self.depth)

    def build_segmenter(self, in_channels: int, out_channels: int, width: int) -> nn.Module:
        return ResNetUNet(in_channels, out_channels, width, self.depth)

    def read_released(self, path: Path, content: Any, safetensors: bool) -> PretrainedWeights:
        """A torchvision ResNet state dict (see the module docstring) in the ``encoder.*`` layout: ``fc``
        dropped, the depth, width and input channels read off the file, RGB kernels summed."""
        state = released_state_dict(path, content, "a torchvision ResNet")
        prefix = module_prefix(path, state, FIRST_CONV, "a torchvision ResNet")
        state = {key: tensor for key, tensor in without_prefix(path, state, prefix).items()
                 if key not in CLASSIFIER_KEYS}
        first = state[FIRST_CONV]
        if first.ndim != 4 or first.shape[0] < 2:
            raise UserError(f"{path}: {prefix}{FIRST_CONV} shaped {tuple(first.shape)} is not a 2D ResNet stem "
                            "convolution (2 * width, channels, 7, 7)")
        width, in_channels = int(first.shape[0]) // 2, int(first.shape[1])
        depth = infer_depth(path, state)
        with torch.device("meta"):  # the keys and shapes only
            reference = ResNetEncoder(in_channels, width, depth).state_dict()
        state = with_step_counters(state, reference)
        check_state(path, state, reference, list(reference),
                    f"torchvision's ResNet-{depth} (width {width}, {in_channels} input channel(s))")
        check_finite(path, state)
        notes = {}
        if in_channels == RGB:
            state[FIRST_CONV], in_channels, notes = first.sum(dim=1, keepdim=True), 1, {"rgb_kernels": "summed"}
        source = "safetensors" if safetensors else "released-torchvision"
        return PretrainedWeights({f"encoder.{key}": tensor for key, tensor in state.items()}, "encoder", width,
                                 in_channels, source, file_fingerprint(path), str(path), settings={"depth": depth},
                                 notes=notes)


def without_prefix(path: Path, state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` with ``prefix`` removed from every key; a UserError naming the keys that lack it."""
    stray = [key for key in state if not key.startswith(prefix)]
    if stray:
        raise UserError(f"{path}: {len(stray)} key(s) without the '{prefix}' prefix of the others: {listing(stray)}")
    return {key.removeprefix(prefix): tensor for key, tensor in state.items()}


def infer_depth(path: Path, state: dict[str, torch.Tensor]) -> int:
    """The depth whose block type (bottleneck if any block has a ``conv3``) and blocks per layer (the
    highest block index + 1) the file's keys show."""
    kind = "bottleneck" if any(re.match(r"layer\d\.\d+\.conv3\.", key) for key in state) else "basic"
    blocks = tuple(block_count(state, layer) for layer in range(1, 5))
    for depth, layout in BLOCKS.items():
        if layout == (kind, blocks):
            return depth
    raise UserError(f"{path}: not a torchvision ResNet-{'/'.join(map(str, BLOCKS))}: {kind} blocks, {blocks} per "
                    "layer, match no depth")


def block_count(state: dict[str, torch.Tensor], layer: int) -> int:
    """The highest block index of ``layer{layer}`` in the keys, plus one (0 if the layer has none)."""
    indices = [int(match.group(1)) for key in state if (match := re.match(rf"layer{layer}\.(\d+)\.", key))]
    return 1 + max(indices, default=-1)


def with_step_counters(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every batch-norm ``num_batches_tracked`` it lacks set to 0 (absent from files saved
    with PyTorch before 0.4.1; never used)."""
    missing = {key: torch.zeros((), dtype=torch.long) for key in reference
               if key.endswith(".num_batches_tracked") and key not in state}
    return {**state, **missing}
