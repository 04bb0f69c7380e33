"""``benchmark speed --scale``: how wall time and peak memory grow with the data, as ratios between sizes.

Three parts (``--parts``), each on synthetic datasets in a real layout generated at growing sizes
(``benchmark.data.phantoms.scaled``) under ``--keep DIR`` (default: a temporary folder removed at the
end), each stage measured in a fresh process with a fresh preprocessing cache per dataset
(``benchmark.engine.scale``):

* ``ncc``: LUNA16 layout, a fixed set of scans (``--scans``, ``--scan-shape``) holding ``--candidates``
  candidates; the stages verify-data, preprocessing, loading, one fine-tuning epoch and the evaluation of
  every test candidate (and with ``--whole-run``, a whole ``benchmark run``). When two candidate counts
  are tenfold apart, one line says whether the evaluation (and the whole run) kept peak memory within
  1.5x and wall time within 15x;
* ``lcs``: LiTS layout with ``--volumes`` liver-phantom volumes, the same stages;
* ``window``: sliding-window inference of one LiTS-layout test volume per ``--window-sizes`` size
  (x*y*z voxels): its preprocessing and evaluation, with the peak memory added per voxel added.

A stage that loads the data, chosen without the preprocessing stage, runs after an unshown
preprocessing process (its figures never include the first-time decoding). Per part, one row per
stage and size: wall seconds of the stage itself (measured inside its process, after the imports),
items and items per second, peak resident memory of the process, and for every size after the
first, the ratios to the previous size: of the size, the time and the memory.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from benchmark.api.profiles import PROFILES
from benchmark.data import files
from benchmark.data.phantoms.scaled import SCAN_SHAPE, write_large_lits, write_scaled_lits, write_scaled_luna
from benchmark.engine.runtime import check_seed, resolve_device
from benchmark.engine.scale import (
    BASELINE,
    EPOCH,
    EVALUATION,
    LOADING,
    PREPROCESSING,
    STAGES,
    WHOLE_RUN,
    Measurement,
    StageSpec,
    measure_run,
    measure_stage,
)
from benchmark.errors import UserError

PARTS = ("ncc", "lcs", "window")
DEFAULTS = {"parts": "ncc,lcs,window", "candidates": "7500,75000", "scans": 10,
            "scan_shape": ",".join(map(str, SCAN_SHAPE)), "volumes": "3,30", "window_sizes": "128x128x112,256x256x224",
            "stages": ",".join(STAGES), "profile": "smoke", "seed": 0}
WINDOW_STAGES = (PREPROCESSING, EVALUATION)
MEMORY_LIMIT, TIME_LIMIT, GROWTH = 1.5, 15.0, 10  # the done-when: tenfold data, <= 1.5x memory, <= 15x time
DATASET_FILE = "dataset.json"


@dataclass(frozen=True)
class Dataset:
    """One generated dataset: its size in ``unit`` and where it and its cache live."""

    label: str
    size: int
    unit: str
    folder: Path

    @property
    def root(self) -> Path:
        return self.folder / "data"

    @property
    def cache(self) -> Path:
        return self.folder / "cache"


@dataclass(frozen=True)
class Row:
    dataset: Dataset
    measurement: Measurement


# ------------------------------------------------------------------ options


def _ints(text: str, option: str, least: int) -> list[int]:
    try:
        values = [int(item.replace("_", "")) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if not values or any(value < least for value in values):
        raise UserError(f"{option} {text}: expected comma-separated whole numbers, each >= {least}")
    if len(set(values)) != len(values):
        raise UserError(f"{option} {text}: a size is given twice")
    return sorted(values)


def _names(text: str, option: str, known: Sequence[str]) -> list[str]:
    """The ``known`` names listed in ``text`` (a name's spaces may be written as hyphens), in ``known``'s order."""
    names = {name.strip().replace(" ", "-") for name in text.split(",") if name.strip()}
    unknown = names - {name.replace(" ", "-") for name in known}
    if not names or unknown:
        raise UserError(f"{option} {text}: expected comma-separated names among {', '.join(known)}")
    return [name for name in known if name.replace(" ", "-") in names]


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(side) for side in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or any(side < 16 for side in shape):
        raise UserError(f"--scan-shape {text}: expected Z,Y,X voxels, each >= 16")
    return shape  # type: ignore[return-value]


def _window_sizes(text: str) -> list[tuple[int, int, int]]:
    sizes = []
    for item in (item.strip() for item in text.split(",") if item.strip()):
        try:
            size = tuple(int(side) for side in item.lower().split("x"))
        except ValueError:
            size = ()
        if len(size) != 3 or any(side < 8 for side in size):
            raise UserError(f"--window-sizes {text}: expected sizes XxYxZ (e.g. 128x128x112), each side >= 8 voxels")
        sizes.append(size)
    if not sizes:
        raise UserError(f"--window-sizes {text}: expected sizes XxYxZ (e.g. 128x128x112)")
    return sorted(set(sizes), key=lambda s: (s[0] * s[1] * s[2], s))


def _option(args: argparse.Namespace, name: str) -> object:
    value = getattr(args, name, None)
    return DEFAULTS[name] if value is None else value


@dataclass(frozen=True)
class Plan:
    parts: list[str]
    candidates: list[int]
    scans: int
    scan_shape: tuple[int, int, int]
    volumes: list[int]
    window_sizes: list[tuple[int, int, int]]
    stages: list[str]
    profile: str
    seed: int
    device: str
    whole_run: bool


def plan(args: argparse.Namespace) -> Plan:
    """The checked options (one-line UserErrors)."""
    profile = str(_option(args, "profile"))
    if profile not in PROFILES:
        raise UserError(f"--profile {profile}: expected one of {', '.join(PROFILES)}")
    scans = int(_option(args, "scans"))
    if scans < 3:
        raise UserError(f"--scans {scans}: at least 3 (one for each of the train, val and test subsets)")
    candidates = _ints(str(_option(args, "candidates")), "--candidates", 2 * scans)
    volumes = _ints(str(_option(args, "volumes")), "--volumes", 3)
    if volumes[-1] > 130:
        raise UserError(f"--volumes {_option(args, 'volumes')}: at most 130 (LiTS's numbering)")
    return Plan(parts=_names(str(_option(args, "parts")), "--parts", PARTS), candidates=candidates, scans=scans,
                scan_shape=_shape(str(_option(args, "scan_shape"))), volumes=volumes,
                window_sizes=_window_sizes(str(_option(args, "window_sizes"))),
                stages=_names(str(_option(args, "stages")), "--stages", STAGES), profile=profile,
                seed=check_seed(int(_option(args, "seed"))), device=str(resolve_device(args.device)),
                whole_run=bool(getattr(args, "whole_run", False)))


def _work_folder(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="benchmark-scale-"))
    keep = Path(keep).expanduser()
    if keep.exists() and not keep.is_dir():
        raise UserError(f"--keep {keep}: not a folder")
    keep.mkdir(parents=True, exist_ok=True)
    return keep


# ------------------------------------------------------------------ the command


def command(args: argparse.Namespace) -> None:
    chosen = plan(args)
    work = _work_folder(args.keep)
    total = _count(chosen)
    print(f"benchmark speed --scale: profile {chosen.profile}, device {chosen.device}, parts "
          f"{','.join(chosen.parts)}; each stage in a fresh process; datasets in {work}"
          + ("" if args.keep else " (removed at the end)"))
    bar = tqdm(total=total, desc="scale", unit="step", disable=args.no_progress, leave=False)
    baselines: dict[str, Measurement] = {}  # by task: the window part reuses the lcs part's
    try:
        if "ncc" in chosen.parts:
            _ncc_part(chosen, work, bar)
        if "lcs" in chosen.parts:
            _lcs_part(chosen, work, bar, baselines)
        if "window" in chosen.parts:
            _window_part(chosen, work, bar, baselines)
    finally:
        bar.close()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _count(chosen: Plan) -> int:
    count, stages = 0, len(chosen.stages) + _unmeasured_preprocessing(chosen.stages)
    if "ncc" in chosen.parts:
        count += 1 + len(chosen.candidates) * (1 + stages + chosen.whole_run)
    if "lcs" in chosen.parts:
        count += 1 + len(chosen.volumes) * (1 + stages)
    if "window" in chosen.parts:
        count += ("lcs" not in chosen.parts) + len(chosen.window_sizes) * (1 + len(WINDOW_STAGES))
    return count


def _generate(folder: Path, identity: dict, write: Callable[[Path], object]) -> None:
    """The dataset ``folder/data`` written by ``write``, unless it is there already from the same
    ``identity`` (a kept folder); its cache folder emptied either way (preprocessing is measured)."""
    marker = folder / DATASET_FILE
    data = folder / "data"
    if not (data.is_dir() and _marks(marker, identity)):
        if data.exists():
            files.remove_folder(data)
        marker.unlink(missing_ok=True)
        files.write_folder_atomic(data, write)
        files.write_json(marker, identity)
    if (folder / "cache").exists():
        files.remove_folder(folder / "cache")


def _marks(marker: Path, identity: dict) -> bool:
    """Whether ``marker`` is there and records ``identity`` (a damaged one: no, the dataset is written anew)."""
    try:
        return marker.is_file() and files.read_json(marker) == identity
    except UserError:
        return False


def _step(bar: tqdm, what: str) -> None:
    bar.set_description_str(f"scale: {what}")


def _unmeasured_preprocessing(stages: Sequence[str]) -> bool:
    """Whether the cache must be filled before ``stages`` without being shown: a stage that loads the data is
    chosen but not the preprocessing, whose first-time decoding would otherwise land in its peak memory."""
    return PREPROCESSING not in stages and any(stage in (LOADING, EPOCH, EVALUATION) for stage in stages)


def _measure_stages(task: str, datasets: list[Dataset], stages: Sequence[str], chosen: Plan, bar: tqdm,
                    whole_run: bool = False) -> list[Row]:
    rows = []
    for dataset in datasets:
        chosen_stages = [PREPROCESSING, *stages] if _unmeasured_preprocessing(stages) else list(stages)
        for stage in chosen_stages:
            _step(bar, f"{task} {stage}, {dataset.label}")
            spec = StageSpec(stage, task, str(dataset.root), chosen.profile, chosen.device, chosen.seed,
                             dataset.size, dataset.unit)
            measured = measure_stage(spec, dataset.cache, dataset.folder / "logs")
            if stage in stages:
                rows.append(Row(dataset, measured))
            bar.update()
        if whole_run:
            _step(bar, f"{task} whole run, {dataset.label}")
            rows.append(Row(dataset, measure_run(task, dataset.root, chosen.profile, chosen.device, chosen.seed,
                                                 dataset.cache, dataset.folder / "logs")))
            bar.update()
    return rows


def _baseline(task: str, chosen: Plan, work: Path, bar: tqdm) -> Measurement:
    _step(bar, f"{task} baseline process")
    folder = work / f"{task}-baseline"
    spec = StageSpec(BASELINE, task, str(folder), chosen.profile, chosen.device, chosen.seed)
    measurement = measure_stage(spec, folder / "cache", folder)
    bar.update()
    return measurement


def _ncc_part(chosen: Plan, work: Path, bar: tqdm) -> None:
    datasets = []
    for count in chosen.candidates:
        _step(bar, f"writing {count:,} candidates")
        dataset = Dataset(f"{count:,} candidates", count, "candidates", work / f"ncc-{count}")
        identity = {"layout": "luna16", "scans": chosen.scans, "candidates": count, "seed": chosen.seed,
                    "shape": list(chosen.scan_shape)}
        _generate(dataset.folder, identity,
                  lambda root, count=count: write_scaled_luna(root, chosen.scans, count, chosen.seed,
                                                              chosen.scan_shape))
        datasets.append(dataset)
        bar.update()
    baseline = _baseline("ncc", chosen, work, bar)
    rows = _measure_stages("ncc", datasets, chosen.stages, chosen, bar, chosen.whole_run)
    shape = "x".join(map(str, chosen.scan_shape))
    _print(f"NCC on generated LUNA16-layout data: {chosen.scans} scans of {shape} voxels (z, y, x), "
           f"candidates {', '.join(f'{c:,}' for c in chosen.candidates)}", "candidates", baseline, rows, chosen)
    for line in verdicts(rows, [EVALUATION, WHOLE_RUN]):
        tqdm.write(line)


def _lcs_part(chosen: Plan, work: Path, bar: tqdm, baselines: dict[str, Measurement]) -> None:
    datasets = []
    for count in chosen.volumes:
        _step(bar, f"writing {count} LiTS volumes")
        dataset = Dataset(f"{count} volumes", count, "volumes", work / f"lcs-{count}")
        identity = {"layout": "lits", "volumes": count, "seed": chosen.seed}
        _generate(dataset.folder, identity,
                  lambda root, count=count: write_scaled_lits(root, count, chosen.seed))
        datasets.append(dataset)
        bar.update()
    baseline = baselines["lcs"] = _baseline("lcs", chosen, work, bar)
    rows = _measure_stages("lcs", datasets, chosen.stages, chosen, bar)
    _print(f"LCS on generated LiTS-layout data: {', '.join(map(str, chosen.volumes))} liver-phantom volumes",
           "volumes", baseline, rows, chosen)


def _window_part(chosen: Plan, work: Path, bar: tqdm, baselines: dict[str, Measurement]) -> None:
    datasets = []
    for size in chosen.window_sizes:
        name = "x".join(map(str, size))
        _step(bar, f"writing a {name} volume")
        voxels = size[0] * size[1] * size[2]
        dataset = Dataset(name, voxels, "voxels", work / f"window-{name}")
        identity = {"layout": "lits-large", "size": list(size), "seed": chosen.seed}
        _generate(dataset.folder, identity, lambda root, size=size: write_large_lits(root, size, chosen.seed))
        datasets.append(dataset)
        bar.update()
    baseline = baselines["lcs"] if "lcs" in baselines else _baseline("lcs", chosen, work, bar)
    rows = [Row(row.dataset, replace(row.measurement, items=row.dataset.size, unit="voxels"))
            for row in _measure_stages("lcs", datasets, WINDOW_STAGES, chosen, bar)]
    _print("Sliding-window inference: LCS evaluation of one test volume of each size (x*y*z voxels)",
           "voxels", baseline, rows, chosen, per_voxel=True)


# ------------------------------------------------------------------ the table


def _ratio(value: float) -> str:
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def growth_table(title: str, unit: str, baseline: Measurement, rows: Sequence[Row], profile: str, device: str,
                 per_voxel: bool = False) -> list[str]:
    """The part's lines: a title, the baseline process, then per stage one row per size with the ratios to the
    previous size (size, wall time, peak memory); with ``per_voxel``, also the peak memory added per voxel
    added since the previous size (B/voxel)."""
    lines = [f"{title}; profile {profile}, {device}",
             f"  a process that only imports the suite, builds the model and runs it on one cube peaks at "
             f"{baseline.peak_mb:,.0f} MB"]
    header = (f"  {'stage':<18} {unit:>13} {'wall s':>8} {'items':>11} {'unit':<11} {'items/s':>11} "
              f"{'peak MB':>8} {'x size':>7} {'x time':>7} {'x memory':>8}")
    if per_voxel:
        header += f" {'B/voxel':>8}"
    lines.append(header)
    stages = list(dict.fromkeys(row.measurement.stage for row in rows))
    for stage in stages:
        previous: Row | None = None
        for row in (row for row in rows if row.measurement.stage == stage):
            m = row.measurement
            line = (f"  {stage:<18} {row.dataset.label if per_voxel else f'{row.dataset.size:,}':>13} "
                    f"{m.seconds:>8.2f} {m.items:>11,} {m.unit:<11} {_number(m.rate):>11} {m.peak_mb:>8,.0f}")
            if previous is None:
                line += f" {'':>7} {'':>7} {'':>8}"
            else:
                p = previous.measurement
                line += (f" {_ratio(row.dataset.size / previous.dataset.size):>7} {_ratio(m.seconds / p.seconds):>7} "
                         f"{_ratio(m.peak_mb / p.peak_mb):>8}")
            if per_voxel and previous is not None:
                grown = (m.peak_mb - previous.measurement.peak_mb) * 1024 * 1024
                line += f" {grown / (row.dataset.size - previous.dataset.size):>8.1f}"
            lines.append(line.rstrip())
            previous = row
    return lines


def _print(title: str, unit: str, baseline: Measurement, rows: Sequence[Row], chosen: Plan,
           per_voxel: bool = False) -> None:
    tqdm.write("")
    for line in growth_table(title, unit, baseline, rows, chosen.profile, chosen.device, per_voxel):
        tqdm.write(line)


def verdicts(rows: Sequence[Row], stages: Sequence[str]) -> list[str]:
    """For each of ``stages`` measured at two sizes tenfold apart, one line: did peak memory stay within 1.5x
    and wall time within 15x? A note instead when no two sizes are tenfold apart."""
    lines = []
    for stage in stages:
        measured = [row for row in rows if row.measurement.stage == stage]
        pairs = [(a, b) for a in measured for b in measured if b.dataset.size == GROWTH * a.dataset.size]
        for small, large in pairs:
            memory = large.measurement.peak_mb / small.measurement.peak_mb
            seconds = large.measurement.seconds / small.measurement.seconds
            met = memory <= MEMORY_LIMIT and seconds <= TIME_LIMIT
            evaluated = f"{small.measurement.items:,} -> {large.measurement.items:,} {large.measurement.unit}"
            lines.append(f"done when ({stage}, {small.dataset.label} -> {large.dataset.label}, {evaluated} "
                         f"evaluated): peak memory {_ratio(memory)} (<= {MEMORY_LIMIT}x), wall time "
                         f"{_ratio(seconds)} (<= {TIME_LIMIT:g}x): {'met' if met else 'NOT met'}")
    if not lines and any(row.measurement.stage in stages for row in rows):
        lines.append("done when: not checked (it needs two candidate counts tenfold apart, e.g. --candidates "
                     "20000,200000)")
    return lines
