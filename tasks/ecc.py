"""ECC: pulmonary embolism false-positive reduction on CTPA (classify PE candidates).

The paper's CTPA set is private; any CTPA volumes with a candidates list in the LUNA16
format work. Layout: ``volumes/<seriesuid>.nii.gz``, ``candidates.csv``
(``seriesuid,coordX,coordY,coordZ,class``, world millimetres) and ``splits.csv``
(``seriesuid,split``, one patient per series; a split file given by the user, keyed by
series UID, replaces it). Crops are cubes with equal sides (the paper uses 64x64x64).
Public sources with voxel-level embolus masks (CAD-PE, FUMPE) need their masks turned
into candidates first.

The phantom: a chest with contrast-filled vessels (+250..+400 HU); positives are emboli,
filling defects of 20-80 HU inside the lumen; negatives are flow artefacts (mild
dimming inside the lumen), the partial-volume rim of vessels, lymph nodes of similar
HU just outside the lumen, and bifurcations.
"""

from __future__ import annotations

import csv
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

from benchmark.api.registry import TASKS
from benchmark.api.task import Case, Splits, TaskData, read_split_file
from benchmark.data.cache import ct_volume
from benchmark.data.phantoms.chest import (
    CANDIDATE_HEADER,
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
from benchmark.data.verify import Problem, check_unique, progress
from benchmark.errors import UserError

VOLUMES = 20
SPLIT_COUNTS = (10, 3, 7)  # volumes (= patients) per split
UID_ROOT = "1.2.826.0.1.3680043.8.498."


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


def _ctpa_volume(seed: int, index: int) -> tuple[str, sitk.Image, list[tuple[float, float, float, int]]]:
    """(uid, image, candidates in world mm with class) of one CTPA phantom volume.

    Candidates sit on thick contrast-filled arteries (radius >= 3.5 mm, at least four
    voxels across), so what tells an embolus from a look-alike is the 3D context: a
    dark plug inside and along a bright lumen (positive) against a bright lumen, a
    mildly dimmed stretch of lumen, a soft-tissue node beside the lumen, a small
    vessel whose blurred centre has embolus-like HU, a vessel edge or a bifurcation.
    """
    rng = np.random.default_rng([seed, index])
    uid = series_uid(rng, UID_ROOT, 24)
    shape = (int(rng.integers(52, 61)), int(rng.integers(64, 73)), int(rng.integers(76, 85)))
    pixel = round(float(rng.uniform(1.6, 1.8)), 3)
    spacing = (round(float(rng.uniform(1.8, 2.0)), 3), pixel, pixel)
    sp = np.asarray(spacing)
    chest = chest_anatomy(shape, spacing, rng)
    contrast = float(rng.uniform(250, 400))
    segments = lung_vessels(chest, rng, root_radius=float(rng.uniform(7.0, 8.0)), depth=4, trees_per_lung=3)
    lumen = segments_mask(shape, spacing, segments) & chest.lung
    lumen |= segments_mask(shape, spacing, [Segment(chest.hila[0], chest.hila[1], 7.0, -1)])
    hu = chest.hu
    hu[lumen] = contrast + rng.normal(0, 15, int(lumen.sum()))

    points: list[tuple[np.ndarray, int]] = []  # (z, y, x) mm, class
    big = [segments[i] for i in rng.permutation(len(segments))
           if segments[i].radius >= 3.5 and _length(segments[i]) >= 2.5 * segments[i].radius]
    counts = [int(rng.integers(6, 9)), int(rng.integers(2, 4)), int(rng.integers(2, 4)), int(rng.integers(2, 4))]
    ends = np.cumsum(counts)
    emboli, artefacts, nodes, shafts = (big[: ends[0]], big[ends[0]: ends[1]], big[ends[1]: ends[2]],
                                        big[ends[2]: ends[3]])
    for seg in artefacts:  # mixing artefact: the lumen diffusely a little darker along a stretch
        axis = _unit(seg.end - seg.start)
        center = _along(seg, rng)
        half = axis * seg.radius * rng.uniform(1.0, 2.0)
        stretch = segments_mask(shape, spacing, [Segment(center - half, center + half, seg.radius + 1, -1)]) & lumen
        hu[stretch] = contrast * rng.uniform(0.6, 0.85) + rng.normal(0, 15, int(stretch.sum()))
        points.append((center, 0))
    for seg in emboli:  # filling defects elongated along the lumen: occlusive, central or mural
        axis = _unit(seg.end - seg.start)
        center = _along(seg, rng)
        if rng.random() < 0.4:  # occlusive: the plug fills the whole cross-section
            radius = seg.radius + 1.0
        else:
            radius = seg.radius * rng.uniform(0.5, 0.8)
            center = center + _across(axis, rng) * (seg.radius - radius) * rng.uniform(0, 1)
        half = axis * seg.radius * rng.uniform(0.8, 1.6)
        defect = segments_mask(shape, spacing, [Segment(center - half, center + half, radius, -1)]) & lumen
        hu[defect] = rng.uniform(20, 80) + rng.normal(0, 10, int(defect.sum()))
        points.append((center, 1))
    for seg in nodes:  # lymph node of embolus-like HU just outside the vessel wall
        radius = float(rng.uniform(3.0, 5.0))
        center = _along(seg, rng) + _across(_unit(seg.end - seg.start), rng) * (seg.radius + radius + 0.5)
        node = blob_in_box(shape, spacing, center, radius, rng, lobulation=0.15) & ~lumen
        hu[node] = rng.uniform(20, 80) + rng.normal(0, 10, int(node.sum()))
        points.append((center, 0))
    points += [(_along(seg, rng), 0) for seg in shafts]  # a bright lumen with nothing in it
    small = [s for s in segments if 1.0 <= s.radius <= 2.2]
    for i in rng.permutation(len(small))[: rng.integers(2, 5)]:  # a small vessel: blurred, mid-grey centre
        points.append((_along(small[i], rng, 0.2, 0.8), 0))
    rims = [s for s in segments if s.radius >= 2.0]
    for i in rng.permutation(len(rims))[: rng.integers(2, 4)]:  # partial volume at the vessel edge
        seg = rims[i]
        points.append((_along(seg, rng, 0.2, 0.8) + _across(_unit(seg.end - seg.start), rng) * seg.radius, 0))
    forks = [s.end for s in bifurcations(segments) if s.radius >= 2.0]
    points += [(forks[i], 0) for i in rng.permutation(len(forks))[: rng.integers(2, 4)]]
    defects = [p for p, label in points if label == 1]
    points = [(p, label) for p, label in points
              if label == 1 or all(np.linalg.norm(p - d) > 12.0 for d in defects)]

    image = make_image(finish_ct(hu, rng, float(rng.uniform(20, 35))), spacing, index % 2 == 1, rng)
    candidates = []
    for i in rng.permutation(len(points)):
        point, label = points[i]
        candidates.append((*to_world(image, point / sp + rng.uniform(-0.5, 0.5, 3)), label))
    return uid, image, candidates


def write_ecc_phantom(root: Path, seed: int) -> None:
    """20 CTPA-like volumes, their PE candidates and a patient-level split."""
    root = Path(root)
    (root / "volumes").mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(VOLUMES)
    split_of = np.repeat(SPLITS, SPLIT_COUNTS)[np.argsort(order)]
    candidate_rows, split_rows = [], []
    for index in range(VOLUMES):
        uid, image, candidates = _ctpa_volume(seed, index)
        sitk.WriteImage(image, str(root / "volumes" / f"{uid}.nii.gz"), useCompression=True)
        candidate_rows += [(uid, *(f"{c:.4f}" for c in row[:3]), row[3]) for row in candidates]
        split_rows.append((uid, split_of[index]))
    for name, header, rows in (("candidates.csv", CANDIDATE_HEADER, candidate_rows),
                               ("splits.csv", ("seriesuid", "split"), split_rows)):
        with open(root / name, "w", newline="") as handle:
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
