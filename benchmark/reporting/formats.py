"""Writing the report's tables as Markdown, LaTeX and HTML, and the self-contained HTML page.

Every string that comes from a record or a plugin (method, task, profile and metric names, data
roots, notes, ids) is escaped for the format it is written in: HTML (``html.escape``), Markdown
(backslash before its markup characters, newlines folded) and LaTeX (its ten special characters,
``<``, ``>`` and ``|``, and anything outside ASCII). The only text written as it is, is
:class:`Markup`: built here, from numbers and fixed symbols.
"""

from __future__ import annotations

import base64
import html
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

MISSING = "–"
P_COLUMNS = ("p", "p_corrected", "p_vs_baseline", "p_vs_baseline_corrected", "p_vs_best", "p_vs_best_corrected",
             "min_p", "min_p_corrected", "p_vs_combined", "p_vs_combined_corrected")
DAGGER = {"md": "†", "html": "†", "tex": r"\dag{}"}
NOTE_MARK = {"md": "‡", "html": "‡", "tex": r"\ddag{}"}
LATEX_PREAMBLE = (r"\documentclass{article}", r"\usepackage{booktabs}")


class Markup(str):
    """Text already in its output format, built by this package from numbers and fixed symbols (never
    from a record): the writers below keep it as it is and escape every other string."""

    def __add__(self, other: str) -> Markup:
        if not isinstance(other, Markup):
            raise TypeError("only Markup can be appended to Markup; escape the text first")
        return Markup(str.__add__(self, other))


def join(parts: list[Markup], separator: str = "\n") -> Markup:
    """``parts`` joined; each must be Markup."""
    if not all(isinstance(part, Markup) for part in parts):
        raise TypeError("only Markup can be joined; escape the text first")
    return Markup(separator.join(parts))


# --------------------------------------------------------------------------- escaping


BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")  # reorder the text shown around them


def visible_controls(text: str) -> str:
    """``text`` with each bidirectional control character written as its code (``<U+202E>``): a name from a
    record cannot make the page or the table show its text, or its neighbours', in another order."""
    return BIDI_CONTROLS.sub(lambda match: f"<U+{ord(match.group()):04X}>", text)


def html_text(value: object) -> Markup:
    """``value`` as HTML: Markup as it is, anything else escaped (quotes included, bidirectional controls
    made visible)."""
    return value if isinstance(value, Markup) else Markup(html.escape(visible_controls(str(value)), quote=True))


MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|$~#])")


def markdown_text(value: object) -> str:
    """``value`` as Markdown text: Markup as it is; otherwise every markup character backslash-escaped
    (CommonMark lets any ASCII punctuation be escaped) and line breaks folded into spaces."""
    if isinstance(value, Markup):
        return value
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(visible_controls(str(value)).splitlines()))


LATEX_REPLACEMENTS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                      "^": r"\textasciicircum{}", "_": r"\_", "~": r"\textasciitilde{}", "%": r"\%",
                      "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "±": r"$\pm$",
                      "†": r"\dag{}", "‡": r"\ddag{}", "–": "--", "−": "$-$", "·": r"$\cdot$", "×": r"$\times$",
                      "[": "{[}", "]": "{]}",  # braced: a cell starting "[" is no optional argument of the row's "\\"
                      "\n": " ", "\r": " ", "\t": " "}


def latex_text(value: object) -> str:
    """``value`` as LaTeX text for the stated preamble: Markup as it is; otherwise the special characters
    escaped, accented letters without their accents and any other non-ASCII character as ``?``."""
    if isinstance(value, Markup):
        return value
    out = []
    for char in str(value):
        if char in LATEX_REPLACEMENTS:
            out.append(LATEX_REPLACEMENTS[char])
        elif char.isascii():
            out.append(char if char.isprintable() else " ")
        else:
            plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
            out.append(latex_text(plain) if plain else "?")
    return "".join(out)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula


def spreadsheet_cell(value: object) -> object:
    """A CSV cell that no spreadsheet runs as a formula: text starting with ``= + - @``, a tab or a
    carriage return, and not a number, gets a leading ``'`` (shown as text, OWASP's advice); numbers
    and other text are as they are."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell made safe by :func:`spreadsheet_cell` (column names included)."""
    safe = frame.rename(columns=spreadsheet_cell)
    for position in range(safe.shape[1]):
        if not pd.api.types.is_numeric_dtype(safe.iloc[:, position]):
            safe.isetitem(position, safe.iloc[:, position].map(spreadsheet_cell))
    return safe


# --------------------------------------------------------------------------- cells


