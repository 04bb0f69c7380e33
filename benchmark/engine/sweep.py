"""Sweeps: a grid of methods × tasks × label fractions × seeds, resumable and safe to run twice at once.

A sweep plans every cell first (unknown names and missing folders fail before any
training), skips cells that already have a record, pretrains each checkpoint the
remaining cells need once, then fine-tunes the cells. Each unit of work is a
``SweepJob`` handed to an executor:

* ``inline``: in this process, one after the other (the default with ``--jobs 1``);
* ``local``: ``submitit``'s local executor, each job in its own process, at most
  ``--jobs`` at once (the default with ``--jobs N > 1``);
* ``slurm``: ``submitit`` on a SLURM cluster, each job a SLURM job, requeued as-is
  when preempted or timed out.

All three run the same job code and write to the same results store. Records are
written atomically and runs are guarded by locks (see ``benchmark.store``), so
Ctrl-C or a killed process loses at most the runs in flight, and two sweeps on one
results root never compute the same run twice. Stopping the sweep (Ctrl-C, SIGTERM)
cancels its jobs in flight; a sweep killed with SIGKILL cannot, and its local or SLURM
jobs run on to the end and record their runs.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from benchmark.api.registry import BACKBONES, METHODS, TASKS, Registry
from benchmark.api.settings import unknown_key
from benchmark.engine import store
from benchmark.engine.harness import Plan, RunInProgress, RunSpec, ensure_checkpoint, execute, plan_run
from benchmark.engine.runtime import resolve_device
from benchmark.errors import UserError
from benchmark.logs import log_to_stderr

EXECUTORS = ("inline", "local", "slurm")
MAX_CELLS = 100_000  # a larger grid is a typo (a range of seeds, say), months of computing at minutes a run


@dataclass(frozen=True)
class Grid:
    """The cells of a sweep: every combination of the lists, under one profile."""

    methods: Sequence[str]
    tasks: Sequence[str]
    fractions: Sequence[float]
    seeds: Sequence[int]
    profile: str = "quick"
    data_roots: dict[str, Path] = field(default_factory=dict)
    pretrain_root: Path | None = None
    switches: tuple[tuple[str, Any], ...] = ()  # profile fields replaced (the speed switches, --profile-arg)
    method_settings: tuple[tuple[str, Any], ...] = ()  # settings replaced in every method that has them
    task_settings: tuple[tuple[str, Any], ...] = ()  # settings replaced in every task that has them
    subset_seed: int | None = None  # one label subset for every seed (--subset-seed); None: each seed its own
    protocols: Sequence[str] = ("full",)  # transfer protocols (--protocols), each a cell of its own
    backbones: Sequence[str] = ("",)  # backbones (--backbones), each a cell of its own; "": each method's default
    backbone_settings: tuple[tuple[str, Any], ...] = ()  # settings replaced in every backbone that has them
    weights: dict[str, Path] = field(default_factory=dict)  # method -> released weights file (--weights)
    dims: Sequence[str] = ("",)  # dimensionalities (--dims), each a cell for the runs whose network fits it

    def specs(self) -> list[RunSpec]:
        """One spec per cell, ordered so that cells sharing a pretrained checkpoint are adjacent."""
        lists = (self.methods, self.tasks, self.fractions, self.seeds, self.protocols, self.backbones, self.dims)
        cells = math.prod(len(values) for values in lists)
        if cells > MAX_CELLS:
            raise UserError(f"a grid of {cells} cells (methods x tasks x fractions x seeds x protocols x backbones x "
                            f"dims): more than {MAX_CELLS}; split it into several sweeps")
        unknown = sorted(set(self.data_roots) - set(self.tasks))
        if unknown:
            raise UserError(f"--data-root given for {', '.join(unknown)}, which is not in --tasks")
        unknown = sorted(set(self.weights) - set(self.methods))
        if unknown:
            raise UserError(f"--weights given for {', '.join(unknown)}, which is not in --methods")
        methods = settings_per_plugin(METHODS, self.methods, self.method_settings)
        tasks = settings_per_plugin(TASKS, self.tasks, self.task_settings)
        named = [b for b in self.backbones if b]  # "": each method's own, which takes the settings as they are
        backbones = {**(settings_per_plugin(BACKBONES, named, self.backbone_settings) if named else {}),
                     "": self.backbone_settings}
        return [RunSpec(method=m, task=t, seed=s, fraction=f, profile=self.profile,
                        data_root=self.data_roots.get(t), pretrain_root=self.pretrain_root,
                        weights=self.weights.get(m), switches=self.switches, method_settings=methods[m],
                        task_settings=tasks[t], subset_seed=self.subset_seed, protocol=p, backbone=b,
                        backbone_settings=backbones[b], dims=d)
                for m, b, d in self._cells()
                for s, t, f, p in itertools.product(self.seeds, self.tasks, self.fractions, self.protocols)]

    def _cells(self) -> list[tuple[str, str, str]]:
        """Each method with each backbone it supports and each dimensionality that backbone runs under."""
        cells = [(m, b, d) for m, b in self._method_backbones() for d in self.dims
                 if not d or d in dims_of(METHODS.get(m).default_backbone() if not b else b)]
        unused = sorted(set(self.dims) - {d for _, _, d in cells})
        if unused:
            raise UserError(f"--dims {', '.join(unused)}: no backbone of the sweep runs under it")
        return cells

    def _method_backbones(self) -> list[tuple[str, str]]:
        """Each method with each listed backbone it supports ("" for its default); a backbone that no
        method supports is a UserError."""
        pairs = [(m, b) for m in self.methods for b in self.backbones if not b or METHODS.get(m).supports_backbone(b)]
        unused = sorted(set(self.backbones) - {b for _, b in pairs})
        if unused:
            raise UserError(f"--backbones {', '.join(unused)}: none of the methods {', '.join(self.methods)} "
                            "supports it")
        return pairs


def dims_of(backbone: str) -> tuple[str, ...]:
    """The dimensionalities a registered backbone runs under: 3d for a 3D network, 2d and 2.5d for a 2D one."""
    return ("3d",) if BACKBONES.get(backbone).spatial_dims == 3 else ("2d", "2.5d")


def settings_per_plugin(registry: Registry, names: Sequence[str],
                        given: tuple[tuple[str, Any], ...]) -> dict[str, tuple[tuple[str, Any], ...]]:
    """Each plugin's share of the ``given`` settings: those it has. A setting that none of ``names``
    has is a UserError."""
    if not given:  # no lookup: the plugins are resolved when each cell is planned
        return {name: () for name in names}
    known = {name: registry.defaults(name) for name in names}
    for key, _ in given:
        if not any(key in settings for settings in known.values()):
            everything = dict.fromkeys(key for settings in known.values() for key in settings)
            raise unknown_key(f"the sweep's {registry.kind}s ({', '.join(names)})", key, everything)
    return {name: tuple((key, value) for key, value in given if key in known[name]) for name in names}


class Job(Protocol):
    def done(self) -> bool: ...

    def result(self) -> dict[str, Any]: ...

    def cancel(self, check: bool = ...) -> Any: ...


@dataclass(frozen=True)
class SweepJob:
    """One unit of a sweep: pretrain the checkpoint a cell needs (``stage="pretrain"``) or run the cell.

    Picklable, and restartable from scratch at any time: finished work is found in the store.
    """

    stage: str
    spec: RunSpec
    results: Path
    device: str

    def __call__(self) -> dict[str, Any]:
        log_to_stderr()  # in a job's own process, its stderr is the job log: the per-epoch lines go there
        start = time.perf_counter()
        try:
            if self.stage == "pretrain":
                plan = plan_run(self.spec)
                _, meta = ensure_checkpoint(plan, self.results, resolve_device(self.device), progress=False)
                return self._outcome("reused" if meta["reused"] else "done", start)
            record = execute(self.spec, self.results, self.device, progress=False)
            return self._outcome("reused" if record["reused"] else "done", start, record)
        except RunInProgress as error:
            return self._outcome("busy", start, error=str(error))
        except Exception as error:  # one failed cell must not stop the grid: it is reported at the end
            return self._outcome("failed", start, error=f"{type(error).__name__}: {error}")

    def checkpoint(self) -> Any:
        """submitit's hook on preemption or timeout: resubmit the same job unchanged."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)

    def _outcome(self, status: str, start: float, record: dict[str, Any] | None = None,
                 error: str | None = None) -> dict[str, Any]:
        return {"stage": self.stage, "status": status, "label": job_label(self),
                "run_id": record["run_id"] if record else None,
                "metrics": record["metrics"] if record else {}, "seconds": time.perf_counter() - start,
                "error": error}


