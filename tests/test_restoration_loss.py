"""The restoration loss ``ssim`` (1 - SSIM, 3D, MONAI's), checked against a brute-force SSIM written
here (and scikit-image's on 2D images where it is installed), and through every restoration
method of the registry: each trains with it, and it is part of the checkpoint id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.api.method import (
    RESTORATION_LOSSES,
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
    restoration_loss,
    ssim_loss,
    ssim_map,
)
from benchmark.api.profiles import PROFILES
from benchmark.api.registry import BACKBONES, METHODS
from benchmark.data.datasets import DataSource
from benchmark.engine.checkpoints import checkpoint_id, pretrain_identity
from benchmark.errors import UserError

SMOKE = PROFILES["smoke"].cube  # (16, 32, 32)
PAPER = PROFILES["paper"].cube  # (32, 64, 64)
RESTORATION = sorted(name for name in METHODS.names() if "loss" in METHODS.defaults(name))


def logit(p: torch.Tensor) -> torch.Tensor:
    """The output whose sigmoid is ``p`` (``restoration_loss`` compares the sigmoid)."""
    return torch.log(p) - torch.log1p(-p)


def random_volumes(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A target in [0, 1] and a prediction near it, strictly inside (0, 1), float64."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=generator, dtype=torch.float64)
    noise = 0.2 * torch.randn(shape, generator=generator, dtype=torch.float64)
    return (target + noise).clamp(0.01, 0.99), target


def brute_force_ssim_map(x: np.ndarray, y: np.ndarray, window: int = SSIM_WINDOW,
                         sigma: float = SSIM_SIGMA) -> np.ndarray:
    """SSIM of two 3D volumes at every position where a whole window fits, one window at a time:
    gaussian-weighted means, variances and covariance, Wang et al.'s formula, data range 1."""
    offsets = np.arange(window) - (window - 1) / 2
    g = np.exp(-0.5 * (offsets / sigma) ** 2)
    g /= g.sum()
    kernel = g[:, None, None] * g[None, :, None] * g[None, None, :]
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    out = np.empty(tuple(side - window + 1 for side in x.shape))
    for z, r, c in np.ndindex(*out.shape):
        a = x[z:z + window, r:r + window, c:c + window]
        b = y[z:z + window, r:r + window, c:c + window]
        mu_a, mu_b = (kernel * a).sum(), (kernel * b).sum()
        var_a = (kernel * (a - mu_a) ** 2).sum()
        var_b = (kernel * (b - mu_b) ** 2).sum()
        cov = (kernel * (a - mu_a) * (b - mu_b)).sum()
        out[z, r, c] = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return out


# ------------------------------------------------------------------ the value


@pytest.mark.parametrize("shape", [(2, 2, 9, 11, 12), (1, 1, *SMOKE)])
def test_ssim_matches_a_brute_force_computation_on_random_volumes(shape):
    prediction, target = random_volumes(shape, seed=1)
    expected = np.stack([np.stack([brute_force_ssim_map(p, t) for p, t in zip(pb, tb, strict=True)])
                         for pb, tb in zip(prediction.numpy(), target.numpy(), strict=True)])
    computed = ssim_map(prediction, target)
    assert computed.shape == expected.shape == (*shape[:2], *(side - SSIM_WINDOW + 1 for side in shape[2:]))
    np.testing.assert_allclose(computed.double().numpy(), expected, atol=2e-5)
    loss = restoration_loss(logit(prediction), target, "ssim")
    assert float(loss) == pytest.approx(1 - expected.mean(), abs=2e-5)


def test_ssim_matches_scikit_image_on_2d_slices():
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is not a dependency of the suite; "
                                  "the brute-force comparison above checks the same loss everywhere")
    prediction, target = random_volumes((1, 1, *SMOKE), seed=2)
    window = 11  # scikit-image's gaussian SSIM: sigma 1.5 cut at 3.5 sigma, an 11-tap window
    for z in (0, 7, 15):
        a, b = prediction[0, 0, z].numpy(), target[0, 0, z].numpy()
        mean, full = metrics.structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                                   use_sample_covariance=False, full=True)
        ours = ssim_map(prediction[:, :, z], target[:, :, z], window=window)[0, 0].double().numpy()
        crop = (window - 1) // 2  # scikit-image's map has the image's size; it averages its interior
        np.testing.assert_allclose(ours, full[crop:-crop, crop:-crop], atol=2e-5)
        assert ours.mean() == pytest.approx(mean, abs=2e-5)


def test_ssim_agrees_with_monai_ssim_loss():
    from monai.losses import SSIMLoss

    prediction, target = (v.float() for v in random_volumes((2, 3, *SMOKE), seed=3))
    reference = SSIMLoss(spatial_dims=3, data_range=1.0, win_size=SSIM_WINDOW, kernel_sigma=SSIM_SIGMA)
    assert float(ssim_loss(prediction, target)) == pytest.approx(float(reference(prediction, target)), abs=1e-6)


