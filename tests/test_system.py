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


def test_bf16_autocast_is_refused_on_a_cpu_without_bf16_instructions():
    """Issue 26: emulated bf16 trains ~100x slower than fp32 on an AVX2-only CPU, and nothing said so."""
    from tinyasc.errors import TinyascError
    from tinyasc.system import check_amp, native_bf16

    assert not native_bf16(["avx", "avx2", "fma"]) and native_bf16(["avx2", "avx512_bf16"])
    assert native_bf16(["amx_bf16"]) and native_bf16(["asimd", "bf16"])
    with pytest.raises(TinyascError, match="runtime.amp=bf16: this CPU has no bf16 instructions"):
        check_amp("bf16", "cpu", flags=["avx2"])
    check_amp("bf16", "cpu", flags=["avx512_bf16"])  # a CPU with bf16: allowed
    check_amp("bf16", "cuda", flags=["avx2"])  # CUDA autocast does not depend on the CPU
    check_amp("off", "cpu", flags=["avx2"])


def test_train_refuses_bf16_before_any_work_where_the_cpu_lacks_it(small_benchmark, tmp_path, monkeypatch, capsys):
    import tinyasc.system

    monkeypatch.setattr(tinyasc.system, "cpu_flags", lambda: ["avx", "avx2"])
    out = tmp_path / "run"
    code = main(["train", "--data", str(small_benchmark), "--out", str(out), "--set", "runtime.amp='bf16'",
                 "--set", "train.epochs=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("tinyasc: error:") == 1 and "no bf16 instructions" in err, err
    assert not out.exists()


def test_info_system_says_whether_the_cpu_has_bf16(capsys):
    assert main(["info", "--system", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert isinstance(info["native_bf16"], bool) and info["native_bf16"] == any(
        f in info["cpu_flags"] for f in ("avx512_bf16", "amx_bf16", "bf16"))
