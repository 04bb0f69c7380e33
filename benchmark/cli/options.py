"""Turning parsed command-line options into the values the engine takes (no heavy imports)."""

from __future__ import annotations

import argparse
from typing import Any


def switches(args: argparse.Namespace) -> dict[str, Any]:
    """The profile fields the switches given on the command line replace."""
    given = {"loader_workers": args.workers, "pretrain_device_transforms": args.transforms_on_device,
             "pretrain_precision": args.precision, "pretrain_channels_last": args.channels_last,
             "pretrain_compile": args.compile}
    return {field: value for field, value in given.items() if value is not None}
