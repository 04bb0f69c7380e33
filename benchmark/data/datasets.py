"""Where a task's data comes from: a user's folder, or a built-in phantom generated on demand.

A phantom lives in the cache (``$BENCHMARK_CACHE``, default ``~/.cache/genesis-benchmark``)
under a folder named after its generator and a fingerprint of the generator's source
code and seed, so a changed generator writes a new dataset and an unchanged one is
never regenerated. Generation happens in a temporary folder renamed into place, so
an interrupted generation leaves nothing that looks complete.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.data import files
from benchmark.errors import UserError
from benchmark.provenance import data_code_closure

if TYPE_CHECKING:
    from benchmark.data.cases import Splits

PHANTOM_SEED = 0


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
    """The phantom written by ``write``, generated into the cache unless already there."""
    fingerprint = phantom_fingerprint(write, seed)
    root = cache_root() / "phantoms" / f"{write.__name__}-{fingerprint}"
    if not root.is_dir():
        print(f"generating built-in phantom data ({write.__name__}) in {root}", file=sys.stderr)
        files.write_folder_atomic(root, lambda tmp: write(tmp, seed))
    return DataSource(root=root, kind="phantom", fingerprint=_with_splits(fingerprint, splits), splits=splits)


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
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"{path}: {'is a file, not a data folder' if root.exists() else 'data folder not found'}")
    digest = hashlib.sha256()
    for file in _files_under(root):
        stat = file.stat()
        digest.update(f"{file.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return DataSource(root=root, kind="directory", fingerprint=_with_splits(digest.hexdigest()[:16], splits),
                      splits=splits)
