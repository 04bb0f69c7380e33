"""Reporting: from a results root to tables, statistics, figures and one HTML page.

Reads records (``table``; a method's label with its settings: ``variants``), checks where they come
from (``sources``), computes views and tests over seeds and cases (``views``, ``curves``, ``stats``;
the ablations and the restoration losses side by side: ``comparisons``), draws figures (``plots``,
``restoration``), finds what ``benchmark analyze`` wrote (``analyses``), writes CSV, Markdown,
LaTeX and HTML (``formats``), all put together by ``build``. Nothing here changes a number of a
run: it is not part of any run's identity.
"""

import hashlib
import re
from pathlib import Path

from benchmark.names import is_valid_name

CORRECTIONS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg"}  # multiple-comparison corrections offered
FAMILIES = {"task": "per task", "benchmark": "over the whole benchmark (all tasks x methods)"}  # correction families
ALPHA = 0.05  # the significance threshold of the marks, the verdicts and the power figures
POWER = 0.8  # the power of the smallest detectable differences
ANALYSES_FOLDER = Path("reports") / "analysis"  # where benchmark analyze writes, and the report looks, by default
PAPER_TASK_ORDER = ("ncc", "ncs", "ecc", "lcs", "bms")  # Models Genesis' order of its five target tasks


def file_stem(label: str) -> str:
    """A file-name part for a task or method label: the label itself when it is a valid name, else its
    letters and digits joined by ``_`` and a short hash of the whole label (labels never collide)."""
    if is_valid_name(label):
        return label
    slug = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")[:60]
    return f"{slug}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"


def task_order(tasks: list[str]) -> list[str]:
    """``tasks`` in the paper's order; tasks the paper does not have follow, alphabetically."""
    known = {task: index for index, task in enumerate(PAPER_TASK_ORDER)}
    return sorted(set(tasks), key=lambda task: (known.get(task, len(known)), task))
