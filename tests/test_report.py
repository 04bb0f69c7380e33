"""`benchmark report`: every artefact on real smoke runs; numbers against independent computations; partial results."""

from __future__ import annotations

import json
from dataclasses import asdict
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from benchmark.api.profiles import PROFILES
from benchmark.api.registry import METHODS
from benchmark.cli import main
from benchmark.data import files
from benchmark.reporting import views
from benchmark.reporting.restoration import NotRestoration, restoration_panels, restores_its_input

FIGURES = ["label_efficiency", "convergence", "seeds_boxplot"]
ARTEFACTS = ["table3.csv", "table3.md", "table3.tex", "pairwise.csv", "pairwise_ncc.csv", "pairwise_ncc.md",
             "power.csv", "power.md", "provenance.csv", "provenance.md", "confidence_intervals.csv",
             "confidence_intervals.md", "label_efficiency.csv", "convergence.csv", "convergence_runs.csv",
             "convergence_curves.csv", "results_table.csv", "results_table.parquet", "not_computed.md", "index.html",
             *(f"{figure}{kind}" for figure in FIGURES for kind in (".png", ".pdf", "_column.pdf"))]


def report(results, out, *extra):
    return main(["report", "--results", str(results), "--out", str(out), "--no-progress", *extra])


def expected_marks(p):
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


