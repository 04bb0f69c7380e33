"""The Models Genesis transforms as batched torch operations on the training device.

The same transforms as ``genesis_transforms`` (same probabilities, sizes, value ranges and
preservation properties; the tests check the two agree statistically), on a batch
``(B, C, Z, Y, X)`` at once, with the randomness of a ``torch.Generator`` on the batch's
device. Nothing loops over voxels or windows: windows and boxes are drawn for the whole
batch, local shuffling labels voxels with a scatter-max and permutes them with one
sort, the non-linear map is a batched ``searchsorted``, cutouts are broadcast masks.
"""

from __future__ import annotations

import torch
from benchmark.methods._common import uniform_integers
from benchmark.methods.genesis_transforms import GenesisConfig

__all__ = [
    "bezier_maps",
    "draw_boxes",
    "draw_windows",
    "flip_batch",
    "genesis_batch",
    "inner_box_ranges",
    "local_pixel_shuffling_batch",
    "nonlinear_batch",
    "outer_box_ranges",
    "paint_boxes",
    "window_labels",
]


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


# --------------------------------------------------------------------------- flip


def flip_batch(
    cubes: torch.Tensor, generator: torch.Generator, prob: float = 0.4, max_flips: int = 3
) -> torch.Tensor:
    """Flip each cube up to ``max_flips`` times while rand < ``prob``, each along a uniform
    spatial axis; only the parity of the flips per axis matters. Returns a new tensor."""
    batch, device = cubes.shape[0], cubes.device
    flips = torch.cumprod((_uniform((batch, max_flips), generator, device) < prob).to(torch.int64), dim=1)
    axes = torch.randint(0, 3, (batch, max_flips), generator=generator, device=device)
    parity = (torch.nn.functional.one_hot(axes, 3) * flips[..., None]).sum(dim=1) % 2  # (B, 3)
    index = []
    for axis, dim in enumerate(cubes.shape[2:]):
        ramp = torch.arange(dim, device=device)
        index.append(torch.where(parity[:, axis:axis + 1].bool(), dim - 1 - ramp, ramp))  # (B, dim)
    b = torch.arange(batch, device=device)[:, None, None, None]
    moved = cubes[b, :, index[0][:, :, None, None], index[1][:, None, :, None], index[2][:, None, None, :]]
    return moved.permute(0, 4, 1, 2, 3).contiguous()  # advanced indexing put the channel last


# ------------------------------------------------------------- local pixel shuffling


