"""Building the report: every table, test and figure of a results root, in one folder.

Reads the long results table (benchmark.reporting.table), computes its views (benchmark.reporting.views),
draws the figures (benchmark.reporting.plots, benchmark.reporting.restoration) and writes CSV, Markdown,
LaTeX, PNG and one self-contained ``index.html``. Whatever cannot be computed from the
results at hand (a missing cell, a single seed, no baseline run ...) is listed with its
reason in ``not_computed.md`` and on the page; nothing is silently left out.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmark.api.registry import METHODS
from benchmark.data import files
from benchmark.errors import UserError
from benchmark.reporting import CORRECTIONS, formats, plots, views
from benchmark.reporting.restoration import NotRestoration, restoration_panels
from benchmark.reporting.table import Results, export_table, read_results


@dataclass
class Settings:
    results: Path
    out: Path
    profile: str | None = None
    fraction: float | None = None
    baseline: str | None = None
    correction: str = "holm"
    progress: bool = True


@dataclass
class Report:
    """What the report found and wrote: the settings it resolved, files by name, gaps and notes."""

    profile: str
    fraction: float
    baseline: str | None
    correction: str
    methods: list[str]
    tasks: list[str]
    sections: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    not_computed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def choose_profile(table: pd.DataFrame, wanted: str | None) -> str:
    profiles = sorted(table["profile"].unique())
    if wanted is not None:
        if wanted not in profiles:
            raise UserError(f"--profile {wanted}: no runs of that profile (the results hold {', '.join(profiles)})")
        return wanted
    if len(profiles) > 1:
        raise UserError(f"the results hold runs of profiles {', '.join(profiles)}: choose one with --profile")
    return profiles[0]


def choose_baseline(methods: list[str], wanted: str | None) -> str | None:
    """``--baseline`` if given (it must have runs), else the registered method marked as baseline."""
    if wanted is not None:
        if wanted not in methods:
            raise UserError(f"--baseline {wanted}: no runs of that method (the results hold {', '.join(methods)})")
        return wanted
    registered = set(METHODS.names())
    marked = [m for m in methods if m in registered and METHODS.get(m).baseline]
    return marked[0] if marked else None


def choose_fraction(table: pd.DataFrame, wanted: float | None) -> float:
    if wanted is not None and not np.isclose(table["fraction"], wanted).any():
        present = ", ".join(f"{f:g}" for f in sorted(table["fraction"].unique()))
        raise UserError(f"--fraction {wanted:g}: no runs at that fraction (the results hold {present})")
    return 1.0 if wanted is None else wanted


class Writer:
    """Writes the report's files into one folder (atomically) and keeps the list."""

    def __init__(self, out: Path, report: Report) -> None:
        self.out, self.report = Path(out), report

    def text(self, name: str, content: str) -> Path:
        path = self.out / name
        files.write_atomic(path, lambda tmp: tmp.write_text(content, encoding="utf-8"))
        self.report.files.append(path)
        return path

    def frame(self, name: str, frame: pd.DataFrame, title: str, legend: str = "") -> str:
        """``name``.csv and .md; returns the HTML of the table for the page."""
        files.write_csv(self.out / f"{name}.csv", frame)
        self.report.files.append(self.out / f"{name}.csv")
        shown = formats.display_frame(frame)
        self.text(f"{name}.md", f"# {title}\n\n{legend}\n\n{formats.markdown_table(shown)}")
        return f'<p class="legend">{legend}</p>\n{formats.html_table(shown)}'

    def figure(self, name: str, draw: Callable[..., None], *data: object) -> Path:
        """Draw ``draw(*data, path)`` into ``name``."""
        path = self.out / name
        draw(*data, path)
        self.report.files.append(path)
        return path


def table3_legend(report: Report) -> str:
    correction = CORRECTIONS[report.correction]
    return (f"Test primary metric of each task (named in its column), mean ± s.d. across seeds at label fraction "
            f"{report.fraction:g} (n = seeds). Bold: best mean of the task. * / ** / ***: Welch t-test "
            f"(two-sided) against the baseline ({report.baseline or 'none'}) with p < .05 / .01 / .001 after "
            f"{correction} correction over the task's comparisons with the baseline; † / †† / †††: the same "
            f"against the best method of the task. {formats.MISSING}: not computed (see the list).")


