"""Brain MRI phantom in the BraTS 2018 layout (``{HGG,LGG}/<case>/<case>_<modality>.nii.gz``).

72 cases (42 train, 6 validation, 24 test under the shipped folds). Each is a skull-stripped
brain (background exactly 0) in 56 x 64 x 40 voxels (x, y, z) at 1 mm with white and grey
matter, deep grey nuclei, sulcal and ventricular CSF, four modalities (flair, t1, t1ce, t2)
with their own contrasts, a nested tumour (edema 2 around enhancing tumour 4 around necrosis
1; low-grade cases: a non-enhancing core 1, rarely a little enhancement), a polynomial bias
field, Rician noise and an arbitrary intensity scale per modality. No single modality
separates the tumour: CSF is brighter than edema on T2, white-matter hyperintensities (not
tumour) look like edema on FLAIR and T2, necrosis is dark on FLAIR, and veins and choroid
plexus enhance on T1ce.

Patients differ the way a multi-site collection's do, so that a model trained on a few of them
does not cover the rest (a 5% label subset is 3 patients) while every case stays solvable from
the four modalities and the tumour's shape:

- anatomy: brain size, and with age wider sulci, larger ventricles and more white-matter
  hyperintensities;
- tumour: radius 5-13 mm (log-uniform), round to lobulated, 30% with 1-2 smaller foci,
  the edema's extent around the core, a textured (heterogeneous) signal;
- acquisition, drawn per case and modality as in a multi-site collection: tissue contrasts
  (edema barely visible to bright on FLAIR, the T1 sequence's grey-white contrast, weak to
  strong enhancement with the contrast agent's dose and timing, the T2 echo time), in-plane
  blur, thick slices in half the modalities (2D sequences), bias-field strength and noise
  level (signal-to-noise 15 to 80 in white matter), and a non-linear intensity scale (a power
  law, gamma 0.6-1.7): MRI has no absolute scale, and BMS's per-case rescaling of each
  modality removes only a linear one.

Cases carry real BraTS 2018 ids taken from the shipped fold files, filed under HGG or
LGG as the real download files them (see ``brats_grade``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmark.data.imageio import write_image
from benchmark.data.phantoms.primitives import ellipsoid, lobulated_blob, rician, smooth_noise

MODALITIES = ("flair", "t1", "t1ce", "t2")
SHAPE = (40, 64, 56)  # z, y, x
# 42 train cases, 6 validation cases (positions 8k + 7 of the sorted folds 1 + 2) and 24 test
# cases (fold 3), evenly spaced over each of those sorted lists: 42 train cases put 3 patients
# in a 5% label subset (the ceiling of 2.1).
CASES = (
    "Brats18_2013_0_1", "Brats18_2013_14_1", "Brats18_2013_20_1", "Brats18_2013_26_1", "Brats18_2013_5_1",
    "Brats18_2013_9_1", "Brats18_CBICA_ABM_1", "Brats18_CBICA_AME_1", "Brats18_CBICA_APZ_1",
    "Brats18_CBICA_AQO_1", "Brats18_CBICA_AQV_1", "Brats18_CBICA_ASU_1", "Brats18_CBICA_ATV_1",
    "Brats18_CBICA_AVG_1", "Brats18_CBICA_AXJ_1", "Brats18_CBICA_AXO_1", "Brats18_CBICA_BHM_1",
    "Brats18_TCIA01_201_1", "Brats18_TCIA01_390_1", "Brats18_TCIA02_151_1", "Brats18_TCIA02_222_1",
    "Brats18_TCIA02_314_1", "Brats18_TCIA02_394_1", "Brats18_TCIA02_605_1", "Brats18_TCIA03_138_1",
    "Brats18_TCIA03_419_1", "Brats18_TCIA04_328_1", "Brats18_TCIA05_277_1", "Brats18_TCIA06_211_1",
    "Brats18_TCIA08_113_1", "Brats18_TCIA08_319_1", "Brats18_TCIA09_312_1", "Brats18_TCIA09_620_1",
    "Brats18_TCIA10_202_1", "Brats18_TCIA10_299_1", "Brats18_TCIA10_387_1", "Brats18_TCIA10_420_1",
    "Brats18_TCIA10_629_1", "Brats18_TCIA12_249_1", "Brats18_TCIA12_480_1", "Brats18_TCIA13_630_1",
    "Brats18_TCIA13_653_1",
    "Brats18_2013_17_1", "Brats18_CBICA_AQJ_1", "Brats18_TCIA01_203_1", "Brats18_TCIA03_199_1",
    "Brats18_TCIA10_152_1", "Brats18_TCIA13_623_1",
    "Brats18_2013_10_1", "Brats18_2013_25_1", "Brats18_CBICA_ABB_1", "Brats18_CBICA_ANG_1",
    "Brats18_CBICA_AOH_1", "Brats18_CBICA_AQG_1", "Brats18_CBICA_ARZ_1", "Brats18_CBICA_ASN_1",
    "Brats18_CBICA_AUN_1", "Brats18_CBICA_AYU_1", "Brats18_CBICA_BFB_1", "Brats18_TCIA01_180_1",
    "Brats18_TCIA01_411_1", "Brats18_TCIA02_117_1", "Brats18_TCIA02_290_1", "Brats18_TCIA02_370_1",
    "Brats18_TCIA02_607_1", "Brats18_TCIA04_343_1", "Brats18_TCIA08_162_1", "Brats18_TCIA08_406_1",
    "Brats18_TCIA10_109_1", "Brats18_TCIA10_346_1", "Brats18_TCIA12_101_1", "Brats18_TCIA13_654_1",
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
    """Write the BraTS-2018-layout phantom (72 cases) under ``root``."""
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
    texture = 1 + rng.uniform(0, 0.15) * smooth_noise(SHAPE, 1.5, rng) * (seg > 0)  # heterogeneous tumours
    contrast = _protocol_contrast(rng)
    brain = tissue > 0
    images = np.empty((len(MODALITIES), *SHAPE), dtype=np.int16)
    for channel in range(len(MODALITIES)):
        images[channel] = _acquire(contrast[tissue, channel] * texture, brain, rng)
    return images, seg


def _protocol_contrast(rng: np.random.Generator) -> np.ndarray:
    """The case's tissue contrasts: sites, field strengths, sequence timings and contrast phases differ."""
    contrast = CONTRAST * np.exp(rng.normal(0, 0.07, size=CONTRAST.shape)).astype(np.float32)
    contrast[EDEMA, 0] = rng.uniform(0.74, 1.0)  # edema from barely visible to bright on FLAIR
    contrast[[GM, DEEP_GM], 1:3] *= rng.uniform(0.85, 1.1)  # grey-white contrast of the T1 sequence
    contrast[[ENHANCING, VESSEL], 2] = contrast[[ENHANCING, VESSEL], 1] * rng.uniform(1.2, 2.3)  # dose, timing
    contrast[[EDEMA, NECROSIS, CORE], 3] *= rng.uniform(0.8, 1.15)  # T2 weighting (echo time)
    return contrast


