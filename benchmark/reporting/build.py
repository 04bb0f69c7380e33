"""Building the report: every table, test and figure of a results root, in one folder.

Reads the long results table (benchmark.reporting.table), keeps the runs that may be compared
(benchmark.reporting.sources), computes its views (benchmark.reporting.views, .curves), draws the
figures (benchmark.reporting.plots, .restoration), puts a method's ablations and its restoration
losses side by side (benchmark.reporting.comparisons), adds what ``benchmark analyze`` wrote
(benchmark.reporting.analyses) and writes CSV, Markdown, LaTeX, PNG and PDF and one
self-contained ``index.html``, all inside ``--out`` (every file name is checked to be a
plain name). Whatever cannot be computed from the results at hand (a missing cell, a single
seed, no baseline run, a record that cannot be read ...) is listed with its reason in
``not_computed.md`` and on the page; nothing is silently left out.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmark.api.registry import METHODS
from benchmark.data import files
from benchmark.engine import store
from benchmark.errors import UserError
from benchmark.model.dims import DIMS
from benchmark.names import check_name, is_valid_name, one_line
from benchmark.reporting import (
    ALPHA,
    ANALYSES_FOLDER,
    CORRECTIONS,
    FAMILIES,
    POWER,
    analyses,
    calibration,
    comparisons,
    curves,
    file_stem,
    formats,
    plots,
    sources,
    task_order,
    variants,
    views,
)
from benchmark.reporting.formats import Markup
from benchmark.reporting.restoration import NotRestoration, recorded_method_has_pretext_task, restoration_panels
from benchmark.reporting.stats import T_INTERVAL
from benchmark.reporting.table import Results, export_table, read_results

PAGE = "index.html"
STAGING = ".report-staging"  # the new report is written here, then moved into --out
MANIFEST = ".report-files"  # the names the last report wrote, so the next one removes those it does not
LOCK = ".report.lock"


@dataclass
class Settings:
    results: Path
    out: Path
    profile: str | None = None
    fraction: float | None = None
    baseline: str | None = None
    correction: str = "holm"
    family: str = "task"
    select: Sequence[str] = ()
    progress: bool = True
    analyses: Path | None = None  # where benchmark analyze wrote (None: its default folder, if it is there)
    positive_controls: Sequence[str] = ()  # methods expected to beat the baseline at the lowest fraction


@dataclass
class Report:
    """What the report found and wrote: the settings it resolved, files by name, gaps and notes."""

    profile: str
    fraction: float
    baseline: str | None
    correction: str
    family: str
    methods: list[str]
    tasks: list[str]
    sections: list[tuple[str, Markup]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    not_computed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def choose_profile(table: pd.DataFrame, wanted: str | None) -> str:
    """The one profile the report covers (a label: the name and any replaced fields, ``variants``)."""
    profiles = sorted(table["profile"].unique())
    held = ", ".join(f"'{profile}'" for profile in profiles)  # quoted: a label holds commas and spaces
    if wanted is not None:
        if wanted not in profiles:
            raise UserError(f"--profile '{wanted}': no runs of that profile (the results hold {held})")
        return wanted
    if len(profiles) > 1:
        raise UserError(f"the results hold runs of profiles {held}: choose one with --profile, in quotes")
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
    if wanted is not None and not np.isclose(table["fraction"], wanted, atol=0.0).any():
        present = ", ".join(f"{f:g}" for f in sorted(table["fraction"].unique()))
        raise UserError(f"--fraction {wanted:g}: no runs at that fraction (the results hold {present})")
    return 1.0 if wanted is None else wanted


def prepare_out(out: Path) -> Path:
    """``--out`` as a folder (created if missing); a one-line error if it is a file or cannot be made."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {out}: cannot create the folder ({error.strerror or error})") from error
    return out


