"""Chest-CT phantom in the LUNA16 layout, and the chest pieces other chest phantoms reuse.

The LUNA16 phantom has ``SUBSETS`` x ``SCANS_PER_SUBSET`` = 90 scans, one per patient, 9 in each
of ``subset0..9``: NCC trains on 45 patients (subsets 0-4), validates on 18 (5-6) and tests on 27
(7-9), and the pretraining pool reads subsets 0-6 only. Each scan holds 1-7 nodules (about 4.5 on
average, every one a positive candidate) and about 12 negative candidates, so about a quarter of
the 1,520 candidates are positive: the label fraction 0.05 labels 3 training patients (``subsets``
draws whole patients), 0.1 labels 5.

Patients differ as real ones do (``draw_patient``), so that a model that has seen three of them
has not seen the others: the body's size (pixel size 1.7-2.3 mm, slice thickness 2.0-3.0 mm, so
that the same nodule spans other voxel counts), the lungs' aeration (+-40 HU), the vessels'
calibre and number of trees, a contrast phase in 30% of the scans (vessels at 120-220 HU, brighter
than solid nodules, instead of as bright), the scanner's blur (0.5-1.0 voxels) and noise (15-50 HU),
fibrotic bands (0-2, dense tubes that are negatives), and the nodules themselves: their number, a
typical size (radius 3.5-7 mm, each nodule within +-25% of it), a mix of kinds drawn per patient
(one patient's nodules mostly ground glass, another's mostly solid or calcified), lobulation and
how many touch the pleura. The task stays solvable at full labels from shape and context: nodules
are compact blobs (``paint_nodule``, as in the NCS phantom), negatives elongated or branching
(vessel bifurcations and shafts, bands) or on the chest wall; no label is wrong.

Anatomy is drawn in millimetres in the array's own frame (``(z, y, x)`` index times
spacing). World coordinates written to the CSVs come from the image's geometry
(``TransformContinuousIndexToPhysicalPoint``), direction matrix included: every other
scan has its x and y axes flipped, as many scanners write them, so a reader that
ignores the direction puts the candidates in the wrong place.

Candidates are hard on purpose: negatives sit on vessel bifurcations, vessel
segments, fibrotic bands and the chest wall (bright centres), positives include ground-glass
nodules (dim centres) and juxtapleural ones, so the centre voxel's intensity does not decide
the class; the 3D shape does.

``build_chest_scan`` draws one typical patient (the spread of the original phantom), for the
phantoms made from chest CTs (radiographs, opacities); ``build_luna_scan`` draws the LUNA16
phantom's varied patients from generators of their own.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from benchmark.data.phantoms.primitives import grid, lobulated_blob, partial_volume, smooth_noise, tube

LUNA_UID_ROOT = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
SUBSETS = 10
SCANS_PER_SUBSET = 9
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
FLIP_XY = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
LUNG_HU, SOFT_HU, FAT_HU, BONE_HU = -850.0, 40.0, -100.0, 400.0
NODULE_KINDS = ("solid", "ground-glass", "calcified")
KIND_WEIGHTS = (0.55, 0.3, 0.15)  # a typical patient's mix of nodule kinds
CONTRAST_SHARE = 0.3  # LUNA16 patients scanned in a contrast phase
LUNA_STREAM = 7  # the LUNA16 phantom's scans draw from generators [seed, index, LUNA_STREAM]
CANDIDATE_HEADER = ("seriesuid", "coordX", "coordY", "coordZ", "class")
ANNOTATION_HEADER = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")


def series_uid(rng: np.random.Generator, root: str = LUNA_UID_ROOT, digits: int = 30) -> str:
    """A DICOM-style series UID: ``root`` followed by random digits (no leading zero)."""
    tail = rng.integers(0, 10, size=digits)
    tail[0] = rng.integers(1, 10)
    return root + "".join(str(d) for d in tail)


# --- vessels -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One straight piece of a vessel tree, ends in (z, y, x) mm; ``parent`` -1 for a root."""

    start: np.ndarray
    end: np.ndarray
    radius: float
    parent: int


