"""The harness: cross one method with one task, from run spec to written record.

resolve spec -> (reuse or) pretrain -> build target model + transfer -> fine-tune with
early stopping -> evaluate on the test split -> write the record atomically.
Nothing here knows a method or a task by name: both come from the registries.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import benchmark
from benchmark.api.backbone import ANY_BACKBONE, Backbone, PretrainedWeights, default_dims, for_volumes
from benchmark.api.method import Method
from benchmark.api.profiles import Profile, get_profile
from benchmark.api.registry import BACKBONES, METHODS, TASKS
from benchmark.api.task import Splits, Task, TaskData
from benchmark.data import files
from benchmark.data.datasets import DataSource, directory_source, phantom_source
from benchmark.data.pools import pool_layout
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
from benchmark.engine.supervised import (
    SHOWN_IDS,
    check_no_shared_patients,
    check_source_shares_no_test_scan,
    obtain_supervised_checkpoint,
    source_of,
)
from benchmark.errors import UserError
from benchmark.model.backbone import count_parameters
from benchmark.model.dims import ADAPTERS, DIMS
from benchmark.model.protocols import Protocol, apply_protocol, check_stages
from benchmark.model.transfer import shared_transfer, transfer_weights
from benchmark.provenance import code_fingerprint, git_state, source_fingerprint

log = logging.getLogger(__name__)


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
    backbone: str = ""  # the network (--backbone); empty: the method's default
    backbone_settings: tuple[tuple[str, Any], ...] = ()  # the backbone's settings replaced (--backbone-arg)
    dims: str = ""  # 2d, 2.5d or 3d (--dims): how the backbone sees the task; empty: the backbone's own

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
        object.__setattr__(self, "fraction", float(self.fraction))  # 1 and 1.0: one run, one id
        Protocol.parse(self.protocol)
        if self.dims not in ("", *DIMS):
            raise UserError(f"--dims {self.dims}: expected one of {', '.join(DIMS)}")


def run_identity(spec: RunSpec, method: Method, backbone: Backbone, task: Task, data: DataSource,
                 pool: DataSource | None, profile: Profile, weights: PretrainedWeights | None,
                 source: tuple[Task, DataSource] | None = None, dims: str = "3d") -> dict[str, Any]:
    return {"method": spec.method, "weights": weights.identity() if weights else None,
            "method_settings": method.settings(), "backbone": backbone.identity(), "dims": dims,
            "task": spec.task, "task_settings": task.settings(), "protocol": Protocol.parse(spec.protocol).name,
            "seed": spec.seed,
            "fraction": spec.fraction, "subset_seed": spec.label_subset_seed, "profile": profile.identity(),
            "data": data.fingerprint, "pretrain_data": pool.fingerprint if pool else None,
            "code": code_fingerprint(), "method_code": source_fingerprint(type(method)),
            "task_code": source_fingerprint(type(task)), "source": _source_identity(source)}


def _source_identity(source: tuple[Task, DataSource] | None) -> dict[str, Any] | None:
    """A supervised method's source task: its name, settings, data and code."""
    if source is None:
        return None
    task, data = source
    return {"task": task.name, "settings": task.settings(), "data": data.fingerprint,
            "code": source_fingerprint(type(task))}


def run_id(spec: RunSpec, identity: dict[str, Any], default_backbone: str, default_dims: str) -> str:
    """Readable fields (the backbone when it is not the method's default, the dimensionality when it is
    not the backbone's, the protocol when it is not ``full``) and the hash of the whole identity."""
    protocol, backbone, dims = identity["protocol"], identity["backbone"]["name"], identity["dims"]
    shown = "".join([f"-{backbone}" if backbone != default_backbone else "",
                     f"-{dims}" if dims != default_dims else ""])
    shown_protocol = "" if protocol == "full" else "-" + protocol.replace(":", "")
    return (f"{spec.task}-{spec.method}{shown}-{spec.profile}-s{spec.seed}-f{spec.fraction:g}"
            f"{shown_protocol}-{content_hash(identity)}")


def _split_sizes(cases: dict[str, list]) -> dict[str, int]:
    return {name: len(split) for name, split in cases.items()}


class RunInProgress(UserError):
    """Another process holds the run's lock: it is computing this very run now."""


