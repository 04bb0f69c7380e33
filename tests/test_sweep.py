"""Sweeps: grid expansion, resuming after an interruption, locks against a concurrent sweep, executors."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.engine import store
from benchmark.engine.sweep import Grid, SweepJob, dispatch, make_submitter, run_sweep, terminate_as_interrupt
from benchmark.errors import UserError

GRID = Grid(methods=["genesis", "scratch-he"], tasks=["ncc"], fractions=[0.5, 1.0], seeds=[0], profile="smoke")


def records(results: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (results / "runs").glob("*/result.json")}


def test_the_grid_is_every_combination_with_shared_checkpoints_adjacent():
    grid = Grid(methods=["a", "b"], tasks=["x", "y"], fractions=[0.25, 1.0], seeds=[0, 1])
    specs = grid.specs()
    assert len(specs) == 16 == len({(s.method, s.task, s.fraction, s.seed) for s in specs})
    # cells of one (method, seed) pair, which share one pretrained checkpoint, come together
    pairs = [(s.method, s.seed) for s in specs]
    assert pairs == sorted(pairs, key=pairs.index) and [pairs[i] for i in range(0, 16, 4)] == \
        [("a", 0), ("a", 1), ("b", 0), ("b", 1)]


def test_pretraining_switches_reach_every_cell_and_change_its_identity():
    from benchmark.engine.harness import plan_run

    switched = Grid(methods=["genesis"], tasks=["ncc"], fractions=[1.0], seeds=[0], profile="smoke",
                    switches=(("pretrain_precision", "bf16"),))
    plain = Grid(methods=["genesis"], tasks=["ncc"], fractions=[1.0], seeds=[0], profile="smoke")
    [spec] = switched.specs()
    assert spec.switches == (("pretrain_precision", "bf16"),)
    assert plan_run(spec).run_id != plan_run(plain.specs()[0]).run_id


def test_a_data_root_for_a_task_outside_the_grid_is_refused():
    with pytest.raises(UserError, match="lcs, which is not in --tasks"):
        Grid(methods=["genesis"], tasks=["ncc"], fractions=[1.0], seeds=[0], data_roots={"lcs": Path(".")}).specs()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The grid run once inline; returns (results root, outcomes)."""
    results = tmp_path_factory.mktemp("sweep")
    return results, run_sweep(GRID, results, device="cpu", progress=False)


def test_a_sweep_pretrains_each_checkpoint_once_and_records_every_cell(finished):
    results, outcomes = finished
    assert [o["stage"] for o in outcomes] == ["pretrain"] + ["run"] * 4
    assert {o["status"] for o in outcomes} == {"done"}
    recorded = records(results)
    assert len(recorded) == 4
    assert {(r["method"], r["fraction"]) for r in recorded.values()} == \
        {("genesis", 0.5), ("genesis", 1.0), ("scratch-he", 0.5), ("scratch-he", 1.0)}
    genesis = [r for r in recorded.values() if r["method"] == "genesis"]
    assert all(r["pretraining"]["reused"] for r in genesis)  # pretrained by the sweep's first stage
    assert len(list((results / "checkpoints").iterdir())) == 1
    for record in recorded.values():
        compute = record["compute"]
        assert compute["finetune_samples_seen"] > 0 and compute["device_name"]
        assert (compute["pretrain_cubes_seen"] > 0) == (record["method"] == "genesis")


def test_a_second_sweep_finds_everything_recorded_and_rewrites_nothing(finished):
    results, _ = finished
    before = {p: p.stat().st_mtime_ns for p in (results / "runs").rglob("*") if p.is_file()}
    assert run_sweep(GRID, results, device="cpu", progress=False) == []
    after = {p: p.stat().st_mtime_ns for p in (results / "runs").rglob("*") if p.is_file()}
    assert after == before


class Interrupt(KeyboardInterrupt):
    pass


def test_an_interrupted_sweep_resumes_without_redoing_finished_runs(tmp_path):
    grid = Grid(methods=["scratch-he"], tasks=["ncc"], fractions=[0.25, 0.5, 1.0], seeds=[0], profile="smoke")
    started = []
    inline = make_submitter("inline", tmp_path, 1)

    def submit_then_interrupt(job):
        started.append(job)
        if len(started) == 3:
            raise Interrupt  # Ctrl-C while the third run is in flight
        return inline(job)

    with pytest.raises(Interrupt):
        dispatch([SweepJob("run", spec, tmp_path, "cpu") for spec in grid.specs()], submit_then_interrupt, 1,
                 lambda outcome: None)
    assert len(records(tmp_path)) == 2
    first = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/result.json")}
    outcomes = run_sweep(grid, tmp_path, device="cpu", progress=False)
    assert [o["status"] for o in outcomes] == ["done"]
    assert len(records(tmp_path)) == 3
    assert all((tmp_path / "runs" / name / "result.json").stat().st_mtime_ns == mtime for name, mtime in first.items())