class Writer:
    """Writes the report's files into a staging folder inside ``out`` and keeps the list of their final
    paths; every file name is checked to be a plain name, so nothing is written outside the folder.
    ``publish`` then moves them into ``out``."""

    def __init__(self, out: Path, report: Report) -> None:
        self.out, self.report = Path(out), report
        self.stage = self.out / STAGING
        if self.stage.is_symlink() or self.stage.is_file():
            self.stage.unlink()
        elif self.stage.exists():
            shutil.rmtree(self.stage)  # left by a report that was killed
        self.stage.mkdir()

    def path(self, name: str) -> Path:
        """Where to write ``name`` now (in the staging folder); listed under its final path."""
        self.report.files.append(self.out / check_name(name, "report file"))
        return self.stage / name

    def text(self, name: str, content: str) -> Path:
        path = self.path(name)
        files.write_atomic(path, lambda tmp: tmp.write_text(content, encoding="utf-8"))
        return path

    def csv(self, name: str, frame: pd.DataFrame) -> Path:
        """``name`` written as CSV, its text cells safe to open in a spreadsheet."""
        path = self.path(name)
        files.write_csv(path, formats.spreadsheet_safe(frame))
        return path

    def frame(self, name: str, frame: pd.DataFrame, title: str, legend: str) -> Markup:
        """``name``.csv and .md; returns the HTML of the legend and the table for the page."""
        self.csv(f"{name}.csv", frame)
        shown = formats.display_frame(frame)
        self.text(f"{name}.md", formats.markdown_document(title, legend, formats.markdown_table(shown)))
        return formats.paragraph(legend, "legend") + formats.html_table(shown)

    def copy(self, source: Path, name: str) -> Path:
        """``source`` copied (its bytes) to ``name``."""
        path = self.path(name)
        content = Path(source).read_bytes()
        files.write_atomic(path, lambda tmp: tmp.write_bytes(content))
        return path

    def figure(self, name: str, draw: plots.Draw, *data: object) -> Path:
        """``name``.png/.pdf at 7 inches and ``name``_column.pdf at 3.5; returns the 7-inch PNG."""
        check_name(name, "report file")
        written = plots.draw_both_widths(draw, data, self.stage / name)
        for path in written:
            self.path(path.name)
        return written[0]

    def publish(self) -> None:
        """Move the new report into ``out``: first the old page goes, then the old report's files that
        the new one does not write, then the new files, the page last. A report killed at any instant
        leaves the old report whole or no index.html, never a page beside another report's tables."""
        names = list(dict.fromkeys(path.name for path in self.report.files))
        (self.out / PAGE).unlink(missing_ok=True)
        for name in previous_report_files(self.out) - set(names):
            if (self.out / name).is_file() or (self.out / name).is_symlink():
                (self.out / name).unlink()
        files.write_atomic(self.out / MANIFEST, lambda tmp: tmp.write_text("".join(f"{name}\n" for name in names),
                                                                            encoding="utf-8"))
        for name in sorted(names, key=lambda name: name == PAGE):
            os.replace(self.stage / name, self.out / name)
        shutil.rmtree(self.stage)


def previous_report_files(out: Path) -> set[str]:
    """The plain file names the last report in ``out`` wrote (anything else in its list, and the report's
    own bookkeeping files, are ignored)."""
    try:
        listed = (out / MANIFEST).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return set()
    return {name for name in listed if is_valid_name(name)} - {MANIFEST, LOCK, STAGING}


def family_text(report: Report) -> str:
    return "each task's comparisons" if report.family == "task" else "all tasks' comparisons together"


def table3_legend(report: Report, provenance: str) -> str:
    correction = CORRECTIONS[report.correction]
    return (f"Test primary metric of each task (named in its column), mean ± s.d. across seeds at label fraction "
            f"{report.fraction:g} (n = seeds; table3.csv adds the 95% {T_INTERVAL} of the mean). Bold: best mean of "
            f"the task. * / ** / ***: Welch t-test (two-sided) against the baseline ({report.baseline or 'none'}) "
            f"with p < .05 / .01 / .001 after {correction} correction over {family_text(report)} with the baseline "
            f"(the family is named in table3.csv); † / †† / †††: the same against the best method of the task, which "
            f"was chosen on these same scores (so these p-values do not account for the choice). ‡: a test of the "
            f"cell has a note, or its runs a warning such as leakage of the task's data into released weights "
            f"(below; such a cell may still be the best mean). No mark: not significant, or not tested; "
            f"power.csv and table3.csv give the "
            f"smallest difference each test could detect. {formats.MISSING}: not computed (see the list). "
            f"{provenance}")


def write_table3(writer: Writer, report: Report, scores: pd.DataFrame, provenance: pd.DataFrame,
                 table: pd.DataFrame) -> None:
    legend = table3_legend(report, sources.provenance_sentence(provenance))
    write_method_table(writer, report, scores, provenance, report.methods,
                       views.backbone_columns(table, report.methods), ("table3", "Table 3", legend),
                       views.cell_warnings(table))


def check_positive_controls(report: Report, positive: Sequence[str]) -> None:
    """Each ``--positive-control`` names, once, a method of these runs other than the baseline (checked before
    any section is computed)."""
    repeated = sorted({name for name in positive if positive.count(name) > 1})
    if repeated:
        raise UserError(f"--positive-control {repeated[0]!r} is given twice: it would be counted twice")
    unknown = sorted(set(positive) - set(report.methods))
    if unknown:
        raise UserError(f"--positive-control {', '.join(map(repr, unknown))}: no such method in these runs "
                        f"({', '.join(map(repr, report.methods))}; a label with settings goes in quotes)")
    if report.baseline in positive:
        raise UserError(f"--positive-control {report.baseline!r} is the baseline itself: name a method to test "
                        "against it")


