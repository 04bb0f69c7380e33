"""Atomic writes: an interrupted write leaves the old file (or nothing), never a partial one."""

import errno
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmark.data import files
from benchmark.engine import store
from benchmark.errors import UserError


def test_write_json_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "runs" / "x" / "result.json"
    files.write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_a_failing_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "result.json"
    files.write_json(path, {"a": 1})

    def explode(tmp):
        tmp.write_text("{partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(path, explode)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_write_that_fails_without_a_file_name_is_reported_with_the_file_meant(tmp_path):
    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write to an open file fails

    with pytest.raises(OSError) as caught:
        files.write_atomic(tmp_path / "latest.pt", full)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(tmp_path / "latest.pt"))
    assert list(tmp_path.iterdir()) == []


SAVE_PAST_THE_SIZE_LIMIT = """
import resource, signal, sys, torch
from benchmark.engine.pretrain import save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails as a write to a full disk does
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
save_checkpoint({"weights": torch.zeros(1 << 16)}, sys.argv[1])
"""


def test_saving_a_checkpoint_onto_a_full_disk_is_an_os_error_naming_the_file(tmp_path):
    """torch.save writing a file itself fails in C++ ("unexpected pos", a RuntimeError, which the command
    line reports as a bug); the bytes are written by Python, whose OSError the command line reports."""
    path = tmp_path / "checkpoint.pt"
    saved = subprocess.run([sys.executable, "-c", SAVE_PAST_THE_SIZE_LIMIT, str(path)], capture_output=True, text=True)
    assert saved.returncode == 1
    assert saved.stderr.splitlines()[-1] == f"OSError: [Errno {errno.EFBIG}] File too large: '{path}'"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_get_the_permissions_of_a_new_file(tmp_path, umask):
    previous = os.umask(umask)
    try:
        files.write_json(tmp_path / "result.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")  # what open() gives a new file under this umask
    finally:
        os.umask(previous)
    modes = [stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("result.json", "plain.txt")]
    assert modes[0] == modes[1] == 0o666 & ~umask


def test_a_written_file_and_its_rename_reach_the_disk_before_the_call_returns(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    files.write_json(tmp_path / "result.json", {"a": 1})
    written, folder = synced
    assert Path(written).name.startswith(".result.json.") and Path(written).parent == tmp_path
    assert folder == str(tmp_path)  # after the rename: the folder's entry is on disk too


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_folders_written_whole_get_the_permissions_of_a_new_folder(tmp_path, umask):
    previous = os.umask(umask)
    try:
        files.write_folder_atomic(tmp_path / "entry", lambda tmp: (tmp / "a.npy").write_bytes(b"x"))
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(previous)
    modes = [stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("entry", "plain")]
    assert modes[0] == modes[1] == 0o777 & ~umask


def a_record(run_id: str = "run-1") -> dict:
    return {key: {} for key in store.RECORD_KEYS} | {
        "run_id": run_id, "method": "scratch-he", "task": "ncc", "profile": "quick", "seed": 0, "fraction": 1.0,
        "metrics": {"auc": 0.9}, "cases": {"train": 3, "val": 2, "test": 4}}


def test_finished_result_is_none_until_the_record_exists(tmp_path):
    assert store.finished_result(tmp_path, "run-1") is None
    record = a_record()
    files.write_json(store.run_dir(tmp_path, "run-1") / store.RESULT_FILE, record)
    assert store.finished_result(tmp_path, "run-1") == record
    files.write_json(store.run_dir(tmp_path, "run-1") / store.RESULT_FILE, {"run_id": "run-1"})
    with pytest.raises(store.UnreadableRecord, match="missing method"):
        store.finished_result(tmp_path, "run-1")


@pytest.mark.parametrize(("content", "why"), [(b'{"run_id": "\xff"}', "is not utf-8 text (byte 12"),
                                              (b"[" * 100_000, "nested too deeply"),
                                              (b'{"run_id": ', "cannot read JSON"),
                                              (b'{"seed": 1' + b"0" * 5000 + b"}", "Exceeds the limit (4300 digits)")])
def test_a_record_that_is_not_json_text_is_unreadable_not_a_crash(tmp_path, content, why):
    path = store.run_dir(tmp_path, "run-1") / store.RESULT_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(store.UnreadableRecord) as caught:
        store.finished_result(tmp_path, "run-1")
    assert str(caught.value).startswith(f"{path}: ") and why in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("changes", "why"), [
    ({"metrics": {"auc": "0.91"}}, "'metrics' is not an object of numbers"),
    ({"metrics": {"auc": 10**400}}, "'metrics' is not an object of numbers"),
    ({"seed": 2**40}, "'seed' is not an integer from 0 to 4294967295"),
    ({"fraction": "all"}, "'fraction' is not a number in (0, 1]"),
    ({"cases": {"test": -1}}, "'cases' is not an object of counts"),
    ({"task": "../x"}, "task"),
    ({"run_id": "run-2"}, "another run's record"),
    ({"profile": "p" * 201}, "'profile' is 201 characters long, more than a name's 200"),
    ({"backbone": {"name": "b" * 201}}, "'backbone.name' is 201 characters long"),
    ({"metrics": {"a" * 201: 0.5}}, "a metric's name is 201 characters long"),
    ({"data": {"root": "/" * 4097}}, "a text in 'data' is 4097 characters long, more than 4096"),
    ({"method_settings": {"k" * 4097: 1}}, "a text in 'method_settings' is 4097 characters long"),
])
def test_a_record_with_values_of_the_wrong_kind_is_unreadable_not_reused(tmp_path, changes, why):
    """A damaged or edited record is named, never handed to the summary (which would fail on it) or a sweep."""
    path = store.run_dir(tmp_path, "run-1") / store.RESULT_FILE
    files.write_json(path, a_record() | changes)
    with pytest.raises(store.UnreadableRecord) as caught:
        store.finished_result(tmp_path, "run-1")
    message = str(caught.value)
    assert message.startswith(f"{path}: not a record of this run (") and why in message and "--force" in message


