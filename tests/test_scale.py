"""``benchmark speed --scale``: the generated datasets, the measurement of a stage in its own process, the
growth table and its verdict, and the command end to end at tiny sizes."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from benchmark.cli import main
from benchmark.cli.scale import Dataset, Row, _generate, growth_table, verdicts
from benchmark.data import files
from benchmark.data.phantoms.chest import CANDIDATE_HEADER
from benchmark.data.phantoms.scaled import (
    SPLIT_OF_SUBSET,
    index_to_world,
    lits_numbers,
    scaled_scan,
    write_large_lits,
    write_scaled_lits,
    write_scaled_luna,
)
from benchmark.engine.scale import STAGES, Measurement, StageSpec, measure_stage, run_measured
from benchmark.errors import UserError

TINY = (16, 32, 32)


def _splits_of(root: Path) -> dict[str, str]:
    """Series UID -> split, from the subset folder each scan is in."""
    return {path.stem: SPLIT_OF_SUBSET[int(path.parent.name[len("subset"):])] for path in root.glob("subset*/*.mhd")}


def test_generated_luna_passes_verify_data_with_both_classes_in_every_split(tmp_path, isolated_cache, capsys):
    root = tmp_path / "luna"
    written = write_scaled_luna(root, scans=4, candidates=1200, seed=3, shape=TINY)
    assert main(["verify-data", "--task", "ncc", "--data-root", str(root)]) == 0
    assert "no problems found for task ncc" in capsys.readouterr().out
    table = pd.read_csv(root / "candidates_V2.csv")
    assert list(table.columns) == list(CANDIDATE_HEADER) and len(table) == written.total == 1200
    table["split"] = table["seriesuid"].map(_splits_of(root))
    assert table["split"].notna().all()
    classes = table.groupby("split")["class"].agg(lambda labels: sorted(set(labels)))
    assert {split: classes[split] for split in ("train", "val", "test")} == {s: [0, 1] for s in ("train", "val",
                                                                                                  "test")}
    assert written.candidates == table["split"].value_counts().to_dict()
    assert written.positives == table[table["class"] == 1]["split"].value_counts().to_dict()
    # positives sit on painted nodules, negatives mostly in the lung: the classes differ by intensity
    hu = []
    for path in root.glob("subset*/*.mhd"):
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
        for _, row in table[table["seriesuid"] == path.stem].iterrows():
            x, y, z = image.TransformPhysicalPointToIndex((row.coordX, row.coordY, row.coordZ))
            hu.append((row["class"], float(array[z, y, x])))
    values = pd.DataFrame(hu, columns=["label", "hu"]).groupby("label")["hu"].median()
    assert values[1] > values[0] + 300


def test_many_candidates_are_written_in_seconds_at_luna16s_positive_rate(tmp_path):
    start = time.perf_counter()
    written = write_scaled_luna(tmp_path / "big", scans=3, candidates=300_000, seed=0, shape=TINY)
    assert time.perf_counter() - start < 20
    assert written.total == 300_000
    assert 1 / 500 <= sum(written.positives.values()) / written.total <= 1 / 300


def test_generated_luna_is_reproducible_from_its_seed_and_its_scans_do_not_depend_on_the_candidates(tmp_path):
    def contents(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    def written(name: str, candidates: int, seed: int) -> dict[str, bytes]:
        write_scaled_luna(tmp_path / name, 3, candidates, seed, TINY)
        return contents(tmp_path / name)

    first = written("a", 90, 7)
    assert written("b", 90, 7) == first
    assert written("c", 90, 8)["candidates_V2.csv"] != first["candidates_V2.csv"]
    more = written("d", 900, 7)
    scans = {name for name in first if name.startswith("subset")}
    assert {name: more[name] for name in scans} == {name: first[name] for name in scans}
    assert len(more["candidates_V2.csv"]) > 5 * len(first["candidates_V2.csv"])


@pytest.mark.parametrize("index", [0, 1])  # scan 1 has its x and y axes flipped
def test_world_coordinates_are_those_of_simpleitk(index):
    image = scaled_scan(0, index, TINY).image
    points = np.random.default_rng(0).uniform(0, 15, size=(20, 3))
    expected = [image.TransformContinuousIndexToPhysicalPoint(tuple(map(float, p[::-1]))) for p in points]
    assert np.allclose(index_to_world(image, points), expected)


def test_lits_layouts_pass_verify_data(tmp_path, isolated_cache, capsys):
    assert lits_numbers(3) == {"train": [0], "val": [100], "test": [115]}
    assert {split: len(numbers) for split, numbers in lits_numbers(130).items()} == {"train": 100, "val": 15,
                                                                                      "test": 15}
    for wrong in (2, 131):
        with pytest.raises(UserError, match=f"volumes {wrong}"):
            lits_numbers(wrong)
    assert write_scaled_lits(tmp_path / "lits", 6, 0) == {"train": [0, 1, 2, 3], "val": [100], "test": [115]}
    assert write_large_lits(tmp_path / "large", (40, 32, 24), 0)["test"] == [115]
    for root in ("lits", "large"):
        assert main(["verify-data", "--task", "lcs", "--data-root", str(tmp_path / root)]) == 0
    assert capsys.readouterr().out.count("no problems found for task lcs") == 2
    large = sitk.ReadImage(str(tmp_path / "large" / "Training Batch 2" / "volume-115.nii"))
    assert large.GetSize() == (40, 32, 24)


def test_the_peak_memory_measured_is_the_childs_own(tmp_path):
    big = "import numpy; a = numpy.ones(300 * 2**20 // 8); a += 1"
    code, seconds, peak = run_measured([sys.executable, "-c", big], tmp_path / "big.log")
    assert code == 0 and seconds > 0 and peak > 300
    code, _, small = run_measured([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path / "small.log")
    assert code == 3 and small < 100


def test_a_dataset_problem_of_a_stage_is_one_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    spec = StageSpec("loading", "ncc", str(tmp_path / "empty"))
    with pytest.raises(UserError, match=r"^loading of ncc on .*empty: .*no LUNA16 scans found"):
        measure_stage(spec, tmp_path / "cache", tmp_path / "work")


@pytest.mark.parametrize("written", [b'{"seconds": 1.5, "ite', b"[1, 2]", b"\xff\xfe"])
def test_a_stage_whose_result_file_is_damaged_fails_with_its_log(tmp_path, monkeypatch, written):
    """A child killed while writing, or a file damaged since: the stage failed, its log's end shown."""
    def child_died(argv, log, env=None):
        Path(argv[-1]).write_bytes(written)
        log.write_text("the child's last words\n")
        return 137, 1.0, 10.0

    monkeypatch.setattr("benchmark.engine.scale.run_measured", child_died)
    with pytest.raises(RuntimeError, match=r"(?s)loading of ncc on .* failed \(exit status 137\).*last words"):
        measure_stage(StageSpec("loading", "ncc", str(tmp_path)), tmp_path / "cache", tmp_path / "work")