def write_table3(writer: Writer, report: Report, scores: pd.DataFrame) -> None:
    table3, gaps = views.table3(scores, report.methods, report.tasks, report.baseline, report.correction)
    report.not_computed += gaps
    legend = table3_legend(report)
    files.write_csv(writer.out / "table3.csv", table3)
    writer.report.files.append(writer.out / "table3.csv")
    wide = {style: formats.table3_wide(table3, report.methods, report.tasks, style) for style in ("md", "tex", "html")}
    writer.text("table3.md", f"# Table 3\n\n{legend}\n\n{formats.markdown_table(wide['md'])}")
    writer.text("table3.tex", formats.latex_table(wide["tex"], legend))
    report.sections.append(("Table 3", f'<p class="legend">{legend}</p>\n{formats.html_table(wide["html"], False)}'))


def write_pairwise(writer: Writer, report: Report, table: pd.DataFrame, scores: pd.DataFrame) -> None:
    parts, every = [], []
    legend = ("Every pair of methods per task. Welch: independent runs (one value per seed). Wilcoxon "
              "signed-rank: per-case values averaged over each method's seeds, paired by case id "
              "(segmentation). DeLong: the two runs of the same seed on the same candidates "
              f"(classification). p corrected with {CORRECTIONS[report.correction]} within each (task, test) "
              "family; marks from the corrected p.")
    for task in report.tasks:
        tests, gaps = views.pairwise_tests(table, scores, report.fraction, task, report.correction)
        report.not_computed += gaps
        if tests.empty:
            continue
        every.append(tests)
        parts.append(f"<h3>{task}</h3>\n" + writer.frame(f"pairwise_{task}", tests, f"Pairwise tests: {task}", legend))
    if every:
        files.write_csv(writer.out / "pairwise.csv", pd.concat(every, ignore_index=True))
        writer.report.files.append(writer.out / "pairwise.csv")
    report.sections.append(("Pairwise tests", "\n".join(parts) or "<p>No test could be computed.</p>"))


def write_intervals(writer: Writer, report: Report, table: pd.DataFrame, scores: pd.DataFrame) -> None:
    intervals, gaps = views.confidence_intervals(table, scores, report.fraction)
    report.not_computed += gaps
    legend = ("Bootstrap 95% confidence intervals (scipy.stats.bootstrap, BCa; percentile where BCa is "
              f"degenerate, see note) with {views.BOOTSTRAP_RESAMPLES} resamples: of the mean across seeds, "
              "and within each run across its test cases (AUC: positives and negatives resampled separately).")
    body = writer.frame("confidence_intervals", intervals, "Confidence intervals", legend) if not intervals.empty \
        else "<p>No interval could be computed.</p>"
    report.sections.append(("Confidence intervals", body))


def write_label_efficiency(writer: Writer, report: Report, table: pd.DataFrame) -> None:
    curves = views.label_efficiency(table)
    savings, gaps = views.fewer_labels(table, report.baseline)
    report.not_computed += gaps
    if curves.empty:
        report.not_computed.append("label efficiency: no finite primary metric in these results")
        return
    parts = [writer.frame("label_efficiency", curves, "Label efficiency",
                          "Test primary metric per label fraction: mean over seeds and the t-based 95% interval "
                          "of the mean (none with one seed).")]
    if curves["fraction"].nunique() < 2:
        report.not_computed.append("label-efficiency curve: the results hold a single label fraction")
    metric = table.drop_duplicates("task").set_index("task")["primary_metric"].to_dict()
    saved = {(r.task, r.method): r.fewer_labels for r in savings.itertuples()}
    path = writer.figure("label_efficiency.png", plots.plot_label_efficiency, curves, metric, saved)
    parts.insert(0, formats.image_tag(path, "label efficiency"))
    if not savings.empty:
        parts.append(writer.frame("fewer_labels", savings, "Fewer labels",
                                  "Share of training labels saved, 1 − f: f is the smallest label fraction (linearly "
                                  "interpolated) at which the method's mean reaches the baseline's mean on the "
                                  "full training set."))
    report.sections.append(("Label efficiency", "\n".join(parts)))


