"""In-painting with a context encoder (Pathak et al., "Context Encoders: Feature Learning by
Inpainting", CVPR 2016), in 3D.

Pretext: the central box of each cube (half of each side, 1/8 of the volume) is to be
predicted from its context. As in the paper's central-region setting, the voxels hidden
from the network are the box shrunk by an overlap border of ``overlap`` voxels on every
side, filled with the cube's mean (per channel; the paper fills with the data set's mean
pixel); the network predicts the whole box, and the reconstruction loss is an L2 on the
box only (weight 0 outside it), with the overlap border, which the network does see,
weighted ``overlap_weight`` = 10 times more than the hidden interior. That is our reading
of the paper and of its code: loss on the predicted region only, 10x on its overlap with
the context. The loss is the weighted mean ``sum(w * (sigmoid(out) - x)^2) / sum(w)``
over the voxels of each batch (``restoration_loss``; with ``loss`` = ``mae`` the absolute
error replaces the square, with ``ssim`` the per-voxel ``1 - SSIM`` map, weighted at its windows' centres).

Optional adversarial term (``adversarial=True``, off by default, as the spec asks): a
small 3D discriminator (``BoxDiscriminator``) sees the real and the predicted central
box; total = ``(1 - lam) * L_rec + lam * L_adv`` with ``lam`` = 0.001 (the paper's
0.999 / 0.001). The pretraining loop has one optimiser, so the two players share it:
the discriminator's terms ``BCE(D(real), 1) + BCE(D(fake.detach()), 0)`` reach only the
discriminator, and the generator's non-saturating term ``BCE(D(fake), 1)`` is computed
with the discriminator's weights detached, so it reaches only the U-Net. Both are scaled
by ``lam`` (immaterial for the discriminator under Adam, which is scale-invariant).
The discriminator is not transferred.

Transfers the encoder and the decoder. Settings: ``box_fraction`` 0.5, ``overlap`` =
``clip(round(box_side / 8), 1, 4)`` per axis by default (the paper: 4 px on a 64 px box;
here 1-2 voxels on the 16x32x32 cube's box, 2-4 on the paper cube's) *(choice)*,
``overlap_weight`` 10, ``adversarial`` False, ``adversarial_weight`` 0.001, ``loss`` mse.

Departures: the paper's encoder-decoder (AlexNet encoder, channel-wise fully connected
layer) is replaced by the benchmark's 3D U-Net; its skips carry only the context.
``paper_optimizer`` is the paper's Adam (lr 2e-4, betas (0.5, 0.999), from its DCGAN
setting). Different from the Genesis in-painting (random boxes filled with noise, loss
over the whole cube): both exist.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from benchmark.api.backbone import Backbone
from benchmark.api.method import Method, check_restoration_loss, restoration_loss
from benchmark.api.registry import METHODS
from benchmark.model.backbone import UNet3D

Shape3 = tuple[int, int, int]


def central_box(spatial_shape: Shape3, box_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``(start, size)`` per axis of the central box: side ``round(dim * box_fraction)`` (>= 3), centred."""
    shape = np.asarray(spatial_shape, dtype=np.int64)
    size = np.clip(np.round(shape * box_fraction).astype(np.int64), min(3, int(shape.min())), shape)
    return (shape - size) // 2, size