def write_calibration(writer: Writer, report: Report, table: pd.DataFrame, positive: Sequence[str]) -> None:
    """The calibration section (``benchmark.reporting.calibration``), when a negative control or a
    positive control named by the user (``check_positive_controls``) is in the runs."""
    controls = calibration.negative_controls(table)
    if not controls and not positive:
        return
    fractions = sorted(table["fraction"].unique())
    scores = {float(f): views.seed_scores(table, float(f))[0] for f in fractions}
    rows = calibration.calibration_rows(scores, controls, report.baseline, positive, report.tasks)
    per_case, gaps = calibration.per_case_rows(table, scores, controls, report.tasks)
    known = set(report.not_computed)  # at the report's fraction the pairwise section has named them
    report.not_computed += [gap for gap in gaps if gap.split(": ", 1)[1] not in known]
    summary = [calibration.false_positive_summary(rows), calibration.detected_summary(rows, "label budget"),
               calibration.detected_summary(rows, "positive control")]
    per_case_legend = ""
    if not per_case.empty:  # after the Welch rows of the negative control
        null = rows["check"] == calibration.NEGATIVE
        rows = pd.concat([rows[null], per_case, rows[~null]], ignore_index=True)
        summary.insert(1, calibration.false_positive_summary(per_case, calibration.NEGATIVE_PER_CASE))
        per_case_legend = ("'Negative control, per case': the same pairs with the pairwise tables' per-case tests "
                           "(Wilcoxon, DeLong; uncorrected), which hold the trained models fixed: their share of p < "
                           f"{ALPHA:g} shows how far their 'significant' is from a verdict on methods. ")
    legend = ("Calibration: the Welch test across seeds behind Table 3's marks (two-sided, uncorrected) on effects "
              "known not to exist (a negative control against the method it copies in distribution: its share of "
              f"p < {ALPHA:g} should be {ALPHA:.0%}) and known to exist (fewer labels for the baseline; the positive "
              "controls named on the command line, at the lowest label fraction). " + per_case_legend
              + " ".join(f"{line[0].upper()}{line[1:]}." for line in summary))
    parts = [writer.frame("calibration", rows, "Calibration", legend)]
    if rows["p"].notna().any():
        path = writer.figure("calibration", plots.draw_calibration, rows, ALPHA)
        parts.append(formats.image_tag(path, "calibration: the negative control's p-values and the known effects"))
    report.sections.append(("Calibration", formats.join(parts)))


def write_dimensions(writer: Writer, report: Report, scores: pd.DataFrame, provenance: pd.DataFrame,
                     table: pd.DataFrame) -> None:
    """The paper's dimensionality comparison, when the runs have more than one: Table 3's rows and
    statistics, ordered 2D, 2.5D, 3D, each row with its dimensionality and adapter."""
    runs = table.drop_duplicates("run_id")
    dims = runs.groupby("method")["dims"].first()
    if dims[dims.index.isin(report.methods)].nunique() < 2:
        return
    methods = sorted(report.methods, key=lambda m: (DIMS.index(dims[m]), report.methods.index(m)))
    adapters = runs.groupby("method")["adapter"].agg(lambda values: ", ".join(sorted(set(values.dropna()))))
    models = views.backbone_columns(table, methods)
    models.insert(0, "adapter", [adapters[m] or "–" for m in models.index])
    models.insert(0, "dims", [dims[m] for m in models.index])
    legend = ("The dimensionality comparison (Models Genesis: 3D Genesis against 2D and 2.5D approaches): the rows "
              "of Table 3 ordered by how the network sees the task, 2D (a 2D network on axial slices, or on the "
              "central slice for classification), 2.5D (three adjacent slices, or the three orthogonal planes, "
              "as channels) and 3D, with the same cells, marks and tests. " + table3_legend(
                  report, sources.provenance_sentence(provenance)))
    write_method_table(writer, report, scores, provenance, methods, models, ("dimensions", "3D vs 2D/2.5D", legend),
                       views.cell_warnings(table))


