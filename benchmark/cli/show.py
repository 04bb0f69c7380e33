"""``benchmark show METHOD``: a method's description, what it transfers, its documentation and its settings."""

from __future__ import annotations

import argparse
import inspect
import sys

from benchmark.api.registry import METHODS
from benchmark.api.settings import defaults, format_value

PRESET_MARK = "*"


def command(args: argparse.Namespace) -> None:
    print(describe(args.method))


def describe(name: str) -> str:
    """Name, origin, description, what it transfers, the first paragraph of its documentation, and
    every setting with its default (a preset's values marked, with the class's own default)."""
    cls, preset = METHODS.get(name), METHODS.preset(name)
    origin = f"{METHODS.origin(name)}; a preset of {cls.name}" if preset else METHODS.origin(name)
    lines = [f"{name}  ({origin})", f"  {METHODS.description(name)}", f"  transfers: {cls.transfers}", ""]
    paragraph = first_paragraph(cls)
    if paragraph:
        lines += [paragraph, ""]
    settings = METHODS.defaults(name)
    if not settings:
        return "\n".join([*lines, "settings: none"])
    mark = f"; {PRESET_MARK}: set by the preset, {cls.name}'s default in brackets" if preset else ""
    lines.append(f"settings (change one with --method-arg KEY=VALUE{mark}):")
    width = max(map(len, settings))
    own = defaults(cls)
    for key, value in settings.items():
        note = f"  {PRESET_MARK} ({format_value(own[key])})" if preset and key in preset.settings else ""
        lines.append(f"  {key:<{width}}  {format_value(value)}{note}")
    return "\n".join(lines)


def settings_items(name: str) -> list[str]:
    """``KEY=VALUE`` for each setting of ``name`` (a preset's own values marked), for ``list --verbose``."""
    preset = METHODS.preset(name)
    fixed = preset.settings if preset else {}
    return [f"{key}={format_value(value)}{PRESET_MARK if key in fixed else ''}"
            for key, value in METHODS.defaults(name).items()]


def first_paragraph(cls: type) -> str:
    """The first paragraph of the class's own docstring, or of its module's when it has none."""
    doc = cls.__dict__.get("__doc__") or getattr(sys.modules.get(cls.__module__), "__doc__", None)
    return inspect.cleandoc(doc).split("\n\n")[0] if doc else ""
