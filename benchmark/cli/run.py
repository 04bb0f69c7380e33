"""``benchmark run``: one method on one task, from spec to record, and a readable summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmark.api.backbone import DEFAULT_BACKBONE
from benchmark.api.registry import BACKBONES, METHODS, TASKS
from benchmark.api.settings import format_value
from benchmark.cli import one_line
from benchmark.cli.options import backbone_settings, method_settings, switches, task_settings
from benchmark.engine.harness import RunSpec, execute
from benchmark.errors import UserError


def changed_settings(recorded: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The ``recorded`` settings that differ from a plugin's ``defaults``, as ``KEY=VALUE`` items."""
    recorded, defaults = (json.loads(json.dumps(settings, default=str))  # as the record's file holds them
                          for settings in (recorded, defaults))
    changed = [f"{key}={format_value(value)}" for key, value in recorded.items() if defaults.get(key) != value]
    return " ".join(changed) or "defaults"


def protocol_text(record: dict[str, Any]) -> str:
    """The record's transfer protocol and what it trained (records before protocols: full)."""
    protocol = record.get("protocol") or {"name": "full"}
    if protocol["name"] == "full":
        return "full"
    return f"{protocol['name']} ({protocol['trainable_parameters']:,} of {protocol['parameters']:,} weights trained)"


def backbone_text(record: dict[str, Any]) -> str:
    """The record's backbone, the settings that differ from its defaults and its size (older records: the U-Net)."""
    backbone = record.get("backbone") or {"name": DEFAULT_BACKBONE}
    settings = changed_settings(backbone.get("settings") or {}, BACKBONES.create(backbone["name"]).settings()) \
        if backbone["name"] in BACKBONES.names() else "unknown here"
    size = f"   {backbone['parameters']:,} parameters" if "parameters" in backbone else ""
    dims = record.get("dims") or {"name": "3d"}
    seen = f"   dims {dims['name']}" + (f" ({dims['adapter']})" if dims.get("adapter") else "")
    return f"backbone {backbone['name']}   settings: {settings}{size}{seen}"


def device_memory_text(record: dict[str, Any]) -> str:
    """The run's peak device (GPU) memory where the record has one, for the summary's fit line."""
    peak = record.get("peak_device_memory_mb")
    return f" (device {peak:.0f} MB)" if isinstance(peak, (int, float)) and not isinstance(peak, bool) else ""


def format_summary(record: dict[str, Any], results: Path) -> str:
    """The run's summary, a line per topic, each with its unprintable characters escaped: the texts of a
    reused record (a warning, the data's folder, a metric's name) never reach the terminal as they are."""
    scores = "   ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items())
    pre = record.get("pretraining")
    if record.get("weights"):
        pretrained = f"weights {record['weights']['path']} ({record['weights']['format']})"
    elif pre:
        state = "reused" if pre.get("reused") else f"trained {pre['epochs']} epochs"
        pretrained = f"checkpoint {pre['checkpoint_id']} ({state})"
    else:
        pretrained = "none (random initialisation)"
    cases = record["cases"]
    method_settings = changed_settings(record.get("method_settings", {}), METHODS.defaults(record["method"]))
    task_settings = changed_settings(record.get("task_settings", {}), TASKS.defaults(record["task"]))
    lines = [
        f"run      {record['run_id']}" + ("   (already finished: existing record)" if record.get("reused") else ""),
        f"method   {record['method']}   settings: {method_settings}   pretraining: {pretrained}   "
        f"transferred: {record['transfer']['transferred']}   protocol: {protocol_text(record)}",
        f"model    {backbone_text(record)}",
        f"task     {record['task']}   settings: {task_settings}   profile {record['profile']}   "
        f"seed {record['seed']}   fraction {record['fraction']:g}   "
        f"train/val/test {cases['train']}/{cases['val']}/{cases['test']}",
        f"data     {record['data']['kind']} {record['data']['root']}",
        f"test     {scores}",
        f"fit      {record['finetune']['epochs']} epochs (best {record['finetune']['best_epoch']})   "
        f"{record['wall_seconds']:.0f} s   peak memory {record['peak_memory_mb']:.0f} MB"
        f"{device_memory_text(record)}   {record['device']}",
        f"record   {Path(results) / 'runs' / record['run_id'] / 'result.json'}",
        *(f"warning  {warning}" for warning in record.get("warnings") or []),
    ]
    return "\n".join(map(one_line, lines))


def command(args: argparse.Namespace) -> None:
    spec = RunSpec(method=args.method, task=args.task, seed=args.seed, fraction=args.fraction,
                   profile=args.profile, data_root=args.data_root, pretrain_root=args.pretrain_root,
                   weights=args.weights, splits=args.splits, switches=tuple(switches(args).items()),
                   method_settings=method_settings(args), task_settings=task_settings(args),
                   subset_seed=args.subset_seed, protocol=args.protocol, backbone=args.backbone,
                   backbone_settings=backbone_settings(args), dims=args.dims)
    record = execute(spec, args.results, args.device, args.force, progress=not args.no_progress)
    try:
        summary = format_summary(record, args.results)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if not record.get("reused"):
            raise
        path = Path(args.results) / "runs" / record["run_id"] / "result.json"
        raise UserError(f"{path}: not a record this suite wrote whole (no {error!r} to show); "
                        "'benchmark run --force' replaces it") from error
    print(summary)
