"""What a pretraining method is: the contract every method plugin fulfils.

A method turns a batch of unlabeled cubes into a pretext example (input, target),
says how its pretext model is built around the backbone and what loss it trains,
and declares what it hands to a target task: ``encoder``, ``encoder+decoder`` or
``none`` (random initialisations, which only define ``init_weights``).
The harness owns the loop, the data, the checkpoints and the transfer.

A method's settings are its constructor's keyword arguments (``benchmark.api.settings``):
``--method-arg KEY=VALUE`` changes one without a new file, and ``settings()`` hands them to
the checkpoint id. The restoration methods share ``restoration_loss`` and its ``loss`` setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from benchmark.api.profiles import Profile
from benchmark.api.settings import current_values
from benchmark.model.backbone import UNet3D
from benchmark.model.init import he_uniform

Transfer = Literal["encoder", "encoder+decoder", "none"]
Corruption = Callable[[np.ndarray, np.random.Generator], Any]  # f(cube, rng), for benchmark speed
RESTORATION_LOSSES = ("mse", "mae")


def restoration_loss(
    output: torch.Tensor, target: torch.Tensor, loss: str = "mse", weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The restoration methods' loss: the mean squared (``mse``) or absolute (``mae``) error between
    the sigmoid of the output and the target; with per-voxel ``weights`` (broadcast to the
    target), the weighted mean ``sum(w * error) / sum(w)``."""
    check_restoration_loss(loss)
    prediction = torch.sigmoid(output)
    if weights is None:
        error = nn.functional.mse_loss if loss == "mse" else nn.functional.l1_loss
        return error(prediction, target)
    difference = prediction - target
    error = difference.square() if loss == "mse" else difference.abs()
    weights = weights.expand_as(error)
    return (weights * error).sum() / weights.sum()


def check_restoration_loss(loss: str) -> str:
    """``loss`` if it names a restoration loss, else a ValueError (a constructor's check)."""
    if loss not in RESTORATION_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(RESTORATION_LOSSES)}, got '{loss}'")
    return loss


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

    def speed_corruptions(self, cube_shape: tuple[int, ...]) -> dict[str, Corruption]:
        """The method's corruptions by name, for ``benchmark speed`` to time (and to compare with a
        loop version where the repository's ``tests/oracles`` has one), each called as
        ``f(cube, rng)`` on one ``(C, Z, Y, X)`` cube of ``cube_shape``."""
        return {}

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Default: MSE between the sigmoid of the output and the target (``restoration_loss``)."""
        return restoration_loss(output, target)

    def on_epoch_start(
        self, model: nn.Module, pool: np.ndarray, rng: np.random.Generator, device: torch.device
    ) -> None:
        """Called before each pretraining epoch with the whole training pool (DeepCluster re-clusters here)."""

    def prepare_pool(self, pool: np.ndarray) -> None:
        """Called in the training process with each pool before its batches are drawn, before any
        loader worker starts: compute here what ``sample_batch`` needs to know about the pool
        (DeepCluster's pseudo-labels of the validation pool), never in a worker (a forked worker
        cannot use CUDA, and each would repeat the work)."""

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
        """The values of the method's settings, its constructor's keyword arguments (part of the
        checkpoint id): ``METHODS.create(name, **settings)`` makes an equal method. Default: the
        attribute named like each argument; override where a method keeps one otherwise."""
        return current_values(self)
