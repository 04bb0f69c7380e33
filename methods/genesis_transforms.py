"""The Models Genesis corruptions on one cube (numpy, with numba for local pixel shuffling).

``GenesisConfig`` holds every probability and size; ``genesis_transform`` turns a cube into a
training pair: flip (input and target) -> local pixel shuffling -> non-linear intensity map ->
in- or out-painting. The method (``benchmark.methods.genesis``) documents where these depart
from the reference code; ``genesis_torch`` is the batched version for the training device, and
the repository's ``tests/oracles/genesis_loop.py`` the plain-loop oracle of the tests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

__all__ = [
    "GenesisConfig",
    "bezier_map",
    "bezier_table",
    "cutout_count",
    "flip",
    "genesis_transform",
    "inner_cutout",
    "inner_cutout_boxes",
    "last_window_labels",
    "local_pixel_shuffling",
    "lookup",
    "nonlinear_intensity",
    "outer_cutout",
    "outer_cutout_boxes",
    "shuffle_windows",
    "transform_pipeline",
]

Shape3 = tuple[int, int, int]

# points of the non-linear map's lookup table: 2**14 steps
LOOKUP_SIZE = 2**14 + 1


@dataclass(frozen=True)
class GenesisConfig:
    """Every probability and size of the Genesis transforms (defaults: the reference code).

    A probability of 0 disables a transform. Flip is an augmentation applied to input
    and target alike (the ablations keep it on).
    """

    # flip: up to ``max_flips`` flips, each while rand < flip_prob
    flip_prob: float = 0.4
    max_flips: int = 3
    # local pixel shuffling: window side per axis randint(1, dim // window_divisor), inclusive
    local_shuffle_prob: float = 0.5
    n_windows: int = 10_000
    window_divisor: int = 10
    # non-linear intensity: cubic Bézier sampled at bezier_points points; inverted with invert_prob
    nonlinear_prob: float = 0.9
    invert_prob: float = 0.5
    bezier_points: int = 1000
    # painting with paint_prob; then inner cutout with inpaint_prob, else outer cutout
    paint_prob: float = 0.9
    inpaint_prob: float = 0.2
    # boxes: the first always, each further one (up to max_boxes) while rand < more_box_prob
    max_boxes: int = 5
    more_box_prob: float = 0.95
    margin: int = 3
    # inner box side per axis randint(dim // a, dim // b) with (a, b) = inner_side_divisors
    inner_side_divisors: tuple[int, int] = (6, 3)
    # outer box side per axis dim - randint(dim * n1 // d1, dim * n2 // d2),
    # (n1, d1) = outer_cut_low, (n2, d2) = outer_cut_high
    outer_cut_low: tuple[int, int] = (3, 7)
    outer_cut_high: tuple[int, int] = (4, 7)

    def __post_init__(self) -> None:
        for field in ("flip_prob", "local_shuffle_prob", "nonlinear_prob", "invert_prob",
                      "paint_prob", "inpaint_prob", "more_box_prob"):
            value = getattr(self, field)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{field} must be in [0, 1], got {value}")
        for field in ("max_flips", "n_windows", "margin"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        if self.window_divisor < 1 or self.max_boxes < 1 or self.bezier_points < 2:
            raise ValueError("window_divisor and max_boxes must be >= 1, bezier_points >= 2")
        if min(self.inner_side_divisors) < 1 or self.outer_cut_low[1] < 1 or self.outer_cut_high[1] < 1:
            raise ValueError("inner_side_divisors, and the denominators of outer_cut_low and outer_cut_high, "
                             "must be >= 1")


# --------------------------------------------------------------------------- flip


def flip(
    input: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    prob: float = 0.4,
    max_flips: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``input`` and ``target`` (each ``(C, Z, Y, X)``, or ``(C, Y, X)`` for Genesis 2D) identically,
    up to ``max_flips`` times while ``rng.random() < prob``, each time along a uniformly chosen spatial
    axis.

    The reference code chooses among axes 0-2 of a ``(C, rows, cols, depth)`` array, so it
    sometimes "flips" the channel axis and never the depth axis (a bug); here only the
    spatial axes 1-3 are flipped. Returns views (``np.flip``); copy before writing.
    """
    flips = 0
    while flips < max_flips and rng.random() < prob:
        axis = int(rng.integers(1, input.ndim))
        input = np.flip(input, axis=axis)
        target = np.flip(target, axis=axis)
        flips += 1
    return input, target


