"""The preprocessing cache: volumes decoded, resampled and windowed once, then memory-mapped.

An entry is a folder ``<cache>/preprocessed/<key>/`` holding one ``.npy`` file per array
and a ``meta.json`` (the entry's metadata with the SHA-256 of its canonical JSON, and each
array's size and SHA-256). The key
hashes the source files (resolved path, size, modification time), the preprocessing
settings and the cache format version, so a changed source or setting lands on a new key
and the stale entry is simply never read again. An entry is written into a temporary
folder renamed into place, so an interrupted write leaves nothing that looks complete
(and the next write removes what a killed writer left, ``files.remove_leftovers``).

Every read verifies the entry without reading its arrays: the metadata (a scan's geometry, a
series' id) must match its recorded SHA-256, each file must have its recorded
size, and its stat stamp (size, modification and change times in ns, inode) must equal the
one ``verified.json`` recorded when the file was last hashed. A file whose stamp differs is
hashed in full, once: it is used, and its new stamp recorded, only if its SHA-256 matches.
A write into a file always changes its change time (ctime), which no user call can set
back, so same-size garbage, or a file put back with its old modification time, is hashed
and caught; a file copied elsewhere (new inode and ctime) is hashed once, then trusted
again. Only a change the file system does not see (a fault of the disk itself) escapes.
A missing, truncated or mismatched entry is logged in one line, removed and preprocessed
again; it is never used.

Arrays come back from ``np.load(mmap_mode="c")``: pages are read on demand, and a write by
the caller changes its own copy, never the cache. The first run returns the arrays read
back from the cache too, so first and later runs see identical values.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from benchmark.data import files
from benchmark.data.datasets import cache_root
from benchmark.data.imageio import HU_MAX, HU_MIN, geometry, geometry_image, metaimage_data_files, read_image
from benchmark.errors import UserError
from benchmark.provenance import code_fingerprint, module_fingerprint

CACHE_FORMAT = 3  # 3: meta.json records the SHA-256 of the metadata
META_FILE = "meta.json"
STAMP_FILE = "verified.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """Preprocessed arrays (by name) and JSON-ready metadata."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def preprocessed_root() -> Path:
    return cache_root() / "preprocessed"


def cache_key(sources: Sequence[Path], settings: Mapping[str, Any], code: str) -> str:
    """A hash of the source files (``files.stamp``: a file rewritten in place with its size and modification
    time put back still has a new change time), the settings and the code that preprocesses them;
    UserError if a source is missing."""
    stamps = []
    for source in sources:
        path = files.resolved(source)
        if not path.is_file():
            raise UserError(f"{source}: file not found")
        stamps.append([str(path), *files.stamp(path)])
    identity = {"format": CACHE_FORMAT, "code": code, "settings": dict(settings), "sources": stamps}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _write_entry(folder: Path, entry: Entry) -> None:
    arrays = {}
    for name, array in entry.arrays.items():
        path = folder / f"{name}.npy"
        with open(path, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array))
        arrays[name] = files.file_record(path)
    manifest = json.dumps({"meta": entry.meta, "meta_sha256": _meta_sha256(entry.meta), "arrays": arrays},
                          sort_keys=True)
    (folder / META_FILE).write_text(manifest, encoding="utf-8")
    files.record_stamps(folder / STAMP_FILE, folder, [f"{name}.npy" for name in arrays])


def _meta_sha256(meta: Mapping[str, Any]) -> str:
    """The SHA-256 of the metadata's canonical JSON (keys sorted)."""
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def entry_fault(folder: Path) -> str | None:
    """What is wrong with the entry in ``folder`` (None: it is whole): its ``meta.json`` unreadable or
    its metadata of another SHA-256 than recorded, an array missing, of another size, or (stamp changed)
    of another SHA-256 than recorded."""
    try:
        manifest = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        meta_changed = _meta_sha256(manifest["meta"]) != manifest["meta_sha256"]
        recorded = {f"{name}.npy": (int(a["bytes"]), str(a["sha256"])) for name, a in manifest["arrays"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{META_FILE} is missing or unreadable"
    if meta_changed:
        return f"the metadata in {META_FILE} does not match its recorded SHA-256 (changed since it was written)"
    return files.recorded_files_fault(folder, recorded, folder / STAMP_FILE)


def _read_entry(folder: Path) -> Entry:
    manifest = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="c") for name in sorted(manifest["arrays"])}
    return Entry(arrays, manifest["meta"])


def _verified_entry(folder: Path) -> Entry | None:
    """The entry in ``folder`` if there is one and it is whole; a damaged one is logged and removed."""
    if not folder.exists():
        return None
    fault = entry_fault(folder)
    if fault is None:
        return _read_entry(folder)
    log.warning("%s: damaged cache entry (%s); preprocessing it again", folder, fault)
    try:
        files.remove_folder(folder)
    except OSError as error:
        raise UserError(f"{folder}: damaged cache entry ({fault}) that cannot be removed ({error.strerror})") \
            from error
    return None


def cached(sources: Sequence[Path], settings: Mapping[str, Any], compute: Callable[[], Entry]) -> Entry:
    """The entry for (sources, settings): read from the cache (verified), or computed once and stored there.

    The entry is keyed by the code too: the data layer's and that of the module defining ``compute``
    (a task's preprocessing) with the plugin helpers it imports, so an edit to any of them preprocesses
    anew.
    """
    code = code_fingerprint(("data",)) + module_fingerprint(compute.__module__)
    folder = preprocessed_root() / cache_key(sources, settings, code)
    entry = _verified_entry(folder)
    if entry is None:
        computed = compute()
        files.write_folder_atomic(folder, lambda tmp: _write_entry(tmp, computed))
        entry = _read_entry(folder)
    return entry


def windowed_hu(hu: np.ndarray) -> np.ndarray:
    """HU clipped to [-1000, 1000]: int16 when every value is a whole number (lossless), else float32."""
    clipped = np.clip(hu, HU_MIN, HU_MAX)
    if np.array_equal(clipped, np.rint(clipped)):
        return clipped.astype(np.int16)
    return clipped.astype(np.float32)


@dataclass(frozen=True)
class CTVolume:
    """A CT scan's windowed HU ``(z, y, x)`` (memory-mapped) and a voxel-less image with its geometry."""

    hu: np.ndarray
    reference: sitk.Image


def ct_volume(path: Path) -> CTVolume:
    """A CT scan, windowed to [-1000, 1000] HU, through the cache (the file is decoded once)."""

    def compute() -> Entry:
        image = read_image(path)
        return Entry({"hu": windowed_hu(sitk.GetArrayViewFromImage(image))}, geometry(image))

    entry = cached([path, *metaimage_data_files(path)], {"reader": "ct-window", "hu": [HU_MIN, HU_MAX]}, compute)
    return CTVolume(entry.arrays["hu"], geometry_image(entry.meta))
