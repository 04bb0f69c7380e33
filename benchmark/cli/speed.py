"""``benchmark speed``: where pretraining time goes, as ratios measured in one run.

For each chosen size (a profile's cube and width) it measures, and prints as one line per
comparison ending in ``<ratio>x`` followed by the absolute figures it came from:

* each corruption a method declares (``Method.speed_corruptions``): the fast
  implementation vs its plain loop, per cube on one core (the same cubes and seeds for
  both, so the same random gates). The loops are the tests' oracles, kept out of the
  installed package: they are loaded from ``--oracles DIR`` (default: ``tests/oracles``
  of the current folder, a checkout); without them the fast ones are timed alone;
* each method with batched device transforms: a batch made on the CPU by
  ``make_example`` vs the same batch made by ``make_example_on_device`` on the device;
* the data pipeline's cubes per second (one core; and on the device) vs the cubes per
  second a training step consumes;
* a pretraining step of the backbone U-Net: bf16 autocast vs fp32, channels_last_3d vs
  the default layout, torch.compile on vs off.

Each figure is the best of ``--repeats`` timed calls after one warm-up call (as
``timeit`` advises: the least disturbed by whatever else the machine runs). Absolute
times depend on the machine; the ratios of one run are what to compare.

``--scale`` measures something else: how wall time and peak memory grow with the data
(``benchmark.cli.scale``).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from benchmark.api.method import Method
from benchmark.api.profiles import PROFILES, Profile
from benchmark.api.registry import METHODS
from benchmark.engine.loader import keep_freed_memory
from benchmark.engine.runtime import resolve_device
from benchmark.errors import UserError
from benchmark.model.backbone import UNet3D

DEFAULT_ORACLES = Path("tests") / "oracles"
_SCALE_OPTIONS = ("parts", "candidates", "scans", "scan_shape", "volumes", "window_sizes", "stages", "profile", "seed",
                  "keep", "whole_run")
Loops = dict[tuple[str, str], Callable[..., Any]]  # (method class name, corruption) -> f(method, cube, rng)


@dataclass(frozen=True)
class Size:
    name: str
    cube: tuple[int, int, int]
    width: int
    batch: int


def command(args: argparse.Namespace) -> None:
    if getattr(args, "scale", False):
        from benchmark.cli import scale

        return scale.command(args)
    given = [name for name in _SCALE_OPTIONS if getattr(args, name, None) not in (None, False)]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')}: an option of 'benchmark speed --scale' (add --scale)")
    if args.repeats < 1 or args.cubes < 1:
        raise UserError(f"--repeats {args.repeats} --cubes {args.cubes}: both must be >= 1")
    device = resolve_device(args.device)
    keep_freed_memory()  # as the pretraining loop does
    sizes = [_size(name, args.batch, device) for name in _names(args.sizes)]
    methods = _methods(args.methods)
    loops = load_oracles(args.oracles)
    print(f"benchmark speed: {device}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} CPU cores; best of {args.repeats} after a warm-up")
    bar = tqdm(total=len(sizes) * (len(methods) + 1), desc="speed", unit="part", disable=args.no_progress,
               leave=False)
    for size in sizes:
        print(f"\n[{size.name}] cube {'x'.join(map(str, size.cube))} (z, y, x), width {size.width}, "
              f"batch {size.batch}")
        steps = training_steps(size, device, args.repeats, args.compile)
        bar.update()
        for method in methods:
            transform_comparisons(method, size, args.repeats, args.cubes, loops)
            pipeline_comparisons(method, size, device, args.repeats, args.cubes, steps["fp32"])
            bar.update()
    bar.close()


# ------------------------------------------------------------------ measuring


def best_seconds(call: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Shortest wall time of ``call`` over ``repeats`` calls, after one warm-up call."""
    _synchronised(call, device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _synchronised(call, device)
        times.append(time.perf_counter() - start)
    return min(times)


def best_seconds_interleaved(
    calls: list[Callable[[], object]], repeats: int, device: torch.device
) -> list[float]:
    """``best_seconds`` of each call, the calls taking turns, so that a change in the machine's
    load during the measurement falls on all of them alike."""
    for call in calls:
        _synchronised(call, device)
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, spent in zip(calls, times):
            start = time.perf_counter()
            _synchronised(call, device)
            spent.append(time.perf_counter() - start)
    return [min(spent) for spent in times]


def _synchronised(call: Callable[[], object], device: torch.device) -> None:
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ratio_line(what: str, ratio: float) -> str:
    return f"{what}: {ratio:.1f}x" if ratio >= 10 else f"{what}: {ratio:.2f}x"


def report(what: str, ratio: float, detail: str) -> None:
    print(ratio_line(what, ratio))
    print(f"    {detail}")


# ------------------------------------------------------------------ the parts


def load_oracles(folder: Path | None) -> Loops | None:
    """The loop versions of the corruptions: ``LOOPS`` of the package in ``folder`` (the repository's
    ``tests/oracles``). Without ``folder``, ``tests/oracles`` of the current folder if there, else
    None, with a note."""
    if folder is None:
        if not (DEFAULT_ORACLES / "__init__.py").is_file():
            print(f"note: comparing the corruptions with their loop versions needs the repository's {DEFAULT_ORACLES} "
                  "(run from a checkout, or give --oracles DIR); the fast ones are timed alone")
            return None
        folder = DEFAULT_ORACLES
    if not (folder / "__init__.py").is_file():
        raise UserError(f"--oracles {folder}: no __init__.py there (expected the repository's {DEFAULT_ORACLES})")
    spec = importlib.util.spec_from_file_location("benchmark_oracles", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its own relative imports find it there
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise UserError(f"--oracles {folder}: failed to load ({type(error).__name__}: {error})") from error
    if not isinstance(getattr(module, "LOOPS", None), dict):
        raise UserError(f"--oracles {folder}: its __init__.py defines no LOOPS dict")
    return module.LOOPS


def transform_comparisons(method: Method, size: Size, repeats: int, count: int, loops: Loops | None) -> None:
    """Each declared corruption: fast vs loop, per cube, on the same ``count`` cubes and seeds (the
    fast one alone where there is no loop version)."""
    cubes = _cubes(size, count)
    cpu = torch.device("cpu")

    def run(implementation: Callable) -> Callable[[], None]:
        return lambda: [implementation(cube, np.random.default_rng(i)) for i, cube in enumerate(cubes)]

    for name, fast in method.speed_corruptions((1, *size.cube)).items():
        what = f"{method.name} {name} [{size.name}]"
        loop = None if loops is None else loops.get((type(method).name, name))
        if loop is None:
            fast_ms = 1e3 * best_seconds(run(fast), repeats, cpu) / count
            missing = "" if loops is None else " (no loop version among the oracles)"
            print(f"{what}, fast, one core: {fast_ms:.3f} ms/cube (mean over {count} cubes){missing}")
            continue
        fast_s, loop_s = best_seconds_interleaved([run(fast), run(functools.partial(loop, method))], repeats, cpu)
        fast_ms, loop_ms = 1e3 * fast_s / count, 1e3 * loop_s / count
        report(f"{what}, fast vs loop, one core", loop_ms / fast_ms,
               f"loop {loop_ms:.2f} ms/cube, fast {fast_ms:.3f} ms/cube (mean over {count} cubes)")


def pipeline_comparisons(
    method: Method, size: Size, device: torch.device, repeats: int, count: int, step_seconds: float
) -> None:
    """CPU vs device batches (``count`` batches of fixed seeds, so every repeat draws the same
    random gates), and the data pipeline's cubes/s vs the training step's."""
    pool = _cubes(size, 4 * size.batch)

    def cpu_batches() -> None:
        for seed in range(count):
            method.sample_batch(pool, size.batch, np.random.default_rng(seed))

    cpu_s = best_seconds(cpu_batches, repeats, torch.device("cpu")) / count
    step_rate = size.batch / step_seconds
    cpu_rate = size.batch / cpu_s
    report(f"{method.name} [{size.name}], data pipeline (one core) vs training step, cubes/s", cpu_rate / step_rate,
           f"pipeline {cpu_rate:.1f} cubes/s on one core ({1e3 * cpu_s / size.batch:.2f} ms/cube), "
           f"training step {step_rate:.2f} cubes/s (fp32, {device})")
    if not type(method).has_device_transforms():
        return
    device_pool = torch.from_numpy(pool).to(device)

    def device_batches() -> None:
        for seed in range(count):
            method.sample_batch_on_device(device_pool, size.batch, torch.Generator(device=device).manual_seed(seed))

    device_s = best_seconds(device_batches, repeats, device) / count
    report(f"{method.name} [{size.name}], device batch vs CPU batch ({device})", cpu_s / device_s,
           f"CPU {1e3 * cpu_s:.2f} ms, {device} {1e3 * device_s:.2f} ms per batch of {size.batch}; "
           f"device transforms take {100 * device_s / (device_s + step_seconds):.1f}% of a step")


def training_steps(size: Size, device: torch.device, repeats: int, compile_: bool) -> dict[str, float]:
    """Seconds per pretraining step of the backbone U-Net (MSE restoration, SGD) under each setting,
    with the peak device memory of each on a GPU."""
    variants = {"fp32": {}, "bf16": {"precision": "bf16"}, "channels_last_3d": {"channels_last": True}}
    if compile_:
        variants["compile"] = {"compile": True}
    seconds, peaks = {}, {}
    for name, options in variants.items():
        try:
            seconds[name], peaks[name] = _step_seconds(size, device, repeats, **options)
        except Exception as error:  # torch.compile needs a working compiler toolchain: say so, measure the rest
            if name != "compile":
                raise
            print(f"training step [{size.name}], torch.compile on vs off: not measured "
                  f"({type(error).__name__}: {str(error).splitlines()[0][:200]})")
    base = seconds["fp32"]
    print(f"training step [{size.name}], fp32: {1e3 * base:.1f} ms per step of {size.batch} "
          f"({size.batch / base:.2f} cubes/s, {device}){_peak_text(peaks['fp32'])}")
    names = {"bf16": "bf16 autocast vs fp32", "channels_last_3d": "channels_last_3d vs default layout",
             "compile": "torch.compile on vs off"}
    for name, label in names.items():
        if name in seconds:
            cpu_bf16 = (name, device.type) == ("bf16", "cpu")
            refused = "; timed only: pretraining refuses bf16 on the CPU" if cpu_bf16 else ""
            report(f"training step [{size.name}], {label}", base / seconds[name],
                   f"{1e3 * seconds[name]:.1f} ms vs {1e3 * base:.1f} ms per step of {size.batch} "
                   f"({size.batch / seconds[name]:.2f} vs {size.batch / base:.2f} cubes/s, {device}{refused})"
                   f"{_peak_text(peaks[name])}")
    return seconds


def _peak_text(peak_bytes: int | None) -> str:
    return "" if peak_bytes is None else f"; peak device memory {peak_bytes / 2**20:.0f} MiB"


def _step_seconds(size: Size, device: torch.device, repeats: int, precision: str = "fp32",
                  channels_last: bool = False, compile: bool = False) -> tuple[float, int | None]:
    """Best seconds per step, and on a GPU the peak memory allocated by torch during the steps
    (model, optimiser state, activations; None on the CPU, where torch keeps no such count)."""
    from benchmark.engine.pretrain import pretext_loss  # the pretraining loop's own forward + loss

    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = UNet3D(in_channels=1, out_channels=1, width=size.width).to(device)
    memory = torch.channels_last_3d if channels_last else torch.contiguous_format
    model.to(memory_format=memory)
    trained: nn.Module = torch.compile(model) if compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    inputs = torch.from_numpy(_cubes(size, size.batch)).to(device).contiguous(memory_format=memory)
    targets = inputs.clone()
    restoration = Method()  # the default restoration loss

    def step() -> None:
        loss = pretext_loss(restoration, trained, inputs, targets, precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = best_seconds(step, repeats, device)
    return seconds, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


# ------------------------------------------------------------------ choices


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROFILES]
    if not names or unknown:
        raise UserError(f"--sizes {text}: expected profile names among {', '.join(PROFILES)}")
    return names


def _size(name: str, batch: int | None, device: torch.device) -> Size:
    profile: Profile = PROFILES[name]
    if batch is not None and batch < 1:
        raise UserError(f"--batch {batch}: must be >= 1")
    default = profile.pretrain_batch if device.type == "cuda" else 1
    return Size(name, profile.cube, profile.width, default if batch is None else batch)


def _methods(text: str | None) -> list[Method]:
    if text is not None:
        return [METHODS.create(name.strip()) for name in text.split(",") if name.strip()]
    return [METHODS.create(name) for name in measured_by_default()]


def measured_by_default() -> list[str]:
    """The methods with corruptions to time or device transforms, one per implementation: no preset
    (the Genesis ablations are Genesis'), and the first name of the classes that share them."""
    names, seen = [], set()
    for name in METHODS.names():
        cls = METHODS.get(name)
        implementations = (cls.speed_corruptions, cls.make_example_on_device)
        none = (Method.speed_corruptions, Method.make_example_on_device)
        if METHODS.preset(name) is None and implementations != none and implementations not in seen:
            seen.add(implementations)
            names.append(name)
    return names


def _cubes(size: Size, count: int) -> np.ndarray:
    """``count`` random float32 cubes in [0, 1) (the transforms' cost does not depend on content)."""
    return np.random.default_rng(0).random((count, 1, *size.cube), dtype=np.float32)
