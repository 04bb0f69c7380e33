"""LIDC-IDRI as downloaded from TCIA: DICOM series and the radiologists' XML reads -> nodule crops.

Layout: ``LIDC-IDRI-NNNN/<study>/<series>/*.dcm`` with the series' reads in an XML file
(``LidcReadMessage``) in the same folder. Up to four radiologists read each scan; each
outlined every nodule of 3 mm or more slice by slice (``roi``: ``imageZposition``,
``inclusion``, ``edgeMap`` points in pixel columns and rows); smaller nodules have a
single point and are skipped. Reads of one nodule by different readers are grouped when
their centroids lie within ``GROUP_DISTANCE_MM`` (a reader outlines a nodule once), and
the nodule's mask is the usual 50% consensus: the voxels marked by at least half of the
readers who outlined it. Each nodule gives a 64x64x32 (x, y, z) crop at 1 mm isotropic,
centred on the consensus centroid, resampled straight from the scan (linear for the
image, nearest neighbour for the mask; outside the scan is air). Crops are kept in the
preprocessing cache, so the DICOM files are read once.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from benchmark.data import imageio
from benchmark.data.cache import Entry, cached, windowed_hu
from benchmark.data.imageio import HU_MIN
from benchmark.data.verify import Problem, progress
from benchmark.errors import UserError

PATIENT = re.compile(r"LIDC-IDRI-\d{4}")
NAMESPACE = "{http://www.nih.gov}"
GROUP_DISTANCE_MM = 10.0
CONSENSUS = 0.5
CROP_SIZE_XYZ = (64, 64, 32)
SPLIT_OF_PATIENT = (("train", 510), ("val", 610))  # patient numbers <= 510 train, <= 610 val, else test
IMAGE_POSITION = "0020|0032"  # DICOM Image Position (Patient): a slice's corner in mm
SERIES_UID = "0020|000e"  # DICOM Series Instance UID: LUNA16 names its scans by it
GAP_TOLERANCE = 0.5  # slice gaps may differ from their median by this fraction of it

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Roi:
    z_mm: float
    inclusion: bool
    points: list[tuple[int, int]]  # (column x, row y)


def is_lidc_layout(root: Path) -> bool:
    return any(PATIENT.fullmatch(p.name) and p.is_dir() for p in Path(root).iterdir()) if Path(root).is_dir() else False


def lidc_scans(root: Path) -> list[tuple[str, Path]]:
    """(patient, read XML) of every scan with reads under ``root/LIDC-IDRI-NNNN/``, in order."""
    scans = []
    for patient in sorted(p for p in Path(root).iterdir() if PATIENT.fullmatch(p.name) and p.is_dir()):
        scans += [(patient.name, xml) for xml in sorted(patient.rglob("*.xml")) if _is_read_message(xml)]
    return scans


def default_split(patient: str) -> str:
    """Our patient-level split with the paper's counts: LIDC-IDRI-0001..0510 train, 0511..0610 val, rest test."""
    number = int(patient.rsplit("-", 1)[1])
    return next((split for split, last in SPLIT_OF_PATIENT if number <= last), "test")


def _is_read_message(path: Path) -> bool:
    with open(path, "rb") as handle:
        return b"LidcReadMessage" in handle.read(4096)


def read_series(folder: Path) -> sitk.Image:
    """The CT series in ``folder`` (the one with most slices), its series UID in its metadata (``SERIES_UID``);
    UserError if a slice cannot be read or one is missing, as either would shift every roi beyond it."""
    reader = sitk.ImageSeriesReader()
    series = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in reader.GetGDCMSeriesIDs(str(folder))}
    check_slices_readable(folder, list(series.values()))
    if not series:
        raise UserError(f"{folder}: no DICOM series")
    uid = max(series, key=lambda sid: len(series[sid]))
    files = series[uid]
    check_series_size(folder, files)
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise UserError(f"{folder}: cannot read the DICOM series ({str(error).strip().splitlines()[-1]})") from error
    heights = [_slice_height(image, reader, k, files[k]) for k in range(len(files))]
    check_slice_gaps(folder, np.array(heights))
    image.SetMetaData(SERIES_UID, uid)
    return image


