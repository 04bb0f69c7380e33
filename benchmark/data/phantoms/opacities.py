"""Held-out chest scans with planted diffuse opacities, for the anomaly analysis.

Chest scans drawn like those of the chest phantom but from generator streams of their own
(scan indices from ``FIRST_INDEX`` on, never among the phantom's 30 scans, so never in the
pretraining pool), each with one to three diffuse ground-glass regions: irregular patches of
smooth noise above a threshold inside a ball of 12-22 mm radius in the lung, raised to
-700 to -550 HU with texture and the scan's own noise (ground glass: denser than aerated lung,
vessels still visible through it). Layout::

    scans/<uid>.mhd (+ .raw)    the CT, int16 HU
    masks/<uid>.mhd             the opacities, uint8 0/1
    lungs/<uid>.mhd             the lungs, uint8 0/1 (where the analysis looks)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmark.data.phantoms.chest import build_chest_scan, pick_voxel
from benchmark.data.phantoms.primitives import grid, smooth_noise

SCANS = 8
FIRST_INDEX = 1000
FOLDERS = ("scans", "masks", "lungs")


def opacity_region(lung: np.ndarray, spacing: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """One diffuse patch: smooth noise above its 40th percentile within a ball in the lung."""
    centre = pick_voxel(lung, rng)
    radius = rng.uniform(12.0, 22.0)
    z, y, x = grid(lung.shape, spacing)
    cz, cy, cx = np.asarray(centre) * spacing
    ball = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
    texture = smooth_noise(lung.shape, 1.5, rng)
    return ball & lung & (texture > np.quantile(texture[ball], 0.4))


def plant_opacities(hu: np.ndarray, lung: np.ndarray, spacing: tuple[float, float, float],
                    rng: np.random.Generator) -> np.ndarray:
    """Raise one to three diffuse regions of ``hu`` (in place) to ground glass; their mask."""
    mask = np.zeros(lung.shape, bool)
    for _ in range(int(rng.integers(1, 4))):
        mask |= opacity_region(lung, spacing, rng)
    level = rng.uniform(-700, -550)
    texture = smooth_noise(lung.shape, 1.0, rng)
    noise = rng.normal(0, 25, int(mask.sum()))
    hu[mask] = np.maximum(hu[mask], level + 30 * texture[mask] + noise)
    return mask


def _write(array: np.ndarray, reference: sitk.Image, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def write_opacity_phantom(root: Path, seed: int) -> None:
    """``SCANS`` scans with their opacity and lung masks, in the layout above."""
    root = Path(root)
    for index in range(FIRST_INDEX, FIRST_INDEX + SCANS):
        scan = build_chest_scan(seed, index)
        rng = np.random.default_rng([seed, index, 1])
        hu = sitk.GetArrayFromImage(scan.image).astype(np.float32)
        spacing = scan.image.GetSpacing()[::-1]
        mask = plant_opacities(hu, scan.lung, spacing, rng)
        ct = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
        for folder, array in zip(FOLDERS, (ct, mask.astype(np.uint8), scan.lung.astype(np.uint8))):
            _write(array, scan.image, root / folder / f"{scan.uid}.mhd")
