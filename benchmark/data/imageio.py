"""Reading, writing and cropping medical images (SimpleITK for every format).

SimpleITK arrays are (z, y, x) while sizes, spacings, origins and physical points are
(x, y, z); every function here says which order it takes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmark.errors import UserError

HU_MIN, HU_MAX = -1000.0, 1000.0


def read_image(path: Path) -> sitk.Image:
    """Read any SimpleITK-readable file (mhd/raw, nii, nii.gz, ...); UserError if it cannot."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise UserError(f"{path}: cannot read image ({reason})") from error


def read_array(path: Path, dtype: type = np.float32) -> np.ndarray:
    """The voxels of an image file as a (z, y, x) array."""
    return sitk.GetArrayFromImage(read_image(path)).astype(dtype, copy=False)


def write_image(
    array: np.ndarray,
    path: Path,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    direction: tuple[float, ...] | None = None,
) -> sitk.Image:
    """Write a (z, y, x) array with geometry given in (x, y, z); the format follows the suffix."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    if direction is not None:
        image.SetDirection(tuple(float(d) for d in direction))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=str(path).endswith(".gz"))
    return image


def scale_ct(hu: np.ndarray) -> np.ndarray:
    """Clip Hounsfield units to [-1000, 1000] and scale to [0, 1] (the paper's CT preprocessing)."""
    return ((np.clip(hu, HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN)).astype(np.float32)


def scale_min_max(array: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to [0, 1] (the paper's MRI preprocessing); constant -> 0."""
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array, dtype=np.float32)
    return ((array - low) / (high - low)).astype(np.float32)


def pad_to_cube(array: np.ndarray, cube: tuple[int, int, int], value: float = 0.0) -> np.ndarray:
    """Pad the last three axes symmetrically so that each is at least the cube's side (unchanged if already)."""
    widths = []
    for side, want in zip(array.shape[-3:], cube, strict=True):
        missing = max(want - side, 0)
        widths.append((missing // 2, missing - missing // 2))
    if not any(before or after for before, after in widths):
        return array
    return np.pad(array, [(0, 0)] * (array.ndim - 3) + widths, constant_values=value)


def geometry(image: sitk.Image) -> dict[str, list[float]]:
    """Origin, spacing and direction of an image, (x, y, z) order, as plain lists (JSON-ready)."""
    return {"origin": list(image.GetOrigin()), "spacing": list(image.GetSpacing()),
            "direction": list(image.GetDirection())}


def geometry_image(geometry: dict[str, list[float]]) -> sitk.Image:
    """A one-voxel image carrying ``geometry``: enough for ``world_to_index`` without the voxels."""
    image = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    image.SetOrigin(geometry["origin"])
    image.SetSpacing(geometry["spacing"])
    image.SetDirection(geometry["direction"])
    return image


def world_to_index(image: sitk.Image, point_xyz: tuple[float, float, float]) -> tuple[int, int, int]:
    """The (z, y, x) voxel holding a world point in mm, using the image's direction matrix."""
    continuous = image.TransformPhysicalPointToContinuousIndex(tuple(float(p) for p in point_xyz))
    x, y, z = (int(np.floor(c + 0.5)) for c in continuous)
    return z, y, x


def crop_centered(
    array: np.ndarray, center: tuple[int, ...], size: tuple[int, ...], pad_value: float = 0.0
) -> np.ndarray:
    """A ``size`` crop of the last len(size) axes centred on ``center``; outside is padded.

    The centre voxel sits at index ``size // 2`` of the crop whatever the border, so a
    candidate near the edge stays centred (padding, never shifting).
    """
    spatial = array.shape[-len(size):]
    out = np.full(array.shape[: -len(size)] + tuple(size), pad_value, dtype=array.dtype)
    source, target = [], []
    for c, s, n in zip(center, size, spatial):
        start = int(c) - s // 2
        lo, hi = max(start, 0), min(start + s, n)
        if hi <= lo:
            return out
        source.append(slice(lo, hi))
        target.append(slice(lo - start, hi - start))
    lead = (slice(None),) * (array.ndim - len(size))
    out[lead + tuple(target)] = array[lead + tuple(source)]
    return out
