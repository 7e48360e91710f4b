"""Cost of the feature cache's full integrity check (per-chunk SHA-256 + finite check of every value,
once per process) and of finding the clip length from the audio headers; extrapolated to real TAU.

    python benchmarks/cache_integrity.py [--gb 1.5] [--dir /tmp] [--out benchmarks/results/cache_integrity.json]

Writes a synthetic float32 .npy of --gb GB, then times tinyasc.data.cache.chunk_digests on it with the
file in the page cache ("warm") and evicted with posix_fadvise DONTNEED ("cold", read from disk), with 1
thread and with the default thread count; then the header scan on --clips short WAV files.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
from numpy.lib.format import open_memmap

from tinyasc.data import cache as cache_module
from tinyasc.data.cache import CHUNK_BYTES, VERIFY_THREADS, chunk_digests, typical_length
from tinyasc.data.tau import Clip

TAU_CACHE_BYTES = 16932 * 256 * 334 * 4  # 13,962 + 2,970 clips of (256, 334) float32: 5.79 GB
TAU_CLIPS = 16932


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.5)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/cache_integrity.json")
    args = ap.parse_args()

    rows = 256 * 334
    n = int(args.gb * 1e9 // (rows * 4))
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = {"array": {"shape": [n, 256, 334], "dtype": "float32"}, "chunk_bytes": CHUNK_BYTES, "runs": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "cache.npy"
        out = open_memmap(path, mode="w+", dtype="float32", shape=(n, 256, 334))
        rng = np.random.default_rng(0)
        block = rng.standard_normal((64, 256, 334)).astype(np.float32)
        for start in range(0, n, 64):
            out[start:start + 64] = block[:min(64, n - start)]
        out.flush()
        del out
        size = path.stat().st_size
        results["array"]["bytes"] = size
        for threads in sorted({1, VERIFY_THREADS}):
            for state in ("cold", "warm"):
                def run():
                    if state == "cold":
                        evict(path)
                    chunk_digests(path, "float32", threads=threads)
                if state == "warm":
                    chunk_digests(path, "float32", threads=threads)  # fill the page cache
                best, times = timed(run, args.repeats)
                mb_s = size / 1e6 / best
                results["runs"].append({"threads": threads, "page_cache": state, "seconds": round(best, 3),
                                        "all_seconds": [round(t, 3) for t in times], "MB_per_s": round(mb_s),
                                        "tau_5.8GB_seconds": round(TAU_CACHE_BYTES / 1e6 / mb_s, 1)})
                print(json.dumps(results["runs"][-1]))
        # the parts: SHA-256 alone and the finite check alone, in memory (one 32 MiB chunk)
        data = np.random.default_rng(1).standard_normal(CHUNK_BYTES // 4).astype(np.float32).tobytes()
        import hashlib
        sha, _ = timed(lambda: hashlib.sha256(data).digest(), 10)
        fin, _ = timed(lambda: np.isfinite(np.frombuffer(data, np.float32)).all(), 10)
        results["parts_MB_per_s_one_thread"] = {"sha256": round(len(data) / 1e6 / sha),
                                                "isfinite": round(len(data) / 1e6 / fin)}

        audio = Path(tmp) / "audio"
        audio.mkdir()
        wave = (0.1 * rng.standard_normal(44100)).astype(np.float32)
        clips = []
        for i in range(args.clips):
            name = f"audio/c{i}-a.wav"
            soundfile.write(str(Path(tmp) / name), wave, 44100)
            clips.append(Clip(name, 0, "a", ""))
        best, _ = timed(lambda: typical_length(tmp, clips, 16000), args.repeats)
        results["header_scan"] = {"clips": args.clips, "seconds": round(best, 3),
                                  "us_per_clip": round(best / args.clips * 1e6, 1),
                                  "tau_16932_clips_seconds": round(best / args.clips * TAU_CLIPS, 2)}
        print(json.dumps(results["header_scan"]))
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": sys.platform,
                          "numpy": np.__version__, "verify_threads_default": VERIFY_THREADS,
                          "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]],
                          "note": "cold = file evicted with posix_fadvise(DONTNEED) before each run"}
    results["tinyasc_cache_format"] = cache_module.FORMAT_VERSION
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