# ------------------------------------------------------------- local pixel shuffling


def shuffle_windows(
    spatial_shape: Shape3, rng: np.random.Generator, n_windows: int = 10_000, window_divisor: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the local-shuffling windows: ``(starts, sizes)``, each ``(n_windows, 3)`` int64 in
    (Z, Y, X) order. Side per axis ``randint(1, dim // window_divisor)`` inclusive, at least 1
    (so axes shorter than ``window_divisor`` get side 1) and at most ``dim``; the window
    lies fully inside the cube, its position uniform. Integers uniform in ``[0, k)`` are drawn
    as ``floor(u * k)`` of uniform doubles (one call for all: several times faster than
    ``Generator.integers`` with per-element bounds; uniform up to k / 2**53).

    The arrays are transposed views of ``(3, n_windows)`` ones (each axis contiguous): numpy
    runs the arithmetic faster on those than on rows of three.
    """
    shape = np.asarray(spatial_shape, dtype=np.int64)
    high = np.clip(shape // window_divisor, 1, shape)
    u = rng.random((2, n_windows, 3)).transpose(0, 2, 1)  # the same draws, viewed (2, axis, window)
    starts, sizes = np.empty((2, 3, n_windows), dtype=np.int64)
    np.multiply(u[0], high[:, None], out=sizes, casting="unsafe")  # the unsafe cast truncates: floor
    sizes += 1
    np.multiply(u[1], shape[:, None] - sizes + 1, out=starts, casting="unsafe")
    return starts.T, sizes.T


def last_window_labels(
    spatial_shape: Shape3, starts: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each voxel covered by at least one window, the index of the last window covering it.

    Returns ``(voxels, labels)``: flat (C-order) voxel indices into the spatial volume,
    ascending, and the window index for each.
    """
    label = _label_volume(spatial_shape, starts, sizes)
    covered = np.flatnonzero(label >= 0)
    return covered, label[covered]


def local_pixel_shuffling(
    cube: np.ndarray, rng: np.random.Generator, n_windows: int = 10_000, window_divisor: int = 10
) -> np.ndarray:
    """Shuffle voxels within ``n_windows`` small random windows of a ``(C, Z, Y, X)`` cube.

    Draws: the windows (``shuffle_windows``), then one uniform per covered voxel, taken
    window by window in window order, each window's voxels in C order.

    Departure from the reference code, by design: the reference copies each window from
    the original cube, shuffled, later windows overwriting earlier ones, which duplicates
    and drops values where windows overlap. Here each voxel is labelled by the last window
    that covers it and the original values are permuted within each label's voxel set: an
    exact permutation (histogram preserved), every voxel's value comes from inside the
    window that last covers it, voxels outside all windows are unchanged. A window's
    voxels (in C order) are permuted by a Fisher–Yates shuffle: for position ``i`` from the
    last down to 1, swap with position ``floor(u * (i + 1))``, ``u`` the window's ``i``-th
    draw (uniform up to ``(i + 1) / 2**53``). All channels share the windows and the
    permutation (a voxel moves with all its channels). Returns a new array.

    It runs as compiled loops (numba): a window-by-window algorithm has no fast numpy
    form (the best numpy version, a global shuffle and two radix sorts, took about twice
    as long).
    """
    cube = np.asarray(cube)
    spatial = cube.shape[1:]
    starts, sizes = shuffle_windows(spatial, rng, n_windows, window_divisor)
    voxels, bounds = _voxels_by_window(_label_volume(spatial, starts, sizes), len(starts))
    shuffled = _shuffle_each_window(voxels, bounds, rng.random(len(voxels)))
    flat = cube.reshape(cube.shape[0], -1)
    out = flat.copy()
    _move(flat, out, voxels, shuffled)
    return out.reshape(cube.shape)


def _compiled(function: Callable) -> Callable:
    """``numba.njit``, the machine code cached on disk (next to the module, or in the user's
    cache folder); where no cache folder is writable, compiled again in each process."""
    try:
        return numba.njit(cache=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(function)


def _label_volume(spatial_shape: Shape3, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``_last_window_volume`` of ``(n, 3)`` windows, passed to the compiled loop as contiguous
    ``(3, n)`` int64 arrays (no copy for those of ``shuffle_windows``, which are transposed
    views of such arrays)."""
    starts_, sizes_ = (np.ascontiguousarray(windows.T, dtype=np.int64) for windows in (starts, sizes))
    return _last_window_volume(*(int(d) for d in spatial_shape), starts_, sizes_)


@_compiled
def _last_window_volume(zs: int, ys: int, xs: int, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The flat (C-order) volume of the last window covering each voxel, -1 where none does:
    the windows painted in order, later ones over earlier ones."""
    label = np.full(zs * ys * xs, -1, np.int32)
    for window in range(starts.shape[1]):
        z0, y0, x0 = starts[0, window], starts[1, window], starts[2, window]
        for z in range(z0, z0 + sizes[0, window]):
            for y in range(y0, y0 + sizes[1, window]):
                row = (z * ys + y) * xs
                for x in range(x0, x0 + sizes[2, window]):
                    label[row + x] = window
    return label


@_compiled
def _voxels_by_window(label: np.ndarray, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """The covered voxels grouped by window (a counting sort): window ``w``'s voxels, in C
    order, are ``voxels[bounds[w]:bounds[w + 1]]``."""
    bounds = np.zeros(n_windows + 1, np.int64)
    for window in label:
        if window >= 0:
            bounds[window + 1] += 1
    for window in range(n_windows):
        bounds[window + 1] += bounds[window]
    voxels = np.empty(bounds[n_windows], np.int32)
    filled = bounds[:n_windows].copy()
    for voxel, window in enumerate(label):
        if window >= 0:
            voxels[filled[window]] = voxel
            filled[window] += 1
    return voxels, bounds


@_compiled
def _shuffle_each_window(voxels: np.ndarray, bounds: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``voxels`` with each window's group in Fisher–Yates order, the group's draws
    ``draws[bounds[w]:bounds[w + 1]]`` (see ``local_pixel_shuffling``)."""
    shuffled = voxels.copy()
    for window in range(len(bounds) - 1):
        first = bounds[window]
        for i in range(bounds[window + 1] - first - 1, 0, -1):
            j = int(draws[first + i] * (i + 1))  # < i + 1: draws are below 1
            shuffled[first + i], shuffled[first + j] = shuffled[first + j], shuffled[first + i]
    return shuffled


@_compiled
def _move(flat: np.ndarray, out: np.ndarray, destination: np.ndarray, source: np.ndarray) -> None:
    """``out[:, destination] = flat[:, source]``, channel by channel."""
    for channel in range(flat.shape[0]):
        for k in range(len(destination)):
            out[channel, destination[k]] = flat[channel, source[k]]


# ------------------------------------------------------------- non-linear intensity


def bezier_map(
    rng: np.random.Generator, invert_prob: float = 0.5, n_points: int = 1000
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Draw a monotone intensity map: ``(xs, ys, inverted)`` for ``np.interp(v, xs, ys)``.

    A cubic Bézier with end points (0, 0), (1, 1) and two control points uniform in
    [0, 1]^2, sampled at ``n_points`` values of t; x and y are each sorted so the map is
    monotone increasing with f(0) = 0, f(1) = 1; with probability ``invert_prob`` y is
    reversed (decreasing, f(0) = 1, f(1) = 0).
    """
    (x1, y1), (x2, y2) = rng.random((2, 2))
    controls = np.array([[0.0, x1, x2, 1.0], [0.0, y1, y2, 1.0]])
    xs, ys = np.clip(np.sort(controls @ _bezier_weights(n_points), axis=1), 0.0, 1.0)
    inverted = bool(rng.random() < invert_prob)
    if inverted:
        ys = ys[::-1]
    return xs, ys, inverted


@functools.lru_cache(maxsize=4)
def _bezier_weights(n_points: int) -> np.ndarray:
    """The cubic Bernstein weights ``(4, n_points)`` at ``n_points`` equally spaced t in [0, 1]."""
    t = np.linspace(0.0, 1.0, n_points)
    weights = np.stack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3])
    weights.setflags(write=False)
    return weights


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> np.ndarray:
    grid = np.linspace(0.0, 1.0, size)
    grid.setflags(write=False)
    return grid


def bezier_table(xs: np.ndarray, ys: np.ndarray, size: int = LOOKUP_SIZE) -> np.ndarray:
    """The map ``np.interp(v, xs, ys)`` tabulated at ``size`` equally spaced v in [0, 1] (float32)."""
    return np.interp(_grid(size), xs, ys).astype(np.float32)


def lookup(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table`` read at the nearest of its equally spaced points in [0, 1]; values are clamped."""
    scaled = np.clip(values, 0.0, 1.0, dtype=np.float32)
    scaled *= np.float32(len(table) - 1)
    scaled += np.float32(0.5)
    return table.take(scaled.astype(np.intp))


def nonlinear_intensity(
    cube: np.ndarray, rng: np.random.Generator, invert_prob: float = 0.5, n_points: int = 1000
) -> np.ndarray:
    """Map every voxel through a random monotone Bézier curve (see ``bezier_map``).

    Values outside [0, 1] are clamped to the curve's ends; the output is float32 in [0, 1].
    The curve is read from a lookup table of ``LOOKUP_SIZE`` points (``bezier_table``): the
    error against exact interpolation is at most half a table step times the curve's slope,
    the map stays monotone and its end points exact.
    """
    xs, ys, _ = bezier_map(rng, invert_prob, n_points)
    return lookup(cube, bezier_table(xs, ys))


# ------------------------------------------------------------------------ cutouts


def cutout_count(rng: np.random.Generator, max_boxes: int = 5, more_prob: float = 0.95) -> int:
    """How many boxes: the first always, each further one while ``rng.random() < more_prob``."""
    count = 1
    while count < max_boxes and rng.random() < more_prob:
        count += 1
    return min(count, max_boxes)


def _box_ranges(
    spatial_shape: Shape3, low: np.ndarray, high: np.ndarray, margin: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip the side range ``[low, high]`` per axis so that a box with the margin always fits.

    Guards for small cubes: the margin shrinks to ``(dim - 1) // 2`` when the axis is too
    short for it; the high side is clipped to ``[1, dim - 2 * margin]`` and the low side to
    ``[1, high]`` (so ``high < low`` collapses to a single side ``high``).
    """
    shape = np.asarray(spatial_shape, dtype=np.int64)
    m = np.minimum(margin, (shape - 1) // 2)
    high = np.clip(high, 1, shape - 2 * m)
    low = np.clip(low, 1, high)
    return low, high, m


def _draw_boxes(
    spatial_shape: Shape3, rng: np.random.Generator, low: np.ndarray, high: np.ndarray, margin: int,
    max_boxes: int, more_prob: float,
) -> tuple[np.ndarray, np.ndarray]:
    low, high, m = _box_ranges(spatial_shape, low, high, margin)
    count = cutout_count(rng, max_boxes, more_prob)
    sizes = rng.integers(low, high + 1, size=(count, 3))
    starts = rng.integers(m, np.asarray(spatial_shape) - sizes - m + 1)
    return starts.astype(np.int64), sizes.astype(np.int64)


def inner_cutout_boxes(
    spatial_shape: Shape3, rng: np.random.Generator, max_boxes: int = 5, more_prob: float = 0.95,
    side_divisors: tuple[int, int] = (6, 3), margin: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """In-painting boxes ``(starts, sizes)``, each ``(count, 3)``: side per axis
    ``randint(dim // 6, dim // 3)`` inclusive, origin in ``[margin, dim - side - margin]``."""
    shape = np.asarray(spatial_shape, dtype=np.int64)
    return _draw_boxes(spatial_shape, rng, shape // side_divisors[0], shape // side_divisors[1],
                       margin, max_boxes, more_prob)


def outer_cutout_boxes(
    spatial_shape: Shape3, rng: np.random.Generator, max_boxes: int = 5, more_prob: float = 0.95,
    cut_low: tuple[int, int] = (3, 7), cut_high: tuple[int, int] = (4, 7), margin: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-painting boxes ``(starts, sizes)``: side per axis ``dim - randint(3*dim//7, 4*dim//7)``,
    origin in ``[margin, dim - side - margin]``."""
    shape = np.asarray(spatial_shape, dtype=np.int64)
    low = shape - shape * cut_high[0] // cut_high[1]
    high = shape - shape * cut_low[0] // cut_low[1]
    return _draw_boxes(spatial_shape, rng, np.minimum(low, high), np.maximum(low, high),
                       margin, max_boxes, more_prob)


def inner_cutout(
    cube: np.ndarray, rng: np.random.Generator, max_boxes: int = 5, more_prob: float = 0.95,
    side_divisors: tuple[int, int] = (6, 3), margin: int = 3,
) -> np.ndarray:
    """In-painting: fill 1 to ``max_boxes`` random boxes (``inner_cutout_boxes``, drawn first)
    with uniform noise in [0, 1) (independent per channel). Returns a new float32 array."""
    out = np.array(cube, dtype=np.float32, copy=True)
    starts, sizes = inner_cutout_boxes(out.shape[1:], rng, max_boxes, more_prob, side_divisors, margin)
    for (z, y, x), (sz, sy, sx) in zip(starts, sizes, strict=True):
        out[:, z:z + sz, y:y + sy, x:x + sx] = rng.random((out.shape[0], sz, sy, sx), dtype=np.float32)
    return out


def outer_cutout(
    cube: np.ndarray, rng: np.random.Generator, max_boxes: int = 5, more_prob: float = 0.95,
    cut_low: tuple[int, int] = (3, 7), cut_high: tuple[int, int] = (4, 7), margin: int = 3,
) -> np.ndarray:
    """Out-painting: the whole cube becomes uniform noise in [0, 1), then 1 to ``max_boxes``
    boxes (``outer_cutout_boxes``, drawn first) of the original are restored. New float32 array."""
    cube = np.asarray(cube)
    starts, sizes = outer_cutout_boxes(cube.shape[1:], rng, max_boxes, more_prob, cut_low, cut_high, margin)
    out = rng.random(cube.shape, dtype=np.float32)
    for (z, y, x), (sz, sy, sx) in zip(starts, sizes, strict=True):
        box = (slice(None), slice(z, z + sz), slice(y, y + sy), slice(x, x + sx))
        out[box] = cube[box]
    return out


# ---------------------------------------------------------------------- pipeline


def genesis_transform(
    cube: np.ndarray, rng: np.random.Generator, config: GenesisConfig = GenesisConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """One Genesis training pair ``(input, target)`` from a ``(C, Z, Y, X)`` cube in [0, 1].

    flip (both) -> local shuffling (p) -> non-linear (p) -> painting (p: inner with
    ``inpaint_prob``, else outer). The target is the cube after the flip only. Both are
    new contiguous float32 arrays; the caller's array is not modified. Each gate draws one
    ``rng.random()`` even when its probability is 0, so the draw sequence does not depend
    on which transforms are enabled.
    """
    return transform_pipeline(cube, rng, config, local_pixel_shuffling, nonlinear_intensity)


def transform_pipeline(
    cube: np.ndarray, rng: np.random.Generator, config: GenesisConfig,
    shuffle: Callable[..., np.ndarray], nonlinear: Callable[..., np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """The Genesis pipeline with the given local-shuffling and non-linear implementations
    (the fast ones here; the tests' loop oracles reuse it with theirs)."""
    c = config
    _, flipped = flip(cube, cube, rng, c.flip_prob, c.max_flips)
    target = np.array(flipped, dtype=np.float32, order="C", copy=True)
    x = target
    if rng.random() < c.local_shuffle_prob:
        x = shuffle(x, rng, c.n_windows, c.window_divisor)
    if rng.random() < c.nonlinear_prob:
        x = nonlinear(x, rng, c.invert_prob, c.bezier_points)
    if rng.random() < c.paint_prob:
        if rng.random() < c.inpaint_prob:
            x = inner_cutout(x, rng, c.max_boxes, c.more_box_prob, c.inner_side_divisors, c.margin)
        else:
            x = outer_cutout(x, rng, c.max_boxes, c.more_box_prob, c.outer_cut_low, c.outer_cut_high,
                             c.margin)
    if x is target:
        x = target.copy()
    return np.ascontiguousarray(x, dtype=np.float32), target
