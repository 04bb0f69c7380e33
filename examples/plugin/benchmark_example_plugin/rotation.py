"""Rotation prediction: which of four 90-degree rotations in the axial (Y, X) plane was applied.

A minimal pretraining method living outside the benchmark: the encoder with a linear head
on its pooled bottleneck, trained with cross-entropy; it hands over the encoder only. One
setting, ``rotations``: 4 (0, 90, 180, 270 degrees) or 2 (0, 180 degrees).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmark.api.backbone import Backbone
from benchmark.api.method import Method


class RotationNet(nn.Module):
    def __init__(self, encoder: nn.Module, classes: int) -> None:
        super().__init__()
        self.encoder = encoder  # the backbone's encoder, named 'encoder': its keys match the targets'
        self.head = nn.Linear(self.encoder.out_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, bottleneck = self.encoder(x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool3d(bottleneck, 1), 1))


class ExampleRotation(Method):
    name = "example-rotation"
    description = "Predict which 90-degree axial rotation was applied (example plugin)"
    transfers = "encoder"

    def __init__(self, rotations: int = 4) -> None:  # a setting: --method-arg rotations=2
        if rotations not in (2, 4):
            raise ValueError(f"rotations must be 2 or 4, got {rotations}")
        self.rotations = rotations

    def build_pretext_model(self, backbone: Backbone, in_channels: int, width: int) -> nn.Module:
        return RotationNet(backbone.build_encoder(in_channels, width), self.rotations)

    def make_example(self, cubes: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if cubes.shape[-1] != cubes.shape[-2]:
            raise ValueError(f"axial rotations need square (Y, X) slices, got cubes {cubes.shape}")
        labels = rng.integers(0, self.rotations, size=len(cubes))
        quarter_turns = labels * (4 // self.rotations)
        rotated = np.stack([np.rot90(cube, k, axes=(2, 3)) for cube, k in zip(cubes, quarter_turns)])  # (C, Z, Y, X)
        return torch.from_numpy(np.ascontiguousarray(rotated, dtype=np.float32)), torch.from_numpy(labels)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(output, target)

    def backbone_state(self, pretext_model: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v for k, v in pretext_model.state_dict().items() if k.startswith("encoder.")}
