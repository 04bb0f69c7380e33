"""``benchmark pretrain``: pretrain one method into the checkpoint cache (DDP under torchrun)."""

from __future__ import annotations

import argparse

from benchmark.api.profiles import get_profile
from benchmark.api.registry import METHODS
from benchmark.cli.options import backbone_settings, method_settings, switches
from benchmark.engine import distributed, store
from benchmark.engine.checkpoints import obtain_checkpoint, pretraining_pool
from benchmark.engine.harness import method_backbone
from benchmark.errors import UserError


def command(args: argparse.Namespace) -> None:
    """Pretrain one method into the checkpoint cache (or find it there) and print its path.
    Launched by ``torchrun``, the processes train it together (DDP)."""
    method = METHODS.create(args.method, **dict(method_settings(args)))
    backbone = method_backbone(method, args.backbone, dict(backbone_settings(args)))
    if not method.has_pretext_task():
        raise UserError(f"method '{method.name}' has no pretext task to pretrain on the pool (a random "
                        "initialisation, released weights or supervised pretraining: 'benchmark run' trains it)")
    profile = get_profile(args.profile, **switches(args))
    backbone.check_cube(profile.cube, "the pretraining cube")
    device = distributed.start(args.device)
    try:
        _, meta = obtain_checkpoint(method, pretraining_pool(args.pretrain_root, method.pool_layout), profile,
                                    args.seed, args.results, device, progress=not args.no_progress,
                                    backbone=backbone)
    finally:
        distributed.stop()
    if distributed.is_main():
        state = "reused" if meta["reused"] else f"trained {meta['epochs']} epochs"
        path = store.checkpoint_dir(args.results, meta["checkpoint_id"]) / "checkpoint.pt"
        print(f"checkpoint {meta['checkpoint_id']} ({state}, {distributed.world().size} process(es))\n{path}")