@pytest.fixture(scope="module")
def smoke_report(smoke_results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert report(smoke_results, out) == 0
    return out


@pytest.fixture(scope="module")
def smoke_records(smoke_results):
    paths = (smoke_results / "runs").glob("*/result.json")
    records = pd.DataFrame([json.loads(p.read_text(encoding="utf-8")) for p in paths])
    return records.assign(auc=records["metrics"].map(lambda m: m["auc"]))


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        if "href" in attrs:
            self.links.append(attrs["href"])


def test_every_artefact_is_written(smoke_results, smoke_report, smoke_records):
    for name in ARTEFACTS:
        assert (smoke_report / name).is_file() and (smoke_report / name).stat().st_size > 0, name
    checkpoints = smoke_records["pretraining"].dropna().map(lambda p: p["checkpoint_id"]).unique()
    assert len(checkpoints) == 2  # one Genesis checkpoint per seed; scratch has none
    for checkpoint in checkpoints:
        assert (smoke_report / f"restoration_{checkpoint}.png").is_file()
    for png in smoke_report.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-", f"{png.name} has no PDF twin"


def test_the_page_is_self_contained(smoke_report):
    page = (smoke_report / "index.html").read_text(encoding="utf-8")
    parser = ImageSources()
    parser.feed(page)
    assert len(parser.sources) == len(list(smoke_report.glob("*.png")))
    assert all(src.startswith("data:image/png;base64,") for src in parser.sources)
    assert parser.links == [] and "<link" not in page and "<script" not in page
    for heading in ("Provenance", "Table 3", "Pairwise tests", "Power", "Confidence intervals", "Label efficiency",
                    "Convergence", "Seeds", "Restoration", "Not computed"):
        assert f"<h2>{heading}</h2>" in page


def test_the_page_and_table3_name_data_code_and_machine(smoke_report, smoke_records):
    record = smoke_records.iloc[0]
    code, git = record["versions"]["code"], record["versions"]["git"]
    commit = "unknown" if git is None else git["commit"][:12] + (" (dirty)" if git["dirty"] else "")
    machine, data = record["compute"]["device_name"], record["data"]["fingerprint"]
    pool = smoke_records["pretrain_data"].dropna().iloc[0]
    table3 = pd.read_csv(smoke_report / "table3.csv", keep_default_na=False)
    expected = {"data_kind": "phantom", "data_fingerprint": data, "code_fingerprint": code, "git_commit": commit,
                "machine": machine, "profile": "smoke", "pretrain_data": f"{pool['kind']} {pool['fingerprint']}"}
    for column, value in expected.items():
        assert (table3[column] == value).all(), column
    page = (smoke_report / "index.html").read_text(encoding="utf-8")
    settings = page[page.index("<h2>Settings</h2>"):page.index("<h2>Provenance</h2>")]
    assert all(text in settings for text in (data, code, commit, machine, pool["fingerprint"]))
    legend = (smoke_report / "table3.md").read_text(encoding="utf-8")
    assert all(text in legend for text in (data, code, commit, machine))


def test_table3_equals_a_hand_computation(smoke_report, smoke_records):
    table3 = pd.read_csv(smoke_report / "table3.csv").set_index("method")
    by_method = smoke_records.groupby("method")["auc"]
    assert np.allclose(table3["mean"], by_method.mean()[table3.index], rtol=0, atol=1e-12)
    assert np.allclose(table3["sd"], by_method.std(ddof=1)[table3.index], rtol=0, atol=1e-12)
    assert (table3["n_seeds"] == 2).all() and table3.loc["scratch-he", "baseline"]
    genesis = smoke_records[smoke_records["method"] == "genesis"].sort_values("seed")["auc"]
    scratch = smoke_records[smoke_records["method"] == "scratch-he"].sort_values("seed")["auc"]
    p = st.ttest_ind(genesis, scratch, equal_var=False).pvalue
    assert table3.loc["genesis", "p_vs_baseline"] == pytest.approx(p, rel=1e-9)
    assert table3.loc["genesis", "p_vs_baseline_corrected"] == pytest.approx(p, rel=1e-9)  # a family of one
    best = by_method.mean().idxmax()
    assert table3["best"].to_dict() == {m: m == best for m in table3.index}
    markdown = (smoke_report / "table3.md").read_text(encoding="utf-8")
    mean, sd = by_method.mean()[best], by_method.std()[best]
    assert f"**{mean:.3f} ± {sd:.3f}** (n=2)" in markdown
    assert rf"\textbf{{{mean:.3f} $\pm$ {sd:.3f}}} (n=2)" in (smoke_report / "table3.tex").read_text(encoding="utf-8")


def test_delong_rows_pair_the_same_candidates_per_seed(smoke_results, smoke_report, smoke_records):
    tests = pd.read_csv(smoke_report / "pairwise_ncc.csv")
    delong = tests[tests["test"].str.startswith("DeLong")]
    assert len(delong) == 2 and set(delong["pairing"]) == {"same candidates, seed 0", "same candidates, seed 1"}
    for row in delong.itertuples():
        seed = int(row.pairing.rsplit(" ", 1)[1])
        aucs = {}
        for method in (row.method_a, row.method_b):
            (run_id,) = smoke_records[(smoke_records["method"] == method) & (smoke_records["seed"] == seed)]["run_id"]
            cases = pd.read_csv(smoke_results / "runs" / run_id / "cases.csv")
            aucs[method] = roc_auc_score(cases["label"], cases["score"])
        assert row.difference == pytest.approx(aucs[row.method_a] - aucs[row.method_b], abs=1e-12)
    holm = multipletests(delong["p"], method="holm")[1]
    assert np.allclose(delong["p_corrected"], holm) and delong["correction"].str.startswith("Holm over 2").all()
    welch = tests[tests["test"] == "Welch t-test (two-sided)"]
    assert len(welch) == 1 and welch["n"].iloc[0] == "a 2, b 2"


def test_confidence_intervals_cover_seeds_and_runs(smoke_report, smoke_records):
    intervals = pd.read_csv(smoke_report / "confidence_intervals.csv")
    seeds = intervals[intervals["level"] == "mean over seeds"].set_index("method")
    assert len(seeds) == 2 and (seeds["ci_method"] == "t interval (Student, n - 1 df)").all()
    for method, values in smoke_records.groupby("method")["auc"]:
        low, high = st.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=st.sem(values))
        assert (seeds.loc[method, "low"], seeds.loc[method, "high"]) == (pytest.approx(low), pytest.approx(high))
    per_run = intervals[intervals["level"] == "AUC, one run"]
    assert len(per_run) == 4 and per_run["ci_method"].str.endswith("(stratified by class)").all()
    assert (per_run["low"] <= per_run["estimate"]).all() and (per_run["estimate"] <= per_run["high"]).all()
    merged = per_run.merge(smoke_records, on=["method", "seed"])
    assert np.allclose(merged["estimate"], merged["auc"])


