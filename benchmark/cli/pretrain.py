"""``benchmark pretrain``: pretrain one method into the checkpoint cache (DDP under torchrun)."""

from __future__ import annotations

import argparse

from benchmark.api.profiles import get_profile
from benchmark.api.registry import METHODS
from benchmark.cli.options import method_settings, switches
from benchmark.engine import distributed, store
from benchmark.engine.checkpoints import obtain_checkpoint, pretraining_pool
from benchmark.errors import UserError


def command(args: argparse.Namespace) -> None:
    """Pretrain one method into the checkpoint cache (or find it there) and print its path.
    Launched by ``torchrun``, the processes train it together (DDP)."""
    method = METHODS.create(args.method, **dict(method_settings(args)))
    if method.transfers == "none":
        raise UserError(f"method '{method.name}' does not pretrain (a random initialisation)")
    profile = get_profile(args.profile, **switches(args))
    device = distributed.start(args.device)
    try:
        _, meta = obtain_checkpoint(method, pretraining_pool(args.pretrain_root), profile, args.seed, args.results,
                                    device, progress=not args.no_progress)
    finally:
        distributed.stop()
    if distributed.is_main():
        state = "reused" if meta["reused"] else f"trained {meta['epochs']} epochs"
        path = store.checkpoint_dir(args.results, meta["checkpoint_id"]) / "checkpoint.pt"
        print(f"checkpoint {meta['checkpoint_id']} ({state}, {distributed.world().size} process(es))\n{path}")
