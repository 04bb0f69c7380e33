"""Method-specific behaviour of the baseline plugins and the Genesis ablations, and the restoration loss."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from benchmark.methods._tiles import _permutation_set, grid_cells, mean_hamming, permutation_set
from benchmark.methods.deepcluster import (
    DeepCluster,
    FeatureSpace,
    balanced_indices,
    cluster,
    fill_empty_clusters,
)
from benchmark.methods.denoising import add_noise
from benchmark.methods.genesis_transforms import GenesisConfig
from benchmark.methods.inpainting import Inpainting, loss_weights, mask_centre, mask_geometry
from benchmark.methods.jigsaw import Jigsaw
from benchmark.methods.patch_shuffling import boxes_overlap, patch_side_range, shuffle_patches
from benchmark.methods.rubiks_cube import RubiksCube, RubiksCubePlus, rotate, rubik_example
from helpers import unet
from sklearn.metrics import adjusted_rand_score

from benchmark.api.method import restoration_loss
from benchmark.api.profiles import PROFILES
from benchmark.api.registry import METHODS
from benchmark.errors import UserError
from benchmark.model.backbone import UNet3D

CPU = torch.device("cpu")
SMALL = (16, 32, 32)


def cell_valued_cube(shape=SMALL, grid=(2, 2, 2)) -> tuple[np.ndarray, np.ndarray]:
    """A (1, Z, Y, X) cube whose cells hold the distinct constants 0.1, 0.2, ...; and those values."""
    cube = np.zeros((1, *shape), dtype=np.float32)
    starts, sizes = grid_cells(shape, grid)
    values = (np.arange(len(starts)) + 1) / 10
    for value, (z, y, x), (sz, sy, sx) in zip(values, starts, sizes, strict=True):
        cube[0, z:z + sz, y:y + sy, x:x + sx] = value
    return cube, values.astype(np.float32)


def random_pool(n: int, seed: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    cubes = np.stack([gaussian_filter(rng.random(SMALL), 2.0) for _ in range(n)])[:, None]
    return ((cubes - cubes.min()) / (cubes.max() - cubes.min())).astype(np.float32)


# ------------------------------------------------------------------ permutation sets


def test_permutation_set_is_k_distinct_valid_permutations_quickly_and_deterministically():
    start = time.perf_counter()
    perms = _permutation_set.__wrapped__(8, 100, 0)  # uncached
    assert time.perf_counter() - start < 2.0
    assert perms.shape == (100, 8)
    assert (np.sort(perms, axis=1) == np.arange(8)).all()
    assert len({row.tobytes() for row in perms}) == 100
    assert np.array_equal(perms, _permutation_set.__wrapped__(8, 100, 0))
    assert not np.array_equal(perms, _permutation_set.__wrapped__(8, 100, 1))


def test_greedy_set_is_farther_apart_than_random_sets():
    chosen = mean_hamming(permutation_set(8, 100, 0))
    randoms = [mean_hamming(np.stack([np.random.default_rng([s, i]).permutation(8) for i in range(100)]))
               for s in range(20)]
    assert chosen > max(randoms)


def test_permutation_count_is_clipped_and_large_grids_use_random_distinct_permutations():
    assert Jigsaw(grid=(1, 1, 2)).n_permutations == 2
    assert len(permutation_set(3, 100, 0)) == 6
    big = permutation_set(27, 50, 0)
    assert big.shape == (50, 27) and (np.sort(big, axis=1) == np.arange(27)).all()
    assert len({row.tobytes() for row in big}) == 50


# ------------------------------------------------------------------ jigsaw


@pytest.mark.parametrize("shape", [SMALL, (32, 64, 64)])
def test_jigsaw_label_names_the_permutation_whose_inverse_restores_the_order(shape):
    method = Jigsaw()
    cube, values = cell_valued_cube(shape)
    inputs, labels = method.make_example(np.stack([cube] * 6), np.random.default_rng(0))
    assert inputs.shape == (6, 1, *shape) and labels.dtype == torch.int64
    starts, sizes = grid_cells(shape, (2, 2, 2))
    centres = starts + sizes // 2
    for x, label in zip(inputs.numpy(), labels.numpy(), strict=True):
        perm = method.permutations[label]
        slots = np.array([x[0, z, y, xx] for z, y, xx in centres])
        np.testing.assert_allclose(slots, values[perm])
        np.testing.assert_allclose(slots[np.argsort(perm)], values)  # the inverse restores the cells
        assert x[0, 0, 0, 0] == pytest.approx(cube.mean())  # a gap voxel holds the cube's mean


def test_jigsaw_transfers_exactly_the_unet_encoder_and_stores_its_permutations():
    method = Jigsaw()
    model = method.build_pretext_model(unet(), 1, 4)
    state = method.backbone_state(model)
    encoder = UNet3D(width=4).state_dict()
    expected = {k: v.shape for k, v in encoder.items() if k.startswith("encoder.")}
    assert {k: v.shape for k, v in state.items()} == expected
    extras = method.checkpoint_extras()
    assert torch.equal(extras["permutations"], torch.from_numpy(method.permutations.copy()))


# ------------------------------------------------------------------ rubik's cube


@pytest.mark.parametrize("cls", [RubiksCube, RubiksCubePlus])
def test_rubik_order_label_restores_the_sub_cube_order(cls):
    method = cls()
    cube, values = cell_valued_cube()
    inputs, targets = method.make_example(np.stack([cube] * 5), np.random.default_rng(3))
    assert inputs.shape == (5, 8, 1, 8, 16, 16)
    assert targets.shape == (5, 25 if cls is RubiksCubePlus else 17)
    for x, target in zip(inputs.numpy(), targets.numpy(), strict=True):
        perm = method.permutations[int(target[0])]
        slots = x.reshape(8, -1).max(axis=1)  # constant sub-cubes (masking only zeroes voxels)
        np.testing.assert_allclose(slots, values[perm], rtol=1e-6)
        np.testing.assert_allclose(slots[np.argsort(perm)], values, rtol=1e-6)


def test_rubik_rotation_and_mask_labels_match_what_was_applied():
    rng = np.random.default_rng(0)
    cube = rng.random((1, *SMALL)).astype(np.float32)
    starts, sizes = grid_cells(SMALL, (2, 2, 2))
    cells = [cube[:, z:z + sz, y:y + sy, x:x + sx]
             for (z, y, x), (sz, sy, sx) in zip(starts, sizes, strict=True)]
    perm = permutation_set(8, 100, 0)[17]
    flags = []
    for _ in range(40):  # gap 0: no jitter, no resampling, so each slot is a cell, rotated or not
        sub_cubes, labels = rubik_example(cube, perm, rng, gap_fraction=0.0, mask_prob=0.5)
        horizontal, vertical, masked = labels.reshape(3, 8).astype(bool)
        assert not (horizontal & vertical).any()
        for slot in range(8):
            expected = cells[perm[slot]]
            if horizontal[slot]:
                expected = rotate(expected, "horizontal")
            elif vertical[slot]:
                expected = rotate(expected, "vertical")
            got = sub_cubes[slot]
            if masked[slot]:
                kept = got != 0
                assert 0.3 < kept.mean() < 0.7
                np.testing.assert_array_equal(got[kept], expected[kept])
            else:
                np.testing.assert_array_equal(got, expected)
        flags.append(labels)
    rates = np.mean(flags, axis=0).reshape(3, 8).mean(axis=1)
    np.testing.assert_allclose(rates, [1 / 3, 1 / 3, 0.5], atol=0.08)


def test_rotations_are_180_degrees_about_z_and_y():
    sub = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    np.testing.assert_array_equal(rotate(sub, "horizontal"), sub[:, :, ::-1, ::-1])
    np.testing.assert_array_equal(rotate(sub, "vertical"), sub[:, ::-1, :, ::-1])


def test_plain_rubik_never_masks_and_the_paper_cube_fits_the_encoder():
    method = RubiksCube()
    cube = np.random.default_rng(0).random((2, 1, 32, 64, 64)).astype(np.float32)
    inputs, targets = method.make_example(cube, np.random.default_rng(0))
    assert inputs.shape == (2, 8, 1, 16, 24, 24) and targets.shape == (2, 17)
    assert method.mask_prob == 0.0 and RubiksCubePlus().mask_prob == 0.5
    model = method.build_pretext_model(unet(), 1, 4)
    with torch.no_grad():
        assert model(inputs).shape == (2, 100 + 16)
        assert float(method.loss(model(inputs), targets)) > 0


# ------------------------------------------------------------------ deepcluster


def test_empty_cluster_is_reseeded_from_a_perturbed_non_empty_one():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.1, (10, 2)), rng.normal(5, 0.1, (10, 2))])
    centroids = np.array([[0.0, 0.0], [5.0, 5.0], [100.0, 100.0]])
    labels = np.repeat([0, 1], 10)
    new_labels, new_centroids = fill_empty_clusters(points, labels, centroids, rng)
    sizes = np.bincount(new_labels, minlength=3)
    assert (sizes > 0).all() and sizes.sum() == 20
    donor = 0 if sizes[0] < 10 else 1
    assert set(np.flatnonzero(new_labels == 2)) <= set(np.flatnonzero(labels == donor))
    np.testing.assert_allclose(new_centroids[2], points[new_labels == 2].mean(axis=0))


def test_empty_clusters_are_filled_even_from_identical_points_and_never_from_singletons():
    points = np.ones((6, 3))
    one_cluster = np.zeros(6, dtype=np.int64)
    labels, _ = fill_empty_clusters(points, one_cluster, np.ones((3, 3)), np.random.default_rng(0))
    assert (np.bincount(labels, minlength=3) > 0).all()
    few, _ = fill_empty_clusters(points[:2], np.array([0, 1]), np.ones((3, 3)), np.random.default_rng(0))
    assert list(few) == [0, 1]  # no cluster has two members to give


def test_kmeans_leaves_no_cluster_empty():
    points = np.random.default_rng(0).normal(size=(50, 4))
    labels, centroids = cluster(points, 7, np.random.default_rng(1))
    assert centroids.shape == (7, 4) and (np.bincount(labels, minlength=7) > 0).all()


def test_sampling_is_uniform_over_non_empty_clusters():
    labels = np.concatenate([np.full(1, 0), np.full(10, 1), np.full(100, 3)])  # cluster 2 empty
    picks = labels[balanced_indices(labels, 6000, np.random.default_rng(0))]
    counts = np.bincount(picks, minlength=4)
    assert counts[2] == 0
    np.testing.assert_allclose(counts[[0, 1, 3]], 2000, rtol=0.1)


def test_default_k_and_feature_space():
    method = DeepCluster()
    assert [method.clusters_for(n) for n in (12, 3000, 100_000)] == [2, 100, 1000]
    assert DeepCluster(n_clusters=10).clusters_for(5) == 5
    features = np.random.default_rng(0).normal(size=(20, 64))
    projected = FeatureSpace.fit(features).project(features)
    assert projected.shape == (20, 19)
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0)


def _clustered(method: DeepCluster, pool: np.ndarray, seed: int) -> tuple[torch.nn.Module, np.ndarray]:
    torch.manual_seed(seed)
    model = method.build_pretext_model(unet(), 1, 4)
    method.init_weights(model)
    method.on_epoch_start(model, pool, np.random.default_rng(seed), CPU)
    return model, method.labels_for(pool).copy()


def test_pseudo_labels_follow_the_features_and_validation_uses_the_clustering_snapshot():
    pool = random_pool(24, 0)
    method = DeepCluster(n_clusters=4)
    with pytest.raises(RuntimeError, match="on_epoch_start"):
        method.sample_batch(pool, 2, np.random.default_rng(0))
    model, first = _clustered(method, pool, 0)
    assert set(np.unique(first)) == {0, 1, 2, 3}
    with torch.no_grad():  # the live model moves on: the epoch's labels must not
        for parameter in model.encoder.parameters():
            parameter.add_(torch.randn_like(parameter))
    np.testing.assert_array_equal(method.labels_for(pool.copy()), first)  # a "validation" pool, lazily
    _, second = _clustered(method, pool, 1)
    assert adjusted_rand_score(first, second) < 1.0  # new features, new partition
    inputs, labels = method.sample_batch(pool[:10], 4, np.random.default_rng(0))
    assert inputs.shape == (4, 1, *SMALL) and labels.dtype == torch.int64 and int(labels.max()) < 4


def test_head_is_reinitialised_in_place_and_its_optimiser_state_dropped():
    pool = random_pool(12, 1)
    method = DeepCluster()
    model, _ = _clustered(method, pool, 0)
    optimizer, _ = method.make_optimizer(model.parameters(), PROFILES["smoke"])
    inputs, labels = method.sample_batch(pool, 4, np.random.default_rng(0))
    method.loss(model(inputs), labels).backward()
    optimizer.step()
    head = list(model.head.parameters())
    before = [p.detach().clone() for p in head]
    assert all(p in optimizer.state for p in head)
    method.on_epoch_start(model, pool, np.random.default_rng(5), CPU)
    assert [id(p) for p in model.head.parameters()] == [id(p) for p in head]
    assert not torch.equal(before[0], head[0]) and not head[1].any()  # he_uniform weights, zero bias
    assert all(p not in optimizer.state for p in head)
    assert all(p in optimizer.state for p in model.encoder.parameters())
    assert method.loss(torch.zeros(2, method.head_size), torch.tensor([0, 1])) == pytest.approx(np.log(2))


# ------------------------------------------------------------------ inpainting


def test_inpainting_masks_the_central_half_box_with_an_overlap_border():
    box, hidden = mask_geometry(SMALL)
    assert box == (slice(4, 12), slice(8, 24), slice(8, 24))
    assert hidden == (slice(5, 11), slice(10, 22), slice(10, 22))  # overlap (1, 2, 2)
    box, hidden = mask_geometry((32, 64, 64))
    assert box == (slice(8, 24), slice(16, 48), slice(16, 48))
    assert hidden == (slice(10, 22), slice(20, 44), slice(20, 44))  # overlap (2, 4, 4)


def test_inpainting_fills_the_hidden_part_with_the_mean_and_keeps_the_rest():
    cube = np.random.default_rng(0).random((1, *SMALL)).astype(np.float32)
    masked = mask_centre(cube)
    _, hidden = mask_geometry(SMALL)
    region = (slice(None), *hidden)
    np.testing.assert_allclose(masked[region], cube.mean(), rtol=1e-6)
    outside = np.ones(SMALL, dtype=bool)
    outside[hidden] = False
    np.testing.assert_array_equal(masked[:, outside], cube[:, outside])


def test_inpainting_loss_weights_the_border_ten_times_and_ignores_the_outside():
    weights = loss_weights(SMALL)
    box, hidden = mask_geometry(SMALL)
    inside_box = np.zeros(SMALL, dtype=bool)
    inside_box[box] = True
    assert (weights[~inside_box] == 0).all() and (weights[hidden] == 1).all()
    border = inside_box.copy()
    border[hidden] = False
    assert (weights[border] == 10).all()
    method = Inpainting()
    target = torch.full((1, 1, *SMALL), 0.5)
    wrong_outside = torch.full((1, 1, *SMALL), 5.0)
    wrong_outside[(0, 0, *box)] = 0.0  # sigmoid(0) = 0.5: exact inside the box
    assert float(method.loss(wrong_outside, target)) == 0.0
    wrong_hidden = torch.zeros(1, 1, *SMALL)
    wrong_hidden[(0, 0, *hidden)] = 5.0
    expected = (torch.sigmoid(torch.tensor(5.0)) - 0.5) ** 2 * weights[hidden].sum() / weights.sum()
    assert float(method.loss(wrong_hidden, target)) == pytest.approx(float(expected), rel=1e-5)


def test_inpainting_adversarial_term_is_off_by_default_and_trains_both_players_when_on():
    assert Inpainting().settings()["adversarial"] is False
    method = Inpainting(adversarial=True)
    model = method.build_pretext_model(unet(), 1, 4)
    method.init_weights(model)
    inputs, targets = method.make_example(random_pool(2, 3), np.random.default_rng(0))
    loss = method.loss(model(inputs), targets)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.discriminator.out.weight.grad.abs().sum() > 0
    assert model.encoder.down_tr64.ops[0].conv1.weight.grad.abs().sum() > 0
    assert not any(k.startswith("discriminator") for k in method.backbone_state(model))


# ------------------------------------------------------------------ patch shuffling


def test_patch_pairs_are_disjoint_same_size_and_the_result_a_permutation():
    cube = np.arange(np.prod(SMALL), dtype=np.float32).reshape(1, *SMALL)  # every value distinct
    low, high = patch_side_range(SMALL, (1 / 8, 1 / 4))
    assert list(low) == [2, 4, 4] and list(high) == [4, 8, 8]
    for seed in range(5):
        shuffled, pairs = shuffle_patches(cube, np.random.default_rng(seed))
        assert 10 <= len(pairs) <= 20
        for a, b, size in pairs:
            assert not boxes_overlap(a, b, size)
            assert (low <= size).all() and (size <= high).all()
        np.testing.assert_array_equal(np.sort(shuffled.ravel()), cube.ravel())  # histogram preserved
        assert not np.array_equal(shuffled, cube)
        replay = cube.copy()
        for a, b, size in pairs:
            sa = (slice(None), *(slice(s, s + n) for s, n in zip(a, size, strict=True)))
            sb = (slice(None), *(slice(s, s + n) for s, n in zip(b, size, strict=True)))
            replay[sa], replay[sb] = replay[sb].copy(), replay[sa].copy()
        np.testing.assert_array_equal(replay, shuffled)


def test_boxes_overlap():
    assert boxes_overlap(np.array([0, 0, 0]), np.array([1, 1, 1]), np.array([2, 2, 2]))
    assert not boxes_overlap(np.array([0, 0, 0]), np.array([2, 0, 0]), np.array([2, 2, 2]))


# ------------------------------------------------------------------ denoising


def test_denoising_sigma_range_and_clipping():
    rng = np.random.default_rng(0)
    grey = np.full((1, *SMALL), 0.5, dtype=np.float32)
    sigmas = []
    for _ in range(200):
        noisy, sigma = add_noise(grey, rng)
        assert 0.0 <= sigma <= 0.1
        assert float(np.std(noisy - grey)) == pytest.approx(sigma, rel=0.05, abs=1e-3)
        sigmas.append(sigma)
    assert min(sigmas) < 0.01 and max(sigmas) > 0.09
    black, _ = add_noise(np.zeros((1, *SMALL), dtype=np.float32), np.random.default_rng(1), max_sigma=0.1)
    assert black.min() == 0.0 and black.max() <= 1.0 and (black == 0).mean() > 0.4
    inputs, targets = METHODS.create("denoising").make_example(grey[None], rng)
    assert torch.equal(targets, torch.from_numpy(grey[None]))


# ------------------------------------------------------------------ genesis ablations


ABLATION_FLAGS = {  # name: (local shuffle, non-linear, paint, in-paint share)
    "genesis-nl": (0.0, 1.0, 0.0, None),
    "genesis-ls": (1.0, 0.0, 0.0, None),
    "genesis-oc": (0.0, 0.0, 1.0, 0.0),
    "genesis-ic": (0.0, 0.0, 1.0, 1.0),
    "genesis-identity": (0.0, 0.0, 0.0, None),
}


@pytest.mark.parametrize("name", sorted(ABLATION_FLAGS))
def test_each_ablation_enables_only_its_transform_always(name):
    config = METHODS.create(name).config
    local, nonlinear, paint, inpaint = ABLATION_FLAGS[name]
    assert (config.local_shuffle_prob, config.nonlinear_prob, config.paint_prob) == (local, nonlinear, paint)
    if inpaint is not None:
        assert config.inpaint_prob == inpaint
    reference = GenesisConfig()
    assert (config.flip_prob, config.max_flips) == (reference.flip_prob, reference.max_flips)
    assert METHODS.create(name).transfers == "encoder+decoder"


def test_identity_ablation_input_is_its_target():
    method = METHODS.create("genesis-identity")
    inputs, targets = method.make_example(random_pool(2, 0), np.random.default_rng(0))
    assert torch.equal(inputs, targets)


# ------------------------------------------------------------------ restoration loss


def test_restoration_loss_is_the_mean_squared_or_absolute_error_of_the_sigmoid():
    output, target = torch.tensor([[0.0, 2.0, -1.0]]), torch.tensor([[0.5, 0.2, 0.9]])
    error = torch.sigmoid(output) - target
    assert float(restoration_loss(output, target)) == pytest.approx(float(error.square().mean()))
    assert float(restoration_loss(output, target, "mae")) == pytest.approx(float(error.abs().mean()))
    weights = torch.tensor([1.0, 0.0, 3.0])  # broadcast to the target
    expected = (abs(error[0, 0]) + 3 * abs(error[0, 2])) / 4
    assert float(restoration_loss(output, target, "mae", weights)) == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="loss must be one of mse, mae, ssim, got 'huber'"):
        restoration_loss(output, target, "huber")


RESTORATION = sorted(name for name in METHODS.names() if "loss" in METHODS.defaults(name))


def test_the_restoration_methods_have_the_loss_setting():
    assert {"genesis", "genesis-nl", "denoising", "patch-shuffling", "inpainting"} <= set(RESTORATION)
    assert not {"jigsaw", "deepcluster", "scratch-he"} & set(RESTORATION)


@pytest.mark.parametrize("name", RESTORATION)
def test_each_restoration_method_trains_the_loss_its_setting_names(name):
    generator = torch.Generator().manual_seed(0)
    output, target = torch.randn(2, 1, *SMALL, generator=generator), torch.rand(2, 1, *SMALL, generator=generator)
    weights = torch.from_numpy(loss_weights(SMALL)) if name == "inpainting" else None  # its box only
    for loss in ("mse", "mae"):
        method = METHODS.create(name, loss=loss)
        assert method.settings()["loss"] == loss
        assert float(method.loss(output, target)) == pytest.approx(float(restoration_loss(output, target, loss,
                                                                                          weights)))
    with pytest.raises(UserError, match="loss must be one of mse, mae"):
        METHODS.create(name, loss="l1")