@dataclass(frozen=True)
class Plan:
    """A run spec resolved against the registries, the profile and the data: what will run, under which id."""

    spec: RunSpec
    method: Method
    backbone: Backbone
    target: Backbone  # what the task builds its model from: the backbone, behind its adapter in 2d/2.5d
    width: int  # the model's width: the profile's, or a weights file's
    task: Task
    profile: Profile
    data: DataSource
    pool: DataSource | None
    weights: PretrainedWeights | None
    source: tuple[Task, DataSource] | None  # a supervised method's source task and its data
    warnings: list[str]  # e.g. released weights trained on the target task's data
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
    backbone, weights = resolve_backbone(spec, method)
    dims = spec.dims or default_dims(backbone)
    target = for_volumes(backbone, dims)
    protocol = Protocol.parse(spec.protocol)
    check_stages(protocol, backbone.stages, backbone.name)
    target.check_cube(task.cube_shape(profile.cube), f"task '{spec.task}' cube")
    source = source_of(method, task, data) if weights is None else None
    pretrains = method.transfers != "none" and weights is None and source is None
    pool = pretraining_pool(spec.pretrain_root, method.pool_layout) if pretrains else None
    if pool is not None:
        backbone.check_cube(profile.cube, "the pretraining cube")
    identity = run_identity(spec, method, backbone, task, data, pool, profile, weights, source, dims)
    checkpoint = checkpoint_id(method, pretrain_identity(method, pool, profile, spec.seed, backbone)) if pool else None
    preflight(task, data, pool, pool_layout(method.pool_layout).problems)
    if pool is not None and pool.kind == "directory":
        check_pool_holds_no_test_scans(task, data, pool, method.pool_layout)
    if weights is not None and weights.pool_scans is not None and data.kind == "directory":
        refuse_test_scans(task, data, weights.pool_scans, spec.weights)
    if source is not None:
        preflight(*source, None)
        check_source_shares_no_test_scan(method, *source, task, data)
    width = weights.width if weights else profile.width
    leaks = spec.task in method.pretrained_on and data.kind == "directory"  # the phantoms are nobody's data
    warnings = [f"leakage: method '{spec.method}' was pretrained on the data of task '{spec.task}' (its "
                "released weights saw these scans and their labels)"] if leaks else []
    if weights is not None and weights.pool_scans is None and data.kind == "directory" and not leaks:
        warnings.append(f"leakage not checked: {spec.weights} records no pretraining scans, so whether it saw "
                        f"test scans of task '{spec.task}' is unknown")
    for warning in warnings:
        log.warning(warning)
    return Plan(spec, method, backbone, target, width, task, profile, data, pool, weights, source, warnings,
                identity, run_id(spec, identity, method.default_backbone(), default_dims(backbone)), checkpoint)


def check_pool_holds_no_test_scans(task: Task, data: DataSource, pool: DataSource, layout: str) -> None:
    """A UserError when a scan of the pretraining folder is one a test case of ``task`` comes from: LUNA16's
    scans are LIDC-IDRI series, so NCS's test patients are spread over the subsets a pool uses, and a
    split file can move any scan into a test split."""
    refuse_test_scans(task, data, pool_layout(layout).scans(pool.root), pool.root)


def refuse_test_scans(task: Task, data: DataSource, scans: Iterable[str], where: Path) -> None:
    """A UserError naming ``where`` (a pretraining folder, or a checkpoint pretrained on ``scans``) when
    one of ``scans`` is a test scan of ``task``."""
    shared = sorted(set(scans) & task.split_scans(data.root, "test", data.splits))
    if shared:
        raise UserError(f"{where}: {len(shared)} of its pretraining scans are test scans of task '{task.name}' "
                        f"in {data.root} (e.g. {', '.join(shared[:SHOWN_IDS])}): pretraining on them would leak "
                        "the test set; pretrain on a folder without them, or choose other test patients (--splits)")


def resolve_backbone(spec: RunSpec, method: Method) -> tuple[Backbone, PretrainedWeights | None]:
    """The run's backbone with its settings (given, fixed by the method, implied by the weights file;
    any two that disagree are a UserError) and the weights file read into its keys."""
    if method.weights_required and not spec.weights:
        raise UserError(f"method '{spec.method}' benchmarks released weights: pass --weights FILE "
                        f"({method.weights_required})")
    backbone = method_backbone(method, spec.backbone, dict(spec.backbone_settings))
    if not spec.weights:
        return backbone, None
    if method.transfers == "none":
        raise UserError(f"{spec.weights}: method '{spec.method}' initialises at random; --weights needs a method "
                        "that transfers weights")
    weights = backbone.read_weights(spec.weights)
    if weights.method is not None and weights.method != spec.method:
        raise UserError(f"{spec.weights}: a checkpoint of method '{weights.method}', not '{spec.method}' "
                        f"(pass --method {weights.method})")
    settings = _agreeing_settings(backbone.settings(), weights.settings, f"the settings given and {spec.weights}",
                                  only=set(dict(spec.backbone_settings)) | set(method.backbone_settings()))
    return BACKBONES.create(backbone.name, **settings), weights