def test_restoration_panels_show_what_the_checkpoint_restores(smoke_results, smoke_records):
    checkpoint = smoke_records["pretraining"].dropna().iloc[0]["checkpoint_id"]
    panels = restoration_panels(smoke_results, checkpoint)
    assert list(panels) == ["original", "transformed", "restored", "|restored - original|"]
    assert all(image.shape == (32, 32) for image in panels.values())  # a (z, y, x) = (16, 32, 32) smoke cube
    assert np.array_equal(panels["|restored - original|"], np.abs(panels["restored"] - panels["original"]))
    assert all(0 <= image.min() and image.max() <= 1 for image in panels.values())


RESTORES = {"genesis": True, "genesis-nl": True, "genesis-identity": True, "denoising": True, "inpainting": True,
            "patch-shuffling": True, "jigsaw": False, "rubiks-cube": False, "deepcluster": False,
            "scratch-he": False}


@pytest.mark.parametrize("name", RESTORES)
def test_restoration_methods_are_recognised_by_what_they_do(name):
    method = METHODS.create(name)
    checkpoint = {"backbone": {"in_channels": 1, "width": 4, "transposed": True}, "transfers": method.transfers}
    cubes = np.random.default_rng(0).random((1, 1, 16, 32, 32), dtype=np.float32)
    assert restores_its_input(method, checkpoint, cubes) == RESTORES[name]


def test_a_checkpoint_of_another_method_gets_no_picture(smoke_results, smoke_records, monkeypatch):
    checkpoint = smoke_records["pretraining"].dropna().iloc[0]["checkpoint_id"]
    monkeypatch.setattr("benchmark.reporting.restoration.restores_its_input", lambda *args: False)
    with pytest.raises(NotRestoration, match="not the restoration of its input"):
        restoration_panels(smoke_results, checkpoint)


# --------------------------------------------------------------------------- hand-written records

MARK_SCORES = {"scratch-he": [0.70, 0.72, 0.71, 0.69], "genesis": [0.90, 0.91, 0.92, 0.905],
               "denoising": [0.74, 0.73, 0.76, 0.72], "jigsaw": [0.70, 0.73, 0.69, 0.72]}


@pytest.fixture
def marked_results(tmp_path, write_run):
    results = tmp_path / "results"
    for method, values in MARK_SCORES.items():
        for seed, value in enumerate(values):
            write_run(results, method, "t", seed, 1.0, {"dice": value}, "dice")
    return results


@pytest.mark.parametrize("correction", ["holm", "fdr_bh"])
def test_marks_follow_the_corrected_welch_p_values(marked_results, tmp_path, correction):
    assert report(marked_results, tmp_path / "out", "--correction", correction) == 0
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv").set_index("method")
    table3[["marks_vs_baseline", "marks_vs_best"]] = table3[["marks_vs_baseline", "marks_vs_best"]].fillna("")
    others = ["denoising", "genesis", "jigsaw"]
    raw = [st.ttest_ind(MARK_SCORES[m], MARK_SCORES["scratch-he"], equal_var=False).pvalue for m in others]
    corrected = multipletests(raw, method=correction)[1]
    for method, p, q in zip(others, raw, corrected):
        assert table3.loc[method, "p_vs_baseline"] == pytest.approx(p, rel=1e-9)
        assert table3.loc[method, "p_vs_baseline_corrected"] == pytest.approx(q, rel=1e-9)
        assert table3.loc[method, "marks_vs_baseline"] == expected_marks(q)
    vs_best = [st.ttest_ind(MARK_SCORES[m], MARK_SCORES["genesis"], equal_var=False).pvalue
               for m in ("denoising", "jigsaw", "scratch-he")]
    for method, q in zip(("denoising", "jigsaw", "scratch-he"), multipletests(vs_best, method=correction)[1]):
        assert table3.loc[method, "marks_vs_best"] == expected_marks(q)
    assert {table3.loc[m, "marks_vs_baseline"] for m in others} >= {"***", ""}
    markdown = (tmp_path / "out" / "table3.md").read_text(encoding="utf-8")
    assert markdown.index("| scratch-he |") < markdown.index("| denoising |")  # the baseline comes first
    assert r"(n=4) \*\*\*" in markdown and "††" in markdown


