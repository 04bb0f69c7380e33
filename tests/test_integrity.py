"""Bad bytes never become numbers: images checked against their headers, cache entries and
checkpoints against the SHA-256 written with them, leftovers of killed writers removed."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import benchmark.data.cache as cache
from benchmark.api.profiles import PROFILES
from benchmark.api.registry import METHODS
from benchmark.data import datasets, files
from benchmark.data.imageio import metaimage_data_files, read_array, read_image
from benchmark.engine import checkpoints, store
from benchmark.engine.pretrain import save_checkpoint
from benchmark.errors import UserError

SHAPE = (6, 7, 8)  # (z, y, x)
VOXEL_BYTES = int(np.prod(SHAPE)) * 4  # float32


def volume() -> np.ndarray:
    return np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)


def write(array: np.ndarray, path: Path, compress: bool = False) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.9, 2.5))
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# name: (file written, compressed, the file holding the voxels, the message once that file is cut in half)
FORMATS: dict[str, tuple[str, bool, str, str]] = {
    "nii": ("a.nii", False, "a.nii", rf"a.nii: truncated: {(352 + VOXEL_BYTES) // 2} of {352 + VOXEL_BYTES} bytes"),
    "nii.gz": ("a.nii.gz", True, "a.nii.gz", r"a.nii.gz: truncated gzip stream"),
    "mhd+raw": ("a.mhd", False, "a.raw", rf"a.raw: truncated: {VOXEL_BYTES // 2} of {VOXEL_BYTES} bytes"),
    "mhd+zraw": ("a.mhd", True, "a.zraw", r"a.zraw: truncated zlib stream"),
    "mha": ("a.mha", False, "a.mha", r"a.mha: truncated: \d+ of \d+ bytes"),
}


@pytest.mark.parametrize("kind", list(FORMATS))
def test_a_whole_image_reads_and_a_cut_one_is_named_with_its_byte_count(kind: str, tmp_path: Path) -> None:
    name, compress, data, expected = FORMATS[kind]
    path = write(volume(), tmp_path / name, compress)
    np.testing.assert_array_equal(read_array(path), volume())
    cut_in_half(tmp_path / data)
    with pytest.raises(UserError) as raised:
        read_image(path)
    assert re.fullmatch(f"{re.escape(str(tmp_path))}/{expected}", str(raised.value)), str(raised.value)


@pytest.mark.parametrize("kind", list(FORMATS))
def test_nan_and_inf_voxels_are_counted_in_every_format(kind: str, tmp_path: Path) -> None:
    name, compress, _, _ = FORMATS[kind]
    array = volume()
    array[1, 2, 3], array[4, 5, 6] = np.nan, -np.inf
    path = write(array, tmp_path / name, compress)
    with pytest.raises(UserError, match=r"a\.(nii|nii\.gz|mhd|mha): 2 voxel\(s\) are NaN or infinite$"):
        read_image(path)


def test_a_corrupt_gzip_stream_and_a_missing_raw_file_are_named(tmp_path: Path) -> None:
    path = write(volume(), tmp_path / "a.nii.gz", compress=True)
    data = bytearray(path.read_bytes())
    data[-8:-4] = bytes(4 - b % 4 for b in data[-8:-4])  # the CRC-32 of the gzip trailer, changed
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"a.nii.gz: corrupt gzip stream \(CRC check failed"):
        read_image(path)
    header = write(volume(), tmp_path / "b.mhd")
    (tmp_path / "b.raw").unlink()
    with pytest.raises(UserError, match=r"b.raw: file not found \(the voxels of b.mhd\)"):
        read_image(header)


# --- the preprocessing cache ------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A source file for cache entries, in a cache of the test's own."""
    monkeypatch.setenv("BENCHMARK_CACHE", str(tmp_path / "cache"))
    return write(volume(), tmp_path / "source.nii")


def entry_of(source: Path, computed: list[int]) -> cache.Entry:
    def compute() -> cache.Entry:
        computed.append(1)
        return cache.Entry({"image": np.arange(4096, dtype=np.float32), "mask": np.ones(64, np.uint8)}, {"n": 2})

    return cache.cached([source], {"reader": "test"}, compute)


