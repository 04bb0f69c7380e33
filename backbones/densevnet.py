"""NiftyNet's Dense V-Net (Gibson et al., "Automatic multi-organ segmentation on abdominal CT with
dense V-networks", IEEE TMI 2018) as a backbone plugin.

The network (NiftyNet's ``niftynet/network/dense_vnet.py``, default hyperparameters, channel
counts at width 32; ``c`` becomes ``max(1, c * width // 32)`` at another width):

* ``encoder.stem``: the input average-pooled (3x3x3, stride 2) and batch-normalised
  (``input_bn``, one channel per input channel), concatenated with ``conv``: a 5x5x5 stride-2
  convolution of the input to 24 channels with BatchNorm and *no* activation (NiftyNet's
  ``ConvolutionalLayer`` default). Everything below runs at 1/2 resolution and less.
* ``encoder.block1`` ... ``block3``: dense feature stacks of 5, 10 and 10 layers (3x3x3 conv, BN,
  ReLU) adding 4, 8 and 16 channels each, every layer fed the concatenation of the stack's input
  and all earlier layers' outputs; the stack's features (its input and every layer's output,
  concatenated) feed the next block through ``down`` (3x3x3 stride-2 conv-BN-ReLU to 24 channels;
  block3 has none).
* ``decoder.skip1`` ... ``skip3``: each stack's features -> 3x3x3 conv-BN-ReLU to 12, 24, 24
  channels (the V-links), resized to 1/2 resolution and concatenated with the stem's pooled input;
  ``decoder.out`` (the output layer, a 3x3x3 convolution with bias) makes the logits, which are
  resized to the input's size.

Every convolution has no bias (the output layer excepted) and TensorFlow's "same" padding,
computed from the input as TensorFlow does (total ``max((ceil(n/s) - 1) s + k - n, 0)``, the
smaller half in front: a stride-2 convolution or pooling of an even side pads one voxel more at
the end than at the start); the average pooling divides by the voxels inside the input
(TensorFlow's ``avg_pool3d``). BatchNorm: eps 1e-5, momentum 0.1 (NiftyNet's moving-average
decay 0.9). Sides must be multiples of 8 (NiftyNet's own check: three halvings): the smoke cube
(16, 32, 32) runs, its deepest features (2, 4, 4).

Stages (``freeze:N`` fixes the first N, and with them the ``stem``): ``block1``, ``block2``,
``block3``; the stem (``encoder.stem``) is the backbone's stem.
The V-link convolutions, which NiftyNet builds inside each dense block, are the decoder's here:
they only feed the segmentation output, while the encoder is the path to the deepest features.
Classification target: the encoder (bottleneck: block3's stack features, 184 channels at width
32, 1/8 resolution) and the suite's default head. Segmentation target: encoder and decoder.
The input channels enter ``input_bn``, the stem convolution, the concatenations after it
(block1, ``skip1``) and the output layer: the suite's inflation of the first convolution alone
cannot adapt a one-channel file to a multi-channel task, whose transfer is refused as mis-shaped.

Left out of the published network, and why:

* the in-network random affine augmentation (training only; the suite augments its own way);
* the spatial prior (``use_prior``, off by default in NiftyNet: a learned log-probability grid of
  a fixed size, 24^3 in the current code, tied to the organ task and its cropping);
* dropout (NiftyNet's ``keep_prob`` defaults to 1.0: none) and the batch-wise dropout variant;
* resizing: trilinear with half-pixel centres (``align_corners=False``) where NiftyNet uses
  TensorFlow 1's legacy bilinear resizing (sample ``i`` at ``i * in / out``): the upsampled
  V-links and logits are shifted by a quarter voxel at 1/2 resolution.

Parameters measured at width 32, one input channel (BatchNorm scales and offsets included, i.e.
exactly NiftyNet's trainable variables): 662,358 in the encoder (stem 3,050, blocks 47,068,
197,200 and 415,040), 216,156 in the decoder with one output (V-links 14,604, 67,440 and 119,280;
output layer 14,832 with NiftyNet's 9 organ classes, 1,648 with one output): 878,514 in the model
zoo's 9-class network, 865,330 in the suite's segmentation target with one output, and 852,823 in
the classification target (the suite's head adds 189,440 + 1,025 per output). The paper is quoted
at 2.60 M parameters; NiftyNet's default hyperparameters, which its model zoo network was trained
with, give 0.88 M, so that figure describes another configuration or counts differently: it is
not reproduced here.

Released weights: NiftyNet's model zoo entry ``dense_vnet_abdominal_ct`` (CT, 144^3 windows, 9
classes), a TensorFlow 1 checkpoint (``model.ckpt-N.index`` + ``.data-*``), read by
``benchmark.model.tfcheckpoint``: ``read_weights`` takes the checkpoint's prefix, one of its files
or its folder (anything else: the suite's own checkpoints). The variable names are derived from
the network code, not read off the released file: NiftyNet names each layer's variable scope by
its class's default name, made unique by TensorFlow (``conv_bn``, ``conv_bn_1``, ...), inside
the network's scope ``DenseVNet``:

* ``DenseVNet/batch_norm/{gamma,beta,moving_mean,moving_variance}`` -> ``encoder.stem.input_bn.
  {weight,bias,running_mean,running_var}``;
* ``DenseVNet/conv_bn/conv_/w`` -> ``encoder.stem.conv.conv.weight``, ``DenseVNet/conv_bn/bn_/*``
  -> ``encoder.stem.conv.bn.*``;
* block ``b`` (1-3) is scope ``DenseVNet/dense_feature_stack_block`` (``_1``, ``_2`` for blocks 2
  and 3): its layer ``i`` (0-based) ``<block>/dense_feature_stack_block/conv_bn_relu`` (``_i``
  for i > 0) -> ``encoder.block<b>.layers.<i>``; its V-link ``<block>/conv_bn_relu`` ->
  ``decoder.skip<b>``; its down convolution ``<block>/conv_bn_relu_1`` -> ``encoder.block<b>.down``
  (each unit's ``conv_/w`` and ``bn_/*`` as for the stem's convolution).

Dropped from the file, and only these: the output layer ``DenseVNet/conv/conv_/{w,b}`` (its 9
organ classes; never transferred), the spatial prior ``DenseVNet/spatial_prior_block/prior``,
the optimizer's slots of any variable named above (names ending ``/Adam``, ``/Adam_1``, ``/Momentum``,
``/Adagrad``, ``/RMSProp``, ``/RMSProp_1``, ``/Adadelta``, ``/Adadelta_1``) and its other state
(any variable whose last name part is ``beta1_power``, ``beta2_power`` or ``global_step``). Any
other variable, a missing one, or a shape that does not match is a UserError naming it. The
width and the input channels are read off ``DenseVNet/conv_bn/conv_/w``; BatchNorm step counters
(which TensorFlow has not) start at 0.

Axis order *(our reading)*: TensorFlow kernels are ``(k0, k1, k2, in, out)`` over the network
input's spatial axes, which NiftyNet lays out as the image's voxel axes reoriented to the
config's ``axcodes``; NiftyNet's Dense V-Net configurations (its ``config/densevnet_config.ini``
and, as quoted by its users, the model zoo entry's ``config.ini``) use ``axcodes = (A, R, S)``:
axis 0 anterior-posterior, axis 1 right-left, axis 2 inferior-superior. The suite's tensors are
``(Z, Y, X)`` in SimpleITK order: slice axis (inferior-superior), then anterior-posterior, then
right-left. So a kernel becomes ``(out, in, k2, k0, k1)`` (``permute(4, 3, 2, 0, 1)``): each
learned filter sees each anatomical axis it was trained on. The directions along those axes are
not matched (the suite does not reorient scans); a mirrored filter is what a flip augmentation
shows a network anyway.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.api.backbone import Backbone, PretrainedWeights
from benchmark.api.registry import BACKBONES
from benchmark.errors import UserError
from benchmark.model.tfcheckpoint import checkpoint_fingerprint, is_tf_checkpoint, read_tf_checkpoint
from benchmark.model.weights import check_finite, check_state

INITIAL_CHANNELS = 24  # the stem's 5x5x5 convolution
DENSE_LAYERS = (5, 10, 10)  # layers of each dense feature stack
DENSE_CHANNELS = (4, 8, 16)  # channels each layer of a stack adds
SKIP_CHANNELS = (12, 24, 24)  # the V-link convolutions
DOWN_CHANNELS = (24, 24, None)  # the stride-2 convolutions between stacks
PUBLISHED_WIDTH = 32
KERNEL_TO_TORCH = (4, 3, 2, 0, 1)  # TF (A, R, S, in, out) -> (out, in, Z=S, Y=A, X=R)
KERNEL_TO_TF = (3, 4, 2, 1, 0)  # its inverse
SCOPE = "DenseVNet"
FIRST_CONV_VARIABLE = f"{SCOPE}/conv_bn/conv_/w"
BN_VARIABLES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
DROPPED_VARIABLES = (f"{SCOPE}/conv/conv_/w", f"{SCOPE}/conv/conv_/b",  # the output layer (organ classes)
                     f"{SCOPE}/spatial_prior_block/prior")
OPTIMIZER_SLOTS = ("Adam", "Adam_1", "Momentum", "Adagrad", "RMSProp", "RMSProp_1", "Adadelta", "Adadelta_1")
OPTIMIZER_VARIABLES = ("beta1_power", "beta2_power", "global_step")
KERNEL_AXES_NOTE = "TF (A, R, S, in, out) -> (out, in, Z, Y, X): permute(4, 3, 2, 0, 1)"


def scaled(channels: int, width: int) -> int:
    return max(1, channels * width // PUBLISHED_WIDTH)


def same_padding(sizes: torch.Size, kernel: int, stride: int) -> list[int]:
    """``F.pad``'s list (last axis first) for TensorFlow's "same" padding of ``sizes``."""
    pads = []
    for size in reversed(sizes):
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


def same_average_pool(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's ``avg_pool3d`` (3x3x3, stride 2, "same"): the mean of the window's voxels inside
    the input."""
    pads = same_padding(x.shape[2:], 3, 2)
    total = F.avg_pool3d(F.pad(x, pads), 3, 2)
    inside = F.avg_pool3d(F.pad(torch.ones_like(x[:1, :1]), pads), 3, 2)
    return total / inside


