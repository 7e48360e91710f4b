"""Process settings applied where a tinyasc process starts (`cli.main`, so `tinyasc …`, `python -m tinyasc …`
and torchrun ranks), before torch loads: a fast memory allocator and passive OpenMP waiting.
Spawned workers (feature extraction) inherit both through the environment. Imports only the standard library.

Why (benchmarks/train_speed.py): glibc malloc maps and zeroes every large buffer afresh, so a training
step page-faults through gigabytes; tcmalloc keeps them. OpenMP threads that busy-wait lose badly when
another process holds a core; passive waiting caps that loss.
"""
import ctypes
import ctypes.util
import os
import sys

from tinyasc.errors import TinyascError

ALLOCATOR_ENV = "TINYASC_ALLOCATOR"  # auto (default) | tcmalloc | jemalloc | mallopt | system
ALLOCATORS = ("auto", "tcmalloc", "jemalloc", "mallopt", "system")
_GUARD_ENV = "TINYASC_REEXEC"  # set on the one re-exec that adds LD_PRELOAD, so it never loops
_LIBRARIES = {"tcmalloc": ("tcmalloc_minimal", "tcmalloc"), "jemalloc": ("jemalloc",)}
# glibc <malloc.h>: mallopt parameters, and the environment variables glibc reads at start-up for them
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_TRIM_THRESHOLD = 1 << 40  # never hand freed memory back to the OS: it is reused by the next step
_MALLOPT_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(_TRIM_THRESHOLD)}
_mallopt_applied = False


def allocator_choice():
    choice = os.environ.get(ALLOCATOR_ENV, "auto").strip().lower() or "auto"
    if choice not in ALLOCATORS:
        from tinyasc.errors import TinyascError

        raise TinyascError(f"{ALLOCATOR_ENV}={choice!r}: expected one of {', '.join(ALLOCATORS)}")
    return choice


def find_library(name):
    """The shared library of allocator `name` ('tcmalloc' or 'jemalloc') as LD_PRELOAD takes it, or None."""
    if not sys.platform.startswith("linux"):
        return None
    for lib in _LIBRARIES[name]:
        found = ctypes.util.find_library(lib)
        if found:
            return found
    return None


def loaded_allocator():
    """'tcmalloc' or 'jemalloc' when that library is mapped into this process, else None."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        maps = os.environ.get("LD_PRELOAD", "")
    for name in ("tcmalloc", "jemalloc"):
        if f"lib{name}" in maps:
            return name
    return None


def _mallopt():
    """glibc: never mmap a buffer (M_MMAP_MAX = 0) and never trim the heap; for this process (mallopt,
    affects every later allocation) and for its children (the variables glibc reads when it starts)."""
    global _mallopt_applied
    os.environ.update({k: v for k, v in _MALLOPT_ENV.items() if k not in os.environ})
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to set
        return False
    _mallopt_applied = bool(mallopt(_M_MMAP_MAX, 0)) & bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _mallopt_applied


def setup(reexec=True):
    """Apply the process settings; call before torch is imported. With `reexec`, a process that should
    preload tcmalloc/jemalloc replaces itself once (same pid and arguments) with LD_PRELOAD set.
    TINYASC_ALLOCATOR=system leaves the allocator alone; OMP_WAIT_POLICY set by the user is kept."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by OpenMP when torch loads
    choice = allocator_choice()
    if choice == "system" or loaded_allocator():
        return
    if choice in ("auto", "tcmalloc", "jemalloc") and reexec and not os.environ.get(_GUARD_ENV) \
            and "torch" not in sys.modules and getattr(sys, "orig_argv", None):
        lib = find_library("tcmalloc" if choice == "auto" else choice)
        if lib:
            env = dict(os.environ, **{_GUARD_ENV: "1"})
            env["LD_PRELOAD"] = ":".join(p for p in (lib, os.environ.get("LD_PRELOAD")) if p)
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                os.execve(sys.executable, sys.orig_argv, env)
            except OSError:
                pass  # cannot re-exec: fall back to glibc's settings below
    _mallopt()


def allocator():
    """The allocator this process runs with, in words."""
    lib = loaded_allocator()
    if lib:
        return lib
    if _mallopt_applied:
        return "glibc (mallopt: mmap off, no trim)"
    if os.environ.get("MALLOC_MMAP_MAX_") == "0":
        return "glibc (MALLOC_MMAP_MAX_=0 from the environment)"
    return "glibc (default)"


def cpu_flags():
    """The CPU's vector ISA flags that matter for torch kernels (Linux /proc/cpuinfo), sorted."""
    wanted = {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
              "amx_bf16", "amx_int8", "amx_tile", "avx_vnni", "neon", "asimd", "sve", "bf16"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return sorted(wanted & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512 BF16 / AMX; Arm's BF16 extension


def native_bf16(flags=None):
    """Whether the CPU computes bf16 in hardware (an AVX-512 BF16, AMX or Arm BF16 flag). Without it torch
    emulates bf16: matmul ran ≈ 1 GFLOP/s against ≈ 90 fp32 on an AVX2 machine (issue 26)."""
    return any(flag in BF16_FLAGS for flag in (cpu_flags() if flags is None else flags))


def check_amp(amp, device_type="cpu", flags=None):
    """Refuse, in one line, bf16 autocast on a CPU without bf16 instructions (it would run ~100× slower
    than fp32, with nothing else to show for it)."""
    if amp == "bf16" and device_type == "cpu" and not native_bf16(flags):
        raise TinyascError("runtime.amp=bf16: this CPU has no bf16 instructions (AVX-512 BF16, AMX or Arm BF16; "
                           "`tinyasc info --system` lists its flags), so bf16 is emulated and trains about 100× "
                           "slower than fp32; use runtime.amp=off")


def describe(torch_info=True):
    """Dict of the process settings: allocator, OpenMP wait policy, threads, torch version, CPU ISA."""
    info = {"allocator": allocator(), "allocator_setting": os.environ.get(ALLOCATOR_ENV, "auto"),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(OpenMP default: active)"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "(unset)"), "cpus": _cpus(),
            "python": sys.version.split()[0], "cpu_flags": cpu_flags(), "native_bf16": native_bf16()}
    if torch_info:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    torch_cpu_capability=torch.backends.cpu.get_cpu_capability())
    return info


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_describe():
    """describe() without torch, run in a spawned process: what feature-extraction workers see."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(describe, False).result()
