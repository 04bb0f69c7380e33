"""Genesis 2D: the Genesis transforms on 2D images (``genesis_transforms_2d``) and the ``genesis-2d`` method.

The properties the 3D transforms are tested for (``test_genesis_transforms.py``), in 2D: windows and
boxes are rectangles of the documented sides, local shuffling is an exact permutation within each
last-covering window, the non-linear map is monotone, the cutouts change only inside or outside their
boxes, flips act on Y or X only, the gates have the configured probabilities (0 disables), and
everything is reproducible from the generator. Then the method: examples from axial slices, and one
pretraining step of its 2D restoration model.
"""

from __future__ import annotations

import dataclasses

import benchmark.methods.genesis_transforms as genesis
import benchmark.methods.genesis_transforms_2d as genesis2d
import numpy as np
import pytest
import torch
from benchmark.methods.genesis import Genesis
from benchmark.methods.genesis_2d import Genesis2D, random_axial_slices
from benchmark.methods.genesis_transforms import GenesisConfig, genesis_transform
from benchmark.methods.genesis_transforms_2d import (
    flip_2d,
    genesis_transform_2d,
    inner_cutout_2d,
    inner_cutout_boxes_2d,
    local_pixel_shuffling_2d,
    outer_cutout_2d,
    outer_cutout_boxes_2d,
    shuffle_windows_2d,
)
from scipy import stats

from benchmark.api.method import restoration_loss
from benchmark.api.registry import BACKBONES, METHODS
from benchmark.api.settings import defaults
from benchmark.errors import UserError

SMALL = (1, 32, 32)  # a slice of the smoke and quick cubes (16, 32, 32)
PAPER = (1, 64, 64)  # a slice of the paper's cube (32, 64, 64)
NOTHING = GenesisConfig(flip_prob=0.0, local_shuffle_prob=0.0, nonlinear_prob=0.0, paint_prob=0.0)


def unique_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A float32 image in [0, 1) whose values are all different."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) / n).astype(np.float32).reshape(shape)


