"""``benchmark speed``: one ratio per line, from the registered methods' own comparisons."""

from __future__ import annotations

import re

from benchmark.cli import main

RATIO = re.compile(r"^(?P<what>.+): (?P<ratio>\d+\.\d+)x$")


def test_speed_prints_one_ratio_per_comparison(capsys):
    argv = ["speed", "--sizes", "smoke", "--repeats", "1", "--cubes", "3", "--no-compile",
            "--methods", "genesis,denoising", "--device", "cpu", "--no-progress"]
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


def test_speed_rejects_unknown_sizes(capsys):
    assert main(["speed", "--sizes", "huge"]) == 2
    assert "error: --sizes huge" in capsys.readouterr().err
