"""A minimal writer of TensorFlow 1 checkpoints (V2 tensor bundles), for tests only.

Written apart from the reader (``benchmark.model.tfcheckpoint``) so that each checks the other:
its own CRC32C (a byte loop over a 256-entry table), its own protobuf encoder and its own
LevelDB-style table builder. What it writes, as TensorFlow's ``BundleWriter`` does:

* ``<prefix>.data-00000-of-00001``: each tensor's bytes (little-endian, row-major), in key order;
* ``<prefix>.index``: a table whose entries are the header (empty key: ``BundleHeaderProto``
  num_shards=1, version {producer=1}) and one ``BundleEntryProto`` per tensor (dtype=1, shape=2,
  offset=4, size=5, crc32c=6 masked; shard_id=3 left at its default 0), sorted by key; data
  blocks cut at ``block_size`` bytes, a restart point every ``restart_interval`` entries, each
  block followed by its type byte and masked CRC32C; an empty metaindex block, the index block
  (one entry a data block, keyed by that block's last key, a restart point at each entry) and
  the 48-byte footer.

``extra_fields`` appends raw protobuf bytes to a tensor's entry: a repeated scalar field's last
value wins, so a test can override a field (``field_varint(1, 99)``: an unknown dtype) or add a
``slices`` field. ``block_type`` is the compression byte written in every trailer (1: snappy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAGIC = 0xDB4775248B80FB57
DATA_TYPES = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("uint8"): 4,
              np.dtype("int16"): 5, np.dtype("int8"): 6, np.dtype("int64"): 9, np.dtype("bool"): 10,
              np.dtype("float16"): 19}


def _table() -> list[int]:
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ (0x82F63B78 if value & 1 else 0)
        table.append(value)
    return table


TABLE = _table()


def crc32c(data: bytes) -> int:
    value = 0xFFFFFFFF
    for byte in data:
        value = TABLE[(value ^ byte) & 0xFF] ^ (value >> 8)
    return value ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    value = crc32c(data)
    return (((value >> 15) | (value << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_bytes(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def field_fixed32(number: int, value: int) -> bytes:
    return varint(number << 3 | 5) + value.to_bytes(4, "little")


def shape_proto(shape: tuple[int, ...]) -> bytes:
    return b"".join(field_bytes(2, field_varint(1, size)) for size in shape)


def entry_proto(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int) -> bytes:
    return (field_varint(1, dtype) + field_bytes(2, shape_proto(shape)) + field_varint(4, offset)
            + field_varint(5, size) + field_fixed32(6, crc))


def header_proto() -> bytes:
    return field_varint(1, 1) + field_bytes(3, field_varint(1, 1))


def block(entries: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out, restarts, previous = bytearray(), [], b""
    for position, (key, value) in enumerate(entries):
        shared = 0
        if position % restart_interval:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        else:
            restarts.append(len(out))
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    restarts = restarts or [0]
    for restart in restarts:
        out += restart.to_bytes(4, "little")
    return bytes(out + len(restarts).to_bytes(4, "little"))


class TableWriter:
    def __init__(self, block_type: int) -> None:
        self.content = bytearray()
        self.block_type = block_type

    def write_block(self, contents: bytes) -> bytes:
        """Append a block and its trailer; return its encoded handle."""
        handle = varint(len(self.content)) + varint(len(contents))
        typed = contents + bytes([self.block_type])
        self.content += typed + masked_crc32c(typed).to_bytes(4, "little")
        return handle


def table_bytes(entries: list[tuple[bytes, bytes]], block_size: int, restart_interval: int,
                block_type: int) -> tuple[bytes, int]:
    """An SSTable holding ``entries`` (sorted) and its number of data blocks."""
    writer, index, pending = TableWriter(block_type), [], []
    for key, value in entries:
        pending.append((key, value))
        if len(block(pending, restart_interval)) >= block_size:
            index.append((key, writer.write_block(block(pending, restart_interval))))
            pending = []
    if pending:
        index.append((pending[-1][0], writer.write_block(block(pending, restart_interval))))
    metaindex = writer.write_block(block([], restart_interval))
    index_handle = writer.write_block(block(index, 1))
    footer = (metaindex + index_handle).ljust(40, b"\0") + MAGIC.to_bytes(8, "little")
    return bytes(writer.content + footer), len(index)


def write_tf_checkpoint(prefix: Path, tensors: dict[str, np.ndarray], block_size: int = 4096,
                        restart_interval: int = 16, extra_fields: dict[str, bytes] | None = None,
                        block_type: int = 0) -> int:
    """Write ``tensors`` as the checkpoint ``prefix``; return the number of data blocks of its index."""
    data, entries = bytearray(), [(b"", header_proto())]
    for name in sorted(tensors, key=lambda text: text.encode()):
        array = np.array(tensors[name], order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        entry = entry_proto(DATA_TYPES[array.dtype], array.shape, len(data), len(raw), masked_crc32c(raw))
        entries.append((name.encode(), entry + (extra_fields or {}).get(name, b"")))
        data += raw
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))
    index, blocks = table_bytes(entries, block_size, restart_interval, block_type)
    prefix.with_name(prefix.name + ".index").write_bytes(index)
    return blocks
