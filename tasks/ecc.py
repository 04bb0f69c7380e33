"""ECC: pulmonary embolism false-positive reduction on CTPA (classify PE candidates).

The paper's CTPA set is private; any CTPA volumes with a candidates list in the LUNA16
format work. Layout: ``volumes/<seriesuid>.nii.gz``, ``candidates.csv``
(``seriesuid,coordX,coordY,coordZ,class``, world millimetres) and ``splits.csv``
(``seriesuid,split``, one patient per series; a split file given by the user, keyed by
series UID, replaces it). Crops are cubes with equal sides (the paper uses 64x64x64).
Public sources with voxel-level embolus masks (CAD-PE, FUMPE) need their masks turned
into candidates first.

The phantom: 120 patients, one CTPA volume each, split 60 / 30 / 30 (train / val / test) at the
patient level, about 11 candidates a patient (1-4 emboli, each hit by one or two candidates; 662
training, 362 validation and 324 test candidates for seed 0, a third of them positive; a validation
split of 30 patients, not 14, keeps a noisy validation AUC from choosing the epoch kept). Every patient
has emboli, so label fraction 0.05 labels 3 training patients and 0.1 labels 6. A chest with
contrast-filled pulmonary arteries; positives are emboli, sharp-edged filling defects inside the lumen
(a central clot leaves a ring of contrast around it wide enough to see at the voxel size); negatives
are look-alikes: a smoothly dimmed stretch of lumen (mixing of unopacified blood), a clean lumen, a
lymph node of embolus-like HU just outside the wall, the bronchus beside an artery (air, or a mucus
plug of clot density), a small vessel's blurred centre, the partial-volume rim of a vessel and
bifurcations. No embolus lies within 12 voxels (along each axis) of a look-alike, so a crop's label is
what lies at its centre. Look-alikes brighter and darker than clot are about balanced, so no single
intensity threshold ranks the candidates.

Patients differ the way real ones do, so that a model trained on a few patients does not cover
the others: the acquisition (voxel size 1.2-1.8 mm in plane and 1.25-2.5 mm between slices,
the bolus giving a lumen of 300-550 HU, noise of 8-30 HU, reconstruction blur), the anatomy
(chest and vessel calibre) and the emboli (how many, 1-4, their density of 0-90 HU and texture,
their size and the mix of occlusive, central and mural clots, mural ones denser) and which
look-alikes a patient has and how many. Each volume is drawn from its own generator seeded by
(seed, patient), so the phantom is the same for a seed on any machine.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from benchmark.tasks._candidates import (
    SPLITS,
    CandidateTask,
    candidate_cases,
    class_problems,
    parse_candidates,
    read_candidates,
    scan_problems,
)
from scipy import ndimage

from benchmark.api.registry import TASKS
from benchmark.api.task import Case, Splits, TaskData, read_split_file
from benchmark.data.cache import ct_volume
from benchmark.data.phantoms.chest import (
    CANDIDATE_HEADER,
    SOFT_HU,
    Segment,
    bifurcations,
    blob_in_box,
    chest_anatomy,
    finish_ct,
    lung_vessels,
    make_image,
    segments_mask,
    series_uid,
    to_world,
)
from benchmark.data.phantoms.primitives import partial_volume
from benchmark.data.verify import Problem, check_unique, progress
from benchmark.errors import UserError

SPLIT_COUNTS = (60, 30, 30)  # volumes (= patients) per split: label fraction 0.05 is 3 training patients
VOLUMES = sum(SPLIT_COUNTS)
UID_ROOT = "1.2.826.0.1.3680043.8.498."
EMBOLUS_SHAPES = ("occlusive", "central", "mural")
MIMICS = ("mixing", "node", "airway", "mucus plug", "shaft", "small vessel", "rim", "fork")
MIMIC_PRIOR = np.array([1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # airways as dark as the lumen is bright
CENTRAL_MM = 5.0  # arteries at least this thick are drawn whole, through the hilum too
MIN_VOXELS = 6  # a defect or node smaller than this is not drawn (nothing to see)
CLEAR_VOXELS = 12  # a look-alike's crop shows no embolus this close to its centre (3/4 of a 32-voxel crop)


@dataclass(frozen=True)
class Acquisition:
    """How one patient was scanned: voxel grid, bolus timing, dose and reconstruction kernel."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # (z, y, x) mm
    contrast_hu: float  # the opacified lumen: an early, late or diluted bolus is dimmer
    noise_hu: float
    blur_voxels: float  # a soft kernel blurs beyond the partial volume every scan has


