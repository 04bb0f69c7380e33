"""Anomaly maps without annotation (Models Genesis §5.6, fig. 9): a restoration model given an
unmodified scan "restores" what it never saw in pretraining (diffuse disease) towards normal
lung, so |input - output| highlights the abnormal regions.

Whole scans are restored by sliding-window inference (MONAI, Gaussian blending) at the
profile's cube. Where opacity masks are given, the claim becomes a number: the voxel-level AUC
of the difference map for finding the opacities inside the lungs (the lung masks; the whole
scan when there are none), against the AUC of the raw intensity. Voxels of one scan are not
independent, so the 95% interval is a percentile bootstrap over scans (whole scans resampled,
``BOOTSTRAP`` times); each scan contributes ``VOXELS_PER_SCAN`` voxels drawn at random
(seeded), which keeps the bootstrap fast and weighs scans equally. Below ``MIN_INTERVAL_SCANS``
scans no interval is given (empty cells): a bootstrap over 1 scan has zero width and over 2 to 4
has 3 to 70 distinct resamples, too few to cover 95%. With a few more it still covers less: 81% at
5 scans and 86% at 8 in a simulation of scans that differ in opacity contrast, share and intensity
(docs/statistics.md), which the report's legend says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from matplotlib.figure import Figure
from monai.inferers import sliding_window_inference
from sklearn.metrics import roc_auc_score

from benchmark.api.profiles import Profile
from benchmark.data.imageio import geometry, read_image, scale_ct
from benchmark.errors import UserError
from benchmark.reporting.analyses import MIN_INTERVAL_SCANS
from benchmark.reporting.plots import literal

SCAN_SUFFIXES = (".mhd", ".nii.gz", ".nii")
BOOTSTRAP = 1000
VOXELS_PER_SCAN = 2000
SAMPLING_SEED = 0


@dataclass
class Scan:
    name: str
    image: Path
    mask: Path | None  # the abnormal regions, when known
    region: Path | None  # where to look (the lungs), when given


@dataclass
class AnomalyMap:
    name: str
    scan: np.ndarray  # scaled to [0, 1]
    restored: np.ndarray
    difference: np.ndarray
    mask: np.ndarray | None
    region: np.ndarray
    geometry: dict[str, list[float]]  # the scan's origin, spacing and direction


def _stem(path: Path) -> str:
    name = path.name
    return next(name[: -len(s)] for s in SCAN_SUFFIXES if name.endswith(s))


def find_scans(root: Path) -> list[Scan]:
    """``scans/<name>.{mhd,nii.gz,nii}``, with ``masks/<name>.*`` and ``lungs/<name>.*`` where present."""
    folder = Path(root) / "scans"
    images = sorted(p for p in folder.glob("*") if p.name.endswith(SCAN_SUFFIXES)) if folder.is_dir() else []
    if not images:
        raise UserError(f"{root}: no scans found (expected scans/<name>.mhd, .nii.gz or .nii)")

    def companion(kind: str, name: str) -> Path | None:
        found = [Path(root) / kind / f"{name}{s}" for s in SCAN_SUFFIXES]
        return next((p for p in found if p.is_file()), None)

    return [Scan(_stem(p), p, companion("masks", _stem(p)), companion("lungs", _stem(p))) for p in images]


def _mask(path: Path | None, shape: tuple[int, ...], what: str, scan: Path) -> np.ndarray | None:
    if path is None:
        return None
    array = sitk.GetArrayFromImage(read_image(path)) > 0
    if array.shape != shape:
        raise UserError(f"{path}: {what} of shape {array.shape} does not match its scan {scan} {shape}")
    return array


@torch.no_grad()
def restore_volume(model: torch.nn.Module, volume: np.ndarray, profile: Profile, device: torch.device) -> np.ndarray:
    """The model's restoration (sigmoid output) of a whole ``(Z, Y, X)`` volume in [0, 1]."""
    model.to(device).eval()
    inputs = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None].to(device)
    logits = sliding_window_inference(inputs, roi_size=profile.cube, sw_batch_size=profile.pretrain_batch,
                                      predictor=model, overlap=0.5, mode="gaussian")
    return torch.sigmoid(logits)[0, 0].cpu().numpy()


def anomaly_map(model: torch.nn.Module, scan: Scan, profile: Profile, device: torch.device) -> AnomalyMap:
    image = read_image(scan.image)
    volume = scale_ct(sitk.GetArrayFromImage(image).astype(np.float32))
    restored = restore_volume(model, volume, profile, device)
    mask = _mask(scan.mask, volume.shape, "mask", scan.image)
    region = _mask(scan.region, volume.shape, "lung mask", scan.image)
    return AnomalyMap(scan.name, volume, restored, np.abs(volume - restored), mask,
                      region if region is not None else np.ones(volume.shape, bool), geometry(image))


