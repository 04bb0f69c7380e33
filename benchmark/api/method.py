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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from benchmark.api.backbone import ANY_BACKBONE, DEFAULT_BACKBONE, Backbone
from benchmark.api.profiles import Profile
from benchmark.api.registry import BACKBONES
from benchmark.api.settings import current_values
from benchmark.model.init import he_uniform

Transfer = Literal["encoder", "encoder+decoder", "none"]
Corruption = Callable[[np.ndarray, np.random.Generator], Any]  # f(cube, rng), for benchmark speed
RESTORATION_LOSSES = ("mse", "mae", "ssim")
SSIM_WINDOW = 7  # gaussian window side (voxels) of the ``ssim`` loss; see ``ssim_map``
SSIM_SIGMA = 1.5  # its standard deviation (voxels), Wang et al.'s
SSIM_K1, SSIM_K2 = 0.01, 0.03  # SSIM's stability constants, for a data range of 1


@dataclass(frozen=True)
class SourceTask:
    """Where a supervised method's labels come from: a registered task, read from ``root`` (a data
    folder) or, when ``root`` is None, from its built-in phantom drawn with ``phantom_seed`` (None: the
    phantom every run of that task uses; another seed draws other synthetic patients, a second site).
    The target task itself is a source only on other data than the target's (other patients)."""

    task: str
    root: Path | None = None
    phantom_seed: int | None = None


