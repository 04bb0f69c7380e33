"""The harness: cross one method with one task, from run spec to written record.

resolve spec -> (reuse or) pretrain -> build target model + transfer -> fine-tune with
early stopping -> evaluate on the test split -> write the record atomically.
Nothing here knows a method or a task by name: both come from the registries.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import benchmark
from benchmark.api.method import Method
from benchmark.api.profiles import Profile, get_profile
from benchmark.api.registry import METHODS, TASKS
from benchmark.api.task import Splits, Task
from benchmark.data import files
from benchmark.data.datasets import DataSource, directory_source, phantom_source
from benchmark.data.subsets import label_subset, subset_listing
from benchmark.data.verify import preflight
from benchmark.engine import distributed, store
from benchmark.engine.checkpoints import (
    checkpoint_id,
    content_hash,
    obtain_checkpoint,
    pretrain_identity,
    pretraining_pool,
)
from benchmark.engine.finetune import evaluate, finetune
from benchmark.engine.runtime import (
    check_seed,
    device_name,
    peak_device_memory_mb,
    peak_host_memory_mb,
    reset_peak_memory,
    resolve_device,
    seed_everything,
)
from benchmark.errors import UserError
from benchmark.model.protocols import Protocol, apply_protocol
from benchmark.model.transfer import transfer_weights
from benchmark.model.weights import load_pretrained_weights
from benchmark.provenance import code_fingerprint, git_state, source_fingerprint


@dataclass(frozen=True)
class RunSpec:
    """Everything a user chooses about one run."""

    method: str
    task: str
    seed: int = 0
    fraction: float = 1.0
    profile: str = "quick"
    data_root: Path | None = None
    pretrain_root: Path | None = None
    weights: Path | None = None
    splits: Path | None = None  # a split file replacing the task's shipped split
    switches: tuple[tuple[str, Any], ...] = ()  # profile fields replaced (the speed switches, --profile-arg)
    method_settings: tuple[tuple[str, Any], ...] = ()  # the method's settings replaced (--method-arg; text is parsed)
    task_settings: tuple[tuple[str, Any], ...] = ()  # the task's settings replaced (--task-arg; text is parsed)
    subset_seed: int | None = None  # seed of the label subset (--subset-seed); None: the run's seed
    protocol: str = "full"  # which layers fine-tuning trains (--protocol; benchmark.model.protocols)

    @property
    def label_subset_seed(self) -> int:
        """The seed the label subset is drawn with: ``subset_seed`` if given, else the run's seed."""
        return self.seed if self.subset_seed is None else self.subset_seed

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if self.subset_seed is not None:
            check_seed(self.subset_seed, "--subset-seed")
        if not 0 < self.fraction <= 1:
            raise UserError(f"--fraction {self.fraction:g}: must be in (0, 1]")
        Protocol.parse(self.protocol)


def run_identity(spec: RunSpec, method: Method, task: Task, data: DataSource, pool: DataSource | None,
                 profile: Profile, weights: dict[str, Any] | None) -> dict[str, Any]:
    return {"method": spec.method, "weights": _weights_identity(weights), "method_settings": method.settings(),
            "task": spec.task, "task_settings": task.settings(), "protocol": Protocol.parse(spec.protocol).name,
            "seed": spec.seed,
            "fraction": spec.fraction, "subset_seed": spec.label_subset_seed, "profile": profile.identity(),
            "data": data.fingerprint, "pretrain_data": pool.fingerprint if pool else None,
            "code": code_fingerprint(), "method_code": source_fingerprint(type(method)),
            "task_code": source_fingerprint(type(task))}


def _weights_identity(weights: dict[str, Any] | None) -> dict[str, Any] | None:
    if weights is None:
        return None
    return {k: weights[k] for k in ("fingerprint", "format", "transfers", "kernels_reordered")}


def run_id(spec: RunSpec, identity: dict[str, Any]) -> str:
    """Readable fields, the protocol when it is not ``full``, and the hash of the whole identity."""
    protocol = identity["protocol"]
    shown = "" if protocol == "full" else "-" + protocol.replace(":", "")
    return (f"{spec.task}-{spec.method}-{spec.profile}-s{spec.seed}-f{spec.fraction:g}{shown}-"
            f"{content_hash(identity)}")


