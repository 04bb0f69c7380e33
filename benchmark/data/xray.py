"""Chest radiographs in the ChestX-ray14 layout, and the 2D pretraining pool drawn from them.

Facts of the NIH ChestX-ray14 release (Wang et al. 2017) this reader relies on:

- ``images/<patient:08d>_<follow-up:03d>.png``: 1024 x 1024 8-bit grey PNGs; a few are RGBA in the
  real release, read here as their first channel (logged, one line per image).
- ``Data_Entry_2017.csv``: one row per image, header ``Image Index,Finding Labels,Follow-up #,Patient ID,
  Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],``
  (the bracketed names hold a comma, so they are two columns each, and the line ends with a comma: a
  last, empty column). Only ``Image Index`` and ``Patient ID`` are read; rows may or may not end with
  the empty column.
- ``train_val_list.txt`` and ``test_list.txt``: one image file name per line, split by patient.

Genesis Chest X-ray was pretrained on the training images, scaled to [0, 1] by dividing by 255 (no
clipping). Choices made here:

- Validation share: the patients of ``train_val_list.txt`` whose id (as written in the CSV) has a
  CRC-32 that falls in the lowest ``VALIDATION_PERCENT`` percent (``crc32 % 100 < 10``) are the
  validation split, the others the training split. A patient's membership depends on the id alone,
  so it never changes when images or patients are added; no patient is in both.
- ``test_list.txt`` is never used for pretraining: asking for its patches is a UserError.
- Scale: an image is first downsampled by the integer factor ``short side // WORKING_SIDE``
  (block means; 1 for images under twice ``WORKING_SIDE``), so the real 1024-pixel images become
  256 x 256 (4 x 4 blocks) and the 128-pixel built-in phantom stays as it is; patches are then drawn
  at uniformly random positions, each image from a generator of its own (the seed and the CRC-32 of
  its file name), so an image's patches do not depend on which other images are present. A patch
  larger than a downsampled image is a UserError naming the image.
- Strict: a missing CSV or list, a malformed row, an image listed twice, listed in both lists, listed
  but absent from the CSV (or in the CSV but in no list), a patient in both lists, an image listed but
  not in ``images/``, a file that is not a whole 8-bit PNG: a one-line UserError naming the file.
  PNGs are read with SimpleITK's PNG reader only (libpng stops at a truncated or corrupt stream; a
  file of another format, a 3-D volume included, is not a PNG), and one whose header gives more than
  ``MAX_PIXELS`` pixels x channels is refused before its pixels are decoded.
"""

from __future__ import annotations

import csv
import io
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmark.data.files import read_text
from benchmark.data.imageio import check_voxel_count, read_header
from benchmark.errors import UserError

log = logging.getLogger(__name__)

IMAGES = "images"
DATA_ENTRY = "Data_Entry_2017.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
DATA_ENTRY_HEADER = (
    "Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
    "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]", "",
)
IMAGE_COLUMN, PATIENT_COLUMN = "Image Index", "Patient ID"
VALIDATION_PERCENT = 10
WORKING_SIDE = 256
POOL_SPLITS = ("train", "val")
GREY_LEVELS = 255.0
MAX_PIXELS = 2**26  # pixels x channels of one radiograph (8192 x 8192 grey; ChestX-ray14's are 1024 x 1024)


# --- the lists and the CSV -----------------------------------------------------------------------


