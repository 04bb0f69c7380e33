"""Running a 2D network on the 3D tasks: the adapters of the paper's 2D and 2.5D comparisons.

The tasks give cubes ``(N, C, Z, Y, X)`` (Z is the axial axis) and score volumes; a 2D network takes
``(N, C', Y, X)``. An adapter turns one into the other around the 2D target model, with a forward
pre-hook on its input and a forward hook on its output, so that the model keeps its own modules and
state-dict keys (``encoder.*``, ``decoder.*``, ``head.*``: pretrained 2D weights map onto it key for
key, and the protocols fix its parts by name):

* classification, ``2d`` (central slice): the cube's central axial slice ``z = Z // 2``, ``(N, C, Y, X)``;
* classification, ``2.5d`` (orthogonal planes): the axial ``(Y, X)``, coronal ``(Z, X)`` and sagittal
  ``(Z, Y)`` planes through the cube's centre, the latter two resized bilinearly to ``(Y, X)``, as
  channels ``(N, 3C, Y, X)`` (axial, coronal, sagittal, each with its C channels);
* segmentation, ``2d`` (slice-wise): every axial slice on its own, ``(N*Z, C, Y, X)``, the logits stacked
  back into ``(N, 1, Z, Y, X)``: training on cube patches trains on their axial slices, and the sliding
  window predicts a volume slice by slice;
* segmentation, ``2.5d`` (adjacent slices): every axial slice with the slices above and below as
  channels (the edge slice repeated at the cube's ends), ``(N*Z, 3C, Y, X)``, stacked back likewise.

A 2.5D model has three times the task's input channels: a pretrained first convolution with fewer
channels is inflated by the transfer (repeated and divided, ``benchmark.model.transfer``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

DIMS = ("2d", "2.5d", "3d")
ADAPTERS = {("classification", "2d"): "central slice", ("classification", "2.5d"): "orthogonal planes",
            ("segmentation", "2d"): "slice-wise", ("segmentation", "2.5d"): "adjacent slices"}
CHANNEL_FACTOR = {"2d": 1, "2.5d": 3}


def central_slice(cubes: torch.Tensor) -> torch.Tensor:
    return cubes[:, :, cubes.shape[2] // 2]


def orthogonal_planes(cubes: torch.Tensor) -> torch.Tensor:
    """Axial, coronal and sagittal planes through the centre, each ``(N, C, Y, X)``, as channels."""
    z, y, x = (side // 2 for side in cubes.shape[2:])
    size = tuple(cubes.shape[3:])
    coronal = nn.functional.interpolate(cubes[:, :, :, y], size=size, mode="bilinear", align_corners=False)
    sagittal = nn.functional.interpolate(cubes[:, :, :, :, x], size=size, mode="bilinear", align_corners=False)
    return torch.cat([cubes[:, :, z], coronal, sagittal], dim=1)


def axial_slices(cubes: torch.Tensor) -> torch.Tensor:
    """``(N, C, Z, Y, X) -> (N*Z, C, Y, X)``, slice-major within each cube."""
    n, c, z, y, x = cubes.shape
    return cubes.permute(0, 2, 1, 3, 4).reshape(n * z, c, y, x)


def adjacent_slices(cubes: torch.Tensor) -> torch.Tensor:
    """Each axial slice with its neighbours as channels: ``(N*Z, 3C, Y, X)`` (ends repeated)."""
    padded = torch.cat([cubes[:, :, :1], cubes, cubes[:, :, -1:]], dim=2)
    z = cubes.shape[2]
    return torch.cat([axial_slices(padded[:, :, offset:offset + z]) for offset in range(3)], dim=1)


def stacked_volumes(slices: torch.Tensor, cubes: int) -> torch.Tensor:
    """``(N*Z, O, Y, X) -> (N, O, Z, Y, X)``: the inverse of ``axial_slices``."""
    nz, o, y, x = slices.shape
    return slices.reshape(cubes, nz // cubes, o, y, x).permute(0, 2, 1, 3, 4)


class _VolumeAdapter:
    """The hooks of one adapted model: the input made 2D before its forward, the output made 3D after."""

    def __init__(self, kind: str, dims: str) -> None:
        self.kind, self.dims = kind, dims
        self.cubes = 0  # the batch size of the call in progress (segmentation)

    def before(self, _module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        (cubes, *rest) = args
        if cubes.dim() != 5:
            raise ValueError(f"a {self.dims} adapter takes (N, C, Z, Y, X) cubes, got shape {tuple(cubes.shape)}")
        self.cubes = cubes.shape[0]
        if self.kind == "classification":
            flat = central_slice(cubes) if self.dims == "2d" else orthogonal_planes(cubes)
        else:
            flat = axial_slices(cubes) if self.dims == "2d" else adjacent_slices(cubes)
        return (flat, *rest)

    def after(self, _module: nn.Module, _args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        return output if self.kind == "classification" else stacked_volumes(output, self.cubes)


def adapt_to_volumes(model: nn.Module, kind: str, dims: str) -> nn.Module:
    """``model`` (a 2D target of ``kind``) made to take cubes and give the task's logits (in place)."""
    if (kind, dims) not in ADAPTERS:
        raise ValueError(f"no {dims} adapter for a {kind} target")
    adapter = _VolumeAdapter(kind, dims)
    model.register_forward_pre_hook(adapter.before)
    model.register_forward_hook(adapter.after)
    return model