def _split_sizes(cases: dict[str, list]) -> dict[str, int]:
    return {name: len(split) for name, split in cases.items()}


class RunInProgress(UserError):
    """Another process holds the run's lock: it is computing this very run now."""


@dataclass(frozen=True)
class Plan:
    """A run spec resolved against the registries, the profile and the data: what will run, under which id."""

    spec: RunSpec
    method: Method
    task: Task
    profile: Profile
    data: DataSource
    pool: DataSource | None
    weights: dict[str, Any] | None
    identity: dict[str, Any]
    run_id: str
    checkpoint_id: str | None  # the pretrained checkpoint the run needs, if any


def plan_run(spec: RunSpec) -> Plan:
    """Resolve ``spec`` (names, profile, data folders, weights file) without training anything.

    A user's data folders are checked here (``verify.preflight``), so that a broken download
    stops every run, and every sweep, before any training.
    """
    if distributed.world().size > 1:
        raise UserError("benchmark run is one process: under torchrun use 'benchmark pretrain', "
                        "then 'benchmark run --weights <its checkpoint>'")
    method: Method = METHODS.create(spec.method, **dict(spec.method_settings))
    task: Task = TASKS.create(spec.task, **dict(spec.task_settings))
    profile = get_profile(spec.profile, **dict(spec.switches))
    splits = Splits.read(spec.splits) if spec.splits else None
    data = directory_source(spec.data_root, splits) if spec.data_root else phantom_source(task.write_phantom,
                                                                                         splits=splits)
    weights = load_pretrained_weights(spec.weights) if spec.weights else None
    if weights is not None and weights["width"] != profile.width:
        raise UserError(f"{spec.weights}: weights of width {weights['width']} do not fit profile "
                        f"'{profile.name}' (width {profile.width}); the released Genesis weights need --profile paper")
    pool = pretraining_pool(spec.pretrain_root) if method.transfers != "none" and weights is None else None
    identity = run_identity(spec, method, task, data, pool, profile, weights)
    checkpoint = checkpoint_id(method, pretrain_identity(method, pool, profile, spec.seed)) if pool else None
    preflight(task, data, pool)
    return Plan(spec, method, task, profile, data, pool, weights, identity, run_id(spec, identity), checkpoint)


def ensure_checkpoint(plan: Plan, results: Path, device: torch.device,
                      progress: bool = True) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The pretrained checkpoint the run needs (trained now if not cached), or None if it needs none."""
    if plan.pool is None:
        return None
    return obtain_checkpoint(plan.method, plan.pool, plan.profile, plan.spec.seed, results, device, progress)


def execute(spec: RunSpec, results: Path, device_name: str = "auto", force: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Run one spec (or return its finished record) and return the record.

    Raises ``RunInProgress`` when another process is computing the same run.
    """
    plan = plan_run(spec)
    finished = None if force else store.finished_result(results, plan.run_id)
    if finished is not None:
        return {**finished, "reused": True}
    lock = store.lock_path(results, plan.run_id)
    with store.exclusive(lock, wait=False) as obtained:
        if not obtained:
            raise RunInProgress(f"run {plan.run_id} is being computed by another process right now (lock {lock})")
        finished = None if force else store.finished_result(results, plan.run_id)
        if finished is not None:  # finished by another process since the first look
            return {**finished, "reused": True}
        return _compute(plan, results, resolve_device(device_name), progress)


def _compute(plan: Plan, results: Path, device: torch.device, progress: bool) -> dict[str, Any]:
    folder = store.run_dir(results, plan.run_id)
    with store.training_log(folder / store.LOG_FILE):
        record = _train_and_evaluate(plan, results, device, progress, folder)
    (folder / store.LATEST_FILE).unlink(missing_ok=True)
    return record