def method_backbone(method: Method, name: str | None, given: dict[str, Any]) -> Backbone:
    """The backbone ``name`` (default: the method's own) with the settings given (``--backbone-arg``)
    and those the method fixes (e.g. a ResNet's depth); a UserError if the method cannot pretrain or
    initialise it, or where the two disagree."""
    name = name or method.default_backbone()
    if not method.supports_backbone(name):
        dims = "any" if method.spatial_dims is None else f"any {method.spatial_dims}D"
        supported = ", ".join(f"{dims} backbone" if b == ANY_BACKBONE else b for b in method.backbones)
        raise UserError(f"method '{method.name}' cannot pretrain or initialise backbone '{name}' "
                        f"(it supports: {supported})")
    settings = _agreeing_settings(given, method.backbone_settings(), f"--backbone-arg and method '{method.name}'")
    return BACKBONES.create(name, **settings)


def _agreeing_settings(first: dict[str, Any], second: dict[str, Any], what: str,
                       only: set[str] | None = None) -> dict[str, Any]:
    """``first`` updated with ``second``; a UserError where both set a key (all of ``first``'s, or those
    in ``only``) to different values."""
    checked = set(first) if only is None else only
    clashes = [f"{key}={first[key]} vs {value}" for key, value in second.items()
               if key in checked and key in first and str(first[key]) != str(value)]
    if clashes:
        raise UserError(f"backbone settings disagree between {what}: {'; '.join(clashes)}")
    return {**first, **second}


def ensure_checkpoint(plan: Plan, results: Path, device: torch.device,
                      progress: bool = True) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The pretrained checkpoint the run needs (trained now if not cached), or None if it needs none."""
    if plan.pool is None:
        return None
    return obtain_checkpoint(plan.method, plan.pool, plan.profile, plan.spec.seed, results, device, progress,
                             plan.backbone)


def execute(spec: RunSpec, results: Path, device_name: str = "auto", force: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Run one spec (or return its finished record) and return the record.

    Raises ``RunInProgress`` when another process is computing the same run.
    """
    plan = plan_run(spec)
    finished = None if force else store.finished_result(results, plan.run_id)
    if finished is not None:
        store.clear_finished_run(results, plan.run_id)
        return _reused(finished, device_name)
    lock = store.lock_path(results, plan.run_id)
    with store.exclusive(lock, wait=False) as obtained:
        if not obtained:
            raise RunInProgress(f"run {plan.run_id} is being computed by another process right now (lock {lock})")
        finished = None if force else store.finished_result(results, plan.run_id)
        if finished is not None:  # finished by another process since the first look
            return _reused(finished, device_name)
        return _compute(plan, results, resolve_device(device_name), progress, force)


def _reused(record: dict[str, Any], device_name: str) -> dict[str, Any]:
    """A finished record, marked reused. The run id is the spec, not the machine: a record made on another
    kind of device is reused and said so, its numbers agreeing with this device's only to the spread between
    devices."""
    made = str(record.get("device", "")).split(":")[0]
    wanted = resolve_device(device_name).type
    if made and made != wanted:
        log.warning("run %s: its record was computed on %s; reused here, where it would run on %s "
                    "('benchmark run --force' computes it again, --results elsewhere keeps both)",
                    record["run_id"], made, wanted)
    return {**record, "reused": True}


