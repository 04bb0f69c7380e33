"""LCS (LiTS liver) and BMS (BraTS brain tumour): phantoms, readers, splits and errors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from benchmark.tasks.bms import FOLD_FILES, BrainTumourSegmentation, brats_splits, load_brats, read_fold
from benchmark.tasks.lcs import LiverSegmentation, load_lits

import benchmark.data.phantoms.brain as brain_phantom
import benchmark.data.phantoms.liver as liver_phantom
from benchmark.api.registry import TASKS
from benchmark.api.task import TaskData
from benchmark.data import datasets
from benchmark.data.subsets import label_subset
from benchmark.errors import UserError

pytestmark = pytest.mark.usefixtures("isolated_cache")  # a cache of the module's own


SMALL_CUBE = (16, 32, 32)
PAPER_CUBE = (32, 64, 64)
LITS_IDS = {
    "train": [*liver_phantom.TRAIN_IDS],
    "val": [*liver_phantom.VAL_IDS],
    "test": [*liver_phantom.TEST_IDS],
}


@pytest.fixture(scope="module")
def liver_root() -> Path:
    """The cached built-in phantom, shared with the other modules (never written to here)."""
    return datasets.phantom_source(liver_phantom.write_liver_phantom, seed=0).root


@pytest.fixture(scope="module")
def brain_root() -> Path:
    """The cached built-in phantom, shared with the other modules (never written to here)."""
    return datasets.phantom_source(brain_phantom.write_brain_phantom, seed=0).root


@pytest.fixture(scope="module")
def liver_data(liver_root: Path) -> TaskData:
    return load_lits(liver_root, SMALL_CUBE)


@pytest.fixture(scope="module")
def brain_data(brain_root: Path) -> TaskData:
    return load_brats(brain_root, PAPER_CUBE)


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def split_ids(data: TaskData) -> list[list[str]]:
    return [[case.case_id for case in data.split(split)] for split in ("train", "val", "test")]


def check_task_data(data: TaskData, channels: int, cube: tuple[int, int, int]) -> None:
    groups = [{case.group for case in data.split(split)} for split in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    for split in ("train", "val", "test"):
        for case in data.split(split):
            assert case.image.dtype == np.float32 and case.image.ndim == 4
            assert case.image.shape[0] == channels
            assert all(side >= want for side, want in zip(case.image.shape[1:], cube, strict=True))
            assert 0.0 <= case.image.min() and case.image.max() <= 1.0
            assert case.target.dtype == np.uint8 and case.target.shape == case.image.shape[1:]
            assert set(np.unique(case.target)) <= {0, 1}


def test_tasks_are_registered() -> None:
    assert TASKS.get("lcs") is LiverSegmentation
    assert TASKS.get("bms") is BrainTumourSegmentation
    for cls, channels in ((LiverSegmentation, 1), (BrainTumourSegmentation, 4)):
        assert cls.kind == "segmentation" and cls.in_channels == channels
        assert cls.metrics == ("dice", "iou") and cls.primary_metric == "dice"


# ---------------------------------------------------------------- LCS / LiTS


def test_liver_phantom_layout(liver_root: Path) -> None:
    labels: set[int] = set()
    for number in (n for ids in LITS_IDS.values() for n in ids):
        batch = "Training Batch 1" if number < 28 else "Training Batch 2"
        volume = read(liver_root / batch / f"volume-{number}.nii")
        label = read(liver_root / batch / f"segmentation-{number}.nii")
        assert volume.shape == label.shape and volume.dtype == np.int16
        assert volume.shape[1:] == (48, 48) and 26 <= volume.shape[0] <= 31
        labels |= set(np.unique(label).tolist())
    assert labels == {0, 1, 2}
    spacing = sitk.ReadImage(str(liver_root / "Training Batch 1" / "volume-0.nii")).GetSpacing()
    assert 5.3 <= spacing[0] == spacing[1] <= 6.7 and 6.5 <= spacing[2] <= 7.5


def test_liver_phantom_is_deterministic(
    liver_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(liver_phantom, "TRAIN_IDS", (0,))
    monkeypatch.setattr(liver_phantom, "VAL_IDS", ())
    monkeypatch.setattr(liver_phantom, "TEST_IDS", (115,))
    liver_phantom.write_liver_phantom(tmp_path / "same", seed=0)
    liver_phantom.write_liver_phantom(tmp_path / "other", seed=1)
    for name in ("Training Batch 1/volume-0.nii", "Training Batch 2/segmentation-115.nii"):
        assert (tmp_path / "same" / name).read_bytes() == (liver_root / name).read_bytes()
        assert (tmp_path / "other" / name).read_bytes() != (liver_root / name).read_bytes()


def test_liver_loaded(liver_root: Path, liver_data: TaskData) -> None:
    check_task_data(liver_data, 1, SMALL_CUBE)
    for split, numbers in LITS_IDS.items():
        assert [case.case_id for case in liver_data.split(split)] == [f"volume-{n}" for n in numbers]
    case = liver_data.test[0]
    label = read(liver_root / "Training Batch 2" / "segmentation-115.nii")
    np.testing.assert_array_equal(case.target, label > 0)
    volume = read(liver_root / "Training Batch 2" / "volume-115.nii")
    np.testing.assert_allclose(case.image[0], (np.clip(volume, -1000, 1000) + 1000) / 2000, atol=1e-6)


def mini_lits(liver_root: Path, root: Path, placement: dict[int, tuple[str, str]]) -> Path:
    """Copy volumes into another layout: number -> (batch folder, suffix)."""
    for number, (batch, suffix) in placement.items():
        source = liver_root / ("Training Batch 1" if number < 28 else "Training Batch 2")
        for kind in ("volume", "segmentation"):
            image = sitk.ReadImage(str(source / f"{kind}-{number}.nii"))
            (root / batch).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(image, str(root / batch / f"{kind}-{number}{suffix}"), useCompression=True)
    return root


def test_liver_either_batch_folder_and_both_suffixes(liver_root: Path, tmp_path: Path) -> None:
    batch = "Training Batch 2"  # no Batch 1 at all
    placement = {0: (batch, ".nii.gz"), 100: (batch, ".nii"), 115: (batch, ".nii")}
    root = mini_lits(liver_root, tmp_path, placement)
    for kind in ("volume", "segmentation"):  # a number outside 0-129 is ignored
        shutil.copy(root / batch / f"{kind}-115.nii", root / batch / f"{kind}-130.nii")
    cube = (48, 80, 72)
    data = load_lits(root, cube)
    assert split_ids(data) == [
        ["volume-0"], ["volume-100"], ["volume-115"]
    ]
    check_task_data(data, 1, cube)
    # padded symmetrically with air around the unchanged volume
    volume = read(liver_root / "Training Batch 1" / "volume-0.nii")
    image = data.train[0].image[0]
    offsets = [(want - side) // 2 for side, want in zip(volume.shape, image.shape, strict=True)]
    inner = image[tuple(slice(o, o + n) for o, n in zip(offsets, volume.shape, strict=True))]
    np.testing.assert_allclose(inner, (np.clip(volume, -1000, 1000) + 1000) / 2000, atol=1e-6)
    assert image.sum() == pytest.approx(inner.sum())


def test_liver_errors(liver_root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Training Batch 1"):
        load_lits(tmp_path, SMALL_CUBE)
    root = mini_lits(liver_root, tmp_path / "lits", {
        0: ("Training Batch 1", ".nii"), 100: ("Training Batch 2", ".nii"), 115: ("Training Batch 2", ".nii")
    })
    missing = root / "Training Batch 2" / "segmentation-100.nii"
    saved = missing.read_bytes()
    missing.unlink()
    with pytest.raises(UserError, match="segmentation-100.nii: missing"):
        load_lits(root, SMALL_CUBE)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6, 7), np.uint8)), str(missing))
    with pytest.raises(UserError, match="segmentation-100.nii: shape \\(5, 6, 7\\)"):
        load_lits(root, SMALL_CUBE)
    missing.write_bytes(b"not an image")
    with pytest.raises(UserError, match="segmentation-100.nii: cannot read"):
        load_lits(root, SMALL_CUBE)
    missing.write_bytes(saved)
    (root / "Training Batch 2" / "volume-115.nii").unlink()
    with pytest.raises(UserError, match="115-129 \\(test split\\)"):
        load_lits(root, SMALL_CUBE)


# ---------------------------------------------------------------- BMS / BraTS


def test_brain_phantom_layout(brain_root: Path) -> None:
    listed = {case for path in FOLD_FILES for case in read_fold(path)}
    assert len(listed) == 285
    labels: set[int] = set()
    grades = set()
    for case in brain_phantom.CASES:
        assert case in listed
        grade = brain_phantom.brats_grade(case)
        grades.add(grade)
        folder = brain_root / grade / case
        shapes = {read(folder / f"{case}_{m}.nii.gz").shape for m in ("flair", "t1", "t1ce", "t2")}
        seg = read(folder / f"{case}_seg.nii.gz")
        assert shapes == {seg.shape}
        labels |= set(np.unique(seg).tolist())
    assert labels == {0, 1, 2, 4} and grades == {"HGG", "LGG"}
    # BraTS's layout, beside the manifest the suite checks its phantoms against
    assert sorted(p.name for p in brain_root.iterdir()) == ["HGG", "LGG", datasets.PHANTOM_MANIFEST]
    assert brain_phantom.brats_grade("Brats18_TCIA10_393_1") == "LGG"
    assert brain_phantom.brats_grade("Brats18_2013_0_1") == "LGG"
    assert brain_phantom.brats_grade("Brats18_2013_10_1") == "HGG"
    assert brain_phantom.brats_grade("Brats18_CBICA_AOH_1") == "HGG"


def test_brain_phantom_is_deterministic(
    brain_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(brain_phantom, "CASES", brain_phantom.CASES[:2])
    brain_phantom.write_brain_phantom(tmp_path / "same", seed=0)
    brain_phantom.write_brain_phantom(tmp_path / "other", seed=1)
    for case, kind in zip(brain_phantom.CASES, ("flair", "seg"), strict=True):
        name = Path(brain_phantom.brats_grade(case)) / case / f"{case}_{kind}.nii.gz"
        assert (tmp_path / "same" / name).read_bytes() == (brain_root / name).read_bytes()
        assert (tmp_path / "other" / name).read_bytes() != (brain_root / name).read_bytes()


def test_brats_splits_follow_the_fold_files() -> None:
    splits = brats_splits()
    folds = [read_fold(path) for path in FOLD_FILES]
    assert sorted(splits["test"]) == sorted(folds[2])
    rest = sorted(folds[0] + folds[1])
    assert splits["val"] == rest[7::8] and len(splits["val"]) == 23
    assert sorted(splits["train"] + splits["val"]) == rest and len(splits["train"]) == 167


def test_a_fold_file_that_is_not_text_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "fold.txt"
    path.write_bytes(b"Brats18_CBICA_AAA_1\n\xff\n")
    with pytest.raises(UserError, match=r"fold.txt: the fold file is not utf-8 text \(byte 20"):
        read_fold(path)
    with pytest.raises(UserError, match="cannot read the fold file"):
        read_fold(tmp_path / "absent.txt")


def test_brain_loaded(brain_root: Path, brain_data: TaskData) -> None:
    check_task_data(brain_data, 4, PAPER_CUBE)
    splits = brats_splits()
    on_disk = set(brain_phantom.CASES)
    for split in ("train", "val", "test"):
        expected = [case for case in splits[split] if case in on_disk]
        assert [case.case_id for case in brain_data.split(split)] == expected
    assert [len(brain_data.split(s)) for s in ("train", "val", "test")] == [42, 6, 24]
    subset = label_subset(brain_data.train, 0.05, BrainTumourSegmentation.stratify_subsets, subset_seed=0)
    assert len(subset) == 3  # a 5% label fraction is 3 patients
    case = brain_data.test[0]
    grade = brain_phantom.brats_grade(case.case_id)
    seg = read(brain_root / grade / case.case_id / f"{case.case_id}_seg.nii.gz")
    assert case.target.sum() == (seg > 0).sum()  # the crop keeps the whole brain
    assert all(channel.max() == 1.0 and channel.min() == 0.0 for channel in case.image)


def mini_brats(brain_root: Path, root: Path) -> tuple[Path, list[str]]:
    """One train, one val and one test case of the phantom, copied to ``root``."""
    splits = brats_splits()
    cases = [next(c for c in splits[s] if c in brain_phantom.CASES) for s in ("train", "val", "test")]
    for case in cases:
        grade = brain_phantom.brats_grade(case)
        shutil.copytree(brain_root / grade / case, root / grade / case)
    return root, cases


def test_brain_partial_copy_custom_folds_and_unlisted_cases(
    brain_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, cases = mini_brats(brain_root, tmp_path / "brats")
    stray = root / "HGG" / "Brats18_EXTRA_1"
    stray.mkdir()
    with caplog.at_level(logging.INFO, logger="benchmark.tasks.bms"):
        data = load_brats(root, SMALL_CUBE)
    assert split_ids(data) == [[c] for c in cases]
    assert "1 case(s)" in caplog.text and "Brats18_EXTRA_1" in caplog.text
    assert "282 of the 285 fold cases" in caplog.text
    # custom fold files, fold 1 testing: 6 absent ids sort first, so the later of the two
    # present train/val cases is the 8th of the sorted list and validates
    absent, elsewhere = [f"Brats18_0000_{k}_1" for k in range(6)], [f"Brats18_9999_{k}_1" for k in range(6)]
    contents = ([cases[2]], [*absent[:3], cases[0]], [*absent[3:], cases[1]], elsewhere)
    folds = [tmp_path / f"fold{number}.txt" for number in range(1, 5)]
    for path, ids in zip(folds, contents, strict=True):
        path.write_text("# custom\n" + "\n".join(ids) + "\n")
    data = load_brats(root, SMALL_CUBE, folds[:3], test_fold=1)
    first, second = sorted(cases[:2])
    assert split_ids(data) == [[first], [second], [cases[2]]]
    with pytest.raises(UserError, match="none of the 6 BraTS 2018 test cases"):
        load_brats(root, SMALL_CUBE, [folds[3], folds[1], folds[2]], test_fold=1)


def test_brain_errors(brain_root: Path, tmp_path: Path) -> None:
    msd = tmp_path / "Task01_BrainTumour"
    (msd / "imagesTr").mkdir(parents=True)
    (msd / "dataset.json").write_text("{}")
    with pytest.raises(UserError, match="Medical Segmentation Decathlon.*not BraTS 2018"):
        load_brats(msd, SMALL_CUBE)
    sitk.WriteImage(sitk.Image([4, 4, 4, 4], sitk.sitkInt16), str(msd / "imagesTr" / "BRATS_001.nii.gz"))
    with pytest.raises(UserError, match="Medical Segmentation Decathlon"):
        load_brats(msd / "imagesTr", SMALL_CUBE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no HGG/ or LGG/"):
        load_brats(tmp_path / "empty", SMALL_CUBE)

    root, cases = mini_brats(brain_root, tmp_path / "brats")
    folder = root / brain_phantom.brats_grade(cases[1]) / cases[1]
    t1ce = folder / f"{cases[1]}_t1ce.nii.gz"
    saved = t1ce.read_bytes()
    t1ce.unlink()
    with pytest.raises(UserError, match=f"{cases[1]}_t1ce.nii.gz: missing"):
        load_brats(root, SMALL_CUBE)
    t1ce.write_bytes(saved)

    seg_path = folder / f"{cases[1]}_seg.nii.gz"
    seg = sitk.ReadImage(str(seg_path))
    relabelled = sitk.GetArrayFromImage(seg)
    relabelled[relabelled == 4] = 3
    changed = sitk.GetImageFromArray(relabelled)
    changed.CopyInformation(seg)
    sitk.WriteImage(changed, str(seg_path), useCompression=True)
    with pytest.raises(UserError, match=f"{cases[1]}_seg.nii.gz: label values \\[3\\]"):
        load_brats(root, SMALL_CUBE)


# ---------------------------------------------------------------- non-triviality


def best_threshold_dice(data: TaskData, bins: int = 128) -> tuple[float, float]:
    """Mean Dice of the best single global threshold (either polarity, any channel).

    The threshold is chosen on the train split; returns (train Dice, test Dice).
    """

    def mean_dice(cases: list, channel: int) -> np.ndarray:
        curves = []
        for case in cases:
            bin_of = np.minimum((case.image[channel] * bins).astype(int), bins - 1).ravel()
            mask = case.target.ravel().astype(bool)
            fg, bg = np.bincount(bin_of[mask], minlength=bins), np.bincount(bin_of[~mask], minlength=bins)
            tp = np.append(np.cumsum(fg[::-1])[::-1], 0)  # predicted: bins >= k, k = 0..bins
            fp = np.append(np.cumsum(bg[::-1])[::-1], 0)
            above = 2 * tp / np.maximum(fg.sum() + tp + fp, 1)
            below = 2 * (fg.sum() - tp) / np.maximum(fg.sum() + fg.sum() - tp + bg.sum() - fp, 1)
            curves.append(np.concatenate([above, below]))
        return np.mean(curves, axis=0)

    train = [mean_dice(data.train, c) for c in range(data.train[0].image.shape[0])]
    channel = int(np.argmax([curve.max() for curve in train]))
    best = int(np.argmax(train[channel]))
    return float(train[channel][best]), float(mean_dice(data.test, channel)[best])


@pytest.mark.parametrize("task", ["lcs", "bms"])
def test_a_threshold_does_not_solve_the_phantom(task: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue("liver_data" if task == "lcs" else "brain_data")
    train_dice, test_dice = best_threshold_dice(data)
    print(f"{task}: best single threshold, train Dice {train_dice:.3f}, test Dice {test_dice:.3f}")
    assert test_dice < 0.7