def display_value(column: str, value: object) -> str:
    """A cell as text: p-values to 3 significant digits, other floats to 4 decimals, missing as '–'."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return MISSING
    if isinstance(value, (float, np.floating)):
        if np.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.3g}" if column in P_COLUMNS else f"{value:.4f}"
    return str(value)


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: [display_value(c, v) for v in frame[c]] for c in frame.columns}, index=frame.index)


def table3_cell(row: pd.Series | None, style: str) -> Markup:
    """mean ± s.d. (n), bold when best, ``*`` marks against the baseline, ``†`` marks against the best,
    ``‡`` when a test of the cell has a note (listed under the table). Built from numbers only."""
    if row is None:
        return Markup("--" if style == "tex" else MISSING)
    core = f"{row['mean']:.3f}" if np.isnan(row["sd"]) else f"{row['mean']:.3f} ± {row['sd']:.3f}"
    marks_base, marks_best = row["marks_vs_baseline"], DAGGER[style] * len(row["marks_vs_best"])
    note = NOTE_MARK[style] if row["note"] else ""
    if style == "tex":
        core = core.replace("±", r"$\pm$")
        core = rf"\textbf{{{core}}}" if row["best"] else core
        marks = "".join(rf"\textsuperscript{{{m}}}" for m in (marks_base, marks_best, note) if m)
    elif style == "html":
        core = f"<b>{core}</b>" if row["best"] else core
        marks = "".join(f"<sup>{m}</sup>" for m in (marks_base, marks_best, note) if m)
    else:
        core = f"**{core}**" if row["best"] else core
        marks = " ".join(m for m in (marks_base.replace("*", r"\*"), marks_best, note) if m)
    return Markup(f"{core} (n={row['n_seeds']}){' ' + marks if marks else ''}")


def table3_wide(table3: pd.DataFrame, methods: list[str], tasks: list[str], style: str,
                models: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows methods, columns tasks (with their metric), cells formatted for ``style`` (md, tex, html);
    ``models`` (per method: its backbone and parameter count) in the first columns."""
    metrics = table3.drop_duplicates("task").set_index("task")["metric"] if not table3.empty else pd.Series()
    cells = {} if models is None else {column: [str(models.at[m, column]) if m in models.index else MISSING
                                                for m in methods] for column in models.columns}
    for task in tasks:
        header = f"{task} ({metrics[task]})" if task in metrics else task
        own = table3[table3["task"] == task].set_index("method") if not table3.empty else pd.DataFrame()
        cells[header] = [table3_cell(own.loc[m] if m in own.index else None, style) for m in methods]
    return pd.DataFrame(cells, index=pd.Index(methods, name="method"), dtype=object)  # object: cells stay Markup


def table3_notes(table3: pd.DataFrame) -> list[str]:
    """The notes behind the ``‡`` marks of Table 3, one per cell that has one."""
    return [f"‡ {row.method} on {row.task}: {row.note}" for row in table3.itertuples() if row.note] \
        if not table3.empty else []


# --------------------------------------------------------------------------- tables


def _rows(frame: pd.DataFrame) -> tuple[list[object], list[list[object]]]:
    flat = frame.reset_index() if frame.index.name else frame
    return list(flat.columns), [list(row) for row in flat.itertuples(index=False)]


def markdown_table(frame: pd.DataFrame) -> str:
    header, rows = _rows(frame)
    lines = ["| " + " | ".join(markdown_text(c) for c in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_text(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_document(title: str, legend: str, body: str, notes: list[str] = ()) -> str:
    """A Markdown file: title, legend, the table (already Markdown), notes; title, legend and notes escaped."""
    listed = "".join(f"- {markdown_text(note)}\n" for note in notes)
    return f"# {markdown_text(title)}\n\n{markdown_text(legend)}\n\n{body}" + (f"\n{listed}" if listed else "")


def latex_table(frame: pd.DataFrame, caption: str) -> str:
    """A booktabs tabular in a table float; the header comment states the preamble it compiles with."""
    header, rows = _rows(frame)
    lines = ["% Generated by `benchmark report`. Compiles with this preamble (pdfLaTeX):",
             *(f"%   {line}" for line in LATEX_PREAMBLE),
             r"\begin{table}", r"\centering", r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(latex_text(c) for c in header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_text(cell) for cell in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_text(caption)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def html_table(frame: pd.DataFrame) -> Markup:
    """An HTML table; every header and cell escaped unless it is Markup."""
    header, rows = _rows(frame)
    head = "".join(f"<th>{html_text(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html_text(cell)}</td>" for cell in row) + "</tr>\n" for row in rows)
    return Markup(f'<table class="table">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>')


# --------------------------------------------------------------------------- the page


def paragraph(text: str, css_class: str = "") -> Markup:
    attribute = f' class="{html_text(css_class)}"' if css_class else ""
    return Markup(f"<p{attribute}>{html_text(text)}</p>")


def heading(text: str, level: int = 3) -> Markup:
    return Markup(f"<h{int(level)}>{html_text(text)}</h{int(level)}>")


def image_tag(path: Path, alt: str) -> Markup:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return Markup(f'<img alt="{html_text(alt)}" src="data:image/png;base64,{data}">')


def html_list(items: list[str]) -> Markup:
    if not items:
        return Markup("<p>Nothing.</p>")
    return Markup("<ul>\n" + "\n".join(f"<li>{html_text(item)}</li>" for item in items) + "\n</ul>")


STYLE = """body{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em;color:#222}
table.table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}
table.table td,table.table th{border:1px solid #ccc;padding:3px 8px;text-align:left}
img{max-width:100%;border:1px solid #eee}.legend{font-size:0.9em;color:#444}"""


def html_page(title: str, sections: list[tuple[str, Markup]]) -> str:
    """One self-contained page: each section is (heading, its HTML body as Markup)."""
    if not all(isinstance(content, Markup) for _, content in sections):
        raise TypeError("a section's body must be Markup; escape the text first")
    body = "\n".join(f"<h2>{html_text(name)}</h2>\n{content}" for name, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html_text(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{html_text(title)}</h1>\n{body}\n</body>\n</html>\n")