@dataclass(frozen=True)
class Phenotype:
    """One patient's emboli, which resemble each other more than another patient's do."""

    count: int
    hu: float
    texture_hu: float  # heterogeneity of the clot
    size: float  # a non-occlusive defect's radius, as a fraction of its vessel's
    shape_weights: np.ndarray  # over EMBOLUS_SHAPES


def _acquisition(rng: np.random.Generator) -> Acquisition:
    pixel = round(float(rng.uniform(1.2, 1.8)), 3)
    spacing = (round(float(rng.uniform(1.25, 2.5)), 3), pixel, pixel)
    shape = (int(rng.integers(48, 59)), int(rng.integers(60, 71)), int(rng.integers(72, 85)))
    return Acquisition(shape, spacing, contrast_hu=float(rng.uniform(300, 550)),
                       noise_hu=float(rng.uniform(8, 30)), blur_voxels=float(rng.uniform(0.0, 0.5)))


def _phenotype(rng: np.random.Generator) -> Phenotype:
    return Phenotype(count=int(rng.integers(1, 5)), hu=float(rng.uniform(0, 90)),
                     texture_hu=float(rng.uniform(5, 25)), size=float(rng.uniform(0.35, 0.6)),
                     shape_weights=rng.dirichlet(np.ones(len(EMBOLUS_SHAPES))))


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / (np.linalg.norm(vector) + 1e-8)


