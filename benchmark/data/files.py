"""Files and folders written atomically: a temporary name in the same folder, then a rename.

A crash or Ctrl-C never leaves a half-written file that looks finished. A writer killed
outright (SIGKILL, out of memory, a node lost) leaves its temporary file behind: the next
write in that folder removes such leftovers once they are ``STALE_SECONDS`` old and no
live writer holds them (each writer holds an exclusive ``flock`` on its temporary file
or folder while writing, which the operating system releases when the writer dies).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from importlib.abc import Traversable
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from benchmark.errors import UserError

log = logging.getLogger(__name__)

STALE_SECONDS = 10 * 60  # a leftover this long untouched and unlocked is a dead writer's
TEMPORARY_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # write_atomic's temporary names (tempfile's 8 letters)
TEMPORARY_FOLDER = re.compile(r"\..+\.[a-z0-9_]{8}")  # write_folder_atomic's and remove_folder's


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The file gets the permissions of an ordinary new file (``0o666`` less the umask), not the
    owner-only ones of a temporary file: a results root shared by a group stays readable. Its bytes
    reach the disk before the rename and the rename before the call returns, so that a machine that
    loses power keeps the old file or the whole new one, never an empty one under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, TEMPORARY_FILE)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)  # held until closed: no cleaner removes it meanwhile
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.fsync(handle)  # the descriptor of the same file ``write`` filled
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        if error.filename is None:  # a write to an open file (a full disk) names none: name the file meant
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(handle)


def write_serialised(path: Path, serialise: Callable[[BinaryIO], None]) -> None:
    """``write_atomic`` for a writer of file objects (``torch.save``): ``serialise(buffer)`` fills a buffer in
    memory, which Python's own file calls then write, so that a full disk is the OSError ``No space left on
    device`` naming ``path``, not the failure of a writer in C++ (torch's says "unexpected pos")."""
    buffer = io.BytesIO()
    serialise(buffer)
    write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_leftovers(folder: Path, name: re.Pattern[str], age: float = STALE_SECONDS) -> None:
    """Remove the files and folders of ``folder`` whose whole name matches ``name`` that are older than
    ``age`` seconds (last modified) and locked by no live writer: what killed writers left (``age`` 0:
    however recent, where the caller knows no writer can be starting, under a lock of its own)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        if name.fullmatch(entry.name) and _stale(Path(entry.path), age):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
            log.info("removed %s, left by a writer that was stopped", entry.path)


def _stale(path: Path, age: float) -> bool:
    try:
        if time.time() - path.lstat().st_mtime < age:
            return False
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # gone meanwhile, or not ours to open
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True


def write_folder_atomic(folder: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_folder)`` then rename the temporary folder to ``folder``, with the permissions of
    an ordinary new folder (``0o777`` less the umask, not ``mkdtemp``'s owner-only ones). If another
    process put ``folder`` in place first, its folder is kept and this one dropped."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder.parent, TEMPORARY_FOLDER)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    descriptor = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # held until closed: no cleaner removes it meanwhile
        write(tmp)
        os.chmod(tmp, 0o777 & ~current_umask())
        os.rename(tmp, folder)
    except OSError:
        if not folder.is_dir():  # not a lost race with another process: a real failure
            raise
    finally:
        os.close(descriptor)
        shutil.rmtree(tmp, ignore_errors=True)


def remove_folder(folder: Path) -> None:
    """Remove ``folder`` at once (renamed to a temporary name first, so that nobody finds it half
    removed); nothing happens if it is gone already."""
    folder = Path(folder)
    aside = tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.")
    try:
        os.rename(folder, aside)  # onto the empty folder just made
    except FileNotFoundError:
        pass
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def resolved(path: Path) -> Path:
    """``path`` made absolute with its links followed; UserError naming it if its links loop or the
    system refuses to follow them."""
    try:
        return Path(path).resolve()
    except RuntimeError as error:  # a loop, before Python 3.13
        raise UserError(f"{path}: symlink loop") from error
    except OSError as error:  # a loop from Python 3.13 on, or a folder on the way that cannot be read
        raise UserError(f"{path}: {error.strerror or error}") from error


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """A file's size and SHA-256, as a manifest records them."""
    return {"bytes": Path(path).stat().st_size, "sha256": sha256_file(path)}


def stamp(path: Path) -> list[int]:
    """What changes whenever a file's bytes do: size, modification and change times (ns), inode (a write
    always moves the change time, which no user call can set back)."""
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def record_stamps(stamp_file: Path, folder: Path, names: Iterable[str]) -> None:
    """Record in ``stamp_file`` the stamps of the files of ``folder`` named (relative paths) in ``names``,
    as their hashes were just checked."""
    try:
        write_json(stamp_file, {name: stamp(folder / name) for name in names})
    except OSError:  # a read-only cache: the files are hashed again at the next read
        pass


def recorded_files_fault(folder: Path, recorded: Mapping[str, tuple[int, str]], stamp_file: Path) -> str | None:
    """What is wrong with the files of ``folder`` that ``recorded`` names (relative paths, each with its size
    and SHA-256), None if nothing: a file missing, of another size, or, when its stamp differs from the one
    in ``stamp_file``, of another SHA-256 (each such file is hashed once; its new stamp is then recorded)."""
    try:
        stamps = json.loads(stamp_file.read_text(encoding="utf-8")) if stamp_file.is_file() else {}
    except (OSError, ValueError):  # unreadable stamps: every file is hashed
        stamps = {}
    changed = []
    for name, (size, _) in recorded.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        current = stamp(path)
        if current[0] != size:
            return f"{name} holds {current[0]} of its {size} bytes"
        if not isinstance(stamps, dict) or stamps.get(name) != current:
            changed.append(name)
    for name in changed:
        if sha256_file(folder / name) != recorded[name][1]:
            return f"{name} does not match its recorded SHA-256 (changed since it was written)"
    if changed:
        record_stamps(stamp_file, folder, recorded)
    return None


def current_umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"))


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def read_text(path: Path | Traversable, what: str, encoding: str = "utf-8") -> str:
    """The text of a file (``what`` says which, for the error); UserError naming it if it cannot be
    read or is not text in ``encoding`` (a binary or differently encoded file)."""
    try:
        return path.read_text(encoding=encoding)
    except OSError as error:
        raise UserError(f"{path}: cannot read {what} ({error.strerror or error})") from error
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: {what} is not {encoding} text (byte {error.start}: "
                        f"{error.object[error.start:error.start + 1]!r})") from error


def read_json(path: Path) -> dict[str, Any]:
    """The JSON value in ``path``; UserError naming the file if it is not JSON Python can hold (an integer
    of more than 4300 digits is refused by ``int``, with a ValueError that is not a JSONDecodeError)."""
    text = read_text(Path(path), "the JSON file")
    try:
        return json.loads(text)
    except ValueError as error:
        raise UserError(f"{path}: cannot read JSON ({error})") from error
    except RecursionError as error:
        raise UserError(f"{path}: cannot read JSON (nested too deeply)") from error