def write_convergence(writer: Writer, report: Report, results: Results, table: pd.DataFrame) -> None:
    histories = results.histories[results.histories["run_id"].isin(table["run_id"])]
    histories = views.at_fraction(histories, report.fraction)
    primary = table.drop_duplicates("run_id").set_index("run_id")["primary_metric"].to_dict()
    per_run, gaps = views.convergence(histories, primary, report.fraction)
    report.not_computed += gaps
    if per_run.empty:
        report.not_computed.append(f"convergence: no validation history at fraction {report.fraction:g}")
        return
    path = writer.figure("convergence.png", plots.plot_convergence, histories, primary)
    files.write_csv(writer.out / "convergence_runs.csv", per_run)
    report.files.append(writer.out / "convergence_runs.csv")
    summary = views.convergence_summary(per_run, report.baseline)
    legend = (f"Fine-tuning epochs until the validation primary metric first reaches "
              f"{views.CONVERGENCE_SHARE:.0%} of its best value, mean over seeds at fraction {report.fraction:g}; "
              f"faster_than_baseline = 1 − mean / mean of {report.baseline or 'the baseline'}.")
    report.sections.append(("Convergence", formats.image_tag(path, "convergence") + "\n" +
                            writer.frame("convergence", summary, "Convergence", legend)))


def write_restoration(writer: Writer, report: Report, settings: Settings, table: pd.DataFrame) -> None:
    parts = []
    checkpoints = sorted(table["checkpoint_id"].dropna().unique())
    for checkpoint in tqdm(checkpoints, desc="restoration pictures", disable=not settings.progress, leave=False):
        try:
            panels = restoration_panels(settings.results, checkpoint)
        except NotRestoration as reason:
            report.notes.append(f"no restoration picture for {checkpoint}: {reason}")
            continue
        except (UserError, KeyError, OSError) as error:
            report.not_computed.append(f"restoration picture for {checkpoint}: {error}")
            continue
        title = f"{checkpoint}: central slice of a validation cube of the pretraining pool"
        path = writer.figure(f"restoration_{checkpoint}.png", plots.plot_restoration, panels, title)
        parts.append(formats.image_tag(path, title))
    report.sections.append(("Restoration", "\n".join(parts) or "<p>No restoration method in these results.</p>"))


def build_report(settings: Settings) -> Report:
    results = read_results(settings.results)
    for message in results.skipped:
        print(f"warning: {message}", file=sys.stderr)
    profile = choose_profile(results.table, settings.profile)
    table, duplicates = views.keep_newest_runs(results.table[results.table["profile"] == profile])
    methods = sorted(table["method"].unique())
    baseline = choose_baseline(methods, settings.baseline)
    methods = ([baseline] if baseline else []) + [m for m in methods if m != baseline]
    report = Report(profile=profile, fraction=choose_fraction(table, settings.fraction), baseline=baseline,
                    correction=settings.correction, methods=methods, tasks=sorted(table["task"].unique()),
                    notes=[*results.skipped, *duplicates])
    if baseline is None:
        report.not_computed.append("no baseline method in these results (use --baseline): no test against it")
    writer = Writer(settings.out, report)
    export_table(results.table, settings.out / "results_table.csv")
    export_table(results.table, settings.out / "results_table.parquet")
    report.files += [settings.out / "results_table.csv", settings.out / "results_table.parquet"]
    scores, gaps = views.seed_scores(table, report.fraction)
    report.not_computed += gaps
    write_table3(writer, report, scores)
    write_pairwise(writer, report, table, scores)
    write_intervals(writer, report, table, scores)
    if scores.empty:
        report.not_computed.append(f"box plots: no run at fraction {report.fraction:g}")
    else:
        path = writer.figure("seeds_boxplot.png", plots.plot_seed_boxes, scores)
        report.sections.append(("Seeds", formats.image_tag(path, "seeds")))
    write_label_efficiency(writer, report, table)
    write_convergence(writer, report, results, table)
    write_restoration(writer, report, settings, table)
    write_lists_and_page(writer, report, settings)
    return report


def write_lists_and_page(writer: Writer, report: Report, settings: Settings) -> None:
    lists = ("# Not computed\n\n" + "".join(f"- {item}\n" for item in report.not_computed) +
             "\n# Notes\n\n" + "".join(f"- {item}\n" for item in report.notes))
    writer.text("not_computed.md", lists)
    summary = (f"<p>Results {settings.results} · profile {report.profile} · Table 3, tests and convergence at "
               f"label fraction {report.fraction:g} · baseline {report.baseline or 'none'} · correction "
               f"{CORRECTIONS[report.correction]} · methods {', '.join(report.methods)} · tasks "
               f"{', '.join(report.tasks)}</p>")
    files = formats.html_list([path.name for path in [*report.files, settings.out / "index.html"]])
    sections = [("Settings", summary), *report.sections, ("Not computed", formats.html_list(report.not_computed)),
                ("Notes", formats.html_list(report.notes)), ("Files", files)]
    writer.text("index.html", formats.html_page("Benchmark report", sections))
