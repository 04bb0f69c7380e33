"""Real dataset layouts on tiny hand-written datasets: geometry, splits, the preprocessing cache,
``benchmark verify-data`` and the preflight check of ``benchmark run``.

Every dataset here is written in the real download's layout with anisotropic spacing, a
non-zero origin and a direction matrix that is neither the identity nor a flip.
"""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import benchmark.tasks.lcs as lcs
import numpy as np
import pytest
import SimpleITK as sitk
from benchmark.tasks.bms import brats_splits
from helpers import suite_checkpoint, write_ct_series

import benchmark.data.cache as cache
from benchmark.api.registry import TASKS
from benchmark.api.task import Splits
from benchmark.cli import main
from benchmark.data.datasets import directory_source
from benchmark.data.imageio import scale_ct, world_to_index, write_image
from benchmark.data.phantoms.chest import to_world
from benchmark.data.verify import pool_problems
from benchmark.engine.checkpoints import pool_scans
from benchmark.engine.harness import RunSpec, plan_run
from benchmark.errors import UserError

SPACING = (0.7, 0.9, 2.5)  # (x, y, z) mm
ORIGIN = (-120.5, 35.25, -310.0)
ROTATED = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # index x runs along world y
SHAPE = (10, 12, 14)  # (z, y, x)
CUBE = (5, 5, 5)
MARKER = (3, 7, 9)  # (z, y, x) voxel holding a bright marker in every CT scan
SPLIT_NAMES = ("train", "val", "test")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHMARK_CACHE", str(tmp_path / "cache"))