def job_label(job: SweepJob) -> str:
    """The job's cell in words: method (its backbone and dimensionality when chosen), task, fraction, seed and
    protocol when not full."""
    spec = job.spec
    method = " ".join([spec.method, *(f"[{value}]" for value in (spec.backbone, spec.dims) if value)])
    if job.stage == "pretrain":
        return f"{method} seed {spec.seed}"
    protocol = "" if spec.protocol == "full" else f" {spec.protocol}"
    return f"{spec.task} {method} fraction {spec.fraction:g} seed {spec.seed}{protocol}"


def make_submitter(executor: str, results: Path, jobs: int,
                   slurm: dict[str, Any] | None = None) -> Callable[[SweepJob], Job]:
    """A function that starts a ``SweepJob`` on the chosen executor and returns a handle on it."""
    if executor == "inline":
        return _run_inline
    import submitit

    folder = Path(results) / "sweep-logs" / "%j"
    if executor == "local":
        local = submitit.LocalExecutor(folder=folder)
        local.update_parameters(timeout_min=7 * 24 * 60)
        return _interruptible_local(local.submit, Path(results) / "sweep-logs" / "controllers.log")
    if executor == "slurm":
        return _slurm_submitter(folder, slurm or {})
    raise UserError(f"--executor {executor}: expected one of {', '.join(EXECUTORS)}")


