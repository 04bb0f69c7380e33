"""Chest-radiograph phantom in the ChestX-ray14 layout: digitally reconstructed radiographs (DRRs)
of the chest-CT phantom.

A DRR integrates the CT's linear attenuation along the anterior-posterior axis:
``mu = MU_WATER_PER_MM * (1 + HU / 1000)``, clipped at 0 (air), summed along y (the AP axis of the
phantom's (z, y, x) array: the heart is drawn at low y, the spine at high y) times the y spacing,
and mapped to grey levels by the fixed monotone ``255 * (1 - exp(-EXPOSURE * line integral))``:
air is black, the lungs dark, soft tissue and bone bright, as on a radiograph. The phantom's anatomy
is drawn in its array's frame, so the projection uses the array's axes whatever the direction matrix.

The (z, x) projection is resampled (linear) onto a square ``SIZE`` x ``SIZE`` detector whose side is
the scan's longer extent (z or x), in PA orientation: the patient's head up (high z is the lung
apex), the array's x along the columns. The CT covers the chest only, so beyond its z range the
detector sees the projection's first and last rows continued (the abdomen below, the apices above),
not black bands that radiographs do not have. 128 pixels (1.2-1.7 mm each) keep the phantom small
(about 150 kB) and fast (about 4 s on one core, nearly all of it building the 24 CTs).

Patients 1-24 each have one CT (scan ``FIRST_INDEX + patient - 1`` of the chest phantom's generator:
never one of the chest phantom's 30 scans nor the opacity scans, so no CT of a target task is seen
in pretraining); every fourth patient also has a follow-up image, the same CT with the patient
placed up to ``MAX_SHIFT_MM`` differently: 30 images. Patients 19-24 (a quarter, as the release's
test list holds about 23% of the images) form ``test_list.txt``, the others ``train_val_list.txt``;
the validation share that ``benchmark.data.xray`` draws from it holds patients 4, 9 and 13.
``Finding Labels`` is ``Nodule`` when the CT has a solid or calcified nodule of at least
``VISIBLE_NODULE_MM`` across (smaller and ground-glass nodules are rarely seen on radiographs),
else ``No Finding``; age, sex and a follow-up's shift come from a generator of the patient's own.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from benchmark.data.phantoms.chest import ChestScan, build_chest_scan
from benchmark.data.xray import DATA_ENTRY, DATA_ENTRY_HEADER, IMAGES, TEST_LIST, TRAIN_VAL_LIST

MU_WATER_PER_MM = 0.02  # water's linear attenuation at about 60 keV
EXPOSURE = 0.5  # k of the grey-level transform: a typical 130 mm of soft tissue maps to about 180
SIZE = 128
PATIENTS = 24
TEST_PATIENTS = range(19, PATIENTS + 1)
FOLLOW_UP_EVERY = 4
FIRST_INDEX = 2000
VISIBLE_NODULE_MM = 14.0
MAX_SHIFT_MM = 8.0


def attenuation(hu: np.ndarray) -> np.ndarray:
    """Linear attenuation per mm of Hounsfield units (air and below: 0)."""
    return np.clip(MU_WATER_PER_MM * (1.0 + np.asarray(hu, np.float32) / 1000.0), 0.0, None)


def line_integrals(mu: np.ndarray, spacing_y: float) -> np.ndarray:
    """The (z, x) sums of a (z, y, x) attenuation volume along y (AP), times the y spacing in mm."""
    return mu.sum(axis=1, dtype=np.float64) * spacing_y


def grey_levels(line_integral: np.ndarray) -> np.ndarray:
    """The fixed monotone map of line integrals to 8-bit grey: ``255 * (1 - exp(-EXPOSURE * L))``."""
    return np.rint(255.0 * (1.0 - np.exp(-EXPOSURE * np.asarray(line_integral)))).astype(np.uint8)


def on_detector(projection: np.ndarray, spacing_zx: tuple[float, float],
                shift_mm: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, float]:
    """A (z, x) projection resampled onto the square ``SIZE`` x ``SIZE`` detector, head up, centred on
    the projection's centre plus ``shift_mm`` (z, x); the edge rows and columns continue beyond it.
    Returns the image and its pixel size in mm."""
    extent = np.asarray(projection.shape, float) * spacing_zx
    pixel = float(extent.max()) / SIZE
    offsets = (np.arange(SIZE) + 0.5) * pixel - extent.max() / 2
    z_mm = extent[0] / 2 + shift_mm[0] - offsets  # the top row is the highest z: the head
    x_mm = extent[1] / 2 + shift_mm[1] + offsets
    rows = np.broadcast_to((z_mm / spacing_zx[0] - 0.5)[:, None], (SIZE, SIZE))
    columns = np.broadcast_to((x_mm / spacing_zx[1] - 0.5)[None, :], (SIZE, SIZE))
    return ndimage.map_coordinates(projection, [rows, columns], order=1, mode="nearest"), pixel


def radiograph(scan: ChestScan, shift_mm: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, float]:
    """The PA DRR of a phantom CT as a ``SIZE`` x ``SIZE`` uint8 image, and its pixel size in mm."""
    spacing_z, spacing_y, spacing_x = scan.image.GetSpacing()[::-1]
    mu = attenuation(sitk.GetArrayViewFromImage(scan.image))
    image, pixel = on_detector(line_integrals(mu, spacing_y), (spacing_z, spacing_x), shift_mm)
    return grey_levels(image), pixel


def patient_scan(seed: int, patient: int) -> ChestScan:
    """The CT of patient ``patient`` (1-24) for ``seed``."""
    return build_chest_scan(seed, FIRST_INDEX + patient - 1)


def finding(scan: ChestScan) -> str:
    """``Nodule`` if the CT holds a solid or calcified nodule of ``VISIBLE_NODULE_MM`` or more, else ``No Finding``."""
    visible = [n for n in scan.nodules if n.kind != "ground-glass" and 2 * n.radius_mm >= VISIBLE_NODULE_MM]
    return "Nodule" if visible else "No Finding"


def image_name(patient: int, follow_up: int) -> str:
    return f"{patient:08d}_{follow_up:03d}.png"


def write_patient(root: Path, seed: int, patient: int) -> list[list[str]]:
    """Write one patient's images under ``root/images``; their ``Data_Entry_2017.csv`` rows."""
    scan = patient_scan(seed, patient)
    rng = np.random.default_rng([seed, FIRST_INDEX + patient - 1, 1])
    age, sex = int(rng.integers(20, 81)), str(rng.choice(["M", "F"]))
    visits = 2 if patient % FOLLOW_UP_EVERY == 0 else 1
    rows = []
    for follow_up in range(visits):
        shift = (0.0, 0.0) if follow_up == 0 else tuple(rng.uniform(-MAX_SHIFT_MM, MAX_SHIFT_MM, 2))
        pixels, pixel_mm = radiograph(scan, shift)
        name = image_name(patient, follow_up)
        sitk.WriteImage(sitk.GetImageFromArray(pixels), str(root / IMAGES / name))
        rows.append([name, finding(scan), str(follow_up), str(patient), str(age + follow_up), sex, "PA",
                     str(SIZE), str(SIZE), f"{pixel_mm:.3f}", f"{pixel_mm:.3f}", ""])
    return rows


def write_radiograph_phantom(root: Path, seed: int) -> None:
    """ChestX-ray14 layout: ``images/*.png``, ``Data_Entry_2017.csv``, ``train_val_list.txt``, ``test_list.txt``."""
    root = Path(root)
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    rows = [row for patient in range(1, PATIENTS + 1) for row in write_patient(root, seed, patient)]
    with open(root / DATA_ENTRY, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(DATA_ENTRY_HEADER)
        writer.writerows(rows)
    test = [row[0] for row in rows if int(row[3]) in TEST_PATIENTS]
    train_val = [row[0] for row in rows if int(row[3]) not in TEST_PATIENTS]
    (root / TRAIN_VAL_LIST).write_text("".join(f"{name}\n" for name in train_val), encoding="utf-8")
    (root / TEST_LIST).write_text("".join(f"{name}\n" for name in test), encoding="utf-8")
