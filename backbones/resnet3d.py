"""MedicalNet's 3D ResNets (Chen, Ma, Zheng, "Med3D: Transfer Learning for 3D Medical Image
Analysis", 2019; github.com/Tencent/MedicalNet, MIT licence) as a backbone plugin.

The network (MedicalNet's ``models/resnet.py``), written out here:

* stem: ``conv1`` 7x7x7, stride 2, padding 3, no bias -> ``bn1`` -> ReLU -> max-pool 3, stride 2,
  padding 1 (one input channel in the released files);
* ``layer1`` ... ``layer4`` with 64, 128, 256, 512 planes: basic blocks (two 3x3x3 convolutions,
  expansion 1) for depths 10/18/34, bottleneck blocks (1x1x1, 3x3x3, 1x1x1, expansion 4) for
  50/101/152/200; blocks per layer 10: 1,1,1,1; 18: 2,2,2,2; 34 and 50: 3,4,6,3; 101: 3,4,23,3;
  152: 3,8,36,3; 200: 3,24,36,3. ``layer2`` has stride 2; ``layer3`` and ``layer4`` stride 1 with
  every 3x3x3 convolution dilated 2 and 4 (padding = dilation): output stride 8. No
  convolution of the encoder has a bias.
* the first block of a layer whose output shape differs from its input's has a shortcut of type
  B (``downsample``: a 1x1x1 convolution with the block's stride, no bias, and batch norm) or A
  (parameter-free: subsampling with the stride, as MedicalNet's average pool of kernel 1, and
  zero channels appended). Released types (MedicalNet's README, both the ``resnet_{depth}.pth``
  table and the ``_23dataset`` table): B for 10, 50, 101, 152 and 200; A for 18 and 34.
* ``conv_seg``, MedicalNet's segmentation head on ``layer4``: ConvTranspose3d(C, 32, 2, stride 2)
  (with bias) -> BN -> ReLU -> Conv3d(32, 32, 3, padding 1, no bias) -> BN -> ReLU ->
  Conv3d(32, n_classes, 1, no bias). Its output is at 1/4 of the input's resolution.

Why written out rather than built on ``monai.networks.nets.ResNet`` (which has the same key names):
MONAI's layer3/layer4 have stride 2 and no dilation, so every 3x3x3 convolution of those layers
(both of a basic block, the middle one of a bottleneck) and the first block's shortcut would have
to be patched after construction, and its type-A shortcut is a ``functools.partial`` with the
stride bound into it (and cuts the gradient, see below); patching another library's internals
would tie this network to them. The forward pass here was checked against MedicalNet's model code
(the same weights; depths 10, 18, 34 and 50, both shortcut types: identical outputs).

Choices of this suite, and how it departs from the published network:

* ``width`` scales every channel count by width/32 (at least 1): width 32 is MedicalNet's
  (64 stem channels, ``conv_seg`` 32 channels); ``encoder.out_channels`` = 16 * width * expansion.
* The segmentation target upsamples ``conv_seg``'s logits trilinearly to the input's size (the
  suite's choice: targets return logits at the input resolution; MedicalNet's training code
  instead resizes the labels down to the logits, nearest neighbour). The last 1x1x1 convolution
  is linear, so this is the same as upsampling its input features.
* The type-A shortcut passes gradients: MedicalNet's rebuilds the tensor from ``.data`` (the
  PyTorch 0.3 ``Variable`` idiom), which cuts the gradient through the shortcut of the first
  block of each layer. The forward pass is the same.
* ``stages`` are ``layer1`` ... ``layer4``; the stem (``conv1``, ``bn1``) comes before ``layer1``
  and is fixed with it: ``freeze:N`` fixes the stem and ``layer1`` ... ``layerN``.
* The encoder returns no skips: the decoder is ``conv_seg`` on the bottleneck.
* ``min_size`` 16: a side of 16 leaves 2 voxels at the bottleneck (output stride 8), so batch norm
  in training always sees more than one value per channel, even with a batch of one cube.

Parameter counts at width 32, one input channel, the released shortcut type
(``tests/test_backbone_resnet3d.py``): the encoder (stem and layer1 ... layer4); the segmentation
target (the encoder and ``conv_seg`` with one output class; each further class adds 32); and the
encoder's state-dict entries (its parameters and the batch-norm running means and variances):

======  ========  ===========  ===================  ======================
depth   shortcut  encoder      segmentation target  encoder + BN statistics
======  ========  ===========  ===================  ======================
10      B          14,355,520   14,514,432           14,361,280
18      A          32,986,176   33,145,088           32,993,984
34      A          63,295,808   63,454,720           63,311,040
50      B          46,155,072   46,707,200           46,208,192
101     B          85,201,216   85,753,344           85,306,560
152     B         117,359,936  117,912,064          117,511,360
200     B         126,559,552  127,111,680          126,735,552
======  ========  ===========  ===================  ======================

The paper's 85.75 M for ResNet-101 is the segmentation target's parameters (85,753,344 with one
class, 85,753,376 with two). MedicalNet's README table (14.36, 32.99, 63.31, 46.21, 85.31, 117.51,
126.74 M) is the last column, rounded: it counts the batch-norm running statistics with the
encoder's parameters.

Released files: ``resnet_{10,18,34,50,101,152,200}.pth`` and ``resnet_{10,18,34,50}_23dataset.pth``,
each ``{'state_dict': ...}`` saved from ``nn.DataParallel`` (keys ``module.conv1.weight``,
``module.layer1.0.bn1.running_mean``, ``module.layer2.0.downsample.0.weight``, ...). They hold the
encoder only, no ``conv_seg`` (loading them into MedicalNet's own model reports every
``conv_seg`` key missing). Batch-norm ``num_batches_tracked`` counters, absent from files saved
with PyTorch before 0.4.1 (MedicalNet's era), are filled with 0 where missing: they are never
used, the momentum being set. ``read_released``
also takes a bare state dict, with or without ``module.``, or a safetensors file; it reads the
depth off the blocks per layer and the block type, the shortcut type off the presence of
``downsample`` weights, the width off ``conv1`` (output channels / 2) and the input channels
off ``conv1``; any other missing, unexpected or mis-shaped key is a one-line error naming it.
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
from benchmark.model.weights import (
    check_finite,
    check_state,
    file_fingerprint,
    module_prefix,
    released_state_dict,
)

REFERENCE_WIDTH = 32  # the width at which every channel count is MedicalNet's
PLANES = (64, 128, 256, 512)  # planes of layer1 ... layer4 at the reference width (the stem has 64)
STRIDES = (1, 2, 1, 1)
DILATIONS = (1, 1, 2, 4)
SEGMENTATION_CHANNELS = 32  # conv_seg's hidden channels at the reference width
BLOCKS: dict[int, tuple[str, tuple[int, int, int, int]]] = {  # depth: (block type, blocks per layer)
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
RELEASED_SHORTCUT = {10: "B", 18: "A", 34: "A", 50: "B", 101: "B", 152: "B", 200: "B"}
SHORTCUTS = ("A", "B")


def scaled(channels: int, width: int) -> int:
    """A channel count of the reference network at ``width``."""
    return max(1, channels * width // REFERENCE_WIDTH)


def conv3x3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_channels, out_channels, kernel_size=3, stride=stride, padding=dilation, dilation=dilation,
                     bias=False)


class ZeroPadShortcut(nn.Module):
    """Type-A shortcut: subsample with ``stride``, append zero channels up to ``out_channels``."""

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        x = x[:, :, ::s, ::s, ::s]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, 0, 0, self.out_channels - x.shape[1]))


def shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The shortcut of a block whose output shape differs from its input's: type A or B."""
    if kind == "A":
        return ZeroPadShortcut(out_channels, stride)
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                         nn.BatchNorm3d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3x3 conv-BN (both dilated), the shortcut added, ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = conv3x3x3(in_channels, planes, stride, dilation)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + residual)


