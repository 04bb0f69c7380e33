"""Shapes and textures the phantom generators are built from (all arrays (z, y, x))."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (field / (field.std() + 1e-8)).astype(np.float32)


def grid(shape: tuple[int, ...], spacing: tuple[float, ...] = (1.0, 1.0, 1.0)) -> list[np.ndarray]:
    """Open coordinate grids in millimetres, (z, y, x) order, broadcastable to ``shape``."""
    return [
        (np.arange(n, dtype=np.float32) * s).reshape([-1 if i == axis else 1 for i in range(len(shape))])
        for axis, (n, s) in enumerate(zip(shape, spacing))
    ]


def ellipsoid(
    shape: tuple[int, int, int],
    center_mm: tuple[float, float, float],
    radii_mm: tuple[float, float, float],
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Signed level field: < 1 inside an (optionally rotated) ellipsoid, in (z, y, x) mm."""
    z, y, x = grid(shape, spacing)
    offsets = [z - center_mm[0], y - center_mm[1], x - center_mm[2]]
    if rotation is not None:
        offsets = [sum(rotation[i, j] * offsets[j] for j in range(3)) for i in range(3)]
    return sum((o / r) ** 2 for o, r in zip(offsets, radii_mm))


def lobulated_blob(
    shape: tuple[int, int, int],
    center_mm: tuple[float, float, float],
    radius_mm: float,
    rng: np.random.Generator,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    lobulation: float = 0.25,
) -> np.ndarray:
    """Boolean mask of a randomly rotated ellipsoid whose surface is perturbed by smooth noise."""
    radii = radius_mm * rng.uniform(0.75, 1.25, size=3)
    rotation = random_rotation(rng)
    level = ellipsoid(shape, center_mm, tuple(radii), spacing, rotation)
    bumps = smooth_noise(shape, sigma=max(radius_mm / max(spacing) / 2, 1.0), rng=rng)
    return level < 1.0 + lobulation * bumps


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def tube(
    shape: tuple[int, int, int],
    start_mm: np.ndarray,
    end_mm: np.ndarray,
    radius_mm: float,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Boolean mask of a capsule (cylinder with round ends) between two (z, y, x) mm points."""
    z, y, x = grid(shape, spacing)
    axis = end_mm - start_mm
    length2 = float(axis @ axis) or 1e-8
    t = ((z - start_mm[0]) * axis[0] + (y - start_mm[1]) * axis[1] + (x - start_mm[2]) * axis[2]) / length2
    t = np.clip(t, 0.0, 1.0)
    dz, dy, dx = z - (start_mm[0] + t * axis[0]), y - (start_mm[1] + t * axis[1]), x - (start_mm[2] + t * axis[2])
    return dz**2 + dy**2 + dx**2 <= radius_mm**2


def branching_tree(
    shape: tuple[int, int, int],
    root_mm: np.ndarray,
    direction: np.ndarray,
    length_mm: float,
    radius_mm: float,
    depth: int,
    rng: np.random.Generator,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Boolean mask of a recursively bifurcating vessel tree that thins at each split."""
    mask = np.zeros(shape, dtype=bool)
    stack = [(np.asarray(root_mm, float), np.asarray(direction, float), length_mm, radius_mm, depth)]
    while stack:
        start, heading, length, radius, level = stack.pop()
        heading = heading / (np.linalg.norm(heading) + 1e-8)
        end = start + heading * length
        mask |= tube(shape, start, end, radius, spacing)
        if level > 0:
            for _ in range(2):
                turn = heading + rng.normal(0, 0.6, size=3)
                stack.append((end, turn, length * 0.75, max(radius * 0.7, 0.5), level - 1))
    return mask


def partial_volume(image: np.ndarray, sigma_voxels: float = 0.7) -> np.ndarray:
    """Blur that mimics the scanner's point-spread function (partial-volume effect)."""
    return ndimage.gaussian_filter(image, sigma_voxels).astype(np.float32)


def rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (MRI noise model)."""
    real = image + rng.normal(0, sigma, image.shape)
    imaginary = rng.normal(0, sigma, image.shape)
    return np.sqrt(real**2 + imaginary**2).astype(np.float32)
