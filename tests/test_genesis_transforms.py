"""Models Genesis transforms, the ``genesis`` method plugin and its ablation presets."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys

import benchmark.methods.genesis_torch as genesis_torch
import benchmark.methods.genesis_transforms as genesis
import numpy as np
import pytest
import torch
from benchmark.methods.genesis import Genesis
from benchmark.methods.genesis_transforms import (
    GenesisConfig,
    bezier_map,
    flip,
    genesis_transform,
    inner_cutout,
    inner_cutout_boxes,
    last_window_labels,
    local_pixel_shuffling,
    nonlinear_intensity,
    outer_cutout,
    outer_cutout_boxes,
    shuffle_windows,
)
from oracles.genesis_loop import genesis_transform_loop, local_pixel_shuffling_loop, nonlinear_intensity_loop
from scipy import stats

from benchmark.api.registry import METHODS

SMALL = (1, 16, 32, 32)
PAPER = (1, 32, 64, 64)
NOTHING = GenesisConfig(flip_prob=0.0, local_shuffle_prob=0.0, nonlinear_prob=0.0, paint_prob=0.0)


def unique_cube(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A float32 cube in [0, 1) whose values are all different."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) / n).astype(np.float32).reshape(shape)


def box_mask(spatial_shape: tuple[int, ...], starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    mask = np.zeros(spatial_shape, dtype=bool)
    for (z, y, x), (sz, sy, sx) in zip(starts, sizes, strict=True):
        mask[z:z + sz, y:y + sy, x:x + sx] = True
    return mask


# ------------------------------------------------------------------ local shuffling


@pytest.mark.parametrize("shape", [(16, 32, 32), (32, 64, 64), (5, 9, 12)])
def test_shuffle_windows_sizes_and_bounds(shape):
    starts, sizes = shuffle_windows(shape, np.random.default_rng(1), n_windows=5000)
    dims = np.array(shape)
    high = np.maximum(1, dims // 10)
    assert starts.shape == sizes.shape == (5000, 3)
    assert (sizes >= 1).all() and (sizes <= high).all()
    assert (starts >= 0).all() and (starts + sizes <= dims).all()
    for axis in range(3):  # every allowed side occurs (inclusive upper bound)
        assert set(np.unique(sizes[:, axis])) == set(range(1, high[axis] + 1))


def test_last_window_labels_matches_painting_in_order():
    shape = (16, 32, 32)
    starts, sizes = shuffle_windows(shape, np.random.default_rng(2), n_windows=400)
    expected = np.full(shape, -1)
    for index, ((z, y, x), (sz, sy, sx)) in enumerate(zip(starts, sizes, strict=True)):
        expected[z:z + sz, y:y + sy, x:x + sx] = index
    voxels, labels = last_window_labels(shape, starts, sizes)
    covered = np.flatnonzero(expected.ravel() >= 0)
    np.testing.assert_array_equal(voxels, covered)
    np.testing.assert_array_equal(labels, expected.ravel()[covered])


@pytest.mark.parametrize("shape, n_windows", [(SMALL, 300), (SMALL, 10_000), ((2, 16, 32, 32), 1000)])
def test_local_shuffling_permutes_within_last_window(shape, n_windows):
    cube = unique_cube(shape)
    if shape[0] == 2:  # the second channel follows the first: a voxel moves with all its channels
        cube[1] = cube[0] + 1.0
    spatial = shape[1:]
    out = local_pixel_shuffling(cube, np.random.default_rng(3), n_windows=n_windows)
    starts, sizes = shuffle_windows(spatial, np.random.default_rng(3), n_windows=n_windows)  # drawn first
    voxels, labels = last_window_labels(spatial, starts, sizes)

    assert out.dtype == cube.dtype and out.shape == cube.shape
    np.testing.assert_array_equal(np.sort(out, axis=None), np.sort(cube, axis=None))  # exact histogram
    if shape[0] == 2:
        np.testing.assert_array_equal(out[1], out[0] + 1.0)

    flat_in, flat_out = cube[0].ravel(), out[0].ravel()
    source = np.argsort(flat_in)[np.searchsorted(np.sort(flat_in), flat_out)]  # where each value came from
    label = np.full(flat_in.size, -1)
    label[voxels] = labels
    outside = label < 0
    np.testing.assert_array_equal(source[outside], np.flatnonzero(outside))  # uncovered voxels stay put
    assert (label[source] == label).all()  # values move only within the last window's voxel set
    coords = np.stack(np.unravel_index(source[voxels], spatial), axis=1)
    assert ((coords >= starts[labels]) & (coords < starts[labels] + sizes[labels])).all()
    assert (source[voxels] != voxels).mean() > 0.3  # and they do move


def test_local_shuffling_permutations_are_uniform_and_independent_across_windows():
    """Two windows of 3 voxels: each of the 6 x 6 pairs of permutations equally likely."""
    voxels = np.arange(6, dtype=np.int32)
    bounds = np.array([0, 3, 6])
    draws = np.random.default_rng(8).random((7200, 6))
    pairs = [tuple(genesis._shuffle_each_window(voxels, bounds, row)) for row in draws]
    counts = np.unique(np.array(pairs), axis=0, return_counts=True)[1]
    assert len(counts) == 36
    assert stats.chisquare(counts).pvalue > 1e-3


def test_compiled_loops_work_where_no_cache_folder_is_writable(tmp_path):
    """A read-only install and home: numba cannot cache, so it compiles in each process."""
    (tmp_path / "compiled_probe.py").write_text(
        "from benchmark.methods.genesis_transforms import _compiled\n\n@_compiled\ndef twice(x):\n    return 2 * x\n")
    (tmp_path / "__pycache__").write_text("a file where the cache folder would go")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_CACHE_DIR"}
    env.update(HOME=str(blocked), XDG_CACHE_HOME=str(blocked / "cache"), PYTHONDONTWRITEBYTECODE="1")
    probe = "import compiled_probe; print(compiled_probe.twice(21))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"


def test_local_shuffling_deterministic_and_histogram_on_paper_cube():
    cube = np.random.default_rng(4).random(PAPER, dtype=np.float32)
    first = local_pixel_shuffling(cube, np.random.default_rng(5), n_windows=50)
    np.testing.assert_array_equal(first, local_pixel_shuffling(cube, np.random.default_rng(5), n_windows=50))
    assert not np.array_equal(first, local_pixel_shuffling(cube, np.random.default_rng(6), n_windows=50))
    full = local_pixel_shuffling(cube, np.random.default_rng(5))
    np.testing.assert_array_equal(np.sort(full, axis=None), np.sort(cube, axis=None))
    np.testing.assert_array_equal(local_pixel_shuffling(cube, np.random.default_rng(5), n_windows=0), cube)


# --------------------------------------------------------------------- non-linear


def test_nonlinear_map_monotone_with_endpoints():
    ramp = np.linspace(0.0, 1.0, 1001, dtype=np.float32).reshape(1, 1, 1, -1)
    rng = np.random.default_rng(7)
    directions = set()
    for _ in range(100):
        state = rng.bit_generator.state
        _, _, inverted = bezier_map(rng)
        rng.bit_generator.state = state  # replay the same draw through nonlinear_intensity
        out = nonlinear_intensity(ramp, rng).ravel()
        assert out.dtype == np.float32
        assert (out >= 0).all() and (out <= 1).all()
        steps = np.diff(out)
        if inverted:
            assert (steps <= 0).all() and out[0] == 1.0 and out[-1] == 0.0
        else:
            assert (steps >= 0).all() and out[0] == 0.0 and out[-1] == 1.0
        directions.add(inverted)
    assert directions == {True, False}


@pytest.mark.parametrize("invert_prob, inverted", [(0.0, False), (1.0, True)])
def test_nonlinear_invert_probability_extremes(invert_prob, inverted):
    rng = np.random.default_rng(8)
    assert all(bezier_map(rng, invert_prob)[2] is inverted for _ in range(50))


def test_nonlinear_output_in_unit_range_for_any_input():
    cube = np.random.default_rng(9).normal(0.5, 1.0, SMALL).astype(np.float32)
    out = nonlinear_intensity(cube, np.random.default_rng(10))
    assert out.shape == SMALL and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


# ------------------------------------------------------------------------ cutouts


@pytest.mark.parametrize("shape", [SMALL, PAPER])
def test_inner_cutout_boxes_and_noise(shape):
    spatial = np.array(shape[1:])
    ones = np.ones(shape, dtype=np.float32)
    counts = []
    for seed in range(60):
        out = inner_cutout(ones, np.random.default_rng(seed))
        starts, sizes = inner_cutout_boxes(shape[1:], np.random.default_rng(seed))
        counts.append(len(starts))
        assert 1 <= len(starts) <= 5
        assert ((sizes >= spatial // 6) & (sizes <= spatial // 3)).all()
        assert (starts >= 3).all() and (starts + sizes <= spatial - 3).all()
        mask = box_mask(shape[1:], starts, sizes)
        np.testing.assert_array_equal(out[0] < 1.0, mask)  # noise in [0, 1) exactly inside the boxes
        assert out.min() >= 0.0 and out.dtype == np.float32
    assert min(counts) < 5 and max(counts) == 5


@pytest.mark.parametrize("shape", [SMALL, PAPER])
def test_outer_cutout_restores_boxes_exactly(shape):
    spatial = np.array(shape[1:])
    cube = np.random.default_rng(11).random(shape, dtype=np.float32)
    ones = np.ones(shape, dtype=np.float32)
    low, high = spatial - 4 * spatial // 7, spatial - 3 * spatial // 7
    for seed in range(60):
        starts, sizes = outer_cutout_boxes(shape[1:], np.random.default_rng(seed))
        assert 1 <= len(starts) <= 5
        assert ((sizes >= low) & (sizes <= high)).all()
        assert (starts >= 3).all() and (starts + sizes <= spatial - 3).all()
        mask = box_mask(shape[1:], starts, sizes)
        np.testing.assert_array_equal(outer_cutout(ones, np.random.default_rng(seed))[0] == 1.0, mask)
        out = outer_cutout(cube, np.random.default_rng(seed))
        np.testing.assert_array_equal(out[:, mask], cube[:, mask])
        assert out.min() >= 0.0 and out.max() < 1.0 and out.dtype == np.float32


@pytest.mark.parametrize("spatial", [(1, 1, 1), (4, 5, 7), (6, 6, 6), (16, 32, 32)])
def test_cutouts_on_tiny_cubes_stay_inside(spatial):
    cube = np.random.default_rng(12).random((1, *spatial), dtype=np.float32)
    for seed in range(20):
        for boxes in (inner_cutout_boxes, outer_cutout_boxes):
            starts, sizes = boxes(spatial, np.random.default_rng(seed))
            assert (sizes >= 1).all() and (starts >= 0).all() and (starts + sizes <= spatial).all()
        assert inner_cutout(cube, np.random.default_rng(seed)).shape == cube.shape
        assert outer_cutout(cube, np.random.default_rng(seed)).shape == cube.shape
        assert local_pixel_shuffling(cube, np.random.default_rng(seed), n_windows=20).shape == cube.shape


# -------------------------------------------------------------------------- flips


def test_flip_identical_on_input_and_target_and_spatial_only():
    cube = unique_cube((2, 4, 5, 6))
    other = cube * 2.0
    flipped_axes = set()
    for seed in range(200):
        a, b = flip(cube, other, np.random.default_rng(seed), prob=1.0, max_flips=1)
        np.testing.assert_array_equal(b, a * 2.0)
        matches = [axis for axis in range(4) if np.array_equal(a, np.flip(cube, axis))]
        assert len(matches) == 1 and matches[0] != 0
        flipped_axes.add(matches[0])
    assert flipped_axes == {1, 2, 3}


def test_flip_only_config_keeps_input_equal_to_target():
    cube = unique_cube((2, 4, 5, 6))
    config = dataclasses.replace(NOTHING, flip_prob=0.7)
    saw_flip = False
    for seed in range(100):
        x, y = genesis_transform(cube, np.random.default_rng(seed), config)
        np.testing.assert_array_equal(x, y)
        assert any(np.array_equal(y, f) for f in all_spatial_flips(cube))  # channels never swapped
        saw_flip |= not np.array_equal(y, cube)
    assert saw_flip


# ------------------------------------------------------------------ probabilities


def count_calls(monkeypatch, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(genesis, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(genesis, name, counted)
    return calls


def test_transform_probabilities_match_config(monkeypatch):
    draws = 2000
    cube = np.random.default_rng(13).random((1, 8, 12, 12), dtype=np.float32)
    calls = {name: count_calls(monkeypatch, name)
             for name in ("local_pixel_shuffling", "nonlinear_intensity", "inner_cutout", "outer_cutout")}
    flips: list[int] = []
    real_flip = np.flip
    monkeypatch.setattr(genesis.np, "flip", lambda a, axis: flips.append(1) or real_flip(a, axis))
    rng = np.random.default_rng(14)
    config = GenesisConfig(n_windows=5)
    for _ in range(draws):
        genesis_transform(cube, rng, config)
    monkeypatch.undo()

    def close(observed: float, p: float, n: int) -> bool:  # within 5 standard errors
        return abs(observed - p) < 5 * np.sqrt(p * (1 - p) / n)

    painted = len(calls["inner_cutout"]) + len(calls["outer_cutout"])
    assert close(len(calls["local_pixel_shuffling"]) / draws, 0.5, draws)
    assert close(len(calls["nonlinear_intensity"]) / draws, 0.9, draws)
    assert close(painted / draws, 0.9, draws)
    assert close(len(calls["inner_cutout"]) / painted, 0.2, painted)
    expected_flips = 0.4 + 0.4**2 + 0.4**3  # mean number of flips per cube (each flips two arrays)
    assert abs(len(flips) / 2 / draws - expected_flips) < 0.1


# ---------------------------------------------------------------------- pipeline


def all_spatial_flips(cube: np.ndarray) -> list[np.ndarray]:
    return [np.flip(cube, axes) if axes else cube
            for r in range(4) for axes in itertools.combinations((1, 2, 3), r)]


@pytest.mark.parametrize("shape", [SMALL, PAPER])
def test_genesis_transform_outputs(shape):
    cube = np.random.default_rng(15).random(shape)  # float64 in: float32 out
    cube.setflags(write=False)
    before = cube.copy()
    flips = all_spatial_flips(cube)
    for seed in range(8):
        x, y = genesis_transform(cube, np.random.default_rng(seed))
        for array in (x, y):
            assert array.shape == shape and array.dtype == np.float32 and array.flags.c_contiguous
            assert array.min() >= 0.0 and array.max() <= 1.0
        assert any(np.array_equal(y, f.astype(np.float32)) for f in flips)  # target: the flipped cube
        assert not np.shares_memory(x, y)
        x2, y2 = genesis_transform(cube, np.random.default_rng(seed))
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(cube, before)


def test_genesis_transform_does_not_touch_callers_array():
    cube = np.random.default_rng(16).random(SMALL, dtype=np.float32)
    before = cube.copy()
    for seed in range(10):
        x, y = genesis_transform(cube, np.random.default_rng(seed), NOTHING)
        x[...] = 0.5
        y[...] = 0.25
    np.testing.assert_array_equal(cube, before)


# ----------------------------------------------------------------- ablation presets


def old_ablation_config(transform: str, prob: float | None = None) -> GenesisConfig:
    """The configs of the ablations before they became presets: ``GenesisConfig.only`` as it was,
    the other transforms off, the chosen one at ``prob`` (its reference probability if None; for
    the cutouts, the painting probability with in-painting always or never)."""
    base = GenesisConfig()
    off: dict[str, float] = dict(local_shuffle_prob=0.0, nonlinear_prob=0.0, paint_prob=0.0)
    if transform == "nonlinear":
        off["nonlinear_prob"] = base.nonlinear_prob if prob is None else prob
    elif transform == "local_shuffle":
        off["local_shuffle_prob"] = base.local_shuffle_prob if prob is None else prob
    elif transform in ("inner_cutout", "outer_cutout"):
        off["paint_prob"] = base.paint_prob if prob is None else prob
        off["inpaint_prob"] = 1.0 if transform == "inner_cutout" else 0.0
    return dataclasses.replace(base, **off)


OLD_ABLATIONS = {  # preset: the config its own module built before
    "genesis-nl": old_ablation_config("nonlinear", prob=1.0),
    "genesis-ls": old_ablation_config("local_shuffle", prob=1.0),
    "genesis-oc": old_ablation_config("outer_cutout", prob=1.0),
    "genesis-ic": old_ablation_config("inner_cutout", prob=1.0),
    "genesis-identity": old_ablation_config("identity"),
}


@pytest.mark.parametrize("name", sorted(OLD_ABLATIONS))
def test_each_ablation_preset_is_the_config_of_its_old_module(name):
    method = METHODS.create(name)
    assert type(method) is Genesis and METHODS.preset(name).cls is Genesis  # a preset, not a subclass
    assert method.name == name and method.config == OLD_ABLATIONS[name]
    assert method.settings() == {**dataclasses.asdict(OLD_ABLATIONS[name]), "loss": "mse"}


def test_a_user_setting_overrides_the_preset_and_keeps_the_rest():
    method = METHODS.create("genesis-nl", nonlinear_prob="0.5", n_windows=7)
    assert method.name == "genesis-nl"
    assert method.config == dataclasses.replace(OLD_ABLATIONS["genesis-nl"], nonlinear_prob=0.5, n_windows=7)


def test_config_validation():
    with pytest.raises(ValueError, match="paint_prob must be in"):
        GenesisConfig(paint_prob=1.5)
    with pytest.raises(ValueError, match="n_windows must be >= 0"):
        GenesisConfig(n_windows=-1)


# ------------------------------------------------------------------------ plugin


def test_genesis_plugin_registered_and_makes_examples():
    cls = METHODS.get("genesis")
    assert cls is Genesis and cls.transfers == "encoder+decoder"
    method = METHODS.create("genesis")
    cubes = np.random.default_rng(19).random((3, *SMALL), dtype=np.float32)
    inputs, targets = method.make_example(cubes, np.random.default_rng(20))
    for tensor in (inputs, targets):
        assert isinstance(tensor, torch.Tensor)
        assert tensor.shape == (3, *SMALL) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert method.config == GenesisConfig()
    assert method.settings() == {**dataclasses.asdict(GenesisConfig()), "loss": "mse"}
    again = method.make_example(cubes, np.random.default_rng(20))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], targets)
    loss = method.loss(inputs, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_genesis_settings_are_the_config_fields_with_the_reference_defaults():
    from benchmark.api.settings import defaults

    assert defaults(Genesis) == {**dataclasses.asdict(GenesisConfig()), "loss": "mse"}


def test_genesis_paper_optimizer():
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer, scheduler = Genesis().paper_optimizer([parameter])
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 1.0 and optimizer.defaults["momentum"] == 0.9
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert scheduler.factor == 0.5 and scheduler.patience == 10


# ------------------------------------------------------------------ the loop oracle


@pytest.mark.parametrize("shape, n_windows", [(SMALL, 300), (SMALL, 10_000), ((2, 6, 9, 12), 40)])
def test_loop_oracle_local_shuffling_matches_the_fast_one_exactly(shape, n_windows):
    cube = unique_cube(shape)
    fast = local_pixel_shuffling(cube, np.random.default_rng(21), n_windows=n_windows, window_divisor=3)
    loop = local_pixel_shuffling_loop(cube, np.random.default_rng(21), n_windows=n_windows, window_divisor=3)
    np.testing.assert_array_equal(fast, loop)
    assert not np.array_equal(fast, cube)


def test_loop_oracle_nonlinear_matches_the_fast_one_up_to_the_lookup_table():
    cube = np.random.default_rng(22).normal(0.5, 0.4, (1, 6, 10, 10)).astype(np.float32)
    steps = genesis.LOOKUP_SIZE - 1
    on_grid = np.rint(np.clip(cube, 0.0, 1.0) * steps) / steps  # the table point the fast map reads
    for seed in range(30):
        fast = nonlinear_intensity(cube, np.random.default_rng(seed))
        assert fast.dtype == np.float32 and fast.shape == cube.shape
        np.testing.assert_allclose(fast, nonlinear_intensity_loop(on_grid, np.random.default_rng(seed)), atol=1e-6)
        exact = nonlinear_intensity_loop(cube, np.random.default_rng(seed))
        assert np.abs(fast - exact).mean() < 1e-3


def test_loop_oracle_pipeline_matches_the_fast_one():
    cube = np.random.default_rng(23).random(SMALL, dtype=np.float32)
    config = GenesisConfig(n_windows=500)
    for seed in range(12):
        fast_x, fast_y = genesis_transform(cube, np.random.default_rng(seed), config)
        loop_x, loop_y = genesis_transform_loop(cube, np.random.default_rng(seed), config)
        np.testing.assert_array_equal(fast_y, loop_y)
        assert loop_x.dtype == np.float32 and loop_x.flags.c_contiguous
        assert np.abs(fast_x - loop_x).mean() < 1e-3  # the non-linear map's lookup table, nothing else
        assert np.mean(np.abs(fast_x - loop_x) > 1e-2) < 0.01


# ------------------------------------------------------- batched torch vs numpy


def flip_state(flipped: np.ndarray, cube: np.ndarray) -> int:
    """Which of the 8 combinations of spatial flips turns ``cube`` into ``flipped``."""
    states = [np.flip(cube, axes) if axes else cube
              for r in range(4) for axes in itertools.combinations((1, 2, 3), r)]
    return next(i for i, state in enumerate(states) if np.array_equal(flipped, state))


def same_distribution(a: np.ndarray, b: np.ndarray) -> bool:
    return stats.ks_2samp(a, b).pvalue > 1e-3


def test_batched_flip_has_the_cpu_flip_distribution():
    cube = unique_cube((1, 2, 3, 4))
    n = 2000
    cpu = [flip_state(flip(cube, cube, np.random.default_rng(seed))[0], cube) for seed in range(n)]
    batch = genesis_torch.flip_batch(torch.from_numpy(cube).expand(n, -1, -1, -1, -1), torch.Generator().manual_seed(0))
    device = [flip_state(x, cube) for x in batch.numpy()]
    table = np.array([np.bincount(cpu, minlength=8), np.bincount(device, minlength=8)])
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_batched_window_labels_are_the_last_window_painted():
    spatial = (6, 9, 12)
    starts, sizes = genesis_torch.draw_windows(spatial, 3, torch.Generator().manual_seed(1), torch.device("cpu"),
                                               n_windows=60, window_divisor=3)
    assert sizes.min() >= 1 and (sizes <= torch.tensor([2, 3, 4])).all()
    assert set(sizes[..., 2].unique().tolist()) == {1, 2, 3, 4}
    assert (starts >= 0).all() and (starts + sizes <= torch.tensor(spatial)).all()
    labels = genesis_torch.window_labels(spatial, starts, sizes)
    for b in range(3):
        expected = np.full(spatial, -1)
        for index, ((z, y, x), (sz, sy, sx)) in enumerate(zip(starts[b].tolist(), sizes[b].tolist())):
            expected[z:z + sz, y:y + sy, x:x + sx] = index
        np.testing.assert_array_equal(labels[b].numpy(), expected.ravel())


def test_batched_local_shuffling_permutes_within_last_window_like_the_cpu_one():
    cube = unique_cube((2, 6, 9, 12))
    cube[1] = cube[0] + 1.0
    n, spatial = 150, (6, 9, 12)
    generator = torch.Generator().manual_seed(2)
    replay = torch.Generator().manual_seed(2)
    out = genesis_torch.local_pixel_shuffling_batch(torch.from_numpy(cube).expand(n, -1, -1, -1, -1), generator,
                                                    n_windows=30, window_divisor=3).numpy()
    labels = genesis_torch.window_labels(spatial, *genesis_torch.draw_windows(
        spatial, n, replay, torch.device("cpu"), n_windows=30, window_divisor=3)).numpy()
    flat_in = cube[0].ravel()
    moved = []
    for b in range(n):
        np.testing.assert_array_equal(np.sort(out[b], axis=None), np.sort(cube, axis=None))
        np.testing.assert_array_equal(out[b, 1], out[b, 0] + 1.0)
        source = np.argsort(flat_in)[np.searchsorted(np.sort(flat_in), out[b, 0].ravel())]
        assert (labels[b][source] == labels[b]).all()
        np.testing.assert_array_equal(source[labels[b] < 0], np.flatnonzero(labels[b] < 0))
        moved.append(np.mean(source != np.arange(source.size)))
    cpu_moved = [np.mean(local_pixel_shuffling(cube, np.random.default_rng(seed), 30, 3)[0] != cube[0])
                 for seed in range(n)]
    assert same_distribution(np.array(moved), np.array(cpu_moved))


def test_batched_nonlinear_maps_have_the_cpu_distribution():
    n = 1000
    ramp = np.linspace(0.0, 1.0, 101, dtype=np.float32).reshape(1, 1, 1, -1)
    batch = genesis_torch.nonlinear_batch(torch.from_numpy(ramp).expand(n, -1, -1, -1, -1),
                                          torch.Generator().manual_seed(3)).numpy().reshape(n, -1)
    cpu = np.stack([nonlinear_intensity(ramp, np.random.default_rng(seed)).ravel() for seed in range(n)])
    steps = np.diff(batch, axis=1)
    increasing, decreasing = (steps >= 0).all(axis=1), (steps <= 0).all(axis=1)
    assert (increasing | decreasing).all() and batch.min() >= 0 and batch.max() <= 1
    np.testing.assert_array_equal(batch[increasing, 0], 0.0)
    np.testing.assert_array_equal(batch[decreasing & ~increasing, 0], 1.0)
    assert abs(decreasing.mean() - 0.5) < 5 * np.sqrt(0.25 / n)
    for column in (10, 25, 50, 75, 90):
        assert same_distribution(batch[:, column], cpu[:, column])


@pytest.mark.parametrize("kind", ["inner", "outer"])
def test_batched_cutout_boxes_have_the_cpu_distribution(kind):
    n, spatial, config = 2000, (16, 32, 32), GenesisConfig()
    ranges = genesis_torch.inner_box_ranges if kind == "inner" else genesis_torch.outer_box_ranges
    cpu_boxes = inner_cutout_boxes if kind == "inner" else outer_cutout_boxes
    starts, sizes, used = genesis_torch.draw_boxes(spatial, n, torch.Generator().manual_seed(4), torch.device("cpu"),
                                                   *ranges(spatial, config), config)
    cpu = [cpu_boxes(spatial, np.random.default_rng(seed)) for seed in range(n)]
    counts = np.array([np.bincount(used.sum(dim=1).numpy(), minlength=6),
                       np.bincount([len(s) for s, _ in cpu], minlength=6)])
    assert stats.chi2_contingency(counts[:, 1:]).pvalue > 1e-3
    cpu_starts = np.concatenate([s for s, _ in cpu])
    cpu_sizes = np.concatenate([z for _, z in cpu])
    for axis in range(3):
        first_sizes, first_starts = sizes[:, 0, axis].numpy(), starts[:, 0, axis].numpy()
        assert set(np.unique(first_sizes)) == set(np.unique(cpu_sizes[:, axis]))
        assert first_starts.min() == cpu_starts[:, axis].min()
        assert (first_starts + first_sizes).max() == (cpu_starts[:, axis] + cpu_sizes[:, axis]).max()
        assert same_distribution(first_sizes, cpu_sizes[:, axis])
        assert same_distribution(first_starts, cpu_starts[:, axis])


def outcome_counts(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per pair: 0 untouched, 1 changed with the corner voxel intact (in-painting: boxes keep a
    margin), 2 changed with the corner changed too (out-painting, or a global transform)."""
    outcome = [0 if np.array_equal(x, y) else 1 if x[0, 0, 0, 0] == y[0, 0, 0, 0] else 2 for x, y in pairs]
    return np.bincount(outcome, minlength=3)


