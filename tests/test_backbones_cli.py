"""Backbones as a user meets them: the listing, released MedicalNet files through --weights, supervised
pretraining on a source task with its leakage checks, and a sweep whose Table 3 names backbone and
protocol."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import error_line, small_ncs_splits

from benchmark.api.registry import BACKBONES, METHODS, TASKS
from benchmark.api.task import Case, TaskData
from benchmark.cli import main
from benchmark.data import datasets
from benchmark.engine.supervised import check_no_shared_patients
from benchmark.errors import UserError

FAST = ["--profile", "smoke", "--no-progress", "--profile-arg", "classification.epochs=1",
        "--profile-arg", "segmentation.epochs=1", "--profile-arg", "classification.steps_per_epoch=2",
        "--profile-arg", "segmentation.steps_per_epoch=2"]



def record_of(results: Path, pattern: str) -> dict:
    (path,) = results.glob(f"runs/{pattern}/result.json")
    return json.loads(path.read_text())


def medicalnet_file(path: Path, depth: int = 10, width: int = 4, drop: str | None = None) -> Path:
    """A ResNet in MedicalNet's released layout: ``{'state_dict': {'module.conv1.weight', ...}}``."""
    torch.manual_seed(0)
    encoder = BACKBONES.create("resnet3d", depth=depth).build_encoder(1, width)
    state = {f"module.{key}": value for key, value in encoder.state_dict().items()
             if not key.endswith("num_batches_tracked") and f"module.{key}" != drop}
    torch.save({"state_dict": state}, path)
    return path


