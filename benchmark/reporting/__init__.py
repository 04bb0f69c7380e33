"""Reporting: from a results root to tables, statistics, figures and one HTML page.

Reads records (``table``), checks where they come from (``sources``), computes views and tests
over seeds and cases (``views``, ``curves``, ``stats``), draws figures (``plots``,
``restoration``), writes CSV, Markdown, LaTeX and HTML (``formats``), all put together by
``build``. Nothing here changes a number of a run: it is not part of any run's identity.
"""

CORRECTIONS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg"}  # multiple-comparison corrections offered
FAMILIES = {"task": "per task", "benchmark": "over the whole benchmark (all tasks x methods)"}  # correction families
ALPHA = 0.05  # the significance threshold of the marks, the verdicts and the power figures
POWER = 0.8  # the power of the smallest detectable differences
PAPER_TASK_ORDER = ("ncc", "ncs", "ecc", "lcs", "bms")  # Models Genesis' order of its five target tasks


def task_order(tasks: list[str]) -> list[str]:
    """``tasks`` in the paper's order; tasks the paper does not have follow, alphabetically."""
    known = {task: index for index, task in enumerate(PAPER_TASK_ORDER)}
    return sorted(set(tasks), key=lambda task: (known.get(task, len(known)), task))
