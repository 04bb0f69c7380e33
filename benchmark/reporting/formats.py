"""Writing the report's tables as Markdown, LaTeX and HTML, and the self-contained HTML page."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

MISSING = "–"
P_COLUMNS = ("p", "p_corrected", "p_vs_baseline", "p_vs_baseline_corrected", "p_vs_best", "p_vs_best_corrected")
DAGGER = {"md": "†", "html": "†", "tex": r"\dag{}"}


def display_value(column: str, value: object) -> str:
    """A cell as text: p-values to 3 significant digits, other floats to 4 decimals, missing as '–'."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return MISSING
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}" if column in P_COLUMNS else f"{value:.4f}"
    return str(value)


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: [display_value(c, v) for v in frame[c]] for c in frame.columns}, index=frame.index)


def table3_cell(row: pd.Series | None, style: str) -> str:
    """mean ± s.d. (n), bold when best, ``*`` marks against the baseline and ``†`` marks against the best."""
    if row is None:
        return "--" if style == "tex" else MISSING
    core = f"{row['mean']:.3f}" if np.isnan(row["sd"]) else f"{row['mean']:.3f} ± {row['sd']:.3f}"
    marks_base, marks_best = row["marks_vs_baseline"], DAGGER[style] * len(row["marks_vs_best"])
    if style == "tex":
        core = core.replace("±", r"$\pm$")
        core = rf"\textbf{{{core}}}" if row["best"] else core
        marks = "".join(rf"\textsuperscript{{{m}}}" for m in (marks_base, marks_best) if m)
    elif style == "html":
        core = f"<b>{core}</b>" if row["best"] else core
        marks = "".join(f"<sup>{m}</sup>" for m in (marks_base, marks_best) if m)
    else:
        core = f"**{core}**" if row["best"] else core
        marks = " ".join(m for m in (marks_base.replace("*", r"\*"), marks_best) if m)
    return f"{core} (n={row['n_seeds']}){' ' + marks if marks else ''}"


def table3_wide(table3: pd.DataFrame, methods: list[str], tasks: list[str], style: str) -> pd.DataFrame:
    """Rows methods, columns tasks (with their metric), cells formatted for ``style`` (md, tex, html)."""
    metrics = table3.drop_duplicates("task").set_index("task")["metric"] if not table3.empty else pd.Series()
    cells = {}
    for task in tasks:
        header = f"{task} ({metrics[task]})" if task in metrics else task
        own = table3[table3["task"] == task].set_index("method") if not table3.empty else pd.DataFrame()
        cells[header] = [table3_cell(own.loc[m] if m in own.index else None, style) for m in methods]
    return pd.DataFrame(cells, index=pd.Index(methods, name="method"))


def markdown_table(frame: pd.DataFrame) -> str:
    flat = frame.reset_index() if frame.index.name else frame
    lines = ["| " + " | ".join(map(str, flat.columns)) + " |", "|" + "---|" * len(flat.columns)]
    lines += ["| " + " | ".join(str(cell).replace("|", r"\|") for cell in row) + " |" for row in flat.to_numpy()]
    return "\n".join(lines) + "\n"


LATEX_REPLACEMENTS = {"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "±": r"$\pm$", "†": r"\dag{}", "–": "--",
                      "−": "$-$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_REPLACEMENTS.get(char, char) for char in text)


def latex_table(frame: pd.DataFrame, caption: str) -> str:
    """A booktabs tabular; cells are already LaTeX, the index (method names) and headers are escaped."""
    columns = [frame.index.name or "", *frame.columns]
    lines = [r"\begin{table}", r"\centering", r"\begin{tabular}{l" + "c" * len(frame.columns) + "}", r"\toprule",
             " & ".join(latex_escape(c) for c in columns) + r" \\", r"\midrule"]
    lines += [" & ".join([latex_escape(str(i)), *map(str, r)]) + r" \\" for i, r in zip(frame.index, frame.to_numpy())]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(caption)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def html_table(frame: pd.DataFrame, escape: bool = True) -> str:
    """An HTML table; ``escape=False`` for cells that already are HTML (Table 3)."""
    shown = frame.reset_index() if frame.index.name else frame
    shown = shown.map(lambda v: html.escape(str(v))) if escape else shown
    return shown.to_html(escape=False, index=False, border=0, classes="table")


def image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


STYLE = """body{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em;color:#222}
table.table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}
table.table td,table.table th{border:1px solid #ccc;padding:3px 8px;text-align:left}
img{max-width:100%;border:1px solid #eee}.legend{font-size:0.9em;color:#444}"""


def html_page(title: str, sections: list[tuple[str, str]]) -> str:
    """One self-contained page: each section is (heading, HTML body)."""
    body = "\n".join(f"<h2>{html.escape(heading)}</h2>\n{content}" for heading, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n")


def html_list(items: list[str]) -> str:
    if not items:
        return "<p>Nothing.</p>"
    return "<ul>\n" + "\n".join(f"<li>{html.escape(item)}</li>" for item in items) + "\n</ul>"
