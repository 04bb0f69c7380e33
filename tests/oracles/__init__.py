"""Plain-loop oracles of the fast corruptions: the tests compare the two draw for draw, and
``benchmark speed --oracles tests/oracles`` times one against the other.

``LOOPS`` maps ``(method class name, corruption name)`` (the names of
``Method.speed_corruptions``) to the loop version, called ``f(method, cube, rng)``. Kept with
the tests, outside the installed package: no run imports them, and editing them changes no
run or checkpoint id.
"""

from .genesis_loop import LOOPS

__all__ = ["LOOPS"]