def box_mask(spatial_shape: tuple[int, int], starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    mask = np.zeros(spatial_shape, dtype=bool)
    for (y, x), (sy, sx) in zip(starts, sizes, strict=True):
        mask[y:y + sy, x:x + sx] = True
    return mask


def window_labels(spatial_shape: tuple[int, int], starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The index of the last window covering each pixel (-1: none), flat, by painting them in order."""
    label = np.full(spatial_shape, -1)
    for index, ((y, x), (sy, sx)) in enumerate(zip(starts, sizes, strict=True)):
        label[y:y + sy, x:x + sx] = index
    return label.ravel()


def all_flips(image: np.ndarray) -> list[np.ndarray]:
    return [image, np.flip(image, 1), np.flip(image, 2), np.flip(image, (1, 2))]


# ------------------------------------------------------------------ local shuffling


@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (9, 12)])
def test_shuffle_windows_are_rectangles_of_the_per_axis_sides(shape):
    starts, sizes = shuffle_windows_2d(shape, np.random.default_rng(1), n_windows=5000)
    dims = np.array(shape)
    high = np.maximum(1, dims // 10)
    assert starts.shape == sizes.shape == (5000, 2)
    assert (sizes >= 1).all() and (sizes <= high).all()
    assert (starts >= 0).all() and (starts + sizes <= dims).all()
    for axis in range(2):  # every allowed side occurs (inclusive upper bound), every position too
        assert set(np.unique(sizes[:, axis])) == set(range(1, high[axis] + 1))
        assert starts[:, axis].min() == 0 and (starts + sizes)[:, axis].max() == dims[axis]


@pytest.mark.parametrize("shape, n_windows", [(SMALL, 30), (SMALL, 10_000), ((2, 32, 32), 200), (PAPER, 300)])
def test_local_shuffling_permutes_within_the_last_window(shape, n_windows):
    image = unique_image(shape)
    if shape[0] == 2:  # the second channel follows the first: a pixel moves with all its channels
        image[1] = image[0] + 1.0
    spatial = shape[1:]
    out = local_pixel_shuffling_2d(image, np.random.default_rng(3), n_windows=n_windows, window_divisor=5)
    starts, sizes = shuffle_windows_2d(spatial, np.random.default_rng(3), n_windows=n_windows, window_divisor=5)

    assert out.dtype == image.dtype and out.shape == image.shape
    np.testing.assert_array_equal(np.sort(out, axis=None), np.sort(image, axis=None))  # exact histogram
    if shape[0] == 2:
        np.testing.assert_array_equal(out[1], out[0] + 1.0)

    label = window_labels(spatial, starts, sizes)
    flat_in, flat_out = image[0].ravel(), out[0].ravel()
    source = np.argsort(flat_in)[np.searchsorted(np.sort(flat_in), flat_out)]  # where each value came from
    outside = label < 0
    np.testing.assert_array_equal(source[outside], np.flatnonzero(outside))  # uncovered pixels stay put
    assert (label[source] == label).all()  # values move only within the last window's pixel set
    covered = np.flatnonzero(~outside)
    coords = np.stack(np.unravel_index(source[covered], spatial), axis=1)
    windows = label[covered]
    assert ((coords >= starts[windows]) & (coords < starts[windows] + sizes[windows])).all()
    assert (source[covered] != covered).mean() > 0.3  # and they do move


def test_local_shuffling_keeps_each_windows_histogram():
    image = unique_image((1, 40, 40), seed=1)
    out = local_pixel_shuffling_2d(image, np.random.default_rng(4), n_windows=60, window_divisor=4)
    label = window_labels((40, 40), *shuffle_windows_2d((40, 40), np.random.default_rng(4), 60, 4))
    for window in np.unique(label):
        kept = label == window
        np.testing.assert_array_equal(np.sort(out[0].ravel()[kept]), np.sort(image[0].ravel()[kept]))


def test_local_shuffling_reproducible_and_nothing_without_windows():
    image = np.random.default_rng(5).random(PAPER, dtype=np.float32)
    first = local_pixel_shuffling_2d(image, np.random.default_rng(6))
    np.testing.assert_array_equal(first, local_pixel_shuffling_2d(image, np.random.default_rng(6)))
    assert not np.array_equal(first, local_pixel_shuffling_2d(image, np.random.default_rng(7)))
    np.testing.assert_array_equal(local_pixel_shuffling_2d(image, np.random.default_rng(6), n_windows=0), image)


# --------------------------------------------------------------------- non-linear


def nonlinear_only(invert_prob: float) -> GenesisConfig:
    return dataclasses.replace(NOTHING, nonlinear_prob=1.0, invert_prob=invert_prob)


@pytest.mark.parametrize("invert_prob, directions", [(0.5, {True, False}), (0.0, {False}), (1.0, {True})])
def test_nonlinear_map_is_monotone_and_decreasing_when_inverted(invert_prob, directions):
    ramp = np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(1, 64, 64)  # increasing in C order
    seen = set()
    for seed in range(60):
        out, target = genesis_transform_2d(ramp, np.random.default_rng(seed), nonlinear_only(invert_prob))
        np.testing.assert_array_equal(target, ramp)
        values = out.ravel()
        assert out.dtype == np.float32 and values.min() >= 0.0 and values.max() <= 1.0
        inverted = values[0] > values[-1]
        steps = np.diff(values)
        if inverted:
            assert (steps <= 0).all() and values[0] == 1.0 and values[-1] == 0.0
        else:
            assert (steps >= 0).all() and values[0] == 0.0 and values[-1] == 1.0
        seen.add(bool(inverted))
    assert seen == directions


# ------------------------------------------------------------------------ cutouts


@pytest.mark.parametrize("shape", [SMALL, PAPER, (2, 48, 40)])
def test_inner_cutout_fills_its_rectangles_with_noise_and_nothing_else(shape):
    spatial = np.array(shape[1:])
    image = np.random.default_rng(8).random(shape, dtype=np.float32) * 0.5 + 1.0  # outside the noise's [0, 1)
    counts = []
    for seed in range(60):
        starts, sizes = inner_cutout_boxes_2d(shape[1:], np.random.default_rng(seed))
        out = inner_cutout_2d(image, np.random.default_rng(seed))
        counts.append(len(starts))
        assert starts.shape == sizes.shape == (len(starts), 2) and 1 <= len(starts) <= 5
        assert ((sizes >= spatial // 6) & (sizes <= spatial // 3)).all()
        assert (starts >= 3).all() and (starts + sizes <= spatial - 3).all()
        mask = box_mask(shape[1:], starts, sizes)
        np.testing.assert_array_equal(out[:, ~mask], image[:, ~mask])  # untouched outside
        assert (out[:, mask] >= 0.0).all() and (out[:, mask] < 1.0).all()  # noise in [0, 1) inside
        assert out.dtype == np.float32 and out.shape == shape
    assert min(counts) < 5 and max(counts) == 5


@pytest.mark.parametrize("shape", [SMALL, PAPER, (2, 48, 40)])
def test_outer_cutout_keeps_its_rectangles_and_fills_the_rest_with_noise(shape):
    spatial = np.array(shape[1:])
    image = np.random.default_rng(9).random(shape, dtype=np.float32) * 0.5 + 1.0
    low, high = spatial - 4 * spatial // 7, spatial - 3 * spatial // 7
    for seed in range(60):
        starts, sizes = outer_cutout_boxes_2d(shape[1:], np.random.default_rng(seed))
        out = outer_cutout_2d(image, np.random.default_rng(seed))
        assert starts.shape == sizes.shape == (len(starts), 2) and 1 <= len(starts) <= 5
        assert ((sizes >= low) & (sizes <= high)).all()
        assert (starts >= 3).all() and (starts + sizes <= spatial - 3).all()
        mask = box_mask(shape[1:], starts, sizes)
        np.testing.assert_array_equal(out[:, mask], image[:, mask])  # the rectangles exactly
        assert (out[:, ~mask] >= 0.0).all() and (out[:, ~mask] < 1.0).all()  # noise everywhere else
        assert out.dtype == np.float32 and out.shape == shape


@pytest.mark.parametrize("spatial", [(1, 1), (4, 5), (6, 6), (8, 40)])
def test_transforms_on_tiny_images_stay_inside(spatial):
    image = np.random.default_rng(10).random((1, *spatial), dtype=np.float32)
    for seed in range(20):
        for boxes in (inner_cutout_boxes_2d, outer_cutout_boxes_2d):
            starts, sizes = boxes(spatial, np.random.default_rng(seed))
            assert (sizes >= 1).all() and (starts >= 0).all() and (starts + sizes <= spatial).all()
        for transform in (inner_cutout_2d, outer_cutout_2d, local_pixel_shuffling_2d):
            assert transform(image, np.random.default_rng(seed)).shape == image.shape
        x, y = genesis_transform_2d(image, np.random.default_rng(seed))
        assert x.shape == y.shape == image.shape


# -------------------------------------------------------------------------- flips


def test_flip_acts_on_y_or_x_only_and_identically_on_input_and_target():
    image = unique_image((2, 5, 6))
    other = image * 2.0
    flipped_axes = set()
    for seed in range(200):
        a, b = flip_2d(image, other, np.random.default_rng(seed), prob=1.0, max_flips=1)
        np.testing.assert_array_equal(b, a * 2.0)
        matches = [axis for axis in range(3) if np.array_equal(a, np.flip(image, axis))]
        assert len(matches) == 1 and matches[0] != 0
        flipped_axes.add(matches[0])
    assert flipped_axes == {1, 2}


def test_flip_only_pipeline_keeps_input_equal_to_target():
    image = unique_image((2, 5, 6))
    config = dataclasses.replace(NOTHING, flip_prob=0.7)
    seen = set()
    for seed in range(100):
        x, y = genesis_transform_2d(image, np.random.default_rng(seed), config)
        np.testing.assert_array_equal(x, y)
        seen.add(next(i for i, f in enumerate(all_flips(image)) if np.array_equal(y, f)))  # channels never swapped
    assert seen == {0, 1, 2, 3}


# ------------------------------------------------------------------ probabilities


def count_calls(monkeypatch, module, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def transform_calls(monkeypatch, config: GenesisConfig, draws: int) -> dict[str, list[int]]:
    """How often each transform ran over ``draws`` pipelines (local shuffling and the non-linear map
    are handed to the 3D pipeline by the 2D module; the cutouts are the 3D module's), and the flips."""
    calls = {name: count_calls(monkeypatch, genesis2d, name)
             for name in ("local_pixel_shuffling", "nonlinear_intensity")}
    calls |= {name: count_calls(monkeypatch, genesis, name) for name in ("inner_cutout", "outer_cutout")}
    calls["flip"] = []
    real_flip = np.flip
    monkeypatch.setattr(genesis2d.np, "flip", lambda a, axis: calls["flip"].append(1) or real_flip(a, axis))
    image = np.random.default_rng(11).random((1, 12, 12), dtype=np.float32)
    rng = np.random.default_rng(12)
    for _ in range(draws):
        genesis_transform_2d(image, rng, config)
    monkeypatch.undo()
    return calls


def test_transform_probabilities_match_the_config(monkeypatch):
    draws = 2000
    calls = transform_calls(monkeypatch, GenesisConfig(n_windows=5), draws)

    def close(observed: float, p: float, n: int) -> bool:  # within 5 standard errors
        return abs(observed - p) < 5 * np.sqrt(p * (1 - p) / n)

    painted = len(calls["inner_cutout"]) + len(calls["outer_cutout"])
    assert close(len(calls["local_pixel_shuffling"]) / draws, 0.5, draws)
    assert close(len(calls["nonlinear_intensity"]) / draws, 0.9, draws)
    assert close(painted / draws, 0.9, draws)
    assert close(len(calls["inner_cutout"]) / painted, 0.2, painted)
    expected_flips = 0.4 + 0.4**2 + 0.4**3  # mean number of flips per image (each flips two arrays)
    assert abs(len(calls["flip"]) / 2 / draws - expected_flips) < 0.1


@pytest.mark.parametrize("disabled, silent", [
    ("flip_prob", "flip"), ("local_shuffle_prob", "local_pixel_shuffling"),
    ("nonlinear_prob", "nonlinear_intensity"), ("paint_prob", "inner_cutout"), ("paint_prob", "outer_cutout"),
    ("inpaint_prob", "inner_cutout"),
])
def test_a_probability_of_zero_disables_its_transform(monkeypatch, disabled, silent):
    always = GenesisConfig(flip_prob=1.0, local_shuffle_prob=1.0, nonlinear_prob=1.0, paint_prob=1.0,
                           inpaint_prob=0.5, n_windows=5)
    calls = transform_calls(monkeypatch, dataclasses.replace(always, **{disabled: 0.0}), 100)
    assert not calls[silent]
    assert all(calls[name] for name in calls if name != silent and not (disabled == "paint_prob" and "cutout" in name))


def test_all_probabilities_zero_give_the_image_itself():
    image = np.random.default_rng(13).random(SMALL, dtype=np.float32)
    for seed in range(10):
        x, y = genesis_transform_2d(image, np.random.default_rng(seed), NOTHING)
        np.testing.assert_array_equal(x, image)
        np.testing.assert_array_equal(y, image)


# ---------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("shape", [SMALL, PAPER, (2, 32, 48)])
def test_genesis_transform_2d_outputs(shape):
    image = np.random.default_rng(14).random(shape)  # float64 in: float32 out
    image.setflags(write=False)
    before = image.copy()
    flips = all_flips(image)
    for seed in range(8):
        x, y = genesis_transform_2d(image, np.random.default_rng(seed))
        for array in (x, y):
            assert array.shape == shape and array.dtype == np.float32 and array.flags.c_contiguous
            assert array.min() >= 0.0 and array.max() <= 1.0
        assert any(np.array_equal(y, f.astype(np.float32)) for f in flips)  # target: the flipped image
        assert not np.shares_memory(x, y)
        x2, y2 = genesis_transform_2d(image, np.random.default_rng(seed))
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(image, before)
    with pytest.raises(ValueError, match=r"expected an image \(C, Y, X\)"):
        genesis_transform_2d(image[None], np.random.default_rng(0))


def test_without_flips_the_2d_pipeline_is_the_3d_one_on_the_one_slice_cube():
    """Draw for draw: the 2D transforms are the 3D ones on a cube of one slice."""
    image = np.random.default_rng(15).random(SMALL, dtype=np.float32)
    config = dataclasses.replace(GenesisConfig(n_windows=300), flip_prob=0.0)
    for seed in range(20):
        x, y = genesis_transform_2d(image, np.random.default_rng(seed), config)
        x3, y3 = genesis_transform(image[:, None], np.random.default_rng(seed), config)
        np.testing.assert_array_equal(x, x3[:, 0])
        np.testing.assert_array_equal(y, y3[:, 0])


# ------------------------------------------------------------------------ method


def slice_pool(n: int, depth: int = 16, seed: int = 0) -> np.ndarray:
    """``n`` random cubes ``(1, depth, 32, 32)`` in [0, 1]."""
    return np.random.default_rng(seed).random((n, 1, depth, 32, 32), dtype=np.float32)


def test_method_declares_2d_backbones_transfers_and_no_device_transforms():
    method = METHODS.create("genesis-2d")
    assert type(method) is Genesis2D and METHODS.preset("genesis-2d") is None
    assert Genesis2D.backbones == ("unet2d", "resnet2d") and Genesis2D.default_backbone() == "unet2d"
    assert Genesis2D.spatial_dims == 2 and method.transfers == "encoder+decoder"
    assert Genesis2D.has_pretext_task() and not Genesis2D.has_device_transforms()
    assert "\n" not in method.description


def test_settings_are_genesis_settings_with_the_reference_defaults():
    assert defaults(Genesis2D) == defaults(Genesis) == {**dataclasses.asdict(GenesisConfig()), "loss": "mse"}
    method = METHODS.create("genesis-2d", paint_prob="0.5", inner_side_divisors="5,2", loss="mae")
    assert method.config.paint_prob == 0.5 and method.config.inner_side_divisors == (5, 2)
    assert method.settings()["loss"] == "mae"
    with pytest.raises(UserError, match="loss must be one of mse, mae"):
        METHODS.create("genesis-2d", loss="l1")


def test_loss_is_the_restoration_loss_its_setting_names():
    generator = torch.Generator().manual_seed(0)
    output, target = torch.randn(2, 1, 16, 16, generator=generator), torch.rand(2, 1, 16, 16, generator=generator)
    for loss in ("mse", "mae", "ssim"):
        expected = restoration_loss(output, target, loss)
        assert float(METHODS.create("genesis-2d", loss=loss).loss(output, target)) == pytest.approx(float(expected))


def test_paper_optimizer_is_genesis_sgd():
    optimizer, scheduler = Genesis2D().paper_optimizer([torch.nn.Parameter(torch.zeros(3))])
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 1.0 and optimizer.defaults["momentum"] == 0.9
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert scheduler.factor == 0.5 and scheduler.patience == 10


@pytest.mark.parametrize("depth", [16, 1])  # CT cubes; radiographs carried as cubes of one slice
def test_make_example_gives_2d_pairs_from_one_axial_slice_per_cube(depth):
    pool = slice_pool(6, depth)
    before = pool.copy()
    inputs, targets = METHODS.create("genesis-2d").make_example(pool, np.random.default_rng(1))
    np.testing.assert_array_equal(pool, before)  # the pool is not modified
    for tensor in (inputs, targets):
        assert tensor.shape == (6, 1, 32, 32) and tensor.dtype == torch.float32 and tensor.is_contiguous()
        assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    for cube, target in zip(pool, targets.numpy()):  # each target: a flipped axial slice of its cube
        assert any(np.array_equal(target, flipped) for z in range(depth) for flipped in all_flips(cube[:, z]))
    assert not torch.equal(inputs, targets)
    with pytest.raises(ValueError, match=r"expected cubes \(B, C, Z, Y, X\)"):
        Genesis2D().make_example(pool[0], np.random.default_rng(1))


def test_make_example_depends_on_the_generator_alone():
    pool, method = slice_pool(4), Genesis2D()
    np.random.seed(0)
    torch.manual_seed(0)
    first = method.make_example(pool, np.random.default_rng(2))
    np.random.seed(1)  # the global generators play no part
    torch.manual_seed(1)
    again = method.make_example(pool.copy(), np.random.default_rng(2))
    other = method.make_example(pool, np.random.default_rng(3))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_slice_positions_are_uniform_over_the_axial_axis():
    depth = 8
    cube = np.broadcast_to(np.arange(depth, dtype=np.float32)[None, :, None, None] / depth, (1, depth, 4, 4))
    slices = random_axial_slices(np.stack([cube] * 4000), np.random.default_rng(4))
    assert slices.shape == (4000, 1, 4, 4)
    positions = np.rint(slices[:, 0, 0, 0] * depth).astype(int)
    counts = np.bincount(positions, minlength=depth)
    assert len(counts) == depth and stats.chisquare(counts).pvalue > 1e-3


def test_speed_corruptions_run_on_the_central_slice_of_a_cube():
    cube = slice_pool(1)[0]
    corruptions = Genesis2D().speed_corruptions(cube.shape)
    assert set(corruptions) == {"local pixel shuffling", "pipeline"}
    assert corruptions["local pixel shuffling"](cube, np.random.default_rng(0)).shape == (1, 32, 32)
    x, y = corruptions["pipeline"](cube, np.random.default_rng(0))
    assert x.shape == (1, 32, 32) and any(np.array_equal(y, f) for f in all_flips(cube[:, 8]))


@pytest.mark.parametrize("backbone, width", [("unet2d", 2), ("resnet2d", 4)])
def test_one_pretraining_step_of_the_2d_restoration_model(backbone, width):
    torch.manual_seed(0)
    method = METHODS.create("genesis-2d")
    model = method.build_pretext_model(BACKBONES.create(backbone), 1, width)
    method.init_weights(model)
    optimizer, _ = method.paper_optimizer(model.parameters())
    model.train()
    inputs, targets = method.sample_batch(slice_pool(4), 2, np.random.default_rng(5))
    output = model(inputs)
    assert output.shape == targets.shape == (2, 1, 32, 32)
    loss = method.loss(output, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
