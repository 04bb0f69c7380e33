"""Random initialisations with the Keras definitions (biases 0, BatchNorm gamma 1, beta 0).

fan_in = in_channels * prod(kernel), fan_out = out_channels * prod(kernel), as Keras
computes them for Conv3D and as PyTorch computes them for Conv3d and Linear weights.
For ConvTranspose3d PyTorch's weight is (in, out, k...): its fans are taken the same
way (dimension 1 as fan_in), which is what Keras does for Conv3DTranspose. The 2D
layers (of the 2D networks) are initialised by the same definitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

WEIGHTED = (nn.Conv3d, nn.ConvTranspose3d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
NORMS = (nn.BatchNorm3d, nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.InstanceNorm3d, nn.InstanceNorm2d,
         nn.LayerNorm)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _apply(model: nn.Module, bound_of: Callable[[torch.Tensor], float]) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, WEIGHTED):
                bound = bound_of(module.weight)
                module.weight.uniform_(-bound, bound)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, NORMS) and getattr(module, "weight", None) is not None:
                module.weight.fill_(1.0)
                module.bias.zero_()


def uniform(model: nn.Module, limit: float = 0.05) -> None:
    """Keras ``RandomUniform(-0.05, 0.05)``."""
    _apply(model, lambda weight: limit)


def glorot_uniform(model: nn.Module) -> None:
    """Keras ``glorot_uniform``: U(+-sqrt(6 / (fan_in + fan_out)))."""
    _apply(model, lambda weight: math.sqrt(6.0 / sum(fans(weight))))


def he_uniform(model: nn.Module) -> None:
    """Keras ``he_uniform``: U(+-sqrt(6 / fan_in))."""
    _apply(model, lambda weight: math.sqrt(6.0 / fans(weight)[0]))
