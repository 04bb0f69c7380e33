"""Print-ready output: figures at 7 and 3.5 inches with no text under 7 pt and nothing cut off, panels in the
paper's task order, n in every legend; the LaTeX table against its stated preamble; the escaping functions."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.legend import Legend
from matplotlib.text import Text

from benchmark.reporting import formats, plots
from benchmark.reporting.calibration import NEGATIVE_PER_CASE, calibration_rows
from benchmark.reporting.formats import Markup

TASKS = ["bms", "lcs", "ncc", "ecc", "ncs"]  # shuffled: the figures put them in the paper's order
PAPER_ORDER = ["ncc", "ncs", "ecc", "lcs", "bms"]
# a long name with its arguments, which the legends wrap to the figure; the last one would crash mathtext
# if it were parsed
METHODS = ["scratch-he", "genesis", "supervised [source=ecc, source_phantom_seed=1, lr=0.001] (linear)",
           "$\\cmd{$"]


def _scores() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"task": t, "method": m, "seed": s, "metric": "dice", "value": rng.uniform(0.6, 0.9)}
                         for t in TASKS for m in METHODS for s in range(5)])


def _curves() -> pd.DataFrame:
    rows = [{"task": t, "method": m, "fraction": f, "n_seeds": 3 if f < 1 else 5, "mean": 0.7 + f / 10,
             "low": 0.65 + f / 10, "high": 0.75 + f / 10} for t in TASKS for m in METHODS for f in (0.25, 0.5, 1.0)]
    return pd.DataFrame(rows)


def _savings() -> pd.DataFrame:
    return pd.DataFrame([{"task": "lcs", "method": "genesis", "fewer_labels": 0.75, "low": 0.3, "high": 0.75,
                          "lower_bound": True, "headline": True}])


def _histories() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    rows = []
    for t in TASKS:
        for m in METHODS:
            for s, epochs in enumerate((30, 30, 17)):
                run = f"{t}-{m}-{s}"
                rows += [{"run_id": run, "task": t, "method": m, "seed": s, "fraction": 1.0, "epoch": e,
                          "column": "val_dice", "value": 0.5 + e / 100} for e in range(epochs)]
    histories = pd.DataFrame(rows)
    primary = dict.fromkeys(histories["run_id"], "dice")
    from benchmark.reporting.curves import convergence_curves
    return histories, convergence_curves(histories, primary), primary


def _restoration() -> tuple[dict[str, np.ndarray], str]:
    image = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    return {"original": image, "transformed": image, "restored": image, "|restored - original|": image}, "ck $x"


def _calibration() -> tuple[pd.DataFrame, float]:
    rng = np.random.default_rng(1)
    scores = {f: pd.DataFrame([{"task": t, "method": m, "seed": s, "value": rng.normal(0.7 + 0.1 * f, 0.03)}
                               for t in TASKS for m in METHODS for s in range(4)]) for f in (0.1, 1.0)}
    rows = calibration_rows(scores, {METHODS[0]: METHODS[1]}, METHODS[1], [METHODS[2]], TASKS)
    per_case = pd.DataFrame({"check": NEGATIVE_PER_CASE, "task": TASKS[0], "method": METHODS[0],
                             "against": METHODS[1], "p": rng.uniform(0, 0.3, 12), "significant": False})
    return pd.concat([rows, per_case], ignore_index=True), 0.05


FIGURES = {
    "label_efficiency": (plots.draw_label_efficiency, lambda: (_curves(), dict.fromkeys(TASKS, "dice"), _savings())),
    "convergence": (plots.draw_convergence, _histories),
    "seeds_boxplot": (plots.draw_seed_boxes, lambda: (_scores(),)),
    "restoration": (plots.draw_restoration, _restoration),
    "calibration": (plots.draw_calibration, _calibration),
}


@pytest.fixture(scope="module", params=[(name, width) for name in FIGURES for width in plots.WIDTHS.values()],
                ids=lambda p: f"{p[0]}-{p[1]:g}in")
def drawn(request):
    name, width = request.param
    draw, data = FIGURES[name]
    with rc_context(plots.STYLE):
        figure = draw(*data(), width=width)
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        yield name, width, figure, canvas.get_renderer()


def _texts(figure):
    return [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_figures_are_laid_out_for_their_column(drawn):
    name, width, figure, renderer = drawn
    assert figure.get_figwidth() == width and figure.get_figheight() <= 9  # fits a page
    small = {t.get_text(): t.get_fontsize() for t in _texts(figure) if t.get_fontsize() < plots.MIN_FONT_PT}
    assert not small, f"text below {plots.MIN_FONT_PT} pt: {small}"
    drawn_box = figure.get_tightbbox(renderer)  # in inches: every drawn thing, ticks and legends included
    assert drawn_box.x0 >= -0.01 and drawn_box.y0 >= -0.01
    assert drawn_box.x1 <= width + 0.01 and drawn_box.y1 <= figure.get_figheight() + 0.01


def test_panels_follow_the_paper_and_legends_give_n(drawn):
    name, width, figure, renderer = drawn
    if name in ("restoration", "calibration"):  # one picture, not a panel per task
        return
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert titles == PAPER_ORDER
    texts = " ".join(t.get_text() for t in _texts(figure))
    assert "n=" in texts
    for legend in figure.findobj(Legend):
        assert all("n=" in text.get_text() for text in legend.get_texts())
    assert plots.literal(METHODS[-1]) in texts  # drawn literally, not parsed as mathtext


@pytest.mark.parametrize("count", [3, 10, 15, 20])
def test_methods_get_distinct_colours_up_to_twenty(count):
    colours = plots.method_colours([f"method-{index}" for index in range(count)])
    assert len(set(colours.values())) == count


@pytest.mark.parametrize("width", plots.WIDTHS.values())
def test_many_methods_keep_the_box_plots_readable(width):
    """Fifteen methods (a report with ablations and 2D variants): the boxes' labels under each panel do
    not run into each other, and every method has its own colour in the legend."""
    rng = np.random.default_rng(2)
    methods = [f"genesis-variant-{index} [loss=ssim] (2.5d)" for index in range(15)]
    scores = pd.DataFrame([{"task": t, "method": m, "seed": s, "metric": "dice", "value": rng.uniform(0.6, 0.9)}
                           for t in TASKS for m in methods for s in range(3)])
    with rc_context(plots.STYLE):
        figure = plots.draw_seed_boxes(scores, width=width)
        renderer = FigureCanvasAgg(figure).get_renderer()
        figure.draw(renderer)
        for ax in figure.axes:
            if not ax.get_visible():
                continue
            boxes = [label.get_window_extent(renderer) for label in ax.get_xticklabels() if label.get_text()]
            assert len(boxes) == len(methods)
            assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:])), ax.get_title()
        drawn_box = figure.get_tightbbox(renderer)
        assert drawn_box.x0 >= -0.01 and drawn_box.x1 <= width + 0.01
    handles = figure.legends[0].legend_handles
    assert len({handle.get_color() for handle in handles}) == len(methods)


@pytest.mark.parametrize("width", plots.WIDTHS.values())
def test_a_tall_legend_makes_the_figure_taller_not_the_panels_flatter(width):
    """Names that wrap to several lines (a 200-character name, one with its own line breaks): the figure
    grows, every panel keeps at least an inch of height and the layout is not abandoned."""
    methods = ["x" * 200, "a\nb\n\n<script>alert(1)</script>", "$\\frac{1}{0}$", "scratch-he", "genesis"]
    rng = np.random.default_rng(3)
    scores = pd.DataFrame([{"task": t, "method": m, "seed": s, "metric": "dice", "value": rng.uniform(0.6, 0.9)}
                           for t in TASKS for m in methods for s in range(2)])
    with rc_context(plots.STYLE), warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied because axes sizes collapsed"
        figure = plots.draw_seed_boxes(scores, width=width)
        renderer = FigureCanvasAgg(figure).get_renderer()
        figure.draw(renderer)
    heights = [ax.get_window_extent(renderer).height / figure.dpi for ax in figure.axes if ax.get_visible()]
    assert min(heights) >= 1.0
    drawn_box = figure.get_tightbbox(renderer)
    assert drawn_box.y0 >= -0.01 and drawn_box.y1 <= figure.get_figheight() + 0.01


def test_each_figure_is_saved_as_pdf_and_the_wide_one_as_png_reproducibly(tmp_path):
    scores = _scores()
    scores = scores[scores["task"] == "ncc"]
    written = plots.draw_both_widths(plots.draw_seed_boxes, (scores,), tmp_path / "box")
    assert [p.name for p in written] == ["box.png", "box.pdf", "box_column.pdf"]
    assert [p.read_bytes()[:4] for p in written] == [b"\x89PNG", b"%PDF", b"%PDF"]
    first = [p.read_bytes() for p in written]
    plots.draw_both_widths(plots.draw_seed_boxes, (scores,), tmp_path / "box")
    assert [p.read_bytes() for p in written] == first  # no date inside: regenerating changes nothing


# --------------------------------------------------------------------------- escaping and LaTeX

SPECIALS = "a\\b{c}$d&e#f^g_h~i%j<k>l|m"


def test_escaping_functions():
    assert formats.html_text("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert formats.html_text('"q"') == "&quot;q&quot;"
    assert formats.html_text(Markup("<b>1</b>")) == "<b>1</b>"
    assert formats.markdown_text("a|b`c\nd*e_f[g]<h>$i~j#k\\l") == r"a\|b\`c d\*e\_f\[g\]\<h\>\$i\~j\#k\\l"
    assert formats.latex_text(SPECIALS) == (r"a\textbackslash{}b\{c\}\$d\&e\#f\textasciicircum{}g\_h"
                                            r"\textasciitilde{}i\%j\textless{}k\textgreater{}l\textbar{}m")
    assert formats.latex_text("Müller α ± x") == r"Muller ? $\pm$ x"
    with pytest.raises(TypeError):
        formats.html_page("t", [("s", "<p>not markup</p>")])
    with pytest.raises(TypeError):
        Markup("<p>") + "<script>"


KERNEL_AND_BOOKTABS = {"begin", "end", "centering", "caption", "textbf", "textsuperscript", "dag", "ddag", "pm",
                       "cdot", "times", "textbackslash", "textasciicircum", "textasciitilde", "textless",
                       "textgreater", "textbar", "toprule", "midrule", "bottomrule"}


def check_against_minimal_preamble(tex: str) -> None:
    """What a LaTeX run with the stated preamble (article + booktabs) would reject, checked without TeX."""
    comments = [line for line in tex.splitlines() if line.startswith("%")]
    assert r"%   \documentclass{article}" in comments and r"%   \usepackage{booktabs}" in comments
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert set(re.findall(r"\\([A-Za-z]+)", body)) <= KERNEL_AND_BOOKTABS
    plain = re.sub(r"\\[\\{}$&#%_]|\\[A-Za-z]+(\{\})?", "", body)  # escaped specials and commands out
    depth = 0
    for char in plain:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0, "a closing brace without its opening one"
    assert depth == 0, "unbalanced braces"
    assert not re.search(r"[#^~%_]", plain), "an unescaped special character"
    assert plain.count("$") % 2 == 0 and set(re.findall(r"\$([^$]*)\$", plain)) <= {"", "-"}  # only our symbols
    assert re.findall(r"\\begin\{(\w+)\}", body) == list(reversed(re.findall(r"\\end\{(\w+)\}", body)))
    rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    columns = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", body).group(1))
    assert all(len(re.findall(r"(?<!\\)&", row)) == columns - 1 for row in rows)
    assert all(ord(char) < 128 for char in body)


def _table3_tex() -> str:
    table3 = pd.DataFrame([
        {"task": "t_1", "method": SPECIALS, "metric": "di%ce", "n_seeds": 3, "mean": 0.8, "sd": 0.01, "best": True,
         "marks_vs_baseline": "**", "marks_vs_best": "", "note": "p set to 0"},
        {"task": "t_1", "method": "scratch-he", "metric": "di%ce", "n_seeds": 1, "mean": 0.7, "sd": np.nan,
         "best": False, "marks_vs_baseline": "", "marks_vs_best": "***", "note": ""},
    ])
    wide = formats.table3_wide(table3, ["scratch-he", SPECIALS, "missing"], ["t_1", "t#2"], "tex")
    return formats.latex_table(wide, f"Caption with {SPECIALS} and ± † – − · ×.")


def test_the_latex_table_fits_its_stated_preamble():
    tex = _table3_tex()
    check_against_minimal_preamble(tex)
    assert formats.latex_text(SPECIALS) in tex and r"\textbf{0.800 $\pm$ 0.010} (n=3)" in tex


@pytest.mark.parametrize("broken", [r"\usepackage{siunitx}", r"\textbf{x", "a_b", r"\SI{1}{mm}", "x & y"])
def test_the_preamble_check_can_fail(broken):
    tex = _table3_tex().replace(r"\midrule", r"\midrule" + "\n" + broken + r" \\")
    with pytest.raises(AssertionError):
        check_against_minimal_preamble(tex)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX installation (checked against the preamble)")
def test_the_latex_table_compiles(tmp_path):
    (tmp_path / "table3.tex").write_text(_table3_tex(), encoding="utf-8")
    document = "\n".join([*formats.LATEX_PREAMBLE, r"\begin{document}", r"\input{table3.tex}", r"\end{document}"])
    (tmp_path / "paper.tex").write_text(document, encoding="utf-8")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    assert (tmp_path / "paper.pdf").is_file()
