"""End to end through the CLI: every task with Genesis and scratch on the smoke profile."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import small_ncs_splits, suite_checkpoint

from benchmark.api.classification import ClassificationTask
from benchmark.api.profiles import PROFILES
from benchmark.api.registry import METHODS, TASKS
from benchmark.api.segmentation import SegmentationTask
from benchmark.api.task import Case
from benchmark.cli import main
from benchmark.engine.finetune import evaluate
from benchmark.engine.harness import RunSpec, plan_run
from benchmark.errors import UserError
from benchmark.model.backbone import UNet3D

RECORD_KEYS = {"run_id", "method", "task", "seed", "fraction", "profile", "data", "metrics", "wall_seconds",
               "peak_memory_mb", "transfer", "pretraining", "finetune", "cases", "subset", "identity", "device",
               "compute"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def few_crops(tmp_path_factory):
    """Per task, the options that keep a few cases per split where the phantom holds many (NCS's
    crops): these tests check the plumbing, not a score."""
    return {"ncs": ["--splits", str(small_ncs_splits(tmp_path_factory.mktemp("splits") / "ncs.csv"))]}


def run(results, method, task, *extra):
    argv = ["run", "--method", method, "--task", task, "--profile", "smoke", "--results", str(results),
            "--no-progress", *extra]
    assert main(argv) == 0
    (record_path,) = [p for p in (results / "runs").glob(f"{task}-{method}-smoke-*/result.json")
                      if json.loads(p.read_text())["fraction"] == float(dict(zip(extra[::2], extra[1::2]))
                                                                           .get("--fraction", 1))]
    return record_path


@pytest.mark.parametrize("method", ["genesis", "scratch-he"])
@pytest.mark.parametrize("task_name", TASKS.names())
def test_run_writes_a_complete_record(results, method, task_name, few_crops, capsys):
    task = TASKS.create(task_name)
    record_path = run(results, method, task_name, *few_crops.get(task_name, []))
    record = json.loads(record_path.read_text())
    assert RECORD_KEYS <= set(record)
    assert (record["method"], record["task"], record["seed"], record["fraction"], record["profile"]) == \
        (method, task_name, 0, 1.0, "smoke")
    assert set(record["metrics"]) == set(task.metrics)
    assert all(0 <= v <= 1 for v in record["metrics"].values() if not math.isnan(v))
    cases = pd.read_csv(record_path.parent / "cases.csv")
    assert len(cases) == record["cases"]["test"] > 0
    history = pd.read_csv(record_path.parent / "history.csv")
    assert {"epoch", "train_loss", "val_loss", f"val_{task.primary_metric}"} <= set(history.columns)
    assert len(history) == record["finetune"]["epochs"]
    if method == "scratch-he":
        assert record["transfer"]["transferred"] == "none" and record["pretraining"] is None
    else:
        expected = "encoder+decoder" if task.kind == "segmentation" else "encoder"
        assert record["transfer"]["transferred"] == expected
        assert record["transfer"]["inflated_first_conv"] == (task.in_channels > 1)
        assert record["pretraining"]["cubes_seen"] > 0
    out = capsys.readouterr().out
    assert record["run_id"] in out and "test" in out


def test_a_finished_run_is_reported_not_recomputed_and_force_reruns(results, capsys):
    record_path = run(results, "scratch-he", "ncc")
    before = record_path.stat().st_mtime_ns
    run(results, "scratch-he", "ncc")
    assert "already finished" in capsys.readouterr().out
    assert record_path.stat().st_mtime_ns == before
    run(results, "scratch-he", "ncc", "--force")
    assert record_path.stat().st_mtime_ns != before


@pytest.mark.parametrize("peak, shown", [(1234.4, " (device 1234 MB)   cuda"), (None, " MB   cuda"),
                                         ("much", " MB   cuda")])
def test_the_summary_shows_the_device_peak_memory_where_recorded(results, peak, shown):
    from benchmark.cli.run import format_summary

    record = json.loads(run(results, "scratch-he", "ncc").read_text())
    record.update(peak_device_memory_mb=peak, device="cuda")
    (fit,) = [line for line in format_summary(record, results).splitlines() if line.startswith("fit")]
    assert fit.endswith(shown)


def test_the_summary_shows_a_record_s_texts_escaped(results):
    """A reused record's texts are the file's: an escape sequence or a line break is shown, never sent."""
    from benchmark.cli.run import format_summary

    record = json.loads(run(results, "scratch-he", "ncc").read_text())
    record.update(warnings=["\x1b[2J", "line1\nerror: forged line"], data={**record["data"], "root": "/d\x1b[31m"},
                  metrics={"auc\r": 0.5})
    lines = format_summary(record, results).split("\n")
    assert all(line.isprintable() for line in lines)
    assert lines[-2:] == ["warning  \\x1b[2J", "warning  line1\\nerror: forged line"]
    assert "data     phantom /d\\x1b[31m" in lines and "test     auc\\r 0.5000" in lines


def test_the_pretrained_checkpoint_is_reused_across_tasks(results):
    checkpoints = list((results / "checkpoints").glob("genesis-*/checkpoint.pt"))
    assert len(checkpoints) == 1
    records = [json.loads(p.read_text()) for p in (results / "runs").glob("*-genesis-smoke-*/result.json")]
    assert sum(not r["pretraining"]["reused"] for r in records) <= 1
    assert len({r["pretraining"]["checkpoint_id"] for r in records}) == 1


def test_same_spec_and_seed_give_the_same_numbers(tmp_path, few_crops):
    first = json.loads(run(tmp_path / "a", "genesis", "ncs", *few_crops["ncs"]).read_text())
    second = json.loads(run(tmp_path / "b", "genesis", "ncs", *few_crops["ncs"]).read_text())
    assert first["run_id"] == second["run_id"]
    assert first["metrics"] == second["metrics"]


def test_a_label_fraction_trains_on_fewer_patients_and_changes_the_run_id(results):
    full = json.loads(run(results, "scratch-he", "lcs").read_text())
    part = json.loads(run(results, "scratch-he", "lcs", "--fraction", "0.5").read_text())
    assert part["cases"]["train"] < full["cases"]["train"]
    assert part["run_id"] != full["run_id"] and part["subset"]["hash"] != full["subset"]["hash"]


def test_bad_fraction_is_a_one_line_error(results, capsys):
    assert main(["run", "--method", "scratch-he", "--task", "ncc", "--profile", "smoke", "--fraction", "1.5",
                 "--results", str(results), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "error: --fraction 1.5: must be in (0, 1]"


@pytest.mark.parametrize("task_name", ["ncc", "ncs"])
@pytest.mark.parametrize("method", [m for m in METHODS.names() if not METHODS.get(m).weights_required])
def test_every_method_runs_through_the_harness(results, method, task_name, few_crops):
    record = json.loads(run(results, method, task_name, *few_crops.get(task_name, [])).read_text())
    method_cls = METHODS.get(method)
    assert record["method"] == method
    assert all(not math.isnan(v) for v in record["metrics"].values())
    if method_cls.transfers == "none":
        assert record["transfer"]["transferred"] == "none"
    else:
        assert record["transfer"]["transferred"].startswith("encoder")
        assert record["transfer"]["loaded_keys"] > 0


def genesis_checkpoint(results):
    """Genesis's own checkpoint (the shared results also hold genesis-2d's, named genesis-2d-<hash>)."""
    run(results, "genesis", "ncc")
    return next(path for path in (results / "checkpoints").glob("genesis-*/checkpoint.pt")
                if re.fullmatch(r"genesis-[0-9a-f]+", path.parent.name))


def test_weights_file_is_benchmarked_without_pretraining(results, tmp_path):
    checkpoint = genesis_checkpoint(results)
    assert main(["run", "--method", "genesis", "--task", "lcs", "--profile", "smoke", "--weights", str(checkpoint),
                 "--results", str(tmp_path), "--no-progress"]) == 0
    (path,) = (tmp_path / "runs").glob("lcs-genesis-smoke-*/result.json")
    record = json.loads(path.read_text())
    assert record["weights"]["format"] == "benchmark-checkpoint" and record["pretraining"] is None
    assert record["transfer"]["transferred"] == "encoder+decoder" and record["transfer"]["loaded_keys"] > 0
    assert not (tmp_path / "checkpoints").exists()


def test_the_model_takes_the_width_of_a_weights_file(results, tmp_path):
    checkpoint = genesis_checkpoint(results)  # the smoke profile's width, 4; the quick profile's is 8
    assert main(["run", "--method", "genesis", "--task", "ncc", "--profile", "quick", "--weights", str(checkpoint),
                 "--results", str(tmp_path), "--no-progress", "--profile-arg", "classification.epochs=1",
                 "--profile-arg", "classification.steps_per_epoch=1"]) == 0
    (path,) = tmp_path.glob("runs/ncc-genesis-quick-*/result.json")
    record = json.loads(path.read_text())
    assert record["backbone"]["width"] == 4 and record["transfer"]["loaded_keys"] > 0


def test_a_scratch_method_refuses_a_weights_file(tmp_path):
    with pytest.raises(UserError, match=r"method 'scratch-he' initialises at random; --weights needs a method"):
        plan_run(RunSpec("scratch-he", "ncc", profile="smoke", weights=suite_checkpoint(tmp_path / "c.pt")))


def test_a_checkpoint_of_another_method_is_refused_naming_both(tmp_path):
    path = suite_checkpoint(tmp_path / "c.pt", method="genesis")
    with pytest.raises(UserError, match=r"c\.pt: a checkpoint of method 'genesis', not 'denoising'"):
        plan_run(RunSpec("denoising", "ncc", profile="smoke", weights=path))
    assert plan_run(RunSpec("genesis", "ncc", profile="smoke", weights=path)).weights.method == "genesis"
    for entry, value in (("method", 3), ("pool_scans", "1.3.6.1.7")):
        malformed = suite_checkpoint(tmp_path / f"{entry}.pt", **{entry: value})
        with pytest.raises(UserError, match=rf"{entry}\.pt: the checkpoint's '{entry}' is"):
            plan_run(RunSpec("genesis", "ncc", profile="smoke", weights=malformed))


def test_an_encoder_method_takes_only_the_encoder_of_a_unet_file(tmp_path):
    """A file with no method recorded, holding a decoder: jigsaw transfers the encoder, as of its own pretraining."""
    path = tmp_path / "unet.pt"
    torch.save(UNet3D(1, 1, 2).state_dict(), path)
    assert main(["run", "--method", "jigsaw", "--task", "lcs", "--profile", "smoke", "--weights", str(path),
                 "--results", str(tmp_path), "--no-progress"]) == 0
    (record,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/lcs-jigsaw-smoke-*/result.json")]
    assert record["transfer"]["transferred"] == "encoder" and "decoder" in record["transfer"]["fresh_modules"]


def nan_loss(self, *args):
    return torch.tensor(float("nan"), requires_grad=True)


@pytest.mark.parametrize("method, task_name, patched, message", [
    ("scratch-he", "ncc", (ClassificationTask, "loss"),
     "error: fine-tuning ncc stopped at epoch 0: the training loss (nan) is not finite"),
    ("scratch-he", "lcs", (SegmentationTask, "loss"),
     "error: fine-tuning lcs stopped at epoch 0: the training loss (nan) is not finite"),
    ("genesis", "ncc", (METHODS.get("genesis"), "loss"),
     "error: pretraining genesis stopped at epoch 0: the training loss (nan) is not finite"),
])
def test_a_loss_gone_nan_stops_the_run_in_one_line_without_a_record(tmp_path, capsys, monkeypatch, method,
                                                                      task_name, patched, message):
    monkeypatch.setattr(*patched, nan_loss)
    argv = ["run", "--method", method, "--task", task_name, "--profile", "smoke", "--results", str(tmp_path),
            "--no-progress"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == message
    assert not list(tmp_path.glob("runs/*/result.json")) and not list(tmp_path.glob("checkpoints/*/checkpoint.pt"))


class NaNModel(torch.nn.Module):
    def forward(self, x):
        return torch.full((len(x), 1), float("nan"))


def test_a_non_finite_test_prediction_is_a_one_line_error():
    cases = [Case(f"c{i}", np.full((1, 16, 32, 32), 0.5, np.float32), i % 2, f"g{i}") for i in range(4)]
    with pytest.raises(UserError, match=r"^fine-tuning ncc: the test prediction of case c0 is not finite$"):
        evaluate(NaNModel(), TASKS.create("ncc"), cases, (16, 32, 32), PROFILES["smoke"], torch.device("cpu"))
