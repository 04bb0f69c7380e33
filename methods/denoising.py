"""Denoising (Vincent et al., "Stacked Denoising Autoencoders", JMLR 2010), in 3D.

Pretext: restore the clean cube from a copy with additive Gaussian noise; the loss is
MSE (or MAE or 1 - SSIM: setting ``loss``) between the sigmoid output of the U-Net and the clean cube
(``restoration_loss``). Transfers the encoder and the decoder.

Settings: ``max_sigma`` = 0.1: each cube's noise standard deviation is drawn from
U(0, max_sigma) *(choice: the Genesis authors' augmentation range; Vincent et al. tune
the noise level per data set)*; the noisy cube is clipped to [0, 1]. Each channel of a
cube shares its sigma and gets independent noise.

Departures: the denoising autoencoder of the paper is a stack of fully connected layers
trained layer by layer; here the shared 3D U-Net is trained end to end, as every method
of the benchmark. The paper's optimiser (plain SGD, learning rate tuned per data set) is
not specified in a form to reuse: ``paper_optimizer`` is the Genesis one (SGD 1.0,
momentum 0.9, plateau schedule), as for the other restoration methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from benchmark.methods._common import genesis_sgd

from benchmark.api.backbone import ANY_BACKBONE
from benchmark.api.method import Method, check_restoration_loss, restoration_loss
from benchmark.api.registry import METHODS


def add_noise(
    cube: np.ndarray, rng: np.random.Generator, max_sigma: float = 0.1
) -> tuple[np.ndarray, float]:
    """``(noisy, sigma)``: ``cube + N(0, sigma^2)`` per voxel, ``sigma ~ U(0, max_sigma)``, clipped
    to [0, 1]; float32."""
    sigma = float(rng.uniform(0.0, max_sigma))
    noise = rng.standard_normal(np.shape(cube), dtype=np.float32) * np.float32(sigma)
    return np.clip(np.asarray(cube, dtype=np.float32) + noise, 0.0, 1.0), sigma


@METHODS.register
class Denoising(Method):
    name = "denoising"
    description = "Restore cubes from additive Gaussian noise (denoising autoencoder, Vincent et al. 2010)"
    transfers = "encoder+decoder"
    backbones = (ANY_BACKBONE,)  # its restoration model is any backbone's segmentation target

    def __init__(self, max_sigma: float = 0.1, loss: str = "mse") -> None:
        if max_sigma < 0:
            raise ValueError(f"max_sigma must be >= 0, got {max_sigma}")
        self.max_sigma = max_sigma
        self.loss_name = check_restoration_loss(loss)

    def make_example(
        self, cubes: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        targets = np.ascontiguousarray(cubes, dtype=np.float32)
        inputs = np.stack([add_noise(cube, rng, self.max_sigma)[0] for cube in targets])
        return torch.from_numpy(inputs), torch.from_numpy(targets.copy())

    def make_example_on_device(
        self, cubes: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``make_example`` batched on the cubes' device: the same per-cube sigma and clipping."""
        targets = cubes.float()
        sigma = torch.rand(len(cubes), generator=generator, device=cubes.device) * self.max_sigma
        noise = torch.randn(targets.shape, generator=generator, device=cubes.device)
        return (targets + noise * sigma.reshape(-1, 1, 1, 1, 1)).clamp(0.0, 1.0), targets.clone()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return restoration_loss(output, target, self.loss_name)

    def paper_optimizer(
        self, parameters: Any
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau | None]:
        return genesis_sgd(parameters)

    def settings(self) -> dict[str, Any]:
        return {"max_sigma": self.max_sigma, "loss": self.loss_name}
