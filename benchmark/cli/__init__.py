"""The command line: argument parsing here, each verb's ``command(args)`` in a module of this package.

The verb modules are imported when their command runs, so ``benchmark --help`` does not pay for
importing torch. Nothing outside this package imports it.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from benchmark.api.profiles import PROFILES
from benchmark.cli.analyze import add_arguments as add_analyze_arguments
from benchmark.cli.options import add_switch_arguments
from benchmark.cli.report import add_arguments as add_report_arguments
from benchmark.errors import UserError
from benchmark.logs import log_to_stderr
from benchmark.names import one_line


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, help="pretraining method (see 'benchmark list')")
    parser.add_argument("--task", required=True, help="target task (see 'benchmark list')")
    parser.add_argument("--profile", default="quick", choices=list(PROFILES),
                        help="sizes and schedules: smoke (CI), quick (default, CPU), paper (GPU)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--subset-seed", type=int, default=None,
                        help="seed of the label-fraction subset (default: the run's seed, so each seed labels its "
                             "own patients; give one to share a single subset across seeds)")
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="fraction of the training patients with labels, in (0, 1] (default 1)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the task's dataset folder as downloaded (default: built-in phantom)")
    parser.add_argument("--splits", type=Path, default=None,
                        help="a split file (CSV case_id,split) replacing the task's shipped split")
    parser.add_argument("--weights", type=Path, default=None,
                        help="benchmark a pretrained file instead of pretraining: a released file of the backbone "
                             "(Models Genesis, MedicalNet, I3D, NiftyNet: see the README), a state dict, "
                             "safetensors or a checkpoint of this suite")
    _add_backbone_argument(parser)
    _add_dims_argument(parser)
    parser.add_argument("--force", action="store_true", help="rerun even if this exact run has a record")
    _add_protocol_argument(parser, sweep=False)
    _add_task_setting_argument(parser)
    _add_training_arguments(parser)


def _add_protocol_argument(parser: argparse.ArgumentParser, sweep: bool) -> None:
    if sweep:
        parser.add_argument("--protocols", default=None, help="comma-separated transfer protocols, each a cell of "
                                                                "its own: full, linear, freeze:N (default full)")
    else:
        parser.add_argument("--protocol", default="full",
                            help="which layers fine-tuning trains: full (all, default), linear (the pretrained "
                                 "backbone fixed, a linear read-out trained), freeze:N (the first N of the backbone's "
                                 "encoder stages fixed); fixed batch-norm layers keep their statistics")


def _add_backbone_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="",
                        help="the network (see 'benchmark list'; default: the method's, the 3D U-Net for most)")


def _add_dims_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dims", default="", choices=["", "2d", "2.5d", "3d"],
                        help="how the network sees the 3D task: 3d, or a 2D network on axial slices (2d) or on "
                             "three planes / three adjacent slices as channels (2.5d); default: 3d for a 3D "
                             "network, 2d for a 2D one")


def _add_task_setting_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="replace one of the task's settings, e.g. max_negatives_per_scan=20 (repeatable; "
                             "'benchmark show TASK' lists them; in a sweep, for every task that has it)")


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the data, the results and the device are, the pretraining switches, progress bars:
    the arguments of every command that trains (run, sweep, pretrain)."""
    parser.add_argument("--pretrain-root", type=Path, default=None,
                        help="LUNA16-layout folder for pretraining (default: built-in chest phantom)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results root (default ./results)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(default auto)")
    add_switch_arguments(parser)
    parser.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="replace one of the method's settings, e.g. flip_prob=0 (repeatable; 'benchmark show "
                             "METHOD' lists them; in a sweep, for every method that has it)")
    parser.add_argument("--backbone-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="replace one of the backbone's settings, e.g. depth=50 (repeatable; 'benchmark show "
                             "BACKBONE' lists them)")
    parser.add_argument("--profile-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="replace one field of the profile, e.g. pretrain_epochs=3 or classification.batch=2 "
                             "(repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", default=None, help="comma-separated methods, e.g. genesis,scratch-he")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks, e.g. ncc,lcs")
    parser.add_argument("--fractions", default=None, help="comma-separated label fractions in (0, 1] (default 1.0)")
    parser.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0)")
    parser.add_argument("--preset", default="", metavar="NAME|FILE",
                        help="run a preset's grids one after the other instead of --methods, --tasks, --fractions, "
                             "--seeds, --method-arg and --dims: a built-in name (calibration: the controls that show "
                             "whether the benchmark can tell methods apart; example: the committed example report's "
                             "runs) or a .json file of your own (README)")
    parser.add_argument("--subset-seed", type=int, default=None,
                        help="seed of the label-fraction subset (default: the run's seed, so each seed labels its "
                             "own patients; give one to share a single subset across seeds)")
    parser.add_argument("--profile", default="quick", choices=list(PROFILES), help="(default quick)")
    parser.add_argument("--data-root", action="append", default=[], metavar="TASK=DIR",
                        help="a task's dataset folder as downloaded (repeatable; default: built-in phantoms)")
    parser.add_argument("--jobs", type=int, default=1, help="jobs running at once (default 1)")
    parser.add_argument("--executor", choices=["inline", "local", "slurm"], default=None,
                        help="inline (this process), local (one process per job) or slurm "
                             "(default: inline for --jobs 1, else local)")
    parser.add_argument("--slurm-partition", default=None, help="SLURM partition (with --executor slurm)")
    parser.add_argument("--slurm-time", type=int, default=None, help="minutes per SLURM job (default 1440)")
    parser.add_argument("--slurm-gpus", type=int, default=None, help="GPUs per SLURM job (default 1)")
    parser.add_argument("--slurm-cpus", type=int, default=None, help="CPUs per SLURM job (default 8)")
    parser.add_argument("--backbones", default=None,
                        help="comma-separated backbones, each a cell of its own for the methods that support it "
                             "(default: each method's own)")
    parser.add_argument("--dims", default=None,
                        help="comma-separated dimensionalities (2d, 2.5d, 3d), each a cell of its own for the "
                             "runs whose network has that many dimensions (default: each network's own)")
    parser.add_argument("--weights", action="append", default=[], metavar="METHOD=FILE",
                        help="a released weights file for a method that benchmarks one, e.g. "
                             "medicalnet=resnet_10_23dataset.pth (repeatable)")
    _add_protocol_argument(parser, sweep=True)
    _add_task_setting_argument(parser)
    _add_training_arguments(parser)


