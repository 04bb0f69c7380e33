"""User mistakes end with one ``error:`` line and a non-zero status; bugs with a traceback and a plea."""

from __future__ import annotations

import contextlib
import errno
import json

import pytest

from benchmark import cli
from benchmark.engine import store
from benchmark.engine.harness import RunSpec, execute, plan_run
from benchmark.engine.sweep import pending_work


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("argv, message", [
    (["run", "--method", "genesis"], "required: --task"),
    (["frobnicate"], "invalid choice"),
    (["run", "--method", "genesis", "--task", "ncs", "--seed", "x"], "invalid int value"),
])
def test_argument_parsing_mistakes_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    line = one_error_line(capsys)
    assert message in line and "--help" in line


@pytest.mark.parametrize("argv, message", [
    (["run", "--method", "genesis", "--task", "ncs", "--seed", "-1"], "--seed -1: must be an integer from 0"),
    (["run", "--method", "genesis", "--task", "ncs", "--seed", str(2**32)], "must be an integer from 0"),
    (["sweep", "--methods", "genesis", "--tasks", "ncs", "--seeds", "0,-3"], "--seed -3"),
    (["pretrain", "--method", "genesis", "--profile", "smoke", "--seed", "-2"], "--seed -2"),
])
def test_seeds_out_of_range_are_one_line(argv, message, tmp_path, capsys):
    assert cli.main([*argv, "--results", str(tmp_path)]) == 2
    assert message in one_error_line(capsys)


def test_a_binary_split_file_is_one_line(tmp_path, capsys):
    splits = tmp_path / "splits.csv"
    splits.write_bytes(bytes(range(256)) * 4)
    status = cli.main(["run", "--method", "scratch-he", "--task", "ncs", "--profile", "smoke",
                       "--splits", str(splits), "--results", str(tmp_path / "results")])
    assert status == 2 and "not a readable CSV text file" in one_error_line(capsys)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EFBIG])
def test_a_folder_that_cannot_be_written_is_one_line(code, monkeypatch, capsys):
    def fail(args):
        raise OSError(code, "cannot write", "/results/runs/x/result.json")

    monkeypatch.setattr(cli, "module_command", lambda module: fail)
    assert cli.main(["list"]) == 2
    assert one_error_line(capsys) == "error: /results/runs/x/result.json: cannot write"


def test_an_unexpected_failure_shows_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    def fail(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "module_command", lambda module: fail)
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: a bug" in err and "please report it" in err


@pytest.fixture
def damaged_record(tmp_path):
    spec = RunSpec(method="scratch-he", task="ncs", profile="smoke")
    run_id = plan_run(spec).run_id
    path = store.run_dir(tmp_path, run_id) / store.RESULT_FILE
    path.parent.mkdir(parents=True)
    return spec, run_id, path


@pytest.mark.parametrize("content", ["[]", "{}", "{not json", '{"run_id": "another"}'])
def test_an_unreadable_record_is_named_and_replaced_with_force(content, damaged_record, tmp_path, monkeypatch):
    spec, run_id, path = damaged_record
    path.write_text(content)
    with pytest.raises(store.UnreadableRecord, match="--force"):
        execute(spec, tmp_path)
    computed = []
    monkeypatch.setattr("benchmark.engine.harness._compute", lambda plan, *args: computed.append(plan.run_id) or {})
    execute(spec, tmp_path, force=True)
    assert computed == [run_id]


@pytest.mark.parametrize("changes", [{"finetune": {}}, {"wall_seconds": "slow"}, {"data": []},
                                     {"metrics": {"auc": "x"}}])
