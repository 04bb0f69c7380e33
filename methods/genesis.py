"""Models Genesis (Zhou et al., "Models Genesis: Generic Autodidactic Models for 3D Medical
Image Analysis", MICCAI 2019; extended in Medical Image Analysis 2021), and its ablations.

The method and the paper's figure 3 ablations, registered as presets of its settings. The
corruptions are in ``genesis_transforms`` (numpy, numba) and ``genesis_torch`` (batched, on
the training device).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from benchmark.methods.genesis_transforms import (
    GenesisConfig,
    genesis_transform,
    local_pixel_shuffling,
    nonlinear_intensity,
)

from benchmark.api.backbone import ANY_BACKBONE
from benchmark.api.method import Corruption, Method, check_restoration_loss, restoration_loss
from benchmark.api.registry import METHODS

REFERENCE = GenesisConfig()  # the reference code's probabilities and sizes: the settings' defaults


@METHODS.register
class Genesis(Method):
    """Restore the original cube from a transformed one. Per cube, in this order: flip (input and
    target together), local pixel shuffling, a non-linear intensity map, and painting (inner
    cutout = in-painting, or outer cutout = out-painting). The target is the cube after the flip
    only; the loss is MSE (or MAE or 1 - SSIM: setting ``loss``) on the sigmoid output. The settings are the
    probabilities and sizes of ``GenesisConfig``, the reference code's by default.

    Where this implementation departs from the reference code, and why:

    * **Flip axes.** The reference picks the flip axis among ``(0, 1, 2)`` of a
      ``(C, rows, cols, depth)`` cube: axis 0 is the channel axis (a no-op for one channel)
      and the depth axis is never flipped. That is a bug; here the axis is one of the three
      spatial axes (Z, Y, X), uniformly.
    * **Local pixel shuffling is an exact permutation.** The reference copies each window
      from the *original* cube, shuffled, and later windows overwrite earlier ones; with
      overlapping windows some values are duplicated and others dropped, so the histogram
      is not preserved (the paper says it is). Here each voxel is labelled by the last
      window that covers it and values are permuted within each label's voxel set: the
      histogram is preserved exactly, every voxel's value comes from inside the window that
      last covers it (as in the reference), voxels covered by no window stay put.
    * **Cutout boxes.** The first box is always drawn (the reference draws even the first
      in-painting box only while ``rand < 0.95``, so ~5% of "painted" cubes got no box);
      degenerate size ranges on small cubes are clipped (``genesis_transforms._box_ranges``).
    * **Inverted non-linear map.** Both the sampled x and y of the Bézier curve are sorted
      and the inverted map pairs ascending x with descending y, so it is exactly monotone
      decreasing with f(0) = 1, f(1) = 0 (the reference pairs sorted x with unsorted y).
    * All randomness comes from a passed ``np.random.Generator``; all channels share the
      window/box geometry (the reference only shuffles channel 0).
    """

    name = "genesis"
    description = (
        "Models Genesis: restore cubes from flip, local shuffling, non-linear and in/out-painting "
        "(Zhou et al. 2019)"
    )
    transfers = "encoder+decoder"
    backbones = (ANY_BACKBONE,)  # its restoration model is any backbone's segmentation target

    def __init__(
        self,
        flip_prob: float = REFERENCE.flip_prob, max_flips: int = REFERENCE.max_flips,
        local_shuffle_prob: float = REFERENCE.local_shuffle_prob, n_windows: int = REFERENCE.n_windows,
        window_divisor: int = REFERENCE.window_divisor,
        nonlinear_prob: float = REFERENCE.nonlinear_prob, invert_prob: float = REFERENCE.invert_prob,
        bezier_points: int = REFERENCE.bezier_points,
        paint_prob: float = REFERENCE.paint_prob, inpaint_prob: float = REFERENCE.inpaint_prob,
        max_boxes: int = REFERENCE.max_boxes, more_box_prob: float = REFERENCE.more_box_prob,
        margin: int = REFERENCE.margin, inner_side_divisors: tuple[int, int] = REFERENCE.inner_side_divisors,
        outer_cut_low: tuple[int, int] = REFERENCE.outer_cut_low,
        outer_cut_high: tuple[int, int] = REFERENCE.outer_cut_high,
        loss: str = "mse",
    ) -> None:
        self.config = GenesisConfig(
            flip_prob=flip_prob, max_flips=max_flips, local_shuffle_prob=local_shuffle_prob, n_windows=n_windows,
            window_divisor=window_divisor, nonlinear_prob=nonlinear_prob, invert_prob=invert_prob,
            bezier_points=bezier_points, paint_prob=paint_prob, inpaint_prob=inpaint_prob, max_boxes=max_boxes,
            more_box_prob=more_box_prob, margin=margin, inner_side_divisors=tuple(inner_side_divisors),
            outer_cut_low=tuple(outer_cut_low), outer_cut_high=tuple(outer_cut_high),
        )
        self.loss_name = check_restoration_loss(loss)

    def make_example(
        self, cubes: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cubes = np.asarray(cubes)
        if cubes.ndim != 5:
            raise ValueError(f"expected cubes (B, C, Z, Y, X), got shape {cubes.shape}")
        pairs = [genesis_transform(cube, rng, self.config) for cube in cubes]
        inputs = np.stack([p[0] for p in pairs])
        targets = np.stack([p[1] for p in pairs])
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def make_example_on_device(
        self, cubes: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from benchmark.methods.genesis_torch import genesis_batch

        return genesis_batch(cubes, generator, self.config)

    def speed_corruptions(self, cube_shape: tuple[int, ...]) -> dict[str, Corruption]:
        c = self.config
        return {
            "local pixel shuffling": lambda cube, rng: local_pixel_shuffling(cube, rng, c.n_windows, c.window_divisor),
            "non-linear intensity": lambda cube, rng: nonlinear_intensity(cube, rng, c.invert_prob, c.bezier_points),
            "pipeline": lambda cube, rng: genesis_transform(cube, rng, c),
        }

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return restoration_loss(output, target, self.loss_name)

    def paper_optimizer(
        self, parameters: Any
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau | None]:
        optimizer = torch.optim.SGD(parameters, lr=1.0, momentum=0.9)
        return optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=10)

    def settings(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.config), "loss": self.loss_name}


# The paper's figure 3 ablations: one transform each, applied to every cube (probability 1
# *(choice)*: an ablation isolates one transform's effect, and the papers do not give the
# probability used), or none; the flip augmentation stays on, and everything else (sizes,
# the optimiser) is Genesis'.
METHODS.register_preset(
    "genesis-nl", Genesis, "Genesis ablation: restore cubes from non-linear intensity only (Zhou et al. 2019, fig. 3)",
    local_shuffle_prob=0.0, nonlinear_prob=1.0, paint_prob=0.0)
METHODS.register_preset(
    "genesis-ls", Genesis, "Genesis ablation: restore cubes from local pixel shuffling only (Zhou et al. 2019, fig. 3)",
    local_shuffle_prob=1.0, nonlinear_prob=0.0, paint_prob=0.0)
METHODS.register_preset(
    "genesis-oc", Genesis, "Genesis ablation: restore cubes from outer cutout only (Zhou et al. 2019, fig. 3)",
    local_shuffle_prob=0.0, nonlinear_prob=0.0, paint_prob=1.0, inpaint_prob=0.0)
METHODS.register_preset(
    "genesis-ic", Genesis, "Genesis ablation: restore cubes from inner cutout only (Zhou et al. 2019, fig. 3)",
    local_shuffle_prob=0.0, nonlinear_prob=0.0, paint_prob=1.0, inpaint_prob=1.0)
METHODS.register_preset(
    "genesis-identity", Genesis,
    "Genesis ablation: reproduce the untransformed cube (identity, Zhou et al. 2019, fig. 3)",
    local_shuffle_prob=0.0, nonlinear_prob=0.0, paint_prob=0.0)