def resize(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if x.shape[2:] == size:
        return x
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)


class SameConv3d(nn.Conv3d):
    """A cubic-kernel convolution with TensorFlow's "same" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, same_padding(x.shape[2:], self.kernel_size[0], self.stride[0])))


class ConvUnit(nn.Module):
    """NiftyNet's ``ConvolutionalLayer``: a convolution without bias, BatchNorm, optionally a ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                 relu: bool = True) -> None:
        super().__init__()
        self.conv = SameConv3d(in_channels, out_channels, kernel, stride)
        self.bn = nn.BatchNorm3d(out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Stem(nn.Module):
    """The pooled, normalised input and the strided 5x5x5 convolution, concatenated."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm3d(in_channels)
        self.conv = ConvUnit(in_channels, scaled(INITIAL_CHANNELS, width), kernel=5, stride=2, relu=False)
        self.out_channels = in_channels + scaled(INITIAL_CHANNELS, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.input_bn(same_average_pool(x))
        return pooled, torch.cat([pooled, self.conv(x)], 1)


class DenseBlock(nn.Module):
    """A dense feature stack; returns its features and their strided convolution (None for the last)."""

    def __init__(self, in_channels: int, layers: int, growth: int, down_channels: int | None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ConvUnit(in_channels + i * growth, growth) for i in range(layers))
        self.out_channels = in_channels + layers * growth
        self.down = ConvUnit(self.out_channels, down_channels, stride=2) if down_channels else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x, self.down(x) if self.down is not None else None


class DenseVNetEncoder(nn.Module):
    """Stem and three dense blocks; returns ``[pooled input, block1 features, block2 features]`` and
    block3's features (the bottleneck)."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.stem = Stem(in_channels, width)
        channels = self.stem.out_channels
        for index, (layers, growth, down) in enumerate(zip(DENSE_LAYERS, DENSE_CHANNELS, DOWN_CHANNELS), 1):
            block = DenseBlock(channels, layers, scaled(growth, width), scaled(down, width) if down else None)
            setattr(self, f"block{index}", block)
            channels = scaled(down, width) if down else block.out_channels
        self.in_channels = in_channels
        self.feature_channels = [self.block1.out_channels, self.block2.out_channels, self.block3.out_channels]
        self.out_channels = self.block3.out_channels

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        pooled, x = self.stem(x)
        features1, x = self.block1(x)
        features2, x = self.block2(x)
        features3, _ = self.block3(x)
        return [pooled, features1, features2], features3


class DenseVNetDecoder(nn.Module):
    """The V-link convolutions, their concatenation at 1/2 resolution, the output layer, upsampling x2."""

    def __init__(self, encoder: DenseVNetEncoder, out_channels: int, width: int) -> None:
        super().__init__()
        links = [scaled(channels, width) for channels in SKIP_CHANNELS]
        self.skip1, self.skip2, self.skip3 = (ConvUnit(features, link)
                                              for features, link in zip(encoder.feature_channels, links))
        self.out = SameConv3d(encoder.in_channels + sum(links), out_channels, 3, bias=True)

    def forward(self, skips: list[torch.Tensor], bottleneck: torch.Tensor) -> torch.Tensor:
        pooled, features1, features2 = skips
        size = pooled.shape[2:]
        links = [pooled, resize(self.skip1(features1), size), resize(self.skip2(features2), size),
                 resize(self.skip3(bottleneck), size)]
        return F.interpolate(self.out(torch.cat(links, 1)), scale_factor=2, mode="trilinear", align_corners=False)


class DenseVNet(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, width: int) -> None:
        super().__init__()
        self.encoder = DenseVNetEncoder(in_channels, width)
        self.decoder = DenseVNetDecoder(self.encoder, out_channels, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, bottleneck = self.encoder(x)
        return self.decoder(skips, bottleneck)


def _unique(scope: str, index: int) -> str:
    """TensorFlow's name for the ``index``-th (0-based) scope of that name in one parent scope."""
    return scope if index == 0 else f"{scope}_{index}"


def _conv_unit_variables(scope: str, module: str) -> dict[str, str]:
    names = {f"{scope}/conv_/w": f"{module}.conv.weight"}
    names.update({f"{scope}/bn_/{variable}": f"{module}.bn.{key}" for variable, key in BN_VARIABLES.items()})
    return names


def niftynet_variables() -> dict[str, str]:
    """The TensorFlow variable names of NiftyNet's Dense V-Net (its output layer and prior excepted),
    each with the key it maps onto (see the module docstring)."""
    names = {f"{SCOPE}/batch_norm/{variable}": f"encoder.stem.input_bn.{key}" for variable, key in BN_VARIABLES.items()}
    names.update(_conv_unit_variables(f"{SCOPE}/conv_bn", "encoder.stem.conv"))
    for index, layers in enumerate(DENSE_LAYERS):
        block, module = f"{SCOPE}/{_unique('dense_feature_stack_block', index)}", f"block{index + 1}"
        for layer in range(layers):
            names.update(_conv_unit_variables(f"{block}/dense_feature_stack_block/{_unique('conv_bn_relu', layer)}",
                                              f"encoder.{module}.layers.{layer}"))
        names.update(_conv_unit_variables(f"{block}/conv_bn_relu", f"decoder.skip{index + 1}"))
        if DOWN_CHANNELS[index]:
            names.update(_conv_unit_variables(f"{block}/conv_bn_relu_1", f"encoder.{module}.down"))
    return names


def _is_dropped(name: str, variables: dict[str, str]) -> bool:
    """Whether a file's variable is one that is dropped (module docstring): the output layer, the prior,
    optimizer state."""
    if name in DROPPED_VARIABLES or name.rsplit("/", 1)[-1] in OPTIMIZER_VARIABLES:
        return True
    base, _, slot = name.rpartition("/")
    return slot in OPTIMIZER_SLOTS and (base in variables or base in DROPPED_VARIABLES)


def _weight(path: Path, name: str, array: np.ndarray) -> torch.Tensor:
    """A file's weight as a float32 tensor in the suite's layout (kernels permuted)."""
    if not np.issubdtype(array.dtype, np.floating):
        raise UserError(f"{path}: variable {name} holds {array.dtype} values, not floating-point weights")
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return tensor.permute(KERNEL_TO_TORCH).contiguous() if tensor.ndim == 5 else tensor


def _file_geometry(path: Path, arrays: dict[str, np.ndarray]) -> tuple[int, int]:
    """(in_channels, width) read off the stem convolution's kernel (5, 5, 5, in, 24 * width / 32)."""
    first = arrays.get(FIRST_CONV_VARIABLE)
    if first is None or first.ndim != 5:
        found = "missing" if first is None else f"shaped {first.shape}"
        raise UserError(f"{path}: not NiftyNet's Dense V-Net: its first convolution {FIRST_CONV_VARIABLE} is {found}")
    return int(first.shape[3]), math.ceil(first.shape[4] * PUBLISHED_WIDTH / INITIAL_CHANNELS)


@BACKBONES.register
class DenseVNetBackbone(Backbone):
    name = "densevnet"
    description = "NiftyNet's Dense V-Net (Gibson et al. 2018): dense feature stacks, V-links at 1/2 resolution"
    stem = ("stem",)
    stages = ("block1", "block2", "block3")
    first_conv = "encoder.stem.conv.conv.weight"
    output_layer = "decoder.out"
    size_multiple = 8
    min_size = 8
    published = ("2.60 M quoted for the paper; measured with NiftyNet's defaults (the model zoo's network): "
                 "878,514 with its 9 classes (865,330 with one output), 662,358 in the encoder")
    weights_source = ("NiftyNet's model zoo entry dense_vnet_abdominal_ct (github.com/NifTK/NiftyNetModelZoo): "
                      "--method niftynet --weights <its models/ folder or model.ckpt-N prefix>")

    def build_encoder(self, in_channels: int, width: int) -> nn.Module:
        return DenseVNetEncoder(in_channels, width)

    def build_segmenter(self, in_channels: int, out_channels: int, width: int) -> nn.Module:
        return DenseVNet(in_channels, out_channels, width)

    def read_weights(self, path: Path) -> PretrainedWeights:
        """A NiftyNet TensorFlow checkpoint (its prefix, ``.index`` file or folder), else what the base
        class reads (this suite's own checkpoints)."""
        path = Path(path)
        if not is_tf_checkpoint(path):
            return super().read_weights(path)
        return self.read_niftynet(path, read_tf_checkpoint(path))

    def read_niftynet(self, path: Path, arrays: dict[str, np.ndarray]) -> PretrainedWeights:
        """The variables of a NiftyNet Dense V-Net checkpoint mapped onto the targets' keys, strictly."""
        in_channels, width = _file_geometry(path, arrays)
        with torch.device("meta"):
            reference = self.build_segmenter(in_channels, 1, width).state_dict()
        variables = niftynet_variables()
        kept = {name: array for name, array in arrays.items() if not _is_dropped(name, variables)}
        dropped = sorted(name for name in arrays if name not in kept)
        file_state = {name: torch.from_numpy(array) for name, array in kept.items()}
        tf_reference = {name: reference[key].permute(KERNEL_TO_TF) if reference[key].ndim == 5 else reference[key]
                        for name, key in variables.items()}
        check_state(path, file_state, tf_reference, list(variables),
                    f"NiftyNet's Dense V-Net (width {width}, {in_channels} input channel(s))")
        check_finite(path, file_state)
        negative = [name for name in kept if name.endswith("/moving_variance") and bool((kept[name] < 0).any())]
        if negative:
            raise UserError(f"{path}: the BatchNorm variance {negative[0]} holds negative values")
        state = {variables[name]: _weight(path, name, array) for name, array in kept.items()}
        for key in reference:  # BatchNorm step counters: TensorFlow has none
            if key.endswith("num_batches_tracked"):
                state[key] = torch.zeros((), dtype=torch.long)
        slots = [name for name in dropped if name.rpartition("/")[2] in OPTIMIZER_SLOTS]
        notes: dict[str, Any] = {"kernel_axes": KERNEL_AXES_NOTE, "optimizer_slots_dropped": len(slots),
                                 "dropped": [name for name in dropped if name not in slots]}
        return PretrainedWeights(state, "encoder+decoder", width, in_channels, "niftynet-tf-checkpoint",
                                 checkpoint_fingerprint(path), str(path), notes=notes)