def restoration_loss(
    output: torch.Tensor, target: torch.Tensor, loss: str = "mse", weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The restoration methods' loss between the sigmoid of the output and the target: the mean
    squared (``mse``) or absolute (``mae``) error, or ``ssim``, one minus the structural similarity
    (``ssim_loss``). With per-voxel ``weights`` (broadcast to the target), the weighted mean
    ``sum(w * error) / sum(w)``; for ``ssim`` the error is ``1 - SSIM`` at each voxel where the
    SSIM map is defined (see ``ssim_loss``)."""
    check_restoration_loss(loss)
    prediction = torch.sigmoid(output)
    if loss == "ssim":
        return ssim_loss(prediction, target, weights)
    if weights is None:
        error = nn.functional.mse_loss if loss == "mse" else nn.functional.l1_loss
        return error(prediction, target)
    difference = prediction - target
    error = difference.square() if loss == "mse" else difference.abs()
    weights = weights.expand_as(error)
    return (weights * error).sum() / weights.sum()


def ssim_map(
    prediction: torch.Tensor, target: torch.Tensor, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA
) -> torch.Tensor:
    """The per-voxel SSIM of two batches ``(B, C, *spatial)`` of images in [0, 1] (2 or 3 spatial
    axes, any number of channels, each compared with itself; data range 1, constants K1 = 0.01
    and K2 = 0.03), computed by MONAI (``compute_ssim_and_cs``) with a separable gaussian window of
    side ``window`` and standard deviation ``sigma`` in float32, autocast off.

    The map is defined only where the whole window lies inside the image (no padding): it has
    ``side - window + 1`` values along each axis, the one at index ``i`` being the SSIM of the
    window centred on voxel ``i + window // 2``. Hence the default window of 7 (sigma 1.5, Wang et
    al.'s, the gaussian cut at 2 sigma): the usual 11 would leave 6 of the 16 axial positions of
    the smoke cube (16, 32, 32), and fails on the smallest cube a profile accepts (sides >= 8),
    where 7 still leaves 2; on the paper cube (32, 64, 64) it keeps 26 of 32.
    """
    from monai.metrics.regression import compute_ssim_and_cs  # imported when used: monai is slow to import

    if prediction.shape != target.shape:
        raise ValueError(f"ssim: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    spatial = prediction.shape[2:]
    if len(spatial) not in (2, 3) or min(spatial) < window:
        raise ValueError(f"ssim: needs 2 or 3 spatial axes of at least {window} voxels, got {tuple(spatial)}")
    with torch.autocast(prediction.device.type, enabled=False):
        similarity, _ = compute_ssim_and_cs(
            prediction.float(), target.float(), spatial_dims=len(spatial), kernel_size=(window,) * len(spatial),
            kernel_sigma=(sigma,) * len(spatial), data_range=1.0, k1=SSIM_K1, k2=SSIM_K2,
        )
    return similarity


def ssim_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - SSIM`` between ``prediction`` and ``target`` (both in [0, 1]): the mean of ``1 - ssim_map``
    over the batch, the channels and the voxels where the map is defined. With per-voxel ``weights``
    (broadcast to the target), the weighted mean of ``1 - ssim_map``, each map value weighted by the
    weight of the voxel its window is centred on; the voxels less than ``SSIM_WINDOW // 2`` (3) in
    from a border centre no window, so their weights drop out (in-painting's central box lies inside). Finite and
    differentiable everywhere, constant images included (the constants keep the denominators positive)."""
    dissimilarity = 1 - ssim_map(prediction, target)
    if weights is None:
        return dissimilarity.mean()
    half = SSIM_WINDOW // 2
    centres = (slice(None), slice(None)) + tuple(slice(half, side - half) for side in target.shape[2:])
    weights = weights.to(dissimilarity.device, dissimilarity.dtype).expand_as(target)[centres]
    total = weights.sum()
    if not bool(total > 0):
        raise ValueError(f"ssim: the weights are zero on every window centre (every voxel {half} or more in)")
    return (weights * dissimilarity).sum() / total


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
    # A negative control: the name of the method it copies in distribution (the report's calibration).
    negative_control_of: ClassVar[str] = ""
    # The backbones the method can pretrain (or initialise), the first its default; ANY_BACKBONE: every one.
    backbones: ClassVar[tuple[str, ...]] = (DEFAULT_BACKBONE,)
    # The layout of its pretraining pool (benchmark.data.pools): chest CT (luna16) or radiographs (chestxray14).
    pool_layout: ClassVar[str] = "luna16"
    # The networks it pretrains: 3 (3D), 2 (2D: its examples are 2D images), None: any (it has no pretext).
    spatial_dims: ClassVar[int | None] = 3
    # Non-empty for a method that only transfers a released file given with --weights: where to get it.
    weights_required: ClassVar[str] = ""
    # For released weights: the tasks (by name) whose data the weights were trained on; a run on one of
    # them is recorded and reported with a leakage warning.
    pretrained_on: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def default_backbone(cls) -> str:
        return DEFAULT_BACKBONE if cls.backbones[0] == ANY_BACKBONE else cls.backbones[0]

    @classmethod
    def supports_backbone(cls, name: str) -> bool:
        """A backbone it declares, or any backbone of its dimensionality if it declares ``ANY_BACKBONE``."""
        if name in cls.backbones:
            return True
        return ANY_BACKBONE in cls.backbones and cls.spatial_dims in (None, BACKBONES.get(name).spatial_dims)

    def source_task(self) -> SourceTask | None:
        """For supervised pretraining: the labelled task whose training split the method pretrains on,
        and its data. None (the default): a pretext task on the unlabeled pretraining pool."""
        return None

    def backbone_settings(self) -> dict[str, Any]:
        """Backbone settings that the method's own settings fix (e.g. a released model's depth)."""
        return {}

    def init_weights(self, model: nn.Module) -> None:
        """Initialise a freshly built model (pretext or target) before any weights are loaded."""
        he_uniform(model)

    def build_pretext_model(self, backbone: Backbone, in_channels: int, width: int) -> nn.Module:
        """The network trained on the pretext task; must contain the backbone's modules under its names
        (``encoder``, and ``decoder`` if it transfers it). Default: the backbone's segmentation target
        with one output per input channel (a restoration model)."""
        return backbone.build_segmenter(in_channels, in_channels, width)

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
    def has_pretext_task(cls) -> bool:
        """Whether the method pretrains on the unlabeled pool (it makes pretext examples): not a random
        initialisation, a released-weights method or supervised pretraining."""
        return cls.make_example is not Method.make_example

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
        """The backbone weights to hand over, keyed like the backbone's target models (``encoder.*``,
        ``decoder.*``)."""
        return pretext_model.state_dict()

    def checkpoint_extras(self) -> dict[str, Any]:
        """Anything the checkpoint must carry besides the weights (e.g. a permutation set)."""
        return {}

    def settings(self) -> dict[str, Any]:
        """The values of the method's settings, its constructor's keyword arguments (part of the
        checkpoint id): ``METHODS.create(name, **settings)`` makes an equal method. Default: the
        attribute named like each argument; override where a method keeps one otherwise."""
        return current_values(self)