def ct(seed: int, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    hu = np.random.default_rng(seed).integers(-900, -600, size=shape).astype(np.int16)
    hu[MARKER] = 1000
    return hu


def write_ct(array: np.ndarray, path: Path) -> sitk.Image:
    return write_image(array, path, SPACING, ORIGIN, ROTATED)


def write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def read_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


def candidate_rows(uid: str, image: sitk.Image) -> list[tuple]:
    """A positive 0.3 voxel off the marker and a negative on the corner voxel (its crop is mostly padding)."""
    marker = to_world(image, np.array(MARKER) + 0.3)
    corner = to_world(image, np.zeros(3))
    return [(uid, *marker, 1), (uid, *corner, 0)]


def write_luna(root: Path) -> Path:
    rows = []
    for subset in (0, 5, 7):
        uid = f"1.3.6.1.{subset}"
        rows += candidate_rows(uid, write_ct(ct(subset), root / f"subset{subset}" / f"{uid}.mhd"))
    write_csv(root / "candidates_V2.csv", ("seriesuid", "coordX", "coordY", "coordZ", "class"), rows)
    return root


def write_ctpa(root: Path) -> Path:
    rows, splits = [], []
    for index, split in enumerate(SPLIT_NAMES):
        uid = f"1.2.826.{index}"
        rows += candidate_rows(uid, write_ct(ct(index), root / "volumes" / f"{uid}.nii.gz"))
        splits.append((uid, split))
    write_csv(root / "candidates.csv", ("seriesuid", "coordX", "coordY", "coordZ", "class"), rows)
    write_csv(root / "splits.csv", ("seriesuid", "split"), splits)
    return root


def write_nodule_crops(root: Path) -> Path:
    splits = []
    for index, split in enumerate(SPLIT_NAMES):
        case = f"LIDC-IDRI-{index + 1:04d}_0"
        mask = np.zeros(SHAPE, np.uint8)
        mask[4:7, 5:9, 6:10] = 1
        for folder, array in (("images", ct(index)), ("masks", mask)):
            write_image(array, root / folder / f"{case}.nii.gz", (1.0, 1.0, 1.0), ORIGIN, ROTATED)
        splits.append((case, split))
    write_csv(root / "splits.csv", ("case_id", "split"), splits)
    return root


def liver_labels(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[2:8, 3:9, 4:11] = 1
    label[4:6, 5:7, 6:8] = 2
    return label


def write_lits(root: Path) -> Path:
    for number, batch, suffix in ((0, "Training Batch 1", ".nii"), (1, "Training Batch 1", ".nii.gz"),
                                  (100, "Training Batch 2", ".nii.gz"), (115, "Training Batch 2", ".nii")):
        write_ct(ct(number), root / batch / f"volume-{number}{suffix}")
        write_ct(liver_labels(), root / batch / f"segmentation-{number}{suffix}")
    return root


def brats_cases() -> list[str]:
    splits = brats_splits()
    return [splits[split][0] for split in SPLIT_NAMES]


def write_brats(root: Path) -> Path:
    for index, case in enumerate(brats_cases()):
        rng = np.random.default_rng(index)
        brain = np.zeros(SHAPE, bool)
        brain[1:9, 2:10, 2:12] = True
        seg = np.zeros(SHAPE, np.uint8)
        seg[3:7, 4:8, 5:9] = 2
        seg[4:6, 5:7, 6:8] = 4
        seg[5, 6, 7] = 1
        for kind in ("flair", "t1", "t1ce", "t2"):
            image = np.where(brain, rng.integers(100, 900, size=SHAPE), 0).astype(np.int16)
            write_ct(image, root / "HGG" / case / f"{case}_{kind}.nii.gz")
        write_ct(seg, root / "HGG" / case / f"{case}_seg.nii.gz")
    return root


WRITERS: dict[str, Callable[[Path], Path]] = {
    "ncc": write_luna, "ecc": write_ctpa, "ncs": write_nodule_crops, "lcs": write_lits, "bms": write_brats,
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: write(tmp_path_factory.mktemp(name)) for name, write in WRITERS.items()}


@pytest.fixture
def copy(datasets: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    """A fresh copy of a task's valid dataset, to break."""
    return lambda task: Path(shutil.copytree(datasets[task], tmp_path / f"{task}-copy"))


def messages(task: str, root: Path, splits: Splits | None = None) -> list[str]:
    return [str(problem) for problem in TASKS.create(task).verify(root, splits)]


# --- geometry: the exact voxel, centring and padding -------------------------------------------------


@pytest.mark.parametrize("task", ["ncc", "ecc"])
def test_a_world_point_lands_on_the_voxel_given_by_the_direction_matrix(task: str, datasets: dict[str, Path]) -> None:
    image = sitk.ReadImage(str(next((datasets[task]).rglob("*.mhd" if task == "ncc" else "*.nii.gz"))))
    assert image.GetDirection() == ROTATED and image.GetSpacing() == pytest.approx(SPACING)
    world = to_world(image, np.array(MARKER) + 0.3)
    matrix = np.array(ROTATED).reshape(3, 3) @ np.diag(SPACING)  # brute force: index = M^-1 (p - origin)
    expected = np.rint(np.linalg.solve(matrix, np.subtract(world, ORIGIN)))[::-1]
    assert world_to_index(image, world) == MARKER == tuple(int(i) for i in expected)
    naive = np.rint((np.subtract(world, ORIGIN)) / SPACING)[::-1]
    assert tuple(naive) != MARKER  # ignoring the direction lands elsewhere

    data = TASKS.create(task).load(datasets[task], CUBE)
    cases = data.train + data.val + data.test
    assert len(cases) == 6 and {case.target for case in cases} == {0, 1}
    for case in cases:
        centre = case.image[0, 2, 2, 2]
        if case.target == 1:  # the marker sits at the crop's centre
            assert centre == scale_ct(np.array(1000.0))
        else:  # the corner voxel is centred, what lies before it in every axis is air padding
            assert 0 < centre < 1 and case.image[0, :2].max() == 0 and case.image[0, :, :2].max() == 0
            assert case.image[0, :, :, :2].max() == 0 and case.image[0, 2:, 2:, 2:].min() > 0


def test_ncc_splits_by_subset_and_lcs_bms_by_their_shipped_splits(datasets: dict[str, Path]) -> None:
    ncc = TASKS.create("ncc").load(datasets["ncc"], CUBE)
    assert [{case.group for case in ncc.split(s)} for s in SPLIT_NAMES] == [{"1.3.6.1.0"}, {"1.3.6.1.5"},
                                                                             {"1.3.6.1.7"}]
    lits = TASKS.create("lcs").load(datasets["lcs"], CUBE)
    assert [[case.case_id for case in lits.split(s)] for s in SPLIT_NAMES] == [["volume-0", "volume-1"],
                                                                                ["volume-100"], ["volume-115"]]
    np.testing.assert_array_equal(lits.train[0].target, liver_labels() > 0)  # liver = label > 0 (tumour too)
    brats = TASKS.create("bms").load(datasets["bms"], CUBE)
    assert [[case.case_id for case in brats.split(s)] for s in SPLIT_NAMES] == [[case] for case in brats_cases()]
    assert brats.train[0].target.sum() == 4 * 4 * 4  # labels 1, 2 and 4 all count as tumour


# --- split files ----------------------------------------------------------------------------------------


SPLIT_UNITS = {  # the split units of each task (volume-1 is left out of the split file below)
    "ncc": ["1.3.6.1.0", "1.3.6.1.5", "1.3.6.1.7"],
    "ecc": ["1.2.826.0", "1.2.826.1", "1.2.826.2"],
    "ncs": ["LIDC-IDRI-0001_0", "LIDC-IDRI-0002_0", "LIDC-IDRI-0003_0"],
    "lcs": ["volume-0", "volume-100", "volume-115"],
    "bms": brats_cases(),
}


@pytest.mark.parametrize("task", list(WRITERS))
def test_a_split_file_replaces_the_shipped_split(task: str, datasets: dict[str, Path], tmp_path: Path) -> None:
    units = SPLIT_UNITS[task]
    path = tmp_path / "splits.csv"
    write_csv(path, ("case_id", "split"), [(units[0], "test"), (units[1], "train"), (units[2], "val")])
    splits = Splits.read(path)
    data = TASKS.create(task).load(datasets[task], CUBE, splits)
    assert [{case.group for case in data.split(s)} for s in SPLIT_NAMES] == [
        {units[1].rsplit("_", 1)[0] if task == "ncs" else units[1]},
        {units[2].rsplit("_", 1)[0] if task == "ncs" else units[2]},
        {units[0].rsplit("_", 1)[0] if task == "ncs" else units[0]},
    ]
    assert messages(task, datasets[task], splits) == []

    write_csv(path, ("case_id", "split"), [(units[0], "test"), (units[1], "train"), (units[2], "val"),
                                           ("no-such-case", "train")])
    with pytest.raises(UserError, match="1 unknown .* id\\(s\\) \\(not in the data\\): no-such-case"):
        TASKS.create(task).load(datasets[task], CUBE, Splits.read(path))
    assert any("no-such-case" in line for line in messages(task, datasets[task], Splits.read(path)))


def test_the_row_order_of_a_split_file_changes_no_case_order(tmp_path: Path) -> None:
    """The run id hashes a split file's rows sorted, so their order must not change what the run trains on."""
    root, rows = tmp_path / "luna", []
    for subset, uid in ((0, "1.3.6.1.0"), (0, "1.3.6.1.1"), (5, "1.3.6.1.5"), (7, "1.3.6.1.7")):
        rows += candidate_rows(uid, write_ct(ct(subset), root / f"subset{subset}" / f"{uid}.mhd"))
    write_csv(root / "candidates_V2.csv", ("seriesuid", "coordX", "coordY", "coordZ", "class"), rows)
    units = [("1.3.6.1.0", "train"), ("1.3.6.1.1", "train"), ("1.3.6.1.5", "val"), ("1.3.6.1.7", "test")]
    orders = []
    for listed in (units, units[::-1]):
        write_csv(tmp_path / "splits.csv", ("case_id", "split"), listed)
        data = TASKS.create("ncc").load(root, CUBE, Splits.read(tmp_path / "splits.csv"))
        orders.append([case.case_id for split in SPLIT_NAMES for case in data.split(split)])
    assert orders[0] == orders[1] and len(orders[0]) == 8


def test_split_files_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "splits.csv"
    write_csv(path, ("case_id", "split"), [("a", "train"), ("b", "test")])
    with pytest.raises(UserError, match="splits.csv: no case in the val split"):
        Splits.read(path)
    write_csv(path, ("case_id", "split"), [("a", "train"), ("b", "testing")])
    with pytest.raises(UserError, match="splits.csv: line 3: split must be one of train, val, test"):
        Splits.read(path)
    write_csv(path, ("case_id", "split"), [("a", "train"), ("a", "test")])
    with pytest.raises(UserError, match="'a' is listed in two splits"):
        Splits.read(path)
    write_csv(path, ("id", "split"), [("a", "train")])
    with pytest.raises(UserError, match="missing column\\(s\\) case_id"):
        Splits.read(path)


def test_a_split_file_saved_with_a_byte_order_mark_reads_as_without(tmp_path: Path) -> None:
    """Spreadsheet programs save CSV as UTF-8 with a byte-order mark; it is not part of the first name."""
    path = tmp_path / "splits.csv"
    path.write_bytes("\ufeffcase_id,split\na,train\nb,val\nc,test\n".encode())
    assert Splits.read(path).assignment == {"a": "train", "b": "val", "c": "test"}


# --- the preprocessing cache ------------------------------------------------------------------------------


def counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Count the calls of ``module.name`` (still calling through)."""
    calls: list[int] = []
    original = getattr(module, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_the_cache_decodes_each_volume_once_and_notices_a_changed_source(
    datasets: dict[str, Path], copy: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy("lcs")
    reads = counting(monkeypatch, lcs, "read_array")
    first = lcs.load_lits(root, CUBE)
    assert len(reads) == 8  # four volumes and their segmentations
    second = lcs.load_lits(root, CUBE)
    assert len(reads) == 8  # nothing decoded again
    for a, b in zip(first.train + first.val + first.test, second.train + second.val + second.test):
        assert isinstance(b.image, np.memmap) and b.image.dtype == np.float32
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.target, b.target)
    changed = liver_labels()
    changed[changed == 2] = 0
    write_ct(changed, root / "Training Batch 2" / "segmentation-115.nii")
    third = lcs.load_lits(root, CUBE)
    assert len(reads) == 10  # that one pair only
    assert third.test[0].target.sum() < second.test[0].target.sum()


def test_the_cache_key_covers_the_settings_and_ct_volumes_keep_integer_hu(
    datasets: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = datasets["ncc"] / "subset0" / "1.3.6.1.0.mhd"
    computed: list[dict] = []

    def compute(settings: dict) -> cache.Entry:
        computed.append(settings)
        return cache.Entry({"x": np.arange(3.0)}, {"n": 3})

    for settings in ({"window": 1}, {"window": 1}, {"window": 2}):
        entry = cache.cached([source], settings, lambda s=settings: compute(s))
        assert entry.meta == {"n": 3} and entry.arrays["x"].tolist() == [0.0, 1.0, 2.0]
    assert computed == [{"window": 1}, {"window": 2}]

    reads = counting(monkeypatch, cache, "read_image")
    volume = cache.ct_volume(source)
    assert volume.hu.dtype == np.int16 and volume.hu[MARKER] == 1000
    np.testing.assert_array_equal(volume.hu, ct(0))
    assert volume.reference.GetDirection() == ROTATED and volume.reference.GetOrigin() == pytest.approx(ORIGIN)
    cache.ct_volume(source)
    assert len(reads) == 1
    assert cache.windowed_hu(np.array([-3000.0, 0.5, 2000.0])).tolist() == [-1000.0, 0.5, 1000.0]
    assert cache.windowed_hu(np.array([-3000.0, 0.5, 2000.0])).dtype == np.float32  # not whole numbers: kept


# --- verify-data: every fault class ------------------------------------------------------------------------


@pytest.mark.parametrize("task", list(WRITERS))
def test_valid_datasets_have_no_problems(task: str, datasets: dict[str, Path]) -> None:
    assert messages(task, datasets[task]) == []


def rewrite(path: Path, change: Callable[[sitk.Image], sitk.Image]) -> None:
    sitk.WriteImage(change(sitk.ReadImage(str(path))), str(path))


def with_array(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like)
    return image


def cut(path: Path, keep: float) -> None:
    """Keep the first ``keep`` bytes of a file (a fraction of it when below 1), as an interrupted download."""
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data)) if keep < 1 else int(keep)])


def moved(image: sitk.Image, **geometry: tuple[float, ...]) -> sitk.Image:
    for name, value in geometry.items():
        getattr(image, f"Set{name.capitalize()}")(value)
    return image


LITS_B1, LITS_B2 = "Training Batch 1", "Training Batch 2"
FAULTS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    # fault: (task, how to break the dataset, the message expected, as a regular expression)
    "missing file": ("lcs", lambda r: (r / LITS_B1 / "segmentation-1.nii.gz").unlink(),
                     r"segmentation-1.nii: missing \(the segmentation of volume-1.nii.gz\)"),
    "unreadable file": ("lcs", lambda r: (r / LITS_B2 / "volume-115.nii").write_bytes(b"not an image"),
                        r"volume-115.nii: cannot read image \(no valid NIfTI header\)"),
    "truncated .nii": ("lcs", lambda r: cut(r / LITS_B1 / "volume-0.nii", 2000),
                       r"volume-0.nii: truncated: 2000 of 3712 bytes"),  # 352 + 14 x 12 x 10 x 2
    "truncated .nii.gz": ("lcs", lambda r: cut(r / LITS_B2 / "segmentation-100.nii.gz", 0.5),
                          r"segmentation-100.nii.gz: truncated gzip stream"),
    "truncated .raw": ("ncc", lambda r: cut(r / "subset5" / "1.3.6.1.5.raw", 0.5),
                       r"subset5/1.3.6.1.5.raw: truncated: 1680 of 3360 bytes"),
    "size mismatch": ("lcs", lambda r: write_ct(liver_labels((10, 12, 13)), r / LITS_B1 / "segmentation-0.nii"),
                      r"segmentation-0.nii: size \(13, 12, 10\) differs from volume-0.nii's \(14, 12, 10\)"),
    "spacing mismatch": ("lcs", lambda r: rewrite(r / LITS_B1 / "segmentation-0.nii",
                                                  lambda i: moved(i, spacing=(0.7, 0.9, 5.0))),
                         r"segmentation-0.nii: spacing \(0.7, 0.9, 5\) differs from volume-0.nii's \(0.7, 0.9, 2.5\)"),
    "origin mismatch": ("lcs", lambda r: rewrite(r / LITS_B1 / "segmentation-0.nii",
                                                 lambda i: moved(i, origin=(0.0, 0.0, 0.0))),
                        r"segmentation-0.nii: origin \(0, 0, 0\) differs from volume-0.nii's \(-120.5, 35.25, -310\)"),
    "label outside the set": ("lcs", lambda r: rewrite(r / LITS_B1 / "segmentation-0.nii",
                                                       lambda i: with_array(liver_labels() * 3, i)),
                              r"segmentation-0.nii: label values 3, 6 outside the expected 0, 1, 2 \(LiTS"),
    "NaN": ("ncc", lambda r: rewrite(r / "subset5" / "1.3.6.1.5.mhd",
                                     lambda i: with_array(np.where(ct(5) > 0, np.nan, ct(5)).astype(np.float32), i)),
            r"subset5/1.3.6.1.5.mhd: 1 voxel\(s\) are NaN or infinite"),
    "NaN in NIfTI": ("lcs", lambda r: rewrite(r / LITS_B2 / "volume-115.nii",  # SimpleITK would read them as 0
                                              lambda i: with_array(np.where(ct(115) > 0, np.nan, ct(115))
                                                                   .astype(np.float32), i)),
                     r"volume-115.nii: 1 voxel\(s\) are NaN or infinite"),
    "inf in .nii.gz": ("lcs", lambda r: rewrite(r / LITS_B2 / "volume-100.nii.gz",
                                                lambda i: with_array(np.where(ct(100) > 0, -np.inf, ct(100))
                                                                     .astype(np.float32), i)),
                       r"volume-100.nii.gz: 1 voxel\(s\) are NaN or infinite"),
    "empty volume": ("lcs", lambda r: rewrite(r / LITS_B1 / "volume-0.nii",
                                              lambda i: with_array(np.full(SHAPE, -1000, np.int16), i)),
                     r"volume-0.nii: empty volume \(every voxel is -1000\)"),
    "empty label map": ("lcs", lambda r: rewrite(r / LITS_B1 / "segmentation-0.nii",
                                                 lambda i: with_array(np.zeros(SHAPE, np.uint8), i)),
                        r"segmentation-0.nii: empty label map"),
    "duplicated case": ("lcs", lambda r: [shutil.copy(r / LITS_B1 / f"{k}-0.nii", r / LITS_B2 / f"{k}-0.nii")
                                          for k in ("volume", "segmentation")],
                        r"Training Batch 2/volume-0.nii: volume 0 is also at .*Training Batch 1/volume-0.nii"),
    "candidate outside the volume": (
        "ncc", lambda r: (r / "candidates_V2.csv").write_text((r / "candidates_V2.csv").read_text()
                                                              + "1.3.6.1.5,500.0,500.0,500.0,0\n"),
        r"candidates_V2.csv: line 8: point \(500, 500, 500\) mm lies outside its volume"),
    "malformed candidate": (
        "ncc", lambda r: (r / "candidates_V2.csv").write_text((r / "candidates_V2.csv").read_text()
                                                              + "1.3.6.1.5,1.0,x,2.0,0\n"),
        r"candidates_V2.csv: line 8: coordinates and class must be numbers"),
    "unknown case id": (
        "ecc", lambda r: (r / "candidates.csv").write_text((r / "candidates.csv").read_text()
                                                           + "9.9.9,1.0,2.0,3.0,1\n"),
        r"candidates.csv: line 8: candidates of series 9.9.9, which is in no split"),
    "listed case missing": ("ecc", lambda r: (r / "volumes" / "1.2.826.1.nii.gz").unlink(),
                            r"volumes/1.2.826.1.nii.gz: missing \(listed in splits.csv\)"),
    "duplicated series": ("ecc", lambda r: shutil.copy(r / "volumes" / "1.2.826.1.nii.gz",
                                                       r / "volumes" / "1.2.826.1.mhd"),
                          r"1.2.826.1.nii.gz: series 1.2.826.1 is also at .*1.2.826.1.mhd"),
    "a class missing from a split": (
        "ecc", lambda r: (r / "candidates.csv").write_text("\n".join(
            line for line in (r / "candidates.csv").read_text().splitlines()
            if not (line.startswith("1.2.826.0,") and line.endswith(",1"))) + "\n"),
        r"candidates.csv: the train split has only class 0 candidates"),
    "mask values": ("ncs", lambda r: rewrite(r / "masks" / "LIDC-IDRI-0002_0.nii.gz",
                                             lambda i: with_array(sitk.GetArrayFromImage(i) * 255, i)),
                    r"LIDC-IDRI-0002_0.nii.gz: label values 255 outside the expected 0, 1"),
    "wrong modality set": ("bms", lambda r: shutil.copy(next(r.rglob("*_t1.nii.gz")),
                                                        str(next(r.rglob("*_t1.nii.gz"))).replace("_t1.", "_t1Gd.")),
                           r"_t1Gd.nii.gz: unexpected file: a BraTS 2018 case holds"),
    "missing modality": ("bms", lambda r: next(r.rglob("*_t1ce.nii.gz")).unlink(),
                         r"_t1ce.nii.gz: missing \(a BraTS 2018 case holds"),
    "labels of the Decathlon copy": (
        "bms", lambda r: rewrite(next(r.rglob("*_seg.nii.gz")),
                                 lambda i: with_array(np.where(sitk.GetArrayFromImage(i) == 4, 3, 0).astype(np.uint8),
                                                      i)),
        r"_seg.nii.gz: label values 3 outside the expected 0, 1, 2, 4 \(BraTS 2018; the Decathlon's"),
    "4-D image": ("bms", lambda r: sitk.WriteImage(sitk.Image([4, 5, 6, 4], sitk.sitkInt16),
                                                   str(next(r.rglob("*_flair.nii.gz")))),
                  r"_flair.nii.gz: a 4-D image with 1 component\(s\) per voxel"),
    "the Decathlon's repackaging": ("bms", lambda r: (r / "dataset.json").write_text("{}"),
                                    r"Medical Segmentation Decathlon repackaging of BraTS"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_is_named_with_its_file(fault: str, copy: Callable[[str], Path]) -> None:
    task, breaks, expected = FAULTS[fault]
    root = copy(task)
    breaks(root)
    found = messages(task, root)
    assert len(found) == 1, found
    assert re.search(expected, found[0]), found[0]


def test_pool_problems(datasets: dict[str, Path], copy: Callable[[str], Path]) -> None:
    assert pool_problems(datasets["ncc"]) == []
    root = copy("ncc")
    shutil.rmtree(root / "subset5")
    (root / "subset0" / "1.3.6.1.0.raw").write_bytes(b"")
    found = [str(problem) for problem in pool_problems(root)]
    assert len(found) == 2 and found[0] == f"{root}: no pretraining validation scans (subsets 5-6/<seriesuid>.mhd)"
    assert found[1] == f"{root / 'subset0' / '1.3.6.1.0.raw'}: truncated: 0 of 3360 bytes"


# --- the commands ---------------------------------------------------------------------------------------


def test_verify_data_prints_every_problem_and_exits_non_zero(
    datasets: dict[str, Path], copy: Callable[[str], Path], capsys: pytest.CaptureFixture
) -> None:
    assert main(["verify-data", "--task", "bms", "--data-root", str(datasets["bms"])]) == 0
    assert "no problems found for task bms" in capsys.readouterr().out
    root = copy("lcs")
    for fault in ("missing file", "empty volume", "label outside the set"):
        FAULTS[fault][1](root)
    assert main(["verify-data", "--task", "lcs", "--data-root", str(root)]) == 2
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3 and "Traceback" not in out + err
    assert err.startswith("error: ") and "3 problem(s) in 3 file(s) for task lcs" in err


def test_run_stops_before_training_when_the_data_fails_its_checks(
    copy: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = copy("lcs")
    FAULTS["origin mismatch"][1](root)
    argv = ["run", "--method", "scratch-he", "--task", "lcs", "--profile", "smoke", "--data-root", str(root),
            "--results", str(tmp_path / "results"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 problem(s) in 1 file(s) for task lcs; stopped before training" in err
    assert "segmentation-0.nii: origin (0, 0, 0) differs" in err and "Traceback" not in err
    assert not (tmp_path / "results" / "runs").exists()


def test_verify_data_escapes_a_terminal_control_sequence_in_a_listed_name(
    copy: Callable[[str], Path], capsys: pytest.CaptureFixture
) -> None:
    root = copy("ecc")
    with open(root / "candidates.csv", "a") as handle:
        handle.write('"9.9\x1b[31m\u2028x",1.0,2.0,3.0,1\n')
    assert main(["verify-data", "--task", "ecc", "--data-root", str(root)]) == 2
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u2028" not in out and "9.9\\x1b[31m\\u2028x" in out, out
    assert len(out.splitlines()) == 1


CUT_AND_NAN = ("truncated .nii", "truncated .nii.gz", "NaN in NIfTI")


def test_verify_data_names_cut_and_nan_images_and_run_refuses_them(
    copy: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = copy("lcs")
    for fault in CUT_AND_NAN:  # the LiTS volume cut to 2,000 bytes among them
        FAULTS[fault][1](root)
    assert main(["verify-data", "--task", "lcs", "--data-root", str(root)]) == 2
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3 and all(re.search(FAULTS[fault][2], out) for fault in CUT_AND_NAN), out
    assert "3 problem(s) in 3 file(s) for task lcs" in err and "Traceback" not in err
    argv = ["run", "--method", "scratch-he", "--task", "lcs", "--profile", "smoke", "--data-root", str(root),
            "--results", str(tmp_path / "results"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "3 problem(s) in 3 file(s) for task lcs; stopped before training" in err and "Traceback" not in err
    assert all(re.search(FAULTS[fault][2], err) for fault in CUT_AND_NAN)
    assert len(err.splitlines()) == 1 and "\\n" not in err, err  # one line, no escaped line break in it
    assert not (tmp_path / "results" / "runs").exists()


@pytest.mark.parametrize("fault", CUT_AND_NAN)
def test_the_reading_path_refuses_cut_and_nan_images_in_one_line(fault: str, copy: Callable[[str], Path]) -> None:
    root = copy("lcs")  # read without the preflight check: the task's own reading is checked too
    FAULTS[fault][1](root)
    with pytest.raises(UserError) as raised:
        TASKS.create("lcs").load(root, CUBE)
    assert re.search(FAULTS[fault][2], str(raised.value)) and len(str(raised.value).splitlines()) == 1


def test_messages_logged_by_a_task_are_shown_by_the_command_line(
    datasets: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    assert main(["baseline", "--task", "bms", "--profile", "smoke", "--data-root", str(datasets["bms"])]) == 0
    assert re.search(r"INFO: BraTS: \d+ of the \d+ fold cases are not under .*, skipped", capsys.readouterr().err)


# --- voxel embolus masks -> candidates -------------------------------------------------------------------


def test_embolus_masks_become_luna16_candidates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hu = np.full((12, 14, 16), -800, np.int16)
    hu[:, 6:9, :] = 300  # a contrast-filled vessel along x
    mask = np.zeros(hu.shape, np.uint8)
    mask[2:4, 6:9, 2:5] = 1  # two emboli inside it
    mask[8:11, 7:9, 11:13] = 1
    volume = write_ct(hu, tmp_path / "volumes" / "1.2.3.nii.gz")
    write_ct(mask, tmp_path / "masks" / "1.2.3.nii.gz")
    out = tmp_path / "candidates.csv"
    argv = ["convert-emboli", "--volumes", str(tmp_path / "volumes"), "--masks", str(tmp_path / "masks"),
            "--out", str(out), "--negatives", "5", "--min-distance", "6"]
    assert main(argv) == 0
    assert "2 emboli and 5 negatives from 1 volume(s)" in capsys.readouterr().out
    rows = read_rows(out)
    assert list(rows[0]) == ["seriesuid", "coordX", "coordY", "coordZ", "class"]
    worlds = [(float(r["coordX"]), float(r["coordY"]), float(r["coordZ"])) for r in rows]
    classes = [int(r["class"]) for r in rows]
    assert classes == [1, 1, 0, 0, 0, 0, 0]
    # centroids: (2.5, 7, 3) and (9, 7.5, 11.5) (z, y, x), through the rotated, anisotropic geometry
    expected = [to_world(volume, np.array(c)) for c in ((2.5, 7.0, 3.0), (9.0, 7.5, 11.5))]
    np.testing.assert_allclose(worlds[:2], expected, atol=1e-3)
    spacing_zyx = np.array(SPACING[::-1])
    emboli = np.argwhere(mask)
    for world in worlds[2:]:
        index = np.array(world_to_index(volume, world))
        assert hu[tuple(index)] == 300  # inside the vessel
        assert np.min(np.linalg.norm((emboli - index) * spacing_zyx, axis=1)) >= 6
    assert main(argv) == 0 and read_rows(out) == rows  # the same seed, the same negatives
    assert main([*argv, "--seed", "1"]) == 0 and read_rows(out)[2:] != rows[2:]
    write_ct(mask[:, :, :-1], tmp_path / "masks" / "1.2.3.nii.gz")
    assert main(argv) == 2
    assert "1.2.3.nii.gz: size (15, 14, 12) differs" in capsys.readouterr().err


# --- LIDC-IDRI as downloaded: DICOM series and XML reads ---------------------------------------------------

LIDC_SHAPE = (12, 40, 48)  # (z, y, x)
LIDC_SPACING = (0.8, 0.7, 2.0)  # (x, y, z) mm
LIDC_ORIGIN = (-16.5, -12.25, -100.0)
# nodule 1: three readers outline shifted squares on slices 5-7 (rows, columns, inclusive bounds);
# reader 0 cuts a 2x2 hole on slice 6; nodule 2 (reader 3 only) sits at the scan's corner
SQUARES = {0: (12, 21, 10, 19), 1: (12, 21, 12, 21), 2: (14, 23, 10, 19)}
HOLE = (15, 16, 13, 14)
CORNER = (0, 5, 0, 5)


def square_outline(rows_cols: tuple[int, int, int, int]) -> list[tuple[int, int]]:
    """The boundary pixels (x, y) of a square, as the LIDC edge maps list them."""
    r0, r1, c0, c1 = rows_cols
    return [(c, r) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1) if r in (r0, r1) or c in (c0, c1)]


def roi_xml(z_mm: float, points: list[tuple[int, int]], inclusion: bool = True) -> str:
    edges = "".join(f"<edgeMap><xCoord>{x}</xCoord><yCoord>{y}</yCoord></edgeMap>" for x, y in points)
    return (f"<roi><imageZposition>{z_mm}</imageZposition><imageSOP_UID>1.2</imageSOP_UID>"
            f"<inclusion>{'TRUE' if inclusion else 'FALSE'}</inclusion>{edges}</roi>")


def slice_z(k: int) -> float:
    return LIDC_ORIGIN[2] + LIDC_SPACING[2] * k


def write_lidc_scan(folder: Path, series: str = "1.2.826.0.1.3680043.2.1125.7") -> np.ndarray:
    """A DICOM series and its reads; returns the expected 50% consensus of nodule 1 (native voxels)."""
    folder.mkdir(parents=True)
    hu = np.full(LIDC_SHAPE, -800, np.int16)
    hu[5:8, 12:24, 10:22] = 40
    write_ct_series(folder, hu, [slice_z(k) for k in range(LIDC_SHAPE[0])], LIDC_SPACING, LIDC_ORIGIN[:2], series)
    sessions = []
    for reader, square in SQUARES.items():
        rois = "".join(roi_xml(slice_z(k), square_outline(square)) for k in (5, 6, 7))
        if reader == 0:
            rois += roi_xml(slice_z(6), square_outline(HOLE), inclusion=False)
        small = f"<unblindedReadNodule><noduleID>s{reader}</noduleID>{roi_xml(slice_z(2), [(40, 30)])}" \
                "</unblindedReadNodule>"  # < 3 mm: a single point, skipped
        sessions.append(f"<unblindedReadNodule><noduleID>{reader}</noduleID>{rois}</unblindedReadNodule>{small}")
    sessions.append(f"<unblindedReadNodule><noduleID>c</noduleID>{roi_xml(slice_z(0), square_outline(CORNER))}"
                    "</unblindedReadNodule>")
    body = "".join(f"<readingSession><servicingRadiologistID>{i}</servicingRadiologistID>{s}</readingSession>"
                   for i, s in enumerate(sessions))
    (folder / "069.xml").write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n'
                                    f'<LidcReadMessage xmlns="http://www.nih.gov">{body}</LidcReadMessage>\n')
    votes = np.zeros(LIDC_SHAPE, int)
    for reader, (r0, r1, c0, c1) in SQUARES.items():
        marked = np.zeros(LIDC_SHAPE, bool)
        marked[5:8, r0:r1 + 1, c0:c1 + 1] = True
        if reader == 0:
            marked[6, HOLE[0]:HOLE[1] + 1, HOLE[2]:HOLE[3] + 1] = False
        votes += marked
    return votes >= 2  # at least half of the three readers


def test_lidc_dicom_and_xml_reads_become_consensus_crops(tmp_path: Path) -> None:
    import benchmark.tasks._lidc as lidc

    root = tmp_path / "LIDC-IDRI"
    expected = {}
    for number in (1, 520, 700):  # one patient in each split of the default rule
        patient = f"LIDC-IDRI-{number:04d}"
        expected[patient] = write_lidc_scan(root / patient / "1.3.6.1.study" / "1.3.6.1.series")
    xml = next(root.rglob("069.xml"))
    image = lidc.read_series(xml.parent)
    assert image.GetSize() == LIDC_SHAPE[::-1] and image.GetSpacing() == pytest.approx(LIDC_SPACING)
    readers = [[lidc.read_mask(image, rois, xml) for rois in nodules] for nodules in lidc.read_reads(xml)]
    assert [len(nodules) for nodules in readers] == [1, 1, 1, 1]  # the single-point nodules are left out
    groups = lidc.group_reads(image, readers)
    assert sorted(len(group) for group in groups) == [1, 3]
    np.testing.assert_array_equal(lidc.consensus(max(groups, key=len)), expected["LIDC-IDRI-0001"])

    data = TASKS.create("ncs").load(root, (32, 64, 64))
    assert [[case.case_id for case in data.split(s)] for s in SPLIT_NAMES] == [
        ["LIDC-IDRI-0001_0", "LIDC-IDRI-0001_1"], ["LIDC-IDRI-0520_0", "LIDC-IDRI-0520_1"],
        ["LIDC-IDRI-0700_0", "LIDC-IDRI-0700_1"]]
    nodule, corner = sorted(data.train, key=lambda case: int(case.target.sum()), reverse=True)
    assert nodule.image.shape == (1, 32, 64, 64) and nodule.target[16, 32, 32] == 1  # centred on the nodule
    volume_mm3 = expected["LIDC-IDRI-0001"].sum() * np.prod(LIDC_SPACING)
    assert nodule.target.sum() == pytest.approx(volume_mm3, rel=0.15)  # resampled to 1 mm, volume kept
    centroid = np.array(np.nonzero(nodule.target)).mean(axis=1)
    np.testing.assert_allclose(centroid, (16, 32, 32), atol=1.0)
    assert nodule.image[0, 16, 32, 32] == pytest.approx(scale_ct(np.array(40.0)), abs=1e-3)
    assert corner.target[16, 32, 32] == 1 and corner.image[0, :, :20, :20].max() == 0  # air beyond the scan
    assert messages("ncs", root) == []

    (root / "LIDC-IDRI-0700" / "1.3.6.1.study" / "1.3.6.1.series" / "069.xml").write_text(
        xml.read_text().replace(str(slice_z(0)), "-500.0"))
    found = messages("ncs", root)
    assert len(found) == 1 and "LIDC-IDRI-0700" in found[0] and "z = -500 mm lies on no slice" in found[0]



def test_a_split_file_putting_one_lidc_patient_in_two_splits_is_refused(tmp_path: Path) -> None:
    """LIDC-IDRI as downloaded, like the crops layout: a patient's nodules stay in one split."""
    root = tmp_path / "LIDC-IDRI"
    for number in (1, 520, 700):
        write_lidc_scan(root / f"LIDC-IDRI-{number:04d}" / "study" / "series", series=f"1.3.6.1.4.{number}")
    path = tmp_path / "splits.csv"
    write_csv(path, ("case_id", "split"), [("LIDC-IDRI-0001_0", "train"), ("LIDC-IDRI-0001_1", "test"),
                                           ("LIDC-IDRI-0520_0", "val"), ("LIDC-IDRI-0700_0", "test")])
    splits, task = Splits.read(path), TASKS.create("ncs")
    assert messages("ncs", root, splits) == [f"{path}: patient LIDC-IDRI-0001 has cases in two splits"]
    for load in (lambda: task.load(root, (32, 64, 64), splits), lambda: task.split_scans(root, "test", splits)):
        with pytest.raises(UserError, match="patient LIDC-IDRI-0001 has cases in two splits"):
            load()

# --- leakage: a pretraining folder holding a target task's test scans ------------------------------------


def test_a_pool_holding_a_test_scan_of_the_task_is_refused(copy: Callable[[str], Path], tmp_path: Path) -> None:
    root = copy("ncc")  # scans of subsets 0, 5 and 7; the same folder serves as the pretraining pool
    plan_run(RunSpec("genesis", "ncc", profile="smoke", data_root=root, pretrain_root=root))  # test: subset 7
    path = tmp_path / "splits.csv"
    write_csv(path, ("case_id", "split"), [("1.3.6.1.0", "test"), ("1.3.6.1.5", "train"), ("1.3.6.1.7", "val")])
    refused = r"1 of its pretraining scans are test scans of task 'ncc' .*\(e.g. 1\.3\.6\.1\.0\)"
    with pytest.raises(UserError, match=refused):
        plan_run(RunSpec("genesis", "ncc", profile="smoke", data_root=root, pretrain_root=root, splits=path))


def test_verify_data_reports_the_leakage_run_refuses_and_names_the_pool_for_its_problems(
    copy: Callable[[str], Path], datasets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = copy("ncc")
    path = tmp_path / "splits.csv"
    write_csv(path, ("case_id", "split"), [("1.3.6.1.0", "test"), ("1.3.6.1.5", "train"), ("1.3.6.1.7", "val")])
    verify = ["verify-data", "--task", "ncc", "--data-root", str(root), "--pretrain-root", str(root)]
    assert main(verify) == 0
    assert capsys.readouterr().out.splitlines() == [f"{root}: no problems found for task ncc",
                                                    f"{root}: no problems found for pretraining"]
    assert main([*verify, "--splits", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "1 of its pretraining scans are test scans of task 'ncc'" in out and "(e.g. 1.3.6.1.0)" in out
    assert err.strip() == f"error: {root}: 1 problem(s) in 1 file(s) for pretraining"

    (root / "subset0" / "1.3.6.1.0.raw").write_bytes(b"")  # the pool's problem, not the task's folder's
    assert main(["verify-data", "--task", "lcs", "--data-root", str(datasets["lcs"]), "--pretrain-root",
                 str(root)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {root}: 1 problem(s) in 1 file(s) for pretraining"


def test_a_checkpoint_pretrained_on_a_test_scan_of_the_task_is_refused(copy: Callable[[str], Path],
                                                                      tmp_path: Path) -> None:
    """The pool a checkpoint was pretrained on is recorded in it: a run given the file (--weights) is checked
    as one that pretrains itself; a file recording no pool is run with a warning that nothing was checked."""
    root = copy("ncc")  # its test scan: 1.3.6.1.7
    assert pool_scans(directory_source(root), "luna16") == ["1.3.6.1.0", "1.3.6.1.5"]  # subset 7: no pool subset
    leaked = suite_checkpoint(tmp_path / "leaked.pt", pool_scans=["1.3.6.1.0", "1.3.6.1.7"])
    with pytest.raises(UserError, match=r"leaked\.pt: 1 of its pretraining scans are test scans of task 'ncc' "
                                        r".*\(e\.g\. 1\.3\.6\.1\.7\)"):
        plan_run(RunSpec("genesis", "ncc", profile="smoke", data_root=root, weights=leaked))
    clean = suite_checkpoint(tmp_path / "clean.pt", pool_scans=["1.3.6.1.0"])
    assert plan_run(RunSpec("genesis", "ncc", profile="smoke", data_root=root, weights=clean)).warnings == []
    unrecorded = suite_checkpoint(tmp_path / "unrecorded.pt")
    (warning,) = plan_run(RunSpec("genesis", "ncc", profile="smoke", data_root=root, weights=unrecorded)).warnings
    assert warning.startswith(f"leakage not checked: {unrecorded} records no pretraining scans")


@pytest.mark.parametrize("task", ["ncc", "ecc", "ncs", "lcs", "bms"])
def test_a_task_names_the_scans_of_its_test_split(task: str, datasets: dict[str, Path]) -> None:
    """Series UIDs where the layout names them (NCC, ECC; NCS's crops name patients, LiTS and BraTS no series)."""
    named = {"ncc": {"1.3.6.1.7"}, "ecc": {"1.2.826.2"}}.get(task, set())
    assert TASKS.create(task).split_scans(datasets[task], "test") == named


def test_a_pool_holding_the_scan_of_an_ncs_test_patient_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """LUNA16's scans are LIDC-IDRI series: NCS's test patients are found in a pool by their series UID."""
    root = tmp_path / "LIDC-IDRI"
    for number in (1, 520, 700):  # train, val, test
        write_lidc_scan(root / f"LIDC-IDRI-{number:04d}" / "study" / "series", series=f"1.3.6.1.4.{number}")
    pool = tmp_path / "luna"
    for subset, number in ((0, 1), (5, 520)):
        write_ct(ct(number), pool / f"subset{subset}" / f"1.3.6.1.4.{number}.mhd")
    argv = ["run", "--method", "genesis", "--task", "ncs", "--profile", "smoke", "--data-root", str(root),
            "--pretrain-root", str(pool), "--results", str(tmp_path / "results"), "--no-progress"]
    assert TASKS.create("ncs").split_scans(root, "test") == {"1.3.6.1.4.700"}
    plan_run(RunSpec("genesis", "ncs", profile="smoke", data_root=root, pretrain_root=pool))  # no test scan in it

    write_ct(ct(700), pool / "subset0" / "1.3.6.1.4.700.mhd")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 of its pretraining scans are test scans of task 'ncs'" in err and "1.3.6.1.4.700" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "results" / "checkpoints").exists()

    path = tmp_path / "splits.csv"  # a split file making the pooled patients the test set
    write_csv(path, ("case_id", "split"), [("LIDC-IDRI-0001_0", "test"), ("LIDC-IDRI-0001_1", "test"),
                                           ("LIDC-IDRI-0520_0", "val"), ("LIDC-IDRI-0520_1", "val"),
                                           ("LIDC-IDRI-0700_0", "train"), ("LIDC-IDRI-0700_1", "train")])
    assert TASKS.create("ncs").split_scans(root, "test", Splits.read(path)) == {"1.3.6.1.4.1"}


def test_a_supervised_source_training_on_a_test_scan_of_the_target_is_refused(
    copy: Callable[[str], Path], tmp_path: Path
) -> None:
    """NCS names LIDC-IDRI patients, NCC LUNA16 series: a training patient's scan can be an NCC test scan."""
    luna = copy("ncc")  # NCC's test scan: 1.3.6.1.7 (subset 7)

    def source(name: str, train_series: str) -> tuple[tuple[str, str], ...]:
        root = tmp_path / name
        for number, series in ((1, train_series), (520, "1.3.6.1.4.520"), (700, "1.3.6.1.4.700")):
            write_lidc_scan(root / f"LIDC-IDRI-{number:04d}" / "study" / "series", series=series)
        return ("source", "ncs"), ("source_root", str(root))

    def spec(settings: tuple[tuple[str, str], ...]) -> RunSpec:
        return RunSpec("supervised", "ncc", profile="smoke", data_root=luna, method_settings=settings)

    plan_run(spec(source("a", "1.3.6.1.4.1")))
    refused = r"1 training scan\(s\) of the source task 'ncs' are test scans of 'ncc' \(e\.g\. 1\.3\.6\.1\.7\)"
    with pytest.raises(UserError, match=refused):  # patient 0001 (NCS training) was scanned in NCC's test scan
        plan_run(spec(source("b", "1.3.6.1.7")))