def test_a_run_locked_by_another_sweep_is_left_to_it(tmp_path):
    grid = Grid(methods=["scratch-he"], tasks=["ncc"], fractions=[0.5, 1.0], seeds=[0], profile="smoke")
    from benchmark.engine.harness import plan_run

    busy = plan_run(grid.specs()[0]).run_id
    with store.exclusive(store.lock_path(tmp_path, busy), wait=True):  # as another process would hold it
        outcomes = run_sweep(grid, tmp_path, device="cpu", progress=False)
    assert sorted(o["status"] for o in outcomes) == ["busy", "done"]
    assert busy not in records(tmp_path)


def test_the_submitit_local_executor_writes_the_same_records_as_inline(finished, tmp_path):
    inline_results, _ = finished
    grid = Grid(methods=["genesis", "scratch-he"], tasks=["ncc"], fractions=[1.0], seeds=[0], profile="smoke")
    outcomes = run_sweep(grid, tmp_path, device="cpu", jobs=2, executor="local", progress=False)
    assert {o["status"] for o in outcomes} == {"done"}, outcomes
    local = records(tmp_path)
    assert len(local) == 2
    for run_id, record in local.items():
        assert record["metrics"] == records(inline_results)[run_id]["metrics"]


def test_the_sweep_command_summarises_and_fails_clearly_on_bad_input(finished, capsys):
    results, _ = finished
    argv = ["sweep", "--methods", "genesis,scratch-he", "--tasks", "ncc", "--fractions", "0.5,1", "--seeds", "0",
            "--profile", "smoke", "--results", str(results), "--no-progress"]
    assert main(argv) == 0
    assert "4 already recorded, 0 to run" in capsys.readouterr().out
    assert main([*argv[:2], "genesys", *argv[3:]]) == 2
    assert "genesis" in capsys.readouterr().err  # did-you-mean
    assert main([*argv[:5], "--fractions", "half", *argv[7:]]) == 2
    assert "--fractions half" in capsys.readouterr().err
    for fractions, outside in (("0.5,2", "2"), ("nan", "nan"), ("0,1", "0")):  # the option typed, not --fraction
        assert main([*argv[:5], "--fractions", fractions, *argv[7:]]) == 2
        assert f"--fractions {fractions}: {outside} is not in (0, 1]" in capsys.readouterr().err


POLLS = 1000  # how often a test polls a job that never finishes before it gives up (0.01 s apart)


class Handle:
    """A job that never finishes by itself, as a local or SLURM job in flight; polled more than
    ``POLLS`` times, it fails the test rather than wait forever."""

    def __init__(self):
        self.cancelled, self.polls = False, 0

    def done(self):
        self.polls += 1
        if self.polls > POLLS:
            raise AssertionError("the sweep was never stopped")
        return self.cancelled

    def result(self):
        raise AssertionError("never finished")

    def cancel(self, check=True):
        self.cancelled = True


@pytest.fixture
def default_stop_signals():
    """SIGTERM and SIGHUP at their default action, as in a terminal (``nohup`` starts the tests
    ignoring SIGHUP); restored afterwards."""
    previous = {stop: signal.signal(stop, signal.SIG_DFL) for stop in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for stop, handler in previous.items():
        signal.signal(stop, handler)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_stopping_a_sweep_with_sigterm_or_sighup_cancels_the_jobs_in_flight(tmp_path, stop, default_stop_signals):
    handles, kills = [], []

    class KilledWhilePolled(Handle):
        def done(self):
            if not kills:  # as `kill <sweep pid>` or a closed terminal, once, while two jobs run
                kills.append(stop)
                os.kill(os.getpid(), stop)
            return super().done()

    def submit(job):
        handles.append(KilledWhilePolled() if handles else Handle())
        return handles[-1]

    jobs = [SweepJob("run", spec, tmp_path, "cpu") for spec in GRID.specs()]
    with pytest.raises(KeyboardInterrupt), terminate_as_interrupt():
        dispatch(jobs, submit, max_in_flight=2, on_outcome=lambda outcome: None, poll_seconds=0.01)
    assert len(handles) == 2 and all(handle.cancelled for handle in handles)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


def test_a_sweep_started_with_nohup_keeps_ignoring_sighup():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with terminate_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


CANCEL_PROBE = """
import functools, signal, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a sweep started with '&' by a script
from benchmark.engine.sweep import cancel_unfinished, make_submitter
handle = make_submitter("local", Path(sys.argv[1]), 1)(functools.partial(time.sleep, 30))
time.sleep(1)
cancel_unfinished([handle])
for _ in range(100):
    if handle.done():
        break
    time.sleep(0.1)
print("stopped" if handle.done() else "still running")
"""


def test_cancelling_stops_a_local_job_even_when_the_sweep_ignores_sigint(tmp_path):
    out = subprocess.run([sys.executable, "-c", CANCEL_PROBE, str(tmp_path)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "stopped"