def write_method_table(writer: Writer, report: Report, scores: pd.DataFrame, provenance: pd.DataFrame,
                       methods: list[str], models: pd.DataFrame, names: tuple[str, str, str],
                       warned: dict[tuple[str, str], str]) -> None:
    """A Table 3 layout of ``methods`` (rows, with the ``models`` columns first) on the report's tasks:
    ``<stem>.csv``, ``.md`` and ``.tex``, and a section of the page; ``names``: (stem, title, legend)."""
    stem, title, legend = names
    table3, gaps = views.table3(scores, methods, report.tasks, report.baseline, report.correction, report.family)
    report.not_computed += [gap for gap in gaps if gap not in report.not_computed]
    if not table3.empty:  # a cell whose runs recorded a warning (leakage) carries it as a note
        table3["note"] = [("; ".join(filter(None, [note, warned.get((task, method), "")])))
                          for task, method, note in zip(table3["task"], table3["method"], table3["note"])]
    notes = formats.table3_notes(table3)
    with_sources = table3.merge(provenance.drop(columns="runs"), on="task", how="left") if not table3.empty else table3
    writer.csv(f"{stem}.csv", with_sources)
    wide = {style: formats.table3_wide(table3, methods, report.tasks, style, models) for style in ("md", "tex", "html")}
    writer.text(f"{stem}.md", formats.markdown_document(title, legend, formats.markdown_table(wide["md"]), notes))
    writer.text(f"{stem}.tex", formats.latex_table(wide["tex"], " ".join([legend, *notes])))
    body = formats.paragraph(legend, "legend") + formats.html_table(wide["html"])
    report.sections.append((title, body + formats.html_list(notes) if notes else body))


def write_pairwise(writer: Writer, report: Report, table: pd.DataFrame, scores: pd.DataFrame) -> None:
    tests, gaps = views.pairwise_tests(table, scores, report.fraction, report.tasks, report.correction, report.family)
    report.not_computed += gaps
    legend = ("Every pair of methods per task. Welch: independent runs (one value per seed). Wilcoxon "
              "signed-rank: per-case values averaged over each method's seeds, paired by case id "
              "(segmentation). DeLong: the two runs of the same seed on the same candidates "
              "(classification). Wilcoxon and DeLong hold the trained models fixed: the spread between training "
              "runs is not in them, so their verdict reads 'significant for these trained models': these models "
              "differ on these cases, not necessarily the methods (on the phantoms they call a negative control, "
              "the baseline from another random stream, different; the calibration section counts how often); the "
              "verdict on methods is Welch's. "
              f"p corrected with {CORRECTIONS[report.correction]} within each family "
              f"({'a test on a task' if report.family == 'task' else 'a test over all tasks'}; named in the "
              f"correction column); marks from the corrected p. min_p: the smallest p the test can return at its n "
              f"(min_p_corrected: after the correction); where it is not below {ALPHA:g} the verdict is 'cannot "
              f"reach', not 'not significant'. mdd: the smallest true difference the test detects with "
              f"{POWER:.0%} power at the family's Bonferroni level (from the observed variability; ∞: cannot reach).")
    parts = []
    for task in report.tasks:
        own = tests[tests["task"] == task]
        if not own.empty:
            parts.append(formats.heading(task) + writer.frame(f"pairwise_{file_stem(task)}", own,
                                                              f"Pairwise tests: {task}", legend))
    if not tests.empty:
        writer.csv("pairwise.csv", tests)
    report.sections.append(("Pairwise tests", formats.join(parts) if parts else
                            formats.paragraph("No test could be computed.")))
    write_power(writer, report, tests)


def write_power(writer: Writer, report: Report, tests: pd.DataFrame) -> None:
    """power.csv and its section: per task and test, the verdict next to the smallest detectable difference."""
    if tests.empty:
        report.not_computed.append("power: no test could be computed")
        return
    power = tests[["task", "test", "method_a", "method_b", "pairing", "n", "difference", "p_corrected", "verdict",
                   "variability", "variability_of", "mdd", "correction"]]
    legend = (f"For every test of the pairwise tables: the smallest true difference it detects with {POWER:.0%} power "
              f"(mdd), two-sided, at the Bonferroni level {ALPHA:g}/k of its family of k tests (which Holm's first "
              f"step uses and Benjamini-Hochberg never exceeds), from the observed variability: Welch from the "
              f"pooled s.d. of the seeds (Student approximation), Wilcoxon from the s.d. of the per-case "
              f"differences (paired t approximation), DeLong from the s.e. of the AUC difference. A 'not "
              f"significant' with a small mdd says 'no difference as large as mdd'; with a large one, 'could not "
              f"tell'. ∞: the test cannot reach significance at this n.")
    report.sections.append(("Power", writer.frame("power", power, "Power: smallest detectable differences", legend)))


def write_intervals(writer: Writer, report: Report, table: pd.DataFrame, scores: pd.DataFrame) -> None:
    intervals, gaps = views.confidence_intervals(table, scores, report.fraction, report.tasks)
    report.not_computed += gaps
    legend = (f"95% confidence intervals. A mean (over seeds; over one run's test cases): {T_INTERVAL}, whose "
              f"coverage holds at 3 and 5 values where the bootstrap's does not. One run's AUC: BCa bootstrap "
              f"(positives and negatives resampled separately, {views.BOOTSTRAP_RESAMPLES} resamples; only with at "
              f"least {views.MIN_AUC_CLASS} of each). The method of each row is in ci_method.")
    body = writer.frame("confidence_intervals", intervals, "Confidence intervals", legend) if not intervals.empty \
        else formats.paragraph("No interval could be computed.")
    report.sections.append(("Confidence intervals", body))