def read_image_list(path: Path) -> list[str]:
    """The image file names of a list file, one per line (blank lines skipped); UserError if the
    file is missing, names an image twice, or holds a name that is not a plain ``.png`` file name."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found (the ChestX-ray14 layout needs {TRAIN_VAL_LIST} and {TEST_LIST})")
    names: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(read_text(path, "the image list").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if Path(name).name != name or not name.lower().endswith(".png"):
            raise UserError(f"{path}: line {number}: {name!r} is not an image file name (<name>.png)")
        if name in seen:
            raise UserError(f"{path}: line {number}: {name} is listed twice")
        seen.add(name)
        names.append(name)
    return names


def read_patients(path: Path) -> dict[str, str]:
    """Image file name -> patient id, from ``Data_Entry_2017.csv``; UserError if the file is missing,
    lacks the ``Image Index`` or ``Patient ID`` column, has a short row, an empty id or a repeated image."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found (the ChestX-ray14 image table)")
    text = read_text(path, "the image table", encoding="utf-8-sig")  # -sig: a byte-order mark is not a name
    try:
        return _patients_of_table(path, csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise UserError(f"{path}: not a readable CSV table ({error})") from error


def _patients_of_table(path: Path, rows: Iterator[list[str]]) -> dict[str, str]:
    """Image file name -> patient id from the table's rows (the header first)."""
    header = [name.strip() for name in next(rows, [])]
    missing = [name for name in (IMAGE_COLUMN, PATIENT_COLUMN) if name not in header]
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)} in the header (expected the "
                        f"ChestX-ray14 header {','.join(DATA_ENTRY_HEADER)})")
    image_at, patient_at = header.index(IMAGE_COLUMN), header.index(PATIENT_COLUMN)
    patients: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(image_at, patient_at):
            raise UserError(f"{path}: line {number}: {len(row)} fields, fewer than the header's columns")
        image, patient = row[image_at].strip(), row[patient_at].strip()
        if not image or not patient:
            raise UserError(f"{path}: line {number}: empty {IMAGE_COLUMN if not image else PATIENT_COLUMN}")
        if image in patients:
            raise UserError(f"{path}: line {number}: image {image} appears twice")
        patients[image] = patient
    return patients


def is_validation_patient(patient: str) -> bool:
    """Whether a patient of the train/val list belongs to the pretraining validation share."""
    return zlib.crc32(patient.encode()) % 100 < VALIDATION_PERCENT


def _examples(names: list[str] | set[str]) -> str:
    ordered = sorted(names)
    return f"{len(ordered)} image(s) ({', '.join(ordered[:3])}{', ...' if len(ordered) > 3 else ''})"


def xray_splits(root: Path) -> dict[str, list[str]]:
    """The image names of the ``train``, ``val`` and ``test`` splits (file order), checked for the
    consistency of the lists and the CSV (the module docstring says what a UserError names)."""
    root = Path(root)
    train_val = read_image_list(root / TRAIN_VAL_LIST)
    test = read_image_list(root / TEST_LIST)
    patients = read_patients(root / DATA_ENTRY)
    both = set(train_val) & set(test)
    if both:
        raise UserError(f"{root / TEST_LIST}: {_examples(both)} also in {TRAIN_VAL_LIST}")
    unknown = (set(train_val) | set(test)) - patients.keys()
    if unknown:
        raise UserError(f"{root / DATA_ENTRY}: no row for {_examples(unknown)} of the image lists")
    unlisted = patients.keys() - set(train_val) - set(test)
    if unlisted:
        raise UserError(f"{root / DATA_ENTRY}: {_examples(unlisted)} in neither {TRAIN_VAL_LIST} nor {TEST_LIST}")
    shared = {patients[name] for name in train_val} & {patients[name] for name in test}
    if shared:
        patient = min(shared)
        raise UserError(f"{root / TEST_LIST}: patient {patient} also has images in {TRAIN_VAL_LIST} "
                        f"({len(shared)} patient(s) in both lists; the split must be by patient)")
    val = [name for name in train_val if is_validation_patient(patients[name])]
    train = [name for name in train_val if not is_validation_patient(patients[name])]
    return {"train": train, "val": val, "test": test}


def pool_images(root: Path, split: str) -> list[Path]:
    """The image files of a pretraining split (``train`` or ``val``), each checked to exist."""
    if split not in POOL_SPLITS:
        raise UserError(f"X-ray pretraining split {split!r}: use train or val ({TEST_LIST} is never used "
                        "for pretraining)")
    root = Path(root)
    names = xray_splits(root)[split]
    if not names:
        raise UserError(f"{root / TRAIN_VAL_LIST}: no images in the {split} split (the validation share is "
                        f"the patients whose id's CRC-32 % 100 < {VALIDATION_PERCENT})")
    paths = [root / IMAGES / name for name in names]
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: file not found (listed in {TRAIN_VAL_LIST})")
    return paths


# --- the images ----------------------------------------------------------------------------------


