"""Measured growth with the data: each stage of a run in a fresh process, timed, counted, its peak memory read.

A stage runs in a child process of its own (``python -m benchmark.engine.scale SPEC OUT``), so that
its peak memory is its own: ``os.wait4``'s resource usage (``ru_maxrss``, KiB on Linux), read by a
bare launcher process (``LAUNCHER``: a child exec'd straight from this process would inherit this
process's peak), the peak resident set of the whole process (the interpreter, torch and the suite
included, and the file-backed pages of memory-mapped volumes it touched). The child writes what it
measured inside (the stage's wall seconds, after the imports; the items it processed; its own
``VmHWM``, which should agree) to a small JSON file. The stages, each on a dataset folder whose
preprocessing cache (``BENCHMARK_CACHE``) the caller chooses:

* ``verify-data``: ``task.verify(root)``, every check of the folder; items: the dataset's own count;
* ``preprocessing``: the first ``task.load`` on an empty cache, which decodes every scan into it;
* ``loading``: ``task.load`` again, from the cache;
* ``fine-tuning epoch``: ``task.load``, then ``finetune`` for one epoch of the profile's schedule and
  its validation over the whole validation split; items: samples trained + validation cases;
* ``evaluation``: ``task.load``, then ``evaluate`` of a fresh model (seeded) on every test case.

``baseline`` (the imports, the task and its model, one forward pass of one cube, no data) is what
any of them costs before touching data. ``measure_run`` times a whole ``benchmark run`` the same way.
This module names no task: the caller passes the task's name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from benchmark.api.backbone import DEFAULT_BACKBONE
from benchmark.api.profiles import Profile, get_profile
from benchmark.api.registry import BACKBONES, TASKS
from benchmark.api.task import Task
from benchmark.data import files
from benchmark.engine.finetune import evaluate, finetune
from benchmark.engine.runtime import peak_host_memory_mb, resolve_device, seed_everything
from benchmark.errors import UserError

BASELINE = "baseline"
VERIFY, PREPROCESSING, LOADING, EPOCH, EVALUATION = (
    "verify-data", "preprocessing", "loading", "fine-tuning epoch", "evaluation")
STAGES = (VERIFY, PREPROCESSING, LOADING, EPOCH, EVALUATION)
WHOLE_RUN = "whole run"
RUN_METHOD = "scratch-he"  # no pretraining: a whole run is fine-tuning and evaluation
LOG_TAIL = 30  # lines of a failed child's log shown in the error


@dataclass(frozen=True)
class StageSpec:
    """What one child process measures: ``stage`` of ``task`` on the dataset at ``root``."""

    stage: str
    task: str
    root: str
    profile: str = "smoke"
    device: str = "cpu"
    seed: int = 0
    items: int = 0  # the dataset's size in ``unit`` (what verify-data reports)
    unit: str = "cases"


@dataclass(frozen=True)
class Measurement:
    """One stage measured in its own process."""

    stage: str
    seconds: float  # the stage's own wall time, measured inside the process (after its imports)
    items: int
    unit: str
    peak_mb: float  # the process's peak resident memory
    process_seconds: float  # the whole process, start to exit
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


# ------------------------------------------------------------------ the parent: one child per stage


def peak_rss_mb(maxrss: int) -> float:
    """A resource usage's ``ru_maxrss`` in MB (KiB on Linux, bytes on macOS)."""
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


# Linux keeps a process's peak resident size across exec: a child forked (or vforked) from this process and
# exec'd starts with this process's peak as its own. So the measured command is started by a launcher, a
# bare interpreter of a few MB, which forks and execs it, waits for it with os.wait4 and writes its exit
# code and ru_maxrss to a JSON file; SIGTERM to the launcher is passed on to the command.
LAUNCHER = """
import json, os, signal, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the command too (same process group)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as handle:
    json.dump({"code": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss}, handle)
"""


