"""The TensorFlow checkpoint reader against the test writer (independent code): exact round trips,
the ways to name a checkpoint, and one-line errors naming the file for every kind of damage."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from tf_checkpoint_writer import crc32c as writer_crc32c
from tf_checkpoint_writer import field_bytes, field_varint, write_tf_checkpoint

from benchmark.errors import UserError
from benchmark.model.tfcheckpoint import (
    checkpoint_files,
    checkpoint_fingerprint,
    crc32c,
    is_tf_checkpoint,
    read_tf_checkpoint,
)


def sample_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    tensors = {
        "net/conv/w": rng.standard_normal((3, 3, 3, 2, 4)).astype(np.float32),
        "net/conv/b": rng.standard_normal(4),  # float64
        "net/counts": rng.integers(-5, 5, (2, 3)).astype(np.int32),
        "global_step": np.array(3000, dtype=np.int64),  # 0-d
        "net/empty": np.zeros((0, 7), np.float32),  # no bytes at all
        "net/mask": np.array([True, False, True]),
        "net/half": rng.standard_normal((5,)).astype(np.float16),
        "net/small": np.array([-3, 7], np.int8),
        "net/bytes": np.array([0, 255], np.uint8),
    }
    for index in range(40):  # names sharing long prefixes: prefix compression across restart points
        tensors[f"net/stack/layer_{index:02d}/kernel"] = np.full((index % 4, 2), index, np.float32)
    return tensors


WEIGHT = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}


def prefix_of(tmp_path: Path, tensors: dict[str, np.ndarray] | None = None, **options) -> Path:
    prefix = tmp_path / "model.ckpt-3000"
    write_tf_checkpoint(prefix, sample_tensors() if tensors is None else tensors, **options)
    return prefix


def index_of(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".index")


def data_of(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".data-00000-of-00001")


def assert_same(read: dict[str, np.ndarray], written: dict[str, np.ndarray]) -> None:
    assert sorted(read) == sorted(written)
    for name, array in written.items():
        assert read[name].dtype == array.dtype, name
        assert read[name].shape == array.shape, name
        assert np.array_equal(read[name], array), name


def test_crc32c_matches_the_standard_check_value_and_the_writer_on_long_inputs():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    for size in (1, 65_535, 65_536 + 17, 300_001):  # below and above the lane path's threshold
        data = os.urandom(size)
        assert crc32c(data) == writer_crc32c(data)


@pytest.mark.parametrize("block_size", [64, 4096])
def test_every_tensor_comes_back_exactly(tmp_path, block_size):
    tensors = sample_tensors()
    blocks = write_tf_checkpoint(tmp_path / "model.ckpt-3000", tensors, block_size=block_size, restart_interval=4)
    assert (blocks > 1) == (block_size == 64)  # small blocks: the index points at several data blocks
    assert_same(read_tf_checkpoint(tmp_path / "model.ckpt-3000"), tensors)


def test_a_checkpoint_is_named_by_its_prefix_one_of_its_files_or_its_folder(tmp_path):
    prefix = prefix_of(tmp_path)
    named = [prefix, index_of(prefix), data_of(prefix), prefix.with_name(prefix.name + ".meta"), tmp_path]
    for path in named:
        assert is_tf_checkpoint(path)
        assert_same(read_tf_checkpoint(path), sample_tensors())
    assert checkpoint_files(tmp_path) == [index_of(prefix), data_of(prefix)]
    assert len(checkpoint_fingerprint(prefix)) == 16
    assert not is_tf_checkpoint(tmp_path / "model.ckpt-1")
    assert not is_tf_checkpoint(tmp_path / "sub")


def test_a_folders_checkpoint_file_names_the_checkpoint_among_several(tmp_path):
    write_tf_checkpoint(tmp_path / "model.ckpt-1000", WEIGHT)
    prefix = prefix_of(tmp_path)
    with pytest.raises(UserError, match="a folder with 2 checkpoint .index files and no 'checkpoint' file"):
        read_tf_checkpoint(tmp_path)
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-3000"\n'
                                         'all_model_checkpoint_paths: "model.ckpt-1000"\n'
                                         'all_model_checkpoint_paths: "model.ckpt-3000"\n')
    assert_same(read_tf_checkpoint(tmp_path), sample_tensors())
    (tmp_path / "checkpoint").write_text(f'model_checkpoint_path: "{tmp_path / "model.ckpt-1000"}"\n')
    assert checkpoint_files(tmp_path)[0] == tmp_path / "model.ckpt-1000.index"
    assert checkpoint_fingerprint(tmp_path) != checkpoint_fingerprint(prefix)


@pytest.mark.parametrize("state,fragment", [
    (None, "a folder with 0 checkpoint .index files"),
    ("nothing useful\n", "no 'model_checkpoint_path"),
    ('model_checkpoint_path: "model.ckpt-5"\n', "no model.ckpt-5.index file"),
])
def test_a_folder_must_name_an_existing_checkpoint(tmp_path, state, fragment):
    if state is not None:
        (tmp_path / "checkpoint").write_text(state)
    with pytest.raises(UserError, match=fragment):
        read_tf_checkpoint(tmp_path)


def flip_byte(path: Path, position: int) -> None:
    content = bytearray(path.read_bytes())
    content[position] ^= 0xFF
    path.write_bytes(bytes(content))


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


DAMAGES = {
    "index truncated": (lambda prefix: truncate(index_of(prefix), len(index_of(prefix).read_bytes()) - 9),
                        index_of, "bad table magic number"),
    "index cut to less than its footer": (lambda prefix: truncate(index_of(prefix), 20), index_of,
                                          "shorter than its 48-byte footer"),
    "bad magic": (lambda prefix: flip_byte(index_of(prefix), -3), index_of, "bad table magic number"),
    "data block byte flipped": (lambda prefix: flip_byte(index_of(prefix), 30), index_of,
                                "data block at byte 0 fails its CRC32C check"),
    "index block byte flipped": (lambda prefix: flip_byte(index_of(prefix), -54), index_of,
                                 "index block at byte .* fails its CRC32C check"),
    "data truncated": (lambda prefix: truncate(data_of(prefix), 100), data_of, "beyond the file's 100 bytes"),
    "tensor byte flipped": (lambda prefix: flip_byte(data_of(prefix), 5), data_of, "fails its CRC32C check"),
    "data file missing": (lambda prefix: data_of(prefix).unlink(), data_of, "missing"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_checkpoint_is_a_one_line_error_naming_the_file(tmp_path, damage):
    prefix = prefix_of(tmp_path, block_size=256)
    spoil, file_of, fragment = DAMAGES[damage]
    spoil(prefix)
    with pytest.raises(UserError, match=fragment) as error:
        read_tf_checkpoint(prefix)
    assert str(error.value).startswith(str(file_of(prefix)))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("extra,fragment,file_of", [
    (field_varint(4, 1 << 20), "beyond the file's 24 bytes", data_of),  # offset (the last value wins)
    (field_varint(5, 8), "declares 8 bytes", index_of),  # size
    (field_varint(1, 99), "dtype code 99 (unknown)", index_of),
    (field_varint(1, 7), "dtype code 7 (string)", index_of),
    (field_varint(1, 14), "dtype code 14 (bfloat16)", index_of),
    (field_bytes(7, b""), "partitioned into slices", index_of),
    (field_varint(3, 2), "shard 2 of 1", index_of),
])
def test_an_entry_this_reader_cannot_honour_is_refused_naming_the_tensor(tmp_path, extra, fragment, file_of):
    prefix = prefix_of(tmp_path, WEIGHT, extra_fields={"w": extra})
    with pytest.raises(UserError, match=re.escape(fragment)) as error:
        read_tf_checkpoint(prefix)
    assert str(error.value).startswith(f"{file_of(prefix)}: tensor 'w'")


def test_tensors_that_share_bytes_are_refused(tmp_path):
    """Equal tensors, the second pointed at the first's bytes: every CRC holds, but an index of such entries
    could make a small file read as many times its size."""
    same = np.arange(6, dtype=np.float32)
    prefix = prefix_of(tmp_path, {"a": same, "b": same.copy()}, extra_fields={"b": field_varint(4, 0)})
    with pytest.raises(UserError, match="tensors 'a' and 'b' share bytes of shard 0") as error:
        read_tf_checkpoint(prefix)
    assert str(error.value).startswith(str(index_of(prefix)))


def test_snappy_compressed_blocks_are_refused_by_name(tmp_path):
    prefix = prefix_of(tmp_path, WEIGHT, block_type=1)
    with pytest.raises(UserError, match="snappy-compressed") as error:
        read_tf_checkpoint(prefix)
    assert str(error.value).startswith(str(index_of(prefix)))


def test_a_missing_index_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no TensorFlow checkpoint there"):
        read_tf_checkpoint(tmp_path / "model.ckpt-1")
