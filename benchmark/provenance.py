"""Which code produced a number: a hash of the source that can change results, and the git state.

Every run identity includes ``code_fingerprint`` of the layers that determine numbers
(``NUMERIC_LAYERS``: the plugin API, data, model and engine), so an edit to fine-tuning, a
metric, the backbone, the pool or image reading gives new runs instead of reusing records
made by the old code. A pretrained checkpoint's identity includes ``pretraining_fingerprint``,
the part of that code pretraining runs; a preprocessed-cache entry the data layer's and its
task's code. The reporting and command-line layers, and the tests, are left out: editing
them changes no number. A plugin's own modules are hashed by ``source_fingerprint``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.machinery
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
NUMERIC_LAYERS = ("api", "data", "model", "engine")
BUILTIN_PLUGIN_PACKAGES = ("benchmark.methods", "benchmark.tasks", "benchmark.backbones")
PRETRAINING_ROOTS = ("benchmark.engine.checkpoints", "benchmark.engine.pretrain", "benchmark.data.pool")
DATA_FOLDER = "data"  # beside a plugin's modules: files it ships (hashed with its code)


def fingerprint_tree(package_dir: Path, layers: tuple[str, ...]) -> str:
    """A hash of every ``.py`` file under ``package_dir/<layer>`` (its path relative to the package
    and its bytes), for each of ``layers``; contents only, the same in any checkout."""
    digest = hashlib.sha256()
    for layer in layers:
        folder = Path(package_dir) / layer
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such layer of the package")
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


@functools.cache
def code_fingerprint(layers: tuple[str, ...] = NUMERIC_LAYERS) -> str:
    """``fingerprint_tree`` of this installed package, computed once per process (the hash stays
    that of the code the process runs, even if a file is edited while it runs)."""
    return fingerprint_tree(PACKAGE_DIR, layers)


@functools.cache
def module_fingerprint(module_name: str) -> str:
    """A hash of one loaded module's source file and, followed as ``source_fingerprint`` follows them, the
    plugin helpers beside it that it imports and their shipped data (the code of a task's preprocessing,
    say, whose helpers change the arrays as much as the module itself)."""
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if not path:
        raise ValueError(f"module {module_name} is not loaded or has no file")
    return _plugin_code_hash({Path(path)})


@functools.cache
def git_state() -> dict[str, object] | None:
    """``{"commit", "dirty"}`` when the package runs from a git checkout (an editable install),
    else None (an installed copy, or a copy inside another repository's ignored folder).
    ``dirty``: whether tracked or untracked files of the checkout differ from the commit."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # the package's own files are tracked here
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def source_fingerprint(cls: type) -> str:
    """A hash of the source of a plugin class: the files of the modules defining it and its
    base classes, and of the modules beside them that those import anywhere in their code,
    functions included (same package or same folder: a plugin's helpers), followed from
    file to file; the suite's core (covered by ``code_fingerprint``) and the standard library
    left out. The built-in plugins (``benchmark.methods``, ``benchmark.tasks``, ``benchmark.backbones``)
    are plugin code.

    Part of every run and checkpoint identity, so that editing a method's or a task's code,
    a plugin's above all, gives new runs instead of reusing records and checkpoints made
    by the old code. Contents only: the same code in another checkout gives the same hash.
    Computed once per class and process (a sweep plans every cell): the hash stays that of
    the code the process loaded, even if a file is edited while it runs.
    """
    files = {_source_file(base.__module__) for base in cls.__mro__ if _is_plugin_code(base.__module__)}
    files.discard(None)
    return _plugin_code_hash(files)


def _plugin_code_hash(files: set[Path]) -> str:
    """A hash of ``files``, the plugin modules beside them that they import (followed from file to file)
    and the files those ship."""
    code = _import_closure(files, _is_plugin_code, _beside)
    return _hash_contents(code | _plugin_data_files(code))


def _plugin_data_files(code: set[Path]) -> set[Path]:
    """The files under a ``data`` folder beside any of ``code``: what a plugin ships and reads (a task's
    shipped split, say), hashed with its code."""
    return {path for folder in {file.parent / DATA_FOLDER for file in code} if folder.is_dir()
            for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts}


def data_code_closure(files: set[Path]) -> set[Path]:
    """``files`` and, followed from file to file, the data layer's modules and the plugin modules
    beside them that they import: the code a phantom generator runs."""
    data_dir = PACKAGE_DIR / "data"
    return _import_closure(files, lambda name: name.startswith("benchmark.data.") or _is_plugin_code(name),
                           lambda used, path: used.is_relative_to(data_dir) or _beside(used, path))


@functools.cache
def pretraining_fingerprint() -> str:
    """A hash of the core code a pretrained checkpoint depends on: the modules in
    ``PRETRAINING_ROOTS`` (the checkpoint cache with the pretraining loop, the pool) and every
    module of the numeric layers they import, followed from file to file. Fine-tuning, metrics
    and the harness are not among them: editing those makes new runs, not new pretraining."""
    roots = {_source_file(name) for name in PRETRAINING_ROOTS}
    if None in roots:
        raise ValueError(f"a module of {PRETRAINING_ROOTS} has no source file")
    return _hash_contents(_import_closure(roots, _is_numeric_core, lambda used, path: True))


def _hash_contents(files: set[Path]) -> str:
    contents = sorted(hashlib.sha256(path.read_bytes()).hexdigest() for path in files)
    return hashlib.sha256("".join(contents).encode()).hexdigest()[:16]


def _import_closure(files: set[Path], wanted: Callable[[str], bool],
                    keep: Callable[[Path, Path], bool]) -> set[Path]:
    """``files`` and the files of the ``wanted`` modules they import, transitively, where
    ``keep(imported_file, importing_file)``."""
    files = set(files)
    pending = list(files)
    while pending:
        path = pending.pop()
        for used in _imported_files(path, wanted):
            if used not in files and keep(used, path):
                files.add(used)
                pending.append(used)
    return files


def _is_numeric_core(module_name: str) -> bool:
    return module_name.split(".")[:2] in ([["benchmark", layer] for layer in NUMERIC_LAYERS])


def _is_plugin_code(module_name: str) -> bool:
    parts = module_name.split(".")
    if parts[0] == "benchmark":
        return ".".join(parts[:2]) in BUILTIN_PLUGIN_PACKAGES
    return parts[0] not in sys.stdlib_module_names


def _spec(module_name: str) -> importlib.machinery.ModuleSpec | None:
    """A module's spec, found without running the module (its parent packages are imported)."""
    try:
        return importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None


def _source_file(module_name: str) -> Path | None:
    """The ``.py`` file of a module, loaded or not (None for a name that is not a module or
    has no source)."""
    loaded = sys.modules.get(module_name)
    origin = getattr(loaded, "__file__", None) if loaded else getattr(_spec(module_name), "origin", None)
    return Path(origin) if origin and origin.endswith(".py") else None


def _imported_files(path: Path, wanted: Callable[[str], bool]) -> set[Path]:
    """The source files of the ``wanted`` modules that the file at ``path`` imports, at any depth
    of its code (lazy imports inside functions included)."""
    package = ".".join(folder.name for folder in reversed(_packages_around(path)))
    names, relative = set(), set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            relative |= _relative_import_files(path, node)
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            except (ImportError, ValueError):  # a relative import reaching above the top package
                continue
            names.add(base)
            if wanted(base) and getattr(_spec(base), "submodule_search_locations", None) is not None:
                names.update(f"{base}.{alias.name}" for alias in node.names)  # modules imported from a package
    found = {_source_file(name) for name in names if wanted(name)}
    return {file for file in found if file is not None} | relative


def _relative_import_files(path: Path, node: ast.ImportFrom) -> set[Path]:
    """The files on disk that ``from .x import y`` in the file at ``path`` names: found from the file's
    folder, whatever name its package was imported under (a plugin folder loaded as ``tasks`` or as
    ``benchmark.tasks``)."""
    folder = path.parent
    for _ in range(node.level - 1):
        folder = folder.parent
    target = folder.joinpath(*node.module.split(".")) if node.module else folder
    candidates = [target.with_suffix(".py"), target / "__init__.py"]
    candidates += [target / f"{alias.name}.py" for alias in node.names] + [
        target / alias.name / "__init__.py" for alias in node.names]
    return {candidate for candidate in candidates if candidate.is_file()}


def _beside(used: Path, path: Path) -> bool:
    """Whether the file ``used`` is part of the same plugin as the file at ``path``: in the same
    folder, or in the same top-level package."""
    if used.parent == path.parent:
        return True
    packages = _packages_around(used), _packages_around(path)
    return all(packages) and packages[0][-1] == packages[1][-1]


def _packages_around(path: Path) -> list[Path]:
    """The package folders (with an ``__init__.py``) that contain the file, innermost first."""
    folders = []
    folder = path.parent
    while (folder / "__init__.py").exists():
        folders.append(folder)
        folder = folder.parent
    return folders