def grow_tree(
    root_mm: np.ndarray,
    heading: np.ndarray,
    length_mm: float,
    radius_mm: float,
    depth: int,
    rng: np.random.Generator,
    inside: Callable[[np.ndarray], bool],
) -> list[Segment]:
    """A bifurcating tree whose segments end where ``inside`` holds (shortened, else dropped)."""
    segments: list[Segment] = []
    stack = [(np.asarray(root_mm, float), np.asarray(heading, float), length_mm, radius_mm, depth, -1)]
    while stack:
        start, heading, length, radius, level, parent = stack.pop()
        heading = heading / (np.linalg.norm(heading) + 1e-8)
        for _ in range(3):
            end = start + heading * length
            if inside(end):
                break
            length *= 0.6
        else:
            continue
        segments.append(Segment(start, end, radius, parent))
        if level > 0 and length > 3.0:
            side = np.cross(heading, rng.standard_normal(3))
            side /= np.linalg.norm(side) + 1e-8
            for sign in (1.0, -1.0):
                angle = np.deg2rad(rng.uniform(20, 45))
                child = np.cos(angle) * heading + sign * np.sin(angle) * side + rng.normal(0, 0.1, 3)
                stack.append((end, child, length * rng.uniform(0.7, 0.85), max(radius * 0.72, 0.5),
                              level - 1, len(segments) - 1))
    return segments


def bifurcations(segments: list[Segment]) -> list[Segment]:
    """The segments that split into two or more children (their ``end`` is the branch point)."""
    counts = np.bincount([s.parent for s in segments if s.parent >= 0], minlength=len(segments))
    return [s for s, n in zip(segments, counts, strict=True) if n >= 2]


