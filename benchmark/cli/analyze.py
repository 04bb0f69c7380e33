"""``benchmark analyze``: the paper's analyses beyond Table 3 that need models, not records.

``restoration``: the restoration cross-matrix (fig. D-14). ``anomaly``: difference maps of
whole held-out scans and how well they find planted opacities (fig. 9). Both reuse the cached
checkpoints under ``--results`` and pretrain what is missing, as ``benchmark run`` does.
Arguments here are light; the work is imported when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.options import add_switch_arguments
from benchmark.reporting import ANALYSES_FOLDER

DEFAULT_ANOMALY_METHOD = "genesis"


def add_arguments(parser: argparse.ArgumentParser, profiles: list[str]) -> None:
    analyses = parser.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    restoration = analyses.add_parser(
        "restoration", help="each restoration model against each method's corruption (fig. D-14)",
        description="Corrupt held-out cubes (the pretraining pool's validation subsets) with each method's own "
                    "transform and restore them with each method's pretrained model; write the MSE and SSIM "
                    "matrices (CSV, Markdown, heat map) and an image grid.")
    restoration.add_argument("--methods", default=None,
                             help="comma-separated restoration methods, rows and columns alike (default: every "
                                  "registered method whose pretext task restores its input)")
    restoration.add_argument("--cubes", type=int, default=16, help="held-out cubes (default 16)")
    anomaly = analyses.add_parser(
        "anomaly", help="difference maps of whole held-out scans and their opacity-detection AUC (fig. 9)",
        description="Restore whole held-out scans by sliding window with a pretrained restoration model, write "
                    "|input - output| as NIfTI and a montage, and, where opacity masks exist, the voxel-level AUC "
                    "of the difference map for finding them against that of the raw intensity, with jackknife "
                    "intervals over scans. Without --data-root: built-in held-out chest scans with planted "
                    "ground-glass opacities.")
    anomaly.add_argument("--method", default=DEFAULT_ANOMALY_METHOD,
                         help=f"the restoration method (default {DEFAULT_ANOMALY_METHOD})")
    anomaly.add_argument("--data-root", type=Path, default=None,
                         help="folder of scans/<name>.{mhd,nii.gz,nii}, optional masks/<name>.* (the abnormal "
                              "regions) and lungs/<name>.* (where to look); default: the built-in scans")
    for sub in (restoration, anomaly):
        sub.add_argument("--profile", default="quick", choices=profiles, help="(default quick)")
        sub.add_argument("--seed", type=int, default=0, help="pretraining seed (default 0)")
        sub.add_argument("--pretrain-root", type=Path, default=None,
                         help="LUNA16-layout pretraining folder (default: built-in chest phantom)")
        sub.add_argument("--results", type=Path, default=Path("results"),
                         help="results root whose checkpoints are reused (default ./results)")
        sub.add_argument("--out", type=Path, default=ANALYSES_FOLDER,
                         help="output folder (default ./reports/analysis)")
        sub.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(default auto)")
        sub.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                         help="replace one of the method's settings, as for 'benchmark run' (repeatable; with "
                              "several methods, for every one that has it): the checkpoint of those settings")
        sub.add_argument("--profile-arg", action="append", default=[], metavar="KEY=VALUE",
                         help="replace one field of the profile, as for 'benchmark run' (repeatable)")
        add_switch_arguments(sub)
        sub.add_argument("--no-progress", action="store_true", help="no progress bars")


def command(args: argparse.Namespace) -> None:
    {"restoration": restoration, "anomaly": anomaly}[args.analysis](args)


def _out_folder(path: Path) -> Path:
    from benchmark.errors import UserError

    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path}: exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _save(figure, path: Path) -> None:
    from benchmark.data import files

    for suffix in (".png", ".pdf"):
        files.write_atomic(path.with_suffix(suffix),
                           lambda tmp, fmt=suffix[1:]: figure.savefig(tmp, format=fmt, dpi=300))


def analysed(checkpoints: dict[str, str], args: argparse.Namespace) -> dict[str, object]:
    """What ``benchmark report`` reads beside an analysis: the checkpoints it used and how they were made."""
    from benchmark.cli.options import method_settings, switches

    return {"checkpoints": checkpoints, "profile": args.profile, "profile_fields": switches(args),
            "method_settings": dict(method_settings(args)), "seed": args.seed}


def _clear_previous(paths: list[Path]) -> None:
    """Remove what an earlier analysis wrote before writing the new one: a run killed while writing
    then leaves part of the new set, never new files beside old ones that the report would show
    together."""
    for path in paths:
        path.unlink(missing_ok=True)


def _restoration_methods(text: str | None, settings: tuple[tuple[str, str], ...] = ()) -> list:
    """The methods named in ``text``, or every registered one whose pretext task restores its input,
    each with its share of ``settings`` (those it has; a setting none has is an error)."""
    import numpy as np

    from benchmark.api.backbone import default_backbone
    from benchmark.api.registry import METHODS
    from benchmark.engine.sweep import settings_per_plugin
    from benchmark.reporting.restoration import is_restoration_method

    if text:
        names = [name.strip() for name in text.split(",") if name.strip()]
    else:
        cube = np.full((1, 1, 16, 32, 32), 0.5, dtype=np.float32)
        names = [method.name for method in map(METHODS.create, METHODS.names())
                 if is_restoration_method(method, cube, 2, default_backbone(method))]
    shares = settings_per_plugin(METHODS, names, settings)
    return [METHODS.create(name, **dict(shares[name])) for name in names]


def restoration(args: argparse.Namespace) -> None:
    from benchmark.api.profiles import get_profile
    from benchmark.cli.options import method_settings, switches
    from benchmark.data import files
    from benchmark.engine.checkpoints import pretraining_pool
    from benchmark.engine.runtime import resolve_device
    from benchmark.reporting.analyses import RESTORATION_CHECKPOINTS, RESTORATION_GRID, RESTORATION_MATRIX
    from benchmark.reporting.restoration_matrix import heat_map, image_grid, markdown, restoration_matrix

    out = _out_folder(args.out)
    methods = _restoration_methods(args.methods, method_settings(args))
    matrix = restoration_matrix(methods, pretraining_pool(args.pretrain_root), get_profile(args.profile,
                                                                                           **switches(args)), args.seed,
                                args.results, resolve_device(args.device), args.cubes, not args.no_progress)
    _clear_previous([out / f"{RESTORATION_MATRIX}{suffix}" for suffix in (".csv", ".md", ".png", ".pdf")]
                    + [out / f"{RESTORATION_GRID}{suffix}" for suffix in (".png", ".pdf")]
                    + [out / RESTORATION_CHECKPOINTS])
    files.write_csv(out / f"{RESTORATION_MATRIX}.csv", matrix.errors)
    files.write_json(out / RESTORATION_CHECKPOINTS, analysed(matrix.checkpoints, args))
    text = markdown(matrix)
    files.write_atomic(out / f"{RESTORATION_MATRIX}.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    _save(heat_map(matrix), out / RESTORATION_MATRIX)
    _save(image_grid(matrix), out / RESTORATION_GRID)
    print(text)
    print(f"written: restoration_matrix.csv/.md/.png/.pdf and restoration_grid.png/.pdf in {out}")


def anomaly(args: argparse.Namespace) -> None:
    import numpy as np

    from benchmark.api.profiles import get_profile
    from benchmark.api.registry import METHODS
    from benchmark.cli.options import method_settings, switches
    from benchmark.data import files
    from benchmark.data.datasets import directory_source, phantom_source
    from benchmark.data.phantoms.opacities import write_opacity_phantom
    from benchmark.engine.checkpoints import obtain_checkpoint, pretraining_pool
    from benchmark.engine.runtime import resolve_device
    from benchmark.errors import UserError
    from benchmark.reporting.analyses import (
        ANOMALY_AUC,
        ANOMALY_CHECKPOINTS,
        ANOMALY_FOLDER,
        ANOMALY_MONTAGE,
        DIFFERENCE_SUFFIX,
        MIN_INTERVAL_SCANS,
    )
    from benchmark.reporting.anomaly import anomaly_map, detection_auc, find_scans, montage, write_difference
    from benchmark.reporting.restoration import restoration_model, restores_its_input

    out = _out_folder(args.out / ANOMALY_FOLDER)
    profile, device = get_profile(args.profile, **switches(args)), resolve_device(args.device)
    method = METHODS.create(args.method, **dict(method_settings(args)))
    data = directory_source(args.data_root) if args.data_root else phantom_source(write_opacity_phantom)
    scans = find_scans(data.root)
    checkpoint, meta = obtain_checkpoint(method, pretraining_pool(args.pretrain_root), profile, args.seed,
                                         args.results, device, not args.no_progress)
    probe = np.zeros((1, checkpoint["backbone"]["in_channels"], *profile.cube), dtype=np.float32)
    if not restores_its_input(method, checkpoint, probe):
        raise UserError(f"method '{method.name}' is not a restoration method: it has no anomaly map")
    model = restoration_model(checkpoint, f"checkpoint {meta['checkpoint_id']}")
    _clear_previous([*out.glob(f"*{DIFFERENCE_SUFFIX}"), *out.glob(".*.partial.nii.gz"),
                     out / ANOMALY_AUC, out / f"{ANOMALY_MONTAGE}.png", out / f"{ANOMALY_MONTAGE}.pdf",
                     out / ANOMALY_CHECKPOINTS])
    files.write_json(out / ANOMALY_CHECKPOINTS, analysed({method.name: meta["checkpoint_id"]}, args))
    results = []
    for scan in scans:
        result = anomaly_map(model, scan, profile, device)
        write_difference(result, out / f"{scan.name}{DIFFERENCE_SUFFIX}")
        results.append(result)
    _save(montage(results), out / ANOMALY_MONTAGE)
    print(f"{len(results)} difference maps (|scan - restored|, {method.name}, checkpoint {meta['checkpoint_id']}) "
          f"in {out}")
    if not any(r.mask is not None for r in results):
        print("no opacity masks (masks/<name>.*): no detection AUC")
        return
    table = detection_auc(results)
    files.write_csv(out / ANOMALY_AUC, table)
    for row in table.itertuples():
        if row.jackknife and np.isnan(row.ci_low):
            interval = "no interval: the AUC is 0 or 1 (perfect separation), where leaving scans out shows no spread"
        elif row.jackknife:
            interval = f"95% jackknife over {row.scans} scans: {row.ci_low:.3f} to {row.ci_high:.3f}"
        elif row.scans < MIN_INTERVAL_SCANS:
            interval = f"no interval: {row.scans} scan(s), an interval needs at least {MIN_INTERVAL_SCANS}"
        else:
            interval = "no interval: one scan holds every opacity voxel, so leaving it out leaves none"
        print(f"{row.score:<24} AUC {row.auc:.3f}  ({interval})")