def run_measured(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> tuple[int, float, float]:
    """Run ``argv`` (its first item a path) as a child process, its output into ``log``: its exit code, wall
    seconds and peak resident memory in MB (``os.wait4``'s ``ru_maxrss``: the child's own, none of this
    process's, see ``LAUNCHER``)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    usage_file = log.with_name(f"{log.name}.usage.json")
    usage_file.unlink(missing_ok=True)
    with open(log, "wb") as output:
        start = time.perf_counter()
        launcher = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, str(usage_file), *argv],
                                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                    env=None if env is None else dict(env))
        try:
            launcher.wait()
        except BaseException:  # Ctrl-C: stop the command too
            launcher.terminate()
            launcher.wait()
            raise
        seconds = time.perf_counter() - start
    if launcher.returncode != 0 or not usage_file.is_file():
        raise RuntimeError(f"{argv[0]}: could not be started and measured (exit status {launcher.returncode}); "
                           f"see {log}")
    usage = json.loads(usage_file.read_text(encoding="utf-8"))
    return int(usage["code"]), seconds, peak_rss_mb(usage["maxrss"])


def _environment(cache: Path) -> dict[str, str]:
    return {**os.environ, "BENCHMARK_CACHE": str(cache)}


def _failure(what: str, code: int, log: Path) -> RuntimeError:
    lines = log.read_text(errors="replace", encoding="utf-8").splitlines() if log.is_file() else []
    tail = "\n".join(lines[-LOG_TAIL:])
    return RuntimeError(f"{what} failed (exit status {code}); the end of its log {log}:\n{tail}")


def measure_stage(spec: StageSpec, cache: Path, work: Path) -> Measurement:
    """Run ``spec`` in a fresh process with the preprocessing cache ``cache``; its files (spec, result,
    log) go to ``work``. A UserError of the stage (a dataset problem) is raised here as one."""
    work.mkdir(parents=True, exist_ok=True)
    name = spec.stage.replace(" ", "-")
    spec_file, out_file, log = work / f"{name}.spec.json", work / f"{name}.json", work / f"{name}.log"
    spec_file.write_text(json.dumps(asdict(spec)), encoding="utf-8")
    out_file.unlink(missing_ok=True)
    code, seconds, peak = run_measured([sys.executable, "-m", __name__, str(spec_file), str(out_file)], log,
                                       _environment(cache))
    result = _stage_result(out_file)
    if "error" in result:
        raise UserError(f"{spec.stage} of {spec.task} on {spec.root}: {result['error']}")
    if code != 0 or "seconds" not in result:
        raise _failure(f"{spec.stage} of {spec.task} on {spec.root}", code, log)
    return Measurement(spec.stage, float(result["seconds"]), int(result["items"]), str(result["unit"]), peak,
                       seconds, dict(result.get("detail", {})))


def _stage_result(out_file: Path) -> dict[str, Any]:
    """What the child wrote (empty when it wrote nothing whole: killed, or its file damaged since; the
    caller then reports the stage as failed, with its log)."""
    try:
        result = json.loads(out_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}


def measure_run(task: str, root: Path, profile: str, device: str, seed: int, cache: Path, work: Path) -> Measurement:
    """A whole ``benchmark run --method scratch-he`` of ``task`` on ``root`` in a fresh process, into a results
    folder under ``work``: the record's wall time and test-case count, the process's peak memory."""
    results = work / "results"
    argv = [sys.executable, "-m", "benchmark", "run", "--method", RUN_METHOD, "--task", task, "--profile", profile,
            "--data-root", str(root), "--results", str(results), "--device", device, "--seed", str(seed), "--force"]
    log = work / "whole-run.log"
    code, seconds, peak = run_measured(argv, log, _environment(cache))
    records = sorted(results.glob("runs/*/result.json"))
    if code != 0 or not records:
        raise _failure(f"benchmark run --task {task} on {root}", code, log)
    record = json.loads(records[-1].read_text(encoding="utf-8"))
    cases = record.get("cases", {})
    return Measurement(WHOLE_RUN, float(record["wall_seconds"]), int(cases.get("test", 0)), "test cases", peak,
                       seconds, {"cases": cases, "metrics": record.get("metrics", {}),
                                 "record_peak_mb": record.get("peak_memory_mb")})


# ------------------------------------------------------------------ the child: one stage


def one_epoch(profile: Profile) -> Profile:
    """``profile`` with one fine-tuning epoch for either kind of task."""
    return replace(profile, classification=replace(profile.classification, epochs=1),
                   segmentation=replace(profile.segmentation, epochs=1))


@dataclass
class _Context:
    spec: StageSpec
    task: Task
    profile: Profile
    device: torch.device
    cube: tuple[int, int, int]

    def model(self) -> torch.nn.Module:
        seed_everything(self.spec.seed)
        return self.task.build_model(BACKBONES.create(DEFAULT_BACKBONE), self.profile.width).to(self.device)

    def load(self) -> tuple[Any, float]:
        start = time.perf_counter()
        data = self.task.load(Path(self.spec.root), self.cube)
        return data, time.perf_counter() - start


def _split_sizes(data: Any) -> dict[str, int]:
    return {split: len(getattr(data, split)) for split in ("train", "val", "test")}


def _baseline(context: _Context) -> dict[str, Any]:
    model = context.model().eval()
    start = time.perf_counter()
    with torch.no_grad():
        model(torch.zeros((1, context.task.in_channels, *context.cube), device=context.device))
    return {"seconds": time.perf_counter() - start, "items": 0, "unit": "", "detail": {}}


def _verify(context: _Context) -> dict[str, Any]:
    start = time.perf_counter()
    problems = context.task.verify(Path(context.spec.root))
    seconds = time.perf_counter() - start
    if problems:
        raise UserError(f"{len(problems)} problem(s), the first: {problems[0]}")
    return {"seconds": seconds, "items": context.spec.items, "unit": context.spec.unit, "detail": {}}


def _load(context: _Context) -> dict[str, Any]:
    data, seconds = context.load()
    sizes = _split_sizes(data)
    return {"seconds": seconds, "items": sum(sizes.values()), "unit": "cases", "detail": sizes}


def _epoch(context: _Context) -> dict[str, Any]:
    data, load_seconds = context.load()
    model = context.model()
    profile = one_epoch(context.profile)
    schedule = profile.schedule(context.task.kind)
    start = time.perf_counter()
    finetune(model, context.task, data.train, data.val, context.cube, profile, context.spec.seed, context.device,
             progress=False)
    samples = schedule.steps_per_epoch * schedule.batch
    return {"seconds": time.perf_counter() - start, "items": samples + len(data.val), "unit": "cases",
            "detail": {"samples trained": samples, "validation cases": len(data.val), "load seconds": load_seconds}}


def _evaluation(context: _Context) -> dict[str, Any]:
    data, load_seconds = context.load()
    model = context.model()
    start = time.perf_counter()
    scores, per_case = evaluate(model, context.task, data.test, context.cube, context.profile, context.device)
    return {"seconds": time.perf_counter() - start, "items": len(per_case), "unit": "test cases",
            "detail": {"test cases": len(data.test), "evaluated": len(per_case), "metrics": scores,
                       "load seconds": load_seconds}}


CHILD_STAGES: dict[str, Callable[[_Context], dict[str, Any]]] = {
    BASELINE: _baseline, VERIFY: _verify, PREPROCESSING: _load, LOADING: _load, EPOCH: _epoch,
    EVALUATION: _evaluation}


def run_stage(spec: StageSpec) -> dict[str, Any]:
    """Measure ``spec`` in this process: its wall seconds, items, unit and details."""
    if spec.stage not in CHILD_STAGES:
        raise UserError(f"stage '{spec.stage}': expected one of {', '.join(CHILD_STAGES)}")
    task = TASKS.create(spec.task)
    profile = get_profile(spec.profile)
    context = _Context(spec, task, profile, resolve_device(spec.device), task.cube_shape(profile.cube))
    return CHILD_STAGES[spec.stage](context)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmark.engine.scale SPEC OUT``: run the stage of the JSON file SPEC, write what it measured
    (or its one-line error, exit status 2) to the JSON file OUT."""
    spec_file, out_file = argv if argv is not None else sys.argv[1:]
    spec = StageSpec(**json.loads(Path(spec_file).read_text(encoding="utf-8")))
    try:
        result = run_stage(spec)
    except UserError as error:
        _write_stage_result(Path(out_file), {"error": str(error)})
        return 2
    result["detail"]["VmHWM MB"] = peak_host_memory_mb()
    _write_stage_result(Path(out_file), result)
    return 0


def _write_stage_result(out_file: Path, result: dict[str, Any]) -> None:
    """All or nothing, so that a child killed while writing leaves no half a result to be read."""
    text = json.dumps(result, default=float)
    files.write_atomic(out_file, lambda tmp: tmp.write_text(text, encoding="utf-8"))


if __name__ == "__main__":
    sys.exit(main())