def _row(size: int, stage: str, seconds: float, peak: float, items: int | None = None) -> Row:
    dataset = Dataset(f"{size:,} candidates", size, "candidates", Path("."))
    return Row(dataset, Measurement(stage, seconds, size if items is None else items, "test cases", peak, seconds))


def test_the_verdict_compares_tenfold_sizes_against_the_limits():
    rows = [_row(1000, "evaluation", 2.0, 500.0, 300), _row(10_000, "evaluation", 18.0, 600.0, 3000)]
    (line,) = verdicts(rows, ["evaluation"])
    assert line == ("done when (evaluation, 1,000 candidates -> 10,000 candidates, 300 -> 3,000 test cases "
                    "evaluated): peak memory 1.20x (<= 1.5x), wall time 9.00x (<= 15x): met")
    grown = [rows[0], _row(10_000, "evaluation", 18.0, 1000.0)]
    assert verdicts(grown, ["evaluation"])[0].endswith("peak memory 2.00x (<= 1.5x), wall time 9.00x (<= 15x): NOT met")
    slow = [rows[0], _row(10_000, "evaluation", 40.0, 510.0)]
    assert verdicts(slow, ["evaluation"])[0].endswith(": NOT met")
    assert verdicts([rows[0], _row(5000, "evaluation", 9.0, 500.0)], ["evaluation"])[0].startswith(
        "done when: not checked")
    lines = growth_table("title", "candidates", _row(0, "baseline", 0.1, 400.0).measurement, grown, "smoke", "cpu")
    assert lines[-1].split()[-3:] == ["10.0x", "9.00x", "2.00x"]


# ------------------------------------------------------------------ end to end

NUMBER = r"[\d,]+(?:\.\d+)?"
ROW = re.compile(rf"^  (?P<stage>[a-z][a-z -]+?) +(?P<size>\S+) +(?P<seconds>{NUMBER}) +(?P<items>[\d,]+) "
                 rf"(?P<unit>[a-z ]+?) +(?P<rate>{NUMBER}|inf) +(?P<peak>[\d,]+)"
                 rf"(?: +(?P<size_ratio>{NUMBER})x +(?P<time_ratio>{NUMBER})x +(?P<memory_ratio>{NUMBER})x)?"
                 rf"(?: +(?P<per_voxel>-?{NUMBER}))?$")


def _rows(text: str) -> list[dict[str, str]]:
    return [match.groupdict() for match in map(ROW.match, text.splitlines()) if match]