def overlap_width(box_size: np.ndarray, overlap: int | None = None) -> np.ndarray:
    """The overlap border per axis: ``overlap`` if given, else ``clip(round(side / 8), 1, 4)``;
    always leaves a hidden interior of at least one voxel."""
    width = np.clip(np.round(box_size / 8), 1, 4) if overlap is None else np.full(3, overlap)
    return np.minimum(width.astype(np.int64), (box_size - 1) // 2)


def box_slices(start: np.ndarray, size: np.ndarray) -> tuple[slice, slice, slice]:
    return tuple(slice(int(a), int(a + s)) for a, s in zip(start, size, strict=True))  # type: ignore[return-value]


def mask_geometry(
    spatial_shape: Shape3, box_fraction: float = 0.5, overlap: int | None = None
) -> tuple[tuple[slice, slice, slice], tuple[slice, slice, slice]]:
    """``(box, hidden)``: slices of the predicted central box and of the hidden (filled)
    interior, the box shrunk by the overlap border on every side."""
    start, size = central_box(spatial_shape, box_fraction)
    border = overlap_width(size, overlap)
    return box_slices(start, size), box_slices(start + border, size - 2 * border)


def loss_weights(
    spatial_shape: Shape3, box_fraction: float = 0.5, overlap: int | None = None, overlap_weight: float = 10.0
) -> np.ndarray:
    """Per-voxel loss weights: 0 outside the box, ``overlap_weight`` on its border, 1 inside."""
    box, hidden = mask_geometry(spatial_shape, box_fraction, overlap)
    weights = np.zeros(spatial_shape, dtype=np.float32)
    weights[box] = overlap_weight
    weights[hidden] = 1.0
    return weights


def mask_centre(cube: np.ndarray, box_fraction: float = 0.5, overlap: int | None = None) -> np.ndarray:
    """A copy of a ``(C, Z, Y, X)`` cube with the hidden interior filled with the cube's mean per channel."""
    out = np.array(cube, dtype=np.float32, copy=True)
    _, hidden = mask_geometry(out.shape[1:], box_fraction, overlap)
    means = out.reshape(out.shape[0], -1).mean(axis=1)
    out[(slice(None), *hidden)] = means[:, None, None, None]
    return out


class BoxDiscriminator(nn.Module):
    """Two strided 3x3x3 convolutions with LeakyReLU, global average pool, one logit."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(in_channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv3d(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        )
        self.out = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.flatten(nn.functional.adaptive_avg_pool3d(self.features(x), 1), 1)
        return self.out(h)


class ContextEncoder(UNet3D):
    """The U-Net, plus a ``discriminator`` when the adversarial term is on (not transferred)."""

    def __init__(self, in_channels: int, width: int, discriminator: BoxDiscriminator | None) -> None:
        super().__init__(in_channels=in_channels, out_channels=in_channels, width=width)
        self.discriminator = discriminator


def adversarial_loss(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator terms (reaching only its weights) + the generator's non-saturating term
    (computed with the discriminator's weights detached, so it reaches only ``fake``)."""
    bce = nn.functional.binary_cross_entropy_with_logits
    d_real = discriminator(real)
    d_fake = discriminator(fake.detach())
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    g_fake = functional_call(discriminator, frozen, (fake,))
    return (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
            + bce(g_fake, torch.ones_like(g_fake)))


@METHODS.register
class Inpainting(Method):
    name = "inpainting"
    description = "Context encoder: restore a masked central box from its context (Pathak et al. 2016)"
    transfers = "encoder+decoder"

    def __init__(
        self, box_fraction: float = 0.5, overlap: int | None = None, overlap_weight: float = 10.0,
        adversarial: bool = False, adversarial_weight: float = 0.001, loss: str = "mse",
    ) -> None:
        if not 0.0 < box_fraction < 1.0:
            raise ValueError(f"box_fraction must be in (0, 1), got {box_fraction}")
        if overlap is not None and overlap < 1:
            raise ValueError(f"overlap must be >= 1 voxel, got {overlap}")
        if not overlap_weight > 0:
            raise ValueError(f"overlap_weight must be > 0, got {overlap_weight}")
        if not 0.0 <= adversarial_weight <= 1.0:
            raise ValueError(f"adversarial_weight must be in [0, 1], got {adversarial_weight}")
        self.box_fraction = box_fraction
        self.overlap = overlap
        self.overlap_weight = overlap_weight
        self.adversarial = adversarial
        self.adversarial_weight = adversarial_weight
        self.loss_name = check_restoration_loss(loss)
        self._discriminator: nn.Module | None = None

    def build_pretext_model(self, backbone: Backbone, in_channels: int, width: int) -> nn.Module:
        """The context encoder is the U-Net itself (the only backbone the method declares)."""
        discriminator = BoxDiscriminator(in_channels) if self.adversarial else None
        self._discriminator = discriminator
        return ContextEncoder(in_channels, width, discriminator)

    def make_example(
        self, cubes: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        targets = np.ascontiguousarray(cubes, dtype=np.float32)
        inputs = np.stack([mask_centre(cube, self.box_fraction, self.overlap) for cube in targets])
        return torch.from_numpy(inputs), torch.from_numpy(targets.copy())

    def make_example_on_device(
        self, cubes: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``make_example`` on the cubes' device (no randomness: the same central box)."""
        targets = cubes.float()
        _, hidden = mask_geometry(tuple(targets.shape[2:]), self.box_fraction, self.overlap)
        inputs = targets.clone()
        region = (slice(None), slice(None), *hidden)
        inputs[region] = targets.mean(dim=(2, 3, 4), keepdim=True).expand_as(inputs[region])
        return inputs, targets.clone()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        shape = tuple(target.shape[2:])
        weights = torch.from_numpy(loss_weights(shape, self.box_fraction, self.overlap, self.overlap_weight))
        reconstruction = restoration_loss(output, target, self.loss_name, weights.to(target.device))
        if not self.adversarial:
            return reconstruction
        if self._discriminator is None:
            raise RuntimeError("inpainting: build_pretext_model must run before the adversarial loss")
        box, _ = mask_geometry(shape, self.box_fraction, self.overlap)
        region = (slice(None), slice(None), *box)
        adversarial = adversarial_loss(self._discriminator, target[region], torch.sigmoid(output)[region])
        lam = self.adversarial_weight
        return (1 - lam) * reconstruction + lam * adversarial

    def backbone_state(self, pretext_model: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v for k, v in pretext_model.state_dict().items() if k.startswith(("encoder.", "decoder."))}

    def paper_optimizer(
        self, parameters: Any
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau | None]:
        return torch.optim.Adam(parameters, lr=2e-4, betas=(0.5, 0.999)), None

    def settings(self) -> dict[str, Any]:
        return {"box_fraction": self.box_fraction, "overlap": self.overlap,
                "overlap_weight": self.overlap_weight, "adversarial": self.adversarial,
                "adversarial_weight": self.adversarial_weight, "loss": self.loss_name}
