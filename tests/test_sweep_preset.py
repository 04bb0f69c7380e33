"""benchmark sweep --preset: grids from a JSON file, built in (calibration) or a user's own, read as
untrusted input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import error_line

from benchmark.cli import main
from benchmark.cli.preset import load_preset
from benchmark.reporting.variants import how_transferred, label

FAST = ["--profile", "smoke", "--no-progress", "--profile-arg", "classification.epochs=1",
        "--profile-arg", "classification.steps_per_epoch=2"]


def write_preset(path: Path, content: object) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_the_calibration_preset_holds_the_controls_and_names_its_positive_controls_for_the_report() -> None:
    preset = load_preset("calibration")
    grids = {(grid.methods, grid.fractions): grid for grid in preset.grids}
    for fractions in ((0.05, 1.0), (0.1, 0.25)):
        grid = grids[(("scratch-he", "scratch-he-control"), fractions)]
        assert set(grid.tasks) == {"ncc", "ncs", "ecc", "lcs", "bms"} and grid.seeds == (0, 1, 2, 3, 4)
    supervised = [grid for grid in preset.grids if grid.methods == ("supervised",)]
    labels = {label("supervised", dict(grid.method_settings)) + how_transferred("3d", protocol)
              for grid in supervised for protocol in grid.protocols or ("full",)}
    assert set(preset.report[1::2]) <= labels and set(preset.report[::2]) == {"--positive-control"}
    assert {grid.tasks[0] for grid in supervised} == {"ncc", "ncs", "ecc"} == {
        label.split("source=")[1][:3] for label in preset.report[1::2]}  # one positive control per grid
    for grid in supervised:  # each a second site of its own task, at the baseline's lowest fraction
        assert dict(grid.method_settings)["source"] == grid.tasks[0] and grid.fractions == (0.05,)


def test_the_example_preset_holds_every_comparison_of_the_example_report() -> None:
    grids = load_preset("example").grids
    methods = {method for grid in grids for method in grid.methods}
    assert {"genesis", "scratch-he", "scratch-2d", "genesis-2d", "genesis-xray", "genesis-nl", "genesis-ls",
            "genesis-oc", "genesis-ic", "genesis-identity"} <= methods
    assert {dims for grid in grids for dims in grid.dims} == {"", "2d", "2.5d"}
    assert {dict(grid.method_settings).get("loss") for grid in grids} == {None, "mae", "ssim"}


def test_a_preset_grid_may_fix_the_dimensionality(tmp_path, isolated_cache) -> None:
    preset = write_preset(tmp_path / "dims.json", {"grid": [
        {"methods": ["scratch-2d"], "tasks": ["ncc"], "dims": ["2.5d"]}]})
    results = tmp_path / "results"
    assert main(["sweep", "--preset", str(preset), "--results", str(results), *FAST]) == 0
    (record,) = [json.loads(path.read_text()) for path in results.glob("runs/*/result.json")]
    assert record["identity"]["dims"] == "2.5d"


def test_a_preset_grid_may_fix_the_transfer_protocols(tmp_path) -> None:
    preset = write_preset(tmp_path / "protocols.json", {"grid": [
        {"methods": ["scratch-he"], "tasks": ["ncc"], "protocols": ["full", "freeze:02"]},
        {"methods": ["scratch-he"], "tasks": ["ncc"]}]})
    assert [grid.protocols for grid in load_preset(str(preset)).grids] == [("full", "freeze:2"), ()]


def test_a_preset_of_ones_own_runs_its_grids_in_turn_and_prints_the_report_command(tmp_path, isolated_cache,
                                                                                     capsys) -> None:
    preset = write_preset(tmp_path / "mine.json", {
        "description": "two small grids", "report": ["--select", "task=ncc"],
        "grid": [{"about": "first", "methods": ["scratch-he"], "tasks": ["ncc"], "fractions": [1]},
                 {"methods": ["scratch-he-control"], "tasks": ["ncc"], "seeds": [1]}]})
    results = tmp_path / "results"
    assert main(["sweep", "--preset", str(preset), "--results", str(results), *FAST]) == 0
    runs = sorted(path.parent.name for path in results.glob("runs/*/result.json"))
    assert [run.split("-f1-")[0] for run in runs] == ["ncc-scratch-he-control-smoke-s1", "ncc-scratch-he-smoke-s0"]
    out = capsys.readouterr().out
    assert "preset mine, grid 1 of 2: scratch-he on ncc (first)" in out
    assert f"benchmark report --results {results} --select task=ncc" in out
    assert main(["sweep", "--preset", str(preset), "--results", str(results), *FAST]) == 0  # resumable
    assert "sweep finished: 0 runs computed" in capsys.readouterr().out
    assert sorted(path.parent.name for path in results.glob("runs/*/result.json")) == runs


@pytest.mark.parametrize("content, message", [
    ("{\"grid\": [", "not a JSON preset"),
    ('{"grid": 1' + "0" * 5000 + "}", "not a JSON preset (Exceeds the limit (4300 digits)"),
    ("[1, 2]", "expected a JSON object"),
    ({"grid": []}, "grid: expected a list of one or more objects"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"]}], "extra": 1}, "unknown key 'extra'"),
    ({"grid": [{"methods": ["nope"], "tasks": ["ncc"]}]}, "grid 1: methods: unknown name 'nope'"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": "ncc"}]}, "grid 1: tasks: expected a non-empty list"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "fractions": [0]}]}, "each must be in (0, 1]"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "seeds": [True]}]}, "list of seeds"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "method_args": {"a": [1]}}]}, "method_args"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "about": "line\n\x1b[31mred"}]}, "printable"),
    ({"report": ["--select", 3], "grid": [{"methods": ["scratch-he"], "tasks": ["ncc"]}]}, "report"),
    ({"grid": [{"methods": ["scratch-2d"], "tasks": ["ncc"], "dims": ["4d"]}]}, "dims: each must be one of"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "protocols": ["half"]}]}, "grid 1: protocols: --protocol"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "protocols": "linear"}]}, "list of transfer protocols"),
    ('{"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "fractions": [0.5], "fractions": [1]}]}',
     "the key 'fractions' appears twice in one object"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "seeds": [2**32]}]}, "seeds: each must be an integer"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "seeds": [0, 0]}]}, "grid 1: seeds: 0 is listed twice"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "fractions": [1, 1.0]}]}, "fractions: 1 is listed twice"),
    ({"grid": [{"methods": ["scratch-he", "scratch-he"], "tasks": ["ncc"]}]}, "methods: 'scratch-he' is listed twice"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "protocols": ["freeze:\u00b2"]}]},
     "protocols: --protocol"),
    ({"report": ["--no-such-option"], "grid": [{"methods": ["scratch-he"], "tasks": ["ncc"]}]},
     "report: not arguments of 'benchmark report' (unrecognized arguments: --no-such-option)"),
    ({"report": ["--results", "x"], "grid": [{"methods": ["scratch-he"], "tasks": ["ncc"]}]}, "report: drop --results"),
    ({"grid": [{"methods": ["scratch-he"], "tasks": ["ncc"], "dims": ["2d"]}]}, "grid 1: --dims 2d: no backbone"),
])
def test_a_malformed_preset_is_a_one_line_error_naming_the_file(tmp_path, capsys, content, message) -> None:
    preset = write_preset(tmp_path / "bad.json", content)
    assert main(["sweep", "--preset", str(preset), "--results", str(tmp_path / "results"), *FAST]) == 2
    line = error_line(capsys.readouterr().err)
    assert str(preset) in line and message in line
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("args, message", [
    (["--preset", "calibration", "--methods", "genesis"], "drop --methods"),
    (["--preset", "calibration", "--seeds", "0", "--method-arg", "loss=mae"], "drop --seeds, --method-arg"),
    (["--preset", "example", "--dims", "2d"], "drop --dims"),
    (["--preset", "calibration", "--protocols", "linear"], "fixes the transfer protocols of some grids: drop"),
    (["--preset", "calibration", "--protocols", "full"], "fixes the transfer protocols of some grids: drop"),
    (["--preset", "nope"], "no such preset (built in: calibration"),
    (["--preset", "missing.json"], "missing.json: cannot read the preset"),
    (["--tasks", "ncc"], "--methods and --tasks are required (or --preset NAME"),
])
def test_the_preset_and_the_grid_options_exclude_each_other(tmp_path, capsys, args, message) -> None:
    assert main(["sweep", *args, "--results", str(tmp_path / "results"), *FAST]) == 2
    assert message in error_line(capsys.readouterr().err)


def test_a_mistake_in_a_later_grid_stops_the_preset_before_any_training(tmp_path, capsys) -> None:
    preset = write_preset(tmp_path / "late.json", {"grid": [
        {"methods": ["scratch-he"], "tasks": ["ncc"]},
        {"methods": ["genesis"], "tasks": ["ncc"], "method_args": {"loss": "huber"}}]})
    results = tmp_path / "results"
    assert main(["sweep", "--preset", str(preset), "--results", str(results), *FAST]) == 2
    line = error_line(capsys.readouterr().err)
    assert f"{preset}: grid 2: " in line and "loss" in line
    assert not list(results.glob("runs/*/result.json"))
