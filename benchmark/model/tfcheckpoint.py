"""Read a TensorFlow 1 checkpoint (a V2 "tensor bundle") without TensorFlow.

A checkpoint ``model.ckpt-N`` is the prefix of ``model.ckpt-N.index`` (the metadata) and
``model.ckpt-N.data-SSSSS-of-NNNNN`` (the tensor bytes, one file per shard); a ``.meta`` file
(the graph) is not needed and never read. Facts this reader relies on (TensorFlow's
``tensor_bundle.proto``, ``tensor_shape.proto``, ``types.proto``, ``tensor_bundle.cc`` and the
LevelDB-style table of ``core/lib/io``):

* The ``.index`` file is an SSTable: data blocks, a metaindex block, an index block, then a
  48-byte footer: the metaindex and index BlockHandles (each two varint64s, offset and size),
  zero padding to 40 bytes, and the 8-byte little-endian magic 0xdb4775248b80fb57.
* Every block is followed by a 5-byte trailer: its compression type (0 none, 1 snappy) and the
  masked CRC32C of the block's bytes and that type byte. TensorFlow writes bundles uncompressed;
  a snappy block is refused. Every block's checksum is verified.
* A block holds prefix-compressed entries (varint32 shared key bytes, varint32 unshared key
  bytes, varint32 value length, the unshared key bytes, the value), then its restart offsets
  (uint32 each) and their count (uint32). The index block's values are the BlockHandles of the
  data blocks; the metaindex block is empty in bundles.
* Keys are the tensor names, in increasing byte order. The empty key holds the
  ``BundleHeaderProto``, with fields num_shards (1), endianness (2: 0 little, 1 big) and version
  (3: a ``VersionDef``, whose min_consumer is field 2); every other value is a
  ``BundleEntryProto``: dtype (1, the ``DataType`` enum: 1 float, 2 double, 3 int32, 4 uint8,
  5 int16, 6 int8, 7 string, 8 complex64, 9 int64, 10 bool, 14 bfloat16, 17 uint16, 18
  complex128, 19 half), shape (2, a ``TensorShapeProto``: repeated dim (2), each with size (1)
  and name (2); unknown_rank (3)), shard_id (3), offset (4), size (5), crc32c (6, fixed32) and
  slices (7, present only for a partitioned tensor).
* A tensor's bytes are ``size`` bytes at ``offset`` of shard ``shard_id``, row-major, in the
  header's byte order; ``crc32c`` is the masked CRC32C of exactly those bytes (TensorFlow's
  ``BundleWriter::Add``), which is verified. The mask is ``rotate-right-15(crc) + 0xa282ead8``.

Protobuf's wire format is parsed here by hand (varints, length-delimited fields, fixed32 and
fixed64; the last value of a repeated scalar field wins, as in protobuf). Readable dtypes: the
floats (16, 32, 64 bits), the signed integers (8 to 64 bits), uint8, uint16, bool and the complex
types. Strings, bfloat16, the quantized types, big-endian bundles, partitioned (sliced) tensors,
snappy blocks and anything truncated, corrupt or out of bounds are a one-line ``UserError``
naming the file: nothing is ever zero-filled.

A checkpoint is named by its prefix, by any of its files (``.index``, ``.meta``, ``.data-*``:
the ending is dropped), or by its folder: the checkpoint that the folder's ``checkpoint`` text
file names (TensorFlow's ``model_checkpoint_path: "model.ckpt-N"`` line, relative to the folder
or absolute), else the folder's only ``.index`` file.

CRC32C (Castagnoli) is table-driven; on long inputs the bytes are cut into ``CRC_LANES`` equal
lanes whose CRC registers numpy advances together, then combined (a CRC register is linear in
its start value and the data, so lane ``i``'s register is added to the running register after
the latter has been advanced over the lane's length of zero bytes): about 0.2 s for 10 MB, where
a byte loop in Python takes some 1.6 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from benchmark.errors import UserError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked CRC32C (4 bytes)
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1
CRC_MASK_DELTA = 0xA282EAD8
CASTAGNOLI = 0x82F63B78  # the reflected CRC32C polynomial
CRC_LANES = 1024  # lanes advanced together by numpy (inputs of at least 64 bytes a lane)
MIN_LANE_BYTES = 64
BUNDLE_VERSION = 1  # the bundle format version this reader implements (TensorFlow's kTensorBundleVersion)
MAX_SHARDS = 4096  # data files of one checkpoint: a network's variables take a handful
MAX_INDEX_BYTES = 256 << 20  # an index lists names, shapes and offsets: far less for any network
MAX_DIMENSIONS = 8  # a network's variables have at most 5
CHECKPOINT_STATE = "checkpoint"  # the text file naming a folder's latest checkpoint
CHECKPOINT_SUFFIX = r"\.(index|meta|data-\d{5}-of-\d{5})$"  # the endings of a checkpoint's files
# The DataType codes of types.proto that map onto a numpy dtype (little-endian in the file).
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 8: "<c8", 9: "<i8", 10: "?",
          17: "<u2", 18: "<c16", 19: "<f2"}
# Codes of types.proto that this reader refuses by name (any other code is refused as unknown).
UNREADABLE_DTYPES = {7: "string", 11: "qint8", 12: "quint8", 13: "qint32", 14: "bfloat16", 15: "qint16",
                     16: "quint16"}


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(CASTAGNOLI), table >> 1).astype(np.uint32)
    return table


CRC_TABLE = _crc_table()
CRC_TABLE_LIST = [int(value) for value in CRC_TABLE]


def _advance(register: int, data: bytes) -> int:
    """The CRC register after ``data`` (no final inversion), one byte at a time."""
    table = CRC_TABLE_LIST
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _zero_bytes_operator(length: int) -> list[int]:
    """Where each of the 32 register bits goes after ``length`` zero bytes (the operator is linear)."""
    images = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    for _ in range(length):
        images = CRC_TABLE[images & 0xFF] ^ (images >> 8)
    return [int(image) for image in images]


def _apply(operator: list[int], register: int) -> int:
    result = 0
    for bit, image in enumerate(operator):
        if register >> bit & 1:
            result ^= image
    return result


def crc32c(data: bytes) -> int:
    """The CRC32C (Castagnoli) of ``data``: start 0xffffffff, final inversion, as TensorFlow's."""
    lane_bytes = len(data) // CRC_LANES
    register = 0xFFFFFFFF
    if lane_bytes >= MIN_LANE_BYTES:
        lanes = np.frombuffer(data, np.uint8, CRC_LANES * lane_bytes).reshape(CRC_LANES, lane_bytes)
        registers = np.zeros(CRC_LANES, np.uint32)
        registers[0] = register  # the other lanes start at 0: their registers are added below
        for column in np.ascontiguousarray(lanes.T):
            registers = CRC_TABLE[(registers ^ column) & 0xFF] ^ (registers >> 8)
        shift = _zero_bytes_operator(lane_bytes)
        register = 0
        for lane_register in registers.tolist():
            register = _apply(shift, register) ^ lane_register
        data = data[CRC_LANES * lane_bytes:]
    return _advance(register, data) ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """TensorFlow's ``crc32c::Unmask``: a stored checksum back to the CRC."""
    rotated = (masked - CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


class _Cursor:
    """Reads varints and byte runs off ``data``; anything past its end is a UserError naming
    ``path`` and ``what`` is being read."""

    def __init__(self, data: bytes, path: Path, what: str) -> None:
        self.data, self.position, self.path, self.what = data, 0, path, what

    def corrupt(self, problem: str) -> UserError:
        return UserError(f"{self.path}: corrupt TensorFlow checkpoint: {self.what}: {problem}")

    def done(self) -> bool:
        return self.position >= len(self.data)

    def varint(self, bits: int = 64) -> int:
        value, shift = 0, 0
        while True:
            if self.position >= len(self.data):
                raise self.corrupt("a varint runs past its end")
            byte = self.data[self.position]
            self.position += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift >= bits:
                raise self.corrupt(f"a varint longer than {bits} bits")
        if value >> bits:
            raise self.corrupt(f"a varint larger than {bits} bits")
        return value

    def take(self, count: int) -> bytes:
        if self.position + count > len(self.data):
            raise self.corrupt(f"{count} bytes wanted at byte {self.position} of {len(self.data)}")
        chunk = self.data[self.position:self.position + count]
        self.position += count
        return chunk

    def handle(self) -> tuple[int, int]:
        """A BlockHandle: (offset, size)."""
        return self.varint(), self.varint()


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


def _protobuf_fields(data: bytes, path: Path, what: str) -> dict[int, list[int | bytes]]:
    """The fields of one protobuf message, by field number, each a list of its values in order
    (varints and fixed-width numbers as ints, length-delimited fields as bytes)."""
    cursor, fields = _Cursor(data, path, what), {}
    while not cursor.done():
        tag = cursor.varint()
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value: int | bytes = cursor.varint()
        elif wire_type == 1:
            value = int.from_bytes(cursor.take(8), "little")
        elif wire_type == 2:
            value = cursor.take(cursor.varint())
        elif wire_type == 5:
            value = int.from_bytes(cursor.take(4), "little")
        else:
            raise cursor.corrupt(f"protobuf wire type {wire_type} (field {number}) is not used by checkpoints")
        fields.setdefault(number, []).append(value)
    return fields


def _last_int(fields: dict[int, list[int | bytes]], number: int, cursor: _Cursor) -> int:
    """A scalar field's value (the last one, as protobuf merges), 0 if absent (proto3's default)."""
    values = fields.get(number, [0])
    if not isinstance(values[-1], int):
        raise cursor.corrupt(f"field {number} is not a number")
    return values[-1]


def _messages(fields: dict[int, list[int | bytes]], number: int, cursor: _Cursor) -> list[bytes]:
    """A message field's values (encoded), in order."""
    messages = []
    for value in fields.get(number, []):
        if not isinstance(value, bytes):
            raise cursor.corrupt(f"field {number} is not a message")
        messages.append(value)
    return messages


@dataclass(frozen=True)
class BundleEntry:
    """A ``BundleEntryProto``: where one tensor's bytes lie and what they are."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int  # as stored: masked
    sliced: bool


def _read_block(data: bytes, handle: tuple[int, int], end: int, path: Path, what: str) -> bytes:
    """A block's bytes, its checksum verified; ``end``: where the blocks' region of the file ends."""
    offset, size = handle
    if offset + size + BLOCK_TRAILER_SIZE > end:
        raise UserError(f"{path}: corrupt TensorFlow checkpoint: the {what} (bytes {offset} to "
                        f"{offset + size + BLOCK_TRAILER_SIZE}) runs past the table's {end} bytes (truncated?)")
    contents = data[offset:offset + size + 1]  # the block and its compression type byte
    stored = int.from_bytes(data[offset + size + 1:offset + size + BLOCK_TRAILER_SIZE], "little")
    if crc32c(contents) != unmask_crc(stored):
        raise UserError(f"{path}: corrupt TensorFlow checkpoint: the {what} at byte {offset} fails its CRC32C check")
    compression = contents[-1]
    if compression == SNAPPY_COMPRESSION:
        raise UserError(f"{path}: the {what} is snappy-compressed, which this reader does not decompress "
                        "(TensorFlow writes checkpoint bundles uncompressed)")
    if compression != NO_COMPRESSION:
        raise UserError(f"{path}: corrupt TensorFlow checkpoint: the {what} has unknown compression type {compression}")
    return contents[:-1]


def _block_entries(block: bytes, path: Path, what: str) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of a block, prefix compression undone."""
    restarts = int.from_bytes(block[-4:], "little") if len(block) >= 4 else 0
    entries_end = len(block) - 4 * (restarts + 1)
    cursor = _Cursor(block[:max(entries_end, 0)], path, what)
    if restarts < 1 or entries_end < 0:
        raise cursor.corrupt(f"{restarts} restart points do not fit a block of {len(block)} bytes")
    entries, key = [], b""
    while not cursor.done():
        shared, unshared, value_size = cursor.varint(32), cursor.varint(32), cursor.varint(32)
        if shared > len(key):
            raise cursor.corrupt(f"an entry shares {shared} bytes with a key of {len(key)}")
        key = key[:shared] + cursor.take(unshared)
        entries.append((key, cursor.take(value_size)))
    return entries


def _read_table(path: Path) -> list[tuple[bytes, bytes]]:
    """Every (key, value) entry of an SSTable file, in order; keys strictly increasing."""
    if not path.is_file():
        raise UserError(f"{path}: no such TensorFlow checkpoint index file")
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise UserError(f"{path}: {path.stat().st_size} bytes, more than the {MAX_INDEX_BYTES >> 20} MiB a "
                        "checkpoint index of a network's variables can take")
    data = path.read_bytes()
    if len(data) < FOOTER_SIZE:
        raise UserError(f"{path}: not a TensorFlow checkpoint index: {len(data)} bytes, shorter than its "
                        f"{FOOTER_SIZE}-byte footer (truncated?)")
    footer = data[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise UserError(f"{path}: not a TensorFlow checkpoint index (bad table magic number: truncated, or "
                        "another kind of file)")
    cursor = _Cursor(footer[:-8], path, "the table footer")
    metaindex_handle, index_handle = cursor.handle(), cursor.handle()
    end = len(data) - FOOTER_SIZE
    _read_block(data, metaindex_handle, end, path, "metaindex block")
    entries: list[tuple[bytes, bytes]] = []
    index_block = _read_block(data, index_handle, end, path, "index block")
    next_block = 0  # data blocks are laid out in order without overlap: a hostile index cannot reuse one
    for _, value in _block_entries(index_block, path, "the index block"):
        handle_cursor = _Cursor(value, path, "an index entry")
        handle = handle_cursor.handle()
        if not handle_cursor.done():
            raise handle_cursor.corrupt("bytes after its block handle")
        if handle[0] < next_block:
            raise UserError(f"{path}: corrupt TensorFlow checkpoint: the data block at byte {handle[0]} overlaps "
                            "the one before it")
        next_block = handle[0] + handle[1]
        block = _block_entries(_read_block(data, handle, end, path, "data block"), path,
                               f"the data block at byte {handle[0]}")
        keys = [entry[0] for entry in entries[-1:] + block]
        for before, after in zip(keys, keys[1:]):
            if before >= after:
                raise UserError(f"{path}: corrupt TensorFlow checkpoint: keys out of order ({after!r} after "
                                f"{before!r})")
        entries += block
    return entries


def _parse_header(value: bytes, path: Path) -> int:
    """The number of shards the bundle header declares; a UserError for what this reader cannot read."""
    cursor = _Cursor(value, path, "the bundle header")
    fields = _protobuf_fields(value, path, "the bundle header")
    shards, endianness = _last_int(fields, 1, cursor), _last_int(fields, 2, cursor)
    versions = _messages(fields, 3, cursor)
    version = _protobuf_fields(versions[-1], path, "the bundle version") if versions else {}
    min_consumer = _last_int(version, 2, cursor)
    if endianness != 0:
        raise UserError(f"{path}: a big-endian TensorFlow checkpoint, which this reader does not read")
    if min_consumer > BUNDLE_VERSION:
        raise UserError(f"{path}: a TensorFlow checkpoint of bundle format version {min_consumer} or later "
                        f"(this reader reads version {BUNDLE_VERSION})")
    if not 1 <= shards <= MAX_SHARDS:
        raise cursor.corrupt(f"{shards} data shards (1 to {MAX_SHARDS} are read)")
    return shards


def _parse_shape(value: bytes, cursor: _Cursor) -> tuple[int, ...]:
    fields = _protobuf_fields(value, cursor.path, cursor.what)
    if _last_int(fields, 3, cursor):
        raise cursor.corrupt("a shape of unknown rank")
    sizes = []
    for dim in _messages(fields, 2, cursor):
        size = _signed64(_last_int(_protobuf_fields(dim, cursor.path, cursor.what), 1, cursor))
        if size < 0:
            raise cursor.corrupt(f"a dimension of size {size}")
        sizes.append(size)
    return tuple(sizes)


def _parse_entry(name: str, value: bytes, path: Path) -> BundleEntry:
    what = f"the entry of '{name}'"
    cursor = _Cursor(value, path, what)
    fields = _protobuf_fields(value, path, what)
    shapes = _messages(fields, 2, cursor)
    return BundleEntry(name=name, dtype=_last_int(fields, 1, cursor),
                       shape=_parse_shape(shapes[-1], cursor) if shapes else (),
                       shard=_last_int(fields, 3, cursor), offset=_signed64(_last_int(fields, 4, cursor)),
                       size=_signed64(_last_int(fields, 5, cursor)), crc=_last_int(fields, 6, cursor),
                       sliced=bool(fields.get(7)))


def read_bundle_index(index: Path) -> tuple[int, list[BundleEntry]]:
    """The number of data shards and the tensor entries of a ``.index`` file."""
    entries = _read_table(index)
    if not entries or entries[0][0] != b"":
        raise UserError(f"{index}: corrupt TensorFlow checkpoint: no bundle header entry")
    shards = _parse_header(entries[0][1], index)
    tensors = []
    for key, value in entries[1:]:
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"{index}: corrupt TensorFlow checkpoint: a tensor name that is not UTF-8 ({key!r})") \
                from error
        tensors.append(_parse_entry(name, value, index))
    return shards, tensors


def data_file(prefix: Path, shard: int, shards: int) -> Path:
    return prefix.parent / f"{prefix.name}.data-{shard:05d}-of-{shards:05d}"


def _entry_dtype(entry: BundleEntry, index: Path, shards: int) -> np.dtype:
    """The numpy dtype of an entry this reader can read; a UserError naming the index file otherwise."""
    where = f"{index}: tensor '{entry.name}'"
    if entry.sliced:
        raise UserError(f"{where} is partitioned into slices, which this reader does not assemble")
    if entry.dtype not in DTYPES:
        kind = UNREADABLE_DTYPES.get(entry.dtype, "unknown")
        raise UserError(f"{where} has dtype code {entry.dtype} ({kind}), which this reader does not read")
    if not 0 <= entry.shard < shards:
        raise UserError(f"{where} lies in shard {entry.shard} of {shards}")
    dtype = np.dtype(DTYPES[entry.dtype])
    if len(entry.shape) > MAX_DIMENSIONS:
        raise UserError(f"{where} has {len(entry.shape)} dimensions (at most {MAX_DIMENSIONS} are read)")
    expected = math.prod(int(side) for side in entry.shape) * dtype.itemsize  # Python ints: no overflow
    if entry.size != expected:
        raise UserError(f"{where} declares {entry.size} bytes, but shape {entry.shape} of {dtype} needs {expected}")
    return dtype


def _check_disjoint(entries: list[BundleEntry], index: Path) -> None:
    """UserError if two tensors' byte ranges overlap in a shard: TensorFlow writes each tensor's bytes once,
    one after the other, and an index whose entries share bytes could make a small file read as many times
    its size in memory."""
    by_place = sorted(entries, key=lambda entry: (entry.shard, entry.offset, entry.size))
    for before, entry in zip(by_place, by_place[1:]):
        if entry.shard == before.shard and entry.size and before.size and entry.offset < before.offset + before.size:
            raise UserError(f"{index}: tensors '{before.name}' and '{entry.name}' share bytes of shard {entry.shard} "
                            f"(from {entry.offset}; TensorFlow writes each tensor's bytes once)")


def _tensor(entry: BundleEntry, dtype: np.dtype, path: Path, handle: BinaryIO, length: int) -> np.ndarray:
    """The tensor ``entry`` describes, read off its shard ``path`` (open as ``handle``, ``length`` bytes):
    only its own bytes are read."""
    where = f"{path}: tensor '{entry.name}'"
    if entry.offset < 0 or entry.offset + entry.size > length:
        raise UserError(f"{where} lies at bytes {entry.offset} to {entry.offset + entry.size}, beyond the file's "
                        f"{length} bytes (truncated?)")
    handle.seek(entry.offset)
    raw = handle.read(entry.size)
    if crc32c(raw) != unmask_crc(entry.crc):
        raise UserError(f"{where} fails its CRC32C check (corrupt data)")
    return np.frombuffer(raw, dtype).reshape(entry.shape).astype(dtype.newbyteorder("="))


def _folder_prefix(folder: Path) -> Path:
    """The checkpoint a folder holds: the one its ``checkpoint`` file names (``model_checkpoint_path:
    "..."``, relative to the folder or absolute), else its only ``.index`` file's."""
    state = folder / CHECKPOINT_STATE
    if not state.is_file():
        indexes = sorted(folder.glob("*.index"))
        if len(indexes) != 1:
            raise UserError(f"{folder}: a folder with {len(indexes)} checkpoint .index files and no "
                            f"'{CHECKPOINT_STATE}' file naming one (give a checkpoint's prefix, e.g. model.ckpt-3000)")
        return _without_suffix(indexes[0])
    text = state.read_text(encoding="utf-8", errors="replace")
    match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"\s*$', text, re.MULTILINE)
    if match is None:
        raise UserError(f"{state}: no 'model_checkpoint_path: \"...\"' line")
    named = Path(match.group(1))
    return named if named.is_absolute() else folder / named


def _without_suffix(path: Path) -> Path:
    """A checkpoint file's prefix: ``path`` less a ``.index``, ``.meta`` or ``.data-SSSSS-of-NNNNN`` ending."""
    return path.with_name(re.sub(CHECKPOINT_SUFFIX, "", path.name))


def checkpoint_prefix(path: Path) -> Path:
    """The prefix of the checkpoint ``path`` names: the prefix itself, one of its files, or a folder
    (``_folder_prefix``). A UserError where there is none."""
    path = Path(path)
    prefix = _folder_prefix(path) if path.is_dir() else _without_suffix(path)
    if not prefix.with_name(prefix.name + ".index").is_file():
        raise UserError(f"{prefix}: no TensorFlow checkpoint there (no {prefix.name}.index file)")
    return prefix


def is_tf_checkpoint(path: Path) -> bool:
    """Whether ``path`` names a TensorFlow checkpoint (a prefix or file of one with its ``.index`` file
    present, or a folder with a ``checkpoint`` or ``.index`` file), without reading it."""
    path = Path(path)
    if path.is_dir():
        return (path / CHECKPOINT_STATE).is_file() or any(path.glob("*.index"))
    prefix = _without_suffix(path)
    return prefix.with_name(prefix.name + ".index").is_file()


def checkpoint_files(path: Path) -> list[Path]:
    """The files a checkpoint's tensors come from: its ``.index`` file, then its data shards."""
    prefix = checkpoint_prefix(path)
    index = prefix.with_name(prefix.name + ".index")
    shards, _ = read_bundle_index(index)
    return [index] + [data_file(prefix, shard, shards) for shard in range(shards)]


def checkpoint_fingerprint(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a checkpoint's ``.index`` file followed by its data shards."""
    digest = hashlib.sha256()
    for file in checkpoint_files(path):
        if not file.is_file():
            raise UserError(f"{file}: missing: a data file of TensorFlow checkpoint {checkpoint_prefix(path)}")
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def read_tf_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a TensorFlow checkpoint, by name. ``path``: the checkpoint's prefix, one of its
    files or its folder (see the module docstring). Strict: anything it cannot read exactly is a
    one-line UserError naming the file."""
    prefix = checkpoint_prefix(path)
    index = prefix.with_name(prefix.name + ".index")
    shards, entries = read_bundle_index(index)
    _check_disjoint(entries, index)
    tensors = {}
    with contextlib.ExitStack() as open_files:
        shard_files: dict[int, tuple[Path, BinaryIO, int]] = {}  # each shard opened once
        for entry in entries:
            dtype = _entry_dtype(entry, index, shards)
            if entry.shard not in shard_files:
                shard_path = data_file(prefix, entry.shard, shards)
                if not shard_path.is_file():
                    raise UserError(f"{shard_path}: missing: the data file of TensorFlow checkpoint {prefix}")
                shard_files[entry.shard] = (shard_path, open_files.enter_context(shard_path.open("rb")),
                                            shard_path.stat().st_size)
            tensors[entry.name] = _tensor(entry, dtype, *shard_files[entry.shard])
    return tensors