def test_list_shows_every_backbone_with_its_parameter_counts(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    backbones = out[out.index("backbones"):]
    for name in BACKBONES.names():
        assert f"  {name}  [" in backbones
    assert "7.03 M / 7.55 M / 19.07 M" in backbones  # the U-Net at width 32: encoder, classifier, segmenter
    assert "16.32 M" in backbones  # the paper's count, the Keras variant


def test_a_medicalnet_file_fine_tunes_on_lcs_and_a_missing_key_is_refused(tmp_path: Path, capsys) -> None:
    weights = medicalnet_file(tmp_path / "resnet_10.pth")
    results = tmp_path / "results"
    assert main(["run", "--method", "medicalnet", "--task", "lcs", "--weights", str(weights),
                 "--results", str(results), *FAST]) == 0
    out = capsys.readouterr().out
    assert "backbone resnet3d" in out and "leakage" not in out  # the phantom is not LiTS: nothing leaked
    record = record_of(results, "lcs-medicalnet-smoke-*")
    assert record["backbone"]["name"] == "resnet3d" and record["backbone"]["settings"]["depth"] == 10
    assert record["weights"]["format"] == "released-medicalnet" and record["transfer"]["transferred"] == "encoder"
    assert record["warnings"] == []

    lits = tmp_path / "LiTS"  # a user's LiTS folder: MedicalNet's weights were trained on LiTS
    TASKS.create("lcs").write_phantom(lits, 0)
    real = tmp_path / "real"
    assert main(["run", "--method", "medicalnet", "--task", "lcs", "--weights", str(weights), "--data-root",
                 str(lits), "--results", str(real), *FAST]) == 0
    assert "warning  leakage" in capsys.readouterr().out
    assert main(["run", "--method", "scratch-he", "--task", "lcs", "--data-root", str(lits), "--results", str(real),
                 *FAST]) == 0
    assert main(["report", "--results", str(real), "--out", str(tmp_path / "report"), "--no-progress"]) == 0
    table3 = (tmp_path / "report" / "table3.md").read_text()
    assert "‡ medicalnet on lcs: leakage" in table3

    capsys.readouterr()
    broken = medicalnet_file(tmp_path / "broken.pth", drop="module.layer2.0.conv1.weight")
    assert main(["run", "--method", "medicalnet", "--task", "lcs", "--weights", str(broken),
                 "--results", str(results), *FAST]) == 2
    error = error_line(capsys.readouterr().err)
    assert "layer2.0.conv1.weight" in error and str(broken) in error


@pytest.mark.parametrize("arguments, message", [
    (["--method", "medicalnet", "--task", "lcs"], "pass --weights"),
    (["--method", "jigsaw", "--task", "ncc", "--backbone", "resnet3d"], "cannot pretrain or initialise"),
    (["--method", "medicalnet", "--task", "lcs", "--method-arg", "depth=18"], "pass --weights"),
    (["--method", "scratch-he", "--task", "ncc", "--backbone", "resnet3d", "--protocol", "freeze:5"],
     "4 encoder stages"),
    (["--method", "supervised", "--task", "lcs", "--method-arg", "source=lcs"], "target task on its own data"),
    (["--method", "scratch-he", "--task", "ncc", "--backbone", "nope"], "unknown backbone 'nope'"),
])
def test_mistakes_are_one_line_errors(tmp_path: Path, capsys, arguments: list[str], message: str) -> None:
    assert main(["run", *arguments, "--results", str(tmp_path), *FAST]) == 2
    error = error_line(capsys.readouterr().err)
    assert message in error


def test_a_file_of_another_depth_than_asked_is_refused(tmp_path: Path, capsys) -> None:
    weights = medicalnet_file(tmp_path / "resnet_10.pth")
    assert main(["run", "--method", "medicalnet", "--task", "lcs", "--weights", str(weights), "--method-arg",
                 "depth=18", "--results", str(tmp_path), *FAST]) == 2
    assert "depth=18 vs 10" in capsys.readouterr().err


def test_supervised_pretraining_on_a_source_task_transfers_to_the_target(tmp_path: Path) -> None:
    results = tmp_path / "results"
    few_crops = ["--splits", str(small_ncs_splits(tmp_path / "ncs-splits.csv"))]
    assert main(["run", "--method", "supervised", "--task", "ncs", "--method-arg", "source=lcs",
                 "--results", str(results), *few_crops, *FAST]) == 0
    record = record_of(results, "ncs-supervised-smoke-*")
    assert record["transfer"]["transferred"] == "encoder+decoder" and record["transfer"]["loaded_keys"] > 0
    assert record["identity"]["source"]["task"] == "lcs" and record["pretrain_data"]["kind"] == "phantom"
    checkpoint = record["pretraining"]["checkpoint_id"]
    assert (results / "checkpoints" / checkpoint / "checkpoint.pt").is_file()
    assert main(["run", "--method", "supervised", "--task", "ncc", "--method-arg", "source=lcs",
                 "--results", str(results), *FAST]) == 0
    again = record_of(results, "ncc-supervised-smoke-*")
    assert again["pretraining"]["checkpoint_id"] == checkpoint and again["pretraining"]["reused"]
    assert again["transfer"]["transferred"] == "encoder"


def _cases(groups: list[str]) -> list[Case]:
    return [Case(f"c{i}", torch.zeros(1).numpy(), 0, group) for i, group in enumerate(groups)]


def test_a_source_sharing_patients_with_the_test_split_is_refused() -> None:
    method = METHODS.create("supervised")
    target = TaskData(train=_cases(["p2"]), val=[], test=_cases(["p3"]))
    check_no_shared_patients(method, "lcs", _cases(["p1", "p2"]), "ncs", target)  # a training patient: allowed
    with pytest.raises(UserError, match="1 training patient.*are test patients of 'ncs'.*p2"):
        check_no_shared_patients(method, "lcs", _cases(["p1", "p2"]), "ncs",
                                 TaskData(train=[], val=[], test=_cases(["p2", "p4"])))


def test_the_target_task_as_its_own_source_must_share_no_patient_with_it() -> None:
    method = METHODS.create("supervised", source="ncc", source_phantom_seed=1)
    target = TaskData(train=_cases(["p1"]), val=_cases(["p2"]), test=_cases(["p3"]))
    check_no_shared_patients(method, "ncc", _cases(["q1", "q2"]), "ncc", target)
    for shared in ("p1", "p2", "p3"):
        with pytest.raises(UserError, match=f"are patients of 'ncc'.*{shared}.*label fraction"):
            check_no_shared_patients(method, "ncc", _cases(["q1", shared]), "ncc", target)


def test_the_target_task_on_its_own_data_is_refused_as_the_source(tmp_path: Path, capsys) -> None:
    assert main(["run", "--method", "supervised", "--task", "ncc", "--method-arg", "source=ncc",
                 "--results", str(tmp_path), *FAST]) == 2
    line = error_line(capsys.readouterr().err)
    assert "target task on its own data" in line and "source_phantom_seed" in line
    assert not (tmp_path / "runs").exists()


def test_the_target_folder_or_a_copy_of_it_is_refused_as_the_source(tmp_path: Path, capsys) -> None:
    """A same-task source must be other patients: the target's own folder is refused by path, a copy of
    it (another path, the same patients) by the patient check, both before anything trains."""
    from benchmark.tasks.ncs import write_ncs_phantom

    root = datasets.phantom_source(write_ncs_phantom).root
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    detour = f"{root.parent}/../{root.parent.name}/{root.name}"  # the target's folder, spelled another way
    for source_root, message in ((root, "is the target task on its own data"), (detour, "on its own data"),
                                 (copy, "are patients of 'ncs'")):
        assert main(["run", "--method", "supervised", "--task", "ncs", "--data-root", str(root), "--method-arg",
                     "source=ncs", "--method-arg", f"source_root={source_root}", "--results", str(tmp_path / "r"),
                     *FAST]) == 2
        assert message in error_line(capsys.readouterr().err)
    assert not list((tmp_path / "r").glob("checkpoints/*/checkpoint.pt"))


def test_a_supervised_checkpoint_is_the_same_whichever_run_trains_it(tmp_path: Path) -> None:
    """Its id names no target task: trained for an NCC run or for an NCS run, it must be the same file."""
    checkpoints = []
    for target in ("ncc", "ncs"):
        results = tmp_path / target
        assert main(["run", "--method", "supervised", "--method-arg", "source=lcs", "--task", target,
                     "--results", str(results), *FAST]) == 0
        checkpoints += list(results.glob("checkpoints/supervised-*/checkpoint.pt"))
    assert len(checkpoints) == 2 and checkpoints[0].parent.name == checkpoints[1].parent.name
    first, second = (torch.load(path, weights_only=True)["state_dict"] for path in checkpoints)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_a_source_folder_is_one_setting_however_its_path_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "site").mkdir()
    spellings = ("site", "./site", str(tmp_path / "site"), f"{tmp_path}/other/../site")
    assert {METHODS.create("supervised", source="ncc", source_root=path).settings()["source_root"]
            for path in spellings} == {str(tmp_path / "site")}