def write_label_efficiency(writer: Writer, report: Report, table: pd.DataFrame) -> None:
    efficiency = curves.label_efficiency(table, report.tasks)
    savings, gaps = curves.fewer_labels(table, report.baseline, report.tasks)
    report.not_computed += gaps
    if efficiency.empty:
        report.not_computed.append("label efficiency: no finite primary metric in these results")
        return
    parts = [writer.frame("label_efficiency", efficiency, "Label efficiency",
                          f"Test primary metric per label fraction: mean over seeds and the 95% {T_INTERVAL} of "
                          "the mean (none with one seed).")]
    if efficiency["fraction"].nunique() < 2:
        report.not_computed.append("label-efficiency curve: the results hold a single label fraction")
    metric = table.drop_duplicates("task").set_index("task")["primary_metric"].to_dict()
    path = writer.figure("label_efficiency", plots.draw_label_efficiency, efficiency, metric, savings)
    parts.insert(0, formats.image_tag(path, "label efficiency"))
    if not savings.empty:
        parts.append(writer.frame(
            "fewer_labels", savings, "Fewer labels",
            "Share of training labels saved, 1 − f: f is the smallest label fraction (linearly interpolated) at "
            "which the method's mean reaches the baseline's mean on the full training set (the estimate). low: "
            "its one-sided 95% lower bound, 1 − shown_at, where shown_at is the smallest fraction at which the "
            "method is shown above the baseline's full-data scores (one-sided Welch tests from the largest "
            f"fraction down, stopping at the first with p ≥ {ALPHA:g}: a fixed sequence, no correction needed; "
            "tests lists them). A saving is claimed, as at least low, only when low is above 0% and the "
            f"baseline's score at its smallest fraction is below its full-data score (Welch p < {ALPHA:g}); "
            "otherwise the claim column says why not."))
    report.sections.append(("Label efficiency", formats.join(parts)))


def write_convergence(writer: Writer, report: Report, results: Results, table: pd.DataFrame) -> None:
    histories = results.histories[results.histories["run_id"].isin(table["run_id"])]
    histories = views.at_fraction(histories, report.fraction)
    primary = table.drop_duplicates("run_id").set_index("run_id")["primary_metric"].to_dict()
    per_run, gaps = curves.convergence(histories, primary, report.fraction)
    report.not_computed += gaps
    if per_run.empty:
        report.not_computed.append(f"convergence: no validation history at fraction {report.fraction:g}")
        return
    epochs = curves.convergence_curves(histories, primary)
    path = writer.figure("convergence", plots.draw_convergence, histories, epochs, primary)
    writer.csv("convergence_runs.csv", per_run)
    curve_legend = ("Per epoch: the runs whose validation primary metric is recorded (n_training, of runs) and "
                    "their mean, given only while every run still trains (runs stop early at different epochs).")
    summary = curves.convergence_summary(per_run, report.baseline, report.tasks)
    legend = (f"Fine-tuning epochs until the validation primary metric first reaches "
              f"{curves.CONVERGENCE_SHARE:.0%} of its best value, mean over seeds at fraction {report.fraction:g}; "
              f"faster_than_baseline = 1 − mean / mean of {report.baseline or 'the baseline'}.")
    report.sections.append(("Convergence", formats.join([
        formats.image_tag(path, "convergence"), writer.frame("convergence", summary, "Convergence", legend),
        writer.frame("convergence_curves", epochs, "Convergence curves", curve_legend)])))


def write_restoration(writer: Writer, report: Report, settings: Settings, table: pd.DataFrame) -> None:
    parts = []
    runs = table.dropna(subset=["checkpoint_id"]).drop_duplicates("checkpoint_id").set_index("checkpoint_id")
    for checkpoint in tqdm(sorted(runs.index), desc="restoration pictures", disable=not settings.progress, leave=False):
        run = runs.loc[checkpoint]  # one run of the checkpoint: the method and settings it was pretrained with
        pretext = recorded_method_has_pretext_task(run["method_name"], variants.parse_settings(run["method_settings"]))
        if pretext is False:  # supervised pretraining: its checkpoint restores nothing
            continue
        if not store.checkpoint_ready(store.checkpoint_dir(settings.results, checkpoint)):
            report.not_computed.append(f"restoration picture for {checkpoint}: the checkpoint is not in "
                                       f"{settings.results / 'checkpoints'} (not kept with these results)")
            continue
        try:
            panels = restoration_panels(settings.results, checkpoint)
        except NotRestoration as reason:
            report.notes.append(f"no restoration picture for {checkpoint}: {reason}")
            continue
        except (UserError, KeyError, TypeError, ValueError, OSError, RuntimeError) as error:
            report.not_computed.append(f"restoration picture for {checkpoint}: {error}")
            continue
        title = f"{checkpoint}: central slice of a validation cube of the pretraining pool"
        path = writer.figure(f"restoration_{checkpoint}", plots.draw_restoration, panels, title)
        parts.append(formats.image_tag(path, title))
    report.sections.append(("Restoration", formats.join(parts) if parts else
                            formats.paragraph("No restoration method in these results.")))


