"""2 torch threads vs 1 while another process holds a core (a spinning process), OpenMP default vs passive
waiting; paired over alternating rounds. python benchmarks/train_threads.py (after train_speed.py is importable)."""
import json, os, statistics, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_speed as t
spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # another process holding a core
try:
    out = {}
    for c, batch in ((10, 32), (80, 16)):
        specs = {f"{thr}thr-{omp or 'default'}": {**t.OLD, "allocator": "auto", "channels_last": 0, "omp": omp,
                 "threads": thr, "c": c, "seconds": 2, "batch": batch, "steps": 3, "warmup": 1}
                 for thr in (1, 2) for omp in ("", "PASSIVE")}
        res = {k: [] for k in specs}
        for r in range(3):
            for k in (list(specs) if r % 2 == 0 else list(reversed(specs))):
                res[k].append(t.run_one(specs[k])["step_seconds"])
        for omp in ("default", "PASSIVE"):
            ratios = [b / a for a, b in zip(res[f"1thr-{omp}"], res[f"2thr-{omp}"])]
            print(f"c={c} batch {batch} 2 s, OMP {omp}: 1 thread {1000*statistics.median(res[f'1thr-{omp}']):.0f} ms, "
                  f"2 threads {1000*statistics.median(res[f'2thr-{omp}']):.0f} ms, 2thr/1thr time x{statistics.median(ratios):.2f} "
                  f"(paired ratios {[round(x, 2) for x in ratios]}) load {os.getloadavg()[0]:.1f}", flush=True)
        out[c] = res
    json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "train_threads.json"), "w"))
finally:
    spin.kill()
