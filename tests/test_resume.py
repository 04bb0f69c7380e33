"""Resume: a training killed after any epoch and started again ends exactly as an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import damage_a_tensor

from benchmark.api.profiles import get_profile, parse_overrides
from benchmark.api.registry import METHODS
from benchmark.engine import store, training
from benchmark.engine.harness import RunSpec, execute
from benchmark.engine.pretrain import pretrain


class Killed(BaseException):
    """What a SIGKILL amounts to for the loop: it stops between two instructions."""


def kill_after(monkeypatch, phase: str, epoch: int) -> None:
    """Make the loop of ``phase`` die right after saving the latest state of ``epoch`` epochs."""
    save = training.save_latest

    def save_then_die(latest, name, model, optimizer, scheduler, state):
        save(latest, name, model, optimizer, scheduler, state)
        if name.startswith(phase) and state.epoch == epoch:
            raise Killed

    monkeypatch.setattr(training, "save_latest", save_then_die)


def _pools() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.random((8, 1, 16, 32, 32), dtype=np.float32), rng.random((4, 1, 16, 32, 32), dtype=np.float32))


def _pretrain(latest):
    profile = get_profile("smoke", pretrain_epochs=4, pretrain_patience=4)
    train_pool, val_pool = _pools()
    return pretrain(METHODS.create("genesis"), train_pool, val_pool, profile, 0, torch.device("cpu"),
                    progress=False, latest=latest)


def _pretrain_killed_after_epoch_2(latest, monkeypatch) -> None:
    with monkeypatch.context() as patch:
        kill_after(patch, "pretraining", 2)
        with pytest.raises(Killed):
            _pretrain(latest)


def test_pretraining_killed_after_an_epoch_resumes_to_the_same_weights(tmp_path, monkeypatch):
    reference, reference_history = _pretrain(None)
    latest = tmp_path / "latest.pt"
    _pretrain_killed_after_epoch_2(latest, monkeypatch)
    assert latest.is_file()
    resumed, history = _pretrain(latest)
    assert resumed["resumed_from_epoch"] == 2 and reference["resumed_from_epoch"] is None
    assert resumed["earlier_seconds"] > 0 and reference["earlier_seconds"] == 0  # the killed epochs' time counts
    assert resumed["epochs"] == reference["epochs"] and resumed["best_val_loss"] == reference["best_val_loss"]
    for key, tensor in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], tensor), key
    assert history.equals(reference_history)


def edited(change):
    """A damage that rewrites one entry of the saved snapshot, the file staying a valid torch archive."""
    def damage(latest) -> None:
        snapshot = torch.load(latest, weights_only=True)
        change(snapshot)
        torch.save(snapshot, latest)
    return damage


def _misshape_the_last_kernel(snapshot) -> None:
    """A strict load copies every other key, those that fit, before it raises on this one."""
    key = [k for k, v in snapshot["model"].items() if v.ndim == 5][-1]
    snapshot["model"][key] = torch.zeros(1)


@pytest.mark.parametrize(("damage", "logged"), [
    (lambda latest: latest.write_bytes(b"not a torch file"), "cannot resume"),
    (damage_a_tensor, "fails its CRC-32 check"),  # torch.load would load the flipped byte silently
    (edited(lambda snapshot: snapshot.update(optimizer={"state": {}, "param_groups": []})), "cannot resume"),
    (edited(_misshape_the_last_kernel), "cannot resume"),
    (edited(lambda snapshot: snapshot.update(torch_rng=torch.zeros(3, dtype=torch.uint8))), "cannot resume"),
], ids=["not a torch file", "a damaged tensor", "a foreign optimiser", "a mis-shaped weight", "a foreign rng"])
def test_a_damaged_latest_state_is_ignored_with_a_warning(tmp_path, monkeypatch, caplog, damage, logged):
    reference, _ = _pretrain(None)
    latest = tmp_path / "latest.pt"
    _pretrain_killed_after_epoch_2(latest, monkeypatch)
    damage(latest)
    resumed, _ = _pretrain(latest)
    assert resumed["resumed_from_epoch"] is None and logged in caplog.text
    for key, tensor in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], tensor), key


def test_a_run_killed_in_fine_tuning_resumes_to_the_same_record(tmp_path, monkeypatch, capsys):
    schedule = parse_overrides("smoke", {"segmentation.epochs": "3", "segmentation.patience": "3",
                                         "segmentation.lr_decay": "cosine"})  # the scheduler's state resumes too
    spec = RunSpec(method="scratch-he", task="ncs", profile="smoke", switches=tuple(schedule.items()))
    reference = execute(spec, tmp_path / "reference", progress=False)
    results = tmp_path / "killed"
    with monkeypatch.context() as patch:
        kill_after(patch, "fine-tuning", 1)
        with pytest.raises(Killed):
            execute(spec, results, progress=False)
    folder = store.run_dir(results, reference["run_id"])
    assert (folder / store.LATEST_FILE).is_file() and not (folder / store.RESULT_FILE).exists()
    resumed = execute(spec, results, progress=False)
    assert resumed["finetune"]["resumed_from_epoch"] == 1 and reference["finetune"]["resumed_from_epoch"] is None
    earlier = resumed["finetune"]["earlier_seconds"]  # the killed process's epoch is in the time reported
    assert earlier > 0 and resumed["compute"]["finetune_seconds"] > earlier and resumed["wall_seconds"] > earlier
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["finetune"]["best_epoch"] == reference["finetune"]["best_epoch"]
    history = (folder / "history.csv").read_text()
    assert history == (store.run_dir(tmp_path / "reference", reference["run_id"]) / "history.csv").read_text()
    assert not (folder / store.LATEST_FILE).exists()
    log = (folder / store.LOG_FILE).read_text()
    assert "resuming from epoch 1" in log and "fine-tuning ncs epoch 2" in log


def test_force_discards_the_old_record_and_training_state_before_computing(tmp_path, monkeypatch):
    """--force killed part-way leaves no old record beside new files, and never resumes the old training."""
    schedule = parse_overrides("smoke", {"segmentation.epochs": "2", "segmentation.patience": "2"})
    spec = RunSpec(method="scratch-he", task="ncs", profile="smoke", switches=tuple(schedule.items()))
    first = execute(spec, tmp_path, progress=False)
    folder = store.run_dir(tmp_path, first["run_id"])
    (folder / store.LATEST_FILE).write_bytes(b"the final state a kill left behind")
    with monkeypatch.context() as patch:
        kill_after(patch, "fine-tuning", 1)
        with pytest.raises(Killed):
            execute(spec, tmp_path, force=True, progress=False)
    assert not (folder / store.RESULT_FILE).exists()  # nothing to skip to: the next run computes it
    assert execute(spec, tmp_path, progress=False)["finetune"]["resumed_from_epoch"] == 1
    forced = execute(spec, tmp_path, force=True, progress=False)
    assert forced["finetune"]["resumed_from_epoch"] is None and forced["metrics"] == first["metrics"]
