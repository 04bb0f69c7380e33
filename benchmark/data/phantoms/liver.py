"""Abdominal CT phantom in the LiTS 2017 layout (``volume-N.nii`` / ``segmentation-N.nii``).

Each volume is an abdomen of 48 x 48 x 26-31 voxels (x, y, z) at 5.3-6.7 mm in-plane and
6.5-7.5 mm slices: skin, subcutaneous and visceral fat, a muscle wall, spine and ribs, lung
bases, heart, spleen, stomach, kidneys, aorta, vena cava and bowel with air, and a smoothly
deformed liver with its vessels. Spleen, heart, muscle, bowel wall and kidney medulla overlap
the liver's HU range and touch or nearly touch it, so intensity alone cannot find the liver.

Patients differ the way LiTS's do, so that three labelled patients (the 5% label fraction of
the 60 training volumes) do not cover the others: the contrast phase (portal venous in 60%:
liver 95-125 HU with enhancing spleen, kidneys, bowel wall and vessels; otherwise unenhanced:
liver 52-68 HU, spleen darker than the liver, vessels at 35-50 HU), a fatty liver in 35% (25-70
HU lower), 0-3 small hypodense lesions, and in 40% one large mass (30-45 mm radius, up to 45% of
the liver) of its own kind: hypodense, cystic, hypervascular or rim-enhancing with a necrotic
core. Labels: 0 background, 1 liver, 2 lesion (LiTS's); the task's target, the liver, includes
its lesions, so a model that never saw a kind of mass leaves a hole in the liver. Anatomy is in
LPS array order: x grows towards the patient's left, y towards the back, z towards the head.
Volume numbers follow LiTS's split: 60 training (0-59), 8 validation (100-107) and 15 test
(115-129) volumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmark.data.imageio import write_image
from benchmark.data.phantoms.primitives import branching_tree, lobulated_blob, partial_volume, smooth_noise

TRAIN_IDS = tuple(range(0, 60))
VAL_IDS = tuple(range(100, 108))
TEST_IDS = tuple(range(115, 130))
FIRST_BATCH_2_ID = 28  # the real download holds volumes 0-27 in Batch 1, 28-130 in Batch 2
IN_PLANE = ndimage.generate_binary_structure(2, 1)[None]  # erode within slices only
PORTAL_VENOUS_SHARE = 0.6
FATTY_LIVER_SHARE = 0.35
MASS_SHARE = 0.4


def write_liver_phantom(root: Path, seed: int) -> None:
    """Write the LiTS-layout phantom under ``root``: train, val and test volume numbers."""
    root = Path(root)
    for number in (*TRAIN_IDS, *VAL_IDS, *TEST_IDS):
        hu, label, spacing, origin = liver_volume(np.random.default_rng([seed, number]))
        batch = "Training Batch 1" if number < FIRST_BATCH_2_ID else "Training Batch 2"
        write_image(hu, root / batch / f"volume-{number}.nii", spacing, origin)
        write_image(label, root / batch / f"segmentation-{number}.nii", spacing, origin)


@dataclass(frozen=True)
class Contrast:
    """One patient's tissue HU: the contrast phase and a fatty liver set the liver's against its neighbours'."""

    portal_venous: bool
    liver: float
    spleen: float
    kidney_cortex: float
    blood: float
    bowel_wall: float


def draw_contrast(rng: np.random.Generator) -> Contrast:
    portal_venous = bool(rng.random() < PORTAL_VENOUS_SHARE)
    fatty = bool(rng.random() < FATTY_LIVER_SHARE)
    liver = float(rng.uniform(95, 125) if portal_venous else rng.uniform(52, 68))
    spleen = liver + float(rng.uniform(-5, 15) if portal_venous else rng.uniform(-15, -3))
    if fatty:
        liver -= float(rng.uniform(25, 70))
    return Contrast(
        portal_venous, liver, spleen,
        kidney_cortex=float(rng.uniform(150, 210) if portal_venous else rng.uniform(28, 40)),
        blood=float(rng.uniform(150, 210) if portal_venous else rng.uniform(35, 50)),
        bowel_wall=float(rng.uniform(60, 100) if portal_venous else rng.uniform(25, 45)),
    )


