"""Candidate tasks (NCC, ECC) at scale: lazy cases, every candidate by default, the candidate
settings (``--task-arg``), and fine-tuning batches through worker processes."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers import held_after, unet

from benchmark.api.profiles import PROFILES
from benchmark.api.registry import TASKS
from benchmark.cli import main
from benchmark.data.datasets import phantom_source
from benchmark.data.imageio import HU_MIN, scale_ct
from benchmark.data.phantoms.chest import write_chest_phantom
from benchmark.engine.finetune import finetune
from benchmark.errors import UserError

pytestmark = pytest.mark.usefixtures("isolated_cache")
CUBE = (16, 32, 32)
EXTRA_NEGATIVES = 30  # per scan, beyond the phantom's own


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chest phantom with ``EXTRA_NEGATIVES`` more negatives per scan (copies of its negatives,
    shifted by a millimetre): more than any former per-scan cap."""
    root = tmp_path_factory.mktemp("crowded") / "luna"
    shutil.copytree(phantom_source(write_chest_phantom).root, root)
    path = root / "candidates_V2.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    negatives: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row["class"] == "0":
            negatives.setdefault(row["seriesuid"], []).append(row)
    extra = [{**own[i % len(own)], "coordX": f"{float(own[i % len(own)]['coordX']) + 1:.4f}"}
             for own in negatives.values() for i in range(EXTRA_NEGATIVES)]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows + extra)
    return root