def _slurm_submitter(folder: Path, parameters: dict[str, Any]) -> Callable[[SweepJob], Job]:
    """``submitit``'s SLURM submission; no SLURM here (no ``srun``) or a job that ``sbatch`` refuses (an unknown
    partition, say) is a one-line error naming SLURM's reason."""
    import submitit

    try:
        cluster = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as error:
        raise UserError(f"--executor slurm: {_first_line(error)}") from error
    cluster.update_parameters(**parameters)

    def submit(job: SweepJob) -> Job:
        try:
            return cluster.submit(job)
        except (RuntimeError, subprocess.CalledProcessError) as error:
            raise UserError(f"--executor slurm: SLURM did not take the job {job_label(job)}: "
                            f"{_first_line(error)}") from error

    return submit


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _interruptible_local(submit: Callable[[SweepJob], Job], log: Path) -> Callable[[SweepJob], Job]:
    """``submit`` starting its job processes with SIGINT's default action and their stderr in ``log``.

    A local job is cancelled with SIGINT. A sweep started in the background by a
    non-interactive shell (``benchmark sweep ... &`` in a script) ignores SIGINT, and the
    job processes would inherit that and never stop. submitit's job controllers print a
    traceback when they stop; it goes to ``log``, not the sweep's terminal.
    """
    def submit_interruptible(job: SweepJob) -> Job:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        log.parent.mkdir(parents=True, exist_ok=True)
        terminal = os.dup(2)
        try:
            with open(log, "a", encoding="utf-8") as stream:
                os.dup2(stream.fileno(), 2)  # inherited by the processes submit starts
                return submit(job)
        finally:
            os.dup2(terminal, 2)
            os.close(terminal)
            signal.signal(signal.SIGINT, previous)

    return submit_interruptible


def _run_inline(job: SweepJob) -> Future:
    future: Future = Future()
    future.set_result(job())
    return future


def dispatch(jobs: Sequence[SweepJob], submit: Callable[[SweepJob], Job], max_in_flight: int,
             on_outcome: Callable[[dict[str, Any]], None], poll_seconds: float = 1.0) -> list[dict[str, Any]]:
    """Run ``jobs`` with at most ``max_in_flight`` started and unfinished; report each outcome as it lands.

    Stopped by an exception (Ctrl-C, ``terminate_as_interrupt``), it cancels the jobs in flight
    before passing the exception on: their runs are not recorded, the finished ones are kept.
    """
    waiting, running, outcomes = list(jobs), [], []
    try:
        while waiting or running:
            while waiting and len(running) < max_in_flight:
                job = waiting.pop(0)
                running.append((job, submit(job)))
            finished = [(job, handle) for job, handle in running if handle.done()]
            if not finished:
                time.sleep(poll_seconds)
                continue
            for job, handle in finished:
                running.remove((job, handle))
                outcome = _collect(job, handle)
                outcomes.append(outcome)
                on_outcome(outcome)
    except BaseException:
        cancel_unfinished([handle for _, handle in running])
        raise
    return outcomes


def cancel_unfinished(handles: Sequence[Job]) -> None:
    """Stop the jobs still running: a local job process gets SIGINT (its run is not recorded), a
    SLURM job is cancelled with scancel."""
    for handle in handles:
        if not handle.done():
            handle.cancel(check=False)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, a scheduler stopping the sweep) and SIGHUP (the
    terminal or ssh session closed) act as Ctrl-C does: a KeyboardInterrupt, so the jobs in
    flight are cancelled rather than left running unwatched. A signal the process was started
    ignoring stays ignored (``nohup`` keeps a sweep going)."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    stops = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {stop: signal.signal(stop, interrupt) for stop in stops if signal.getsignal(stop) != signal.SIG_IGN}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def _collect(job: SweepJob, handle: Job) -> dict[str, Any]:
    """The job's outcome; a job that died outside our code (killed, out of memory) counts as failed."""
    try:
        return handle.result()
    except Exception as error:
        return {"stage": job.stage, "status": "failed", "label": job_label(job), "run_id": None,
                "metrics": {}, "seconds": 0.0, "error": _first_line(error)}


