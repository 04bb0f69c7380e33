"""Small helpers shared by several test modules (imported as ``helpers``, like ``oracles``)."""

from __future__ import annotations

import csv
import tracemalloc
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def start_tags(page: str) -> list[tuple[str, dict]]:
    """Every start tag of an HTML page, in order, with its attributes."""
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def held_after(make: Callable[[], T]) -> tuple[T, int]:
    """``make()`` and the bytes of Python and numpy memory it leaves allocated (tracemalloc)."""
    tracemalloc.start()
    try:
        made = make()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return made, held


def unet():  # noqa: ANN201 - a Backbone; imported lazily so that helpers stays light
    """The default backbone (the Models Genesis 3D U-Net), as tasks and methods are given it."""
    from benchmark.api.registry import BACKBONES

    return BACKBONES.create("unet3d")


def error_line(stderr: str) -> str:
    """The one line of a user error (besides progress lines such as a phantom being generated)."""
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    return line


def small_ncs_splits(path: Path, per_split: int = 4) -> Path:
    """A split file (``--splits``) keeping the first ``per_split`` crops of each split of the built-in
    NCS phantom: the phantom holds about a hundred test crops, which a plumbing test need not score."""
    from benchmark.tasks.ncs import write_ncs_phantom

    from benchmark.api.task import read_split_file
    from benchmark.data import datasets
    from benchmark.data.verify import SPLITS

    shipped = read_split_file(datasets.phantom_source(write_ncs_phantom).root / "splits.csv")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("case_id", "split"))
        for split in SPLITS:
            writer.writerows([(case, split) for case, own in shipped.items() if own == split][:per_split])
    return path
