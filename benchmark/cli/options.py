"""Turning parsed command-line options into the values the engine takes (no heavy imports)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from benchmark.api.profiles import PRECISIONS, parse_overrides
from benchmark.errors import UserError

SWITCHES = {"loader_workers": "--workers", "pretrain_device_transforms": "--transforms-on-device",
            "pretrain_precision": "--precision", "pretrain_channels_last": "--channels-last",
            "pretrain_compile": "--compile"}  # profile field: its own option


def add_switch_arguments(parser: argparse.ArgumentParser) -> None:
    """The pretraining speed switches; each overrides the profile's value when given."""
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loader worker processes for pretraining and fine-tuning batches (the same "
                             "numbers for any count; default: the profile's, 0)")
    parser.add_argument("--transforms-on-device", action=argparse.BooleanOptionalAction, default=None,
                        help="make pretraining batches with the method's batched torch transforms on the "
                             "training device (default: the profile's, off)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="pretraining forward pass precision: bf16 autocast or fp32 (default: the profile's)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels_last_3d memory format for pretraining (default: the profile's, off)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the pretext model (default: the profile's, off)")


def switches(args: argparse.Namespace) -> dict[str, Any]:
    """The profile fields the command line replaces: the speed switches given, and the
    ``--profile-arg KEY=VALUE`` fields parsed to their type. A field given both ways is an error."""
    given = {field: getattr(args, option[2:].replace("-", "_")) for field, option in SWITCHES.items()}
    given = {field: value for field, value in given.items() if value is not None}
    overrides = parse_overrides(args.profile, assignments(args.profile_arg, "--profile-arg"))
    both = sorted(overrides.keys() & given.keys())
    if both:
        raise UserError(f"--profile-arg {both[0]}: given by {SWITCHES[both[0]]} too")
    return {**given, **overrides}


def method_settings(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The ``--method-arg KEY=VALUE`` pairs, as text: the registry parses each to its setting's type."""
    return tuple(assignments(args.method_arg, "--method-arg").items())


def backbone_settings(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The ``--backbone-arg KEY=VALUE`` pairs, as text: the registry parses each to its setting's type."""
    return tuple(assignments(args.backbone_arg, "--backbone-arg").items())


def task_settings(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The ``--task-arg KEY=VALUE`` pairs, as text: the registry parses each to its setting's type."""
    return tuple(assignments(args.task_arg, "--task-arg").items())


def assignments(items: Sequence[str], option: str) -> dict[str, str]:
    """``KEY=VALUE`` items as ``{key: text}``; a malformed item or a key given twice is a UserError."""
    pairs: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise UserError(f"{option} {item}: expected KEY=VALUE")
        if key in pairs:
            raise UserError(f"{option} {key}: given twice")
        pairs[key] = value
    return pairs


def first_repeat(values: Sequence[Any]) -> tuple[int, int] | None:
    """The positions of the first value that appears again and of that repeat (``1`` and ``1.0`` are one
    value), or None: a grid's lists and a preset's keys hold each value once."""
    seen: dict[Any, int] = {}
    for position, value in enumerate(values):
        if value in seen:
            return seen[value], position
        seen[value] = position
    return None
