"""The Models Genesis U-Net with 2D operations (``benchmark.model.backbone``, ``spatial_dims=2``) as a
backbone plugin: the 2D network of the paper's comparison of 3D Models Genesis with 2D approaches.

The design of ``unet3d`` with every 3x3x3 convolution, 2x2x2 max-pool, transposed convolution and
batch norm made 2D: four encoder stages (``down_tr64`` ... ``down_tr512``, two 3x3 conv-BN-ReLU blocks
each, the first three followed by 2x2 max-pooling), three decoder stages (upsampling, the skip
concatenated, two blocks) and a 1x1 output convolution (``decoder.out_tr``). Module names and
state-dict keys are the 3D U-Net's (``encoder.down_tr64.ops.0.conv1.weight`` ...), the kernels
``(out, in, 3, 3)``. The model is ``UNet2D`` (``UNet3D`` with ``spatial_dims=2``).

Inputs are ``(N, C, Y, X)``: the tasks' cubes ``(Z, Y, X)`` reach it through the suite's 2D / 2.5D
adapters, so ``check_cube`` checks only the last two sides (Y, X): multiples of 8, at least 8 (the
bottleneck is at 1/8; at 8 x 8 it is 1 x 1, which batch norm in training accepts from a batch of 2).

Parameters at width 32, one input channel, one output (``tests/test_backbone_2d.py``): 2,345,472 in
the encoder; 6,821,953 in the segmentation target with transposed-convolution upsampling (the
default, as the released 3D PyTorch weights), 5,444,801 with parameter-free bilinear upsampling
(``transposed=false``, as the Keras original); 2,871,809 in the classification target (the suite's
head: global average pool, Linear(512, 1024), ReLU, Linear). No count is published for a 2D U-Net
of this design. No released 2D weights are read: only this suite's checkpoints (``benchmark pretrain``).
"""

from __future__ import annotations

from torch import nn

from benchmark.api.backbone import Backbone
from benchmark.api.registry import BACKBONES
from benchmark.model.backbone import Encoder, UNet2D

SPATIAL_DIMS = 2


@BACKBONES.register
class UNet2DBackbone(Backbone):
    name = "unet2d"
    description = ("Models Genesis U-Net in 2D: 4 conv stages down, 3 up, skips, on (Y, X) slices "
                   "(width 32 = the 3D paper's channels)")
    stages = ("down_tr64", "down_tr128", "down_tr256", "down_tr512")
    first_conv = "encoder.down_tr64.ops.0.conv1.weight"
    output_layer = "decoder.out_tr"
    size_multiple = 8
    min_size = 8
    spatial_dims = SPATIAL_DIMS
    published = ("none published for the 2D design; measured at width 32: 6.82 M in the segmentation target "
                 "(transposed convolutions), 5.44 M with bilinear upsampling (transposed=false)")

    def __init__(self, transposed: bool = True) -> None:
        self.transposed = bool(transposed)

    def build_encoder(self, in_channels: int, width: int) -> nn.Module:
        return Encoder(in_channels, width, spatial_dims=SPATIAL_DIMS)

    def build_segmenter(self, in_channels: int, out_channels: int, width: int) -> nn.Module:
        return UNet2D(in_channels=in_channels, out_channels=out_channels, width=width, transposed=self.transposed)