def test_one_minus_ssim_is_zero_for_identical_images_and_grows_with_noise():
    generator = torch.Generator().manual_seed(4)
    target = torch.rand(2, 1, *SMOKE, generator=generator) * 0.9 + 0.05
    assert float(ssim_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(restoration_loss(logit(target), target, "ssim")) == pytest.approx(0.0, abs=1e-5)
    noise = torch.randn(target.shape, generator=generator)
    losses = [float(ssim_loss((target + level * noise).clamp(0, 1), target)) for level in (0.01, 0.03, 0.1, 0.3)]
    assert 0 < losses[0] and all(a < b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] <= 2  # SSIM lies in [-1, 1]


@pytest.mark.parametrize("target_value", [0.5, 0.2, None])
def test_the_loss_is_finite_and_differentiable_on_constant_images(target_value):
    output = torch.zeros(1, 1, *SMOKE, requires_grad=True)  # a constant prediction, 0.5
    target = (torch.full((1, 1, *SMOKE), target_value) if target_value is not None
              else torch.rand(1, 1, *SMOKE, generator=torch.Generator().manual_seed(5)))
    loss = restoration_loss(output, target, "ssim")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(output.grad).all()
    value = float(loss.detach())
    if target_value == 0.5:
        assert value == pytest.approx(0.0, abs=1e-6)
    else:
        assert value > 0 and float(output.grad.abs().sum()) > 0


@pytest.mark.parametrize("cube", [(8, 8, 8), SMOKE, PAPER, tuple(PROFILES["quick"].cube)])
def test_the_window_fits_every_cube_a_profile_allows(cube):
    prediction, target = random_volumes((1, 2, *cube), seed=6)  # two channels, each compared with itself
    loss = restoration_loss(logit(prediction), target, "ssim")
    assert torch.isfinite(loss) and 0 < float(loss) < 2
    with pytest.raises(ValueError, match="at least 7 voxels"):
        ssim_map(prediction[..., :6], target[..., :6])


# ------------------------------------------------------------------ weights


def test_uniform_weights_give_the_unweighted_loss():
    prediction, target = random_volumes((2, 1, *SMOKE), seed=7)
    output = logit(prediction)
    plain = float(restoration_loss(output, target, "ssim"))
    for weights in (torch.ones(SMOKE), torch.full((1, 1, *SMOKE), 3.0, dtype=torch.float64)):
        assert float(restoration_loss(output, target, "ssim", weights)) == pytest.approx(plain, rel=1e-6)


def test_weights_count_at_the_centre_of_each_window_and_the_border_drops_out():
    prediction, target = random_volumes((1, 1, *SMOKE), seed=8)
    dissimilarity = 1 - ssim_map(prediction, target)[0, 0].double()
    half = SSIM_WINDOW // 2
    weights = torch.zeros(SMOKE, dtype=torch.float64)
    weights[4:12, 8:24, 8:24] = 1.0
    weights[4, 8:24, 8:24] = 10.0  # a heavier face, as in-painting's overlap border
    weights[0:half] = 100.0  # no window is centred this close to the border: ignored
    inside = weights[half:-half, half:-half, half:-half]
    expected = float((inside * dissimilarity).sum() / inside.sum())
    assert float(ssim_loss(prediction, target, weights)) == pytest.approx(expected, rel=1e-6)
    border_only = torch.zeros(SMOKE)
    border_only[0] = 1.0
    with pytest.raises(ValueError, match="weights are zero"):
        ssim_loss(prediction, target, border_only)


# ------------------------------------------------------------------ every restoration method


def test_ssim_is_a_restoration_loss_and_the_registry_has_restoration_methods():
    assert RESTORATION_LOSSES == ("mse", "mae", "ssim")
    assert {"genesis", "denoising", "inpainting", "patch-shuffling"} <= set(RESTORATION)


def smoke_checkpoint_id(method) -> str:
    pool = DataSource(Path("phantom"), "phantom", "fingerprint")
    return checkpoint_id(method, pretrain_identity(method, pool, PROFILES["smoke"], 0))


@pytest.mark.parametrize("name", RESTORATION)
def test_each_restoration_method_takes_ssim_into_its_settings_and_checkpoint_id(name):
    default, ssim = METHODS.create(name), METHODS.create(name, loss="ssim")
    assert ssim.settings()["loss"] == "ssim" and ssim.settings() != default.settings()
    assert {k: v for k, v in ssim.settings().items() if k != "loss"} == {
        k: v for k, v in default.settings().items() if k != "loss"}
    assert METHODS.create(name, **ssim.settings()).settings() == ssim.settings()
    assert smoke_checkpoint_id(ssim) != smoke_checkpoint_id(default)


@pytest.mark.parametrize("name", RESTORATION)
def test_each_restoration_method_trains_a_step_with_ssim(name):
    method = METHODS.create(name, loss="ssim")
    rng = np.random.default_rng(9)
    cubes = rng.random((2, 1, *SMOKE)).astype(np.float32)
    torch.manual_seed(0)
    model = method.build_pretext_model(BACKBONES.create(method.default_backbone()), 1, 4)
    method.init_weights(model)
    inputs, targets = method.make_example(cubes, rng)
    loss = method.loss(model(inputs), targets)
    assert loss.ndim == 0 and torch.isfinite(loss) and float(loss.detach()) > 0
    loss.backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
    assert any(float(g.abs().sum()) > 0 for g in gradients)


@pytest.mark.parametrize("name", RESTORATION)
def test_an_unknown_loss_is_a_one_line_error_naming_the_three(name):
    with pytest.raises(UserError) as caught:
        METHODS.create(name, loss="huber")
    message = str(caught.value)
    assert "\n" not in message and "loss must be one of mse, mae, ssim, got 'huber'" in message
