"""ImageNet transfer learning in 2D: the released ImageNet-pretrained ResNets of torchvision, benchmarked
on the 3D tasks through the 2D / 2.5D adapters (``--dims 2d`` or ``2.5d``): the "fine-tuning ImageNet
models in 2D" baseline against which the Models Genesis paper sets 3D Models Genesis.

It pretrains nothing: it transfers the encoder of a torchvision file given with ``--weights``
(backbone ``resnet2d``, which reads the depth and width off the file, drops the ``fc`` classifier and
sums the RGB kernels of ``conv1`` to one channel); the target's head or U-Net decoder is trained from
its initialisation.
"""

from benchmark.api.method import Method
from benchmark.api.registry import METHODS


@METHODS.register
class ImageNet2D(Method):
    name = "imagenet-2d"
    description = ("Benchmarks an ImageNet-pretrained 2D encoder: torchvision's released ResNet-18/34/50 "
                   "(needs --weights; --dims 2d or 2.5d)")
    transfers = "encoder"
    backbones = ("resnet2d",)
    spatial_dims = 2
    weights_required = ("a torchvision ImageNet ResNet file: https://download.pytorch.org/models/"
                        "resnet18-f37072fd.pth, resnet34-b627a593.pth or resnet50-0676ba61.pth (V2: "
                        "resnet50-11ad3fa6.pth) from the same address")
