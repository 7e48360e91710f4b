"""The run-folder lock: a second process gets one line naming the holder, the lock dies with its holder
(SIGKILL included), the holder may re-enter it, and a folder the lock created is not left behind empty."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tinyasc.lock import LOCK_NAME, RunLockedError, holder_of, run_lock

HOLD = """
import sys, time
from tinyasc.lock import run_lock
with run_lock(sys.argv[1], what="train"):
    open(sys.argv[2], "w").write("locked")
    time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    """A second process holding the lock of tmp_path/run; yields (run_dir, process)."""
    run_dir, ready = tmp_path / "run", tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(ready)], env=env)
    for _ in range(600):
        if ready.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert ready.exists(), "the holder did not take the lock"
    yield run_dir, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_second_writer_gets_one_line_naming_the_holder(holder):
    run_dir, proc = holder
    with pytest.raises(RunLockedError) as info:
        with run_lock(run_dir, what="resume"):
            pytest.fail("two writers held the lock")
    message = str(info.value)
    assert "\n" not in message and str(run_dir) in message and "cannot resume" in message
    assert f"pid {proc.pid}" in message and holder_of(run_dir)["pid"] == proc.pid


def test_lock_dies_with_a_killed_holder(holder):
    run_dir, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run_dir / LOCK_NAME).exists()  # a stale file, but no stale lock
    with run_lock(run_dir, what="train"):
        assert holder_of(run_dir)["pid"] == os.getpid()
        (run_dir / "metrics.jsonl").write_text("")
    assert not (run_dir / LOCK_NAME).exists() and (run_dir / "metrics.jsonl").exists()


def test_the_holder_may_reenter_and_an_unused_new_folder_is_removed(tmp_path):
    run_dir = tmp_path / "runs" / "a"
    with run_lock(run_dir, what="sweep"):
        with run_lock(run_dir, what="train"):
            assert holder_of(run_dir)["what"] == "sweep"
        assert (run_dir / LOCK_NAME).exists()  # still held by the outer call
    assert not run_dir.exists()
