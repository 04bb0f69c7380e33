"""``benchmark speed``: one ratio per line, from the registered methods' corruptions and the tests' loop oracles."""

from __future__ import annotations

import re
from pathlib import Path

from benchmark.api.registry import METHODS
from benchmark.cli import main
from benchmark.cli.speed import Size, load_oracles, transform_comparisons

RATIO = re.compile(r"^(?P<what>.+): (?P<ratio>\d+\.\d+)x$")
ORACLES = Path(__file__).resolve().parent / "oracles"


def test_speed_prints_one_ratio_per_comparison(capsys):
    argv = ["speed", "--sizes", "smoke", "--repeats", "1", "--cubes", "3", "--no-compile",
            "--methods", "genesis,denoising", "--device", "cpu", "--no-progress", "--oracles", str(ORACLES)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    ratios = {m["what"]: float(m["ratio"]) for m in map(RATIO.match, lines) if m}
    expected = [
        "genesis local pixel shuffling [smoke], fast vs loop, one core",
        "genesis non-linear intensity [smoke], fast vs loop, one core",
        "genesis pipeline [smoke], fast vs loop, one core",
        "genesis [smoke], data pipeline (one core) vs training step, cubes/s",
        "genesis [smoke], device batch vs CPU batch (cpu)",
        "denoising [smoke], data pipeline (one core) vs training step, cubes/s",
        "denoising [smoke], device batch vs CPU batch (cpu)",
        "training step [smoke], bf16 autocast vs fp32",
        "training step [smoke], channels_last_3d vs default layout",
    ]
    assert sorted(ratios) == sorted(expected)
    assert all(ratio > 0 for ratio in ratios.values())
    assert ratios["genesis pipeline [smoke], fast vs loop, one core"] > 5  # far from a tie
    for index, line in enumerate(lines):  # each ratio is followed by the absolute figures it came from
        if RATIO.match(line):
            assert lines[index + 1].startswith("    ") and ("ms" in lines[index + 1] or "cubes/s" in lines[index + 1])


def test_by_default_each_implementation_is_measured_once():
    from benchmark.cli.speed import measured_by_default

    names = measured_by_default()
    assert {"genesis", "denoising", "inpainting", "patch-shuffling", "jigsaw", "rubiks-cube"} <= set(names)
    assert not {"genesis-ls", "rubiks-cube-plus", "scratch-he", "deepcluster"} & set(names)  # shared or none


def test_every_oracle_is_the_loop_version_of_a_declared_corruption():
    loops = load_oracles(ORACLES)
    declared = {(type(method).name, name) for method in map(METHODS.create, METHODS.names())
                for name in method.speed_corruptions((1, 16, 32, 32))}
    assert loops and set(loops) <= declared


def test_without_the_oracles_the_fast_corruptions_are_timed_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no tests/oracles here: not a checkout
    assert load_oracles(None) is None
    transform_comparisons(METHODS.create("genesis"), Size("smoke", (8, 16, 16), 4, 1), repeats=1, count=1,
                          loops=None)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("note: comparing the corruptions with their loop versions needs the repository's")
    timed = [line for line in lines[1:] if line.strip()]
    assert [line.split(",")[0] for line in timed] == [f"genesis {name} [smoke]" for name in
                                                      ("local pixel shuffling", "non-linear intensity", "pipeline")]
    assert all(re.search(r", fast, one core: \d+\.\d+ ms/cube", line) for line in timed)


def test_oracles_are_found_in_a_checkout_and_the_option_is_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ORACLES.parents[1])  # the repository root
    assert set(load_oracles(None)) == set(load_oracles(ORACLES))
    assert main(["speed", "--sizes", "smoke", "--device", "cpu", "--oracles", str(tmp_path)]) == 2
    assert f"error: --oracles {tmp_path}: no __init__.py there" in capsys.readouterr().err


def test_speed_rejects_unknown_sizes(capsys):
    assert main(["speed", "--sizes", "huge"]) == 2
    assert "error: --sizes huge" in capsys.readouterr().err