def write_difference(result: AnomalyMap, path: Path) -> None:
    """|input - output| as a float32 NIfTI image with the scan's geometry, written under a hidden
    name with the NIfTI suffix (the writer picks its format by suffix) and renamed into place."""
    image = sitk.GetImageFromArray(result.difference.astype(np.float32))
    image.SetOrigin(result.geometry["origin"])
    image.SetSpacing(result.geometry["spacing"])
    image.SetDirection(result.geometry["direction"])
    partial = path.with_name(f".{path.name.removesuffix('.nii.gz')}.partial.nii.gz")
    sitk.WriteImage(image, str(partial), useCompression=True)
    os.replace(partial, path)


def _sampled(results: list[AnomalyMap], seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per scan: (labels, difference, intensity) at up to VOXELS_PER_SCAN random voxels of its region."""
    rng = np.random.default_rng(seed)
    samples = []
    for result in results:
        voxels = np.flatnonzero(result.region)
        chosen = rng.choice(voxels, size=min(VOXELS_PER_SCAN, len(voxels)), replace=False)
        samples.append((result.mask.ravel()[chosen], result.difference.ravel()[chosen], result.scan.ravel()[chosen]))
    return samples


def detection_auc(results: list[AnomalyMap], seed: int = SAMPLING_SEED) -> pd.DataFrame:
    """AUC of the difference map and of the raw intensity for the masked voxels, with percentile
    bootstrap intervals over scans; one row per score, plus their difference (paired)."""
    labelled = [r for r in results if r.mask is not None]
    if not labelled:
        raise UserError("no opacity masks (masks/<name>.*): the detection AUC needs them")
    samples = _sampled(labelled, seed)

    def aucs(indices: np.ndarray) -> tuple[float, float] | None:
        labels = np.concatenate([samples[i][0] for i in indices])
        if labels.all() or not labels.any():
            return None
        return tuple(roc_auc_score(labels, np.concatenate([samples[i][k] for i in indices])) for k in (1, 2))

    point = aucs(np.arange(len(samples)))
    if point is None:
        raise UserError("the masks mark no voxel (or every voxel) of the regions looked at")
    rng = np.random.default_rng(seed)
    resamples = BOOTSTRAP if len(samples) >= MIN_INTERVAL_SCANS else 0
    draws = [aucs(rng.integers(0, len(samples), len(samples))) for _ in range(resamples)]
    boot = np.array([d for d in draws if d is not None]).reshape(-1, 2)
    rows = []
    for name, estimate, values in (("difference map", point[0], boot[:, 0]), ("raw intensity", point[1], boot[:, 1]),
                                   ("difference - intensity", point[0] - point[1], boot[:, 0] - boot[:, 1])):
        low, high = np.percentile(values, [2.5, 97.5]) if values.size else (np.nan, np.nan)
        rows.append({"score": name, "auc": estimate, "ci_low": low, "ci_high": high, "scans": len(samples),
                     "voxels_per_scan": VOXELS_PER_SCAN, "bootstrap": len(boot)})
    return pd.DataFrame(rows)


def montage(results: list[AnomalyMap]) -> Figure:
    """Per scan (rows), the axial slice with the most abnormal voxels (else the middle one):
    scan, restored, |difference|, and the mask's outline on the difference."""
    figure = Figure(figsize=(7.0, 1.9 * len(results)), layout="constrained")
    axes = figure.subplots(len(results), 3, squeeze=False)
    for row, result in zip(axes, results):
        z = int(result.mask.sum(axis=(1, 2)).argmax()) if result.mask is not None and result.mask.any() \
            else result.scan.shape[0] // 2
        for ax, image, title in zip(row, (result.scan[z], result.restored[z], result.difference[z]),
                                    ("scan", "restored", "|scan - restored|")):
            ax.imshow(image, cmap="gray" if title != "|scan - restored|" else "magma", vmin=0,
                      vmax=1 if title != "|scan - restored|" else max(float(result.difference.max()), 1e-6))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{title} (z {z})", fontsize=7)
        if result.mask is not None:
            row[2].contour(result.mask[z], levels=[0.5], colors="cyan", linewidths=0.6)
        row[0].set_ylabel(literal(result.name[-12:]), fontsize=7)
    return figure