def _tests_legend(report: Report, what: str) -> str:
    return (f"Tests of {what}, as in the pairwise tables: Welch across seeds; Wilcoxon signed-rank on per-case values "
            f"averaged over seeds, paired by case id (segmentation); DeLong per seed on the same candidates "
            f"(classification); the last two hold the trained models fixed, so their verdict is about these models "
            f"('significant for these trained models'), the verdict on methods is Welch's. p corrected with "
            f"{CORRECTIONS[report.correction]} per test "
            f"{'on each task and label fraction' if report.family == 'task' else 'over all tasks at each fraction'}"
            f" (named in the correction column). min_p: the smallest p the test can reach at its n; mdd: the "
            f"smallest difference it detects with {POWER:.0%} power (∞: cannot reach p < {ALPHA:g}).")


def write_ablations(writer: Writer, report: Report, table: pd.DataFrame) -> None:
    """The combined scheme (a method class's default instance) against its ablations (the class's presets),
    per task and fraction: means with their interval, the tests, a figure. Only when both were run."""
    sets = variants.ablation_sets(report.methods)
    if not sets:
        report.notes.append("no ablation section: no method was run with its default settings together with one "
                            "of its registered presets (e.g. genesis and genesis-nl)")
        return
    parts = []
    for ablation in sets:
        combined, methods = ablation.combined, [ablation.combined, *ablation.ablations]
        comparison = comparisons.compare(table, methods, [(combined, m) for m in ablation.ablations], report.tasks,
                                         report.correction, report.family, required=combined)
        report.not_computed += [f"ablation of {combined}, {gap}" for gap in comparison.gaps]
        if comparison.summary.empty:
            report.not_computed.append(f"ablation of {combined}: no task has {combined} and one of its ablations "
                                       f"({', '.join(ablation.ablations)}) at the same label fraction")
            continue
        stem = f"ablation_{check_name(combined, 'method name')}"
        shown, seeds = comparisons.highest_fraction(comparison)
        path = writer.figure(stem, plots.draw_schemes, shown, seeds, methods, combined, {},
                             f"{combined} (combined, red) and its ablations: mean over seeds,\nbars: 95% "
                             f"{T_INTERVAL}; dots: seeds", "its ablations")
        legend = (f"The combined scheme ({combined}, with its default settings: {ablation.description}) and its "
                  f"ablations (the registered presets of the same method, each described in 'scheme'), per task "
                  f"and label fraction: test primary metric, mean ± s.d. over seeds (n_seeds) and the 95% "
                  f"{T_INTERVAL} of the mean (none with one seed). combined_minus_this: the combined mean minus "
                  f"this one. p_vs_combined: Welch t-test (two-sided) across seeds, corrected with "
                  f"{CORRECTIONS[report.correction]} over the ablations compared on each task and fraction "
                  f"({'per task' if report.family == 'task' else 'over all tasks'}; named in 'correction'); "
                  f"* / ** / ***: corrected p < .05 / .01 / .001. The paired tests are in {stem}_tests. The figure "
                  f"shows each task at its highest fraction.")
        parts += [formats.heading(f"{combined} and its ablations"), formats.image_tag(path, f"ablation of {combined}"),
                  writer.frame(stem, comparisons.ablation_table(comparison, ablation), f"Ablation: {combined}",
                               legend),
                  writer.frame(f"{stem}_tests", comparison.tests, f"Ablation tests: {combined}",
                               _tests_legend(report, f"{combined} against each of its ablations"))]
    if parts:
        report.sections.append(("Ablation", formats.join(parts)))