def _add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="target task (see 'benchmark list')")
    parser.add_argument("--data-root", type=Path, required=True, help="the task's dataset folder as downloaded")
    parser.add_argument("--splits", type=Path, default=None,
                        help="a split file (CSV case_id,split) replacing the task's shipped split; checked too")
    parser.add_argument("--pretrain-root", type=Path, default=None,
                        help="also check a pretraining folder (LUNA16 layout, or see --pretrain-layout)")
    parser.add_argument("--pretrain-layout", default="luna16", choices=["luna16", "chestxray14"],
                        help="the layout of --pretrain-root: chest CT (luna16, default) or radiographs "
                             "(chestxray14, for genesis-xray)")


def _add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, help="pretraining method (see 'benchmark list')")
    parser.add_argument("--profile", default="quick", choices=list(PROFILES), help="sizes and schedules")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    _add_backbone_argument(parser)
    _add_training_arguments(parser)


def _add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="smoke,paper",
                        help=f"comma-separated profiles whose cube and width to measure ({', '.join(PROFILES)}; "
                             "default smoke,paper)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed calls per figure, the best one kept, after one warm-up (default 2; a "
                             "paper-size CPU step takes seconds per cube)")
    parser.add_argument("--cubes", type=int, default=8,
                        help="cubes (and seeds) per timed call of a corruption, the same for the fast and the "
                             "loop implementation; batches per timed call of a data pipeline (default 8)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="device of the batched transforms and the training steps (default auto)")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch of the device transforms and training steps (default: the profile's "
                             "pretraining batch on CUDA, 1 on the CPU)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods (default: every method with speed comparisons or device "
                             "transforms, one per implementation)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="measure torch.compile (its first call compiles: tens of seconds on a CPU; "
                             "default on)")
    parser.add_argument("--oracles", type=Path, default=None,
                        help="folder of the loop versions the corruptions are compared with (default: "
                             "tests/oracles of the current folder, a checkout of the repository, if there)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    scale = parser.add_argument_group(
        "growth with the data (--scale)",
        "Generate synthetic datasets in the real layouts at growing sizes and measure each stage (verify-data, "
        "preprocessing, loading, one fine-tuning epoch, evaluation) in a fresh process: wall time, items/s, "
        "peak memory, and the ratios between sizes. The defaults take about 2.5 minutes on 2 idle CPU cores.")
    scale.add_argument("--scale", action="store_true",
                       help="measure growth with the data instead of the ratios above")
    scale.add_argument("--parts", default=None,
                       help="comma-separated among ncc (LUNA16 layout, growing candidates), lcs (LiTS layout, "
                            "growing volume counts), window (sliding-window inference of one growing volume) "
                            "(default all three)")
    scale.add_argument("--candidates", default=None,
                       help="comma-separated NCC candidate counts (default 7500,75000; LUNA16 has ~755,000: "
                            "add 750000)")
    scale.add_argument("--scans", type=int, default=None,
                       help="NCC scans the candidates are spread over, the same at every size (default 10, one "
                            "per subset)")
    scale.add_argument("--scan-shape", default=None, metavar="Z,Y,X",
                       help="voxels of each generated NCC scan (default 64,128,128)")
    scale.add_argument("--volumes", default=None,
                       help="comma-separated LCS volume counts, each >= 3 (default 3,30; LiTS has 131)")
    scale.add_argument("--window-sizes", default=None, metavar="XxYxZ,...",
                       help="sizes of the volume predicted by sliding windows, x*y*z voxels as LiTS sizes are "
                            "written (default 128x128x112,256x256x224; LiTS's largest is 512x512x900)")
    scale.add_argument("--stages", default=None,
                       help="comma-separated stages of the ncc and lcs parts (default all: verify-data,"
                            "preprocessing,loading,fine-tuning-epoch,evaluation)")
    scale.add_argument("--whole-run", action="store_true",
                       help="also time a whole 'benchmark run --method scratch-he' on each NCC dataset")
    scale.add_argument("--profile", default=None, choices=list(PROFILES),
                       help="the profile of the fine-tuning and evaluation stages (default smoke)")
    scale.add_argument("--seed", type=int, default=None, help="seed of the generated data and models (default 0)")
    scale.add_argument("--keep", type=Path, default=None, metavar="DIR",
                       help="write the datasets (and the stages' logs) here and keep them; a later run reuses "
                            "them (default: a temporary folder removed at the end)")


def _add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--volumes", type=Path, required=True, help="folder of CTPA volumes, <seriesuid>.nii.gz etc.")
    parser.add_argument("--masks", type=Path, required=True,
                        help="folder of embolus masks named like their volumes (label > 0 is embolus)")
    parser.add_argument("--out", type=Path, required=True, help="candidates CSV to write (LUNA16 columns)")
    parser.add_argument("--negatives", type=int, default=50, help="negatives per volume (default 50)")
    parser.add_argument("--min-distance", type=float, default=10.0,
                        help="least distance in mm from a negative to any embolus voxel (default 10)")
    parser.add_argument("--hu-range", type=float, nargs=2, default=(100.0, 600.0), metavar=("LOW", "HIGH"),
                        help="HU range negatives are drawn from (default 100 600: contrast-filled vessels)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the negative sampling (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="benchmark",
        description="Benchmark self-supervised pretraining methods on 3D medical imaging tasks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="pretrain (or reuse), fine-tune and evaluate one method on one task",
                              description="Pretrain (or reuse the cached checkpoint), fine-tune and evaluate "
                                          "one method on one task, and write the record.")
    _add_run_arguments(run)
    _add_sweep_arguments(commands.add_parser(
        "sweep", help="run a grid of methods x tasks x label fractions x seeds (resumable)",
        description="Run every cell of a grid of methods x tasks x label fractions x seeds that has no record "
                    "yet. Stop it at any time and start it again: finished runs are kept and skipped."))
    add_report_arguments(commands.add_parser(
        "report", help="tables, significance tests and figures of a results root (CSV, Markdown, LaTeX, PNG, PDF, "
                       "HTML)",
        description="Write the provenance of the numbers, Table 3 (mean ± s.d., best in bold, significance marks), "
                    "pairwise tests with a multiple-comparison correction and the smallest difference each could "
                    "detect, confidence intervals, label-efficiency, convergence and seed box plots (PDF at 7 and "
                    "3.5 inches), restoration pictures and one self-contained index.html; works on partial results "
                    "and lists what it could not compute. Runs on different data or code are never pooled."))
    _add_verify_arguments(commands.add_parser(
        "verify-data", help="check a downloaded dataset for a task and list every problem found",
        description="Check a dataset folder for a task: missing or unreadable files, image/label grid mismatches, "
                    "label values outside the expected set, NaN/inf, empty volumes, candidates outside their "
                    "volume, duplicated or unknown case ids, a wrong modality set. Prints one line per problem "
                    "and a summary; exits non-zero when any is found."))
    _add_pretrain_arguments(commands.add_parser(
        "pretrain", help="pretrain one method into the checkpoint cache (several GPUs: launch with torchrun)",
        description="Pretrain one method (or find its cached checkpoint) and print the checkpoint's path. "
                    "Launched by 'torchrun --nproc_per_node N -m benchmark pretrain ...', the N processes "
                    "train it together with DistributedDataParallel; fine-tune it with "
                    "'benchmark run --weights <path>'."))
    _add_speed_arguments(commands.add_parser(
        "speed", help="measure the transforms, the data pipeline and the training step as ratios; with "
                      "--scale, how time and memory grow with the data",
        description="Time each method's corruptions (fast vs a plain loop), CPU vs device batches, the "
                    "data pipeline vs the training step, bf16 autocast, channels_last_3d and torch.compile, "
                    "at the chosen profiles' sizes; print one ratio per line. With --scale: generate datasets "
                    "of growing sizes and print, per stage and size, wall time, throughput, peak memory and "
                    "their ratios between sizes."))
    _add_convert_arguments(commands.add_parser(
        "convert-emboli", help="turn voxel embolus masks (CAD-PE, FUMPE) into a candidates CSV",
        description="Turn voxel-level embolus masks into a candidates list in the LUNA16 format: one positive per "
                    "connected component at its centroid (world mm, direction-aware), and negatives drawn "
                    "reproducibly among contrast-filled voxels away from every embolus."))
    add_analyze_arguments(commands.add_parser(
        "analyze", help="the paper's analyses that need models: restoration cross-matrix, anomaly maps",
        description="Analyses beyond Table 3 that run pretrained models: 'restoration' (each restoration model "
                    "against each method's corruption) and 'anomaly' (difference maps of whole held-out scans). "
                    "Checkpoints are reused from --results and pretrained when missing."), list(PROFILES))
    listing = commands.add_parser("list", help="list the registered methods, tasks and backbones",
                                  description="List the registered methods, tasks and backbones (with their "
                                              "parameter counts), built-in and plugins.")
    listing.add_argument("--verbose", "-v", action="store_true", help="also list every method's settings")
    show = commands.add_parser(
        "show", help="a method's (or a task's, or a backbone's) description, what it transfers and its settings",
        description="Print a method's (or a task's, or a backbone's) name, description, what a method transfers "
                    "(and on which backbones), a backbone's stages and input sizes, the first paragraph of its "
                    "documentation and every setting with its default (the values 'benchmark run --method-arg "
                    "KEY=VALUE', '--task-arg KEY=VALUE' or '--backbone-arg KEY=VALUE' replace).")
    show.add_argument("method", metavar="NAME", help="a method, a task or a backbone (see 'benchmark list')")
    baseline = commands.add_parser(
        "baseline", help="score an intensity-threshold baseline on a task's test split",
        description="Score the best single intensity threshold (chosen on the training split) on the test "
                    "split: the floor any learned model must clear.")
    baseline.add_argument("--task", required=True)
    baseline.add_argument("--profile", default="quick", choices=list(PROFILES))
    baseline.add_argument("--data-root", type=Path, default=None)
    return parser


VERBS = {"run": "run", "sweep": "sweep", "report": "report", "verify-data": "verify", "pretrain": "pretrain",
         "speed": "speed", "convert-emboli": "convert", "analyze": "analyze", "list": "listing", "show": "show",
         "baseline": "baseline"}


def module_command(module: str) -> Callable[[argparse.Namespace], int | None]:
    """The ``command`` function of ``module``, imported when the command runs: ``--help`` and the
    light commands do not pay for importing torch."""
    return lambda args: importlib.import_module(module).command(args)


# Failures of the user's environment, not of the suite: a folder that is read-only, missing or full, a file
# larger than the size limit (``ulimit -f``) allows.
ENVIRONMENT_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                      errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error:`` line with a hint, not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {one_line(f'{self.prog}: {message}')} (see '{self.prog} --help')\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Expected failures (``UserError``, a folder that cannot be written) end with
    one ``error:`` line and status 2; anything else is a bug: its traceback and a line asking to
    report it, status 1."""
    log_to_stderr()
    args = build_parser().parse_args(argv)
    commands = {name: module_command(f"benchmark.cli.{module}") for name, module in VERBS.items()}
    try:
        status = commands[args.command](args)
    except UserError as error:
        print(f"error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; the run in flight was not recorded", file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno not in ENVIRONMENT_ERRORS:
            return _unexpected()
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {one_line(f'{where}{error.strerror or error}')}", file=sys.stderr)
        return 2
    except Exception:
        return _unexpected()
    return status or 0


def _unexpected() -> int:
    traceback.print_exc()
    print("error: unexpected failure (a bug of the suite): please report it with the command line and the "
          "traceback above", file=sys.stderr)
    return 1