def test_a_finished_record_the_summary_cannot_show_is_one_line_not_a_traceback(changes, damaged_record, tmp_path,
                                                                                capsys):
    spec, run_id, path = damaged_record
    record = {key: {} for key in store.RECORD_KEYS} | {
        "run_id": run_id, "method": "scratch-he", "task": "ncs", "profile": "smoke", "seed": 0, "fraction": 1.0,
        "metrics": {"iou": 0.5}, "transfer": {"transferred": "none"}, "cases": {"train": 1, "val": 1, "test": 1},
        "finetune": {"epochs": 1, "best_epoch": 1}, "wall_seconds": 1.0, "peak_memory_mb": 1.0, "device": "cpu",
        "data": {"kind": "phantom", "root": "x"}}
    path.write_text(json.dumps(record | changes))
    status = cli.main(["run", "--method", "scratch-he", "--task", "ncs", "--profile", "smoke", "--results",
                       str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and str(path) in err and "--force" in err


@pytest.mark.parametrize(("made_on", "warned"), [("cuda", True), ("cuda:1", True), ("cpu", False)])
def test_a_record_made_on_another_kind_of_device_is_reused_with_a_warning(made_on, warned, damaged_record,
                                                                          tmp_path, caplog):
    spec, run_id, path = damaged_record
    record = {key: {} for key in store.RECORD_KEYS} | {
        "run_id": run_id, "method": "scratch-he", "task": "ncs", "profile": "smoke", "seed": 0, "fraction": 1.0,
        "metrics": {"iou": 0.5}, "device": made_on}
    path.write_text(json.dumps(record))
    with caplog.at_level("WARNING", logger="benchmark.engine.harness"):
        assert execute(spec, tmp_path, device_name="cpu")["reused"]
    lines = [r.getMessage() for r in caplog.records if "computed on" in r.getMessage()]
    assert lines == ([f"run {run_id}: its record was computed on cuda; reused here, where it would run on cpu "
                      "('benchmark run --force' computes it again, --results elsewhere keeps both)"] if warned else [])


@pytest.mark.parametrize("held", [False, True])
def test_reusing_a_record_removes_what_a_run_killed_after_writing_it_left(damaged_record, tmp_path, held):
    """latest.pt and a half-written temporary record go, unless another process holds the run (--force)."""
    spec, run_id, path = damaged_record
    path.write_text(json.dumps({key: {} for key in store.RECORD_KEYS} | {
        "run_id": run_id, "method": "scratch-he", "task": "ncs", "profile": "smoke", "seed": 0, "fraction": 1.0,
        "metrics": {"iou": 0.5}, "device": "cpu"}))
    leftovers = {path.parent / store.LATEST_FILE, path.parent / ".result.json.ab_cd123.tmp"}
    for leftover in leftovers:
        leftover.write_text('{"run_id": "partial')
    with store.exclusive(store.lock_path(tmp_path, run_id), wait=False) if held else contextlib.nullcontext():
        assert execute(spec, tmp_path, device_name="cpu")["reused"]
    assert set(path.parent.iterdir()) == {path} | (leftovers if held else set())


@pytest.mark.parametrize("content", ["[]", '{"seed": 1' + "0" * 5000 + "}"])  # the second: no int holds it
def test_a_sweep_leaves_a_cell_with_an_unreadable_record_to_its_job(damaged_record, tmp_path, content):
    spec, run_id, path = damaged_record
    path.write_text(content)
    _, unfinished = pending_work([plan_run(spec)], tmp_path)
    assert [plan.run_id for plan in unfinished] == [run_id]


@pytest.mark.parametrize("argv, message", [
    (["--backbone", "i3d", "--profile-arg", "cube=8,32,32"], "the pretraining cube"),
    (["--backbone", "resnet3d", "--backbone-arg", "depth=7"], "resnet3d"),
    (["--backbone", "unet2d"], "cannot pretrain or initialise backbone 'unet2d'"),
])
def test_pretrain_checks_its_backbone_as_run_does(argv, message, tmp_path, capsys):
    status = cli.main(["pretrain", "--method", "genesis", "--profile", "smoke", *argv, "--results", str(tmp_path)])
    assert status == 2 and message in one_error_line(capsys)


@pytest.mark.parametrize("argv", [
    ["run", "--method", "a\nb\x1b[31m", "--task", "lcs"],
    ["pretrain", "--method", "genesis", "--backbone", "evil\nname"],
    ["run", "--method", "genesis", "--task", "lcs", "--profile-arg", "cube=1\n2"],
])
def test_a_line_break_or_control_sequence_typed_by_the_user_stays_on_the_error_line(argv, tmp_path, capsys):
    assert cli.main([*argv, "--results", str(tmp_path)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "\x1b" not in errors[0]


SWEEP = ["sweep", "--methods", "scratch-he", "--tasks", "ncc", "--profile", "smoke", "--no-progress"]


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "0,0"], "--seeds 0,0: 0 and 0 name the same value"),
    (["--seeds", "1,2,2,1"], "--seeds 1,2,2,1: 2 and 2 name the same value"),
    (["--fractions", "1,1.0,1e0"], "--fractions 1,1.0,1e0: 1 and 1.0 name the same value"),
    (["--fractions", ",,"], "--fractions ',,': the list has no item"),
    (["--seeds", " "], "--seeds ' ': the list has no item"),
    (["--protocols", ","], "--protocols ',': the list has no item"),
    (["--protocols", "full,full"], "full and full name the same value"),
    (["--protocols", "freeze:\u00b2"], "--protocol freeze:\u00b2: expected"),
    (["--backbones", ","], "--backbones ',': the list has no item"),
    (["--slurm-time", "5"], "--slurm-time applies to --executor slurm only"),
    (["--executor", "slurm", "--slurm-time", "-5"], "--slurm-time -5: must be at least 1"),
    (["--jobs", "4", "--executor", "inline"], "--executor inline runs one job at a time"),
    (["--weights", "scratch-he="], "--weights scratch-he=: expected METHOD=FILE"),
    (["--seeds", ",".join(map(str, range(100_001)))], "a grid of 100001 cells"),
])
def test_a_sweep_given_an_empty_repeated_or_inapplicable_option_is_one_line(extra, message, tmp_path, capsys):
    assert cli.main([*SWEEP, *extra, "--results", str(tmp_path / "results")]) == 2
    assert message in one_error_line(capsys)
    assert not list(tmp_path.glob("results/runs/*"))