def test_baseline_override_and_user_mistakes(marked_results, tmp_path, write_run, capsys):
    assert report(marked_results, tmp_path / "a", "--baseline", "jigsaw") == 0
    table3 = pd.read_csv(tmp_path / "a" / "table3.csv").set_index("method")
    assert table3["baseline"].to_dict() == {m: m == "jigsaw" for m in table3.index}
    capsys.readouterr()
    assert report(marked_results, tmp_path / "b", "--baseline", "nope") == 2
    assert "error: --baseline nope: no runs of that method" in capsys.readouterr().err
    assert report(marked_results, tmp_path / "b", "--fraction", "0.3") == 2
    assert "error: --fraction 0.3: no runs at that fraction" in capsys.readouterr().err
    write_run(marked_results, "genesis", "t", 0, 1.0, {"dice": 0.5}, "dice", profile="smoke")
    assert report(marked_results, tmp_path / "b") == 2
    assert "choose one with --profile" in capsys.readouterr().err
    assert report(marked_results, tmp_path / "c", "--profile", "smoke") == 0
    assert report(tmp_path / "nothing", tmp_path / "b") == 2


def test_a_method_missing_on_several_tasks_is_listed_once(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in (0, 1):
        for task in ("t1", "t2"):
            write_run(results, "scratch-he", task, seed, 1.0, {"dice": 0.7 + seed / 100}, "dice")
        write_run(results, "genesis", "t1", seed, 0.5, {"dice": 0.6 + seed / 100}, "dice")  # another fraction only
    assert report(results, tmp_path / "out") == 0
    missing = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8")
    assert "table 3: genesis on t1, t2: no finished run at this fraction" in missing
    assert missing.count("no finished run at this fraction") == 1


def test_partial_results_show_missing_cells_and_say_why(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in (0, 1):
        write_run(results, "scratch-he", "t1", seed, 1.0, {"dice": 0.7 + seed / 100}, "dice")
        write_run(results, "genesis", "t1", seed, 1.0, {"dice": 0.8 + seed / 100}, "dice")
        write_run(results, "genesis", "t2", seed, 1.0, {"auc": 0.9 - seed / 100}, "auc")
    write_run(results, "denoising", "t1", 0, 1.0, {"dice": 0.75}, "dice")
    assert report(results, tmp_path / "out") == 0
    markdown = (tmp_path / "out" / "table3.md").read_text(encoding="utf-8")
    rows = {line.split(" | ")[0].strip("| "): line for line in markdown.splitlines() if line.startswith("| ")}
    assert rows["denoising"].endswith("| 0.750 (n=1) | – |")
    assert rows["scratch-he"].endswith("| – |")
    missing = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8")
    for reason in ("table 3: denoising on t2: no finished run at this fraction",
                   "table 3: no scratch-he (baseline) run on t2: no marks against the baseline",
                   "t1: denoising vs scratch-he (baseline): Welch t-test needs at least 2 seeds per method "
                   "(have 1 and 2)",
                   "fewer labels on t2: no scratch-he run on the full training set",
                   "label-efficiency curve: the results hold a single label fraction",
                   "convergence: no validation history at fraction 1"):
        assert reason in missing
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "denoising on t2: no finished run" in page


def test_of_duplicate_records_the_newest_is_used_and_said(tmp_path, write_run):
    results = tmp_path / "results"
    write_run(results, "scratch-he", "t", 0, 1.0, {"dice": 0.5}, "dice", suffix="old")
    write_run(results, "scratch-he", "t", 0, 1.0, {"dice": 0.7}, "dice", suffix="new",
              finished_at="2026-02-01T00:00:00+00:00")
    write_run(results, "scratch-he", "t", 1, 1.0, {"dice": 0.6}, "dice")
    assert report(results, tmp_path / "out") == 0
    assert pd.read_csv(tmp_path / "out" / "table3.csv")["mean"].tolist() == pytest.approx([0.65])
    notes = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8")
    assert "2 records for scratch-he on t, fraction 1, seed 0 (t-scratch-he-quick-s0-f1-old, " \
           "t-scratch-he-quick-s0-f1-new): the newest (t-scratch-he-quick-s0-f1-new) is used" in notes


@pytest.mark.parametrize("earlier, later", [
    ("~", "2026-01-01T00:00:00+00:00"),  # not a time: the oldest, though it sorts last as text
    ("2026-01-01T12:00:00+02:00", "2026-01-01T11:00:00+00:00"),  # 10:00 and 11:00 UTC
    (None, "2025-01-01T00:00:00+00:00"),  # a record before finished_at was recorded
])
def test_the_newest_record_is_chosen_by_its_time_not_its_text(earlier, later):
    runs = pd.DataFrame({"method": "m", "task": "t", "profile": "quick", "fraction": 1.0, "seed": 0,
                         "run_id": ["later", "earlier"], "finished_at": [later, earlier]})
    kept, notes = views.keep_newest_runs(runs)
    assert kept["run_id"].tolist() == ["later"]
    assert notes[0].endswith("the newest (later) is used")
    assert notes[1:] == (["earlier: finished_at '~' is not a time; counted as the oldest"] if earlier == "~" else [])


def write_runs_of_two_profiles(results, write_run, other: dict) -> None:
    """Seeds 0 and 1 of scratch-he on "t" with today's quick profile (Dice 0.6 + seed / 100) and with the
    ``other`` profile fields (0.7 + seed / 100, recorded later)."""
    quick = PROFILES["quick"].identity()
    for seed in (0, 1):
        for fields, dice, suffix in ((quick, 0.6, "quick"), (other, 0.7, "other")):
            folder = write_run(results, "scratch-he", "t", seed, 1.0, {"dice": dice + seed / 100}, "dice",
                               suffix=suffix, finished_at=f"2026-0{2 if suffix == 'other' else 1}-01T00:00:00+00:00")
            record = json.loads((folder / "result.json").read_text(encoding="utf-8"))
            files.write_json(folder / "result.json", {**record, "identity": {"profile": fields}})


def test_a_field_a_record_predates_is_unrecorded_never_taken_for_todays_default(tmp_path, write_run, capsys):
    """A run recorded before a profile field existed (no ``lr_decay`` in its schedule) ran with whatever the
    code did then: it is labelled with the field ``unrecorded``, not pooled with runs of today's default."""
    results = tmp_path / "results"
    quick = PROFILES["quick"].identity()
    before = {**quick, "segmentation": {k: v for k, v in asdict(PROFILES["quick"].segmentation).items()
                                        if k != "lr_decay"}}
    write_runs_of_two_profiles(results, write_run, before)
    assert report(results, tmp_path / "mixed") == 2
    assert "profiles 'quick', 'quick [segmentation.lr_decay=unrecorded]': choose one" in capsys.readouterr().err
    assert report(results, tmp_path / "quick", "--profile", "quick") == 0
    assert pd.read_csv(tmp_path / "quick" / "table3.csv")["mean"].tolist() == pytest.approx([0.605])


def test_runs_with_replaced_profile_fields_are_another_profile_never_pooled(tmp_path, write_run, capsys):
    """A run of a longer schedule (``--profile-arg segmentation.epochs=50``) is never taken for a rerun of
    the named profile's cell: its profile is labelled with the replaced field and reported on its own."""
    results = tmp_path / "results"
    quick = PROFILES["quick"].identity()
    longer = {**quick, "segmentation": {**asdict(PROFILES["quick"].segmentation), "epochs": 50}}
    write_runs_of_two_profiles(results, write_run, longer)
    assert report(results, tmp_path / "mixed") == 2
    assert "profiles 'quick', 'quick [segmentation.epochs=50]': choose one" in capsys.readouterr().err
    assert report(results, tmp_path / "quick", "--profile", "quick") == 0
    assert pd.read_csv(tmp_path / "quick" / "table3.csv")["mean"].tolist() == pytest.approx([0.605])
    assert report(results, tmp_path / "longer", "--profile", "quick [segmentation.epochs=50]") == 0
    assert pd.read_csv(tmp_path / "longer" / "table3.csv")["mean"].tolist() == pytest.approx([0.705])
    assert "records for" not in (tmp_path / "longer" / "not_computed.md").read_text(encoding="utf-8")


def test_wilcoxon_pairs_seed_averaged_cases(tmp_path, write_run):
    results = tmp_path / "results"
    rng = np.random.default_rng(3)
    cases = [f"case{i}" for i in range(9)]
    dice = {(m, s): rng.uniform(0.5, 0.9, len(cases)) + (0.05 if m == "genesis" else 0)
            for m in ("genesis", "scratch-he") for s in (0, 1)}
    for (method, seed), values in dice.items():
        write_run(results, method, "seg", seed, 1.0, {"dice": float(values.mean())}, "dice",
                  cases={"case_id": cases[::-1] if seed else cases, "dice": values[::-1] if seed else values})
    assert report(results, tmp_path / "out") == 0
    tests = pd.read_csv(tmp_path / "out" / "pairwise_seg.csv")
    (row,) = tests[tests["test"].str.startswith("Wilcoxon")].itertuples()
    averaged = {m: (dice[m, 0] + dice[m, 1]) / 2 for m in ("genesis", "scratch-he")}
    expected = st.wilcoxon(averaged[row.method_a], averaged[row.method_b])
    assert (row.statistic, row.p) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))
    assert row.n == "pairs 9, nonzero 9" and "averaged over each method's seeds" in row.pairing
    legend = (tmp_path / "out" / "pairwise_seg.md").read_text(encoding="utf-8")
    assert "'significant for these trained models'" in legend  # a per-case test holds the trained models fixed


