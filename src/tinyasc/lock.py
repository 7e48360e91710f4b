"""One writer per run folder: an OS file lock (flock on RUN/.lock) that the kernel releases when its
process dies, so a SIGKILLed run never leaves a stale lock. The file names the holder for the refusal."""
import contextlib
import errno
import json
import os
import sys
import time
from pathlib import Path

from tinyasc.errors import TinyascError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

LOCK_NAME = ".lock"
_held = {}  # resolved run dir → [fd, depth]: a process may re-enter its own lock (sweep → train)


class RunLockedError(TinyascError):
    """Another process writes the run folder."""


def holder_of(run_dir):
    """{"pid", "command", "what", "since"} written by the lock's holder, or None if unreadable."""
    try:
        return json.loads((Path(run_dir) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return None


def _refusal(run_dir, what):
    holder = holder_of(run_dir) or {}
    who = (f"pid {holder.get('pid', '?')}, `{holder.get('command', '?')}`, since {holder.get('since', '?')}"
           if holder else "holder unknown")
    return RunLockedError(f"{run_dir}: cannot {what}: another tinyasc process is writing this run folder "
                          f"({who}); wait for it to finish or stop it")


@contextlib.contextmanager
def run_lock(run_dir, what="train"):
    """Hold the run folder's lock for the body (creating the folder if needed), else raise one
    RunLockedError line naming the holder (pid, command). Released on exit and by process death.
    A folder this call created is removed again on exit if it is still empty except for the lock."""
    run_dir = Path(run_dir)
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key][1] += 1
        try:
            yield run_dir
        finally:
            _held[key][1] -= 1
        return
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TinyascError(f"{run_dir}: cannot create the run folder ({e.strerror})") from None
    if fcntl is None:
        yield run_dir
        return
    path = run_dir / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise TinyascError(f"{path}: cannot create the run lock ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _refusal(run_dir, what) from None
            raise TinyascError(f"{path}: cannot lock the run folder ({e.strerror})") from None
        # the previous holder unlinks the file on release: make sure we locked the file at `path`
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    command = "tinyasc " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0] else what
    info = {"pid": os.getpid(), "what": what, "command": command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(info) + "\n").encode())
    _held[key] = [fd, 1]
    try:
        yield run_dir
    finally:
        del _held[key]
        try:
            path.unlink()  # while still locked: a waiter that opened it re-checks the inode
        except OSError:
            pass
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if empty: a run that wrote nothing leaves nothing behind
