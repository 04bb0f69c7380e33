"""The cache of pretrained checkpoints: their identity, and pretraining one when it is absent.

A checkpoint is identified by what determines its weights: the method and its settings, the
pretraining data, the pretraining fields of the profile, the seed, the plugin's source and
the core code pretraining runs (``provenance.pretraining_fingerprint``), but not fine-tuning
or evaluation code, so an edit there does not pretrain again.

Its ``meta.json`` (written last) records the identity and the SHA-256 of ``checkpoint.pt``;
both are checked at every use (hashing a checkpoint takes well under a second). A checkpoint
that is missing, damaged, replaced (by another seed's, say) or unrecorded is pretrained
again, with a one-line warning, and never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
from benchmark.engine.runtime import check_seed
from benchmark.provenance import pretraining_fingerprint, source_fingerprint

PRETRAIN_PROFILE_FIELDS = ("cube", "width", "cubes_per_scan")
META_FILE = "meta.json"
SHA256_KEY = "checkpoint_sha256"
log = logging.getLogger(__name__)


def content_hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def pretrain_identity(method: Method, pool: DataSource, profile: Profile, seed: int) -> dict[str, Any]:
    """What determines a pretrained checkpoint: method, pretraining data, profile, seed."""
    check_seed(seed)
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


def checkpoint_fault(folder: Path, identity: dict[str, Any]) -> str | None:
    """What is wrong with the checkpoint cached in ``folder`` for ``identity`` (None: nothing)."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
        recorded_identity, sha256 = meta["identity"], meta.get(SHA256_KEY)
    except (OSError, ValueError, KeyError, TypeError):
        return f"{META_FILE} is missing or unreadable"
    if content_hash(recorded_identity) != content_hash(identity):
        return f"its {META_FILE} records another checkpoint's identity"
    if sha256 is None:
        return f"its {META_FILE} records no SHA-256 of {store.CHECKPOINT_FILE}"
    if not (folder / store.CHECKPOINT_FILE).is_file():
        return f"{store.CHECKPOINT_FILE} is missing"
    if files.sha256_file(folder / store.CHECKPOINT_FILE) != sha256:
        return f"{store.CHECKPOINT_FILE} does not match its recorded SHA-256 (changed since it was written)"
    return None


def _cached(folder: Path, identity: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The verified checkpoint in ``folder`` and its meta, or None (with a warning if something is there)."""
    if not any((folder / name).exists() for name in (META_FILE, store.CHECKPOINT_FILE)):
        return None  # nothing there yet, or an interrupted pretraining (its latest state only)
    fault = checkpoint_fault(folder, identity)
    if fault is not None:
        log.warning("checkpoint %s: %s; pretraining it again", folder.name, fault)
        return None
    return load_checkpoint(folder / store.CHECKPOINT_FILE), files.read_json(folder / META_FILE)


def _load_or_pretrain(method: Method, pool: DataSource, profile: Profile, seed: int,
                      device: torch.device, progress: bool, identity: dict[str, Any],
                      folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    path = folder / store.CHECKPOINT_FILE
    cached = _cached(folder, identity)
    if cached is not None:
        checkpoint, meta = cached
        return checkpoint, {**meta, "reused": True}
    start = time.perf_counter()
    train = load_pool(pool.root, profile.cube, PRETRAIN_TRAIN_SUBSETS, profile.cubes_per_scan, seed)
    val = load_pool(pool.root, profile.cube, PRETRAIN_VAL_SUBSETS, profile.cubes_per_scan, seed)
    checkpoint, history = pretrain(method, train, val, profile, seed, device, progress,
                                   latest=folder / store.LATEST_FILE)
    if not distributed.is_main():
        return checkpoint, {"checkpoint_id": folder.name, "epochs": checkpoint["epochs"], "reused": False}
    save_checkpoint(checkpoint, path)
    meta = {"checkpoint_id": folder.name, "identity": identity, "pool": pool.describe(),
            "train_cubes": len(train), "val_cubes": len(val), "epochs": checkpoint["epochs"],
            "cubes_seen": checkpoint["cubes_seen"], "best_val_loss": checkpoint["best_val_loss"],
            "wall_seconds": time.perf_counter() - start, "device": str(device),
            "resumed_from_epoch": checkpoint["resumed_from_epoch"], SHA256_KEY: files.sha256_file(path)}
    files.write_csv(folder / "history.csv", history)
    files.write_json(folder / META_FILE, meta)
    (folder / store.LATEST_FILE).unlink(missing_ok=True)
    return checkpoint, {**meta, "reused": False}
