"""``benchmark report``: its arguments and its command (the work is in benchmark.reporting.build).

Kept free of heavy imports so that ``benchmark --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.reporting import CORRECTIONS, FAMILIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=Path("results"), help="results root (default ./results)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default ./reports)")
    parser.add_argument("--profile", default=None,
                        help="profile to report (default: the only one in the results); runs with replaced "
                             "fields are of another, e.g. 'quick [classification.epochs=50]'")
    parser.add_argument("--fraction", type=float, default=None,
                        help="label fraction of Table 3, the tests and the convergence curves (default 1)")
    parser.add_argument("--baseline", default=None,
                        help="method the others are tested against (default: the registered method marked as baseline)")
    parser.add_argument("--correction", default="holm", choices=list(CORRECTIONS),
                        help="multiple-comparison correction: holm (default) or fdr_bh (Benjamini-Hochberg)")
    parser.add_argument("--family", default="task", choices=list(FAMILIES),
                        help="what one correction covers: task (each task's comparisons, default) or benchmark "
                             "(all tasks x methods together)")
    parser.add_argument("--select", action="append", default=[], metavar="KEY=FINGERPRINT",
                        help="keep only the runs with this data, pretrain_data, weights or code fingerprint, or "
                             "this primary metric (metric=dice; repeatable); needed when runs of a task differ in "
                             "them, which are never pooled")
    parser.add_argument("--analyses", type=Path, default=None, metavar="DIR",
                        help="folder where 'benchmark analyze restoration|anomaly --out DIR' wrote the restoration "
                             "cross-matrix and the anomaly maps, shown in the report when found (default "
                             "./reports/analysis, analyze's default, where it exists)")
    parser.add_argument("--positive-control", action="append", default=[], metavar="METHOD",
                        help="a method expected to beat the baseline at the lowest label fraction (e.g. supervised "
                             "pretraining on a sibling task): the calibration section tests it (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def command(args: argparse.Namespace) -> None:
    from benchmark.reporting.build import Settings, build_report

    settings = Settings(results=args.results, out=args.out, profile=args.profile, fraction=args.fraction,
                        baseline=args.baseline, correction=args.correction, family=args.family,
                        select=tuple(args.select), progress=not args.no_progress, analyses=args.analyses,
                        positive_controls=tuple(args.positive_control))
    report = build_report(settings)
    print(f"report: {len(report.files)} files in {settings.out} (open {settings.out / 'index.html'})")
    print(f"profile {report.profile}, fraction {report.fraction:g}, baseline {report.baseline or 'none'}, "
          f"correction {CORRECTIONS[report.correction]} {FAMILIES[report.family]}; {len(report.not_computed)} "
          f"item(s) not computed "
          f"(listed in {settings.out / 'not_computed.md'})")