@pytest.mark.parametrize("transform, expected", [("local_shuffle", [0.5, 0.5, 0.0]), ("nonlinear", [0.1, 0.0, 0.9]),
                                                 ("paint", [0.1, 0.18, 0.72])])
def test_batched_gates_have_the_cpu_probabilities(transform, expected):
    n, shape = 600, (1, 8, 16, 16)
    cube = unique_cube(shape, seed=25)
    config = dataclasses.replace(NOTHING, n_windows=50, **{f"{transform}_prob": getattr(GenesisConfig(),
                                                                                          f"{transform}_prob")})
    if transform == "local_shuffle":  # windows of more than one voxel on this small cube
        config = dataclasses.replace(config, window_divisor=4)
    inputs, targets = genesis_torch.genesis_batch(torch.from_numpy(cube).expand(n, -1, -1, -1, -1),
                                                  torch.Generator().manual_seed(6), config)
    device = outcome_counts(list(zip(inputs.numpy(), targets.numpy())))
    cpu = outcome_counts([genesis_transform(cube, np.random.default_rng(seed), config) for seed in range(n)])
    if transform == "local_shuffle":  # the corner may be shuffled too: only "changed" counts
        device, cpu, expected = (np.array([c[0], c[1] + c[2]]) for c in (device, cpu, np.array(expected)))
    used = np.array(expected) > 0
    for counts in (device, cpu):
        assert stats.chisquare(counts[used], n * np.array(expected)[used]).pvalue > 1e-3
    assert not counts[~used].any()


def test_batched_pipeline_has_the_cpu_pipeline_distribution():
    n, shape = 400, (1, 8, 16, 16)
    cube = np.random.default_rng(24).random(shape, dtype=np.float32)
    config = GenesisConfig(n_windows=50)
    inputs, targets = genesis_torch.genesis_batch(torch.from_numpy(cube).expand(n, -1, -1, -1, -1),
                                                  torch.Generator().manual_seed(5), config)
    assert inputs.shape == targets.shape == (n, *shape) and inputs.dtype == targets.dtype == torch.float32
    assert inputs.min() >= 0 and inputs.max() <= 1
    flips = all_spatial_flips(cube)
    assert all(any(np.array_equal(t, f) for f in flips) for t in targets.numpy()[:50])
    cpu = [genesis_transform(cube, np.random.default_rng(seed), config) for seed in range(n)]
    assert same_distribution(inputs.mean(dim=(1, 2, 3, 4)).numpy(), np.array([x.mean() for x, _ in cpu]))
    assert same_distribution(inputs.std(dim=(1, 2, 3, 4)).numpy(), np.array([x.std() for x, _ in cpu]))
