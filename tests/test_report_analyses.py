"""The report's views of the paper's analyses on hand-written records: the ablation section (the combined
scheme against its registered presets), runs with different method settings never pooled, the
restoration-loss comparison, and the outputs of `benchmark analyze` on the page; all escaped."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import start_tags
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from benchmark.api.registry import METHODS
from benchmark.cli import main
from benchmark.reporting import plots
from benchmark.reporting.variants import ablation_sets, canonical

EVIL_HTML = "<img src=x onerror=alert(1)>"
CASES = [f"case{i}" for i in range(7)]
ABLATION_SCORES = {"genesis": 0.80, "genesis-nl": 0.74, "genesis-ls": 0.77, "genesis-identity": 0.70,
                   "scratch-he": 0.72}


def report(results, out, *extra):
    return main(["report", "--results", str(results), "--out", str(out), "--no-progress", *extra])


def settings(name: str, **changed) -> dict:
    """The settings a record of ``name`` holds: the registered ones (as JSON has them), some changed."""
    return {**canonical(METHODS.create(name).settings()), **changed}


def write_segmentation(write_run, results, method, task, seed, fraction, base, method_settings, suffix=None):
    """A segmentation run whose per-case Dice is ``base`` plus a fixed, seed- and case-dependent offset."""
    rng = np.random.default_rng(abs(hash((method, task, seed, fraction, base))) % 2**32)
    values = np.clip(base + rng.normal(0, 0.02, len(CASES)), 0, 1)
    folder = write_run(results, method, task, seed, fraction, {"dice": float(values.mean())}, "dice",
                       cases={"case_id": CASES, "dice": values},
                       history={"epoch": [0, 1], "val_dice": [0.5, 0.6]},
                       suffix=suffix or f"{abs(hash(json.dumps(method_settings, sort_keys=True))) % 10**8}")
    record = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    record["method_settings"] = method_settings
    (folder / "result.json").write_text(json.dumps(record), encoding="utf-8")
    return folder


def records(results: Path) -> pd.DataFrame:
    rows = [json.loads(p.read_text(encoding="utf-8")) for p in (results / "runs").glob("*/result.json")]
    frame = pd.DataFrame(rows)
    return frame.assign(dice=frame["metrics"].map(lambda m: m["dice"]))


def page_tags(out: Path) -> list[tuple[str, dict]]:
    return start_tags((out / "index.html").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- ablations


def test_the_registry_tells_the_combined_scheme_and_its_ablations():
    (found,) = ablation_sets(["genesis", "genesis-nl", "genesis-identity", "scratch-he", "genesis [loss=mae]"])
    assert found.combined == "genesis" and list(found.ablations) == ["genesis-identity", "genesis-nl"]
    assert all(METHODS.preset(name).cls is METHODS.get("genesis") for name in found.ablations)
    assert found.ablations["genesis-nl"] == METHODS.description("genesis-nl")
    assert ablation_sets(["genesis-nl", "genesis-ls", "scratch-he"]) == []  # no combined scheme
    assert ablation_sets(["genesis", "scratch-he", "denoising"]) == []  # no ablation
    assert ablation_sets(["genesis [loss=mae]", "genesis-nl"]) == []  # not the default instance


def test_the_ablation_section_its_figure_and_its_numbers(tmp_path, write_run):
    """genesis, three of its presets and scratch-he, 3 seeds at fractions 0.5 and 1: the section, and its
    numbers against numpy and scipy."""
    results, out = tmp_path / "results", tmp_path / "out"
    for fraction in (0.5, 1.0):
        for seed in range(3):
            for method, base in ABLATION_SCORES.items():
                write_segmentation(write_run, results, method, "lcs", seed, fraction, base, settings(method))
    assert report(results, out, "--analyses", str(tmp_path)) == 0
    check_ablation_files(out)
    check_ablation_table(results, out)
    check_paired_ablation_tests(results, out)


def check_ablation_files(out: Path) -> None:
    for name in ("ablation_genesis.csv", "ablation_genesis.md", "ablation_genesis_tests.csv",
                 "ablation_genesis_tests.md", "ablation_genesis.png", "ablation_genesis.pdf",
                 "ablation_genesis_column.pdf"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "ablation_genesis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<h2>Ablation</h2>" in page and "<h3>genesis and its ablations</h3>" in page
    section = page[page.index("<h2>Ablation</h2>"):page.index("<h2>Not computed</h2>")]
    assert section.count('src="data:image/png;base64,') == 1
    assert sum(tag == "img" for tag, _ in page_tags(out)) == len(list(out.glob("*.png")))


def check_ablation_table(results: Path, out: Path) -> None:
    table = pd.read_csv(out / "ablation_genesis.csv")
    runs = records(results)
    assert set(table["method"]) == {"genesis", "genesis-nl", "genesis-ls", "genesis-identity"}  # no scratch-he
    assert len(table) == 2 * 4 and (table["n_seeds"] == 3).all() and list(table["fraction"]) == [0.5] * 4 + [1.0] * 4
    for (task, fraction), rows in table.groupby(["task", "fraction"]):
        own = runs[(runs["task"] == task) & (runs["fraction"] == fraction)]
        combined = own[own["method"] == "genesis"].sort_values("seed")["dice"].to_numpy()
        assert rows.iloc[0]["method"] == "genesis" and rows.iloc[0]["role"] == "combined"
        p_values = {}
        for row in rows.itertuples():
            values = own[own["method"] == row.method].sort_values("seed")["dice"].to_numpy()
            assert row.mean == pytest.approx(values.mean(), abs=1e-12)
            assert row.sd == pytest.approx(values.std(ddof=1), abs=1e-12)
            low, high = st.t.interval(0.95, values.size - 1, loc=values.mean(), scale=st.sem(values))
            assert (row.ci_low, row.ci_high) == (pytest.approx(low), pytest.approx(high))
            assert row.scheme == METHODS.description(row.method)
            if row.method == "genesis":
                assert np.isnan(row.p_vs_combined) and np.isnan(row.combined_minus_this)
                continue
            assert row.role == "ablation"
            assert row.combined_minus_this == pytest.approx(combined.mean() - values.mean(), abs=1e-12)
            p_values[row.method] = st.ttest_ind(combined, values, equal_var=False).pvalue
            assert row.p_vs_combined == pytest.approx(p_values[row.method], rel=1e-9)
        holm = dict(zip(p_values, multipletests(list(p_values.values()), method="holm")[1]))
        corrected = rows.set_index("method")["p_vs_combined_corrected"].drop("genesis")
        assert corrected.to_dict() == pytest.approx(holm, rel=1e-9)
        assert (rows["correction"].iloc[1:] == f"Holm over 3 Welch test(s) on {task}").all()


def check_paired_ablation_tests(results: Path, out: Path) -> None:
    tests = pd.read_csv(out / "ablation_genesis_tests.csv")
    assert set(tests["method_a"]) == {"genesis"}
    assert set(tests["method_b"]) == {"genesis-nl", "genesis-ls", "genesis-identity"}
    wilcoxon = tests[tests["test"].str.startswith("Wilcoxon")]
    assert len(wilcoxon) == 2 * 3
    for row in wilcoxon.itertuples():
        per_case = {}
        for method in (row.method_a, row.method_b):
            frames = [pd.read_csv(path.parent / "cases.csv") for path in (results / "runs").glob("*/result.json")
                      if (r := json.loads(path.read_text()))["method"] == method and r["task"] == row.task
                      and r["fraction"] == row.fraction]
            assert len(frames) == 3
            per_case[method] = pd.concat(frames).groupby("case_id")["dice"].mean().loc[CASES].to_numpy()
        expected = st.wilcoxon(per_case[row.method_a], per_case[row.method_b]).pvalue
        assert row.p == pytest.approx(expected, rel=1e-9)
    for _, family in wilcoxon.groupby(["task", "fraction"]):
        assert np.allclose(family["p_corrected"], multipletests(family["p"], method="holm")[1])


@pytest.mark.parametrize("methods", [("genesis", "scratch-he"), ("genesis-nl", "genesis-ls", "scratch-he")],
                         ids=["no ablation", "no combined scheme"])
def test_no_ablation_section_without_both(tmp_path, write_run, methods):
    results = tmp_path / "results"
    for seed in range(2):
        for method in methods:
            write_segmentation(write_run, results, method, "lcs", seed, 1.0, ABLATION_SCORES[method],
                               settings(method))
    assert report(results, tmp_path / "out", "--analyses", str(tmp_path)) == 0
    assert not list((tmp_path / "out").glob("ablation*"))
    assert "<h2>Ablation</h2>" not in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "no ablation section" in (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8")


def test_an_ablation_on_another_task_only_is_listed_not_drawn(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in range(2):
        write_segmentation(write_run, results, "genesis", "lcs", seed, 1.0, 0.8, settings("genesis"))
        write_segmentation(write_run, results, "genesis-nl", "ncs", seed, 1.0, 0.7, settings("genesis-nl"))
    assert report(results, tmp_path / "out", "--analyses", str(tmp_path)) == 0
    assert not list((tmp_path / "out").glob("ablation*"))
    missing = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8")
    assert "ablation of genesis: no task has genesis and one of its ablations" in missing


# --------------------------------------------------------------------------- method settings and losses


def test_runs_with_different_settings_are_never_pooled_and_losses_are_compared(tmp_path, write_run):
    results = tmp_path / "results"
    scores = {"mse": 0.80, "mae": 0.78, "ssim": 0.83}
    for seed in range(3):
        write_segmentation(write_run, results, "scratch-he", "lcs", seed, 1.0, 0.72, settings("scratch-he"))
        for loss, base in scores.items():
            write_segmentation(write_run, results, "genesis", "lcs", seed, 1.0, base, settings("genesis", loss=loss))
    assert report(results, tmp_path / "out", "--analyses", str(tmp_path)) == 0
    out = tmp_path / "out"
    runs = records(results).assign(loss=lambda f: f["method_settings"].map(lambda s: s.get("loss")))
    table3 = pd.read_csv(out / "table3.csv").set_index("method")
    labels = {"mse": "genesis", "mae": "genesis [loss=mae]", "ssim": "genesis [loss=ssim]"}
    assert set(table3.index) == {"scratch-he", *labels.values()} and (table3["n_seeds"] == 3).all()
    for loss, label in labels.items():
        values = runs[(runs["method"] == "genesis") & (runs["loss"] == loss)]["dice"]
        assert table3.loc[label, "mean"] == pytest.approx(values.mean(), abs=1e-12)
    assert "records for" not in (out / "not_computed.md").read_text(encoding="utf-8")  # nothing dropped as a dup

    losses = pd.read_csv(out / "loss_genesis.csv").set_index("loss")
    assert list(losses.index) == ["mae", "mse", "ssim"] and losses["method"].to_dict() == labels
    for loss in scores:
        values = runs[(runs["method"] == "genesis") & (runs["loss"] == loss)]["dice"]
        assert losses.loc[loss, "mean"] == pytest.approx(values.mean(), abs=1e-12)
    tests = pd.read_csv(out / "loss_genesis_tests.csv")
    welch = tests[tests["test"].str.startswith("Welch")]
    assert len(welch) == 3 and "scratch-he" not in set(welch["method_a"]) | set(welch["method_b"])
    by_label = {label: runs[(runs["method"] == "genesis") & (runs["loss"] == loss)].sort_values("seed")["dice"]
                for loss, label in labels.items()}
    for row in welch.itertuples():
        expected = st.ttest_ind(by_label[row.method_a], by_label[row.method_b], equal_var=False).pvalue
        assert row.p == pytest.approx(expected, rel=1e-9)
    assert np.allclose(welch["p_corrected"], multipletests(welch["p"], method="holm")[1])
    for name in ("loss_genesis.png", "loss_genesis.pdf", "loss_genesis_column.pdf", "loss_genesis.md"):
        assert (out / name).is_file()
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<h2>Restoration loss</h2>" in page and "genesis [loss=mae]" in page


def test_one_loss_only_gives_no_loss_section(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in range(2):
        write_segmentation(write_run, results, "genesis", "lcs", seed, 1.0, 0.8, settings("genesis", loss="mae"))
        write_segmentation(write_run, results, "genesis", "lcs", seed, 1.0, 0.8,
                           settings("genesis", nonlinear_prob=0.5))  # differs in another setting, loss mse
    assert report(results, tmp_path / "out", "--analyses", str(tmp_path)) == 0
    assert not list((tmp_path / "out").glob("loss_*"))
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv")
    assert set(table3["method"]) == {"genesis [loss=mae]", "genesis [nonlinear_prob=0.5]"}


def test_an_unregistered_method_is_labelled_by_the_settings_that_vary(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in range(2):
        for loss in ("mse", "mae"):
            write_segmentation(write_run, results, "not-installed", "lcs", seed, 1.0, 0.7,
                               {"loss": loss, "width": 3})
    assert report(results, tmp_path / "out", "--analyses", str(tmp_path)) == 0
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv")
    assert set(table3["method"]) == {"not-installed [loss=mse]", "not-installed [loss=mae]"}
    assert (tmp_path / "out" / "loss_not-installed.csv").is_file()


# --------------------------------------------------------------------------- the analyses


def tiny_png(path: Path, text: str = "x") -> None:
    figure = Figure(figsize=(1, 1))
    figure.text(0.5, 0.5, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure).print_png(str(path))
    figure.savefig(path.with_suffix(".pdf"), format="pdf")


def write_analyses(folder: Path, corruption: str = "genesis",
                   checkpoints: dict | None = None) -> None:
    """What `benchmark analyze restoration` and `anomaly` write (the same file names and columns)."""
    checkpoints = checkpoints or {"genesis": "genesis-0123456789ab"}
    rows = [{"corruption": c, "restored_by": r, "mse": 0.01 * (i + 1) + 0.001 * j, "ssim": 0.9 - 0.01 * i, "cubes": 4}
            for i, c in enumerate((corruption, "denoising")) for j, r in enumerate(("input", "genesis", "denoising"))]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "restoration_matrix.csv", index=False)
    tiny_png(folder / "restoration_matrix.png")
    tiny_png(folder / "restoration_grid.png")
    tiny_png(folder / "anomaly" / "montage.png")
    pd.DataFrame([{"score": s, "auc": a, "ci_low": a - 0.1, "ci_high": a + 0.05, "scans": 3, "voxels_per_scan": 2000,
                   "jackknife": 3} for s, a in (("difference map", 0.81), ("raw intensity", 0.62),
                                                  ("difference - intensity", 0.19))]
                 ).to_csv(folder / "anomaly" / "detection_auc.csv", index=False)
    (folder / "anomaly" / "scan0_difference.nii.gz").write_bytes(b"\x1f\x8b")
    for path in (folder / "restoration_checkpoints.json", folder / "anomaly" / "checkpoints.json"):
        path.write_text(json.dumps({"checkpoints": checkpoints, "profile": "quick", "seed": 0}), encoding="utf-8")


@pytest.fixture
def small_results(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in range(2):
        for method, base in (("genesis", 0.8), ("scratch-he", 0.7)):
            write_segmentation(write_run, results, method, "lcs", seed, 1.0, base, settings(method))
    return results


def test_the_analyses_are_shown_when_present(tmp_path, small_results):
    write_analyses(tmp_path / "analysis")
    assert report(small_results, tmp_path / "out", "--analyses", str(tmp_path / "analysis")) == 0
    out = tmp_path / "out"
    page = (out / "index.html").read_text(encoding="utf-8")
    for heading in ("Restoration cross-matrix", "Anomaly maps"):
        assert f"<h2>{heading}</h2>" in page
    mse = pd.read_csv(out / "analysis_restoration_mse.csv").set_index("corruption")
    assert list(mse.columns) == ["input", "genesis", "denoising"]
    assert mse.loc["denoising", "genesis"] == pytest.approx(0.021)
    auc = pd.read_csv(out / "analysis_anomaly_auc.csv").set_index("score")
    assert auc.loc["difference map", "auc"] == pytest.approx(0.81)
    for name in ("analysis_restoration_matrix", "analysis_restoration_grid", "analysis_anomaly_montage"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    images = [attrs for tag, attrs in page_tags(out) if tag == "img"]
    assert len(images) == len(list(out.glob("*.png")))
    assert all(attrs["src"].startswith("data:image/png;base64,") for attrs in images)
    assert "1 difference map(s)" in page and "0.8100" in page


@pytest.mark.parametrize("analysed, noted", [("genesis-aaaaaaaaaaaa", False), ("genesis-bbbbbbbbbbbb", True)])
def test_an_analysed_checkpoint_that_no_reported_run_used_is_noted(tmp_path, write_run, analysed, noted):
    results = tmp_path / "results"
    for seed in range(2):
        for method in ("genesis", "scratch-he"):
            chosen = settings(method, loss="ssim") if method == "genesis" else settings(method)  # labelled apart
            folder = write_segmentation(write_run, results, method, "lcs", seed, 1.0, 0.8, chosen)
            record = json.loads((folder / "result.json").read_text(encoding="utf-8"))
            record["pretraining"] = {"checkpoint_id": "genesis-aaaaaaaaaaaa"} if method == "genesis" else None
            (folder / "result.json").write_text(json.dumps(record), encoding="utf-8")
    write_analyses(tmp_path / "analysis", checkpoints={"genesis": analysed, "denoising": "denoising-cccccccccccc"})
    assert report(results, tmp_path / "out", "--analyses", str(tmp_path / "analysis")) == 0
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert f"checkpoints denoising-cccccccccccc (denoising), {analysed} (genesis)" in page
    sentence = f"the genesis checkpoint analysed ({analysed}) is not among those its reported runs fine-tuned"
    assert (sentence in page) is noted  # denoising has no reported runs: nothing to compare with


@pytest.mark.parametrize("content", ['{"checkpoints": {"genesis": "<img src=x onerror=alert(1)>"}}', "[1, 2]",
                                     '{"checkpoints": {}}', "{not json"])
def test_a_bad_checkpoints_file_is_named_and_its_content_not_shown(tmp_path, small_results, content):
    write_analyses(tmp_path / "analysis")
    (tmp_path / "analysis" / "anomaly" / "checkpoints.json").write_text(content, encoding="utf-8")
    assert report(small_results, tmp_path / "out", "--analyses", str(tmp_path / "analysis")) == 0
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page and "onerror" not in page
    missing = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8")
    assert "checkpoints.json" in missing and "anomaly maps:" in missing


def test_a_truncated_analysis_table_is_named_not_read_short(tmp_path, small_results):
    write_analyses(tmp_path / "analysis")
    table = tmp_path / "analysis" / "restoration_matrix.csv"
    table.write_bytes(table.read_bytes()[:-3])  # the last ssim value and cube count cut to a fragment
    assert report(small_results, tmp_path / "out", "--analyses", str(tmp_path / "analysis")) == 0
    assert not (tmp_path / "out" / "analysis_restoration_mse.csv").exists()
    missing = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8")
    assert r"restoration\_matrix.csv: its last line is cut short (a truncated file)" in missing


def test_the_analyses_are_absent_otherwise(tmp_path, small_results, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    assert report(small_results, tmp_path / "out", "--analyses", str(tmp_path / "empty")) == 0
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "<h2>Restoration cross-matrix</h2>" not in page and "<h2>Anomaly maps</h2>" not in page
    assert not list((tmp_path / "out").glob("analysis_*"))
    notes = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8")
    assert "no restoration cross-matrix in" in notes and "no anomaly maps in" in notes

    assert report(small_results, tmp_path / "out", "--analyses", str(tmp_path / "nowhere")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"error: --analyses {tmp_path / 'nowhere'}: no such folder (benchmark analyze --out writes one)"

    monkeypatch.chdir(tmp_path)  # the default: analyze's default --out, ./reports/analysis, where it exists
    assert report(small_results, tmp_path / "default-absent") == 0
    assert "<h2>Anomaly maps</h2>" not in (tmp_path / "default-absent" / "index.html").read_text(encoding="utf-8")
    write_analyses(tmp_path / "reports" / "analysis")
    assert report(small_results, tmp_path / "default-present") == 0
    assert "<h2>Anomaly maps</h2>" in (tmp_path / "default-present" / "index.html").read_text(encoding="utf-8")


def test_hostile_settings_and_analysis_files_are_escaped(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in range(2):
        for loss in ("mse", EVIL_HTML):
            write_segmentation(write_run, results, "genesis", "lcs", seed, 1.0, 0.8 if loss == "mse" else 0.7,
                               settings("genesis", loss=loss))
        write_segmentation(write_run, results, "genesis-nl", "lcs", seed, 1.0, 0.75,
                           {**settings("genesis-nl"), EVIL_HTML: "$\\cmd{$"})
    analysis = tmp_path / "analysis"
    write_analyses(analysis, corruption=EVIL_HTML)
    (analysis / "restoration_grid.png").write_text(f"<script>{EVIL_HTML}</script>")  # not a PNG
    assert report(results, tmp_path / "out", "--analyses", str(analysis)) == 0
    out = tmp_path / "out"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert EVIL_HTML not in page and "<script" not in page and html.escape(EVIL_HTML) in page
    assert html.escape(f"genesis [loss={EVIL_HTML}]") in page
    assert {tag for tag, _ in page_tags(out)} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3",
                                                  "p", "table", "thead", "tbody", "tr", "th", "td", "b", "sup", "ul",
                                                  "li", "img"}
    assert all(attrs["src"].startswith("data:image/png;base64,") for tag, attrs in page_tags(out) if tag == "img")
    assert not (out / "analysis_restoration_grid.png").exists()
    missing = (out / "not_computed.md").read_text(encoding="utf-8")
    assert "restoration\\_grid.png: not a PNG image; not shown" in missing
    for name in ("loss_genesis.md", "analysis_restoration_mse.md", "table3.md"):
        text = (out / name).read_text(encoding="utf-8")
        assert EVIL_HTML not in text and "\\<img src=x onerror=alert(1)\\>" in text, name
    assert EVIL_HTML not in (out / "table3.tex").read_text(encoding="utf-8")
    for name in ("loss_genesis.png", "seeds_boxplot.png"):  # drawn literally: the labels did not break matplotlib
        assert (out / name).is_file()


# --------------------------------------------------------------------------- the figure


@pytest.mark.parametrize("width", list(plots.WIDTHS.values()))
@pytest.mark.parametrize("highlight", ["genesis", None])
def test_the_scheme_figure_is_laid_out_for_its_column(width, highlight):
    methods = ["genesis", "genesis-identity", "genesis-ls", "genesis-nl", "$\\cmd{$"]
    summary = pd.DataFrame([{"task": task, "metric": "dice", "fraction": 1.0, "method": m, "n_seeds": 3,
                             "mean": 0.7 + i / 50, "ci_low": 0.68 + i / 50, "ci_high": 0.72 + i / 50}
                            for task in ("bms", "lcs", "ncc", "ecc", "ncs") for i, m in enumerate(methods)])
    seeds = pd.DataFrame([{"task": r.task, "fraction": 1.0, "method": r.method, "seed": s, "value": r.mean + s / 100}
                          for r in summary.itertuples() for s in range(3)])
    with rc_context(plots.STYLE):
        figure = plots.draw_schemes(summary, seeds, methods, highlight, {}, "title $x$", "its ablations",
                                    width=width)
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
        assert not [t.get_text() for t in texts if t.get_fontsize() < plots.MIN_FONT_PT]
        box = figure.get_tightbbox(canvas.get_renderer())
        assert box.x0 >= -0.01 and box.y0 >= -0.01
        assert box.x1 <= width + 0.01 and box.y1 <= figure.get_figheight() + 0.01
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert titles == [f"{task}, fraction 1" for task in ("ncc", "ncs", "ecc", "lcs", "bms")]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend and all("n=3 seeds" in text for text in legend)


def test_runs_under_another_protocol_or_task_setting_are_never_pooled(tmp_path, write_run):
    results = tmp_path / "results"
    variants = {("full", None): 0.80, ("linear", None): 0.60, ("full", 20): 0.75}
    for seed in range(3):
        for (protocol, validation), base in variants.items():
            folder = write_segmentation(write_run, results, "genesis", "lcs", seed, 1.0, base, settings("genesis"),
                                        suffix=f"{protocol}-{validation}")
            record = json.loads((folder / "result.json").read_text(encoding="utf-8"))
            record["protocol"] = {"name": protocol, "fixed": [], "trainable_parameters": 1, "parameters": 2}
            record["task_settings"] = {"mystery_cap": validation}  # lcs has no settings: the varying one shows
            (folder / "result.json").write_text(json.dumps(record), encoding="utf-8")
    assert report(results, tmp_path / "out") == 0
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv")
    rows = {(row.task, row.method): row for row in table3.itertuples()}
    assert set(rows) == {("lcs [mystery_cap=None]", "genesis"), ("lcs [mystery_cap=None]", "genesis (linear)"),
                         ("lcs [mystery_cap=20]", "genesis")}
    assert all(row.n_seeds == 3 for row in rows.values())
    assert rows[("lcs [mystery_cap=None]", "genesis (linear)")].mean == pytest.approx(0.60, abs=0.03)
    assert rows[("lcs [mystery_cap=20]", "genesis")].mean == pytest.approx(0.75, abs=0.03)
