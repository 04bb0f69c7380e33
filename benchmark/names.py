"""Names and ids that become parts of file paths: one pattern and one check for the whole suite.

A name (a method, a task, a run id, a checkpoint id ...) is 1 to 200 letters, digits, ``-``,
``_`` and ``.``, and is not ``.`` or ``..``: it holds no path separator, so joined to a folder
it names a file directly inside that folder, never one outside it. Anything read from a record
or a plugin is checked with :func:`check_name` before it becomes part of a path.
"""

from __future__ import annotations

import re

from benchmark.errors import UserError

NAME_LENGTH = 200  # the longest name
NAME_PATTERN = re.compile(rf"[A-Za-z0-9._-]{{1,{NAME_LENGTH}}}")
NAME_RULE = f"1 to {NAME_LENGTH} letters, digits, '-', '_' or '.', not '.' or '..'"


def is_valid_name(text: object) -> bool:
    """Whether ``text`` is a string that matches ``NAME_PATTERN`` whole and is not ``.`` or ``..``."""
    return isinstance(text, str) and NAME_PATTERN.fullmatch(text) is not None and text not in (".", "..")


def check_name(text: object, what: str) -> str:
    """``text`` if it is a valid name; a UserError saying ``what`` it is and the rule otherwise."""
    if not is_valid_name(text):
        raise UserError(f"{what} {text!r} is not a valid name ({NAME_RULE})")
    return text


def one_line(message: str) -> str:
    """``message`` with every unprintable character escaped: a name or value the user typed or a record
    holds (a line break, a terminal control sequence) never breaks a printed line in two."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)
