"""Anomaly maps without annotation (Models Genesis §5.6, fig. 9): a restoration model given an
unmodified scan "restores" what it never saw in pretraining (diffuse disease) towards normal
lung, so |input - output| highlights the abnormal regions.

Whole scans are restored by sliding-window inference (MONAI, Gaussian blending) at the
profile's cube. Where opacity masks are given, the claim becomes a number: the voxel-level AUC
of the difference map for finding the opacities inside the lungs (the lung masks; the whole
scan when there are none), against the AUC of the raw intensity.

The interval. Voxels of one scan are not independent: the unit of sampling is the scan. Each
scan contributes ``VOXELS_PER_SCAN`` voxels drawn at random (seeded), which weighs scans
equally; the estimate is the AUC of all those voxels pooled. Its 95% interval is a jackknife
over scans: the pooled AUC without each scan in turn gives the standard error, and the
interval is estimate ± t(n - 1, 0.975) × s.e., on the logit scale for each AUC (mapped back,
so it stays inside 0..1 and is asymmetric near the ends) and on the raw scale for the paired
difference. In a simulation of scans whose opacity contrast, opacity share and intensity
offset vary from scan to scan (``tests/test_anomaly_coverage.py``, 1,000 trials each) it held
the population's pooled AUC in 92-95% of trials at 5, 8, 12 and 20 scans, the difference in
94-96%; the percentile bootstrap over scans, used before, held it in 81% at 5 scans, 86% at 8,
90% at 12 and 93% at 20. Below ``MIN_INTERVAL_SCANS`` scans no interval is given (empty cells).

Every pooled AUC here, the leave-one-out ones included, comes from one matrix per score: the
count of correctly ordered (opacity voxel of scan i, other voxel of scan j) pairs for every i
and j (ties half), from which the AUC of any set of scans is a sum (``pooled_auc``).
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
from scipy import stats
from scipy.special import expit, logit

from benchmark.api.profiles import Profile
from benchmark.data.imageio import geometry, read_image, scale_ct
from benchmark.errors import UserError
from benchmark.reporting.analyses import MIN_INTERVAL_SCANS
from benchmark.reporting.plots import literal

SCAN_SUFFIXES = (".mhd", ".nii.gz", ".nii")
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
    if not np.isfinite(restored).all():
        raise UserError(f"{scan.image}: the restoration model's output is not finite there (unusable weights)")
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


@dataclass(frozen=True)
class PairCounts:
    """One score over a list of scans: ``ordered[i, j]`` counts the pairs (opacity voxel of scan i,
    other voxel of scan j) that the score orders correctly, ties counting half; ``positives[i]``
    and ``negatives[j]`` the voxels of each kind."""

    ordered: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray


def pair_counts(labels: list[np.ndarray], scores: list[np.ndarray]) -> PairCounts:
    """The pair counts of one score over scans (per scan: boolean labels and scores of its voxels)."""
    others = [np.sort(score[~label]) for label, score in zip(labels, scores)]
    opacities = [score[label] for label, score in zip(labels, scores)]
    ordered = np.empty((len(labels), len(labels)))
    for j, negative in enumerate(others):
        for i, positive in enumerate(opacities):
            below = np.searchsorted(negative, positive, "left")
            tied = np.searchsorted(negative, positive, "right") - below
            ordered[i, j] = below.sum() + 0.5 * tied.sum()
    return PairCounts(ordered, np.array([len(o) for o in opacities], float), np.array([len(o) for o in others], float))


def pooled_auc(counts: PairCounts, weights: np.ndarray) -> float:
    """The AUC of the voxels of the scans pooled, scan i taken ``weights[i]`` times (0: left out);
    NaN when the pooled voxels hold only one kind."""
    pairs = (weights @ counts.positives) * (weights @ counts.negatives)
    return float(weights @ counts.ordered @ weights / pairs) if pairs > 0 else float("nan")


def jackknife_t_interval(estimate: float, leave_one_out: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """estimate ± t(n - 1) × the jackknife standard error from the ``n`` leave-one-out estimates."""
    n = len(leave_one_out)
    error = np.sqrt((n - 1) / n * np.sum((leave_one_out - leave_one_out.mean()) ** 2))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * error
    return estimate - half, estimate + half


def _logit(auc: float | np.ndarray) -> float | np.ndarray:
    return logit(np.clip(auc, 1e-9, 1 - 1e-9))  # an AUC of exactly 0 or 1 stays finite


def detection_auc(results: list[AnomalyMap], seed: int = SAMPLING_SEED) -> pd.DataFrame:
    """AUC of the difference map and of the raw intensity for the masked voxels, and their paired
    difference, each with its jackknife-t interval over scans (see the module's docstring)."""
    labelled = [r for r in results if r.mask is not None]
    if not labelled:
        raise UserError("no opacity masks (masks/<name>.*): the detection AUC needs them")
    samples = _sampled(labelled, seed)
    labels = [sample[0].astype(bool) for sample in samples]
    difference, intensity = (pair_counts(labels, [sample[k] for sample in samples]) for k in (1, 2))
    scans = len(samples)
    everyone = np.ones(scans)
    point = np.array([pooled_auc(difference, everyone), pooled_auc(intensity, everyone)])
    if np.isnan(point).any():
        raise UserError("the masks mark no voxel (or every voxel) of the regions looked at")
    left_out = np.array([[pooled_auc(counts, everyone - np.eye(scans)[i]) for counts in (difference, intensity)]
                         for i in range(scans)]) if scans >= MIN_INTERVAL_SCANS else np.empty((0, 2))
    jackknife = len(left_out) if not np.isnan(left_out).any() else 0  # a scan held all opacities: no interval
    rows = []
    for name, estimate, values, on_logit in (
            ("difference map", point[0], left_out[:, 0], True), ("raw intensity", point[1], left_out[:, 1], True),
            ("difference - intensity", point[0] - point[1], left_out[:, 0] - left_out[:, 1], False)):
        low, high = np.nan, np.nan
        if jackknife and not (on_logit and estimate in (0.0, 1.0)):  # perfect separation: no spread to measure
            if on_logit:
                low, high = expit(jackknife_t_interval(_logit(estimate), _logit(values)))
            else:
                low, high = jackknife_t_interval(estimate, values)
        rows.append({"score": name, "auc": estimate, "ci_low": low, "ci_high": high, "scans": scans,
                     "voxels_per_scan": VOXELS_PER_SCAN, "jackknife": jackknife})
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