def check_series_size(folder: Path, files: tuple[str, ...]) -> None:
    """UserError if the series' slices (the first one's header, times their number) hold more than
    ``imageio.MAX_VOXELS``: checked before the series is read, as for a single image."""
    header = sitk.ImageFileReader()
    header.SetFileName(files[0])
    try:
        header.ReadImageInformation()
    except RuntimeError as error:
        raise UserError(f"{files[0]}: not a readable DICOM slice (truncated or damaged)") from error
    count = math.prod(header.GetSize()[:2]) * header.GetNumberOfComponents() * len(files)
    if count > imageio.MAX_VOXELS:
        raise UserError(f"{folder}: {len(files)} slices of {header.GetSize()[0]} x {header.GetSize()[1]} x "
                        f"{header.GetNumberOfComponents()} component(s) are {count} voxels, more than the "
                        f"{imageio.MAX_VOXELS} an image may hold")


def check_slices_readable(folder: Path, series: list[tuple[str, ...]]) -> None:
    """Every ``*.dcm`` file in ``folder`` must belong to a series: GDCM silently leaves out a file it
    cannot parse (a truncated or damaged slice), and the series would load without that slice."""
    listed = {Path(name).name for files in series for name in files}
    unread = [path for path in sorted(Path(folder).glob("*.dcm")) if path.name not in listed]
    if unread:
        raise UserError(f"{unread[0]}: not a readable DICOM slice (truncated or damaged)")


def _slice_height(image: sitk.Image, reader: sitk.ImageSeriesReader, k: int, file: str) -> float:
    """Slice ``k``'s position (mm) along the series' slice normal."""
    try:
        position = [float(v) for v in reader.GetMetaData(k, IMAGE_POSITION).split("\\")]
    except (RuntimeError, ValueError):
        position = []
    if len(position) != 3 or not all(map(math.isfinite, position)):
        raise UserError(f"{file}: no valid Image Position (Patient) ({IMAGE_POSITION})")
    return float(np.array(image.GetDirection()).reshape(3, 3)[:, 2] @ position)


def check_slice_gaps(folder: Path, heights: np.ndarray) -> None:
    """The slices must be equally spaced (the image has one z spacing): a gap far from the median is a
    missing or repeated slice."""
    steps = np.diff(heights)
    if len(steps) == 0:
        return
    median = float(np.median(steps))
    worst = int(np.argmax(np.abs(steps - median)))
    if median == 0 or abs(steps[worst] - median) > GAP_TOLERANCE * abs(median):
        raise UserError(f"{folder}: slices at {heights[worst]:g} and {heights[worst + 1]:g} mm are "
                        f"{abs(steps[worst]):g} mm apart, the series' median gap is {abs(median):g} mm "
                        "(a missing or repeated slice)")


def series_files(xml: Path) -> list[Path]:
    return sorted(Path(xml).parent.glob("*.dcm"))


def read_reads(xml: Path) -> list[list[list[Roi]]]:
    """Per reader, per outlined nodule, its rois (nodules with a single point, < 3 mm, left out)."""
    try:
        tree = ElementTree.parse(xml)
    except ElementTree.ParseError as error:
        raise UserError(f"{xml}: not a readable LIDC XML file ({error})") from error
    readers = []
    for session in tree.getroot().iter(f"{NAMESPACE}readingSession"):
        nodules = []
        for nodule in session.iter(f"{NAMESPACE}unblindedReadNodule"):
            rois = [_roi(roi, xml) for roi in nodule.iter(f"{NAMESPACE}roi")]
            if sum(len(roi.points) for roi in rois) > 1:
                nodules.append(rois)
        readers.append(nodules)
    return readers