def box_around(
    shape: tuple[int, ...], spacing: tuple[float, ...], low_mm: np.ndarray, high_mm: np.ndarray
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """The voxel box covering [low, high] mm, clipped to ``shape``, and its origin in mm."""
    sp = np.asarray(spacing)
    lo = np.maximum(np.floor(low_mm / sp).astype(int), 0)
    hi = np.minimum(np.ceil(high_mm / sp).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), lo * sp


def segments_mask(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                  segments: list[Segment]) -> np.ndarray:
    """Boolean mask of the capsules, each drawn only inside its own bounding box (fast)."""
    mask = np.zeros(shape, dtype=bool)
    for seg in segments:
        box = box_around(shape, spacing, np.minimum(seg.start, seg.end) - seg.radius,
                         np.maximum(seg.start, seg.end) + seg.radius)
        if box is None:
            continue
        window, origin = box
        sub = tuple(s.stop - s.start for s in window)
        mask[window] |= tube(sub, seg.start - origin, seg.end - origin, seg.radius, spacing)
    return mask


def blob_in_box(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    center_mm: np.ndarray,
    radius_mm: float,
    rng: np.random.Generator,
    lobulation: float = 0.25,
) -> np.ndarray:
    """Full-size boolean mask of a lobulated nodule, computed in a box around it."""
    mask = np.zeros(shape, dtype=bool)
    reach = 1.9 * radius_mm + max(spacing)
    box = box_around(shape, spacing, np.asarray(center_mm) - reach, np.asarray(center_mm) + reach)
    if box is not None:
        window, origin = box
        sub = tuple(s.stop - s.start for s in window)
        mask[window] = lobulated_blob(sub, tuple(np.asarray(center_mm) - origin), radius_mm, rng,
                                      spacing, lobulation)
    return mask


def paint_nodule(hu: np.ndarray, mask: np.ndarray, kind: str, rng: np.random.Generator) -> None:
    """Fill ``mask`` with a nodule's attenuation; ground glass keeps the vessels running through it."""
    texture = rng.standard_normal(int(mask.sum())).astype(np.float32)
    if kind == "solid":
        hu[mask] = rng.uniform(-100, 100) + 15 * texture
    elif kind == "ground-glass":
        hu[mask] = np.maximum(hu[mask], rng.uniform(-680, -520) + 40 * texture)
    elif kind == "calcified":
        hu[mask] = rng.uniform(250, 350) + 20 * texture
    else:
        raise ValueError(f"unknown nodule kind {kind!r}")


def finish_ct(hu: np.ndarray, rng: np.random.Generator, noise_sigma: float, blur_voxels: float = 0.7) -> np.ndarray:
    """Partial-volume blur (the scanner's point-spread function), noise, and the int16 storage of real CT."""
    noisy = partial_volume(hu, blur_voxels) + noise_sigma * rng.standard_normal(hu.shape, dtype=np.float32)
    return np.clip(np.rint(noisy), -1024, 3071).astype(np.int16)


# --- the chest -----------------------------------------------------------------------------------


@dataclass
class Chest:
    """A chest drawn in HU (no vessels, no noise yet) and the masks generators place things with."""

    hu: np.ndarray
    spacing: tuple[float, float, float]  # (z, y, x) mm
    lung: np.ndarray
    hila: list[np.ndarray]  # per lung, where its vessel trees start, (z, y, x) mm
    lateral: list[float]  # per lung, the sign of x pointing away from the mediastinum

    def inside_lung(self, point_mm: np.ndarray) -> bool:
        index = np.rint(np.asarray(point_mm) / self.spacing).astype(int)
        if np.any(index < 0) or np.any(index >= self.lung.shape):
            return False
        return bool(self.lung[tuple(index)])


def chest_anatomy(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                  rng: np.random.Generator) -> Chest:
    """Air, body with fat and chest wall, ribs, mediastinum, spine, diaphragm and two lungs in HU."""
    nz, ny, nx = shape
    z, y, x = grid(shape, spacing)
    depth = nz * spacing[0]
    cy, cx = ny * spacing[1] / 2 + rng.normal(0, 2), nx * spacing[2] / 2 + rng.normal(0, 2)
    big_y, big_x = y - cy, x - cx
    ax = 0.47 * nx * spacing[2] * rng.uniform(0.95, 1.0)
    ay = 0.45 * ny * spacing[1] * rng.uniform(0.95, 1.0)

    def inside_ellipse(shrink_mm: np.ndarray | float) -> np.ndarray:
        return (big_x / (ax - shrink_mm)) ** 2 + (big_y / (ay - shrink_mm)) ** 2 <= 1.0

    fat, wall = rng.uniform(2, 4), rng.uniform(4, 6)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[np.broadcast_to(inside_ellipse(0.0), shape)] = FAT_HU
    muscle = np.broadcast_to(inside_ellipse(fat), shape)
    hu[muscle] = SOFT_HU
    pitch, slope = rng.uniform(17, 22), rng.uniform(0.2, 0.4)
    ribs = (inside_ellipse(fat + 1.5) & ~inside_ellipse(fat + wall - 1.5)
            & (np.mod(z - slope * big_y - rng.uniform(0, pitch), pitch) < rng.uniform(5, 7)))
    hu[ribs] = BONE_HU
    taper = 15.0 * np.clip((z - 0.75 * depth) / (0.25 * depth), 0, 1) ** 2
    cavity = inside_ellipse(fat + wall + taper)
    shift = rng.normal(0, 2)
    narrowest = rng.uniform(5, 7)
    half_width = narrowest + 12 * np.clip(-big_y / ay, 0, 1) ** 2  # the heart bulges anteriorly
    mediastinum = cavity & (np.abs(big_x - shift) < half_width)
    spine = cavity & ((big_x - shift) ** 2 + (big_y - (ay - fat - wall - 8)) ** 2 < 8**2)
    dome = np.clip(1 - ((np.abs(big_x) - 0.5 * ax) / (0.5 * ax)) ** 2 - (big_y / ay) ** 2, 0, 1)
    below_diaphragm = z < depth * (0.03 + rng.uniform(0.1, 0.2) * dome)
    lung = cavity & ~mediastinum & ~spine & ~below_diaphragm
    soft_texture = smooth_noise(shape, 2.0, rng)
    hu[cavity] = SOFT_HU + 10 * soft_texture[cavity]
    hu[mediastinum & (soft_texture > 1.0)] = FAT_HU
    hu[spine] = 300.0
    lung_texture = smooth_noise(shape, 1.5, rng)
    gravity = np.broadcast_to(30 * big_y / ay, shape)
    hu[lung] = LUNG_HU + 25 * lung_texture[lung] + gravity[lung]
    hila, lateral = [], []
    for sign in (-1.0, 1.0):
        root_x = cx + shift + sign * (narrowest + 1.0)
        hila.append(np.array([depth * rng.uniform(0.5, 0.6), cy + rng.normal(0, 3), root_x]))
        lateral.append(sign)
    return Chest(hu=hu, spacing=spacing, lung=lung, hila=hila, lateral=lateral)


def lung_vessels(chest: Chest, rng: np.random.Generator, root_radius: float, depth: int = 5,
                 trees_per_lung: int = 4) -> list[Segment]:
    """Vessel trees fanning out from each hilum through its lung."""
    segments: list[Segment] = []
    for hilum, sign in zip(chest.hila, chest.lateral, strict=True):
        for tilt in np.linspace(-1.0, 1.0, trees_per_lung):
            heading = np.array([tilt + rng.normal(0, 0.2), rng.normal(0, 0.7), sign])
            tree = grow_tree(hilum, heading, rng.uniform(18, 24), root_radius, depth, rng, chest.inside_lung)
            offset = len(segments)
            segments += [Segment(s.start, s.end, s.radius, s.parent + offset if s.parent >= 0 else -1)
                         for s in tree]
    return segments


def pick_voxel(candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A random voxel index (z, y, x) where the boolean ``candidates`` holds, or None."""
    flat = np.flatnonzero(candidates)
    if flat.size == 0:
        return None
    return np.array(np.unravel_index(flat[rng.integers(flat.size)], candidates.shape))


def place_nodules(
    chest: Chest,
    count: int,
    rng: np.random.Generator,
    radius_range: tuple[float, float] = (2.5, 8.0),
    juxtapleural_fraction: float = 0.25,
    kind_weights: tuple[float, float, float] = KIND_WEIGHTS,
    lobulation: float = 0.25,
) -> list[tuple[np.ndarray, float, str, bool]]:
    """Nodule centres (voxel index), radii, kinds and wall contact, painted into ``chest.hu``.

    Returns ``(index, radius_mm, kind, juxtapleural)``; the centres are whole voxels so a
    reader can be checked against the exact voxel.
    """
    spacing = np.asarray(chest.spacing)
    distance = ndimage.distance_transform_edt(chest.lung, sampling=chest.spacing)
    nodules: list[tuple[np.ndarray, float, str, bool]] = []
    for _ in range(count):
        radius = float(rng.uniform(*radius_range))
        juxta = bool(rng.random() < juxtapleural_fraction)
        allowed = (distance > 0.5 * radius) & (distance < radius) if juxta else distance > radius + 2.0
        for index, other_radius, _, _ in nodules:
            allowed &= _farther_than(chest.lung.shape, spacing, index * spacing, radius + other_radius + 4.0)
        index = pick_voxel(allowed, rng)
        if index is None:
            continue
        kind = str(rng.choice(NODULE_KINDS, p=kind_weights))
        blob = blob_in_box(chest.lung.shape, chest.spacing, index * spacing, radius, rng, lobulation)
        paint_nodule(chest.hu, blob, kind, rng)
        nodules.append((index, radius, kind, juxta))
    return nodules


def _farther_than(shape: tuple[int, ...], spacing: np.ndarray, point_mm: np.ndarray,
                  distance: float) -> np.ndarray:
    z, y, x = grid(shape, tuple(spacing))
    return (z - point_mm[0]) ** 2 + (y - point_mm[1]) ** 2 + (x - point_mm[2]) ** 2 > distance**2


def pleura(chest: Chest) -> np.ndarray:
    """Tissue voxels touching the lung: chest wall, mediastinal and diaphragmatic surfaces."""
    return ndimage.binary_dilation(chest.lung) & ~chest.lung & (chest.hu > -300)


# --- the LUNA16 phantom --------------------------------------------------------------------------


@dataclass(frozen=True)
class Nodule:
    index: tuple[int, int, int]  # (z, y, x) voxel of the drawn centre
    radius_mm: float
    kind: str
    juxtapleural: bool


@dataclass(frozen=True)
class ChestScan:
    """One phantom scan: the image with its geometry, its nodules and its candidates (world mm)."""

    uid: str
    subset: int
    image: sitk.Image
    nodules: list[Nodule]
    candidates: list[tuple[float, float, float, int]]  # (x, y, z) mm, class
    lung: np.ndarray  # (z, y, x) bool, the lungs (vessels and nodules included)


@dataclass(frozen=True)
class Patient:
    """What differs between the LUNA16 phantom's patients: body, lesions and acquisition."""

    shape: tuple[int, int, int]  # (z, y, x) voxels
    spacing: tuple[float, float, float]  # (z, y, x) mm: slice thickness and pixel size
    noise_sigma: float  # HU, from the dose and the reconstruction kernel
    blur_voxels: float  # the point-spread function's sigma
    vessel_hu: float  # about 40 without contrast, 120-220 HU in a contrast phase
    lung_shift_hu: float  # aeration: emphysematous (low) to poorly inflated (high) lungs
    vessel_radius_mm: float  # the hilar vessels' radius
    trees_per_lung: int
    nodules: int
    radius_range: tuple[float, float]  # mm, around this patient's typical nodule
    kind_weights: tuple[float, float, float]  # solid, ground-glass, calcified
    juxtapleural_fraction: float
    lobulation: float
    scars: int


def draw_patient(rng: np.random.Generator) -> Patient:
    """One patient of the LUNA16 phantom: its anatomy's size, its nodules' kind, size, shape and number,
    and its scanner's slice thickness, pixel size, blur, noise and contrast phase."""
    shape = (int(rng.integers(44, 53)), int(rng.integers(68, 77)), int(rng.integers(88, 97)))
    pixel = round(float(rng.uniform(1.7, 2.3)), 3)
    spacing = (round(float(rng.uniform(2.0, 3.0)), 3), pixel, pixel)
    contrast = bool(rng.random() < CONTRAST_SHARE)
    typical_radius = float(rng.uniform(3.5, 7.0))
    return Patient(
        shape=shape,
        spacing=spacing,
        noise_sigma=float(np.exp(rng.uniform(np.log(15.0), np.log(50.0)))),
        blur_voxels=float(rng.uniform(0.5, 1.0)),
        vessel_hu=float(rng.uniform(120, 220)) if contrast else SOFT_HU,
        lung_shift_hu=float(rng.uniform(-40, 40)),
        vessel_radius_mm=float(rng.uniform(2.4, 3.8)),
        trees_per_lung=int(rng.integers(3, 6)),
        nodules=int(rng.integers(1, 8)),
        radius_range=(max(2.5, 0.75 * typical_radius), min(9.0, 1.25 * typical_radius)),
        kind_weights=tuple(float(w) for w in rng.dirichlet(3.0 * np.asarray(KIND_WEIGHTS))),
        juxtapleural_fraction=float(rng.uniform(0.0, 0.4)),
        lobulation=float(rng.uniform(0.1, 0.4)),
        scars=int(rng.integers(0, 3)),
    )


def place_scars(chest: Chest, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Fibrotic bands: short, thick, dense tubes in the lung (a frequent false positive of nodule
    detectors), painted into ``chest.hu``; their centres (voxel index)."""
    spacing = np.asarray(chest.spacing)
    centres = []
    for _ in range(count):
        centre = pick_voxel(chest.lung, rng)
        direction = rng.standard_normal(3)
        half = rng.uniform(5.0, 11.0) * direction / (np.linalg.norm(direction) + 1e-8)
        radius, level = float(rng.uniform(1.0, 2.0)), float(rng.uniform(-60, 60))
        if centre is None:
            continue
        start, end = centre * spacing - half, centre * spacing + half
        if not (chest.inside_lung(start) and chest.inside_lung(end)):
            continue
        band = segments_mask(chest.lung.shape, chest.spacing, [Segment(start, end, radius, -1)]) & chest.lung
        chest.hu[band] = level + 15 * rng.standard_normal(int(band.sum()))
        centres.append(centre)
    return centres


def jittered_positives(nodules: list[Nodule], rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """A positive candidate per nodule, off its drawn centre by at most a voxel (a detector's error)."""
    points = []
    for nodule in nodules:
        jitter = rng.choice([-1, 0, 0, 1], size=3) + rng.uniform(-0.3, 0.3, size=3)
        points.append((np.asarray(nodule.index) + jitter, 1))
    return points


def mimic_points(chest: Chest, segments: list[Segment], rng: np.random.Generator) -> list[np.ndarray | None]:
    """Where false-positive candidates sit (voxel index): vessel bifurcations and shafts, the pleura,
    plain parenchyma (None where none could be drawn)."""
    sp = np.asarray(chest.spacing)
    forks = [s.end for s in bifurcations(segments) if s.radius >= 1.0]
    shafts = [(s.start + s.end) / 2 for s in segments if s.radius >= 0.8]
    points = [forks[i] / sp for i in rng.permutation(len(forks))[: rng.integers(3, 6)]]
    points += [shafts[i] / sp for i in rng.permutation(len(shafts))[: rng.integers(3, 6)]]
    surface = pleura(chest)
    points += [pick_voxel(surface, rng) for _ in range(int(rng.integers(2, 4)))]
    points += [pick_voxel(chest.lung, rng) for _ in range(int(rng.integers(1, 3)))]
    return points


def negatives_apart(points: list[np.ndarray | None], nodules: list[Nodule],
                    spacing: tuple[float, float, float]) -> list[tuple[np.ndarray, int]]:
    """Negative candidates: the points more than 5 mm beyond every nodule's radius."""
    sp = np.asarray(spacing)
    return [(np.asarray(point, float), 0) for point in points if point is not None
            and all(np.linalg.norm((point - n.index) * sp) > n.radius_mm + 5.0 for n in nodules)]


def world_candidates(image: sitk.Image, points: list[tuple[np.ndarray, int]],
                     rng: np.random.Generator) -> list[tuple[float, float, float, int]]:
    """The candidates in world mm (x, y, z) with their class, in a random order."""
    return [(*to_world(image, points[i][0]), points[i][1]) for i in rng.permutation(len(points))]


def onto_scan(points: list[tuple[np.ndarray, int]], shape: tuple[int, int, int]) -> list[tuple[np.ndarray, int]]:
    """The points with one jittered past the scan's first or last voxel moved back onto it."""
    last = np.asarray(shape) - 1
    return [(np.clip(point, 0, last), label) for point, label in points]


def make_image(hu: np.ndarray, spacing_zyx: tuple[float, float, float], flipped: bool,
               rng: np.random.Generator) -> sitk.Image:
    """A SimpleITK image with a scanner-like origin; ``flipped`` mirrors x and y (direction diag(-1,-1,1))."""
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    extent = np.array(hu.shape[::-1], float) * spacing_zyx[::-1]
    sign = -1.0 if flipped else 1.0
    origin = (-sign * extent[0] / 2 + rng.normal(0, 15), -sign * extent[1] / 2 + rng.normal(0, 15),
              -rng.uniform(150, 350))
    image.SetOrigin(tuple(round(float(o), 2) for o in origin))
    image.SetDirection(FLIP_XY if flipped else IDENTITY)
    return image


def to_world(image: sitk.Image, index_zyx: np.ndarray) -> tuple[float, float, float]:
    """World (x, y, z) mm of a continuous (z, y, x) index, through the image's own geometry."""
    return image.TransformContinuousIndexToPhysicalPoint(tuple(float(i) for i in np.asarray(index_zyx)[::-1]))


def _nodules(placed: list[tuple[np.ndarray, float, str, bool]]) -> list[Nodule]:
    return [Nodule(tuple(int(i) for i in idx), r, kind, juxta) for idx, r, kind, juxta in placed]


def build_chest_scan(seed: int, index: int) -> ChestScan:
    """A chest scan of one typical patient (its own generator for ``seed`` and ``index``): the scan the
    phantoms drawn from chest CTs (radiographs, opacities) start from. The LUNA16 phantom's scans vary
    far more between patients: ``build_luna_scan``."""
    rng = np.random.default_rng([seed, index])
    uid = series_uid(rng)
    shape = (int(rng.integers(44, 53)), int(rng.integers(68, 77)), int(rng.integers(88, 97)))
    pixel = round(float(rng.uniform(1.8, 2.2)), 3)
    spacing = (round(float(rng.uniform(2.3, 2.7)), 3), pixel, pixel)
    chest = chest_anatomy(shape, spacing, rng)
    segments = lung_vessels(chest, rng, root_radius=float(rng.uniform(2.8, 3.5)))
    vessels = segments_mask(shape, spacing, segments) & chest.lung
    chest.hu[vessels] = SOFT_HU + rng.normal(0, 10, int(vessels.sum()))
    nodules = _nodules(place_nodules(chest, int(rng.integers(3, 6)), rng))
    points = jittered_positives(nodules, rng) + negatives_apart(mimic_points(chest, segments, rng), nodules, spacing)
    image = make_image(finish_ct(chest.hu, rng, float(rng.uniform(20, 40))), spacing, index % 2 == 1, rng)
    return ChestScan(uid, index // SCANS_PER_SUBSET, image, nodules, world_candidates(image, points, rng), chest.lung)


def build_luna_scan(seed: int, index: int) -> ChestScan:
    """Scan ``index`` (0 to ``SUBSETS * SCANS_PER_SUBSET - 1``) of the LUNA16 phantom for ``seed``: a
    patient drawn by ``draw_patient``, from a generator of the scan's own."""
    rng = np.random.default_rng([seed, index, LUNA_STREAM])
    uid = series_uid(rng)
    patient = draw_patient(rng)
    chest = chest_anatomy(patient.shape, patient.spacing, rng)
    chest.hu[chest.lung] += patient.lung_shift_hu
    segments = lung_vessels(chest, rng, patient.vessel_radius_mm, trees_per_lung=patient.trees_per_lung)
    vessels = segments_mask(patient.shape, patient.spacing, segments) & chest.lung
    chest.hu[vessels] = patient.vessel_hu + rng.normal(0, 10, int(vessels.sum()))
    scars = place_scars(chest, patient.scars, rng)
    nodules = _nodules(place_nodules(chest, patient.nodules, rng, patient.radius_range, patient.juxtapleural_fraction,
                                     patient.kind_weights, patient.lobulation))
    mimics = mimic_points(chest, segments, rng) + scars
    points = onto_scan(jittered_positives(nodules, rng) + negatives_apart(mimics, nodules, patient.spacing),
                       patient.shape)
    ct = finish_ct(chest.hu, rng, patient.noise_sigma, patient.blur_voxels)
    image = make_image(ct, patient.spacing, index % 2 == 1, rng)
    return ChestScan(uid, index // SCANS_PER_SUBSET, image, nodules, world_candidates(image, points, rng), chest.lung)


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _mm(value: float) -> str:
    return f"{value:.4f}"


def write_chest_phantom(root: Path, seed: int) -> None:
    """LUNA16 layout: ``subset0..9/<uid>.mhd`` (+ .raw), ``candidates_V2.csv``, ``annotations.csv``."""
    root = Path(root)
    candidates, annotations = [], []
    for index in range(SUBSETS * SCANS_PER_SUBSET):
        scan = build_luna_scan(seed, index)
        folder = root / f"subset{scan.subset}"
        folder.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(scan.image, str(folder / f"{scan.uid}.mhd"))
        candidates += [(scan.uid, *map(_mm, c[:3]), c[3]) for c in scan.candidates]
        for nodule in scan.nodules:
            world = to_world(scan.image, np.asarray(nodule.index))
            annotations.append((scan.uid, *map(_mm, world), _mm(2 * nodule.radius_mm)))
    _write_csv(root / "candidates_V2.csv", CANDIDATE_HEADER, candidates)
    _write_csv(root / "annotations.csv", ANNOTATION_HEADER, annotations)


# --- a patch of lung, for nodule-centred crops ---------------------------------------------------


def lung_patch(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    wall: tuple[np.ndarray, np.ndarray] | None = None,
    extra_vessels: list[Segment] | None = None,
    vessel_hu: float = SOFT_HU,
) -> tuple[np.ndarray, np.ndarray]:
    """Parenchyma in HU with vessel trees crossing it, and optionally chest wall.

    ``wall`` = (point, outward normal), both (z, y, x) mm: beyond a gently curved surface
    through the point lies muscle, then fat and a rib. Returns the HU array (no noise,
    no blur; see ``finish_ct``) and the parenchyma mask.
    """
    z, y, x = grid(shape, spacing)
    extent = np.array(shape) * spacing
    hu = np.full(shape, LUNG_HU, dtype=np.float32) + 25 * smooth_noise(shape, 1.5, rng)
    lung = np.ones(shape, dtype=bool)
    if wall is not None:
        point, normal = np.asarray(wall[0], float), np.asarray(wall[1], float) / np.linalg.norm(wall[1])
        along = (z - point[0]) * normal[0] + (y - point[1]) * normal[1] + (x - point[2]) * normal[2]
        across2 = (z - point[0]) ** 2 + (y - point[1]) ** 2 + (x - point[2]) ** 2 - along**2
        depth = along + across2 / (2 * rng.uniform(80, 160))  # a convex pleura seen from the lung
        muscle_mm = rng.uniform(6, 10)
        lung = depth < 0
        hu[depth >= 0] = SOFT_HU + 10 * smooth_noise(shape, 2.0, rng)[depth >= 0]
        hu[depth >= muscle_mm] = FAT_HU
        rib = (depth >= 2) & (depth < muscle_mm - 1) & (np.abs(z - point[0] - rng.uniform(-20, 20)) < 4)
        hu[rib] = BONE_HU

    def inside(p: np.ndarray) -> bool:
        index = np.rint(p / spacing).astype(int)
        return bool(np.all(p >= -5) and np.all(p <= extent + 5)
                    and (np.any(index < 0) or np.any(index >= shape) or lung[tuple(index)]))

    segments = list(extra_vessels or [])
    for _ in range(int(rng.integers(2, 4))):
        start = rng.uniform(0, 1, 3) * extent
        axis = int(rng.integers(3))
        start[axis] = 0.0 if rng.random() < 0.5 else extent[axis]
        if not inside(start):
            continue
        heading = extent / 2 - start + rng.normal(0, 10, 3)
        segments += grow_tree(start, heading, rng.uniform(14, 20), rng.uniform(1.5, 2.5), 3, rng, inside)
    vessels = segments_mask(shape, spacing, segments) & lung
    hu[vessels] = vessel_hu + rng.normal(0, 10, int(vessels.sum()))
    return hu, lung
