"""The preprocessing cache: volumes decoded, resampled and windowed once, then memory-mapped.

An entry is a folder ``<cache>/preprocessed/<key>/`` holding one ``.npy`` file per array
and a ``meta.json`` (geometry and the like). The key hashes the source files (resolved
path, size, modification time), the preprocessing settings and the cache format version,
so a changed source or setting lands on a new key and the stale entry is simply never
read again. An entry is written into a temporary folder renamed into place, so an
interrupted write leaves nothing that looks complete. Arrays come back from
``np.load(mmap_mode="c")``: pages are read on demand, and a write by the caller changes
its own copy, never the cache. The first run returns the arrays read back from the
cache too, so first and later runs see identical values.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from benchmark.data.datasets import cache_root
from benchmark.data.imageio import HU_MAX, HU_MIN, geometry, geometry_image, read_image
from benchmark.errors import UserError
from benchmark.provenance import code_fingerprint, module_fingerprint

CACHE_FORMAT = 1
META_FILE = "meta.json"


@dataclass(frozen=True)
class Entry:
    """Preprocessed arrays (by name) and JSON-ready metadata."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def preprocessed_root() -> Path:
    return cache_root() / "preprocessed"


def cache_key(sources: Sequence[Path], settings: Mapping[str, Any], code: str) -> str:
    """A hash of the source files (path, size, mtime), the settings and the code that preprocesses
    them; UserError if a source is missing."""
    stamps = []
    for source in sources:
        path = Path(source).resolve()
        if not path.is_file():
            raise UserError(f"{source}: file not found")
        stat = path.stat()
        stamps.append([str(path), stat.st_size, stat.st_mtime_ns])
    identity = {"format": CACHE_FORMAT, "code": code, "settings": dict(settings), "sources": stamps}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _write_entry(folder: Path, entry: Entry) -> None:
    for name, array in entry.arrays.items():
        with open(folder / f"{name}.npy", "wb") as handle:
            np.save(handle, np.ascontiguousarray(array))
    (folder / META_FILE).write_text(json.dumps(entry.meta, sort_keys=True))


def _read_entry(folder: Path) -> Entry:
    meta = json.loads((folder / META_FILE).read_text())
    arrays = {path.stem: np.load(path, mmap_mode="c") for path in sorted(folder.glob("*.npy"))}
    return Entry(arrays, meta)


def cached(sources: Sequence[Path], settings: Mapping[str, Any], compute: Callable[[], Entry]) -> Entry:
    """The entry for (sources, settings): read from the cache, or computed once and stored there.

    The entry is keyed by the code too: the data layer's and that of the module defining ``compute``
    (a task's preprocessing), so an edit to either preprocesses anew.
    """
    code = code_fingerprint(("data",)) + module_fingerprint(compute.__module__)
    folder = preprocessed_root() / cache_key(sources, settings, code)
    if not (folder / META_FILE).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        entry = compute()
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            _write_entry(tmp, entry)
            os.rename(tmp, folder)
        except OSError:
            if not (folder / META_FILE).is_file():  # not a lost race with another process: a real failure
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _read_entry(folder)


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

    entry = cached([path, *_companions(path)], {"reader": "ct-window", "hu": [HU_MIN, HU_MAX]}, compute)
    return CTVolume(entry.arrays["hu"], geometry_image(entry.meta))


def _companions(path: Path) -> list[Path]:
    """The data file a MetaImage header points to (``.raw`` next to ``.mhd``), so that its changes count."""
    path = Path(path)
    raw = path.with_suffix(".raw")
    return [raw] if path.suffix == ".mhd" and raw.is_file() else []