class _Painter:
    """Paints tissues one after the other: a later tissue overwrites HU and label."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.hu = np.full(shape, -1000.0, dtype=np.float32)
        self.label = np.zeros(shape, dtype=np.uint8)

    def paint(self, mask: np.ndarray, hu: float, label: int = 0) -> None:
        self.hu[mask] = hu
        self.label[mask] = label


def _hypodense_mass(p: _Painter, mass: np.ndarray, liver_hu: float, rng: np.random.Generator,
                    spacing: tuple[float, float, float]) -> None:
    p.paint(mass, liver_hu - rng.uniform(25, 45), 2)


def _cystic_mass(p: _Painter, mass: np.ndarray, liver_hu: float, rng: np.random.Generator,
                 spacing: tuple[float, float, float]) -> None:
    p.paint(mass, rng.uniform(-5, 12), 2)


def _hypervascular_mass(p: _Painter, mass: np.ndarray, liver_hu: float, rng: np.random.Generator,
                        spacing: tuple[float, float, float]) -> None:
    p.paint(mass, liver_hu + rng.uniform(60, 110), 2)


def _rim_enhancing_mass(p: _Painter, mass: np.ndarray, liver_hu: float, rng: np.random.Generator,
                        spacing: tuple[float, float, float]) -> None:
    """An enhancing rim 5 mm thick around a necrotic core."""
    p.paint(mass, liver_hu + rng.uniform(50, 90), 2)
    p.paint(mass & (ndimage.distance_transform_edt(mass, sampling=spacing) > 5), rng.uniform(0, 20), 2)


MASS_KINDS = (_hypodense_mass, _cystic_mass, _hypervascular_mass, _rim_enhancing_mass)


def liver_volume(
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], tuple[float, float, float]]:
    """One abdomen: int16 HU (z, y, x), uint8 labels, spacing and origin (x, y, z) in mm."""
    shape = (int(rng.integers(26, 32)), 48, 48)
    dz, dxy = float(rng.uniform(6.5, 7.5)), float(rng.uniform(5.3, 6.7))
    spacing_zyx = (dz, dxy, dxy)

    # Body-relative coordinates, smoothly warped as a whole: u from the patient's right
    # (-1) to left (+1), v from front (-1) to back (+1), w from the bottom slice (0) to the top (1).
    rx = float(rng.uniform(0.40, 0.47)) * shape[2] * dxy
    ry = rx * float(rng.uniform(0.68, 0.80))
    cx = shape[2] * dxy / 2 + rng.normal(0, 4)
    cy = shape[1] * dxy / 2 + rng.normal(0, 4)
    height = shape[0] * dz
    z, y, x = (np.arange(n, dtype=np.float32) * s for n, s in zip(shape, spacing_zyx, strict=True))
    warp = 0.05
    u = (x[None, None, :] - cx) / rx + warp * smooth_noise(shape, 5.0, rng)
    v = (y[None, :, None] - cy) / ry + warp * smooth_noise(shape, 5.0, rng)
    w = z[:, None, None] / height + warp * smooth_noise(shape, 5.0, rng)

    surface = smooth_noise(shape, 2.5, rng)

    def blob(
        u0: float, v0: float, w0: float, a: float, b: float, c_mm: float, bumps: float = 0.15
    ) -> np.ndarray:
        """An ellipsoid in body coordinates (c in mm along z), its surface perturbed by smooth noise."""
        level = ((u - u0) / a) ** 2 + ((v - v0) / b) ** 2 + ((w - w0) * height / c_mm) ** 2
        return level + bumps * surface < 1.0

    radius = np.sqrt(u**2 + v**2)
    fat_depth = float(rng.uniform(0.06, 0.15))
    body = radius + 0.02 * smooth_noise(shape, 3.0, rng) < 1.0
    cavity = radius < 1.0 - fat_depth - float(rng.uniform(0.05, 0.08))

    contrast = draw_contrast(rng)
    p = _Painter(shape)
    p.paint(body, -100)  # subcutaneous and visceral fat
    p.paint(body & ~cavity & (radius > 1.0 - fat_depth - 0.08), rng.uniform(45, 60))  # muscle wall
    p.paint(body & (radius >= 1.0 - fat_depth), -100)
    for side in (-1, 1):
        p.paint(blob(side * 0.2, 0.85, 0.5, 0.17, 0.13, 400), rng.uniform(45, 60))  # paraspinal muscle
        p.paint(blob(side * 0.15, 0.5, 0.15, 0.08, 0.10, 90), rng.uniform(45, 60))  # psoas

    # bowel loops with air pockets fill the lower front of the abdomen
    loops = np.abs(smooth_noise(shape, 1.6, rng)) < 0.45
    lower_front = cavity & (v < 0.35) & (w < 0.5 + 0.1 * smooth_noise(shape, 4.0, rng))
    bowel = lower_front & loops
    p.paint(bowel, contrast.bowel_wall)
    p.paint(bowel & (smooth_noise(shape, 1.2, rng) > 1.1), -900)

    # kidneys: a cortex (enhancing in the portal venous phase) around a medulla in the liver's HU range
    for side, w0 in ((-1, rng.uniform(0.22, 0.32)), (1, rng.uniform(0.28, 0.38))):
        kidney_u, kidney_v = side * rng.uniform(0.36, 0.46), rng.uniform(0.45, 0.55)
        cortex = blob(kidney_u, kidney_v, w0, 0.15, 0.22, 55, bumps=0.05)
        medulla = blob(kidney_u, kidney_v, w0, 0.09, 0.14, 38, bumps=0.05)
        p.paint(cortex, contrast.kidney_cortex)
        p.paint(medulla & cortex, rng.uniform(25, 45))

    spleen = cavity & blob(0.62, 0.3, rng.uniform(0.6, 0.75), 0.2, 0.33, 50)
    p.paint(spleen, contrast.spleen)
    stomach = cavity & blob(0.35, -0.25, rng.uniform(0.55, 0.68), 0.25, 0.28, 45)
    p.paint(stomach, rng.uniform(35, 50))
    content = stomach & (ndimage.distance_transform_edt(stomach, sampling=spacing_zyx) > 5)
    p.paint(content, rng.uniform(5, 25))
    p.paint(content & (v < -0.25 - rng.uniform(0, 0.15)), -950)

    lungs = blob(-0.5, 0.3, 1.08, 0.42, 0.55, 70) | blob(0.5, 0.3, 1.08, 0.42, 0.55, 70)
    p.paint(cavity & lungs, -850)
    heart = cavity & blob(0.1, -0.15, 1.05, 0.5, 0.55, 60)
    p.paint(heart, rng.uniform(35, 55))
    p.paint(heart & blob(0.1, -0.15, 1.08, 0.3, 0.35, 45, bumps=0.1), contrast.blood)  # blood pool

    # liver: a right lobe and a tapering left lobe under the dome, with its vessels and lesions
    right_lobe = blob(-0.45, 0.05, rng.uniform(0.55, 0.62), 0.38, 0.62, rng.uniform(60, 75), bumps=0.25)
    left_lobe = blob(0.0, -0.4, rng.uniform(0.64, 0.72), rng.uniform(0.25, 0.38), 0.25, 40, bumps=0.25)
    liver = cavity & (right_lobe | left_lobe)
    p.paint(liver, contrast.liver, 1)
    hilum = np.array([0.55 * height, cy + 0.1 * ry, cx - 0.2 * rx])
    vessels = liver & branching_tree(
        shape, hilum, np.array([0.3, -0.2, -1.0]), 35.0, 4.5, 2, rng, spacing_zyx
    )
    p.paint(vessels, contrast.blood - 10 if contrast.portal_venous else contrast.blood, 1)
    inner = ndimage.binary_erosion(liver, iterations=2)
    candidates = np.argwhere(inner if inner.any() else liver)

    def lesion(radius_mm: float) -> np.ndarray:
        center = candidates[rng.integers(len(candidates))] * np.array(spacing_zyx)
        return liver & lobulated_blob(shape, tuple(center), radius_mm, rng, spacing_zyx)

    for _ in range(int(rng.integers(0, 4))):
        p.paint(lesion(rng.uniform(6, 20)), contrast.liver - rng.uniform(25, 45), 2)
    if rng.random() < MASS_SHARE:
        paint_mass = MASS_KINDS[int(rng.integers(len(MASS_KINDS)))]
        paint_mass(p, lesion(rng.uniform(30, 45)), contrast.liver, rng, spacing_zyx)
    if rng.random() < 0.5:  # gallbladder: fluid against the liver's underside, not liver
        p.paint(cavity & blob(-0.25, -0.15, rng.uniform(0.35, 0.45), 0.12, 0.15, 30), rng.uniform(0, 20))

    # vessels, spine and ribs over everything
    p.paint(blob(0.08, 0.38, 0.5, 0.09, 0.12, 1000, bumps=0.0), contrast.blood + rng.uniform(-10, 10))  # aorta
    p.paint(blob(-0.17, 0.28, 0.5, 0.09, 0.12, 1000, bumps=0.0), contrast.blood + rng.uniform(-30, 0))  # vena cava
    vertebra = blob(0.0, 0.62, 0.5, 0.12, 0.17, 1000, bumps=0.0)
    cancellous = ndimage.binary_erosion(vertebra, IN_PLANE)
    p.paint(vertebra, 700)
    p.paint(cancellous, rng.uniform(250, 350))
    period = float(rng.uniform(28, 34))
    p.paint(cancellous & ((z[:, None, None] + rng.uniform(0, period)) % period < 6), 90)  # discs
    p.paint(blob(0.0, 0.82, 0.5, 0.05, 0.07, 1000, bumps=0.0), 10)  # spinal canal
    angle = np.arctan2(v, u)
    front = np.clip(-np.sin(angle), 0, 1)  # ribs run down towards the front
    rib_ring = body & ~cavity & (radius > 1.0 - fat_depth - 0.07) & (radius < 1.0 - fat_depth) & (front < 0.8)
    for rib_z in np.arange(rng.uniform(0.3, 0.4) * height, height + 40, rng.uniform(22, 28)):
        p.paint(rib_ring & (np.abs(z[:, None, None] + 25 * front - rib_z) < 4.5), rng.uniform(400, 700))
    p.paint(body & ~ndimage.binary_erosion(body, IN_PLANE), rng.uniform(20, 40))  # skin

    hu = p.hu + 6.0 * smooth_noise(shape, 1.2, rng) * body
    hu = partial_volume(hu, 0.6) + float(rng.uniform(15, 25)) * rng.standard_normal(shape, dtype=np.float32)
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    origin = (float(-cx + rng.normal(0, 20)), float(-cy + rng.normal(0, 20)), float(rng.uniform(-600, -300)))
    return hu, p.label, (dxy, dxy, dz), origin