def listed(root: Path) -> dict[str, list[int]]:
    """Series UID -> the labels of its rows in the candidates file."""
    labels: dict[str, list[int]] = {}
    with open(root / "candidates_V2.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            labels.setdefault(row["seriesuid"], []).append(int(row["class"]))
    return labels


def test_every_candidate_of_every_split_is_a_case_by_default(crowded: Path) -> None:
    data = TASKS.create("ncc").load(crowded, CUBE)
    cases = data.train + data.val + data.test
    assert len(cases) == sum(len(labels) for labels in listed(crowded).values())
    for case in cases:
        assert case.image.shape == (1, *CUBE) and case.image.dtype == np.float32


def test_a_lazy_case_crops_its_scan_when_asked_and_holds_no_image(crowded: Path) -> None:
    task = TASKS.create("ncc")
    task.load(crowded, CUBE)  # preprocessed into the cache
    data, held = held_after(lambda: task.load(crowded, CUBE))
    cases = data.train + data.val + data.test
    eager = len(cases) * int(np.prod(CUBE)) * 4
    assert held < eager / 10, f"{held} bytes held for {len(cases)} cases (their crops: {eager})"
    case = data.test[0]
    uid, row = case.case_id.split(":")
    scan = sitk.ReadImage(str(next(crowded.glob(f"subset*/{uid}.mhd"))))
    with open(crowded / "candidates_V2.csv", newline="") as handle:
        line = next(r for i, r in enumerate(csv.DictReader(handle), start=2) if i == int(row))
    x, y, z = scan.TransformPhysicalPointToIndex([float(line[k]) for k in ("coordX", "coordY", "coordZ")])
    hu = np.pad(sitk.GetArrayFromImage(scan).astype(np.float32), [(s, s) for s in CUBE], constant_values=HU_MIN)
    z, y, x = (i + side // 2 for i, side in zip((z, y, x), CUBE))  # the crop's start, in the padded array
    expected = scale_ct(hu[z:z + CUBE[0], y:y + CUBE[1], x:x + CUBE[2]])
    np.testing.assert_allclose(case.image[0], expected, atol=1e-6)
    assert np.array_equal(case.image, case.image)  # made anew at each access, the same each time


def test_the_negative_cap_applies_to_training_only_and_keeps_every_positive(crowded: Path) -> None:
    full = TASKS.create("ncc").load(crowded, CUBE)
    capped = TASKS.create("ncc", max_negatives_per_scan="2").load(crowded, CUBE)
    assert [c.case_id for c in capped.val] == [c.case_id for c in full.val]
    assert [c.case_id for c in capped.test] == [c.case_id for c in full.test]
    by_scan: dict[str, list[int]] = {}
    for case in capped.train:
        by_scan.setdefault(case.group, []).append(case.target)
    assert all(labels.count(0) <= 2 for labels in by_scan.values())
    assert sum(c.target for c in capped.train) == sum(c.target for c in full.train)
    assert {c.case_id for c in capped.train} < {c.case_id for c in full.train}
    again = TASKS.create("ncc", max_negatives_per_scan=2).load(crowded, CUBE)
    assert [c.case_id for c in again.train] == [c.case_id for c in capped.train]  # reproducible


def test_the_validation_subset_is_fixed_and_keeps_every_positive_up_to_half(crowded: Path) -> None:
    full = TASKS.create("ncc").load(crowded, CUBE).val
    positives = sum(c.target for c in full)
    order = {c.case_id: i for i, c in enumerate(full)}
    for size in (2 * positives + 8, positives):
        subset = TASKS.create("ncc", validation_candidates=size).load(crowded, CUBE).val
        assert len(subset) == size and set(c.case_id for c in subset) <= set(order)
        assert sum(c.target for c in subset) == min(positives, size // 2)
        assert [order[c.case_id] for c in subset] == sorted(order[c.case_id] for c in subset)
        again = TASKS.create("ncc", validation_candidates=size).load(crowded, CUBE).val
        assert [c.case_id for c in again] == [c.case_id for c in subset]


@pytest.mark.parametrize("name", ["ncc", "ecc"])
@pytest.mark.parametrize("setting", ["max_negatives_per_scan=0", "validation_candidates=1",
                                     "validation_candidates=2.5", "max_negatives_per_scan=True"])
def test_a_bad_candidate_setting_is_a_one_line_error(name: str, setting: str) -> None:
    key, _, value = setting.partition("=")
    with pytest.raises(UserError, match=f"task '{name}', setting {key}=.*None \\(every candidate\\)"):
        TASKS.create(name, **{key: value})


def test_a_run_records_its_task_settings_and_how_many_candidates_it_used(crowded: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    common = ["run", "--method", "scratch-he", "--task", "ncc", "--profile", "smoke", "--data-root", str(crowded),
              "--results", str(tmp_path), "--no-progress"]
    assert main(common) == 0
    assert main([*common, "--task-arg", "validation_candidates=20", "--task-arg", "max_negatives_per_scan=3"]) == 0
    out = capsys.readouterr().out
    assert "settings: max_negatives_per_scan=3 validation_candidates=20" in out
    records = {}
    for path in tmp_path.glob("runs/*/result.json"):
        record = json.loads(path.read_text())
        records[record["task_settings"]["validation_candidates"]] = record
    default, capped = records[None], records[20]
    assert default["run_id"] != capped["run_id"]
    assert default["task_settings"] == {"max_negatives_per_scan": None, "validation_candidates": None}
    assert capped["task_settings"] == {"max_negatives_per_scan": 3, "validation_candidates": 20}
    labels = listed(crowded)
    assert default["cases"]["test"] == capped["cases"]["test"] == sum(
        len(labels[uid]) for uid in labels if next(crowded.glob(f"subset[789]/{uid}.mhd"), None))
    assert capped["cases"]["val"] == 20 and default["cases"]["val"] > 20
    assert capped["cases"]["train_available"] < default["cases"]["train_available"]


def test_unknown_task_settings_get_a_hint_and_show_lists_them(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["run", "--method", "scratch-he", "--task", "ncc", "--profile", "smoke", "--results", str(tmp_path),
                 "--task-arg", "max_negative=3"]) == 2
    assert "unknown setting 'max_negative'; did you mean 'max_negatives_per_scan'?" in capsys.readouterr().err
    assert main(["show", "ecc"]) == 0
    out = capsys.readouterr().out
    assert "--task-arg KEY=VALUE" in out and "max_negatives_per_scan  None" in out


def test_fine_tuning_batches_are_the_same_from_worker_processes(crowded: Path) -> None:
    task = TASKS.create("ncc")
    data = task.load(crowded, CUBE)
    smoke = PROFILES["smoke"]
    profile = dataclasses.replace(smoke, classification=dataclasses.replace(smoke.classification, epochs=2))
    fits = []
    for workers in (0, 2):
        torch.manual_seed(1)
        model = task.build_model(unet(), profile.width)
        model, history, _ = finetune(model, task, data.train, data.val[:40], CUBE,
                                     dataclasses.replace(profile, loader_workers=workers), seed=5,
                                     device=torch.device("cpu"), progress=False)
        fits.append((history, model.state_dict()))
    (history0, weights0), (history2, weights2) = fits
    assert history0.drop(columns="lr").equals(history2.drop(columns="lr"))
    assert all(torch.equal(weights0[key], weights2[key]) for key in weights0)