def write_losses(writer: Writer, report: Report, table: pd.DataFrame) -> None:
    """Runs of one method that differ only in their restoration loss, side by side (fig. 8)."""
    groups = variants.loss_comparisons(table)
    if not groups:
        report.notes.append(f"no restoration-loss section: no method was run with two or more values of its "
                            f"'{variants.LOSS_SETTING}' setting and otherwise equal settings")
        return
    parts, stems = [], set()
    for index, group in enumerate(groups, start=1):
        methods = list(group.variants)
        comparison = comparisons.compare(table, methods, list(itertools.combinations(methods, 2)), report.tasks,
                                         report.correction, report.family)
        report.not_computed += [f"restoration loss of {group.method}, {gap}" for gap in comparison.gaps]
        if comparison.summary.empty:
            report.not_computed.append(f"restoration loss of {group.method}: no task has two of "
                                       f"{', '.join(methods)} at the same label fraction")
            continue
        stem = f"loss_{file_stem(group.method)}"
        stem = stem if stem not in stems else f"{stem}_{index}"
        stems.add(stem)
        shown, seeds = comparisons.highest_fraction(comparison)
        ticks = {method: f"{variants.LOSS_SETTING}={loss}" for method, loss in group.variants.items()}
        path = writer.figure(stem, plots.draw_schemes, shown, seeds, methods, None, ticks,
                             f"{group.method}: restoration losses; mean over seeds,\nbars: 95% {T_INTERVAL}; "
                             "dots: seeds")
        legend = (f"{group.method} pretrained with each restoration loss (setting '{variants.LOSS_SETTING}'; all "
                  f"its other settings equal), per task and label fraction: test primary metric, mean ± s.d. over "
                  f"seeds (n_seeds) and the 95% {T_INTERVAL} of the mean (none with one seed). Every pair is "
                  f"tested in {stem}_tests. The figure shows each task at its highest fraction.")
        parts += [formats.heading(f"{group.method}: restoration losses"),
                  formats.image_tag(path, f"restoration losses of {group.method}"),
                  writer.frame(stem, comparisons.loss_table(comparison, group), f"Restoration loss: {group.method}",
                               legend),
                  writer.frame(f"{stem}_tests", comparison.tests, f"Restoration loss tests: {group.method}",
                               _tests_legend(report, f"every pair of losses of {group.method}"))]
    if parts:
        report.sections.append(("Restoration loss", formats.join(parts)))


def analyses_folder(settings: Settings) -> Path | None:
    """``--analyses``, which must be a folder; its default only where it is one."""
    if settings.analyses is None:
        return ANALYSES_FOLDER if ANALYSES_FOLDER.is_dir() else None
    if not Path(settings.analyses).is_dir():
        raise UserError(f"--analyses {settings.analyses}: no such folder (benchmark analyze --out writes one)")
    return Path(settings.analyses)


def write_analyses(writer: Writer, report: Report, settings: Settings, runs: pd.DataFrame) -> None:
    """The restoration cross-matrix and the anomaly maps of ``benchmark analyze``, where they are found,
    with a note where an analysed checkpoint is not the one the reported runs (``runs``) of its method used."""
    folder = analyses_folder(settings)
    where = folder if folder is not None else ANALYSES_FOLDER
    for title, find, command in (("Restoration cross-matrix", analyses.restoration, "restoration"),
                                 ("Anomaly maps", analyses.anomaly, "anomaly")):
        analysis = find(folder) if folder is not None else analyses.Analysis()
        report.not_computed += [f"{title.lower()}: {problem}" for problem in analysis.problems]
        if not analysis.found:
            report.notes.append(f"no {title.lower()} in {where} (benchmark analyze {command} --out {where} writes it;"
                                f" benchmark report --analyses names the folder)")
            continue
        mismatches = other_checkpoints(analysis.checkpoints, runs)
        report.notes += [f"{title.lower()}: {mismatch}" for mismatch in mismatches]
        parts = [formats.paragraph(f"Written by benchmark analyze {command}: " + "; ".join(analysis.sources) + ".",
                                   "legend")] + [formats.paragraph(f"Note: {mismatch}.", "legend")
                                                 for mismatch in mismatches]
        for image in analysis.images:
            png = writer.copy(image.png, f"{image.name}.png")
            if image.pdf is not None:
                writer.copy(image.pdf, f"{image.name}.pdf")
            parts.append(formats.image_tag(png, image.title))
        for table in analysis.tables:
            parts.append(formats.heading(table.title) + writer.frame(table.name, table.frame, table.title,
                                                                      table.legend))
        report.sections.append((title, formats.join(parts)))


def other_checkpoints(analysed: dict[str, str], runs: pd.DataFrame) -> list[str]:
    """For each analysed (method, checkpoint) whose method has reported runs (any settings), none of which
    fine-tuned that checkpoint: a sentence saying so (the analysis and the runs come from different
    pretrainings)."""
    sentences = []
    for method, checkpoint in sorted(analysed.items()):
        used = sorted(set(runs.loc[runs["method_name"] == method, "checkpoint_id"].dropna()))
        if used and checkpoint not in used:
            sentences.append(f"the {method} checkpoint analysed ({checkpoint}) is not among those its reported runs "
                             f"fine-tuned ({', '.join(used)}): they come from different pretrainings")
    return sentences