@pytest.mark.parametrize("settings, message", [
    (["source_phantom_seed=-1"], "must be >= 0"),
    (["source_phantom_seed=1", "source_root=/data/luna"], "cannot go with source_root"),
])
def test_bad_source_settings_are_refused_in_one_line(tmp_path: Path, capsys, settings, message) -> None:
    args = [item for setting in settings for item in ("--method-arg", setting)]
    assert main(["run", "--method", "supervised", "--task", "ncc", "--method-arg", "source=ncc", *args,
                 "--results", str(tmp_path), *FAST]) == 2
    assert message in error_line(capsys.readouterr().err)


def test_supervised_pretraining_on_another_site_of_the_target_task(tmp_path: Path) -> None:
    """A second built-in phantom (other synthetic patients) is a legitimate source for the target task
    itself: the calibration's positive control."""
    results = tmp_path / "results"
    assert main(["run", "--method", "supervised", "--task", "ncc", "--method-arg", "source=ncc",
                 "--method-arg", "source_phantom_seed=1", "--results", str(results), *FAST]) == 0
    record = record_of(results, "ncc-supervised-smoke-*")
    assert record["identity"]["source"]["task"] == "ncc" and record["transfer"]["transferred"] == "encoder"
    assert record["identity"]["source"]["data"] != record["identity"]["data"]
    assert record["pretrain_data"]["root"] != record["data"]["root"]


def test_a_sweep_over_backbones_and_protocols_reports_them_in_table_3(tmp_path: Path) -> None:
    weights = medicalnet_file(tmp_path / "resnet_10.pth")
    results, out = tmp_path / "results", tmp_path / "report"
    assert main(["sweep", "--methods", "scratch-he,medicalnet", "--backbones", "unet3d,resnet3d", "--tasks", "ncc",
                 "--protocols", "full,freeze:2", "--weights", f"medicalnet={weights}", "--results", str(results),
                 *FAST]) == 0
    assert len(list(results.glob("runs/*/result.json"))) == 6  # scratch-he on two backbones, medicalnet on one
    assert main(["report", "--results", str(results), "--out", str(out), "--no-progress"]) == 0
    table3 = (out / "table3.md").read_text()
    for row in ("scratch-he |", "scratch-he on resnet3d", "scratch-he (freeze:2)", "medicalnet (freeze:2)"):
        assert row in table3, row
    assert "| backbone | encoder parameters (M) |" in table3 and "resnet3d [depth=10" not in table3