def _across(axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random unit vector perpendicular to ``axis``."""
    return _unit(np.cross(axis, rng.standard_normal(3)))


def _along(seg: Segment, rng: np.random.Generator, low: float = 0.3, high: float = 0.7) -> np.ndarray:
    """A random point on the axis of ``seg``, between fractions ``low`` and ``high`` of its length."""
    return seg.start + rng.uniform(low, high) * (seg.end - seg.start)


def _length(seg: Segment) -> float:
    return float(np.linalg.norm(seg.end - seg.start))


def _capsule(lumen: np.ndarray, spacing: tuple[float, float, float], center: np.ndarray, axis: np.ndarray,
             half: float, radius: float) -> np.ndarray:
    """The lumen voxels within ``radius`` of the stretch ``center`` +- ``half`` mm along ``axis``."""
    stretch = Segment(center - axis * half, center + axis * half, radius, -1)
    return segments_mask(lumen.shape, spacing, [stretch]) & lumen


def _open_arteries(segments: list[Segment], lumen: np.ndarray, lung: np.ndarray,
                   spacing: tuple[float, float, float]) -> list[Segment]:
    """Thick arteries whose middle runs through the lung inside the opacified lumen: a candidate there sees
    a whole vessel against air (not one buried in the mediastinum, where a clot matches the soft tissue)."""
    sp, open_lumen = np.asarray(spacing), lumen & lung

    def opacified(seg: Segment) -> bool:
        index = np.rint((seg.start + np.linspace(0.2, 0.8, 5)[:, None] * (seg.end - seg.start)) / sp).astype(int)
        return bool(np.all(index >= 0) and np.all(index < lumen.shape) and open_lumen[tuple(index.T)].all())

    return [s for s in segments if s.radius >= 3.5 and _length(s) >= 2 * s.radius and opacified(s)]


def _embolus(hu: np.ndarray, lumen: np.ndarray, clots: np.ndarray, seg: Segment, clot: Phenotype,
             scan: Acquisition, rng: np.random.Generator) -> list[np.ndarray]:
    """Paints a filling defect with sharp edges on ``seg``: occlusive (the whole cross-section), central
    (contrast all around it) or mural (a denser, older clot against the wall), marking it in ``clots``.
    Returns the points (mm) where a detector hits it: one or two along its length, as a CAD system
    often reports a long clot more than once (none if the defect is too small to draw)."""
    axis, center, r = _unit(seg.end - seg.start), _along(seg, rng), seg.radius
    shape = EMBOLUS_SHAPES[rng.choice(len(EMBOLUS_SHAPES), p=clot.shape_weights)]
    radius = r + 1.0 if shape == "occlusive" else r * clot.size * rng.uniform(0.9, 1.1)
    if shape == "central":
        center = center + _across(axis, rng) * r * rng.uniform(0, 0.15)
    elif shape == "mural":
        center = center + _across(axis, rng) * (r - radius)
    half = r * rng.uniform(2.0, 3.5)
    defect = _capsule(lumen, scan.spacing, center, axis, half, radius)
    if defect.sum() < MIN_VOXELS:
        return []
    older = 20.0 if shape == "mural" else 0.0
    hu[defect] = rng.normal(clot.hu + older, clot.texture_hu, int(defect.sum()))
    clots |= defect
    return [center + axis * half * t for t in rng.uniform(-0.6, 0.6, int(rng.integers(1, 3)))]


def _mixing(hu: np.ndarray, lumen: np.ndarray, seg: Segment, scan: Acquisition,
            rng: np.random.Generator) -> np.ndarray:
    """Unopacified blood mixing in: the whole lumen dimmed smoothly along a stretch, without an edge."""
    axis, center = _unit(seg.end - seg.start), _along(seg, rng)
    half = seg.radius * rng.uniform(1.5, 3.0)
    stretch = _capsule(lumen, scan.spacing, center, axis, half, seg.radius + 1.0)
    t = ((np.argwhere(stretch) * np.asarray(scan.spacing) - center) @ axis) / half
    hu[stretch] *= 1.0 - rng.uniform(0.1, 0.3) * np.cos(np.pi / 2 * np.clip(t, -1, 1)) ** 2
    return center


def _node(hu: np.ndarray, lumen: np.ndarray, seg: Segment, scan: Acquisition,
          rng: np.random.Generator) -> np.ndarray | None:
    """A lymph node of embolus-like HU just outside the vessel wall."""
    radius = float(rng.uniform(3.0, 5.0))
    center = _along(seg, rng) + _across(_unit(seg.end - seg.start), rng) * (seg.radius + radius + 0.5)
    node = blob_in_box(hu.shape, scan.spacing, center, radius, rng, lobulation=0.15) & ~lumen
    if node.sum() < MIN_VOXELS:
        return None
    hu[node] = rng.uniform(20, 90) + rng.normal(0, 10, int(node.sum()))
    return center


def _airway(hu: np.ndarray, lumen: np.ndarray, seg: Segment, scan: Acquisition, rng: np.random.Generator,
            plugged: bool) -> np.ndarray | None:
    """The bronchus running beside an artery: air inside a soft-tissue wall, or, ``plugged``, filled with
    mucus of embolus-like HU (a tube of clot density, but outside the opacified lumen)."""
    axis = _unit(seg.end - seg.start)
    radius = seg.radius * rng.uniform(0.6, 0.9)
    offset = _across(axis, rng) * (seg.radius + radius + 1.5)
    airway = Segment(seg.start + offset, seg.end + offset, radius, -1)
    wall = segments_mask(hu.shape, scan.spacing, [Segment(airway.start, airway.end, radius + 1.2, -1)]) & ~lumen
    inside = segments_mask(hu.shape, scan.spacing, [airway]) & ~lumen
    if inside.sum() < MIN_VOXELS:
        return None
    hu[wall] = SOFT_HU + rng.normal(0, 10, int(wall.sum()))
    content = rng.uniform(10, 60) if plugged else -950.0
    hu[inside] = content + rng.normal(0, 10, int(inside.sum()))
    return _along(airway, rng)


def _vessel_mimics(segments: list[Segment], rng: np.random.Generator,
                   counts: dict[str, int]) -> list[tuple[np.ndarray, str]]:
    """Points where the vessel tree itself looks like a candidate: a small vessel's blurred centre, the
    partial-volume edge of a vessel, a bifurcation."""
    small = [s for s in segments if 1.0 <= s.radius <= 2.2]
    points = [(_along(small[i], rng, 0.2, 0.8), "small vessel")
              for i in rng.permutation(len(small))[: counts["small vessel"]]]
    rims = [s for s in segments if s.radius >= 2.0]
    for i in rng.permutation(len(rims))[: counts["rim"]]:
        seg = rims[i]
        points.append((_along(seg, rng, 0.2, 0.8) + _across(_unit(seg.end - seg.start), rng) * seg.radius, "rim"))
    forks = [s.end for s in bifurcations(segments) if s.radius >= 2.0]
    return points + [(forks[i], "fork") for i in rng.permutation(len(forks))[: counts["fork"]]]


def _ctpa_volume(seed: int, index: int) -> tuple[str, sitk.Image, list[tuple[float, float, float, str]]]:
    """(uid, image, candidates in world mm with their kind) of one patient's CTPA phantom volume.

    Candidates sit on thick contrast-filled arteries (radius >= 3.5 mm) or on the vessel tree, so what
    tells an embolus from a look-alike is the 3D context: a sharp-edged dark plug inside a bright lumen
    (positive) against a clean lumen, a smoothly dimmed stretch of lumen, a soft-tissue node beside the
    lumen, a small vessel whose blurred centre has embolus-like HU, a vessel edge or a bifurcation.
    Which look-alikes a patient has, and how many, is the patient's own.
    """
    rng = np.random.default_rng([seed, index])
    uid = series_uid(rng, UID_ROOT, 24)
    scan, clot = _acquisition(rng), _phenotype(rng)
    chest = chest_anatomy(scan.shape, scan.spacing, rng)
    segments = lung_vessels(chest, rng, root_radius=float(rng.uniform(6.5, 9.5)), depth=4, trees_per_lung=4)
    lumen = segments_mask(scan.shape, scan.spacing, segments) & chest.lung
    lumen |= segments_mask(scan.shape, scan.spacing, [s for s in segments if s.radius >= CENTRAL_MM])
    lumen |= segments_mask(scan.shape, scan.spacing, [Segment(chest.hila[0], chest.hila[1], 7.0, -1)])
    hu = chest.hu
    hu[lumen] = scan.contrast_hu + rng.normal(0, 12, int(lumen.sum()))
    mimics = dict(zip(MIMICS, rng.multinomial(int(rng.integers(18, 31)), rng.dirichlet(MIMIC_PRIOR)),
                      strict=True))
    arteries = _open_arteries(segments, lumen, chest.lung, scan.spacing)
    arteries = [arteries[i] for i in rng.permutation(len(arteries))]
    emboli, rest = arteries[: clot.count], arteries[clot.count:]
    clots = np.zeros(scan.shape, dtype=bool)
    points = [(c, "embolus") for seg in emboli for c in _embolus(hu, lumen, clots, seg, clot, scan, rng)]
    ends = np.cumsum([mimics[kind] for kind in MIMICS[:5]])
    points += [(_mixing(hu, lumen, seg, scan, rng), "mixing") for seg in rest[: ends[0]]]
    points += [(c, "node") for seg in rest[ends[0]: ends[1]] if (c := _node(hu, lumen, seg, scan, rng)) is not None]
    for kind, stop in (("airway", ends[2]), ("mucus plug", ends[3])):
        points += [(c, kind) for seg in rest[ends[MIMICS.index(kind) - 1]: stop]
                   if (c := _airway(hu, lumen, seg, scan, rng, kind == "mucus plug")) is not None]
    points += [(_along(seg, rng), "shaft") for seg in rest[ends[3]: ends[4]]]
    points += _vessel_mimics(segments, rng, mimics)
    sp, near_clot = np.asarray(scan.spacing), ndimage.maximum_filter(clots, size=2 * CLEAR_VOXELS + 1)
    points = [(p, kind) for p, kind in points  # jittered below, they stay on the grid
              if np.all(p / sp >= 0.5) and np.all(p / sp <= np.asarray(scan.shape) - 1.5)
              and (kind == "embolus" or not near_clot[tuple(np.rint(p / sp).astype(int))])]

    kernel_blurred = partial_volume(hu, scan.blur_voxels)  # then finish_ct adds the partial volume every scan has
    image = make_image(finish_ct(kernel_blurred, rng, scan.noise_hu), scan.spacing, index % 2 == 1, rng)
    return uid, image, [(*to_world(image, points[i][0] / sp + rng.uniform(-0.5, 0.5, 3)), points[i][1])
                        for i in rng.permutation(len(points))]


def write_ecc_phantom(root: Path, seed: int) -> None:
    """120 CTPA-like volumes (one per patient), their PE candidates and a patient-level split."""
    root = Path(root)
    (root / "volumes").mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(VOLUMES)
    split_of = np.repeat(SPLITS, SPLIT_COUNTS)[np.argsort(order)]
    candidate_rows, split_rows = [], []
    for index in range(VOLUMES):
        uid, image, candidates = _ctpa_volume(seed, index)
        sitk.WriteImage(image, str(root / "volumes" / f"{uid}.nii.gz"), useCompression=True)
        candidate_rows += [(uid, *(f"{c:.4f}" for c in row[:3]), int(row[3] == "embolus")) for row in candidates]
        split_rows.append((uid, split_of[index]))
    for name, header, rows in (("candidates.csv", CANDIDATE_HEADER, candidate_rows),
                               ("splits.csv", ("seriesuid", "split"), split_rows)):
        with open(root / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mhd")


def _uid_of(path: Path) -> str | None:
    return next((path.name[: -len(suffix)] for suffix in VOLUME_SUFFIXES if path.name.endswith(suffix)), None)


def volume_files(root: Path) -> list[tuple[str, Path]]:
    """(series UID, file) of every volume under ``root/volumes`` (a UID may appear twice: a fault)."""
    folder = Path(root) / "volumes"
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found (the CTPA volumes, <seriesuid>.nii.gz)")
    return [(uid, path) for path in sorted(folder.iterdir()) if (uid := _uid_of(path)) is not None]


def series_splits(root: Path, volumes: dict[str, Path], splits: Splits | None) -> dict[str, str]:
    """Series UID -> split: from ``splits.csv``, or from the user's split file."""
    if splits is not None:
        return splits.choose(volumes, "series")
    return read_split_file(Path(root) / "splits.csv", "seriesuid")


@TASKS.register
class EmbolismCandidateClassification(CandidateTask):
    """Split units for a split file: series UIDs. Every candidate of ``candidates.csv`` counts unless a
    setting caps them (``CandidateTask``)."""

    name = "ecc"
    description = "Pulmonary embolism false-positive reduction on CTPA candidates (classification, AUC)"
    in_channels = 1
    metrics = ("auc",)
    primary_metric = "auc"
    write_phantom = staticmethod(write_ecc_phantom)

    def cube_shape(self, cube: tuple[int, int, int]) -> tuple[int, int, int]:
        """A cube with equal sides, the profile cube's in-plane side (64 -> 64x64x64)."""
        return (cube[1], cube[1], cube[1])

    def split_scans(self, root: Path, split: str, splits: Splits | None = None) -> set[str]:
        split_of = series_splits(Path(root), dict(volume_files(Path(root))), splits)
        return {uid for uid, chosen in split_of.items() if chosen == split}

    def load(self, root: Path, cube: tuple[int, int, int], splits: Splits | None = None) -> TaskData:
        root = Path(root)
        volumes = dict(volume_files(root))
        split_of = series_splits(root, volumes, splits)
        candidates = read_candidates(root / "candidates.csv")
        cases: dict[str, list[Case]] = {split: [] for split in SPLITS}
        for uid, split in sorted(split_of.items()):
            chosen = self.candidates_for(uid, split, candidates.get(uid, []))
            if chosen:
                if uid not in volumes:
                    raise UserError(f"{root / 'volumes' / uid}.nii.gz: file not found (listed in splits.csv)")
                cases[split] += candidate_cases(uid, ct_volume(volumes[uid]), chosen, cube)
        empty = [split for split in SPLITS if not cases[split]]
        if empty:
            raise UserError(f"{root}: no candidates for the {' and '.join(empty)} split (see splits.csv)")
        return self.chosen_cases(cases)

    def verify(self, root: Path, splits: Splits | None = None) -> list[Problem]:
        """Volumes readable, finite, not empty and listed once; every listed series on disk; candidates
        well-formed, of known series and inside their volume; both classes in every split."""
        root = Path(root)
        csv_path = root / "candidates.csv"
        try:
            files = volume_files(root)
            candidates, problems = parse_candidates(csv_path)
            split_of = read_split_file(root / "splits.csv", "seriesuid") if splits is None else {}
        except UserError as error:
            return [Problem.from_error(error)]
        check_unique(((uid, str(path)) for uid, path in files), problems, "series")
        volumes = dict(files)
        if splits is not None:
            problems += splits.problems(volumes, "series")
            split_of = {uid: split for uid, split in splits.assignment.items() if uid in volumes}
        for uid in sorted(set(split_of) - set(volumes)):
            problems.append(Problem(f"{root / 'volumes' / uid}.nii.gz", "missing (listed in splits.csv)"))
        for uid in sorted(set(candidates) - set(split_of)):
            problems.append(Problem(f"{csv_path}: line {candidates[uid][0].row}",
                                    f"candidates of series {uid}, which is in no split"))
        labels: dict[str, list[int]] = {split: [] for split in SPLITS}
        for uid, split in progress(sorted(split_of.items()), "checking CTPA volumes"):
            labels[split] += [c.label for c in candidates.get(uid, [])]
            if uid in volumes:
                problems += scan_problems(volumes[uid], candidates.get(uid, []), csv_path)
        return problems + class_problems(labels, csv_path)