def comparable_runs(results: Results, settings: Settings) -> tuple[pd.DataFrame, str, list[str]]:
    """The runs of one profile, the selected sources, newest record per cell; refuses to pool others."""
    profile = choose_profile(results.table, settings.profile)
    table = sources.select(results.table[results.table["profile"] == profile], settings.select)
    table, duplicates = views.keep_newest_runs(table)
    sources.check_pooling(table)
    return table, profile, duplicates


def build_report(settings: Settings) -> Report:
    """The report of ``settings.results`` written into ``settings.out``, replacing the previous one there
    as a whole (one report at a time per folder: a second waits for the first)."""
    out = prepare_out(settings.out)
    with store.exclusive(out / LOCK, wait=True, holder=f"another process is building a report in {out}"):
        try:
            report = write_report(settings, out)
        finally:
            shutil.rmtree(out / STAGING, ignore_errors=True)  # a report stopped on the way leaves no staging folder
    return report


def write_report(settings: Settings, out: Path) -> Report:
    results = read_results(settings.results)
    for message in results.skipped:
        print(f"warning: {one_line(message)}", file=sys.stderr)
    table, profile, duplicates = comparable_runs(results, settings)
    notes = duplicates + views.run_warnings(table)
    methods = sorted(table["method"].unique())
    baseline = choose_baseline(methods, settings.baseline)
    methods = ([baseline] if baseline else []) + [m for m in methods if m != baseline]
    report = Report(profile=profile, fraction=choose_fraction(table, settings.fraction), baseline=baseline,
                    correction=settings.correction, family=settings.family, methods=methods,
                    tasks=task_order(list(table["task"].unique())), not_computed=list(results.skipped),
                    notes=notes)
    if baseline is None:
        report.not_computed.append("no baseline method in these results (use --baseline): no test against it")
    check_positive_controls(report, settings.positive_controls)
    analyses_folder(settings)  # a missing --analyses folder stops the report before any work
    writer = Writer(out, report)
    export_table(results.table, writer.path("results_table.csv"))
    export_table(results.table, writer.path("results_table.parquet"))
    provenance = sources.provenance(table, report.tasks)
    report.sections.append(("Provenance", write_provenance(writer, provenance)))
    scores, gaps = views.seed_scores(table, report.fraction)
    report.not_computed += gaps
    write_table3(writer, report, scores, provenance, table)
    write_dimensions(writer, report, scores, provenance, table)
    write_pairwise(writer, report, table, scores)
    write_intervals(writer, report, table, scores)
    if scores.empty:
        report.not_computed.append(f"box plots: no run at fraction {report.fraction:g}")
    else:
        path = writer.figure("seeds_boxplot", plots.draw_seed_boxes, scores)
        report.sections.append(("Seeds", formats.image_tag(path, "seeds")))
    write_calibration(writer, report, table, settings.positive_controls)
    write_label_efficiency(writer, report, table)
    write_convergence(writer, report, results, table)
    write_restoration(writer, report, settings, table)
    write_ablations(writer, report, table)
    write_losses(writer, report, table)
    write_analyses(writer, report, settings, results.table)
    write_lists_and_page(writer, report, settings, provenance)
    writer.publish()
    return report


def write_provenance(writer: Writer, provenance: pd.DataFrame) -> Markup:
    legend = ("Where the numbers come from, per task: the data (kind, folder, fingerprint), the pretraining data "
              "(of the methods that pretrain), the profile, the fingerprint of the code that makes numbers and its "
              "git commit (unknown: records made before these were recorded), and the machine. Runs that differ in "
              "data, pretraining data or code are never pooled (benchmark report --select).")
    return writer.frame("provenance", provenance, "Provenance", legend)


def write_lists_and_page(writer: Writer, report: Report, settings: Settings, provenance: pd.DataFrame) -> None:
    lists = ("# Not computed\n\n" + "".join(f"- {formats.markdown_text(item)}\n" for item in report.not_computed) +
             "\n# Notes\n\n" + "".join(f"- {formats.markdown_text(item)}\n" for item in report.notes))
    writer.text("not_computed.md", lists)
    summary = (f"Results {settings.results} · profile {report.profile} · Table 3, tests and convergence at label "
               f"fraction {report.fraction:g} · baseline {report.baseline or 'none'} · correction "
               f"{CORRECTIONS[report.correction]} {FAMILIES[report.family]} · methods {', '.join(report.methods)} · "
               f"tasks {', '.join(report.tasks)}")
    header = formats.join([formats.paragraph(summary), formats.paragraph(sources.provenance_sentence(provenance))])
    listed = formats.html_list([path.name for path in [*report.files, writer.out / PAGE]])
    sections = [("Settings", header), *report.sections, ("Not computed", formats.html_list(report.not_computed)),
                ("Notes", formats.html_list(report.notes)), ("Files", listed)]
    writer.text(PAGE, formats.html_page("Benchmark report", sections))
