"""Benchmark self-supervised pretraining for 3D medical imaging (Models Genesis and baselines).

The built-in plugins import as ``benchmark.methods``, ``benchmark.tasks`` and ``benchmark.backbones``.
Installed, they sit inside this package; in a source checkout they sit beside it (the repository's
``methods/``, ``tasks/`` and ``backbones/``), and a checkout's ``benchmark`` folder is what Python
imports whenever the checkout is the current folder (``python -m benchmark``, torchrun, sweep job
processes). The finder below maps the three names to the folders beside the package in that case only.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

__version__ = "0.2.0"


class _PluginsBeside(importlib.abc.MetaPathFinder):
    """Finds ``benchmark.methods`` / ``benchmark.tasks`` / ``benchmark.backbones`` in the folders beside a
    checkout's package."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


def _plugins_beside() -> dict[str, Path]:
    here = Path(__file__).resolve().parent
    return {f"benchmark.{name}": here.parent / name for name in ("methods", "tasks", "backbones")
            if not (here / name).is_dir() and (here.parent / name / "__init__.py").is_file()}


_BESIDE = _plugins_beside()
if _BESIDE and not any(isinstance(finder, _PluginsBeside) for finder in sys.meta_path):
    sys.meta_path.append(_PluginsBeside(_BESIDE))
