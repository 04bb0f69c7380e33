"""The Models Genesis transforms as plain loops: the test oracle and the speed baseline.

Written from the paper's description, one window or one voxel at a time, the way the
reference code is written (a Python loop over the shuffling windows), with no trick:

* local pixel shuffling paints each window's index over the cube in order (later windows
  overwrite earlier ones), then walks the windows and shuffles the values of the voxels
  each one kept (Fisher–Yates);
* the non-linear map evaluates the sampled Bézier curve voxel by voxel (binary search
  for the segment, then linear interpolation).

Each function consumes exactly the random draws of its fast counterpart in
``benchmark.methods.genesis_transforms``, in the same order, so the two agree draw for draw: exactly for
local shuffling and the pipeline's geometry, and to float rounding for the non-linear
map (the fast one reads a fine lookup table). Flip and the cutouts are array
slices in both: there is nothing to loop over, so the pipeline reuses them.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
from benchmark.methods.genesis_transforms import GenesisConfig, bezier_map, shuffle_windows, transform_pipeline

__all__ = ["LOOPS", "genesis_transform_loop", "local_pixel_shuffling_loop", "nonlinear_intensity_loop"]


def local_pixel_shuffling_loop(
    cube: np.ndarray, rng: np.random.Generator, n_windows: int = 10_000, window_divisor: int = 10
) -> np.ndarray:
    """Local pixel shuffling of a ``(C, Z, Y, X)`` cube, window by window.

    Same draws as ``benchmark.methods.genesis_transforms.local_pixel_shuffling``: the windows, then one uniform
    per covered voxel. Each window's kept voxels, in C order, are shuffled by
    ``fisher_yates`` with the next of those draws, windows in order.
    """
    cube = np.asarray(cube)
    spatial = cube.shape[1:]
    starts, sizes = shuffle_windows(spatial, rng, n_windows, window_divisor)
    label = np.full(spatial, -1, dtype=np.int64)
    for index, ((z, y, x), (sz, sy, sx)) in enumerate(zip(starts, sizes)):
        label[z:z + sz, y:y + sy, x:x + sx] = index
    draws = rng.random(int((label >= 0).sum())).tolist()
    taken = 0
    out = cube.copy()
    for index, ((z, y, x), (sz, sy, sx)) in enumerate(zip(starts, sizes)):
        box = (slice(z, z + sz), slice(y, y + sy), slice(x, x + sx))
        kept = label[box] == index
        if kept.any():
            values = cube[(slice(None), *box)][:, kept]
            count = values.shape[1]
            out[(slice(None), *box)][:, kept] = values[:, fisher_yates(draws[taken:taken + count])]
            taken += count
    return out


def fisher_yates(draws: list[float]) -> list[int]:
    """The order of ``range(len(draws))`` after a Fisher–Yates shuffle: for ``i`` from the
    last position down to 1, swap ``i`` with ``floor(draws[i] * (i + 1))``."""
    order = list(range(len(draws)))
    for i in range(len(order) - 1, 0, -1):
        j = int(draws[i] * (i + 1))  # < i + 1: draws are below 1
        order[i], order[j] = order[j], order[i]
    return order


def nonlinear_intensity_loop(
    cube: np.ndarray, rng: np.random.Generator, invert_prob: float = 0.5, n_points: int = 1000
) -> np.ndarray:
    """The non-linear intensity map, voxel by voxel: same draw as ``nonlinear_intensity``
    (``bezier_map``), values clamped to [0, 1] then mapped through the sampled curve."""
    xs, ys, _ = bezier_map(rng, invert_prob, n_points)
    xs_list, ys_list = xs.tolist(), ys.tolist()
    last = len(xs_list) - 1
    values = np.asarray(cube, dtype=np.float64).ravel().tolist()
    mapped = []
    for value in values:
        if value <= xs_list[0]:
            mapped.append(ys_list[0])
            continue
        if value >= xs_list[last]:
            mapped.append(ys_list[last])
            continue
        right = bisect.bisect_right(xs_list, value)
        x0, x1, y0, y1 = xs_list[right - 1], xs_list[right], ys_list[right - 1], ys_list[right]
        mapped.append(y0 if x1 == x0 else y0 + (y1 - y0) * (value - x0) / (x1 - x0))
    return np.array(mapped, dtype=np.float32).reshape(np.shape(cube))


def genesis_transform_loop(
    cube: np.ndarray, rng: np.random.Generator, config: GenesisConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``benchmark.methods.genesis_transforms.genesis_transform`` with the loop versions of local
    shuffling and the non-linear map: the same gates, draws and order (default config: the reference's)."""
    config = GenesisConfig() if config is None else config
    return transform_pipeline(cube, rng, config, local_pixel_shuffling_loop, nonlinear_intensity_loop)


def _local_shuffling(method: Any, cube: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return local_pixel_shuffling_loop(cube, rng, method.config.n_windows, method.config.window_divisor)


def _nonlinear(method: Any, cube: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return nonlinear_intensity_loop(cube, rng, method.config.invert_prob, method.config.bezier_points)


def _pipeline(method: Any, cube: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return genesis_transform_loop(cube, rng, method.config)


# the loop version of each corruption Genesis declares (``Genesis.speed_corruptions``), called
# ``f(method, cube, rng)`` with the method's own config
LOOPS = {
    ("genesis", "local pixel shuffling"): _local_shuffling,
    ("genesis", "non-linear intensity"): _nonlinear,
    ("genesis", "pipeline"): _pipeline,
}
