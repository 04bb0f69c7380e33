"""Label-fraction subsets of a training split, drawn at the patient (group) level.

Groups are put in one random order drawn from the *subset seed*; a fraction takes a
prefix of that order, so smaller subsets are nested in larger ones. The harness draws
the subset seed from the run's seed by default, so every seed trains on its own
patients and the report's spread over seeds includes which patients were labelled
(nested within a seed, across fractions); an explicit subset seed (``--subset-seed``)
gives every seed one shared subset instead. For classification the order is drawn per
stratum (groups with and without a positive case) and each stratum contributes the same
fraction, so rare positives are not lost.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from benchmark.data.cases import Case


def _prefix(groups: list[str], fraction: float, rng: np.random.Generator) -> list[str]:
    if not groups:
        return []
    order = [groups[i] for i in rng.permutation(len(groups))]
    return order[: max(1, math.ceil(round(fraction * len(groups), 9)))]


def label_subset(cases: Sequence[Case], fraction: float, stratify: bool, subset_seed: int) -> list[Case]:
    """The training cases of a ``fraction`` of the groups (at least one group per stratum)."""
    if fraction == 1:
        return list(cases)
    groups = sorted({c.group for c in cases})
    if stratify:
        positive = {c.group for c in cases if int(c.target) == 1}
        strata = [[g for g in groups if g in positive], [g for g in groups if g not in positive]]
    else:
        strata = [groups]
    chosen: set[str] = set()
    for index, stratum in enumerate(strata):
        chosen.update(_prefix(stratum, fraction, np.random.default_rng([subset_seed, index])))
    return [c for c in cases if c.group in chosen]


def subset_listing(cases: Sequence[Case]) -> tuple[str, str]:
    """The subset as text (one group per line) and its hash, for the record."""
    text = "".join(f"{g}\n" for g in sorted({c.group for c in cases}))
    return text, hashlib.sha256(text.encode()).hexdigest()[:16]