def counting_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    hashed: list[Path] = []
    original = files.sha256_file

    def sha256_file(path: Path) -> str:
        hashed.append(Path(path))
        return original(path)

    monkeypatch.setattr(files, "sha256_file", sha256_file)
    return hashed


def the_folder() -> Path:
    (folder,) = cache.preprocessed_root().iterdir()
    return folder


def test_a_cache_entry_is_hashed_when_written_and_again_only_when_its_stamp_changes(
    source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    computed: list[int] = []
    hashed = counting_hashes(monkeypatch)
    entry_of(source, computed)
    assert len(computed) == 1 and sorted(p.name for p in hashed) == ["image.npy", "mask.npy"]
    hashed.clear()
    for _ in range(3):  # every later read: sizes and stat stamps only
        entry = entry_of(source, computed)
    assert hashed == [] and len(computed) == 1 and entry.meta == {"n": 2}
    image = the_folder() / "image.npy"
    os.utime(image)  # touched, not changed: hashed once, found whole, used, its stamp recorded anew
    entry = entry_of(source, computed)
    assert [p.name for p in hashed] == ["image.npy"] and len(computed) == 1
    np.testing.assert_array_equal(entry.arrays["image"], np.arange(4096, dtype=np.float32))
    entry_of(source, computed)
    assert len(hashed) == 1


def overwrite_same_size(path: Path, keep_mtime: bool = False) -> None:
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(200)
        handle.write(np.random.default_rng(1).bytes(64))
    if keep_mtime:  # put back as it was: only the change time, which nobody can set, tells
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "same-size garbage": (lambda f: overwrite_same_size(f / "image.npy"),
                          "image.npy does not match its recorded SHA-256"),
    "same-size garbage, old mtime": (lambda f: overwrite_same_size(f / "image.npy", keep_mtime=True),
                                     "image.npy does not match its recorded SHA-256"),
    "truncated": (lambda f: cut_in_half(f / "image.npy"), "image.npy holds 8256 of its 16512 bytes"),
    "deleted": (lambda f: (f / "mask.npy").unlink(), "mask.npy is missing"),
    "meta garbage": (lambda f: (f / "meta.json").write_text("{not json"), "meta.json is missing or unreadable"),
    "meta edited": (lambda f: (f / "meta.json").write_text((f / "meta.json").read_text().replace('"n": 2', '"n": 3')),
                    "the metadata in meta.json does not match its recorded SHA-256"),
}


def test_a_source_rewritten_with_its_size_and_modification_time_put_back_is_preprocessed_again(
    source: Path,
) -> None:
    computed: list[int] = []
    entry_of(source, computed)
    stat = source.stat()
    write(volume() + 1, source)  # other voxels, the same size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    entry_of(source, computed)
    assert computed == [1, 1]


def test_a_source_whose_links_loop_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.nii").symlink_to("b.nii")
    (tmp_path / "b.nii").symlink_to("a.nii")
    with pytest.raises(UserError, match=r"a\.nii: symlink loop$"):
        cache.cache_key([tmp_path / "a.nii"], {}, "code")


@pytest.mark.parametrize("compress", [False, True])
def test_a_ct_volume_is_keyed_by_the_voxel_file_its_header_names(source: Path, compress: bool) -> None:
    def header_of(array: np.ndarray, folder: Path) -> Path:  # without the compressed size, which differs
        folder.mkdir(exist_ok=True)
        path = write(array, folder / "scan.mhd", compress)
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if not line.startswith("CompressedDataSize")))
        return path

    header = header_of(volume(), source.parent)
    (data,) = metaimage_data_files(header)  # scan.raw, or scan.zraw when compressed
    assert data.suffix == (".zraw" if compress else ".raw")
    before = cache.ct_volume(header).hu.copy()
    other = header_of(np.full(SHAPE, -500, np.float32), source.parent / "other")
    assert other.read_bytes() == header.read_bytes()  # the header stays as it is: only the voxel file changes
    shutil.copyfile(other.parent / data.name, data)
    assert np.all(np.asarray(cache.ct_volume(header).hu) == -500) and not np.all(before == -500)


