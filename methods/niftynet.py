"""NiftyNet's released Dense V-Net (Gibson et al., "Automatic multi-organ segmentation on abdominal CT
with dense V-networks", IEEE TMI 2018) as a benchmarked method.

It pretrains nothing: it transfers the network of NiftyNet's model zoo entry
``dense_vnet_abdominal_ct`` (supervised on 8 abdominal organs in CT), a TensorFlow 1 checkpoint
read by the ``densevnet`` backbone, to each task: a segmentation target gets the encoder and the
V-link convolutions (its output layer, the zoo's 9 classes, is dropped and trained afresh), a
classification target the encoder.
"""

from benchmark.api.method import Method
from benchmark.api.registry import METHODS


@METHODS.register
class NiftyNet(Method):
    name = "niftynet"
    description = "Benchmarks NiftyNet's released Dense V-Net, supervised on abdominal CT organs (Gibson et al. 2018)"
    transfers = "encoder+decoder"
    backbones = ("densevnet",)
    weights_required = ("NiftyNet's model zoo entry dense_vnet_abdominal_ct (github.com/NifTK/NiftyNetModelZoo): "
                        "its models/ folder, or a model.ckpt-N prefix or .index file in it")
