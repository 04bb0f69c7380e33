"""Where a task's data comes from: a user's folder, or a built-in phantom generated on demand.

A phantom lives in the cache (``$BENCHMARK_CACHE``, default ``~/.cache/genesis-benchmark``)
under a folder named after its generator and a fingerprint of the generator's source
code and seed, so a changed generator writes a new dataset and an unchanged one is
never regenerated. Generation happens in a temporary folder renamed into place, so
an interrupted generation leaves nothing that looks complete; its last step writes the
folder's ``manifest.json`` (each file's relative name, size and SHA-256).

Every use checks the folder against its manifest as the preprocessing cache checks an entry:
the same names (no file missing or added), each file's size, and its stat stamp (size,
modification and change times, inode, recorded beside the folder in ``<folder>.verified.json``);
a file whose stamp changed is hashed, once. A phantom that fails, or has no manifest (written
by an older version), is the suite's own derived data: it is generated again, with a one-line
warning. One process at a time checks and generates a phantom (a lock on ``<folder>.lock``).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.data import files
from benchmark.errors import UserError
from benchmark.provenance import data_code_closure

if TYPE_CHECKING:
    from benchmark.data.cases import Splits

PHANTOM_SEED = 0
PHANTOM_MANIFEST = "manifest.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """A dataset folder, what it is, its fingerprint and the user's split file replacing the shipped split."""

    root: Path
    kind: str  # "phantom" or "directory"
    fingerprint: str  # covers the split file too
    splits: Splits | None = None

    def describe(self) -> dict[str, str]:
        described = {"kind": self.kind, "root": str(self.root), "fingerprint": self.fingerprint}
        if self.splits is not None:
            described["splits"] = str(self.splits.path)
        return described


def _with_splits(fingerprint: str, splits: Splits | None) -> str:
    if splits is None:
        return fingerprint
    return hashlib.sha256(f"{fingerprint}:{splits.fingerprint}".encode()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("BENCHMARK_CACHE", Path.home() / ".cache" / "genesis-benchmark"))


@functools.cache  # once per generator and process: a sweep plans every cell
def _source_files(write: Callable[[Path, int], None]) -> list[Path]:
    """The generator's own module, every module of the phantom library, and, followed from file to
    file, the modules of this data layer and the task's helpers beside it that they import (the
    layouts they write, such as a reader's file names and header; a split's patient numbers)."""
    files = set((Path(__file__).parent / "phantoms").glob("*.py"))
    files.add(Path(inspect.getsourcefile(write) or ""))
    return sorted(data_code_closure({f for f in files if f.is_file()}))


def phantom_fingerprint(write: Callable[[Path, int], None], seed: int) -> str:
    digest = hashlib.sha256(f"{write.__module__}.{write.__qualname__}:{seed}".encode())
    for path in _source_files(write):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def phantom_source(write: Callable[[Path, int], None], seed: int = PHANTOM_SEED,
                   splits: Splits | None = None) -> DataSource:
    """The phantom written by ``write``, generated into the cache unless already there and whole."""
    fingerprint = phantom_fingerprint(write, seed)
    root = cache_root() / "phantoms" / f"{write.__name__}-{fingerprint}"
    with _phantom_lock(root):
        _ensure_phantom(root, write, seed)
    return DataSource(root=root, kind="phantom", fingerprint=_with_splits(fingerprint, splits), splits=splits)


@contextmanager
def _phantom_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<root>.lock`` for the block, so that no two processes check, remove or
    generate one phantom at once. In a cache this process cannot write to, it can generate nothing either:
    the check then runs without the lock."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        handle = open(root.with_name(f"{root.name}.lock"), "a", encoding="utf-8")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _ensure_phantom(root: Path, write: Callable[[Path, int], None], seed: int) -> None:
    """Generate the phantom at ``root`` unless it is there and matches its manifest; one that does not is
    removed and generated again (a one-line warning)."""
    if root.exists():
        fault = phantom_fault(root)
        if fault is None:
            return
        log.warning("%s: built-in phantom data damaged or from an older version (%s); generating it again",
                    root, fault)
        try:
            files.remove_folder(root)
        except OSError as error:
            raise UserError(f"{root}: built-in phantom data damaged ({fault}) and cannot be removed "
                            f"({error.strerror})") from error
    print(f"generating built-in phantom data ({write.__name__}) in {root}", file=sys.stderr)
    files.write_folder_atomic(root, lambda tmp: _write_phantom(tmp, write, seed))
    files.record_stamps(_stamp_file(root), root, _relative_names(root))


def _write_phantom(folder: Path, write: Callable[[Path, int], None], seed: int) -> None:
    write(folder, seed)
    manifest = {name: files.file_record(folder / name) for name in _relative_names(folder)}
    files.write_json(folder / PHANTOM_MANIFEST, {"files": manifest})


def _stamp_file(root: Path) -> Path:
    return root.with_name(f"{root.name}.verified.json")


def _relative_names(root: Path) -> list[str]:
    """The files under ``root`` (relative names), less its manifest."""
    return [name for name in (str(path.relative_to(root)) for path in _files_under(root)) if name != PHANTOM_MANIFEST]


def phantom_fault(root: Path) -> str | None:
    """What is wrong with the phantom at ``root`` (None: it is whole): no readable manifest, a file added
    or missing, of another size, or (stamp changed) of another SHA-256 than its manifest records."""
    try:
        listed = json.loads((root / PHANTOM_MANIFEST).read_text(encoding="utf-8"))["files"]
        recorded = {str(name): (int(f["bytes"]), str(f["sha256"])) for name, f in listed.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{PHANTOM_MANIFEST} is missing or unreadable"
    added = sorted(set(_relative_names(root)) - set(recorded))
    if added:
        return f"{added[0]} is not in its {PHANTOM_MANIFEST}"
    return files.recorded_files_fault(root, recorded, _stamp_file(root))


def _files_under(root: Path) -> list[Path]:
    """Every file under ``root``, sorted, following linked folders (each real folder once: a link
    back up the tree is not a loop); the files' own links are followed by ``stat``."""
    found, seen = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        found += [Path(folder) / name for name in names if (Path(folder) / name).is_file()]
    return sorted(found)


def directory_source(path: Path, splits: Splits | None = None) -> DataSource:
    """A user's data folder, fingerprinted by the names, sizes and times of its files (through linked
    folders too: a data tree is often assembled from links)."""
    root = files.resolved(Path(path).expanduser())
    if not root.is_dir():
        raise UserError(f"{path}: {'is a file, not a data folder' if root.exists() else 'data folder not found'}")
    digest = hashlib.sha256()
    for file in _files_under(root):
        stat = file.stat()
        digest.update(f"{file.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return DataSource(root=root, kind="directory", fingerprint=_with_splits(digest.hexdigest()[:16], splits),
                      splits=splits)
