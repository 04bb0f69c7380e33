"""The Models Genesis 3D U-Net (``benchmark.model.backbone``) as a backbone plugin.

Four encoder stages (``down_tr64`` ... ``down_tr512``, two 3x3x3 conv-BN-ReLU blocks each, the
first three followed by max-pooling), three decoder stages and a 1x1x1 output convolution.
At width 32: 19,073,665 parameters in the segmentation target with transposed-convolution
upsampling (the released PyTorch weights), 16,320,257 with the Keras original's
parameter-free upsampling (``transposed=false``; the 16.32 M the paper quotes).

Released weights: ``Genesis_Chest_CT.pt`` from the Models Genesis repository (PyTorch
release), read by ``benchmark.model.weights`` (its layouts, the kernel reordering and every
check are described there); benchmark it with ``--method genesis --weights Genesis_Chest_CT.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from benchmark.api.backbone import Backbone, PretrainedWeights
from benchmark.api.registry import BACKBONES
from benchmark.model.backbone import Encoder, UNet3D
from benchmark.model.weights import unet_weights


@BACKBONES.register
class UNet3DBackbone(Backbone):
    name = "unet3d"
    description = "Models Genesis 3D U-Net: 4 conv stages down, 3 up, skips (width 32 = the paper's)"
    stages = ("down_tr64", "down_tr128", "down_tr256", "down_tr512")
    first_conv = "encoder.down_tr64.ops.0.conv1.weight"
    output_layer = "decoder.out_tr"
    size_multiple = 8
    min_size = 8
    published = ("16.32 M (the paper: Keras, parameter-free upsampling, transposed=false); "
                 "19.07 M with transposed convolutions (the released PyTorch weights)")
    weights_source = ("Genesis_Chest_CT.pt, the Models Genesis PyTorch release "
                      "(github.com/MrGiovanni/ModelsGenesis): --method genesis --weights Genesis_Chest_CT.pt")

    def __init__(self, transposed: bool = True) -> None:
        self.transposed = bool(transposed)

    def build_encoder(self, in_channels: int, width: int) -> nn.Module:
        return Encoder(in_channels, width)

    def build_segmenter(self, in_channels: int, out_channels: int, width: int) -> nn.Module:
        return UNet3D(in_channels=in_channels, out_channels=out_channels, width=width, transposed=self.transposed)

    def read_released(self, path: Path, content: Any, safetensors: bool) -> PretrainedWeights:
        """Every layout ``benchmark.model.weights`` reads (this suite's checkpoints are read against the
        settings they declare, by ``Backbone.read_checkpoint``); a file with the decoder's upsampling
        weights implies ``transposed=true``."""
        loaded: dict[str, Any] = unet_weights(path, content, safetensors)
        has_upsampling = any(".up_conv." in key for key in loaded["state_dict"])
        return PretrainedWeights(
            loaded["state_dict"], loaded["transfers"], loaded["width"], loaded["in_channels"], loaded["format"],
            loaded["fingerprint"], loaded["path"], settings={"transposed": True} if has_upsampling else {},
            notes={"kernels_reordered": loaded["kernels_reordered"]})
