"""Supervised pretraining: a backbone trained on a labelled source task (``Method.source_task``),
cached as a checkpoint like a pretext task's.

The source task's training split trains the backbone's target for that task (its segmentation
target for a segmentation task, whose whole encoder-decoder is then transferred; its
classification target otherwise, whose encoder is), with early stopping on its validation split
and the profile's fine-tuning schedule for its kind; its test split is never read. The
checkpoint's identity covers the method and its settings, the backbone, the source task with its
settings, data and code, the profile, the seed and the code; it is stored and verified as the
pretext checkpoints are (``benchmark.engine.checkpoints``).

Leakage: ``source_of`` refuses the target task on the target's own data as the source, and
``check_no_shared_patients`` a source whose training or validation patients (``Case.group``) include
any of the target's test patients (any of its patients, when the source is the target task on other
data); ``source_of`` also refuses a source with more input channels than the target can take.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from benchmark.api.backbone import Backbone
from benchmark.api.method import Method
from benchmark.api.profiles import Profile
from benchmark.api.registry import TASKS
from benchmark.api.task import Case, Task, TaskData
from benchmark.data import files
from benchmark.data.datasets import PHANTOM_SEED, DataSource, directory_source, phantom_source
from benchmark.engine import store
from benchmark.engine.checkpoints import (
    META_FILE,
    SHA256_KEY,
    cached_checkpoint,
    checkpoint_id,
)
from benchmark.engine.finetune import finetune
from benchmark.engine.pretrain import CHECKPOINT_FORMAT, save_checkpoint
from benchmark.engine.runtime import seed_everything
from benchmark.errors import UserError
from benchmark.provenance import code_fingerprint, source_fingerprint

SHOWN_IDS = 3  # patients or scans named in an error about shared ones


def source_of(method: Method, target: Task, target_data: DataSource) -> tuple[Task, DataSource] | None:
    """The source task and its data for a supervised method (None for any other method). Refused: the
    target task on the target's own data, and a source whose input channels the target's cannot take
    (its first convolution is inflated only to a multiple of them)."""
    source = method.source_task()
    if source is None:
        return None
    task: Task = TASKS.create(source.task)
    if target.in_channels % task.in_channels:
        raise UserError(f"method '{method.name}': the source task '{task.name}' has {task.in_channels} input "
                        f"channels, which the {target.in_channels}-channel task '{target.name}' cannot take")
    if source.root is not None:
        data = directory_source(source.root)
    else:
        seed = PHANTOM_SEED if source.phantom_seed is None else source.phantom_seed
        data = phantom_source(task.write_phantom, seed)
    if task.name == target.name and Path(data.root).resolve() == Path(target_data.root).resolve():
        raise UserError(f"method '{method.name}': the source task '{task.name}' is the target task on its own data "
                        "(pretraining on it would use the target's own labels); give it other patients: "
                        "--method-arg source_root=DIR, or source_phantom_seed=N for another built-in phantom")
    return task, data


def check_no_shared_patients(method: Method, source: str, source_train: list[Case], target: str,
                             target_data: TaskData) -> None:
    """A UserError when a patient the source task trains on (its training or validation split, which picks
    the epoch kept) is a test patient of the target task, or any of its patients when the source is the
    target task itself (on other data: pretraining on the target's training patients would spend more
    labels than the run's fraction)."""
    same_task = source == target
    target_cases = [*target_data.train, *target_data.val, *target_data.test] if same_task else target_data.test
    shared = sorted({case.group for case in source_train} & {case.group for case in target_cases})
    if shared:
        role, harm = (("patients", "its label fraction would be a fiction") if same_task
                      else ("test patients", "pretraining on them would leak the test set"))
        raise UserError(f"method '{method.name}': {len(shared)} training patient(s) of the source task '{source}' "
                        f"are {role} of '{target}' (e.g. {', '.join(shared[:SHOWN_IDS])}): {harm}")


def check_source_shares_no_test_scan(method: Method, source: Task, source_data: DataSource, target: Task,
                                     target_data: DataSource) -> None:
    """A UserError when a scan the source task trains on is one a test case of the target comes from, across
    datasets (``Task.split_scans``): NCS's LIDC-IDRI patients are named by patient, NCC's LUNA16 scans by
    series, and many LIDC-IDRI training patients' scans are LUNA16 test scans."""
    trained = {uid for split in ("train", "val") for uid in source.split_scans(source_data.root, split,
                                                                               source_data.splits)}
    shared = sorted(trained & target.split_scans(target_data.root, "test", target_data.splits))
    if shared:
        raise UserError(f"method '{method.name}': {len(shared)} training scan(s) of the source task '{source.name}' "
                        f"are test scans of '{target.name}' (e.g. {', '.join(shared[:SHOWN_IDS])}): pretraining "
                        "on them would leak the test set; give the source other patients (--method-arg "
                        "source_root=DIR) or the target other test patients (--splits)")


def supervised_identity(method: Method, backbone: Backbone, task: Task, data: DataSource, profile: Profile,
                        seed: int) -> dict[str, Any]:
    return {"method": method.name, "settings": method.settings(), "backbone": backbone.identity(),
            "source": {"task": task.name, "settings": task.settings(), "data": data.fingerprint,
                       "code": source_fingerprint(type(task))},
            "profile": profile.identity(), "seed": seed, "code": code_fingerprint(),
            "method_code": source_fingerprint(type(method))}


def obtain_supervised_checkpoint(method: Method, backbone: Backbone, task: Task, data: DataSource, cases: TaskData,
                                 profile: Profile, seed: int, results: Path, device: torch.device,
                                 progress: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cached checkpoint of ``backbone`` trained on ``task``'s training split (``cases``, loaded at
    ``task.cube_shape(profile.cube)``), trained now if absent."""
    identity = supervised_identity(method, backbone, task, data, profile, seed)
    folder = store.checkpoint_dir(results, checkpoint_id(method, identity))
    with store.exclusive(store.lock_path(results, folder.name), wait=True):
        cached = cached_checkpoint(folder, identity)
        if cached is not None:
            checkpoint, meta = cached
            return checkpoint, {**meta, "reused": True}
        return _train(method, backbone, task, data, cases, profile, seed, device, progress, identity, folder)


def _train(method: Method, backbone: Backbone, task: Task, data: DataSource, cases: TaskData, profile: Profile,
           seed: int, device: torch.device, progress: bool, identity: dict[str, Any],
           folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    start = time.perf_counter()
    cube = task.cube_shape(profile.cube)
    backbone.check_cube(cube, f"source task '{task.name}' cube")
    seed_everything(seed)  # the checkpoint's weights owe nothing to the run that happens to train it
    model = task.build_model(backbone, profile.width)
    method.init_weights(model)
    model, history, fit = finetune(model, task, cases.train, cases.val, cube, profile, seed, device, progress,
                                   latest=folder / store.LATEST_FILE)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if method.transfers == "encoder+decoder" or k.startswith("encoder.")}
    checkpoint = {"format": CHECKPOINT_FORMAT, "method": method.name, "transfers": method.transfers,
                  "backbone": {"name": backbone.name, "settings": backbone.settings(),
                               "in_channels": int(state[backbone.first_conv].shape[1]), "width": profile.width},
                  "state_dict": state, "extras": {}, "cubes_seen": fit["samples_seen"], "epochs": fit["epochs"],
                  "best_val_loss": None, "resumed_from_epoch": fit["resumed_from_epoch"]}
    path = folder / store.CHECKPOINT_FILE
    save_checkpoint(checkpoint, path)
    meta = {"checkpoint_id": folder.name, "identity": identity, "pool": data.describe(),
            "source": {"task": task.name, "train_cases": len(cases.train), "val_cases": len(cases.val),
                       "best_epoch": fit["best_epoch"]},
            "epochs": fit["epochs"], "cubes_seen": fit["samples_seen"], "best_val_loss": None,
            "wall_seconds": time.perf_counter() - start + fit["earlier_seconds"], "device": str(device),
            "resumed_from_epoch": fit["resumed_from_epoch"], SHA256_KEY: files.sha256_file(path)}
    files.write_csv(folder / "history.csv", history)
    files.write_json(folder / META_FILE, meta)
    (folder / store.LATEST_FILE).unlink(missing_ok=True)
    return checkpoint, {**meta, "reused": False}