def test_label_efficiency_and_convergence_numbers(tmp_path, write_run):
    results = tmp_path / "results"
    history = {"epoch": [0, 1, 2, 3], "train_loss": [1.0, 0.8, 0.6, 0.5], "val_dice": [0.2, 0.5, 0.9, 1.0]}
    for seed, delta in enumerate((-0.02, 0.02)):
        write_run(results, "scratch-he", "t", seed, 1.0, {"dice": 0.8 + delta / 2}, "dice", history=history)
        for fraction, score in ((0.25, 0.7), (0.5, 0.9), (1.0, 0.95)):
            write_run(results, "genesis", "t", seed, fraction, {"dice": score + delta}, "dice",
                      history={**history, "val_dice": [0.2, 0.96, 0.9, 1.0]})
    assert report(results, tmp_path / "out") == 0
    savings = pd.read_csv(tmp_path / "out" / "fewer_labels.csv")
    assert savings["fewer_labels"].tolist() == pytest.approx([1 - 0.375])  # 0.8 reached at 0.25 + 0.25 * 0.1 / 0.2
    curves = pd.read_csv(tmp_path / "out" / "label_efficiency.csv").set_index(["method", "fraction"])
    low, high = st.t.interval(0.95, 1, loc=0.7, scale=st.sem([0.68, 0.72]))
    assert (curves.loc[("genesis", 0.25), "low"], curves.loc[("genesis", 0.25), "high"]) == \
        (pytest.approx(low), pytest.approx(high))
    runs = pd.read_csv(tmp_path / "out" / "convergence_runs.csv")
    assert runs.groupby("method")["epochs_to_95pct_of_best"].unique().to_dict() == {"genesis": [2], "scratch-he": [4]}
    summary = pd.read_csv(tmp_path / "out" / "convergence.csv").set_index("method")
    assert summary.loc["genesis", "faster_than_baseline"] == pytest.approx(1 - 2 / 4)


def test_report_has_help(capsys):
    with pytest.raises(SystemExit) as exit_status:
        main(["report", "--help"])
    assert exit_status.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--results", "--out", "--baseline", "--correction"))
