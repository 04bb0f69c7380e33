"""Chest tasks (NCC, NCS, ECC), the chest phantom and the pretraining pool."""

from __future__ import annotations

import csv
from pathlib import Path

import benchmark.tasks.ncs as ncs_task
import numpy as np
import pytest
import SimpleITK as sitk
from benchmark.tasks._candidates import Candidate, candidate_cases, read_candidates
from benchmark.tasks._lidc import default_split
from benchmark.tasks.ecc import write_ecc_phantom
from benchmark.tasks.ncs import write_ncs_phantom
from helpers import held_after
from sklearn.metrics import roc_auc_score

import benchmark.data.phantoms.chest as chest_phantom
from benchmark.api.registry import TASKS
from benchmark.api.task import TaskData
from benchmark.data import datasets
from benchmark.data.cache import CTVolume
from benchmark.data.imageio import crop_centered, read_image, scale_ct, world_to_index
from benchmark.data.phantoms.chest import (
    IDENTITY,
    LUNA_UID_ROOT,
    SCANS_PER_SUBSET,
    build_luna_scan,
    write_chest_phantom,
)
from benchmark.data.pool import (
    PRETRAIN_TRAIN_SUBSETS,
    PRETRAIN_VAL_SUBSETS,
    SOFT_TISSUE_HU,
    load_pool,
    pool_scan_ids,
)
from benchmark.data.subsets import label_subset
from benchmark.errors import UserError

pytestmark = pytest.mark.usefixtures("isolated_cache")  # a cache of the module's own


SEED = 0
CUBE = (16, 32, 32)
GENERATORS = {"chest": write_chest_phantom, "ncs": write_ncs_phantom, "ecc": write_ecc_phantom}
TASK_PHANTOM = {"ncc": "chest", "ncs": "ncs", "ecc": "ecc"}
SAMPLE_FILES = {  # a few files per phantom compared byte for byte
    "chest": ["candidates_V2.csv", "annotations.csv"],
    "ncs": ["splits.csv"],
    "ecc": ["candidates.csv", "splits.csv"],
}


@pytest.fixture(scope="module")
def phantoms() -> dict[str, Path]:
    """The cached built-in phantoms, shared with the other modules (never written to here)."""
    return {name: datasets.phantom_source(write, seed=SEED).root for name, write in GENERATORS.items()}


@pytest.fixture(scope="module")
def loaded(phantoms: dict[str, Path]) -> dict[str, TaskData]:
    data = {}
    for task_name, phantom in TASK_PHANTOM.items():
        task = TASKS.create(task_name)
        data[task_name] = task.load(phantoms[phantom], task.cube_shape(CUBE))
    return data


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def header(path: Path) -> str:
    return path.read_text().splitlines()[0]


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".raw", ".gz"))


# --- the phantoms --------------------------------------------------------------------------------


