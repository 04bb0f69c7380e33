"""benchmark analyze: the restoration cross-matrix and the anomaly maps."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from scipy.special import expit, logit
from scipy.stats import mannwhitneyu, t
from sklearn.metrics import roc_auc_score

from benchmark.cli import main
from benchmark.cli.analyze import _restoration_methods
from benchmark.data.phantoms.opacities import FOLDERS, write_opacity_phantom
from benchmark.errors import UserError
from benchmark.reporting import anomaly
from benchmark.reporting.anomaly import AnomalyMap, detection_auc, find_scans, montage
from benchmark.reporting.restoration_matrix import ssim_3d


@pytest.fixture(scope="module")
def opacity_scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("opacities")
    write_opacity_phantom(root, 0)
    return root


def test_opacity_phantom_plants_ground_glass_inside_the_lungs(opacity_scans):
    scans = find_scans(opacity_scans)
    assert len(scans) >= 6 and all(s.mask is not None and s.region is not None for s in scans)
    for scan in scans:
        hu = sitk.GetArrayFromImage(sitk.ReadImage(str(scan.image)))
        mask, lung = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) > 0 for p in (scan.mask, scan.region))
        assert mask.any() and not (mask & ~lung).any()
        assert hu[mask].mean() > hu[lung & ~mask].mean() + 100  # denser than aerated lung
        assert -750 < np.median(hu[mask]) < -450


def _map(rng, informative: bool) -> AnomalyMap:
    shape = (6, 20, 20)
    mask = np.zeros(shape, bool)
    mask[2:4, 5:12, 5:12] = True
    difference = rng.random(shape) + (0.5 * mask if informative else 0)
    return AnomalyMap("scan", rng.random(shape), rng.random(shape), difference, mask, np.ones(shape, bool), {})


def test_detection_auc_matches_the_mann_whitney_statistic_of_the_sampled_voxels():
    rng = np.random.default_rng(0)
    maps = [_map(rng, informative=True) for _ in range(5)]
    table = detection_auc(maps, seed=3).set_index("score")
    labels, scores = [], []
    for sample in anomaly._sampled(maps, 3):  # the same voxels, scored independently
        labels.append(sample[0])
        scores.append(sample[1])
    labels, scores = np.concatenate(labels), np.concatenate(scores)
    u = mannwhitneyu(scores[labels], scores[~labels]).statistic
    assert table.loc["difference map", "auc"] == pytest.approx(u / (labels.sum() * (~labels).sum()), abs=1e-12)
    row = table.loc["difference map"]
    assert row.ci_low <= row.auc <= row.ci_high and row.auc > 0.8
    assert abs(table.loc["raw intensity", "auc"] - 0.5) < 0.1  # raw intensity is noise here


def test_the_pooled_auc_of_any_multiset_of_scans_is_that_of_their_voxels_concatenated():
    rng = np.random.default_rng(4)
    labels = [rng.random(50) < share for share in (0.1, 0.3, 0.0, 0.5)]  # one scan without opacity
    scores = [np.round(rng.normal(size=50) + label, 1) for label in labels]  # rounded: ties
    counts = anomaly.pair_counts(labels, scores)
    for weights in ([1, 1, 1, 1], [2, 0, 1, 3], [0, 0, 1, 1], [1, 0, 0, 0]):
        chosen = [i for i, w in enumerate(weights) for _ in range(w)]
        expected = roc_auc_score(np.concatenate([labels[i] for i in chosen]),
                                 np.concatenate([scores[i] for i in chosen]))
        assert anomaly.pooled_auc(counts, np.array(weights, float)) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(anomaly.pooled_auc(counts, np.array([0, 0, 1, 0], float)))  # no opacity voxel


def test_the_interval_is_the_jackknife_t_on_the_logit_scale_computed_by_brute_force():
    rng = np.random.default_rng(5)
    maps = [_map(rng, informative=True) for _ in range(6)]
    table = detection_auc(maps, seed=1).set_index("score")
    samples = anomaly._sampled(maps, 1)

    def auc(indices, k):
        return roc_auc_score(np.concatenate([samples[i][0] for i in indices]),
                             np.concatenate([samples[i][k] for i in indices]))

    n = len(samples)
    for name, k in (("difference map", 1), ("raw intensity", 2)):
        logits = np.array([logit(auc([j for j in range(n) if j != i], k)) for i in range(n)])
        error = np.sqrt((n - 1) / n * ((logits - logits.mean()) ** 2).sum())
        centre, q = logit(auc(range(n), k)), t.ppf(0.975, n - 1)
        assert table.loc[name, ["ci_low", "ci_high"]].tolist() == pytest.approx(
            [expit(centre - q * error), expit(centre + q * error)], abs=1e-12)
    differences = np.array([auc([j for j in range(n) if j != i], 1) - auc([j for j in range(n) if j != i], 2)
                            for i in range(n)])
    error = np.sqrt((n - 1) / n * ((differences - differences.mean()) ** 2).sum())
    estimate = auc(range(n), 1) - auc(range(n), 2)
    assert table.loc["difference - intensity", ["ci_low", "ci_high"]].tolist() == pytest.approx(
        [estimate - t.ppf(0.975, n - 1) * error, estimate + t.ppf(0.975, n - 1) * error], abs=1e-12)
    assert (table["jackknife"] == n).all()


def test_detection_auc_gives_no_interval_below_five_scans():
    rng = np.random.default_rng(1)
    maps = [_map(rng, informative=True) for _ in range(5)]
    few = detection_auc(maps[:4])
    assert few["ci_low"].isna().all() and few["ci_high"].isna().all() and (few["jackknife"] == 0).all()
    assert few["auc"].notna().all()
    enough = detection_auc(maps)
    assert (enough["ci_low"] < enough["ci_high"]).all() and (enough["jackknife"] == 5).all()


def test_a_perfect_separation_gets_no_interval_of_zero_width():
    rng = np.random.default_rng(3)
    maps = [_map(rng, informative=False) for _ in range(5)]
    for scan in maps:
        scan.difference = scan.mask + 0.5 * rng.random(scan.mask.shape)  # every opacity voxel above the rest
    table = detection_auc(maps).set_index("score")
    assert table.loc["difference map", "auc"] == 1.0 and np.isnan(table.loc["difference map", "ci_low"])
    assert table.loc["raw intensity", "ci_low"] < table.loc["raw intensity", "ci_high"]


def test_no_interval_when_one_scan_holds_every_opacity():
    rng = np.random.default_rng(2)
    maps = [_map(rng, informative=True) for _ in range(5)]
    for clear in maps[1:]:
        clear.mask = np.zeros_like(clear.mask)
    table = detection_auc(maps)
    assert table["auc"].notna().all() and table["ci_low"].isna().all() and (table["jackknife"] == 0).all()


def test_the_montage_draws_scan_names_literally():
    rng = np.random.default_rng(2)
    scan = _map(rng, informative=True)
    scan.name = "s$\\badcmd$"
    figure = montage([scan])
    figure.savefig(io.BytesIO(), format="png")  # mathtext would raise on the name
    assert figure.axes[0].get_ylabel() == "s\\$\\badcmd\\$"


def test_a_model_whose_restoration_is_not_finite_is_named_not_scored(opacity_scans):
    from benchmark.api.profiles import PROFILES

    class Broken(torch.nn.Module):
        def forward(self, x):
            return torch.full_like(x, float("nan"))

    scan = find_scans(opacity_scans)[0]
    with pytest.raises(UserError, match=f"{scan.image.name}: the restoration model's output is not finite"):
        anomaly.anomaly_map(Broken(), scan, PROFILES["smoke"], torch.device("cpu"))


def test_detection_auc_needs_masks():
    rng = np.random.default_rng(0)
    unlabelled = _map(rng, informative=True)
    unlabelled.mask = None
    with pytest.raises(UserError, match="masks"):
        detection_auc([unlabelled])


def test_ssim_is_one_for_identical_volumes_and_falls_with_noise():
    generator = torch.Generator().manual_seed(0)
    volume = torch.rand(2, 1, 12, 16, 16, generator=generator)
    noisy = (volume + 0.2 * torch.randn(volume.shape, generator=generator)).clamp(0, 1)
    assert np.allclose(ssim_3d(volume, volume), 1.0)
    assert (ssim_3d(noisy, volume) < 0.9).all()


def test_a_mask_of_another_shape_is_one_line_error(tmp_path, opacity_scans):
    scan = find_scans(opacity_scans)[0]
    for folder in FOLDERS:
        (tmp_path / folder).mkdir()
    sitk.WriteImage(sitk.ReadImage(str(scan.image)), str(tmp_path / "scans" / "a.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5), np.uint8)), str(tmp_path / "masks" / "a.nii.gz"))
    found = find_scans(tmp_path)
    assert [s.name for s in found] == ["a"] and found[0].region is None
    with pytest.raises(UserError, match="does not match its scan"):
        anomaly._mask(found[0].mask, (1, 2, 3), "mask", found[0].image)


def test_restoration_matrix_command(tmp_path, isolated_cache, capsys):
    out = tmp_path / "out"
    status = main(["analyze", "restoration", "--methods", "genesis-identity,genesis-nl", "--profile", "smoke",
                   "--cubes", "2", "--results", str(tmp_path / "results"), "--out", str(out), "--no-progress"])
    assert status == 0
    errors = pd.read_csv(out / "restoration_matrix.csv").set_index(["corruption", "restored_by"])
    assert len(errors) == 2 * 3
    identity = errors.loc[("genesis-identity", "input")]  # no corruption: the input is the target
    assert identity.mse == pytest.approx(0.0, abs=1e-12) and identity.ssim == pytest.approx(1.0, abs=1e-6)
    assert errors.loc[("genesis-nl", "input")].mse > 0
    for name in ("restoration_matrix.md", "restoration_matrix.png", "restoration_matrix.pdf",
                 "restoration_grid.png", "restoration_grid.pdf"):
        assert (out / name).stat().st_size > 0
    assert "| genesis-nl |" in capsys.readouterr().out
    analysed = json.loads((out / "restoration_checkpoints.json").read_text(encoding="utf-8"))
    cached = sorted(path.name for path in (tmp_path / "results" / "checkpoints").iterdir())
    assert sorted(analysed["checkpoints"].values()) == cached and set(analysed["checkpoints"]) == {
        "genesis-identity", "genesis-nl"}
    assert analysed["profile"] == "smoke"


def test_analyze_finds_the_checkpoint_pretrain_made_with_the_same_options(tmp_path, isolated_cache, capsys):
    results, out = tmp_path / "results", tmp_path / "out"
    options = ["--profile", "smoke", "--method-arg", "loss=mae", "--profile-arg", "pretrain_epochs=1",
               "--results", str(results), "--no-progress"]
    assert main(["pretrain", "--method", "genesis-identity", *options]) == 0
    made = Path(capsys.readouterr().out.strip().splitlines()[-1]).parent.name
    assert main(["analyze", "restoration", "--methods", "genesis-identity", "--cubes", "2", "--out", str(out),
                 *options]) == 0
    analysed = json.loads((out / "restoration_checkpoints.json").read_text(encoding="utf-8"))
    assert analysed["checkpoints"] == {"genesis-identity": made}
    assert analysed["method_settings"] == {"loss": "mae"} and analysed["profile_fields"] == {"pretrain_epochs": 1}
    assert [path.name for path in (results / "checkpoints").iterdir()] == [made]  # reused, not pretrained again
    assert main(["analyze", "anomaly", "--method", "genesis-identity", "--method-arg", "nonsense=1",
                 "--results", str(results), "--out", str(out), "--profile", "smoke"]) == 2
    assert "nonsense" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["jigsaw", "genesis-2d", "genesis-xray", "niftynet", "supervised", "scratch-he"])
def test_restoration_matrix_refuses_a_method_that_does_not_restore_3d_cubes(tmp_path, isolated_cache, capsys,
                                                                             method):
    status = main(["analyze", "restoration", "--methods", method, "--profile", "smoke", "--cubes", "2",
                   "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert status == 2 and "not a restoration method" in capsys.readouterr().err
    assert not (tmp_path / "results" / "checkpoints").exists()  # refused before any pretraining


def test_the_default_matrix_holds_the_methods_that_restore_3d_cubes():
    """Without --methods: every registered method is judged (released weights, 2D networks and supervised
    pretraining included, without a traceback) and those whose pretext task restores 3D cubes are kept."""
    assert {method.name for method in _restoration_methods(None)} == {
        "denoising", "genesis", "genesis-ic", "genesis-identity", "genesis-ls", "genesis-nl", "genesis-oc",
        "inpainting", "patch-shuffling"}


def test_anomaly_command_writes_difference_maps_with_the_scans_geometry(tmp_path, isolated_cache, capsys,
                                                                        opacity_scans):
    data = tmp_path / "data"  # two of the scans keep it short
    for scan in find_scans(opacity_scans)[:2]:
        for folder, path in zip(FOLDERS, (scan.image, scan.mask, scan.region)):
            (data / folder).mkdir(parents=True, exist_ok=True)
            for part in (path, path.with_suffix(".raw")):
                (data / folder / part.name).write_bytes(part.read_bytes())
    out = tmp_path / "out"
    (out / "anomaly").mkdir(parents=True)  # what an earlier analysis of other scans left: not shown beside the new
    (out / "anomaly" / "gone_difference.nii.gz").write_bytes(b"an earlier scan's map")
    status = main(["analyze", "anomaly", "--data-root", str(data), "--profile", "smoke",
                   "--results", str(tmp_path / "results"), "--out", str(out), "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "difference map" in printed and "no interval: 2 scan(s), an interval needs at least 5" in printed
    assert not (out / "anomaly" / "gone_difference.nii.gz").exists()
    scans = find_scans(data)
    assert len(scans) == 2
    for scan in scans:
        difference = sitk.ReadImage(str(out / "anomaly" / f"{scan.name}_difference.nii.gz"))
        reference = sitk.ReadImage(str(scan.image))
        assert difference.GetSize() == reference.GetSize()
        assert np.allclose(difference.GetSpacing(), reference.GetSpacing())
        assert np.allclose(difference.GetOrigin(), reference.GetOrigin(), atol=1e-3)
        values = sitk.GetArrayFromImage(difference)
        assert values.min() >= 0 and values.max() <= 1
    table = pd.read_csv(out / "anomaly" / "detection_auc.csv")
    assert set(table["score"]) == {"difference map", "raw intensity", "difference - intensity"}
    analysed = json.loads((out / "anomaly" / "checkpoints.json").read_text(encoding="utf-8"))
    assert list(analysed["checkpoints"]) == ["genesis"] and analysed["checkpoints"]["genesis"].startswith("genesis-")
    assert (out / "anomaly" / "montage.pdf").stat().st_size > 0
