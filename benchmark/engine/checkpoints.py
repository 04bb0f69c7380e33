"""The cache of pretrained checkpoints: their identity, and pretraining one when it is absent.

A checkpoint is identified by what determines its weights: the method and its settings, the
pretraining data, the pretraining fields of the profile, the seed, the plugin's source and
the core code pretraining runs (``provenance.pretraining_fingerprint``), but not fine-tuning
or evaluation code, so an edit there does not pretrain again.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmark.api.method import Method
from benchmark.api.profiles import Profile
from benchmark.data import files
from benchmark.data.datasets import DataSource, directory_source, phantom_source
from benchmark.data.phantoms.chest import write_chest_phantom
from benchmark.data.pool import PRETRAIN_TRAIN_SUBSETS, PRETRAIN_VAL_SUBSETS, load_pool
from benchmark.engine import distributed, store
from benchmark.engine.pretrain import load_checkpoint, pretrain, save_checkpoint
from benchmark.provenance import pretraining_fingerprint, source_fingerprint

PRETRAIN_PROFILE_FIELDS = ("cube", "width", "cubes_per_scan")


def content_hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def pretrain_identity(method: Method, pool: DataSource, profile: Profile, seed: int) -> dict[str, Any]:
    """What determines a pretrained checkpoint: method, pretraining data, profile, seed."""
    fields = {k: v for k, v in profile.as_dict().items() if k.startswith("pretrain_") or k in PRETRAIN_PROFILE_FIELDS}
    return {"method": method.name, "settings": method.settings(), "pool": pool.fingerprint,
            "profile": fields, "seed": seed, "code": pretraining_fingerprint(),
            "method_code": source_fingerprint(type(method)), **distributed.identity()}


def checkpoint_id(method: Method, identity: dict[str, Any]) -> str:
    return f"{method.name}-{content_hash(identity)}"


def pretraining_pool(root: Path | None) -> DataSource:
    """The pretraining data: a LUNA16-layout folder, or the built-in chest phantom."""
    return directory_source(root) if root else phantom_source(write_chest_phantom)


def obtain_checkpoint(method: Method, pool: DataSource, profile: Profile, seed: int, results: Path,
                      device: torch.device, progress: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cached checkpoint for (method, pool, profile, seed), pretraining it if absent.

    A process that finds another one pretraining the same checkpoint waits for it and reuses its result.
    """
    identity = pretrain_identity(method, pool, profile, seed)
    folder = store.checkpoint_dir(results, checkpoint_id(method, identity))
    if not distributed.is_main():  # data-parallel pretraining: rank 0 holds the lock and writes
        return _load_or_pretrain(method, pool, profile, seed, device, progress, identity, folder)
    with store.exclusive(store.lock_path(results, folder.name), wait=True):
        return _load_or_pretrain(method, pool, profile, seed, device, progress, identity, folder)


def _load_or_pretrain(method: Method, pool: DataSource, profile: Profile, seed: int,
                      device: torch.device, progress: bool, identity: dict[str, Any],
                      folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    path = folder / store.CHECKPOINT_FILE
    if store.checkpoint_ready(folder):
        return load_checkpoint(path), {**files.read_json(folder / "meta.json"), "reused": True}
    start = time.perf_counter()
    train = load_pool(pool.root, profile.cube, PRETRAIN_TRAIN_SUBSETS, profile.cubes_per_scan, seed)
    val = load_pool(pool.root, profile.cube, PRETRAIN_VAL_SUBSETS, profile.cubes_per_scan, seed)
    checkpoint, history = pretrain(method, train, val, profile, seed, device, progress)
    if not distributed.is_main():
        return checkpoint, {"checkpoint_id": folder.name, "epochs": checkpoint["epochs"], "reused": False}
    meta = {"checkpoint_id": folder.name, "identity": identity, "pool": pool.describe(),
            "train_cubes": len(train), "val_cubes": len(val), "epochs": checkpoint["epochs"],
            "cubes_seen": checkpoint["cubes_seen"], "best_val_loss": checkpoint["best_val_loss"],
            "wall_seconds": time.perf_counter() - start, "device": str(device)}
    save_checkpoint(checkpoint, path)
    files.write_csv(folder / "history.csv", history)
    files.write_json(folder / "meta.json", meta)
    return checkpoint, {**meta, "reused": False}


