"""Small helpers shared by several test modules (imported as ``helpers``, like ``oracles``)."""

from __future__ import annotations

import csv
import locale
import tracemalloc
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import TypeVar

import numpy as np
import SimpleITK as sitk

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


def write_ct_series(folder: Path, hu: np.ndarray, heights: list[float], spacing: tuple[float, float, float],
                    origin_xy: tuple[float, float] = (0.0, 0.0), series: str = "1.2.826.0.1.3680043.2.1125.7"
                    ) -> list[Path]:
    """One axial CT slice of ``hu`` (z, y, x) per height (mm) in ``folder``; ``spacing`` is (x, y, z) mm.
    GDCM's writer sets the process's C locale (Python's default text encoding would turn ASCII for
    the rest of the test session), so the locale is restored after each slice."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k, z in enumerate(heights):
        image = sitk.GetImageFromArray(hu[k])
        image.SetSpacing(spacing[:2])
        tags = {"0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": f"{series}.{k + 1}",
                "0020|000d": f"{series}.0", "0020|000e": series, "0020|0013": str(k + 1),
                "0020|0032": "\\".join(map(str, (*origin_xy, z))), "0020|0037": "1\\0\\0\\0\\1\\0",
                "0028|0030": f"{spacing[1]}\\{spacing[0]}", "0018|0050": str(spacing[2])}
        for key, value in tags.items():
            image.SetMetaData(key, value)
        paths.append(folder / f"{k:03d}.dcm")
        writer.SetFileName(str(paths[-1]))
        saved = locale.setlocale(locale.LC_ALL)
        try:
            writer.Execute(image)
        finally:
            locale.setlocale(locale.LC_ALL, saved)
    return paths


def damage_a_tensor(path: Path) -> None:
    """Flip one byte inside the largest stored member of a ``torch.save`` archive (a tensor's bytes),
    leaving the archive's structure readable."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, member.header_offset + 26)
    data[member.header_offset + 30 + name_length + extra_length + member.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def suite_checkpoint(path: Path, method: str = "genesis", **extra) -> Path:  # noqa: ANN003 - checkpoint entries
    """A checkpoint of this suite (``benchmark pretrain``'s format) of a width-2 U-Net pretrained by ``method``,
    with ``extra`` entries (e.g. ``pool_scans``)."""
    from benchmark.engine.pretrain import CHECKPOINT_FORMAT, save_checkpoint
    from benchmark.model.backbone import UNet3D

    save_checkpoint({"format": CHECKPOINT_FORMAT, "method": method, "transfers": "encoder+decoder",
                     "backbone": {"name": "unet3d", "settings": {"transposed": True}, "in_channels": 1, "width": 2},
                     "state_dict": UNet3D(1, 1, 2).state_dict(), "extras": {}, "cubes_seen": 8, "epochs": 1,
                     **extra}, path)
    return path
