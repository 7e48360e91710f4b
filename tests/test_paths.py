"""The shared output-path check (each refusal is one OutputError line naming the path and the reason,
before anything is written) and atomic writes that keep the umask's mode and never leave a partial file."""
import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tinyasc import paths
from tinyasc.errors import TinyascError
from tinyasc.paths import OutputError, atomic_write, atomic_write_bytes, atomic_write_text, check_output


def test_missing_parent_folders_are_created(tmp_path):
    out = check_output(tmp_path / "fig" / "sub" / "t.png")
    assert (tmp_path / "fig" / "sub").is_dir() and not out.exists()
    assert check_output(tmp_path / "a" / "b", kind="dir").is_dir()


def test_existing_file_needs_force(tmp_path):
    (tmp_path / "r.md").write_text("old")
    with pytest.raises(OutputError, match=r"r\.md: exists; pass --force to overwrite"):
        check_output(tmp_path / "r.md", what="report --out")
    assert check_output(tmp_path / "r.md", force=True) == tmp_path / "r.md"
    assert (tmp_path / "r.md").read_text() == "old"  # the check writes nothing


def test_existing_directory_is_refused_for_a_file_even_with_force(tmp_path):
    (tmp_path / "d").mkdir()
    for force in (False, True):
        with pytest.raises(OutputError, match=r"--out .*d: is a directory"):
            check_output(tmp_path / "d", force=force)
    with pytest.raises(OutputError, match="is a directory"):
        check_output(str(tmp_path / "new") + os.sep)


def test_output_under_an_existing_file_is_refused(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    for kind in ("file", "dir"):
        with pytest.raises(OutputError, match=r"cannot write under .*f\.txt, which is a file"):
            check_output(tmp_path / "f.txt" / "sub" / "out.md", kind=kind)
    assert (tmp_path / "f.txt").read_text() == "x"


def test_directory_output(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is a file, not a folder"):
        check_output(tmp_path / "file", kind="dir", force=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("x")
    with pytest.raises(OutputError, match="holds files; pass --force"):
        check_output(tmp_path / "full", kind="dir", what="evaluate --out")
    assert check_output(tmp_path / "full", kind="dir", force=True).is_dir()
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty", kind="dir").is_dir()


def test_empty_path_is_refused():
    with pytest.raises(OutputError, match="--out: empty path"):
        check_output("")


CHECK_AS_NOBODY = """
import os, sys
from tinyasc.errors import TinyascError
from tinyasc.paths import check_output
if os.getuid() == 0:  # root ignores permissions: drop to nobody after the imports
    os.setgid(65534)
    os.setuid(65534)
try:
    check_output(sys.argv[1], what="figure --out")
except TinyascError as e:
    print(e)
"""


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="POSIX permissions")
def test_read_only_folder_is_one_line():
    base = Path(tempfile.mkdtemp())  # under /tmp: pytest's tmp_path is not searchable by others
    try:
        base.chmod(0o755)
        folder = base / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        run = subprocess.run([sys.executable, "-c", CHECK_AS_NOBODY, str(folder / "t.png")], env=env,
                             capture_output=True, text=True, cwd="/")
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == f"figure --out {folder / 't.png'}: cannot write in {folder} (permission denied)"
        assert os.listdir(folder) == []
    finally:
        shutil.rmtree(base)


def test_atomic_write_keeps_the_umask_mode_and_an_existing_files_mode(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
        assert paths.current_umask() == 0o027
    finally:
        os.umask(old)
    (tmp_path / "b.md").write_text("old")
    (tmp_path / "b.md").chmod(0o644)
    atomic_write_bytes(tmp_path / "b.md", b"new")  # --force must not turn 0644 into 0600
    assert stat.S_IMODE((tmp_path / "b.md").stat().st_mode) == 0o644
    assert (tmp_path / "b.md").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.md"]


def test_atomic_write_is_a_drop_in_for_a_callback_and_cleans_up_on_failure(tmp_path):
    atomic_write(tmp_path / "x" / "m.bin", lambda tmp: open(tmp, "wb").write(b"abc"))
    assert (tmp_path / "x" / "m.bin").read_bytes() == b"abc"

    def fails(tmp):
        open(tmp, "wb").write(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(tmp_path / "x" / "m.bin", fails)
    assert os.listdir(tmp_path / "x") == ["m.bin"] and (tmp_path / "x" / "m.bin").read_bytes() == b"abc"


def test_disk_full_during_an_atomic_write_is_one_line_and_leaves_the_old_file(tmp_path):
    (tmp_path / "r.md").write_text("old")

    def full(tmp):
        open(tmp, "wb").write(b"part")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError, match=r"cannot write .*r\.md \(disk full\)") as info:
        atomic_write(tmp_path / "r.md", full)
    assert isinstance(info.value, TinyascError) and info.value.__cause__ is None
    assert os.listdir(tmp_path) == ["r.md"] and (tmp_path / "r.md").read_text() == "old"