def _acquire(signal: np.ndarray, brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One modality as a scanner records it: its own resolution (2D sequences have thick slices),
    bias field, Rician noise level, and an arbitrary scale that is not even linear between scanners
    (the non-standardness that histogram standardisation exists for): a power law, gamma 0.6-1.7."""
    in_plane = rng.uniform(0.4, 0.9)
    through_plane = rng.uniform(1.1, 2.0) if rng.random() < 0.5 else in_plane
    blurred = ndimage.gaussian_filter(signal, (through_plane, in_plane, in_plane)).astype(np.float32)
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in SHAPE)
    terms = [z[:, None, None], y[None, :, None], x[None, None, :]]
    terms += [a * b for i, a in enumerate(terms) for b in terms[i:]]
    strength = rng.uniform(0.04, 0.22)
    bias = np.exp(sum(rng.normal(0, strength) * term for term in terms))
    noisy = rician(blurred * bias, float(rng.uniform(0.012, 0.065)), rng)
    gamma = np.exp(rng.uniform(np.log(0.6), np.log(1.7)))
    return np.rint(noisy**gamma * brain * rng.uniform(150, 600)).astype(np.int16)


def _tissues(rng: np.random.Generator) -> np.ndarray:
    """The healthy brain as a map of tissue codes (0 outside); its size and atrophy vary by patient."""
    center = np.array(SHAPE, dtype=float) / 2 + rng.uniform(-1.5, 1.5, size=3)
    radii = np.array([rng.uniform(15, 17.5), rng.uniform(26, 29.5), rng.uniform(21, 24.5)]) * rng.uniform(0.86, 1.04)
    atrophy = rng.uniform(0, 1)  # age: wider sulci, larger ventricles, more white-matter lesions
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    widening = 1 + 0.1 * (y - center[1]) / radii[1]  # wider at the back
    level = ((z - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2
    level = level + ((x - center[2]) / (radii[2] * widening)) ** 2
    brain = level + 0.06 * smooth_noise(SHAPE, 3.0, rng) < 1.0
    depth = ndimage.distance_transform_edt(brain)

    folds = np.abs(smooth_noise(SHAPE, 1.5, rng))
    sulci = folds < 0.08 + 0.2 * atrophy
    midline = np.abs(x - center[2] - 1.5 * np.sin((y - center[1]) / radii[1] * 2)) < 0.8
    csf = brain & ((depth <= 1.2) | ((depth < 6) & sulci) | (midline & (depth < 10)))
    grey = brain & ((depth < 3.5) | ((depth < 7) & (folds < 0.45)))
    tissue = np.where(brain, WM, 0).astype(np.uint8)
    tissue[grey] = GM
    tissue[csf] = CSF

    shift = (x - center[2]) / radii[2]
    for side in (-1, 1):
        nucleus = ellipsoid(SHAPE, (center[0] - 0.05 * radii[0], center[1] + 0.05 * radii[1],
                                    center[2] + side * 0.22 * radii[2]), tuple(radii * [0.22, 0.16, 0.13]))
        tissue[brain & (nucleus < 1)] = DEEP_GM
    size = rng.uniform(0.8, 1.2) + 0.8 * atrophy
    ventricles = np.zeros(SHAPE, dtype=bool)
    for side in (-1, 1):
        middle = (center[0] + 0.15 * radii[0], center[1], center[2] + side * 0.17 * radii[2])
        ventricle = ellipsoid(SHAPE, middle, tuple(radii * [0.25 * size, 0.42, 0.09 * size]))
        ventricles |= ventricle < 1
        for tip in (-1, 1):  # periventricular caps
            if rng.random() < 0.3 + 0.6 * atrophy:
                cap = ellipsoid(SHAPE, (center[0] + 0.15 * radii[0], center[1] + tip * 0.45 * radii[1],
                                        center[2] + side * 0.17 * radii[2]), (3.0, 3.5, 3.0))
                tissue[brain & (cap < 1 + 0.3 * folds) & (tissue == WM)] = WMH
    white = np.argwhere((tissue == WM) & (depth > 5))
    for _ in range(int(rng.integers(0, 4 + 14 * atrophy))):  # punctate hyperintensities
        spot = lobulated_blob(SHAPE, tuple(white[rng.integers(len(white))]), rng.uniform(1.0, 3.0), rng)
        tissue[spot & (tissue == WM)] = WMH
    tissue[brain & ventricles] = CSF
    plexus = ventricles & (np.abs(shift) < 0.3) & (y - center[1] > 0.15 * radii[1]) & (folds > 0.8)
    tissue[plexus] = VESSEL
    tissue[brain & midline & (depth < 2) & (z > center[0])] = VESSEL  # superior sagittal sinus
    return tissue


def _tumour(tissue: np.ndarray, rng: np.random.Generator, low_grade: bool) -> np.ndarray:
    """Paint one tumour, sometimes with 1-2 smaller foci (multifocal), into ``tissue`` (in place) and
    return its BraTS labels. Sizes span 5-13 mm in radius (log-uniform), shapes round to lobulated."""
    seg = np.zeros(SHAPE, dtype=np.uint8)
    radius = float(np.exp(rng.uniform(np.log(5), np.log(13))))
    lobulation = rng.uniform(0.2, 0.8)
    foci = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
    for focus in range(foci):
        size = radius if focus == 0 else max(radius * rng.uniform(0.4, 0.8), 3.5)
        _lesion(tissue, seg, rng, low_grade, size, lobulation)
    return seg


def _lesion(tissue: np.ndarray, seg: np.ndarray, rng: np.random.Generator, low_grade: bool,
            radius: float, lobulation: float) -> None:
    """Paint one nested lesion (edema around its core) into ``tissue`` and ``seg`` (in place)."""
    brain = tissue > 0
    inside = np.argwhere((ndimage.distance_transform_edt(brain) > 6) & (tissue != CSF))
    center = inside[rng.integers(len(inside))].astype(float)
    # edema spreads along white matter: its outer part spares cortex and CSF
    outer = lobulated_blob(SHAPE, tuple(center), radius, rng, lobulation=lobulation)
    inner = lobulated_blob(SHAPE, tuple(center), radius * rng.uniform(0.5, 0.9), rng, lobulation=lobulation)
    edema = brain & (inner | (outer & (tissue != GM) & (tissue != CSF))) & (seg == 0)
    seg[edema] = 2
    tissue[edema] = EDEMA
    core_center = tuple(center + rng.normal(0, 1.5, size=3))
    if low_grade:
        core = brain & lobulated_blob(SHAPE, core_center, radius * rng.uniform(0.4, 0.75), rng)
        seg[core], tissue[core] = 1, CORE
        if rng.random() < 0.3:
            patch = core & lobulated_blob(SHAPE, core_center, radius * 0.2, rng)
            seg[patch], tissue[patch] = 4, ENHANCING
        return
    enhancing_radius = radius * rng.uniform(0.3, 0.65)
    enhancing = brain & lobulated_blob(SHAPE, core_center, enhancing_radius, rng)
    seg[enhancing], tissue[enhancing] = 4, ENHANCING
    if rng.random() < 0.8:
        necrosis_radius = enhancing_radius * rng.uniform(0.45, 0.7)
        necrosis = enhancing & lobulated_blob(SHAPE, core_center, necrosis_radius, rng)
        seg[necrosis], tissue[necrosis] = 1, NECROSIS
