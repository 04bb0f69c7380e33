"""Data-parallel pretraining: two processes launched by torchrun on the CPU (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from benchmark.cli import main
from benchmark.engine import distributed, store
from benchmark.engine.checkpoints import checkpoint_fault
from benchmark.engine.harness import RunSpec, plan_run
from benchmark.engine.pretrain import load_checkpoint
from benchmark.errors import UserError


def test_two_processes_pretrain_one_checkpoint_written_once(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "benchmark", "pretrain", "--method", "genesis", "--profile", "smoke",
               "--results", str(tmp_path), "--device", "cpu", "--no-progress"]
    # from a folder of its own: "-m benchmark" puts the current folder first on sys.path, and the
    # repository root holds the package without its plugins (installed inside it, see pyproject.toml)
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = (tmp_path / "checkpoints").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "history.csv", "meta.json"]
    checkpoint = load_checkpoint(folder / "checkpoint.pt")
    assert checkpoint["method"] == "genesis" and checkpoint["epochs"] >= 1
    assert all(torch.isfinite(v.float()).all() for v in checkpoint["state_dict"].values())
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["identity"]["world_size"] == 2 and checkpoint_fault(folder, meta["identity"]) is None
    assert done.stdout.count("checkpoint ") == 1 and "2 process(es)" in done.stdout  # rank 0 reports
    assert done.stdout.splitlines()[-1] == str(folder / "checkpoint.pt")  # the path to hand to 'run --weights'

    # launched while another process holds the checkpoint's lock and then finishes it: every rank waits for it
    aside = tmp_path / "aside"
    folder.rename(aside)
    with store.exclusive(store.lock_path(tmp_path, folder.name), wait=True):
        launched = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        time.sleep(15)  # the ranks start meanwhile: none may pretrain what the lock holder is finishing
        aside.rename(folder)
    out, err = launched.communicate(timeout=240)
    assert launched.returncode == 0, err[-3000:]
    assert "reused" in out and not (folder / "latest.pt").exists()

    # two processes draw other cubes than one: 'run' would pretrain another checkpoint, not take this one ...
    assert plan_run(RunSpec("genesis", "ncc", profile="smoke")).checkpoint_id != folder.name
    # ... and fine-tunes this one when given its file, as the README says
    argv = ["run", "--method", "genesis", "--task", "ncc", "--profile", "smoke", "--weights",
            str(folder / "checkpoint.pt"), "--results", str(tmp_path), "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/result.json")]
    assert record["pretraining"] is None and record["weights"]["path"] == str(folder / "checkpoint.pt")
    assert record["transfer"]["loaded_keys"] > 0
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [folder.name]  # nothing pretrained


def test_batch_must_split_evenly_over_the_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(UserError, match="does not split evenly"):
        distributed.shard(6)
    assert distributed.shard(8) == 2 and distributed.identity() == {"world_size": 4}


def test_one_process_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.world().size == 1 and distributed.identity() == {} and distributed.shard(6) == 6
