"""Output paths: one check that every writing command runs before its long work (missing parents are
created; read-only folders, directories where a file is wanted, paths under a file and existing outputs
without --force give one line), and atomic writes that keep the umask's file mode."""
import errno
import os
import stat
import tempfile
from pathlib import Path

from tinyasc.errors import TinyascError

# errors a user can act on ("disk full", "read-only"), reported as one line instead of a traceback
USER_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class OutputError(TinyascError):
    """An output path that cannot be written: read-only folder, wrong kind, exists without --force."""


def _reason(e):
    return "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or type(e).__name__).lower()


def _existing_file_above(path):
    """The nearest ancestor of `path` that exists and is not a directory, else None."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            return None if parent.is_dir() else parent
    return None


def check_output(path, *, force=False, kind="file", what="--out"):
    """Check `path` as an output of `kind` "file" or "dir" and create its missing parent folders.

    Raises one OutputError line naming `what`, the path and the reason for: an output under an existing
    file, a folder that cannot be written (read-only, permission), a directory where a file is wanted
    (even with force), a file where a directory is wanted, and an existing output without force (a
    directory counts as existing when it holds files). Returns the path as a Path.
    """
    try:
        return _check_output(path, force, kind, what)
    except OutputError:
        raise
    except OSError as e:  # e.g. a folder on the way that cannot be searched
        raise OutputError(f"{what} {os.fspath(path)}: cannot write there ({_reason(e)}: {e.filename})") from None


def _check_output(path, force, kind, what):
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', not {kind!r}")
    text = os.fspath(path)
    if not text:
        raise OutputError(f"{what}: empty path")
    path = Path(text)
    blocker = _existing_file_above(path)
    if blocker is not None:
        raise OutputError(f"{what} {path}: cannot write under {blocker}, which is a file, not a folder")
    if kind == "file":
        if path.is_dir() or text.endswith(os.sep):
            raise OutputError(f"{what} {path}: is a directory; give a file name")
        folder = path.parent
    else:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{what} {path}: exists and is a file, not a folder")
        folder = path
    if not force:
        if kind == "file" and (path.exists() or path.is_symlink()):
            raise OutputError(f"{what} {path}: exists; pass --force to overwrite")
        if kind == "dir" and path.is_dir() and any(path.iterdir()):
            raise OutputError(f"{what} {path}: exists and holds files; pass --force to overwrite")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # probe with a real file: os.access is wrong for root, ACLs and read-only mounts
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".tinyasc-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{what} {path}: cannot write in {folder} ({_reason(e)})") from None
    return path


def current_umask():
    """The process umask, read without changing it where Linux exposes it (os.umask sets it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe for that instant)
    os.umask(mask)
    return mask


def atomic_write(path, write, overwrite=True):
    """Call write(tmp) with a temporary path (str) beside `path`, fsync it and rename it over `path`;
    with overwrite=False it is linked to `path` instead, which fails if `path` appeared meanwhile (another
    process writing the same output): one OutputError line, the other file kept.

    The result has the mode a plain open() would give: the replaced file's mode, else 0666 minus the
    umask (mkstemp alone makes 0600). A crash leaves `path` old or new, never half-written; a full
    disk or read-only folder is one OutputError line naming `path`. Same signature as the former
    tinyasc.checkpoint.atomic_write.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~current_umask()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        if e.errno in USER_ERRNOS:
            raise OutputError(f"cannot write {path} ({_reason(e)})") from None
        raise
    try:
        write(tmp)
        os.chmod(tmp, mode)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in USER_ERRNOS:
            raise OutputError(f"cannot write {path} ({_reason(e)})") from None
        raise
    _fsync_dir(path.parent)


def _publish_new(tmp, path):
    """Give the finished file `tmp` the name `path` only if no file has it (atomic: no check-then-write race)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError(f"{path}: exists (written meanwhile by another process); pass --force to overwrite") from None
    except OSError as e:
        if e.errno in USER_ERRNOS and e.errno not in (errno.EPERM,):
            raise
        try:  # a file system without hard links: claim the name exclusively, then replace the claim
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise OutputError(f"{path}: exists (written meanwhile by another process); pass --force to overwrite") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _fsync_dir(folder):
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data):
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path, text, encoding="utf-8"):
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding=encoding))


def write_json(path, obj):
    """`obj` as indented JSON at `path`, written atomically."""
    import json

    atomic_write_text(path, json.dumps(obj, indent=2))


def content_sha256(path):
    """SHA-256 of a file's bytes, or of a folder's files (relative names and contents, in name order): what
    a run's input file or folder held, so a resumed run can tell that it changed."""
    import hashlib

    path, h = Path(path), hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(f"{p.relative_to(path).as_posix() if path.is_dir() else ''}\0".encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