def test_scale_prints_every_ncc_stage_at_every_size_with_the_ratios_and_the_verdict(tmp_path, monkeypatch,
                                                                                      capsys):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    argv = ["speed", "--scale", "--parts", "ncc", "--candidates", "200,2000", "--scans", "3", "--scan-shape",
            "16,32,32", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert [(row["stage"], row["size"]) for row in rows] == [(stage, size) for stage in STAGES
                                                              for size in ("200", "2,000")]
    for first, second in zip(rows[::2], rows[1::2]):
        assert first["size_ratio"] is None and second["size_ratio"] == "10.0"
        assert float(second["time_ratio"]) > 0 and float(second["memory_ratio"]) > 0
        assert int(first["peak"].replace(",", "")) > 100  # a whole process: the interpreter and torch included
    evaluated = {row["size"]: int(row["items"].replace(",", "")) for row in rows if row["stage"] == "evaluation"}
    assert evaluated == {"200": 66, "2,000": 666}  # every candidate of the test scan (subset 7), none dropped
    verdict = [line for line in out.splitlines() if line.startswith("done when (evaluation, 200 candidates -> "
                                                                     "2,000 candidates, 66 -> 666 test cases")]
    assert len(verdict) == 1 and re.search(r": (met|NOT met)$", verdict[0])
    assert f"datasets in {tmp_path}" in out and not list(tmp_path.glob("benchmark-scale-*"))  # removed


def test_scale_measures_lcs_and_sliding_windows_and_keeps_its_datasets_where_asked(tmp_path, capsys):
    keep = tmp_path / "keep"
    argv = ["speed", "--scale", "--parts", "lcs,window", "--stages", "evaluation", "--volumes", "3",
            "--window-sizes", "48x48x24,32x32x16", "--no-progress", "--device", "cpu", "--keep", str(keep)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "LCS on generated LiTS-layout data: 3 liver-phantom volumes" in out
    assert "Sliding-window inference" in out
    rows = _rows(out)
    assert [(row["stage"], row["size"]) for row in rows] == [
        ("evaluation", "3"), ("preprocessing", "32x32x16"), ("preprocessing", "48x48x24"),
        ("evaluation", "32x32x16"), ("evaluation", "48x48x24")]
    assert rows[0]["items"] == "1" and rows[0]["unit"] == "test cases" and rows[0]["size_ratio"] is None
    window = rows[1:]
    assert [row["items"] for row in window] == ["16,384", "55,296"] * 2 and {r["unit"] for r in window} == {"voxels"}
    assert [row["size_ratio"] for row in window] == [None, "3.38"] * 2
    assert [row["per_voxel"] is None for row in window] == [True, False] * 2
    logs = keep / "lcs-3" / "logs"  # the cache was filled by a preprocessing process not shown
    assert (logs / "preprocessing.json").is_file() and (logs / "evaluation.json").is_file()
    assert (keep / "window-48x48x24" / "data" / "Training Batch 2" / "volume-115.nii").is_file()


@pytest.mark.parametrize("options, message", [
    (["--candidates", "0"], "--candidates 0: expected comma-separated whole numbers, each >= 20"),
    (["--candidates", "ten"], "--candidates ten: expected comma-separated whole numbers"),
    (["--scans", "4", "--candidates", "100,7"], "--candidates 100,7: expected comma-separated whole numbers, "
                                                "each >= 8"),
    (["--candidates", "300,300"], "--candidates 300,300: a size is given twice"),
    (["--scans", "2"], "--scans 2: at least 3"),
    (["--scan-shape", "8,8,8"], "--scan-shape 8,8,8: expected Z,Y,X voxels, each >= 16"),
    (["--volumes", "2,6"], "--volumes 2,6: expected comma-separated whole numbers, each >= 3"),
    (["--volumes", "3,200"], "--volumes 3,200: at most 130"),
    (["--window-sizes", "64x64"], "--window-sizes 64x64: expected sizes XxYxZ"),
    (["--parts", "ncc,brats"], "--parts ncc,brats: expected comma-separated names among ncc, lcs, window"),
    (["--stages", "training"], "--stages training: expected comma-separated names among verify-data"),
    (["--seed", "-1"], "--seed -1: must be an integer from 0 to"),
])
def test_bad_scale_options_are_one_line_errors(options, message, capsys):
    assert main(["speed", "--scale", "--no-progress", *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1 and "Traceback" not in err


def test_scale_options_need_scale_and_keep_must_be_a_folder(tmp_path, capsys):
    assert main(["speed", "--candidates", "1000,10000"]) == 2
    assert capsys.readouterr().err == "error: --candidates: an option of 'benchmark speed --scale' (add --scale)\n"
    (tmp_path / "file").write_text("")
    assert main(["speed", "--scale", "--keep", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"error: --keep {tmp_path / 'file'}: not a folder\n"


def test_a_kept_dataset_whose_marker_is_damaged_is_written_again(tmp_path):
    """A marker no int holds (a 5000-digit number) marks no dataset: written anew, never a traceback."""
    (tmp_path / "data").mkdir()
    (tmp_path / "dataset.json").write_text('{"seed": 1' + "0" * 5000 + "}")
    _generate(tmp_path, {"seed": 1}, lambda data: (data / "scan.mhd").write_text("new"))
    assert (tmp_path / "data" / "scan.mhd").read_text() == "new"
    assert files.read_json(tmp_path / "dataset.json") == {"seed": 1}
