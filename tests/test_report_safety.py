"""`benchmark report` on hostile or broken results: every record string escaped in every format,
ids checked before they become paths, broken records listed and skipped, runs of different data or
code never pooled."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import start_tags

from benchmark.cli import main
from benchmark.engine import store
from benchmark.errors import UserError
from benchmark.names import check_name, is_valid_name
from benchmark.reporting.build import LOCK
from benchmark.reporting.formats import latex_text, markdown_text

EVIL_HTML = "<img src=x onerror=alert(1)>"
EVIL_TEX = "a\\b{c}$d&e#f^g_h~i%j"
EVIL_MD = "p|q`r\ns*t"
EVIL_MATH = "$\\cmd{$"
EVIL_CSV = '=HYPERLINK("http://evil.example","click")'
EVIL_LATEX_OPTION = "[2pt]x"
EVIL_BIDI = "safe\u202eexe.fdp"  # shown right to left after the override: "safepdf.exe"


def report(results, out, *extra):
    return main(["report", "--results", str(results), "--out", str(out), "--no-progress", *extra])


def patch_record(folder: Path, **changes) -> None:
    path = folder / "result.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    record.update(changes)
    path.write_text(json.dumps(record), encoding="utf-8")


def tree(root: Path) -> set[Path]:
    return {path for path in root.rglob("*")}


@pytest.mark.parametrize("name", ["genesis", "scratch-he", "lcs-genesis-quick-s0-f0.25-d6edada05786", "a_b.c", "..a"])
def test_valid_names(name):
    assert is_valid_name(name) and check_name(name, "x") == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "/abs", "a b", "a\nb", "x" * 201, None, 3,
                                  "genesis\n", "é"])
def test_invalid_names_are_refused_in_one_line(name):
    assert not is_valid_name(name)
    with pytest.raises(UserError, match="checkpoint id .* is not a valid name") as error:
        check_name(name, "checkpoint id")
    assert "\n" not in str(error.value)


def test_every_record_string_is_escaped_in_every_format(tmp_path, write_run):
    results = tmp_path / "results"
    methods = {"scratch-he": "scratch-he", "m1": EVIL_HTML, "m2": EVIL_TEX, "m3": EVIL_MD, "m4": EVIL_MATH,
               "m5": EVIL_CSV, "m6": EVIL_LATEX_OPTION, "m7": EVIL_BIDI}
    for safe, shown in methods.items():
        for seed, fraction in ((0, 1.0), (1, 1.0), (0, 0.5), (1, 0.5)):
            folder = write_run(results, safe, "t", seed, fraction, {"dice": 0.7 + seed / 100 + len(safe) / 1000},
                               "dice", history={"epoch": [0, 1], "val_dice": [0.5, 0.6]})
            patch_record(folder, method=shown, metrics={EVIL_MATH: 0.7 + seed / 100 + len(safe) / 1000},
                         primary_metric=EVIL_MATH, profile="quick",
                         data={"kind": EVIL_HTML, "root": EVIL_MD, "fingerprint": "fp"})
            (folder / "history.csv").write_text(f"epoch,val_{EVIL_MATH}\n0,0.5\n1,0.6\n", encoding="utf-8")
    assert report(results, tmp_path / "out") == 0
    out = tmp_path / "out"

    page = (out / "index.html").read_text(encoding="utf-8")
    assert EVIL_HTML not in page and html.escape(EVIL_HTML) in page
    tags = start_tags(page)
    assert {tag for tag, _ in tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p",
                                               "table", "thead", "tbody", "tr", "th", "td", "b", "sup", "ul", "li",
                                               "img"}
    assert all(attrs["src"].startswith("data:image/png;base64,") for tag, attrs in tags if tag == "img")

    for name in ("table3.md", "pairwise_t.md", "label_efficiency.md", "provenance.md"):
        lines = [line for line in (out / name).read_text(encoding="utf-8").splitlines() if line.startswith("|")]
        columns = {len(re.findall(r"(?<!\\)\|", line)) for line in lines}
        assert len(columns) == 1, f"{name}: a cell's pipe or newline broke the table"
    table3 = (out / "table3.md").read_text(encoding="utf-8")
    assert markdown_text(EVIL_MD) in table3 and markdown_text(EVIL_HTML) in table3
    assert all(raw not in table3 for raw in (EVIL_HTML, EVIL_MD, EVIL_MATH, "p|q"))
    assert "\u202e" not in page + table3 and "safe&lt;U+202E&gt;exe.fdp" in page  # no reordering control
    tex = (out / "table3.tex").read_text(encoding="utf-8")
    assert r"a\textbackslash{}b\{c\}\$d\&e\#f\textasciicircum{}g\_h\textasciitilde{}i\%j" in tex
    assert latex_text(EVIL_HTML) in tex and EVIL_TEX not in tex
    assert "{[}2pt{]}x" in tex and "[2pt]" not in tex   # "[" opening a row: the line break's option
    for path in out.glob("*.csv"):  # no cell a spreadsheet would run as a formula
        cells = pd.read_csv(path, dtype=str, keep_default_na=False).to_numpy().ravel().tolist()
        assert not [cell for cell in cells if cell.startswith(("=", "+", "@"))], path.name
    assert "'" + EVIL_CSV in pd.read_csv(out / "table3.csv")["method"].tolist()
    for figure in ("label_efficiency", "convergence", "seeds_boxplot"):
        assert (out / f"{figure}.pdf").stat().st_size > 0 and (out / f"{figure}.png").stat().st_size > 0


def test_ids_that_are_not_names_never_become_paths(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in (0, 1):
        write_run(results, "scratch-he", "t", seed, 1.0, {"dice": 0.7 + seed / 100}, "dice")
        write_run(results, "genesis", "t", seed, 1.0, {"dice": 0.8 + seed / 100}, "dice")
    escape = write_run(results, "genesis", "t", 2, 1.0, {"dice": 0.8}, "dice")
    patch_record(escape, pretraining={"checkpoint_id": "../../../outside"})
    climbing_task = write_run(results, "genesis", "t", 3, 1.0, {"dice": 0.8}, "dice")
    patch_record(climbing_task, task="../../evil")
    slashed_run = write_run(results, "genesis", "t", 4, 1.0, {"dice": 0.8}, "dice")
    patch_record(slashed_run, run_id="a/../../b")
    (tmp_path / "outside").mkdir()
    before = tree(tmp_path)
    assert report(results, tmp_path / "out") == 0
    created = tree(tmp_path) - before
    assert all(tmp_path / "out" in path.parents or path == tmp_path / "out" for path in created), created
    missing = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8")
    for folder, why in ((escape, "pretraining.checkpoint_id '../../../outside' is not a valid name"),
                        (climbing_task, "task '../../evil' is not a valid name"),
                        (slashed_run, "run_id 'a/../../b' is not a valid name")):
        line = next(line for line in missing.splitlines() if markdown_text(str(folder / "result.json")) in line)
        assert markdown_text(why) in line and line.endswith("skipped")
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv")
    assert table3["n_seeds"].tolist() == [2, 2]


BROKEN_FILES = {  # content of result.json -> why it is skipped
    "[]": "not a run record (a JSON object expected, found list)",
    "{}": "not a run record (missing run_id, method, task, seed, fraction, profile, metrics)",
    "not json": "cannot read the record",
    "\xff\xfe": "cannot read the record",
    "[" * 100_000: "cannot read the record (nested too deeply)",
    "{}" + " " * 300_000: "300002 bytes, more than a record's 262144",  # refused unread
}
WRONG_TYPES = [  # changes to a record -> why it is skipped
    ({"seed": "zero"}, "'seed' is not an integer from 0 to 4294967295 ('zero')"),
    ({"seed": 1.5}, "'seed' is not an integer from 0 to 4294967295 (1.5)"),
    ({"seed": 10**30}, "'seed' is not an integer from 0 to 4294967295 (1000000000000000000000000000000)"),
    ({"seed": -1}, "'seed' is not an integer from 0 to 4294967295 (-1)"),
    ({"fraction": 2}, "'fraction' is not a number in (0, 1] (2)"),
    ({"fraction": 10**400}, "'fraction' is not a number in (0, 1] (10000000000"),  # cut to a line's length
    ({"metrics": {"dice": "high"}}, "'metrics' is not an object of numbers"),
    ({"metrics": {"dice": 10**400}}, "'metrics' is not an object of numbers"),  # no float holds it
    ({"metrics": []}, "'metrics' is not an object of numbers"),
    ({"method": ""}, "'method' is not a non-empty string"),
    ({"method": "m" * 201}, "'method' is 201 characters long, more than a name's 200"),
    ({"warnings": ["w" * 5000]}, "a text in 'warnings' is 5000 characters long, more than 4096"),
]


def test_a_broken_record_is_one_line_of_not_computed_and_the_report_goes_on(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in (0, 1):
        write_run(results, "scratch-he", "t", seed, 1.0, {"dice": 0.7 + seed / 100}, "dice")
    broken = {}
    for index, (content, why) in enumerate(BROKEN_FILES.items()):
        path = results / "runs" / f"broken{index}" / "result.json"
        path.parent.mkdir()
        path.write_bytes(content.encode("latin-1"))
        broken[path] = why
    for seed, (changes, why) in enumerate(WRONG_TYPES, start=10):
        path = write_run(results, "genesis", "t", seed, 1.0, {"dice": 0.8}, "dice") / "result.json"
        patch_record(path.parent, **changes)
        broken[path] = why
    odd_but_fine = write_run(results, "genesis", "t", 0, 1.0, {"dice": 0.8}, "dice")
    patch_record(odd_but_fine, versions=[], compute="x", pretraining=3)  # optional fields of the wrong shape: missing
    assert report(results, tmp_path / "out") == 0
    lines = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8").splitlines()
    for path, why in broken.items():
        (line,) = [line for line in lines if markdown_text(f"{path}:") in line]
        assert markdown_text(why) in line and line.endswith("skipped")
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv").set_index("method")
    assert table3["n_seeds"].to_dict() == {"scratch-he": 2, "genesis": 1}


def test_a_skipped_record_is_one_escaped_line_on_the_terminal(tmp_path, write_run, capsys):
    results = tmp_path / "results"
    for seed in (0, 1):
        write_run(results, "scratch-he", "t", seed, 1.0, {"dice": 0.7 + seed / 100}, "dice")
    forged = results / "runs" / "odd\x1b[2J\nerror: forged" / "result.json"  # a folder name is the user's, not ours
    forged.parent.mkdir()
    forged.write_text("{")
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "odd" in line]
    assert line.startswith("warning: ") and "\\x1b[2J\\nerror: forged" in line and "\x1b" not in line


def test_a_report_waiting_for_another_in_the_same_folder_says_so(tmp_path, write_run, caplog):
    results, out = tmp_path / "results", tmp_path / "out"
    for seed in (0, 1):
        write_run(results, "scratch-he", "t", seed, 1.0, {"dice": 0.7 + seed / 100}, "dice")
    statuses = []
    with caplog.at_level("INFO", logger="benchmark.engine.store"), store.exclusive(out / LOCK, wait=False):
        waiter = threading.Thread(target=lambda: statuses.append(report(results, out)))
        waiter.start()
        deadline = time.monotonic() + 60
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
    waiter.join(120)
    assert statuses == [0]
    assert caplog.records[0].getMessage() == \
        f"waiting for {out / LOCK}: another process is building a report in {out}"


def test_out_naming_a_file_is_a_one_line_error(tmp_path, write_run, capsys):
    results = tmp_path / "results"
    write_run(results, "scratch-he", "t", 0, 1.0, {"dice": 0.7}, "dice")
    (tmp_path / "a-file").write_text("keep me")
    assert report(results, tmp_path / "a-file") == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path / 'a-file'}: is a file, not a folder\n"
    assert report(results, tmp_path / "a-file" / "below") == 2
    assert capsys.readouterr().err.startswith(f"error: --out {tmp_path / 'a-file' / 'below'}: cannot create")
    assert (tmp_path / "a-file").read_text() == "keep me"


# --------------------------------------------------------------------------- provenance and pooling


def write_pair(results, write_run, seeds, **changes):
    """scratch-he and genesis runs on task t at ``seeds``, their records changed by ``changes``."""
    for seed in seeds:
        for method, score in (("scratch-he", 0.7), ("genesis", 0.8)):
            folder = write_run(results, method, "t", seed, 1.0, {"dice": score + seed / 100}, "dice",
                               suffix=f"s{seed}")
            patch_record(folder, **changes)


def test_runs_on_different_data_are_refused_unless_one_is_selected(tmp_path, write_run, capsys):
    results = tmp_path / "results"
    write_pair(results, write_run, (0, 1), data={"kind": "phantom", "root": "/p", "fingerprint": "fp-phantom"})
    write_pair(results, write_run, (2, 3), data={"kind": "directory", "root": "/LiTS", "fingerprint": "fp-lits"})
    assert report(results, tmp_path / "mixed") == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == ("error: task t: runs made with different data (fp-lits (4 runs), fp-phantom (4 runs)) are not "
                     "pooled into one comparison: choose one with --select data=FINGERPRINT")
    assert report(results, tmp_path / "lits", "--select", "data=fp-lits") == 0
    table3 = pd.read_csv(tmp_path / "lits" / "table3.csv")
    assert (table3["n_seeds"] == 2).all() and (table3["data_fingerprint"] == "fp-lits").all()
    assert (table3["data_kind"] == "directory").all()
    assert report(results, tmp_path / "x", "--select", "data=fp-nope") == 2
    assert "no run has data fp-nope (the results hold fp-lits, fp-phantom)" in capsys.readouterr().err
    assert report(results, tmp_path / "x", "--select", "colour=red") == 2
    assert "expected KEY=VALUE with KEY one of data, pretrain_data, weights, code" in capsys.readouterr().err


def test_runs_of_different_code_or_pretraining_data_are_not_pooled(tmp_path, write_run, capsys):
    results = tmp_path / "results"
    write_pair(results, write_run, (0, 1))  # older records: no code fingerprint, one group "unknown"
    write_pair(results, write_run, (2, 3), versions={"code": "c0de", "git": {"commit": "abc1234def", "dirty": True}})
    assert report(results, tmp_path / "a") == 2
    assert "runs made with different code (c0de (4 runs), unknown (4 runs))" in capsys.readouterr().err
    assert report(results, tmp_path / "a", "--select", "code=c0de") == 0
    table3 = pd.read_csv(tmp_path / "a" / "table3.csv")
    assert (table3["code_fingerprint"] == "c0de").all() and (table3["git_commit"] == "abc1234def (dirty)").all()
    assert report(results, tmp_path / "b", "--select", "code=unknown") == 0

    pretrained = tmp_path / "pretrained"
    for seed, pool in ((0, "pool-a"), (1, "pool-b")):
        folder = write_run(pretrained, "genesis", "t", seed, 1.0, {"dice": 0.8}, "dice")
        patch_record(folder, pretrain_data={"kind": "phantom", "root": "/c", "fingerprint": pool})
        write_run(pretrained, "scratch-he", "t", seed, 1.0, {"dice": 0.7}, "dice")  # no pretraining data: fits any
    assert report(pretrained, tmp_path / "c") == 2
    assert "different pretraining data (pool-a (1 runs), pool-b (1 runs))" in capsys.readouterr().err
    assert report(pretrained, tmp_path / "c", "--select", "pretrain_data=pool-a") == 0
    table3 = pd.read_csv(tmp_path / "c" / "table3.csv").set_index("method")
    assert table3["n_seeds"].to_dict() == {"scratch-he": 2, "genesis": 1}
    assert (table3["pretrain_data"] == "phantom pool-a").all()


def test_runs_of_one_method_from_different_weights_files_are_not_pooled(tmp_path, write_run, capsys):
    """Two released files of one layout (MedicalNet trained on other datasets, say) are two models: the
    seeds of one method made from both never form one cell."""
    results = tmp_path / "results"
    for seed, weights in ((0, "file-a"), (1, "file-b"), (2, "file-a")):
        folder = write_run(results, "medicalnet", "t", seed, 1.0, {"dice": 0.8 + seed / 50}, "dice")
        patch_record(folder, weights={"path": f"/w/{weights}.pth", "fingerprint": weights})
        write_run(results, "scratch-he", "t", seed, 1.0, {"dice": 0.7 + seed / 100}, "dice")  # no weights: fits any
    assert report(results, tmp_path / "mixed") == 2
    assert ("runs of medicalnet on unet3d made with different weights files (file-a (2 runs), file-b (1 runs))"
            in capsys.readouterr().err)
    assert report(results, tmp_path / "a", "--select", "weights=file-a") == 0
    assert pd.read_csv(tmp_path / "a" / "table3.csv").set_index("method")["n_seeds"].to_dict() == \
        {"scratch-he": 3, "medicalnet on unet3d": 2}


def test_methods_pretrained_on_different_data_are_compared(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in (0, 1):
        for method, pool in (("genesis", "ct-pool"), ("denoising", "another-pool")):
            folder = write_run(results, method, "t", seed, 1.0, {"dice": 0.8 + seed / 100}, "dice")
            patch_record(folder, pretrain_data={"kind": "phantom", "root": "/p", "fingerprint": pool})
        write_run(results, "scratch-he", "t", seed, 1.0, {"dice": 0.7 + seed / 100}, "dice")
    assert report(results, tmp_path / "out") == 0
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv").set_index("method")
    assert table3["n_seeds"].to_dict() == {"scratch-he": 2, "denoising": 2, "genesis": 2}


def two_method_results(root: Path, write_run, fractions: tuple[float, ...]) -> Path:
    for method, base in (("scratch-he", 0.7), ("genesis", 0.8)):
        for seed in (0, 1, 2):
            for fraction in fractions:
                write_run(root, method, "t", seed, fraction, {"dice": base + seed / 100 + fraction / 10}, "dice")
    return root


def test_a_new_report_replaces_the_old_one_and_keeps_the_users_files(tmp_path, write_run):
    out = tmp_path / "out"
    assert report(two_method_results(tmp_path / "a", write_run, (0.25, 1.0)), out) == 0
    first = {path.name for path in out.iterdir()}
    (out / "README.md").write_text("mine", encoding="utf-8")
    (out / "results").mkdir()
    for seed in (0, 1, 2):  # the baseline alone: no test against it, so no pairwise tables
        write_run(tmp_path / "b", "scratch-he", "t", seed, 1.0, {"dice": 0.7 + seed / 100}, "dice")
    assert report(tmp_path / "b", out) == 0
    second = {path.name for path in out.iterdir()}
    dropped = first - second
    assert {"pairwise.csv", "pairwise_t.md", "power.csv"} <= dropped, dropped
    assert {"README.md", "results", "index.html"} <= second and not (out / ".report-staging").exists()
    listed = (out / "index.html").read_text(encoding="utf-8")
    assert all(name in listed for name in second - {"README.md", "results", ".report-files", ".report.lock"})


@pytest.mark.parametrize("stage", ["writing", "publishing"])
def test_a_report_killed_part_way_never_leaves_a_page_beside_another_reports_tables(tmp_path, write_run,
                                                                                  monkeypatch, stage):
    import benchmark.reporting.build as build

    out = tmp_path / "out"
    assert report(two_method_results(tmp_path / "a", write_run, (1.0,)), out) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    if stage == "writing":
        monkeypatch.setattr(build, "write_calibration", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    else:
        real, moved = build.os.replace, []

        def replace_then_die(source, target):
            if len(moved) == 3:
                raise KeyboardInterrupt
            moved.append(target)
            real(source, target)

        publish = build.Writer.publish

        def publish_then_die(writer):
            monkeypatch.setattr(build.os, "replace", replace_then_die)
            publish(writer)

        monkeypatch.setattr(build.Writer, "publish", publish_then_die)
    with pytest.raises(KeyboardInterrupt):
        build.build_report(build.Settings(results=two_method_results(tmp_path / "b", write_run, (1.0, 0.5)), out=out,
                                          progress=False))
    after = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    if stage == "writing":
        assert after == before  # the old report, whole
    else:
        assert "index.html" not in after  # incomplete, and it shows
    monkeypatch.undo()
    assert report(tmp_path / "b", out) == 0 and (out / "index.html").is_file()
    assert not (out / ".report-staging").exists()


def test_a_hostile_file_list_removes_nothing_outside_the_report(tmp_path, write_run):
    out = tmp_path / "out"
    results = two_method_results(tmp_path / "a", write_run, (1.0,))
    assert report(results, out) == 0
    (tmp_path / "victim").write_text("keep", encoding="utf-8")
    (out / ".report-files").write_text("../victim\n/etc/hostname\n.report.lock\n\n", encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "kept").write_text("keep", encoding="utf-8")
    (out / ".report-staging").symlink_to(tmp_path / "elsewhere")
    assert report(results, out) == 0
    assert (tmp_path / "victim").read_text(encoding="utf-8") == "keep" and (out / ".report.lock").exists()
    assert (tmp_path / "elsewhere" / "kept").is_file() and not (out / ".report-staging").exists()