def draw_windows(
    spatial_shape: tuple[int, int, int], batch: int, generator: torch.Generator, device: torch.device,
    n_windows: int = 10_000, window_divisor: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per cube ``n_windows`` shuffling windows ``(starts, sizes)``, each ``(B, W, 3)``: side per axis
    uniform in ``[1, max(1, dim // window_divisor)]`` (at most ``dim``), position uniform inside
    the cube (as ``genesis_transforms.shuffle_windows``)."""
    shape = torch.tensor(spatial_shape, device=device)
    high = torch.clamp(shape // window_divisor, min=1).minimum(shape)
    sizes = uniform_integers(torch.ones(batch, n_windows, 3, dtype=torch.int64, device=device),
                             high.expand(batch, n_windows, 3), generator)
    return uniform_integers(torch.zeros_like(sizes), shape - sizes, generator), sizes


def window_labels(spatial_shape: tuple[int, int, int], starts: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Per cube, the index of the last window covering each voxel (-1 where none does):
    ``(B, Z*Y*X)`` int64, by a scatter-max of the window indices over their voxels."""
    device = starts.device
    batch, n_windows = starts.shape[:2]
    high = sizes.amax(dim=(0, 1)).tolist() if sizes.numel() else [1, 1, 1]
    offsets = torch.stack(torch.meshgrid(*(torch.arange(int(h), device=device) for h in high), indexing="ij"),
                          dim=-1).reshape(-1, 3)  # every offset of the largest window
    inside = (offsets[None, None] < sizes[:, :, None]).all(dim=-1)  # (B, W, O)
    strides = torch.tensor([spatial_shape[1] * spatial_shape[2], spatial_shape[2], 1], device=device)
    n_voxels = spatial_shape[0] * spatial_shape[1] * spatial_shape[2]
    voxels = ((starts[:, :, None] + offsets[None, None]) * strides).sum(dim=-1)
    voxels = voxels + torch.arange(batch, device=device)[:, None, None] * n_voxels  # one flat index space
    window = torch.arange(n_windows, device=device)[None, :, None].expand_as(voxels)
    labels = torch.full((batch * n_voxels,), -1, dtype=torch.int64, device=device)
    labels.scatter_reduce_(0, voxels[inside], window[inside], reduce="amax")
    return labels.reshape(batch, n_voxels)


def local_pixel_shuffling_batch(
    cubes: torch.Tensor, generator: torch.Generator, n_windows: int = 10_000, window_divisor: int = 10
) -> torch.Tensor:
    """Permute voxels at random within the voxel set of each cube's last covering window
    (an exact permutation, as ``genesis_transforms.local_pixel_shuffling``); channels move
    together, uncovered voxels stay put. Returns a new tensor."""
    batch, channels = cubes.shape[:2]
    spatial = tuple(int(d) for d in cubes.shape[2:])
    labels = window_labels(spatial, *draw_windows(spatial, batch, generator, cubes.device, n_windows, window_divisor))
    n_voxels = labels.shape[1]
    position = torch.arange(n_voxels, device=cubes.device).expand(batch, n_voxels)
    random_rank = torch.randint(0, 2**31, labels.shape, generator=generator, device=cubes.device)
    group = labels * 2**32
    destination = torch.argsort(group + position, dim=1)
    source = torch.argsort(group + torch.where(labels >= 0, random_rank, position), dim=1)
    flat = cubes.reshape(batch, channels, n_voxels)
    out = torch.empty_like(flat)
    out.scatter_(2, destination[:, None].expand_as(flat), flat.gather(2, source[:, None].expand_as(flat)))
    return out.reshape(cubes.shape)


# ------------------------------------------------------------- non-linear intensity


def bezier_maps(
    batch: int, generator: torch.Generator, device: torch.device, invert_prob: float = 0.5, n_points: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per cube a monotone map ``(xs, ys)``, each ``(B, n_points)`` float32: the cubic Bézier of
    ``genesis_transforms.bezier_map`` (control points uniform in [0, 1]^2, x and y sorted),
    its y reversed with probability ``invert_prob``."""
    controls = _uniform((batch, 2, 2), generator, device)  # (B, point, xy)
    t = torch.linspace(0.0, 1.0, n_points, device=device)
    weights = torch.stack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3])  # (4, n)
    ends = torch.tensor([[0.0, 0.0], [1.0, 1.0]], device=device).expand(batch, 2, 2)
    points = torch.cat([ends[:, :1], controls, ends[:, 1:]], dim=1)  # (B, 4, xy)
    curve = torch.einsum("bpc,pn->bcn", points, weights).clamp(0.0, 1.0)
    xs, ys = torch.sort(curve[:, 0], dim=1).values, torch.sort(curve[:, 1], dim=1).values
    inverted = _uniform((batch, 1), generator, device) < invert_prob
    return xs.contiguous(), torch.where(inverted, ys.flip(1), ys).contiguous()


def nonlinear_batch(
    cubes: torch.Tensor, generator: torch.Generator, invert_prob: float = 0.5, n_points: int = 1000
) -> torch.Tensor:
    """Map each cube's voxels (clamped to [0, 1]) through its own random monotone Bézier map,
    by linear interpolation between the curve's samples."""
    batch = cubes.shape[0]
    xs, ys = bezier_maps(batch, generator, cubes.device, invert_prob, n_points)
    values = cubes.reshape(batch, -1).clamp(0.0, 1.0)
    right = torch.searchsorted(xs, values, right=True).clamp(1, n_points - 1)
    x0, x1 = xs.gather(1, right - 1), xs.gather(1, right)
    y0, y1 = ys.gather(1, right - 1), ys.gather(1, right)
    span = x1 - x0
    fraction = torch.where(span > 0, (values - x0) / torch.where(span > 0, span, 1.0), 0.0).clamp(0.0, 1.0)
    return (y0 + (y1 - y0) * fraction).reshape(cubes.shape)


# ------------------------------------------------------------------------ cutouts


def inner_box_ranges(spatial_shape: tuple[int, int, int], config: GenesisConfig) -> tuple[list[int], list[int]]:
    """Side range per axis of the in-painting boxes (``genesis_transforms.inner_cutout_boxes``)."""
    a, b = config.inner_side_divisors
    return [d // a for d in spatial_shape], [d // b for d in spatial_shape]


def outer_box_ranges(spatial_shape: tuple[int, int, int], config: GenesisConfig) -> tuple[list[int], list[int]]:
    """Side range per axis of the out-painting boxes (``genesis_transforms.outer_cutout_boxes``)."""
    (n1, d1), (n2, d2) = config.outer_cut_low, config.outer_cut_high
    low = [d - d * n2 // d2 for d in spatial_shape]
    high = [d - d * n1 // d1 for d in spatial_shape]
    return [min(a, b) for a, b in zip(low, high)], [max(a, b) for a, b in zip(low, high)]


def draw_boxes(
    spatial_shape: tuple[int, int, int], batch: int, generator: torch.Generator, device: torch.device,
    low: list[int], high: list[int], config: GenesisConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per cube up to ``max_boxes`` boxes: ``(starts, sizes, used)``, ``(B, K, 3)``, ``(B, K, 3)``,
    ``(B, K)``. The first box is always used, each further one while rand < ``more_box_prob``;
    sides and margins clipped to the cube as in ``genesis_transforms._box_ranges``."""
    shape = torch.tensor(spatial_shape, device=device)
    margin = torch.clamp((shape - 1) // 2, max=config.margin)
    high_ = torch.tensor(high, device=device).clamp(min=1).minimum(shape - 2 * margin).clamp(min=1)
    low_ = torch.tensor(low, device=device).clamp(min=1).minimum(high_)
    k = config.max_boxes
    more = _uniform((batch, k - 1), generator, device) < config.more_box_prob
    used = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=device),
                      torch.cumprod(more.to(torch.int64), dim=1).bool()], dim=1)
    sizes = uniform_integers(low_.expand(batch, k, 3), high_.expand(batch, k, 3), generator)
    starts = uniform_integers(margin.expand(batch, k, 3), shape - sizes - margin, generator)
    return starts, sizes, used


def paint_boxes(
    spatial_shape: tuple[int, int, int], starts: torch.Tensor, sizes: torch.Tensor, used: torch.Tensor
) -> torch.Tensor:
    """``(B, Z, Y, X)`` boolean: inside any used box of each cube."""
    inside = []
    for axis, dim in enumerate(spatial_shape):
        ramp = torch.arange(dim, device=starts.device)
        a, s = starts[..., axis:axis + 1], sizes[..., axis:axis + 1]
        inside.append((ramp >= a) & (ramp < a + s))  # (B, K, dim)
    rows = (inside[0] & used[..., None])[..., :, None] & inside[1][..., None, :]  # (B, K, Z, Y): small
    return (rows[..., None] & inside[2][..., None, None, :]).any(dim=1)


# ---------------------------------------------------------------------- pipeline


def genesis_batch(
    cubes: torch.Tensor, generator: torch.Generator, config: GenesisConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Genesis training pairs ``(inputs, targets)`` for a batch ``(B, C, Z, Y, X)`` in [0, 1], on
    its device: flip (both) -> local shuffling (p) -> non-linear (p) -> painting (p: inner
    with ``inpaint_prob``, else outer), each gate drawn per cube. float32; ``cubes`` untouched."""
    c = GenesisConfig() if config is None else config
    batch, device = cubes.shape[0], cubes.device
    spatial = tuple(int(d) for d in cubes.shape[2:])
    targets = flip_batch(cubes.float(), generator, c.flip_prob, c.max_flips)
    gates = _uniform((batch, 4), generator, device)
    shuffled, mapped = gates[:, 0] < c.local_shuffle_prob, gates[:, 1] < c.nonlinear_prob
    painted, inner = gates[:, 2] < c.paint_prob, gates[:, 3] < c.inpaint_prob
    x = targets.clone()
    if shuffled.any():
        x[shuffled] = local_pixel_shuffling_batch(x[shuffled], generator, c.n_windows, c.window_divisor)
    if mapped.any():
        x[mapped] = nonlinear_batch(x[mapped], generator, c.invert_prob, c.bezier_points)
    inner_boxes = paint_boxes(spatial, *draw_boxes(spatial, batch, generator, device,
                                                    *inner_box_ranges(spatial, c), c))
    outer_boxes = paint_boxes(spatial, *draw_boxes(spatial, batch, generator, device,
                                                    *outer_box_ranges(spatial, c), c))
    per_cube = (batch, 1, 1, 1)
    noisy = ((painted & inner).reshape(per_cube) & inner_boxes) | ((painted & ~inner).reshape(per_cube) & ~outer_boxes)
    x = torch.where(noisy[:, None], _uniform(tuple(x.shape), generator, device), x)
    return x.contiguous(), targets
