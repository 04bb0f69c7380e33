"""Brain MRI phantom in the BraTS 2018 layout (``{HGG,LGG}/<case>/<case>_<modality>.nii.gz``).

Each case is a skull-stripped brain (background exactly 0) of 56 x 64 x 40 voxels
(x, y, z) at 1 mm with white and grey matter, deep grey nuclei, sulcal and ventricular
CSF, four modalities (flair, t1, t1ce, t2) with their own contrasts, a nested tumour
(edema 2 around enhancing tumour 4 around necrosis 1; low-grade cases: a non-enhancing
core 1, rarely a little enhancement), a polynomial bias field per modality, Rician
noise and a per-case intensity scale. No single modality separates the tumour: CSF is
brighter than edema on T2, white-matter hyperintensities (not tumour) look like edema
on FLAIR and T2, necrosis is dark on FLAIR, and veins and choroid plexus enhance on T1ce.

Cases carry real BraTS 2018 ids taken from the shipped fold files, filed under HGG or
LGG as the real download files them (see ``brats_grade``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmark.data.imageio import write_image
from benchmark.data.phantoms.primitives import ellipsoid, lobulated_blob, partial_volume, rician, smooth_noise

MODALITIES = ("flair", "t1", "t1ce", "t2")
SHAPE = (40, 64, 56)  # z, y, x
# 13 train cases and 3 validation cases (positions 8k + 7 of the sorted folds 1 + 2) and
# 6 test cases (fold 3): every 13th, 8th and 16th of those lists.
CASES = (
    "Brats18_2013_0_1", "Brats18_2013_27_1", "Brats18_CBICA_ABY_1", "Brats18_CBICA_AQU_1",
    "Brats18_CBICA_AUR_1", "Brats18_CBICA_BHM_1", "Brats18_TCIA02_168_1", "Brats18_TCIA02_473_1",
    "Brats18_TCIA04_149_1", "Brats18_TCIA08_113_1", "Brats18_TCIA09_620_1", "Brats18_TCIA10_393_1",
    "Brats18_TCIA12_466_1",
    "Brats18_2013_17_1", "Brats18_CBICA_AYA_1", "Brats18_TCIA08_218_1",
    "Brats18_2013_10_1", "Brats18_CBICA_AOH_1", "Brats18_CBICA_ATP_1", "Brats18_TCIA01_401_1",
    "Brats18_TCIA02_606_1", "Brats18_TCIA09_402_1",
)
LGG_INSTITUTIONS = ("TCIA09", "TCIA10", "TCIA12", "TCIA13")
LGG_2013 = frozenset({0, 1, 6, 8, 9, 15, 16, 24, 28, 29})

# Tissue codes and their relative signal in (flair, t1, t1ce, t2).
WM, GM, DEEP_GM, CSF, WMH, EDEMA, ENHANCING, NECROSIS, CORE, VESSEL = range(1, 11)
CONTRAST = np.array([
    [0.00, 0.00, 0.00, 0.00],  # background
    [0.55, 1.00, 1.00, 0.45],  # white matter
    [0.72, 0.72, 0.74, 0.68],  # grey matter
    [0.66, 0.82, 0.84, 0.58],  # deep grey nuclei
    [0.12, 0.28, 0.30, 1.00],  # CSF
    [0.90, 0.86, 0.88, 0.82],  # white-matter hyperintensity (not tumour)
    [0.92, 0.72, 0.74, 0.85],  # edema
    [0.85, 0.70, 1.35, 0.72],  # enhancing tumour
    [0.55, 0.35, 0.38, 1.05],  # necrosis
    [0.80, 0.55, 0.58, 0.95],  # non-enhancing core (low grade)
    [0.50, 0.60, 1.40, 0.40],  # veins, choroid plexus
], dtype=np.float32)


def brats_grade(case_id: str) -> str:
    """'HGG' or 'LGG' as the BraTS 2018 download files a case (75 LGG of 285).

    LGG: institutions TCIA09, TCIA10, TCIA12, TCIA13 and the 2013 cases 0, 1, 6, 8, 9,
    15, 16, 24, 28, 29; every other case is HGG.
    """
    match = re.fullmatch(r"Brats18_(TCIA\d+|CBICA|2013)_(\w+?)_1", case_id)
    if match is None:
        raise ValueError(f"not a BraTS 2018 case id: {case_id}")
    site, number = match.groups()
    low_grade = site in LGG_INSTITUTIONS or (site == "2013" and int(number) in LGG_2013)
    return "LGG" if low_grade else "HGG"


def write_brain_phantom(root: Path, seed: int) -> None:
    """Write the BraTS-2018-layout phantom (22 cases) under ``root``."""
    root = Path(root)
    for index, case in enumerate(CASES):
        grade = brats_grade(case)
        images, seg = brain_case(np.random.default_rng([seed, index]), low_grade=grade == "LGG")
        folder = root / grade / case
        for modality, image in zip(MODALITIES, images, strict=True):
            write_image(image, folder / f"{case}_{modality}.nii.gz")
        write_image(seg, folder / f"{case}_seg.nii.gz")


def brain_case(rng: np.random.Generator, low_grade: bool) -> tuple[np.ndarray, np.ndarray]:
    """One case: int16 modalities (4, Z, Y, X) in MODALITIES order and the uint8 BraTS labels."""
    tissue = _tissues(rng)
    seg = _tumour(tissue, rng, low_grade)
    brain = tissue > 0

    contrast = CONTRAST * rng.uniform(0.92, 1.08, size=CONTRAST.shape).astype(np.float32)
    contrast[EDEMA, 0] = rng.uniform(0.78, 1.0)  # how bright edema is on FLAIR varies a lot
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in SHAPE)
    terms = [z[:, None, None], y[None, :, None], x[None, None, :]]
    terms += [a * b for i, a in enumerate(terms) for b in terms[i:]]
    images = np.empty((len(MODALITIES), *SHAPE), dtype=np.int16)
    for channel in range(len(MODALITIES)):
        signal = partial_volume(contrast[tissue, channel], 0.6)
        bias = np.exp(sum(rng.normal(0, 0.12) * term for term in terms))
        noisy = rician(signal * bias, float(rng.uniform(0.02, 0.035)), rng)
        images[channel] = np.rint(noisy * brain * rng.uniform(150, 600)).astype(np.int16)
    return images, seg


def _tissues(rng: np.random.Generator) -> np.ndarray:
    """The healthy brain as a map of tissue codes (0 outside)."""
    center = np.array(SHAPE, dtype=float) / 2 + rng.uniform(-1.5, 1.5, size=3)
    radii = np.array([rng.uniform(15, 17.5), rng.uniform(26, 29.5), rng.uniform(21, 24.5)])
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    widening = 1 + 0.1 * (y - center[1]) / radii[1]  # wider at the back
    level = ((z - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2
    level = level + ((x - center[2]) / (radii[2] * widening)) ** 2
    brain = level + 0.06 * smooth_noise(SHAPE, 3.0, rng) < 1.0
    depth = ndimage.distance_transform_edt(brain)

    folds = np.abs(smooth_noise(SHAPE, 1.5, rng))
    midline = np.abs(x - center[2] - 1.5 * np.sin((y - center[1]) / radii[1] * 2)) < 0.8
    csf = brain & ((depth <= 1.2) | ((depth < 6) & (folds < 0.12)) | (midline & (depth < 10)))
    grey = brain & ((depth < 3.5) | ((depth < 7) & (folds < 0.45)))
    tissue = np.where(brain, WM, 0).astype(np.uint8)
    tissue[grey] = GM
    tissue[csf] = CSF

    shift = (x - center[2]) / radii[2]
    for side in (-1, 1):
        nucleus = ellipsoid(SHAPE, (center[0] - 0.05 * radii[0], center[1] + 0.05 * radii[1],
                                    center[2] + side * 0.22 * radii[2]), tuple(radii * [0.22, 0.16, 0.13]))
        tissue[brain & (nucleus < 1)] = DEEP_GM
    size = rng.uniform(0.8, 1.5)
    ventricles = np.zeros(SHAPE, dtype=bool)
    for side in (-1, 1):
        middle = (center[0] + 0.15 * radii[0], center[1], center[2] + side * 0.17 * radii[2])
        ventricle = ellipsoid(SHAPE, middle, tuple(radii * [0.25 * size, 0.42, 0.09 * size]))
        ventricles |= ventricle < 1
        for tip in (-1, 1):  # periventricular caps
            if rng.random() < 0.7:
                cap = ellipsoid(SHAPE, (center[0] + 0.15 * radii[0], center[1] + tip * 0.45 * radii[1],
                                        center[2] + side * 0.17 * radii[2]), (3.0, 3.5, 3.0))
                tissue[brain & (cap < 1 + 0.3 * folds) & (tissue == WM)] = WMH
    white = np.argwhere((tissue == WM) & (depth > 5))
    for _ in range(int(rng.integers(1, 10))):  # punctate hyperintensities
        spot = lobulated_blob(SHAPE, tuple(white[rng.integers(len(white))]), rng.uniform(1.0, 3.0), rng)
        tissue[spot & (tissue == WM)] = WMH
    tissue[brain & ventricles] = CSF
    plexus = ventricles & (np.abs(shift) < 0.3) & (y - center[1] > 0.15 * radii[1]) & (folds > 0.8)
    tissue[plexus] = VESSEL
    tissue[brain & midline & (depth < 2) & (z > center[0])] = VESSEL  # superior sagittal sinus
    return tissue


def _tumour(tissue: np.ndarray, rng: np.random.Generator, low_grade: bool) -> np.ndarray:
    """Paint a nested tumour into ``tissue`` (in place) and return its BraTS labels."""
    brain = tissue > 0
    inside = np.argwhere((ndimage.distance_transform_edt(brain) > 7) & (tissue != CSF))
    center = inside[rng.integers(len(inside))].astype(float)
    radius = rng.uniform(5, 12)
    seg = np.zeros(SHAPE, dtype=np.uint8)
    # edema spreads along white matter: its outer part spares cortex and CSF
    outer = lobulated_blob(SHAPE, tuple(center), radius, rng, lobulation=0.5)
    inner = lobulated_blob(SHAPE, tuple(center), radius * 0.7, rng, lobulation=0.5)
    edema = brain & (inner | (outer & (tissue != GM) & (tissue != CSF)))
    seg[edema] = 2
    tissue[edema] = EDEMA
    core_center = tuple(center + rng.normal(0, 1.5, size=3))
    if low_grade:
        core = brain & lobulated_blob(SHAPE, core_center, radius * rng.uniform(0.4, 0.75), rng)
        seg[core], tissue[core] = 1, CORE
        if rng.random() < 0.3:
            patch = core & lobulated_blob(SHAPE, core_center, radius * 0.2, rng)
            seg[patch], tissue[patch] = 4, ENHANCING
        return seg
    enhancing_radius = radius * rng.uniform(0.35, 0.6)
    enhancing = brain & lobulated_blob(SHAPE, core_center, enhancing_radius, rng)
    seg[enhancing], tissue[enhancing] = 4, ENHANCING
    if rng.random() < 0.8:
        necrosis_radius = enhancing_radius * rng.uniform(0.45, 0.7)
        necrosis = enhancing & lobulated_blob(SHAPE, core_center, necrosis_radius, rng)
        seg[necrosis], tissue[necrosis] = 1, NECROSIS
    return seg