def first_cases_only(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``GENERATORS[name]`` write only its first cases: every case draws from a generator of its
    own, so these are byte for byte the full phantom's first cases and its CSVs' first rows."""
    if name == "chest":
        monkeypatch.setattr(chest_phantom, "SUBSETS", 1)
    elif name == "ncs":
        all_patients = ncs_task._patient_splits
        monkeypatch.setattr(ncs_task, "_patient_splits",
                            lambda rng, seed: dict(list(all_patients(rng, seed).items())[:3]))


def first_lines(path: Path, count: int) -> list[str]:
    return path.read_text().splitlines()[:count]


@pytest.mark.parametrize("name", GENERATORS)
def test_phantom_is_deterministic_in_the_seed(
    name: str, phantoms: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_cases_only(name, monkeypatch)
    GENERATORS[name](tmp_path / "same", SEED)
    GENERATORS[name](tmp_path / "other", SEED + 1)
    written = [path.relative_to(tmp_path / "same") for path in image_files(tmp_path / "same")]
    assert written and {*written} <= {path.relative_to(phantoms[name]) for path in image_files(phantoms[name])}
    for relative in (written[0], written[-1]):
        assert (tmp_path / "same" / relative).read_bytes() == (phantoms[name] / relative).read_bytes(), relative
    for relative in SAMPLE_FILES[name]:
        same = (tmp_path / "same" / relative).read_text().splitlines()
        assert same == first_lines(phantoms[name] / relative, len(same)), relative
        assert (tmp_path / "other" / relative).read_text().splitlines() != same, relative


def test_chest_phantom_has_the_luna16_layout(phantoms: dict[str, Path]) -> None:
    root = phantoms["chest"]
    assert header(root / "candidates_V2.csv") == "seriesuid,coordX,coordY,coordZ,class"
    assert header(root / "annotations.csv") == "seriesuid,coordX,coordY,coordZ,diameter_mm"
    uids = set()
    for subset in range(10):
        scans = sorted((root / f"subset{subset}").glob("*.mhd"))
        assert len(scans) == SCANS_PER_SUBSET == 9
        for scan in scans:
            assert scan.with_suffix(".raw").is_file() and scan.stem.startswith(LUNA_UID_ROOT)
            uids.add(scan.stem)
    candidates = read_candidates(root / "candidates_V2.csv")
    assert set(candidates) == uids
    labels = [c.label for scan in candidates.values() for c in scan]
    assert 3.5 <= sum(labels) / len(uids) <= 5.5 and 10 <= labels.count(0) / len(uids) <= 16
    directions = {read_image(root / "subset0" / f"{uid}.mhd").GetDirection() for uid in pool_scan_ids(root, [0])}
    assert IDENTITY in directions and len(directions) == 2


def test_ncs_and_ecc_phantoms_have_their_layouts(phantoms: dict[str, Path]) -> None:
    ncs = phantoms["ncs"]
    assert header(ncs / "splits.csv") == "case_id,split"
    cases = [row["case_id"] for row in rows(ncs / "splits.csv")]
    assert 200 <= len(cases) <= 280
    assert sorted(p.name for p in (ncs / "images").iterdir()) == sorted(f"{c}.nii.gz" for c in cases)
    assert sorted(p.name for p in (ncs / "masks").iterdir()) == sorted(f"{c}.nii.gz" for c in cases)
    image = read_image(ncs / "images" / f"{cases[0]}.nii.gz")
    assert image.GetSize() == (64, 64, 32) and image.GetSpacing() == (1.0, 1.0, 1.0)
    ecc = phantoms["ecc"]
    assert header(ecc / "candidates.csv") == "seriesuid,coordX,coordY,coordZ,class"
    assert header(ecc / "splits.csv") == "seriesuid,split"
    uids = [row["seriesuid"] for row in rows(ecc / "splits.csv")]
    assert len(uids) == 120 and all((ecc / "volumes" / f"{uid}.nii.gz").is_file() for uid in uids)


def test_world_coordinates_land_on_the_drawn_nodule_voxel_despite_flipped_axes(phantoms: dict[str, Path]) -> None:
    annotations = rows(phantoms["chest"] / "annotations.csv")
    candidates = read_candidates(phantoms["chest"] / "candidates_V2.csv")
    for index in (1, 3):  # odd scans have x and y flipped
        scan = build_luna_scan(SEED, index)
        image = read_image(phantoms["chest"] / f"subset{scan.subset}" / f"{scan.uid}.mhd")
        assert image.GetDirection() != IDENTITY
        drawn = sorted(nodule.index for nodule in scan.nodules)
        worlds = [tuple(float(r[k]) for k in ("coordX", "coordY", "coordZ")) for r in annotations
                  if r["seriesuid"] == scan.uid]
        assert sorted(world_to_index(image, world) for world in worlds) == drawn
        naive = [tuple(np.rint((np.array(w) - image.GetOrigin()) / image.GetSpacing()).astype(int)[::-1])
                 for w in worlds]
        assert sorted(naive) != drawn  # ignoring the direction lands elsewhere
        for candidate in (c for c in candidates[scan.uid] if c.label == 1):  # positives jittered by <= 1 voxel
            voxel = np.array(world_to_index(image, candidate.world))
            assert min(np.abs(voxel - d).max() for d in drawn) <= 1


def test_a_candidate_crop_is_centred_and_air_padded_on_a_hand_made_image(tmp_path: Path) -> None:
    hu = np.full((5, 6, 7), -500, dtype=np.int16)  # (z, y, x)
    hu[4, 5, 0] = 500  # a corner voxel: its crop reaches outside on three sides
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((2.0, 3.0, 4.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / "scan.mhd"))
    image = read_image(tmp_path / "scan.mhd")
    world = (10.0 - 0 * 2.0, 20.0 - 5 * 3.0, 30.0 + 4 * 4.0)  # origin + direction @ (index * spacing)
    assert world_to_index(image, world) == (4, 5, 0)
    volume = CTVolume(sitk.GetArrayFromImage(image), image)
    (case,) = candidate_cases("scan", volume, [Candidate(2, world, 1)], (3, 3, 3))
    crop = case.image[0]
    assert case.image.shape == (1, 3, 3, 3) and case.image.dtype == np.float32
    assert crop[1, 1, 1] == scale_ct(np.array(500.0))
    assert crop[2].max() == 0 and crop[:, 2].max() == 0 and crop[:, :, 0].max() == 0  # air beyond the border
    assert crop[0, 0, 1] == scale_ct(np.array(-500.0))
    assert (case.case_id, case.target, case.group) == ("scan:2", 1, "scan")


# --- the tasks -----------------------------------------------------------------------------------


def test_the_chest_tasks_are_registered() -> None:
    for name in TASK_PHANTOM:
        task = TASKS.get(name)
        assert task.name == name and "\n" not in task.description
        assert task.primary_metric in task.metrics
    assert TASKS.get("ncc").write_phantom is write_chest_phantom
    assert TASKS.create("ecc").cube_shape((32, 64, 64)) == (64, 64, 64)
    assert TASKS.create("ecc").cube_shape(CUBE) == (32, 32, 32)


@pytest.mark.parametrize("name", TASK_PHANTOM)
def test_loaded_cases_have_the_contracted_shapes_and_disjoint_groups(name: str, loaded: dict[str, TaskData]) -> None:
    task = TASKS.create(name)
    shape = (1, *task.cube_shape(CUBE))
    groups = []
    for split in ("train", "val", "test"):
        cases = loaded[name].split(split)
        assert cases
        for case in cases:
            assert case.image.shape == shape and case.image.dtype == np.float32
            assert 0.0 <= case.image.min() and case.image.max() <= 1.0
        if task.kind == "classification":
            assert {case.target for case in cases} == {0, 1}, split
        else:
            assert all(case.target.dtype == np.uint8 and set(np.unique(case.target)) <= {0, 1} for case in cases)
            assert np.mean([case.target.any() for case in cases]) >= 0.8
        groups.append({case.group for case in cases})
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def test_ncc_splits_by_luna_subset(phantoms: dict[str, Path], loaded: dict[str, TaskData]) -> None:
    for split, subsets in (("train", range(5)), ("val", (5, 6)), ("test", (7, 8, 9))):
        uids = {scan.stem for s in subsets for scan in (phantoms["chest"] / f"subset{s}").glob("*.mhd")}
        assert {case.group for case in loaded["ncc"].split(split)} == uids


def test_ncc_labels_several_patients_at_the_smallest_label_fractions(loaded: dict[str, TaskData]) -> None:
    for fraction, least in ((0.05, 3), (0.1, 5)):
        for subset_seed in (0, 1):
            chosen = label_subset(loaded["ncc"].train, fraction, stratify=True, subset_seed=subset_seed)
            assert len({case.group for case in chosen}) >= least


def test_ncs_splits_at_patient_level_like_the_paper(loaded: dict[str, TaskData]) -> None:
    """The paper's proportions, patients numbered as LIDC-IDRI as downloaded is split, and enough training
    patients that label fraction 0.05 labels three of them."""
    patients = [len({case.group for case in loaded["ncs"].split(s)}) for s in ("train", "val", "test")]
    assert patients == [60, 12, 48]
    assert all(case.case_id.startswith(case.group + "_") for case in loaded["ncs"].test)
    for split in ("train", "val", "test"):
        assert {default_split(case.group) for case in loaded["ncs"].split(split)} == {split}
    assert len({case.group for case in label_subset(loaded["ncs"].train, 0.05, False, 0)}) == 3


def test_ecc_has_enough_patients_for_the_smallest_label_fraction(loaded: dict[str, TaskData]) -> None:
    """Every patient has emboli (one stratum): 5% of the 60 training patients labels 3 of them."""
    patients = [len({case.group for case in loaded["ecc"].split(s)}) for s in ("train", "val", "test")]
    assert patients == [60, 30, 30]
    train = loaded["ecc"].train
    assert all(any(c.target == 1 for c in train if c.group == g) for g in {c.group for c in train})
    assert [len({c.group for c in label_subset(train, f, True, 0)}) for f in (0.05, 0.1)] == [3, 6]


# --- the pretraining pool ------------------------------------------------------------------------


def test_pool_cubes_are_scaled_and_pass_the_soft_tissue_filter(phantoms: dict[str, Path]) -> None:
    pool = load_pool(phantoms["chest"], CUBE, PRETRAIN_TRAIN_SUBSETS, 4, seed=0)
    assert pool.dtype == np.float32 and pool.shape[1:] == (1, *CUBE)
    assert 0.8 * 45 * 4 <= len(pool) <= 45 * 4
    assert 0.0 <= pool.min() and pool.max() <= 1.0
    soft = scale_ct(np.array(SOFT_TISSUE_HU))
    assert np.mean(pool >= soft, axis=(1, 2, 3, 4)).max() <= 0.15
    assert np.array_equal(pool, load_pool(phantoms["chest"], CUBE, PRETRAIN_TRAIN_SUBSETS, 4, seed=0))
    assert not np.array_equal(pool, load_pool(phantoms["chest"], CUBE, PRETRAIN_TRAIN_SUBSETS, 4, seed=1))


def test_pool_never_uses_ncc_test_scans(phantoms: dict[str, Path], loaded: dict[str, TaskData]) -> None:
    for subsets in ((7,), (6, 7), (9,)):
        with pytest.raises(UserError, match="never used for pretraining"):
            load_pool(phantoms["chest"], CUBE, subsets, 2, seed=0)
    pool_ids = set(pool_scan_ids(phantoms["chest"], PRETRAIN_TRAIN_SUBSETS + PRETRAIN_VAL_SUBSETS))
    assert len(pool_ids) == 7 * SCANS_PER_SUBSET
    assert not pool_ids & {case.group for case in loaded["ncc"].test}


def test_pool_of_a_folder_without_scans_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "subset0").mkdir()
    with pytest.raises(UserError, match=str(tmp_path)):
        load_pool(tmp_path, CUBE, PRETRAIN_TRAIN_SUBSETS, 2, seed=0)


# --- errors --------------------------------------------------------------------------------------


def test_malformed_or_missing_files_are_user_errors(phantoms: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "candidates.csv"
    bad.write_text("seriesuid,coordX,coordY,class\n1.2.3,1,2,0\n")
    with pytest.raises(UserError, match=r"candidates\.csv: missing column\(s\) coordZ"):
        read_candidates(bad)
    bad.write_text("seriesuid,coordX,coordY,coordZ,class\n1.2.3,1,2,x,0\n")
    with pytest.raises(UserError, match=r"candidates\.csv: line 2"):
        read_candidates(bad)
    (tmp_path / "subset0").mkdir()
    source = phantoms["chest"] / "subset0"
    for scan in source.iterdir():
        (tmp_path / "subset0" / scan.name).symlink_to(scan)
    with pytest.raises(UserError, match="candidates_V2.csv: file not found"):
        TASKS.create("ncc").load(tmp_path, CUBE)
    with pytest.raises(UserError, match=r"volumes: folder not found"):
        TASKS.create("ecc").load(tmp_path, CUBE)
    with pytest.raises(UserError, match=r"splits\.csv: file not found"):
        TASKS.create("ncs").load(tmp_path, CUBE)


# --- the phantoms are not solved by a threshold ------------------------------------------------


@pytest.mark.parametrize("name", ["ncc", "ecc"])
def test_centre_voxel_intensity_does_not_classify_candidates(name: str, loaded: dict[str, TaskData]) -> None:
    cases = loaded[name].test
    centre = tuple(n // 2 for n in cases[0].image.shape[1:])
    auc = roc_auc_score([case.target for case in cases], [case.image[0][centre] for case in cases])
    assert max(auc, 1 - auc) < 0.9


def test_no_global_threshold_segments_the_nodules(loaded: dict[str, TaskData]) -> None:
    def dice(prediction: np.ndarray, target: np.ndarray) -> float:
        total = prediction.sum() + target.sum()
        return 1.0 if total == 0 else 2.0 * (prediction & (target > 0)).sum() / total

    cases = loaded["ncs"].test
    best = max(np.mean([dice(case.image[0] >= t, case.target) for case in cases]) for t in np.linspace(0, 1, 41))
    assert best < 0.7


def test_ncs_cases_crop_their_images_when_asked(phantoms: dict[str, Path]) -> None:
    """NCS images are lazy crops of the memory-mapped, cached nodule crops: the loaded cases hold their
    masks (uint8) and no float image; each image equals the eager crop of the same file."""
    task = TASKS.create("ncs")
    task.load(phantoms["ncs"], CUBE)  # into the cache
    data, held = held_after(lambda: task.load(phantoms["ncs"], CUBE))
    cases = data.train + data.val + data.test
    images = len(cases) * int(np.prod(CUBE)) * 4
    assert held < images / 2, f"{held} bytes held by {len(cases)} cases (their float images: {images})"
    case = data.test[0]
    hu = sitk.GetArrayFromImage(read_image(next((phantoms["ncs"] / "images").glob(f"{case.case_id}.nii*"))))
    centre = tuple(n // 2 for n in hu.shape)
    expected = scale_ct(crop_centered(hu.astype(np.float32), centre, CUBE, pad_value=-1000))
    np.testing.assert_allclose(case.image[0], expected, atol=1e-6)


def test_ncs_phantoms_of_different_seeds_share_no_patient() -> None:
    """Another seed is another site (the calibration's same-task positive control): no patient number of a
    lower seed is drawn again, each split keeps its LIDC-IDRI numbering, and seed 0 is the built-in phantom."""
    drawn = [ncs_task._patient_splits(np.random.default_rng(seed), seed) for seed in range(8)]
    for seed, split_of in enumerate(drawn):
        assert all(default_split(patient) == split for patient, split in split_of.items())
        for earlier in drawn[:seed]:
            assert not set(split_of) & set(earlier)
    with pytest.raises(UserError, match="NCS phantom seed 8: fewer than 60 train patient numbers"):
        ncs_task._patient_splits(np.random.default_rng(8), 8)