def _train_and_evaluate(plan: Plan, results: Path, device: torch.device, progress: bool,
                        folder: Path) -> dict[str, Any]:
    spec, method, task, profile = plan.spec, plan.method, plan.task, plan.profile
    start = time.perf_counter()
    reset_peak_memory(device)
    seed_everything(spec.seed)
    cube = task.cube_shape(profile.cube)
    task_data = task.load(plan.data.root, cube, plan.data.splits)
    train = label_subset(task_data.train, spec.fraction, task.stratify_subsets, spec.label_subset_seed)
    model = task.build_model(profile.width)
    method.init_weights(model)
    pretraining: dict[str, Any] | None = None
    transfer = {"transferred": "none", "fresh_modules": ["all"], "loaded_keys": 0, "inflated_first_conv": False}
    if plan.weights is not None:
        transfer = transfer_weights(model, plan.weights["state_dict"], plan.weights["transfers"],
                                    source=str(spec.weights))
    elif plan.pool is not None:
        checkpoint, pretraining = ensure_checkpoint(plan, results, device, progress)
        transfer = transfer_weights(model, checkpoint["state_dict"], checkpoint["transfers"],
                                    source=f"checkpoint {pretraining['checkpoint_id']}")
    protocol = apply_protocol(model, Protocol.parse(spec.protocol))
    finetune_start = time.perf_counter()
    model, history, fit = finetune(model, task, train, task_data.val, cube, profile, spec.seed, device, progress,
                                   latest=folder / store.LATEST_FILE)
    scores, cases = evaluate(model, task, task_data.test, cube, profile, device)
    finetune_seconds = time.perf_counter() - finetune_start
    subset_text, subset_hash = subset_listing(train)

    record = {
        "run_id": plan.run_id, "method": spec.method, "method_settings": method.settings(), "task": spec.task,
        "task_settings": task.settings(), "seed": spec.seed,
        "fraction": spec.fraction, "profile": spec.profile, "data": plan.data.describe(),
        "pretrain_data": plan.pool.describe() if plan.pool else None,
        "weights": {"path": str(spec.weights), **_weights_identity(plan.weights)} if plan.weights else None,
        "metrics": scores, "primary_metric": task.primary_metric,
        "wall_seconds": time.perf_counter() - start,
        "peak_memory_mb": peak_host_memory_mb(), "peak_device_memory_mb": peak_device_memory_mb(device),
        "device": str(device), "compute": _compute_accounting(device, pretraining, fit, finetune_seconds),
        "transfer": transfer, "protocol": protocol, "pretraining": pretraining,
        "finetune": fit, "cases": {**_split_sizes({"val": task_data.val, "test": task_data.test}),
                                   "train": len(train), "train_available": len(task_data.train)},
        "subset": {"seed": spec.label_subset_seed, "hash": subset_hash, "groups": subset_text.count("\n")},
        "cube": list(cube), "identity": plan.identity, "versions": _versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    files.write_atomic(folder / "subset.txt", lambda tmp: tmp.write_text(subset_text))
    files.write_csv(folder / "cases.csv", cases)
    files.write_csv(folder / "history.csv", history)
    files.write_json(folder / "result.json", record)
    return {**record, "reused": False}


def _compute_accounting(device: torch.device, pretraining: dict[str, Any] | None, fit: dict[str, Any],
                        finetune_seconds: float) -> dict[str, Any]:
    """What the run cost, so that methods can also be compared at equal compute.

    Pretraining cost is the checkpoint's own (whether trained in this run or reused).
    """
    return {
        "device_name": device_name(device), "torch_threads": torch.get_num_threads(),
        "pretrain_cubes_seen": pretraining["cubes_seen"] if pretraining else 0,
        "pretrain_seconds": pretraining["wall_seconds"] if pretraining else 0.0,
        "pretrained_in_this_run": bool(pretraining) and not pretraining["reused"],
        "finetune_samples_seen": fit["samples_seen"], "finetune_seconds": finetune_seconds,
    }


def _versions() -> dict[str, str]:
    """The versions of the code (its fingerprint, and the git commit when run from a checkout)
    and of the libraries that compute the numbers."""
    libraries = {name: importlib.metadata.version(name) for name in ("scipy", "scikit-learn", "numba")}
    return {"benchmark": benchmark.__version__, "code": code_fingerprint(), "git": git_state(),
            "torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__, **libraries,
            "python": platform.python_version()}
