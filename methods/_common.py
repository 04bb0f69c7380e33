"""Pieces shared by several method plugins (not a plugin: the registry skips ``_`` modules).

* ``genesis_sgd``: the Models Genesis optimiser, reused by the restoration baselines.
* ``uniform_integers``: batched uniform integer draws for the torch (device) transforms.
* ``EncoderClassifier`` and ``encoder_state``: a backbone's encoder with a linear head on
  its global-average-pooled bottleneck (jigsaw, DeepCluster), and the ``encoder.*`` part
  of a pretext model's weights, keyed exactly like the backbone's targets' encoder.

The puzzle helpers (jigsaw, Rubik's cube) are in ``_tiles``, so that editing them changes
the identity of no other method (a method's source fingerprint follows its imports).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def uniform_integers(low: torch.Tensor, high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in ``[low, high]`` inclusive, elementwise, on ``low``'s device (int64): the
    batched torch counterpart of ``Generator.integers(low, high + 1)``."""
    u = torch.rand(low.shape, generator=generator, device=low.device, dtype=torch.float64)
    return low + torch.floor(u * (high - low + 1)).long().minimum(high - low)


def genesis_sgd(
    parameters: Any,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """SGD lr 1.0, momentum 0.9, ReduceLROnPlateau(factor 0.5, patience 10): the Genesis setting."""
    optimizer = torch.optim.SGD(parameters, lr=1.0, momentum=0.9)
    return optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=10)


# ------------------------------------------------------------------ models


def pooled(bottleneck: torch.Tensor) -> torch.Tensor:
    """Global average pool ``(N, C, z, y, x) -> (N, C)``."""
    return torch.flatten(nn.functional.adaptive_avg_pool3d(bottleneck, 1), 1)


class EncoderClassifier(nn.Module):
    """A backbone's encoder + one linear layer on its pooled bottleneck; returns logits."""

    def __init__(self, encoder: nn.Module, n_outputs: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(self.encoder.out_channels, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return pooled(self.encoder(x)[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ``encoder.*`` entries of ``model.state_dict()`` (the backbone encoder's weights)."""
    return {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
