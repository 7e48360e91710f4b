"""tinyasc.system: the allocator and OpenMP settings every tinyasc process (and its spawned workers) starts
with, as `python -m tinyasc info --system` reports them, the opt-out, and bad values."""
import json
import os
import subprocess
import sys

import pytest

from tinyasc.cli import main
from tinyasc.system import find_library

CLEAN = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "TINYASC_REEXEC", "TINYASC_ALLOCATOR",
                                                          "OMP_WAIT_POLICY", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")}


def system_info(**env):
    out = subprocess.run([sys.executable, "-m", "tinyasc", "info", "--system", "--json"], capture_output=True,
                         text=True, env={**CLEAN, **env})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_tinyasc_process_and_its_spawned_workers_get_the_fast_allocator_and_passive_waiting():
    info = system_info()
    expected = "tcmalloc" if find_library("tcmalloc") else "glibc (mallopt: mmap off, no trim)"
    assert info["allocator"] == expected
    # a spawned worker (as feature extraction uses) inherits LD_PRELOAD or glibc's MALLOC_* variables
    assert info["worker_allocator"] == ("tcmalloc" if find_library("tcmalloc") else
                                        "glibc (MALLOC_MMAP_MAX_=0 from the environment)")
    assert info["omp_wait_policy"] == "PASSIVE"
    assert info["torch"] and info["torch_threads"] >= 1 and isinstance(info["cpu_flags"], list)


def test_allocator_opt_out_and_glibc_choice_and_user_wait_policy_are_respected():
    info = system_info(TINYASC_ALLOCATOR="system", OMP_WAIT_POLICY="ACTIVE")
    assert info["allocator"] == info["worker_allocator"] == "glibc (default)"
    assert info["omp_wait_policy"] == "ACTIVE"
    info = system_info(TINYASC_ALLOCATOR="mallopt")
    assert info["allocator"] == "glibc (mallopt: mmap off, no trim)"
    assert info["worker_allocator"] == "glibc (MALLOC_MMAP_MAX_=0 from the environment)"


def test_bad_allocator_value_is_a_one_line_error():
    out = subprocess.run([sys.executable, "-m", "tinyasc", "models"], capture_output=True, text=True,
                         env={**CLEAN, "TINYASC_ALLOCATOR": "fast"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "TINYASC_ALLOCATOR='fast'" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_in_process_main_never_re_execs(capsys):
    assert main(["info", "--system", "--json"]) == 0  # would not return if it replaced the process
    assert "allocator" in json.loads(capsys.readouterr().out)


def test_info_without_a_target_or_system_is_an_error(capsys):
    assert main(["info"]) == 2
    assert "--system" in capsys.readouterr().err


@pytest.mark.skipif(not find_library("tcmalloc"), reason="libtcmalloc-minimal4 not installed")
def test_the_re_exec_keeps_the_process_arguments_and_happens_once():
    code = "import sys; from tinyasc.cli import main; sys.exit(main())"
    out = subprocess.run([sys.executable, "-c", code, "info", "--system", "--json"], capture_output=True,
                         text=True, env=CLEAN)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["allocator"] == "tcmalloc"
