"""The Models Genesis corruptions on one 2D image ``(C, Y, X)``: Genesis 2D (Zhou et al., Medical Image
Analysis 2021, Genesis Chest CT 2D: the same restoration task on axial slices of chest CT).

The four transforms and their rules are the 3D ones (``genesis_transforms``, ``GenesisConfig``), each
size rule applied to the two axes (Y, X) instead of three: flips along Y or X; shuffling windows are
rectangles of side ``randint(1, dim // 10)`` per axis; in-painting boxes of side ``randint(dim // 6,
dim // 3)`` and out-painting boxes of side ``dim - randint(3 * dim // 7, 4 * dim // 7)`` per axis, each
``margin`` pixels in from the border; the non-linear map acts on each pixel alone.

How (the fact this module relies on): an image ``(C, Y, X)`` is the one-slice cube ``(C, 1, Y, X)``,
and every size rule of the 3D transforms is per axis, clipped to the axis: on an axis of length 1 a
shuffling window has side ``max(1, 1 // 10) = 1`` at position 0, and a box's margin shrinks to 0 and
its side is clipped to 1. So the 3D local shuffling, non-linear map, cutouts and gates, run on the
one-slice cube, are exactly the 2D transforms of the image, with every property of the 3D ones (local
shuffling an exact permutation within each last-covering window, the histogram kept): the 2D transforms
reuse them, and nothing about the corruptions is written twice. The one exception is the flip: on the
one-slice cube it would pick the length-1 axis (a no-op) a third of the time, so ``flip_2d`` is the
flip applied to the image itself, where it picks among Y and X (the spatial axes of its input).
The draws per transform are the 3D ones on the one-slice cube (the Z coordinates of windows and boxes
are drawn, always 0, and ignored): reproducible from the generator, not draw for draw a 2D-only code's.

Choice: the number of shuffling windows stays the reference's 10,000 (setting ``n_windows``), as every
other setting: the papers give no 2D value. Measured: on a 32 x 32 or 64 x 64 slice they cover every
pixel, where on the 3D cubes they cover about 90% (16 x 32 x 32) and 82% (32 x 64 x 64) of the voxels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from benchmark.methods.genesis_transforms import (
    GenesisConfig,
    flip,
    inner_cutout,
    inner_cutout_boxes,
    local_pixel_shuffling,
    nonlinear_intensity,
    outer_cutout,
    outer_cutout_boxes,
    shuffle_windows,
    transform_pipeline,
)

__all__ = [
    "flip_2d",
    "genesis_transform_2d",
    "inner_cutout_2d",
    "inner_cutout_boxes_2d",
    "local_pixel_shuffling_2d",
    "outer_cutout_2d",
    "outer_cutout_boxes_2d",
    "shuffle_windows_2d",
]

Shape2 = tuple[int, int]
REFERENCE = GenesisConfig()  # the reference code's probabilities and sizes


def _checked_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected an image (C, Y, X), got shape {image.shape}")
    return image


def _as_slice_cube(image: np.ndarray) -> np.ndarray:
    """The image ``(C, Y, X)`` as the one-slice cube ``(C, 1, Y, X)`` (a view)."""
    return _checked_image(image)[:, None]


def _slice_shape(spatial_shape: Shape2) -> tuple[int, int, int]:
    y, x = spatial_shape
    return 1, int(y), int(x)


flip_2d = flip  # the 3D flip chooses among the spatial axes of its input: Y and X for an image


def shuffle_windows_2d(
    spatial_shape: Shape2, rng: np.random.Generator, n_windows: int = 10_000, window_divisor: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """The local-shuffling rectangles ``(starts, sizes)``, each ``(n_windows, 2)`` int64 in (Y, X) order:
    side per axis ``randint(1, dim // window_divisor)`` inclusive (at least 1, at most ``dim``), fully
    inside the image, position uniform. The windows ``local_pixel_shuffling_2d`` draws first."""
    starts, sizes = shuffle_windows(_slice_shape(spatial_shape), rng, n_windows, window_divisor)
    return starts[:, 1:], sizes[:, 1:]


def local_pixel_shuffling_2d(
    image: np.ndarray, rng: np.random.Generator, n_windows: int = 10_000, window_divisor: int = 10
) -> np.ndarray:
    """Shuffle pixels within ``n_windows`` small random rectangles (``shuffle_windows_2d``) of a
    ``(C, Y, X)`` image: each pixel is labelled by the last window covering it and the values are
    permuted within each label's pixel set (an exact permutation, uniform within each set; pixels
    outside every window stay put; all channels move together). Returns a new array."""
    return local_pixel_shuffling(_as_slice_cube(image), rng, n_windows, window_divisor)[:, 0]


def inner_cutout_boxes_2d(
    spatial_shape: Shape2, rng: np.random.Generator, max_boxes: int = 5, more_prob: float = 0.95,
    side_divisors: tuple[int, int] = (6, 3), margin: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """In-painting rectangles ``(starts, sizes)``, each ``(count, 2)`` in (Y, X) order: 1 to ``max_boxes``
    of them, side per axis ``randint(dim // 6, dim // 3)`` inclusive, origin in ``[margin, dim - side -
    margin]`` (clipped on small images as in 3D). The boxes ``inner_cutout_2d`` draws first."""
    starts, sizes = inner_cutout_boxes(_slice_shape(spatial_shape), rng, max_boxes, more_prob, side_divisors,
                                       margin)
    return starts[:, 1:], sizes[:, 1:]


def outer_cutout_boxes_2d(
    spatial_shape: Shape2, rng: np.random.Generator, max_boxes: int = 5, more_prob: float = 0.95,
    cut_low: tuple[int, int] = (3, 7), cut_high: tuple[int, int] = (4, 7), margin: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-painting rectangles ``(starts, sizes)``, each ``(count, 2)``: side per axis ``dim -
    randint(3*dim//7, 4*dim//7)``, origin in ``[margin, dim - side - margin]``. Drawn first by
    ``outer_cutout_2d``."""
    starts, sizes = outer_cutout_boxes(_slice_shape(spatial_shape), rng, max_boxes, more_prob, cut_low, cut_high,
                                       margin)
    return starts[:, 1:], sizes[:, 1:]