def test_the_slice_files_a_metaimage_lists_or_numbers_are_its_data_files(tmp_path: Path) -> None:
    for name in ("a.raw", "b.raw", "s01.raw", "s03.raw"):
        (tmp_path / name).write_bytes(b"")
    listed = tmp_path / "listed.mhd"
    listed.write_text("NDims = 3\nElementDataFile = LIST 2D\na.raw\nb.raw\n")
    numbered = tmp_path / "numbered.mhd"
    numbered.write_text("NDims = 3\nElementDataFile = s%02d.raw 1 3 2\n")
    assert [p.name for p in metaimage_data_files(listed)] == ["a.raw", "b.raw"]
    assert [p.name for p in metaimage_data_files(numbered)] == ["s01.raw", "s03.raw"]
    numbered.write_text("NDims = 3\nElementDataFile = s%s%s.raw 1 3\n")
    with pytest.raises(UserError, match="numbered.mhd: ElementDataFile 's%s%s.raw 1 3'"):
        metaimage_data_files(numbered)
    numbered.write_text("NDims = 3\nElementDataFile = s%d.raw 1 999999999\n")
    with pytest.raises(UserError, match="at most"):
        metaimage_data_files(numbered)


def test_an_edit_to_a_helper_of_the_preprocessing_module_preprocesses_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: Path
) -> None:
    package = tmp_path / "plugin_with_helper"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "prep.py").write_text(
        "import numpy as np\nfrom benchmark.data.cache import Entry, cached\n"
        "from plugin_with_helper.helpers import scale\n\n"
        "def read(path):\n    return cached([path], {'reader': 'helper-test'},"
        " lambda: Entry({'x': scale(np.ones(3, np.float32))})).arrays['x']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # two edits in one second: no stale .pyc read back
    values = []
    for factor in (2, 3):
        (package / "helpers.py").write_text(f"def scale(a):\n    return a * {factor}\n")
        for name in ("plugin_with_helper.prep", "plugin_with_helper.helpers", "plugin_with_helper"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        cache.module_fingerprint.cache_clear()  # a new process, as after an edit
        import plugin_with_helper.prep as prep
        values.append(float(prep.read(source)[0]))
    assert values == [2.0, 3.0]


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_cache_entry_is_rebuilt_with_a_warning_never_used(
    damage: str, source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    computed: list[int] = []
    entry_of(source, computed)
    folder = the_folder()
    breaks, fault = DAMAGES[damage]
    breaks(folder)
    entry = entry_of(source, computed)
    assert len(computed) == 2
    np.testing.assert_array_equal(entry.arrays["image"], np.arange(4096, dtype=np.float32))
    np.testing.assert_array_equal(entry.arrays["mask"], np.ones(64, np.uint8))
    assert entry.meta == {"n": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{folder}: damaged cache entry ({fault}"), warnings
    assert warnings[0].endswith("; preprocessing it again") and len(warnings[0].splitlines()) == 1
    assert cache.entry_fault(folder) is None and [p.name for p in cache.preprocessed_root().iterdir()] == [folder.name]
    entry_of(source, computed)
    assert len(computed) == 2


# --- the built-in phantoms -----------------------------------------------------------------------------------


GENERATED: list[int] = []  # one item a generation of ``write_tiny_phantom``


def write_tiny_phantom(root: Path, seed: int) -> None:
    """A phantom of three small files in two folders (a generator is run in the same process)."""
    GENERATED.append(seed)
    time.sleep(0.2)  # long enough for two checks at once to overlap
    for name, size in (("Training Batch 1/volume-0.nii", 300), ("Training Batch 2/volume-129.nii", 300),
                       ("Training Batch 2/segmentation-129.nii", 400)):
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(np.random.default_rng(size).bytes(size))


@pytest.fixture
def tiny_phantom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny phantom generated once, in a cache of the test's own; ``GENERATED`` counts from there."""
    monkeypatch.setenv("BENCHMARK_CACHE", str(tmp_path / "cache"))
    GENERATED.clear()
    root = datasets.phantom_source(write_tiny_phantom).root
    assert GENERATED == [0]
    return root


PHANTOM_DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "file deleted": (lambda r: (r / "Training Batch 2/volume-129.nii").unlink(),
                     "Training Batch 2/volume-129.nii is missing"),
    "label map edited, old mtime": (lambda r: overwrite_same_size(r / "Training Batch 2/segmentation-129.nii", True),
                                    "Training Batch 2/segmentation-129.nii does not match its recorded SHA-256"),
    "file cut": (lambda r: cut_in_half(r / "Training Batch 1/volume-0.nii"),
                 "Training Batch 1/volume-0.nii holds 150 of its 300 bytes"),
    "file added": (lambda r: (r / "Training Batch 2/volume-130.nii").write_bytes(b"x"),
                   "Training Batch 2/volume-130.nii is not in its manifest.json"),
    "no manifest (an older version)": (lambda r: (r / "manifest.json").unlink(), "manifest.json is missing"),
}


def test_a_whole_phantom_is_hashed_when_generated_and_then_only_stat_checked(
    tiny_phantom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = counting_hashes(monkeypatch)
    for _ in range(3):
        assert datasets.phantom_source(write_tiny_phantom).root == tiny_phantom
    assert GENERATED == [0] and hashed == []


@pytest.mark.parametrize("damage", list(PHANTOM_DAMAGES))
def test_a_damaged_phantom_is_generated_again_with_a_one_line_warning(
    damage: str, tiny_phantom: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = {p: p.read_bytes() for p in tiny_phantom.rglob("*") if p.is_file()}
    breaks, fault = PHANTOM_DAMAGES[damage]
    breaks(tiny_phantom)
    assert datasets.phantom_source(write_tiny_phantom).root == tiny_phantom
    assert GENERATED == [0, 0]
    assert {p: p.read_bytes() for p in tiny_phantom.rglob("*") if p.is_file()} == before
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{tiny_phantom}: built-in phantom data damaged"), warnings
    assert f"({fault}" in warnings[0] and warnings[0].endswith("; generating it again")
    datasets.phantom_source(write_tiny_phantom)
    assert GENERATED == [0, 0]


def test_a_damaged_phantom_checked_twice_at_once_is_generated_once(tiny_phantom: Path) -> None:
    """Two threads stand for two processes: each opens the lock anew, and ``flock`` locks one open file."""
    (tiny_phantom / "Training Batch 2/volume-129.nii").unlink()
    with ThreadPoolExecutor(2) as pool:
        roots = list(pool.map(lambda _: datasets.phantom_source(write_tiny_phantom).root, range(2)))
    assert roots == [tiny_phantom] * 2 and GENERATED == [0, 0] and datasets.phantom_fault(tiny_phantom) is None


# --- leftovers of killed writers ----------------------------------------------------------------------------


def aged(path: Path, seconds: float = files.STALE_SECONDS + 60) -> Path:
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


def leftover(path: Path, age: float = files.STALE_SECONDS + 60) -> Path:
    """A temporary folder (or file) as a writer leaves it, last modified ``age`` seconds ago."""
    if path.suffix == ".tmp":
        path.write_bytes(b"half written")
    else:
        path.mkdir(parents=True)
        (path / "image.npy").write_bytes(b"half written")
    old = time.time() - age
    os.utime(path, (old, old))
    return path


@pytest.fixture
def held() -> Callable[[Path], None]:
    """Lock a path as a live writer holds its temporary file or folder (released after the test)."""
    descriptors: list[int] = []

    def hold(path: Path) -> None:
        descriptors.append(os.open(path, os.O_RDONLY))
        fcntl.flock(descriptors[-1], fcntl.LOCK_EX)

    yield hold
    for descriptor in descriptors:
        os.close(descriptor)


def test_leftover_cache_folders_of_killed_writers_are_removed_at_the_next_write(
    source: Path, held: Callable[[Path], None]
) -> None:
    root = cache.preprocessed_root()
    dead = leftover(root / ".0123456789abcdef01234567.k1ll3d_x")
    young = leftover(root / ".0123456789abcdef01234567.wr1t1ng_", age=0)
    busy = leftover(root / ".0123456789abcdef01234567.l0ck3d__")
    held(busy)
    entry_of(source, [])
    names = {p.name for p in root.iterdir()}
    assert dead.name not in names and {young.name, busy.name} <= names and len(names) == 3


def test_leftover_temporary_files_are_removed_at_the_next_write_in_their_folder(
    tmp_path: Path, held: Callable[[Path], None]
) -> None:
    dead = leftover(tmp_path / ".result.json.k1ll3d_x.tmp")
    young = leftover(tmp_path / ".cases.csv.wr1t1ng_.tmp", age=0)
    busy = leftover(tmp_path / ".history.csv.l0ck3d__.tmp")
    other = leftover(tmp_path / ".notes.tmp")  # not a name write_atomic makes
    held(busy)
    files.write_json(tmp_path / "result.json", {"a": 1})
    assert {p.name for p in tmp_path.iterdir()} == {"result.json", young.name, busy.name, other.name}
    assert not dead.exists()


# --- checkpoints ---------------------------------------------------------------------------------------------

TINY = dataclasses.replace(PROFILES["smoke"], pretrain_epochs=1, pretrain_steps_per_epoch=1, pretrain_val_batches=1)


@pytest.fixture(scope="module")
def cached_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results root holding the checkpoints of seeds 0 and 1 (kept pristine: tests copy it)."""
    results = tmp_path_factory.mktemp("checkpoints")
    for seed in (0, 1):
        obtain(results, seed)
    return results


def obtain(results: Path, seed: int) -> tuple[dict, dict]:
    return checkpoints.obtain_checkpoint(METHODS.create("genesis"), checkpoints.pretraining_pool(None), TINY, seed,
                                         results, torch.device("cpu"), progress=False)


def folder_of(results: Path, seed: int) -> Path:
    identity = checkpoints.pretrain_identity(METHODS.create("genesis"), checkpoints.pretraining_pool(None), TINY, seed)
    return store.checkpoint_dir(results, checkpoints.checkpoint_id(METHODS.create("genesis"), identity))


def other_seeds_file(results: Path, name: str) -> None:
    shutil.copy(folder_of(results, 1) / name, folder_of(results, 0) / name)


def drop_sha256(results: Path) -> None:
    path = folder_of(results, 0) / "meta.json"
    meta = json.loads(path.read_text())
    del meta[checkpoints.SHA256_KEY]
    path.write_text(json.dumps(meta))


CHECKPOINT_DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "another seed's checkpoint.pt": (lambda r: other_seeds_file(r, "checkpoint.pt"),
                                     "checkpoint.pt does not match its recorded SHA-256"),
    "another seed's checkpoint and meta": (lambda r: [other_seeds_file(r, n) for n in ("checkpoint.pt", "meta.json")],
                                           "its meta.json records another checkpoint's identity"),
    "truncated": (lambda r: cut_in_half(folder_of(r, 0) / "checkpoint.pt"),
                  "checkpoint.pt does not match its recorded SHA-256"),
    "0 bytes": (lambda r: (folder_of(r, 0) / "checkpoint.pt").write_bytes(b""),
                "checkpoint.pt does not match its recorded SHA-256"),
    "deleted": (lambda r: (folder_of(r, 0) / "checkpoint.pt").unlink(), "checkpoint.pt is missing"),
    "no recorded SHA-256": (drop_sha256, "its meta.json records no SHA-256 of checkpoint.pt"),
}


def test_a_checkpoints_bytes_depend_on_its_content_not_on_its_file_name(tmp_path: Path) -> None:
    """torch.save names its zip archive after the file it writes to; the suite saves through a buffer,
    so the same weights give the same bytes (and the same recorded SHA-256) wherever they are written,
    and two trainings of one spec can be compared by hash."""
    checkpoint = {"state_dict": {"encoder.weight": torch.arange(6.0).reshape(2, 3)}, "epochs": 3}
    first, second = tmp_path / "a" / "checkpoint.pt", tmp_path / "b" / "other-name.pt"
    save_checkpoint(checkpoint, first)
    save_checkpoint(checkpoint, second)
    assert first.read_bytes() == second.read_bytes()


def test_a_whole_checkpoint_is_reused(cached_checkpoints: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkpoint, meta = obtain(cached_checkpoints, 0)
    assert meta["reused"] and len(meta[checkpoints.SHA256_KEY]) == 64 and checkpoint["method"] == "genesis"
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_whole_checkpoint_found_with_the_training_state_a_kill_left_drops_that_state(
    cached_checkpoints: Path, tmp_path: Path
) -> None:
    """Killed after writing meta.json, before removing latest.pt: the next process reuses the checkpoint
    and removes the leftover state (a full model and optimiser) rather than keeping it for ever."""
    results = Path(shutil.copytree(cached_checkpoints, tmp_path / "results"))
    leftover = folder_of(results, 0) / store.LATEST_FILE
    leftover.write_bytes(b"the training state of the last epoch")
    assert obtain(results, 0)[1]["reused"] and not leftover.exists()


@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGES))
def test_a_damaged_or_replaced_checkpoint_is_pretrained_again_never_used(
    damage: str, cached_checkpoints: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results = Path(shutil.copytree(cached_checkpoints, tmp_path / "results"))
    original = torch.load(folder_of(results, 0) / "checkpoint.pt", weights_only=True)["state_dict"]
    breaks, fault = CHECKPOINT_DAMAGES[damage]
    breaks(results)
    checkpoint, meta = obtain(results, 0)
    assert not meta["reused"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"checkpoint {folder_of(results, 0).name}: {fault}" + warnings[0].split(fault, 1)[1]]
    assert warnings[0].endswith("; pretraining it again")
    for key, value in original.items():  # pretrained again: the same numbers as before (deterministic CPU)
        assert torch.equal(checkpoint["state_dict"][key], value), key
    assert checkpoints.checkpoint_fault(folder_of(results, 0), meta["identity"]) is None
    assert obtain(results, 0)[1]["reused"]


@pytest.mark.parametrize("data_file", ["my scan.raw", "LIST 2D", "s%d.raw 0 5 1"])
def test_a_cut_data_file_named_with_a_space_listed_or_numbered_is_named(tmp_path: Path, data_file: str) -> None:
    """SimpleITK says 'No such file or directory' for these: the check names the short file instead."""
    array = volume()
    header = (f"ObjectType = Image\nNDims = 3\nDimSize = {SHAPE[2]} {SHAPE[1]} {SHAPE[0]}\nElementType = MET_FLOAT\n"
              "ElementSpacing = 1 1 1\nOffset = 0 0 0\nTransformMatrix = 1 0 0 0 1 0 0 0 1\n"
              f"ElementDataFile = {data_file}\n")
    slices = [f"s{k}.raw" for k in range(SHAPE[0])]
    if data_file.startswith("LIST"):
        header += "".join(f"{name}\n" for name in slices)
    (tmp_path / "a.mhd").write_text(header)
    if data_file == "my scan.raw":
        (tmp_path / data_file).write_bytes(array.tobytes())
    for k, name in enumerate(slices if data_file != "my scan.raw" else []):
        (tmp_path / name).write_bytes(array[k].tobytes())
    np.testing.assert_array_equal(read_array(tmp_path / "a.mhd"), array)
    cut = tmp_path / ("my scan.raw" if data_file == "my scan.raw" else slices[-1])
    whole = cut.stat().st_size
    cut.write_bytes(cut.read_bytes()[: whole // 2])
    with pytest.raises(UserError, match=rf"{re.escape(cut.name)}: truncated: {whole // 2} of {whole} bytes"):
        read_image(tmp_path / "a.mhd")
