"""Reporting: from a results root to tables, statistics, figures and one HTML page.

Reads records (``table``), computes views and tests over seeds and cases (``views``,
``stats``), draws figures (``plots``, ``restoration``), writes CSV, Markdown, LaTeX and
HTML (``formats``), all put together by ``build``. Nothing here changes a number of a run:
it is not part of any run's identity.
"""

CORRECTIONS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg"}  # multiple-comparison corrections offered