def inner_cutout_2d(
    image: np.ndarray, rng: np.random.Generator, max_boxes: int = 5, more_prob: float = 0.95,
    side_divisors: tuple[int, int] = (6, 3), margin: int = 3,
) -> np.ndarray:
    """In-painting: the rectangles of ``inner_cutout_boxes_2d`` filled with uniform noise in [0, 1)
    (independent per channel), the rest unchanged. Returns a new float32 array."""
    return inner_cutout(_as_slice_cube(image), rng, max_boxes, more_prob, side_divisors, margin)[:, 0]


def outer_cutout_2d(
    image: np.ndarray, rng: np.random.Generator, max_boxes: int = 5, more_prob: float = 0.95,
    cut_low: tuple[int, int] = (3, 7), cut_high: tuple[int, int] = (4, 7), margin: int = 3,
) -> np.ndarray:
    """Out-painting: uniform noise in [0, 1) everywhere but the rectangles of ``outer_cutout_boxes_2d``,
    which keep the original. Returns a new float32 array."""
    return outer_cutout(_as_slice_cube(image), rng, max_boxes, more_prob, cut_low, cut_high, margin)[:, 0]


def genesis_transform_2d(
    image: np.ndarray, rng: np.random.Generator, config: GenesisConfig = REFERENCE
) -> tuple[np.ndarray, np.ndarray]:
    """One Genesis 2D training pair ``(input, target)`` from a ``(C, Y, X)`` image in [0, 1].

    ``flip_2d`` (input and target), then the 3D pipeline's gates in its order on the one-slice cube:
    local shuffling (p), non-linear map (p), painting (p: in-painting with ``inpaint_prob``, else
    out-painting); every probability and size from ``config``. The target is the image after the flip
    only. Both are new C-contiguous float32 arrays; the caller's array is not modified.
    """
    c = config
    image = _checked_image(image)
    _, flipped = flip_2d(image, image, rng, c.flip_prob, c.max_flips)
    unflipped = dataclasses.replace(c, max_flips=0)  # flipped already, along Y or X: no draw for the Z-aware flip
    x, target = transform_pipeline(flipped[:, None], rng, unflipped, local_pixel_shuffling, nonlinear_intensity)
    return x[:, 0], target[:, 0]
