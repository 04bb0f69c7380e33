"""Models Genesis 2D (Zhou et al., "Models Genesis", Medical Image Analysis 2021: Genesis Chest CT 2D):
the Genesis restoration task on 2D axial slices, pretraining a 2D network.

Per cube of the pretraining pool ``(C, Z, Y, X)``, one axial slice ``(C, Y, X)`` at a ``z`` drawn
uniformly; the slice is corrupted by the Genesis transforms in 2D (``genesis_transforms_2d``: flip along Y
or X, local pixel shuffling in rectangles, the non-linear map, in- or out-painting with rectangles, every
probability and size rule the 3D one) and the 2D network restores it. For the radiograph pools, whose
cubes have Z = 1, the slice is the image.

It is Genesis with 2D examples: the settings (``GenesisConfig``'s probabilities and sizes, the reference
code's by default, and ``loss``), the loss (``restoration_loss`` on the sigmoid output) and the paper's
optimiser (SGD, lr 1, momentum 0.9, the learning rate halved after 10 epochs without improvement) are
Genesis' own (inherited). Its pretext model is the default one, the backbone's segmentation target with
one output per input channel: for ``unet2d`` and ``resnet2d`` a 2D model ``(N, C, Y, X) -> (N, C, Y, X)``.
Choices: the slice positions of a batch are drawn before its corruptions, from the same generator; the
batched device transforms of Genesis (``genesis_torch``) are 3D and not used: this method has none.
"""

from __future__ import annotations

import numpy as np
import torch
from benchmark.methods.genesis import Genesis
from benchmark.methods.genesis_transforms_2d import genesis_transform_2d, local_pixel_shuffling_2d

from benchmark.api.method import Corruption, Method
from benchmark.api.registry import METHODS


def random_axial_slices(cubes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One axial slice per cube: ``(B, C, Z, Y, X) -> (B, C, Y, X)``, each cube's ``z`` uniform in
    ``[0, Z)`` (all ``B`` drawn at once)."""
    positions = rng.integers(0, cubes.shape[2], size=len(cubes))
    return np.stack([cube[:, z] for cube, z in zip(cubes, positions)])


@METHODS.register
class Genesis2D(Genesis):
    """Restore one axial slice per cube (its z uniform) from the Genesis transforms in 2D: flip (input and
    target together) along Y or X, local pixel shuffling in rectangles, a non-linear intensity map, and in- or
    out-painting with rectangles; every probability and size rule the 3D one, and the settings, loss and
    paper optimiser Genesis'. The restoration model is the 2D backbone's segmentation target, transferred
    whole (encoder and decoder); no device transforms."""

    name = "genesis-2d"
    description = (
        "Models Genesis 2D: restore axial slices from flip, local shuffling, non-linear and in/out-painting "
        "in 2D (Zhou et al. 2021)"
    )
    transfers = "encoder+decoder"
    backbones = ("unet2d", "resnet2d")
    spatial_dims = 2
    # Genesis' batched device transforms are 3D: restore the base's "none" (the engine says so if asked)
    make_example_on_device = Method.make_example_on_device

    def make_example(
        self, cubes: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of cubes ``(B, C, Z, Y, X)`` in [0, 1] -> the 2D pair ``(input, target)``, float32
        tensors ``(B, C, Y, X)``."""
        cubes = np.asarray(cubes)
        if cubes.ndim != 5:
            raise ValueError(f"expected cubes (B, C, Z, Y, X), got shape {cubes.shape}")
        pairs = [genesis_transform_2d(image, rng, self.config) for image in random_axial_slices(cubes, rng)]
        inputs = np.stack([p[0] for p in pairs])
        targets = np.stack([p[1] for p in pairs])
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def speed_corruptions(self, cube_shape: tuple[int, ...]) -> dict[str, Corruption]:
        """Local shuffling and the whole 2D pipeline, each on the cube's central axial slice."""
        c = self.config

        def central(cube: np.ndarray) -> np.ndarray:
            return cube[:, cube.shape[1] // 2]

        return {
            "local pixel shuffling": lambda cube, rng: local_pixel_shuffling_2d(central(cube), rng, c.n_windows,
                                                                                c.window_divisor),
            "pipeline": lambda cube, rng: genesis_transform_2d(central(cube), rng, c),
        }
