"""``benchmark list``: the registered methods and tasks, built-in and plugins (``--verbose``: and the
methods' settings)."""

from __future__ import annotations

import argparse
import textwrap

from benchmark.api.registry import METHODS, TASKS
from benchmark.cli.show import PRESET_MARK, settings_items


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
            print(f"  {name:<{width}}  {extra}{registry.description(name)}{suffix}")
            if args.verbose and title == "methods":
                print(settings_paragraph(name, indent=" " * (width + 4)))


def settings_paragraph(name: str, indent: str) -> str:
    items = settings_items(name)
    marked = f" ({PRESET_MARK}: the preset's)" if METHODS.preset(name) else ""
    text = f"settings{marked}: {' '.join(items)}" if items else "settings: none"
    return textwrap.fill(text, width=110, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_long_words=False, break_on_hyphens=False)