def _roi(element: ElementTree.Element, xml: Path) -> Roi:
    try:
        z = float(element.findtext(f"{NAMESPACE}imageZposition"))
        points = [(int(edge.findtext(f"{NAMESPACE}xCoord")), int(edge.findtext(f"{NAMESPACE}yCoord")))
                  for edge in element.iter(f"{NAMESPACE}edgeMap")]
    except (TypeError, ValueError):
        raise UserError(f"{xml}: an roi without a numeric imageZposition or edgeMap coordinates") from None
    if not math.isfinite(z):
        raise UserError(f"{xml}: an roi at imageZposition {z}, not a finite number")
    return Roi(z, (element.findtext(f"{NAMESPACE}inclusion") or "TRUE").strip().upper() == "TRUE", points)


def read_mask(image: sitk.Image, rois: list[Roi], xml: Path) -> np.ndarray:
    """One reader's outline of one nodule as a (z, y, x) mask: each contour filled, exclusions removed."""
    size_x, size_y, size_z = image.GetSize()
    slice_z = np.array([image.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(size_z)])
    tolerance = max(abs(image.GetSpacing()[2]) / 2, 0.01)
    mask = np.zeros((size_z, size_y, size_x), bool)
    for roi in sorted(rois, key=lambda r: not r.inclusion):  # inclusions first, then cut the exclusions
        k = int(np.argmin(np.abs(slice_z - roi.z_mm)))
        if abs(slice_z[k] - roi.z_mm) > tolerance:
            raise UserError(f"{xml}: an roi at z = {roi.z_mm:g} mm lies on no slice of the series")
        outline = np.zeros((size_y, size_x), bool)
        for x, y in roi.points:
            if not (0 <= x < size_x and 0 <= y < size_y):
                raise UserError(f"{xml}: edge point ({x}, {y}) lies outside the {size_x}x{size_y} slice")
            outline[y, x] = True
        filled = ndimage.binary_fill_holes(outline)
        mask[k] = mask[k] | filled if roi.inclusion else mask[k] & ~filled
    return mask


def _centroid_mm(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    index = np.array(ndimage.center_of_mass(mask))[::-1]
    return np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(float(i) for i in index)))