class Bottleneck(nn.Module):
    """1x1x1, 3x3x3 (strided, dilated), 1x1x1 (4x the planes) conv-BN, the shortcut added, ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + residual)


def make_layer(block: type[BasicBlock | Bottleneck], in_channels: int, planes: int, blocks: int, stride: int,
               dilation: int, shortcut_type: str) -> nn.Sequential:
    """A layer of ``blocks`` blocks; the first has the stride and, where the shape changes, the shortcut."""
    out_channels = planes * block.expansion
    changes = stride != 1 or in_channels != out_channels
    downsample = shortcut(shortcut_type, in_channels, out_channels, stride) if changes else None
    layers = [block(in_channels, planes, stride, dilation, downsample)]
    layers += [block(out_channels, planes, 1, dilation, None) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetEncoder(nn.Module):
    """The stem and layer1 ... layer4; returns no skips and the bottleneck at 1/8 of the input."""

    def __init__(self, in_channels: int, width: int, depth: int, shortcut_type: str) -> None:
        super().__init__()
        kind, blocks = BLOCKS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        stem = scaled(PLANES[0], width)
        self.conv1 = nn.Conv3d(in_channels, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        channels = stem
        for index, (planes, count, stride, dilation) in enumerate(zip(PLANES, blocks, STRIDES, DILATIONS), start=1):
            planes = scaled(planes, width)
            self.add_module(f"layer{index}", make_layer(block, channels, planes, count, stride, dilation,
                                                        shortcut_type))
            channels = planes * block.expansion
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return [], x


class SegmentationHead(nn.Module):
    """MedicalNet's ``conv_seg`` on the bottleneck, its logits upsampled trilinearly to ``size``."""

    def __init__(self, in_channels: int, out_channels: int, width: int) -> None:
        super().__init__()
        hidden = scaled(SEGMENTATION_CHANNELS, width)
        self.conv_seg = nn.Sequential(
            nn.ConvTranspose3d(in_channels, hidden, kernel_size=2, stride=2),
            nn.BatchNorm3d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv3d(hidden, hidden, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm3d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv3d(hidden, out_channels, kernel_size=1, bias=False),
        )

    def forward(self, bottleneck: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return nn.functional.interpolate(self.conv_seg(bottleneck), size=size, mode="trilinear", align_corners=False)


class ResNetSegmenter(nn.Module):
    """Encoder + ``conv_seg``; returns logits at the input's size."""

    def __init__(self, encoder: ResNetEncoder, decoder: SegmentationHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, bottleneck = self.encoder(x)
        return self.decoder(bottleneck, x.shape[2:])


@BACKBONES.register
class ResNet3D(Backbone):
    name = "resnet3d"
    description = ("MedicalNet 3D ResNet-10...200 (Chen et al. 2019): dilated layer3/4 (output stride 8), "
                   "conv_seg head; setting depth (width 32 = the paper's)")
    stages = ("layer1", "layer2", "layer3", "layer4")
    stem = ("conv1", "bn1")
    first_conv = "encoder.conv1.weight"
    output_layer = "decoder.conv_seg.6"
    size_multiple = 8
    min_size = 16
    published = ("ResNet-101: 85.75 M (the Med3D paper), the segmentation target: encoder with shortcut B + "
                 "conv_seg; MedicalNet's README, depths 10 ... 200: 14.36 / 32.99 / 63.31 / 46.21 / 85.31 / 117.51 / "
                 "126.74 M, the encoder's parameters and batch-norm running statistics")
    weights_source = ("resnet_{10,18,34,50,101,152,200}.pth and resnet_{10,18,34,50}_23dataset.pth from "
                      "github.com/Tencent/MedicalNet (README: Google Drive or Tencent Weiyun, "
                      "MedicalNet_pytorch_files.zip): benchmark run --method medicalnet --task lcs "
                      "--weights resnet_50_23dataset.pth")

    def __init__(self, depth: int = 10, shortcut: str = "") -> None:
        """``shortcut`` "" takes the released type for ``depth``; the attribute holds the type used."""
        if depth not in BLOCKS:
            raise ValueError(f"depth must be one of {', '.join(map(str, BLOCKS))}, got {depth}")
        if shortcut not in ("", *SHORTCUTS):
            raise ValueError(f"shortcut must be A, B or empty (the released type for the depth), got '{shortcut}'")
        self.depth = int(depth)
        self.shortcut = shortcut or RELEASED_SHORTCUT[self.depth]

    def build_encoder(self, in_channels: int, width: int) -> nn.Module:
        return ResNetEncoder(in_channels, width, self.depth, self.shortcut)

    def build_segmenter(self, in_channels: int, out_channels: int, width: int) -> nn.Module:
        encoder = ResNetEncoder(in_channels, width, self.depth, self.shortcut)
        return ResNetSegmenter(encoder, SegmentationHead(encoder.out_channels, out_channels, width))

    def read_released(self, path: Path, content: Any, safetensors: bool) -> PretrainedWeights:
        """A MedicalNet file (see the module docstring) in the ``encoder.*`` layout; the depth, the
        shortcut type, the width and the input channels are read off the file."""
        state = released_state_dict(path, content, "a MedicalNet")
        prefix = module_prefix(path, state, "conv1.weight", "a MedicalNet ResNet")
        first = state[prefix + "conv1.weight"]
        if first.ndim != 5 or first.shape[0] < 2:
            raise UserError(f"{path}: conv1.weight shaped {tuple(first.shape)} is not a MedicalNet stem convolution")
        width, in_channels = int(first.shape[0]) // 2, int(first.shape[1])
        depth = infer_depth(path, state, prefix)
        shortcut_type = "B" if any(".downsample." in key for key in state) else "A"
        with torch.device("meta"):  # shapes only
            encoder = ResNetEncoder(in_channels, width, depth, shortcut_type)
        reference = {prefix + key: tensor for key, tensor in encoder.state_dict().items()}
        state = with_step_counters(state, reference)
        check_state(path, state, reference, list(reference),
                    f"MedicalNet ResNet-{depth} (shortcut {shortcut_type}, width {width}, "
                    f"{in_channels} input channel(s))")
        check_finite(path, state)
        encoder_state = {"encoder." + key.removeprefix(prefix): tensor for key, tensor in state.items()}
        source = "safetensors" if safetensors else "released-medicalnet"
        return PretrainedWeights(encoder_state, "encoder", width, in_channels, source, file_fingerprint(path),
                                 str(path), settings={"depth": depth, "shortcut": shortcut_type})


def infer_depth(path: Path, state: dict[str, torch.Tensor], prefix: str) -> int:
    """The depth whose block type (bottleneck if any block has a ``conv3``) and blocks per layer (the
    highest block index + 1) the file's keys show."""
    kind = "bottleneck" if any(re.match(rf"{re.escape(prefix)}layer\d\.\d+\.conv3\.", key) for key in state) \
        else "basic"
    blocks = tuple(1 + max((int(match.group(1)) for key in state
                            if (match := re.match(rf"{re.escape(prefix)}layer{layer}\.(\d+)\.", key))), default=-1)
                   for layer in range(1, 5))
    for depth, layout in BLOCKS.items():
        if layout == (kind, blocks):
            return depth
    raise UserError(f"{path}: not a MedicalNet ResNet: {kind} blocks, {blocks} per layer, match no depth "
                    f"({', '.join(map(str, BLOCKS))})")


def with_step_counters(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every batch-norm ``num_batches_tracked`` it lacks set to 0 (absent from files saved
    with PyTorch before 0.4.1; never used)."""
    missing = {key: torch.zeros((), dtype=torch.long) for key in reference
               if key.endswith(".num_batches_tracked") and key not in state}
    return {**state, **missing}