def test_a_record_file_larger_than_a_record_can_be_is_refused_unread(tmp_path):
    path = store.run_dir(tmp_path, "run-1") / store.RESULT_FILE
    files.write_json(path, a_record() | {"warnings": ["w" * 4000] * 70})  # each text short, the whole 280 KB
    with pytest.raises(store.UnreadableRecord) as caught:
        store.finished_result(tmp_path, "run-1")
    assert re.fullmatch(rf"{re.escape(str(path))}: [0-9]+ bytes, more than a record's 262144; .*--force.*",
                        str(caught.value))


def wait_for_lock_in_a_thread(lock: Path, holder: str, caplog) -> list[str]:
    """The lines logged while a thread waits for ``lock``, which this thread holds until the wait is logged."""
    obtained = threading.Event()

    def take() -> None:
        with store.exclusive(lock, wait=True, holder=holder) as got:
            if got:
                obtained.set()

    with caplog.at_level("INFO", logger="benchmark.engine.store"), store.exclusive(lock, wait=False) as held:
        assert held
        waiter = threading.Thread(target=take)
        waiter.start()
        deadline = time.monotonic() + 30
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not obtained.is_set()  # still waiting
    waiter.join(30)
    assert obtained.is_set()
    return [record.getMessage() for record in caplog.records]


def test_waiting_for_a_lock_says_for_what_and_who_holds_it(tmp_path, caplog):
    lock = tmp_path / "locks" / "genesis-1.lock"
    lines = wait_for_lock_in_a_thread(lock, "another process is pretraining genesis-1", caplog)
    assert lines == [f"waiting for {lock}: another process is pretraining genesis-1"]
    caplog.clear()
    with caplog.at_level("INFO", logger="benchmark.engine.store"), store.exclusive(lock, wait=True) as held:
        assert held and not caplog.records  # a lock nobody holds: no line


@pytest.mark.parametrize("wait", [False, True])
def test_a_lock_that_is_a_symbolic_link_is_refused_not_followed(tmp_path, wait):
    lock = tmp_path / "out" / ".report.lock"
    lock.parent.mkdir()
    lock.symlink_to(tmp_path / "victim")  # planted: the lock file would be created there
    with pytest.raises(UserError, match=f"^{re.escape(str(lock))}: a symbolic link, not a lock file; remove it$"):
        with store.exclusive(lock, wait=wait):
            pass
    assert not (tmp_path / "victim").exists()


HOLD_AND_FORK = """
import multiprocessing, os, signal, sys, time
from benchmark.engine import store
with store.exclusive(sys.argv[1], wait=False) as obtained:
    assert obtained
    worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,))
    worker.start()  # as a data-loader worker is started
    print(worker.pid, flush=True)
    sys.stdin.readline()
    os.kill(os.getpid(), signal.SIGKILL)  # killed outright: no unlock, the worker lives on
"""


def test_a_killed_process_forked_worker_does_not_keep_its_lock(tmp_path):
    lock = tmp_path / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_FORK, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    worker = int(holder.stdout.readline())
    try:
        with store.exclusive(lock, wait=False) as obtained:
            assert not obtained  # the holder still runs
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=60) == -signal.SIGKILL
        os.kill(worker, 0)  # the worker outlives its parent
        with store.exclusive(lock, wait=False) as obtained:
            assert obtained
    finally:
        os.kill(worker, signal.SIGKILL)
