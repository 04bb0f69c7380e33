"""What a pretraining method is: the contract every method plugin fulfils.

A method turns a batch of unlabeled cubes into a pretext example (input, target),
says how its pretext model is built around the backbone and what loss it trains,
and declares what it hands to a target task: ``encoder``, ``encoder+decoder`` or
``none`` (random initialisations, which only define ``init_weights``).
The harness owns the loop, the data, the checkpoints and the transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from benchmark.api.profiles import Profile
from benchmark.model.backbone import UNet3D
from benchmark.model.init import he_uniform

Transfer = Literal["encoder", "encoder+decoder", "none"]
Corruption = Callable[[np.ndarray, np.random.Generator], Any]  # f(cube, rng), for benchmark speed


class Method:
    """A pretraining method. Override what differs from a restoration method with MSE."""

    name: ClassVar[str]
    description: ClassVar[str]
    transfers: ClassVar[Transfer] = "encoder+decoder"
    baseline: ClassVar[bool] = False  # the reference the report tests the other methods against

    def init_weights(self, model: nn.Module) -> None:
        """Initialise a freshly built model (pretext or target) before any weights are loaded."""
        he_uniform(model)

    def build_pretext_model(self, in_channels: int, width: int) -> nn.Module:
        """The network trained on the pretext task; must contain the backbone's modules."""
        return UNet3D(in_channels=in_channels, out_channels=in_channels, width=width)

    def make_example(
        self, cubes: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn unlabeled cubes ``(B, C, Z, Y, X)`` in [0, 1] into (input, target) tensors."""
        raise NotImplementedError(f"method '{self.name}' does not pretrain")

    def sample_batch(
        self, pool: np.ndarray, batch_size: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw a batch from a pool of cubes ``(N, C, Z, Y, X)`` and make its pretext example.

        Default: cubes drawn uniformly with replacement. Methods that need to know
        which cubes were drawn (DeepCluster's pseudo-labels) override this.
        """
        return self.make_example(pool[rng.integers(0, len(pool), size=batch_size)], rng)

    def make_example_on_device(
        self, cubes: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Optional: the batched torch version of ``make_example``, for cubes ``(B, C, Z, Y, X)``
        already on the training device, with randomness from ``generator`` (on that device).
        Used when the profile runs the transforms on the device; same distribution as
        ``make_example``."""
        raise NotImplementedError(f"method '{self.name}' has no device transforms")

    @classmethod
    def has_device_transforms(cls) -> bool:
        return cls.make_example_on_device is not Method.make_example_on_device

    def sample_batch_on_device(
        self, pool: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``sample_batch`` on the device: cubes drawn uniformly with replacement from a pool
        tensor on the device, then ``make_example_on_device``."""
        index = torch.randint(0, len(pool), (batch_size,), generator=generator, device=pool.device)
        return self.make_example_on_device(pool[index], generator)

    def speed_comparisons(
        self, cube_shape: tuple[int, ...]
    ) -> dict[str, tuple[Corruption, Corruption]]:
        """Named ``(fast, loop)`` implementations of the method's corruptions for ``benchmark speed``,
        each called as ``f(cube, rng)`` on one ``(C, Z, Y, X)`` cube of ``cube_shape``."""
        return {}

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Default: MSE between the sigmoid of the output and the target (restoration)."""
        return nn.functional.mse_loss(torch.sigmoid(output), target)

    def on_epoch_start(
        self, model: nn.Module, pool: np.ndarray, rng: np.random.Generator, device: torch.device
    ) -> None:
        """Called before each pretraining epoch with the whole training pool (DeepCluster re-clusters here)."""

    def paper_optimizer(
        self, parameters: Any
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau | None]:
        """The optimiser of the method's paper (used by the ``paper`` profile)."""
        return torch.optim.Adam(parameters, lr=1e-3), None

    def make_optimizer(
        self, parameters: Any, profile: Profile
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau | None]:
        if profile.pretrain_optimizer == "paper":
            return self.paper_optimizer(parameters)
        return torch.optim.Adam(parameters, lr=profile.pretrain_lr), None

    def backbone_state(self, pretext_model: nn.Module) -> dict[str, torch.Tensor]:
        """The backbone weights to hand over, keyed like ``UNet3D.state_dict()``."""
        return pretext_model.state_dict()

    def checkpoint_extras(self) -> dict[str, Any]:
        """Anything the checkpoint must carry besides the weights (e.g. a permutation set)."""
        return {}

    def settings(self) -> dict[str, Any]:
        """Hyperparameters that determine the pretrained weights (part of the checkpoint id)."""
        return {}