def read_radiograph(path: Path) -> np.ndarray:
    """The grey levels of an 8-bit PNG as a (y, x) uint8 array; the first channel of a colour
    (or grey + alpha) PNG, logged. UserError naming the file if it is absent, not a whole PNG, or
    not 8-bit."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        reader = read_header(path, "PNGImageIO")
        check_voxel_count(path, reader, MAX_PIXELS, "pixels")
        image = reader.Execute()
    except RuntimeError as error:
        raise UserError(f"{path}: not a readable PNG (truncated, corrupt or another format)") from error
    if image.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkVectorUInt8):
        raise UserError(f"{path}: {image.GetPixelIDTypeAsString()} pixels; ChestX-ray14 images are 8-bit grey")
    pixels = sitk.GetArrayFromImage(image)
    channels = image.GetNumberOfComponentsPerPixel()
    if channels > 1:
        log.info("%s: %d channels; the first is used as the grey level", path, channels)
        pixels = pixels[..., 0]
    return np.ascontiguousarray(pixels)


def downsample(pixels: np.ndarray) -> np.ndarray:
    """Block means over ``short side // WORKING_SIDE`` squared pixels (at least 1: unchanged), float32;
    the rows and columns beyond the last whole block are dropped."""
    factor = max(1, min(pixels.shape) // WORKING_SIDE)
    rows, columns = pixels.shape[0] // factor, pixels.shape[1] // factor
    blocks = pixels[: rows * factor, : columns * factor].reshape(rows, factor, columns, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def random_patches(image: np.ndarray, patch: tuple[int, int], count: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` (y, x) patches of ``image`` at uniformly random positions (the image must hold one)."""
    patches = []
    for _ in range(count):
        top = int(rng.integers(0, image.shape[0] - patch[0] + 1))
        left = int(rng.integers(0, image.shape[1] - patch[1] + 1))
        patches.append(image[top: top + patch[0], left: left + patch[1]])
    return patches


def _check_pool_request(patch: tuple[int, int], patches_per_image: int) -> tuple[int, int]:
    patch = tuple(int(side) for side in patch)
    if len(patch) != 2 or min(patch) < 1:
        raise ValueError(f"an X-ray patch is (y, x) with positive sides, not {patch}")
    if patches_per_image < 1:
        raise ValueError(f"patches_per_image must be at least 1, not {patches_per_image}")
    return patch


def load_xray_pool(root: Path, patch: tuple[int, int], split: str, patches_per_image: int, seed: int) -> np.ndarray:
    """Patches ``(N, 1, 1, Y, X)`` float32 in [0, 1] (grey level / 255) from the images of ``split``
    (``train`` or ``val``) of a ChestX-ray14-layout folder; the 1 in Z lets the 3D pretraining
    engine carry them."""
    patch = _check_pool_request(patch, patches_per_image)
    patches: list[np.ndarray] = []
    for path in pool_images(root, split):
        image = downsample(read_radiograph(path)) / np.float32(GREY_LEVELS)
        if image.shape[0] < patch[0] or image.shape[1] < patch[1]:
            raise UserError(f"{path}: {image.shape[0]} x {image.shape[1]} pixels after downsampling, smaller "
                            f"than the {patch[0]} x {patch[1]} patch")
        rng = np.random.default_rng([seed, zlib.crc32(path.name.encode())])
        patches += random_patches(image, patch, patches_per_image, rng)
    return np.stack(patches)[:, None, None]


def verify_xray_root(root: Path) -> list[str]:
    """Problems of a ChestX-ray14-layout pretraining folder, one line each: the first fault of the lists
    and the CSV (nothing more can be checked without them), else an empty split and every training or
    validation image that is absent or not a whole 8-bit PNG."""
    try:
        splits = xray_splits(root)
    except UserError as error:
        return [str(error)]
    problems = [f"{Path(root) / TRAIN_VAL_LIST}: no images in the {split} split"
                for split in POOL_SPLITS if not splits[split]]
    for name in splits["train"] + splits["val"]:
        try:
            read_radiograph(Path(root) / IMAGES / name)
        except UserError as error:
            problems.append(str(error))
    return problems
