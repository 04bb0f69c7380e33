"""Training from scratch: random initialisations with the Keras definitions (no pretraining).

The three differ only in the initialiser (benchmark.model.init): ``scratch-he`` is the
default scratch baseline; ``scratch-uniform`` and ``scratch-glorot`` are the others the
Models Genesis paper reports. Biases start at 0, BatchNorm at gamma 1, beta 0. Every one
trains any backbone (``--backbone``); ``scratch-2d`` is ``scratch-he`` on the 2D U-Net by
default, the 2D and 2.5D baseline of the dimensionality comparison.
"""

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from benchmark.api.backbone import ANY_BACKBONE
from benchmark.api.method import Method
from benchmark.api.registry import METHODS
from benchmark.model import init

CONTROL_STREAM = 0x5EED_C0DE  # mixed into the seed of the negative control's initialisation


class Scratch(Method):
    transfers = "none"
    backbones = (ANY_BACKBONE,)
    spatial_dims = None  # no pretext task: any network, 2D or 3D
    initialiser: ClassVar[Callable[[nn.Module], None]]

    def init_weights(self, model: nn.Module) -> None:
        type(self).initialiser(model)


@METHODS.register
class ScratchHe(Scratch):
    name = "scratch-he"
    description = "From scratch, Keras he_uniform init U(+-sqrt(6/fan_in))"
    baseline = True
    initialiser = staticmethod(init.he_uniform)


@METHODS.register
class ScratchHeControl(ScratchHe):
    """The negative control of a calibration: ``scratch-he`` under another name, its weights drawn from
    another random stream (the run's seed mixed with a constant) and everything after the initialisation
    unchanged (the global random state is restored). It is identical in distribution to the baseline, so
    the share of its comparisons with ``scratch-he`` that the report calls significant estimates the
    false-positive rate of the suite's tests."""

    name = "scratch-he-control"
    description = "Negative control: scratch-he's initialisation from another random stream (same distribution)"
    baseline = False
    negative_control_of = "scratch-he"

    def init_weights(self, model: nn.Module) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch.initial_seed() ^ CONTROL_STREAM)
            super().init_weights(model)


@METHODS.register
class ScratchHe2D(ScratchHe):
    name = "scratch-2d"
    description = "From scratch in 2D: he_uniform, on the 2D U-Net by default (--dims 2d or 2.5d)"
    baseline = False
    backbones = ("unet2d", ANY_BACKBONE)


@METHODS.register
class ScratchGlorot(Scratch):
    name = "scratch-glorot"
    description = "From scratch, Keras glorot_uniform init U(+-sqrt(6/(fan_in+fan_out)))"
    initialiser = staticmethod(init.glorot_uniform)


@METHODS.register
class ScratchUniform(Scratch):
    name = "scratch-uniform"
    description = "From scratch, Keras RandomUniform init U(-0.05, 0.05)"
    initialiser = staticmethod(init.uniform)
