"""``benchmark list``: the registered methods, tasks and backbones, built-in and plugins (``--verbose``:
and the methods' settings). Each backbone with its parameter counts at the published width (32):
encoder, classification target, segmentation target (one input channel, one output), counted on
PyTorch's meta device (shapes only, no memory), and the published count it is compared with."""

from __future__ import annotations

import argparse
import textwrap

from benchmark.api.registry import BACKBONES, METHODS, TASKS
from benchmark.cli.show import PRESET_MARK, print_lines, settings_items

FLOAT32_BYTES = 4


def command(args: argparse.Namespace) -> None:
    for title, registry in (("methods", METHODS), ("tasks", TASKS)):
        print(f"{title}:")
        names = registry.names()
        width = max(map(len, names))
        for name in names:
            cls = registry.get(name)
            origin = registry.origin(name)
            suffix = "" if origin == "built-in" else f"  [{origin}]"
            extra = f"[{cls.transfers}] " if title == "methods" else f"[{cls.kind}] "
            print_lines(f"  {name:<{width}}  {extra}{registry.description(name)}{suffix}")
            if args.verbose and title == "methods":
                print_lines(settings_paragraph(name, indent=" " * (width + 4)))
    print("backbones (parameters at width 32: encoder / classifier / segmenter; the segmenter's size):")
    for name in BACKBONES.names():
        print_lines(backbone_line(name))



def backbone_line(name: str) -> str:
    """A backbone's name, its default settings' parameter counts, its description and published count."""
    backbone = BACKBONES.create(name)
    parameters = backbone.parameter_counts()
    counts = " / ".join(f"{count / 1e6:.2f} M" for count in parameters.values())
    counts += f"; {parameters['segmenter'] * FLOAT32_BYTES / 2**20:.1f} MiB in float32"
    origin = BACKBONES.origin(name)
    suffix = "" if origin == "built-in" else f"  [{origin}]"
    settings = " ".join(f"{key}={value}" for key, value in backbone.settings().items())
    lines = [f"  {name}  [{counts}]  {BACKBONES.description(name)}{suffix}",
             f"      defaults: {settings or 'none'}"]
    if backbone.published:
        lines.append(textwrap.fill(f"published: {backbone.published}", width=110, initial_indent=" " * 6,
                                   subsequent_indent=" " * 8, break_long_words=False))
    return "\n".join(lines)


def settings_paragraph(name: str, indent: str) -> str:
    items = settings_items(name)
    marked = f" ({PRESET_MARK}: the preset's)" if METHODS.preset(name) else ""
    text = f"settings{marked}: {' '.join(items)}" if items else "settings: none"
    return textwrap.fill(text, width=110, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_long_words=False, break_on_hyphens=False)
