"""The cache of pretrained checkpoints: their identity, and pretraining one when it is absent.

A checkpoint is identified by what determines its weights: the method and its settings, the
pretraining data, the pretraining fields of the profile, the seed, the plugin's source and
the core code pretraining runs (``provenance.pretraining_fingerprint``), but not fine-tuning
or evaluation code, so an edit there does not pretrain again.

Its ``meta.json`` (written last) records the identity and the SHA-256 of ``checkpoint.pt``;
both are checked at every use (hashing a checkpoint takes well under a second). A checkpoint
that is missing, damaged, replaced (by another seed's, say) or unrecorded is pretrained
again, with a one-line warning, and never used.

The saved ``checkpoint.pt`` also holds ``pool_scans``, the ids of the scans it was pretrained on (none for
a phantom pool), so that a run given the file with ``--weights`` can check them against its test split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from benchmark.api.backbone import Backbone, default_backbone
from benchmark.api.method import Method
from benchmark.api.profiles import Profile
from benchmark.data import files
from benchmark.data.datasets import DataSource, directory_source, phantom_source
from benchmark.data.pools import SPLITS, pool_layout
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


def pretrain_identity(method: Method, pool: DataSource, profile: Profile, seed: int,
                      backbone: Backbone | None = None) -> dict[str, Any]:
    """What determines a pretrained checkpoint: method, backbone, pretraining data, profile, seed."""
    check_seed(seed)
    backbone = backbone or default_backbone(method)
    fields = {k: v for k, v in profile.as_dict().items() if k.startswith("pretrain_") or k in PRETRAIN_PROFILE_FIELDS}
    return {"method": method.name, "settings": method.settings(), "backbone": backbone.identity(),
            "pool": pool.fingerprint,
            "profile": fields, "seed": seed, "code": pretraining_fingerprint(),
            "method_code": source_fingerprint(type(method)), **distributed.identity()}


def checkpoint_id(method: Method, identity: dict[str, Any]) -> str:
    """The method's name, the backbone's when it is not the method's default, and the identity's hash."""
    backbone = identity["backbone"]["name"]
    shown = "" if backbone == method.default_backbone() else f"-{backbone}"
    return f"{method.name}{shown}-{content_hash(identity)}"


def pretraining_pool(root: Path | None, layout: str = "luna16") -> DataSource:
    """The pretraining data: a folder of the pool ``layout`` (``benchmark.data.pools``; LUNA16's by
    default), or the layout's built-in phantom."""
    return directory_source(root) if root else phantom_source(pool_layout(layout).write_phantom)


def pool_scans(pool: DataSource, layout: str) -> list[str]:
    """The ids of the scans a pool holds, recorded in its checkpoint so that a run given the checkpoint
    file (``--weights``) can refuse a task whose test scans it saw; none for a phantom (nobody's data)."""
    return sorted(pool_layout(layout).scans(pool.root)) if pool.kind == "directory" else []


def obtain_checkpoint(method: Method, pool: DataSource, profile: Profile, seed: int, results: Path,
                      device: torch.device, progress: bool,
                      backbone: Backbone | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cached checkpoint for (method, backbone, pool, profile, seed), pretraining it if absent
    (``backbone`` None: the method's default).

    A process that finds another one pretraining the same checkpoint waits for it and reuses its result.
    """
    backbone = backbone or default_backbone(method)
    identity = pretrain_identity(method, pool, profile, seed, backbone)
    folder = store.checkpoint_dir(results, checkpoint_id(method, identity))
    # data-parallel pretraining: rank 0 holds the lock and writes; every rank looks for a cached checkpoint
    # only once rank 0 holds it, so that all of them find the same (no other process writes meanwhile)
    lock = store.lock_path(results, folder.name)
    holder = f"another process is pretraining {folder.name}"
    held = store.exclusive(lock, wait=True, holder=holder) if distributed.is_main() else nullcontext()
    with held:
        distributed.barrier()
        return _load_or_pretrain(method, backbone, pool, profile, seed, device, progress, identity, folder)


def checkpoint_fault(folder: Path, identity: dict[str, Any]) -> str | None:
    """What is wrong with the checkpoint cached in ``folder`` for ``identity`` (None: nothing)."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
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


def cached_checkpoint(folder: Path, identity: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The verified checkpoint in ``folder`` and its meta (dropping the training state a kill left beside it),
    or None (with a warning if something is there)."""
    if not any((folder / name).exists() for name in (META_FILE, store.CHECKPOINT_FILE)):
        return None  # nothing there yet, or an interrupted pretraining (its latest state only)
    fault = checkpoint_fault(folder, identity)
    if fault is not None:
        log.warning("checkpoint %s: %s; pretraining it again", folder.name, fault)
        return None
    if distributed.is_main():  # a training killed after its meta.json left its training state
        (folder / store.LATEST_FILE).unlink(missing_ok=True)
    return load_checkpoint(folder / store.CHECKPOINT_FILE), files.read_json(folder / META_FILE)


def _load_or_pretrain(method: Method, backbone: Backbone, pool: DataSource, profile: Profile, seed: int,
                      device: torch.device, progress: bool, identity: dict[str, Any],
                      folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    path = folder / store.CHECKPOINT_FILE
    cached = cached_checkpoint(folder, identity)
    if cached is not None:
        checkpoint, meta = cached
        return checkpoint, {**meta, "reused": True}
    start = time.perf_counter()
    layout = pool_layout(method.pool_layout)
    train, val = (layout.load(pool.root, profile.cube, split, profile.cubes_per_scan, seed) for split in SPLITS)
    checkpoint, history = pretrain(method, train, val, profile, seed, device, progress,
                                   latest=folder / store.LATEST_FILE, backbone=backbone)
    checkpoint["pool_scans"] = pool_scans(pool, method.pool_layout)
    if not distributed.is_main():
        return checkpoint, {"checkpoint_id": folder.name, "epochs": checkpoint["epochs"], "reused": False}
    save_checkpoint(checkpoint, path)
    meta = {"checkpoint_id": folder.name, "identity": identity, "pool": pool.describe(),
            "train_cubes": len(train), "val_cubes": len(val), "epochs": checkpoint["epochs"],
            "cubes_seen": checkpoint["cubes_seen"], "best_val_loss": checkpoint["best_val_loss"],
            "wall_seconds": time.perf_counter() - start + checkpoint["earlier_seconds"], "device": str(device),
            "resumed_from_epoch": checkpoint["resumed_from_epoch"], SHA256_KEY: files.sha256_file(path)}
    files.write_csv(folder / "history.csv", history)
    files.write_json(folder / META_FILE, meta)
    (folder / store.LATEST_FILE).unlink(missing_ok=True)
    return checkpoint, {**meta, "reused": False}