def group_reads(image: sitk.Image, readers: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Reads of the same nodule together: centroids within GROUP_DISTANCE_MM, one read per reader."""
    groups: list[tuple[list[np.ndarray], list[np.ndarray], set[int]]] = []  # masks, centroids, readers
    for reader, masks in enumerate(readers):
        for mask in masks:
            centre = _centroid_mm(image, mask)
            match = next((g for g in groups if reader not in g[2]
                          and np.linalg.norm(np.mean(g[1], axis=0) - centre) <= GROUP_DISTANCE_MM), None)
            if match is None:
                groups.append(([mask], [centre], {reader}))
            else:
                match[0].append(mask)
                match[1].append(centre)
                match[2].add(reader)
    return [masks for masks, _, _ in groups]


def consensus(masks: list[np.ndarray]) -> np.ndarray:
    """Voxels marked by at least half of the readers who outlined the nodule."""
    return np.sum(masks, axis=0) >= CONSENSUS * len(masks)


def crop_grid(image: sitk.Image, centre_mm: np.ndarray) -> sitk.Image:
    """An empty 1 mm, 64x64x32 grid in the scan's orientation whose voxel (32, 32, 16) sits on ``centre_mm``."""
    grid = sitk.Image(CROP_SIZE_XYZ, sitk.sitkUInt8)
    grid.SetSpacing((1.0, 1.0, 1.0))
    grid.SetDirection(image.GetDirection())
    half = np.array([s // 2 for s in CROP_SIZE_XYZ], float)
    grid.SetOrigin(tuple(centre_mm - np.array(image.GetDirection()).reshape(3, 3) @ half))
    return grid


def outlined_masks(image: sitk.Image, nodules: list[list[Roi]], xml: Path) -> list[np.ndarray]:
    """One reader's nodule masks. A nodule that marks no voxel (only exclusion rois) has no centroid to
    group or crop on: like a nodule under 3 mm it is left out, with a warning as the read is faulty."""
    masks = [read_mask(image, rois, xml) for rois in nodules]
    if not all(mask.any() for mask in masks):
        log.warning("%s: %d nodule(s) of a reader mark no voxel (only exclusion rois), skipped", xml,
                    sum(not mask.any() for mask in masks))
    return [mask for mask in masks if mask.any()]


def nodule_crop(image: sitk.Image, agreed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(HU, mask) crops centred on the consensus mask ``agreed`` (see ``crop_grid``)."""
    grid = crop_grid(image, _centroid_mm(image, agreed))
    label = sitk.GetImageFromArray(agreed.astype(np.uint8))
    label.CopyInformation(image)
    hu = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, HU_MIN, sitk.sitkFloat32)
    mask = sitk.Resample(label, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(hu), sitk.GetArrayFromImage(mask)


def nodule_crops(xml: Path) -> Entry:
    """The scan's nodules as crops: ``hu`` (N, 32, 64, 64) windowed and ``mask`` (N, 32, 64, 64) uint8,
    and the series UID of the scan (meta ``series_uid``). A nodule whose readers agree on no voxel (no
    50% consensus) is skipped with a warning."""
    image = read_series(Path(xml).parent)
    readers = [outlined_masks(image, nodules, xml) for nodules in read_reads(xml)]
    hu, masks = [], []
    for group in group_reads(image, readers):
        agreed = consensus(group)
        if not agreed.any():
            log.warning("%s: no voxel of a nodule is marked by half of its %d readers, skipped", xml, len(group))
            continue
        crop, mask = nodule_crop(image, agreed)
        hu.append(crop)
        masks.append(mask)
    shape = (0, *CROP_SIZE_XYZ[::-1])
    return Entry({"hu": windowed_hu(np.array(hu)) if hu else np.zeros(shape, np.int16),
                  "mask": np.array(masks, np.uint8) if masks else np.zeros(shape, np.uint8)},
                 {"series_uid": image.GetMetaData(SERIES_UID)})


def cached_nodule_crops(xml: Path) -> Entry:
    settings = {"reader": "lidc", "group_mm": GROUP_DISTANCE_MM, "consensus": CONSENSUS, "crop": CROP_SIZE_XYZ}
    return cached([Path(xml), *series_files(xml)], settings, lambda: nodule_crops(xml))


def scan_series_uid(xml: Path) -> str:
    """The series UID of the scan that ``xml`` reads (the series its crops are cut from)."""
    return str(cached_nodule_crops(xml).meta["series_uid"])


def lidc_cases(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Case id ``<patient>_<k>`` -> (HU crop, mask crop) of every scan under ``root``; k counts per patient."""
    cases: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    counts: dict[str, int] = {}
    for patient, xml in progress(lidc_scans(root), "reading LIDC-IDRI scans"):
        entry = cached_nodule_crops(xml)
        for hu, mask in zip(entry.arrays["hu"], entry.arrays["mask"]):
            cases[f"{patient}_{counts.get(patient, 0)}"] = (hu, mask)
            counts[patient] = counts.get(patient, 0) + 1
    return cases


def lidc_problems(root: Path) -> list[Problem]:
    """Every scan's series and reads must be readable and consistent (rois on slices, points inside)."""
    scans = lidc_scans(root)
    if not scans:
        return [Problem(str(root), "no LIDC XML reads (LidcReadMessage) under LIDC-IDRI-NNNN/")]
    problems = []
    for _, xml in progress(scans, "checking LIDC-IDRI scans"):
        try:
            cached_nodule_crops(xml)
        except UserError as error:
            problems.append(Problem.from_error(error))
    return problems
