"""What ``benchmark analyze`` wrote, found for the report: the restoration cross-matrix and the anomaly maps.

``benchmark analyze restoration --out DIR`` writes ``DIR/restoration_matrix.csv`` (one row per
corruption and restoring model: mse, ssim, cubes), its heat map ``restoration_matrix.png/.pdf``
and the image grid ``restoration_grid.png/.pdf``; ``benchmark analyze anomaly --out DIR`` writes
``DIR/anomaly/montage.png/.pdf``, ``DIR/anomaly/detection_auc.csv`` (where opacity masks exist:
score, auc, ci_low, ci_high, scans, voxels_per_scan, jackknife) and one difference map per scan.
Each also writes which checkpoints it analysed (``restoration_checkpoints.json``,
``anomaly/checkpoints.json``: ``{"checkpoints": {method: checkpoint id}, ...}``), which the
report names and compares with the checkpoints its runs fine-tuned.
``benchmark report --analyses DIR`` reads them from there. Every file is untrusted: a table is
read as data (its text escaped where it is written), an image is taken only if it is a PNG (a
PDF only if it is a PDF), and whatever cannot be read is one line naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data import files
from benchmark.errors import UserError
from benchmark.names import is_valid_name
from benchmark.reporting.table import read_whole_csv

RESTORATION_MATRIX = "restoration_matrix"  # .csv, and the heat map .png/.pdf
RESTORATION_GRID = "restoration_grid"  # .png/.pdf
MATRIX_COLUMNS = ("corruption", "restored_by", "mse", "ssim", "cubes")
RESTORATION_CHECKPOINTS = "restoration_checkpoints.json"
ANOMALY_FOLDER = "anomaly"
ANOMALY_MONTAGE = "montage"  # .png/.pdf
ANOMALY_AUC = "detection_auc.csv"
ANOMALY_CHECKPOINTS = "checkpoints.json"
MIN_INTERVAL_SCANS = 5  # fewer scans: the detection AUC has no interval (benchmark.reporting.anomaly)
AUC_COLUMNS = ("score", "auc", "ci_low", "ci_high", "scans", "voxels_per_scan", "jackknife")
DIFFERENCE_SUFFIX = "_difference.nii.gz"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PDF_SIGNATURE = b"%PDF-"


@dataclass
class Image:
    name: str  # the file name it gets in the report (without suffix)
    title: str
    png: Path
    pdf: Path | None


@dataclass
class Table:
    name: str  # the file name it gets in the report (without suffix)
    title: str
    legend: str
    frame: pd.DataFrame


@dataclass
class Analysis:
    """One analysis as found: its tables and images, what could not be read, and where it came from."""

    found: bool = False
    tables: list[Table] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    checkpoints: dict[str, str] = field(default_factory=dict)  # method -> the checkpoint id analysed


def _written(path: Path) -> str:
    stamp = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{path} (written {stamp})"


def _image(analysis: Analysis, folder: Path, stem: str, name: str, title: str) -> None:
    png, pdf = folder / f"{stem}.png", folder / f"{stem}.pdf"
    if not png.is_file():
        return
    analysis.found = True
    try:
        if png.read_bytes()[:len(PNG_SIGNATURE)] != PNG_SIGNATURE:
            analysis.problems.append(f"{png}: not a PNG image; not shown")
            return
        pdf_ok = pdf.is_file() and pdf.read_bytes()[:len(PDF_SIGNATURE)] == PDF_SIGNATURE
    except OSError as error:
        analysis.problems.append(f"{png}: cannot read ({error.strerror or error}); not shown")
        return
    analysis.images.append(Image(name, title, png, pdf if pdf_ok else None))
    analysis.sources.append(_written(png))


def _checkpoints(analysis: Analysis, path: Path) -> None:
    """Which checkpoints made the analysis, from the file ``benchmark analyze`` wrote beside it: into
    ``analysis.checkpoints`` and its sources; a problem naming the file when it is missing or wrong."""
    if not analysis.found:
        return
    if not path.is_file():
        analysis.problems.append(f"{path}: missing, so which checkpoints were analysed is not known")
        return
    try:
        checkpoints = files.read_json(path).get("checkpoints")
    except (UserError, AttributeError) as error:
        analysis.problems.append(str(error) if isinstance(error, UserError) else f"{path}: not a JSON object")
        return
    if not (isinstance(checkpoints, dict) and checkpoints
            and all(is_valid_name(k) and is_valid_name(v) for k, v in checkpoints.items())):
        analysis.problems.append(f"{path}: 'checkpoints' is not a non-empty object of method names to checkpoint ids")
        return
    analysis.checkpoints = dict(checkpoints)
    analysis.sources.append("checkpoints " + ", ".join(f"{c} ({m})" for m, c in sorted(checkpoints.items())))


def _csv(analysis: Analysis, path: Path, columns: tuple[str, ...], numbers: tuple[str, ...],
         may_be_empty: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """The CSV at ``path`` with ``columns``, ``numbers`` among them finite numbers (or, in ``may_be_empty``,
    empty cells: missing); None (and a problem naming the file) when it is not."""
    if not path.is_file():
        return None
    analysis.found = True
    try:
        frame = read_whole_csv(path, dtype=str, keep_default_na=False)
    except UserError as error:
        analysis.problems.append(str(error))
        return None
    missing = [c for c in columns if c not in frame.columns]
    if missing or frame.empty:
        analysis.problems.append(f"{path}: " + (f"missing column(s) {', '.join(missing)}" if missing else "no rows"))
        return None
    frame = frame[list(columns)]
    for column in numbers:
        values = pd.to_numeric(frame[column], errors="coerce")
        missing_allowed = (frame[column] == "").to_numpy() if column in may_be_empty else False
        if not (np.isfinite(values.to_numpy(dtype=float)) | missing_allowed).all():
            analysis.problems.append(f"{path}: a value of '{column}' is not a finite number")
            return None
        frame[column] = values
    analysis.sources.append(_written(path))
    return frame


def restoration(folder: Path) -> Analysis:
    """The restoration cross-matrix under ``folder``: its MSE and SSIM matrices, heat map and image grid."""
    analysis = Analysis()
    errors = _csv(analysis, folder / f"{RESTORATION_MATRIX}.csv", MATRIX_COLUMNS, ("mse", "ssim", "cubes"))
    if errors is not None:
        from benchmark.reporting.restoration_matrix import as_matrix  # torch and MONAI: only when needed

        cubes = ", ".join(f"{c:g}" for c in sorted(errors["cubes"].unique()))
        try:
            for value, better in (("mse", "lower"), ("ssim", "higher")):
                matrix = as_matrix(errors, value).reset_index()  # rows: corruption; columns: input, models
                matrix.columns.name = None
                analysis.tables.append(Table(
                    f"analysis_restoration_{value}", f"Restoration cross-matrix: {value.upper()}",
                    f"{value.upper()} ({better} is better) of each restoration model (columns; 'input': the "
                    f"corrupted input itself, the floor a model must beat) on each method's corruption (rows) of "
                    f"the same held-out cubes ({cubes}), mean over the cubes.", matrix))
        except ValueError as error:  # a corruption and model given twice: not a matrix
            analysis.tables.clear()
            analysis.problems.append(f"{folder / f'{RESTORATION_MATRIX}.csv'}: not one value per corruption and "
                                     f"model ({error})")
    _image(analysis, folder, RESTORATION_MATRIX, "analysis_restoration_matrix", "Restoration cross-matrix")
    _image(analysis, folder, RESTORATION_GRID, "analysis_restoration_grid",
           "Central slice of the first held-out cube: each corruption (rows) and each model's restoration")
    _checkpoints(analysis, folder / RESTORATION_CHECKPOINTS)
    return analysis


def anomaly(folder: Path) -> Analysis:
    """The anomaly maps under ``folder/anomaly``: the montage, the detection AUC and the difference maps."""
    analysis = Analysis()
    own = folder / ANOMALY_FOLDER
    _image(analysis, own, ANOMALY_MONTAGE, "analysis_anomaly_montage",
           "Per scan: the scan, its restoration and |scan - restored| (cyan: the opacity mask, where known)")
    auc = _csv(analysis, own / ANOMALY_AUC, AUC_COLUMNS, AUC_COLUMNS[1:], may_be_empty=("ci_low", "ci_high"))
    if auc is not None:
        analysis.tables.append(Table(
            "analysis_anomaly_auc", "Anomaly maps: opacity detection",
            "Voxel-level AUC of the difference map |scan - restored| and of the raw intensity for finding the "
            "opacities inside the lungs, and their difference (paired), with 95% jackknife-t intervals over scans "
            "(each scan left out in turn; logit scale for the AUCs; jackknife: the number of leave-one-out "
            f"estimates; voxels_per_scan voxels drawn from each scan; none below {MIN_INTERVAL_SCANS} scans). In a "
            "simulation they covered 92-95% at 5 to 20 scans (docs/statistics.md).",
            auc))
    maps = sorted(own.glob(f"*{DIFFERENCE_SUFFIX}")) if own.is_dir() else []
    if maps:
        analysis.found = True
        analysis.sources.append(f"{len(maps)} difference map(s) (NIfTI, the scan's geometry) in {own}")
    _checkpoints(analysis, own / ANOMALY_CHECKPOINTS)
    return analysis