def _compute(plan: Plan, results: Path, device: torch.device, progress: bool, force: bool) -> dict[str, Any]:
    folder = store.run_dir(results, plan.run_id)
    if force:
        store.discard_finished_run(folder)
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
    backbone = plan.backbone
    model = task.build_model(plan.target, plan.width)
    method.init_weights(model)
    pretraining: dict[str, Any] | None = None
    transfer = {"transferred": "none", "fresh_modules": ["all"], "loaded_keys": 0, "inflated_first_conv": False}
    if plan.weights is not None:
        transfer = transfer_weights(model, plan.weights.state_dict,
                                    shared_transfer(method.transfers, plan.weights.transfers), str(spec.weights),
                                    backbone.first_conv, backbone.output_layer)
    elif plan.source is not None:
        checkpoint, pretraining = _supervised_checkpoint(plan, task_data, results, device, progress)
        transfer = transfer_weights(model, checkpoint["state_dict"], checkpoint["transfers"],
                                    f"checkpoint {pretraining['checkpoint_id']}", backbone.first_conv,
                                    backbone.output_layer)
    elif plan.pool is not None:
        checkpoint, pretraining = ensure_checkpoint(plan, results, device, progress)
        transfer = transfer_weights(model, checkpoint["state_dict"], checkpoint["transfers"],
                                    f"checkpoint {pretraining['checkpoint_id']}", backbone.first_conv,
                                    backbone.output_layer)
    protocol = apply_protocol(model, Protocol.parse(spec.protocol), backbone.stages, backbone.output_layer,
                              backbone.stem)
    warnings = plan.warnings + _fixed_random_parts(transfer, protocol)
    for warning in warnings[len(plan.warnings):]:
        log.warning(warning)
    finetune_start = time.perf_counter()
    model, history, fit = finetune(model, task, train, task_data.val, cube, profile, spec.seed, device, progress,
                                   latest=folder / store.LATEST_FILE)
    scores, cases = evaluate(model, task, task_data.test, cube, profile, device)
    finetune_seconds = time.perf_counter() - finetune_start + fit["earlier_seconds"]  # a resumed run's, all of it
    subset_text, subset_hash = subset_listing(train)

    record = {
        "run_id": plan.run_id, "method": spec.method, "method_settings": method.settings(), "task": spec.task,
        "task_settings": task.settings(), "seed": spec.seed,
        "fraction": spec.fraction, "profile": spec.profile, "data": plan.data.describe(),
        "pretrain_data": plan.pool.describe() if plan.pool else plan.source[1].describe() if plan.source else None,
        "weights": {"path": str(spec.weights), **plan.weights.identity()} if plan.weights else None,
        "dims": {"name": plan.identity["dims"], "adapter": ADAPTERS.get((task.kind, plan.identity["dims"]))},
        "backbone": {"name": backbone.name, "settings": backbone.settings(), "width": plan.width,
                     "parameters": protocol["parameters"], "encoder_parameters": count_parameters(model.encoder),
                     "published": backbone.published},
        "metrics": scores, "primary_metric": task.primary_metric,
        "wall_seconds": time.perf_counter() - start + fit["earlier_seconds"],
        "peak_memory_mb": peak_host_memory_mb(), "peak_device_memory_mb": peak_device_memory_mb(device),
        "device": str(device), "compute": _compute_accounting(device, pretraining, fit, finetune_seconds),
        "transfer": transfer, "protocol": protocol, "pretraining": pretraining, "warnings": warnings,
        "finetune": fit, "cases": {**_split_sizes({"val": task_data.val, "test": task_data.test}),
                                   "train": len(train), "train_available": len(task_data.train)},
        "subset": {"seed": spec.label_subset_seed, "hash": subset_hash, "groups": subset_text.count("\n")},
        "cube": list(cube), "identity": plan.identity, "versions": _versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    files.write_atomic(folder / "subset.txt", lambda tmp: tmp.write_text(subset_text, encoding="utf-8"))
    files.write_csv(folder / "cases.csv", cases)
    files.write_csv(folder / "history.csv", history)
    files.write_json(folder / "result.json", record)
    return {**record, "reused": False}


def _fixed_random_parts(transfer: dict[str, Any], protocol: dict[str, Any]) -> list[str]:
    """A warning when the protocol fixes a part that received no pretrained weights (the decoder of a
    segmentation target under ``linear`` after an encoder-only transfer; anything after a random
    initialisation): what is trained then reads random features, a floor rather than a transfer."""
    transferred = transfer["transferred"].split("+")
    random = [part for part in protocol["fixed"] if part.split(".")[0] not in transferred]
    if not random:
        return []
    return [f"protocol {protocol['name']}: {', '.join(random)} fixed at random initialisation (nothing pretrained "
            f"was transferred there: {transfer['transferred']})"]


def _supervised_checkpoint(plan: Plan, target: TaskData, results: Path, device: torch.device,
                           progress: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """A supervised method's checkpoint, after checking that its source shares no patient it must not with
    the target (``check_no_shared_patients``)."""
    task, data = plan.source
    cases = task.load(data.root, task.cube_shape(plan.profile.cube), data.splits)
    check_no_shared_patients(plan.method, task.name, [*cases.train, *cases.val], plan.task.name, target)
    return obtain_supervised_checkpoint(plan.method, plan.target, task, data, cases, plan.profile, plan.spec.seed,
                                        results, device, progress)


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