def _recorded(results: Path, run_id: str) -> bool:
    """Whether the run has a readable record; an unreadable one leaves the cell to its job, which
    reports it as that cell's problem while the grid goes on."""
    try:
        return store.finished_result(results, run_id) is not None
    except store.UnreadableRecord:
        return False


def pending_work(plans: Sequence[Plan], results: Path) -> tuple[list[Plan], list[Plan]]:
    """(one plan per checkpoint still to pretrain, the plans whose run has no record yet)."""
    unfinished = [p for p in plans if not _recorded(results, p.run_id)]
    to_pretrain: dict[str, Plan] = {}
    for plan in unfinished:
        key = plan.checkpoint_id
        if key and key not in to_pretrain and not store.checkpoint_ready(store.checkpoint_dir(results, key)):
            to_pretrain[key] = plan
    return list(to_pretrain.values()), unfinished


def choose_executor(jobs: int, executor: str | None) -> str:
    """``executor``, by default inline for one job at a time and local for several."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    if executor == "inline" and jobs > 1:
        raise UserError(f"--executor inline runs one job at a time: drop --jobs {jobs}, or use --executor local")
    return executor or ("inline" if jobs == 1 else "local")


def run_sweep(grid: Grid, results: Path, device: str = "auto", jobs: int = 1, executor: str | None = None,
              slurm: dict[str, Any] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``grid``; return one outcome per job run (finished cells are not rerun)."""
    executor = choose_executor(jobs, executor)
    if Path(results).exists() and not Path(results).is_dir():
        raise UserError(f"--results {results}: is a file, not a folder")
    submit = make_submitter(executor, results, jobs, slurm)
    plans = list({plan.run_id: plan for plan in map(plan_run, grid.specs())}.values())  # one per run
    to_pretrain, unfinished = pending_work(plans, results)
    print(f"sweep: {len(plans)} runs in the grid, {len(plans) - len(unfinished)} already recorded, "
          f"{len(unfinished)} to run, {len(to_pretrain)} checkpoints to pretrain; executor {executor}, "
          f"{jobs} at a time")
    stages = [("pretrain", [SweepJob("pretrain", p.spec, Path(results), device) for p in to_pretrain]),
              ("run", [SweepJob("run", p.spec, Path(results), device) for p in unfinished])]
    outcomes: list[dict[str, Any]] = []
    bar = tqdm(total=len(to_pretrain) + len(unfinished), desc="sweep", unit="job", disable=not progress)
    for _, stage_jobs in stages:
        outcomes += dispatch(stage_jobs, submit, jobs, lambda outcome: _report(outcome, bar))
    bar.close()
    return outcomes


def _report(outcome: dict[str, Any], bar: tqdm) -> None:
    bar.update()
    tqdm.write(format_outcome(outcome))


def format_outcome(outcome: dict[str, Any]) -> str:
    what = "pretraining" if outcome["stage"] == "pretrain" else "run"
    scores = "  ".join(f"{k} {v:.4f}" for k, v in outcome["metrics"].items())
    detail = outcome["error"] if outcome["error"] else scores
    return f"{outcome['status']:<6} {what} {outcome['label']} ({outcome['seconds']:.0f} s) {detail}".rstrip()


def summarise(outcomes: Sequence[dict[str, Any]], results: Path) -> tuple[str, int]:
    """A closing summary and the exit status: non-zero when a job failed."""
    runs = [o for o in outcomes if o["stage"] == "run"]
    counts = {status: sum(o["status"] == status for o in runs) for status in ("done", "reused", "busy", "failed")}
    failed = [o for o in outcomes if o["status"] == "failed"]
    lines = [f"sweep finished: {counts['done']} runs computed, {counts['reused']} found recorded, "
             f"{counts['busy']} being computed by another process, {len(failed)} jobs failed"]
    lines += [f"  failed: {format_outcome(o)}" for o in failed]
    if counts["busy"]:
        lines.append("  runs being computed elsewhere are recorded when that process finishes; "
                     "run the sweep again afterwards to check")
    lines.append(f"records under {Path(results) / 'runs'}; tables and plots: benchmark report --results {results}")
    return "\n".join(lines), 1 if failed else 0
