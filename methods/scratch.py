"""Training from scratch: random initialisations with the Keras definitions (no pretraining).

The three differ only in the initialiser (benchmark.model.init): ``scratch-he`` is the
default scratch baseline; ``scratch-uniform`` and ``scratch-glorot`` are the others the
Models Genesis paper reports. Biases start at 0, BatchNorm at gamma 1, beta 0.
"""

from collections.abc import Callable
from typing import ClassVar

from torch import nn

from benchmark.api.method import Method
from benchmark.api.registry import METHODS
from benchmark.model import init


class Scratch(Method):
    transfers = "none"
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
class ScratchGlorot(Scratch):
    name = "scratch-glorot"
    description = "From scratch, Keras glorot_uniform init U(+-sqrt(6/(fan_in+fan_out)))"
    initialiser = staticmethod(init.glorot_uniform)


@METHODS.register
class ScratchUniform(Scratch):
    name = "scratch-uniform"
    description = "From scratch, Keras RandomUniform init U(-0.05, 0.05)"
    initialiser = staticmethod(init.uniform)
