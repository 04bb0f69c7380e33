"""``benchmark list``: the registered methods and tasks, built-in and plugins."""

from __future__ import annotations

import argparse

from benchmark.api.registry import METHODS, TASKS


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
            print(f"  {name:<{width}}  {extra}{cls.description}{suffix}")