def test_an_empty_list_of_methods_is_one_line(tmp_path, capsys):
    assert cli.main(["sweep", "--methods", ",,", "--tasks", "ncc", "--results", str(tmp_path)]) == 2
    assert "--methods ',,': the list has no item" in one_error_line(capsys)


def test_a_sweep_into_a_results_file_is_one_line_before_any_cell(tmp_path, capsys):
    results = tmp_path / "results"
    results.write_text("not a folder")
    assert cli.main([*SWEEP, "--tasks", "ncc,lcs", "--results", str(results)]) == 2
    assert f"--results {results}: is a file, not a folder" in one_error_line(capsys)


def test_a_slurm_sweep_off_a_cluster_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    assert cli.main([*SWEEP, "--executor", "slurm", "--results", str(tmp_path / "results")]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: --executor slurm: ") and "srun" in line


@pytest.mark.parametrize("argv", [["run", "--method", "scratch-he", "--task", "lcs", "--profile", "smoke",
                                   "--results", "results"], ["verify-data", "--task", "lcs"]])
def test_a_data_root_whose_links_loop_is_one_line(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    assert cli.main([*argv, "--data-root", "a"]) == 2
    assert one_error_line(capsys) == "error: a: symlink loop"


@pytest.mark.parametrize("argv, message", [
    (["run", "--method", "genesis", "--task", "ncc", "--weights", "."], ".: is a folder, not a weights file"),
    (["run", "--method", "scratch-he", "--task", "ncc", "--weights", "."],
     ".: method 'scratch-he' initialises at random; --weights needs a method that transfers weights"),
    (["run", "--method", "scratch-he", "--task", "ncc", "--data-root", "FILE"], "FILE: is a file, not a data folder"),
])
def test_a_file_given_for_a_folder_and_a_folder_for_a_file_are_named_so(argv, message, tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("x")
    assert cli.main([*argv, "--profile", "smoke", "--results", str(tmp_path / "results")]) == 2
    assert message in one_error_line(capsys)
