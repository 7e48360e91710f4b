"""Training-step speed of BC-ResNet-ASC on CPU: each setting vs the old shipped default, side by side.

Every measurement is a fresh process (the allocator is a per-process choice), and the settings of one
case are run in alternating order for several rounds, so each round gives a paired ratio taken under the
same machine load; the table shows medians. Writes benchmarks/results/train_speed.{json,txt}.

    python benchmarks/train_speed.py                 # all cases (~10 min on 2 cores)
    python benchmarks/train_speed.py --rounds 5
    # epoch of `tinyasc train` (c = 80, default benchmark), before (a checkout of the old source) vs now:
    mkdir -p build/old && git archive 9cd5467 src | tar -x -C build/old && python benchmarks/train_speed.py --epoch data/bench --old-src build/old/src
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# old = what tinyasc shipped before issue 15: glibc malloc, busy-waiting OpenMP, channels_last, torch threads
OLD = {"allocator": "system", "omp": "", "channels_last": 1, "amp": "off", "threads": 0}
NEW = {"allocator": "auto", "omp": "PASSIVE", "channels_last": 0, "amp": "off", "threads": 0}


def worker(spec):
    """Run in a fresh process: time `steps` SGD steps (forward, mixup-free CE loss, backward, update)."""
    import torch

    from tinyasc.models import create_model

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = create_model(f"bc_resnet_asc_{1 if spec['c'] == 10 else 8}")
    frames = 1 + int(spec["seconds"] * 16000) // 480
    x = torch.randn(spec["batch"], 1, 256, frames)
    y = torch.randint(0, 10, (spec["batch"],))
    if spec["channels_last"]:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    times = []
    for i in range(spec["warmup"] + spec["steps"]):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec["amp"] == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= spec["warmup"]:
            times.append(time.perf_counter() - t0)
    from tinyasc.system import allocator

    return {"step_seconds": statistics.median(times), "allocator": allocator(), "threads": torch.get_num_threads()}


def run_one(spec):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), TINYASC_ALLOCATOR=spec["allocator"])
    for k in ("OMP_WAIT_POLICY", "LD_PRELOAD", "TINYASC_REEXEC", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_",
              "OMP_NUM_THREADS"):
        env.pop(k, None)
    if spec["omp"]:
        env["OMP_WAIT_POLICY"] = spec["omp"]
    # the worker goes through the same start-up as the CLI: tinyasc.system.setup (re-exec with tcmalloc)
    # (old: OpenMP's own default wait policy, so the variable is dropped again before torch loads)
    code = ("import os,sys,json; from tinyasc.system import setup; setup(); "
            f"os.environ.pop('OMP_WAIT_POLICY') if {not spec['omp']!r} else None; "
            "sys.path.insert(0, sys.argv[1]); import train_speed; "
            "print('RESULT', json.dumps(train_speed.worker(json.loads(sys.argv[2]))))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "benchmarks"), json.dumps(spec)], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT "):])


def compare(name, base, variants, rounds, shape):
    """Paired ratios base/variant over `rounds` alternating rounds; returns rows."""
    specs = {"default (old)": {**base, **shape}, **{k: {**base, **v, **shape} for k, v in variants.items()}}
    samples = {k: [] for k in specs}
    for r in range(rounds):
        order = list(specs) if r % 2 == 0 else list(reversed(specs))
        for k in order:
            samples[k].append(run_one(specs[k]))
    rows = []
    base_t = [s["step_seconds"] for s in samples["default (old)"]]
    for k, runs in samples.items():
        t = [s["step_seconds"] for s in runs]
        ratio = statistics.median(b / v for b, v in zip(base_t, t))
        med = statistics.median(t)
        rows.append({"case": name, "setting": k, "step_ms": 1000 * med, "clips_per_s": shape["batch"] / med,
                     "speedup_vs_old": ratio, "allocator": runs[0]["allocator"], "threads": runs[0]["threads"],
                     "load_avg": os.getloadavg()[0]})
        print(f"{name:22s} {k:34s} {1000 * med:8.1f} ms {shape['batch'] / med:7.1f} clips/s  ×{ratio:.2f} "
              f"[{runs[0]['allocator']}, {runs[0]['threads']} thr] load {os.getloadavg()[0]:.2f}", flush=True)
    return rows


def epoch_times(data, old_src, rounds, config, sets, out):
    """`tinyasc train` for one epoch with the old source and with this one, alternately; epoch seconds from
    each run's metrics.jsonl (feature extraction excluded: both share one cache, built by a first run)."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="train_speed_"))
    samples = {"old": [], "new": []}
    try:
        for r in range(rounds + 1):  # round 0 only builds the feature cache
            for name in (("old", "new") if r % 2 else ("new", "old")):
                env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "TINYASC_REEXEC",
                       "OMP_WAIT_POLICY", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}
                env["PYTHONPATH"] = old_src if name == "old" else str(ROOT / "src")
                run = tmp / f"{name}{r}"
                cmd = [sys.executable, "-m", "tinyasc", "train", "--config", config, "--data", data, "--quiet",
                       "--cache-dir", str(tmp / "cache"), *sum((["--set", s] for s in sets), []), "--out", str(run)]
                subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=ROOT)
                rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
                if r:
                    samples[name].append({"epoch_s": rec["epoch_seconds"], "train_s": rec["train_seconds"],
                                          "load_avg": os.getloadavg()[0]})
                    print(f"epoch round {r} {name}: {rec['epoch_seconds']:.1f} s (train {rec['train_seconds']:.1f} s) "
                          f"load {os.getloadavg()[0]:.2f}", flush=True)
                if r == 0:
                    break  # one run builds the cache
                shutil.rmtree(run)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = [o["epoch_s"] / n["epoch_s"] for o, n in zip(samples["old"], samples["new"])]
    result = {"config": config, "sets": sets, "rounds": rounds, "samples": samples,
              "median_epoch_s": {k: statistics.median(s["epoch_s"] for s in v) for k, v in samples.items()},
              "speedup_median_paired": statistics.median(ratios), "paired_ratios": ratios}
    print(f"epoch: old {result['median_epoch_s']['old']:.1f} s, new {result['median_epoch_s']['new']:.1f} s, "
          f"speed-up ×{result['speedup_median_paired']:.2f} (median of {rounds} paired ratios)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out + "_epoch.json").write_text(json.dumps(result, indent=2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (1: pure kernel speed)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_speed"))
    ap.add_argument("--epoch", metavar="DATA", help="instead: time one `tinyasc train` epoch on DATA, old vs new")
    ap.add_argument("--old-src", help="with --epoch: the old source's src/ folder (see the docstring)")
    ap.add_argument("--config", default="configs/bc_resnet_asc_8_resnorm.toml")
    ap.add_argument("--set", action="append", default=["train.epochs=1"], dest="sets")
    args = ap.parse_args()
    if args.epoch:
        if not args.old_src:
            raise SystemExit("--epoch needs --old-src")
        return epoch_times(args.epoch, args.old_src, args.rounds, args.config, args.sets, args.out)
    base = {**OLD, "threads": args.threads}
    variants = {"tcmalloc": {"allocator": "tcmalloc"},
                "glibc mallopt": {"allocator": "mallopt"},
                "tcmalloc + channels_last off": {"allocator": "tcmalloc", "channels_last": 0},
                "tcmalloc + bf16 autocast": {"allocator": "tcmalloc", "amp": "bf16"},
                "new default": {**NEW, "threads": args.threads}}
    rows, t0 = [], time.time()
    print(f"load average at start {os.getloadavg()}; {os.cpu_count()} CPUs; batch {args.batch}; "
          f"{args.threads} thread(s); {args.rounds} alternating rounds; median of {args.steps} steps each")
    for c in (10, 80):
        for seconds in (2, 10):
            shape = {"c": c, "seconds": seconds, "batch": args.batch, "steps": args.steps, "warmup": 1}
            rows += compare(f"c={c}, {seconds} s clips", base, variants, args.rounds, shape)
    meta = {"load_avg_start_end": os.getloadavg(), "cpus": os.cpu_count(), "batch": args.batch,
            "threads": args.threads, "rounds": args.rounds, "steps": args.steps, "wall_s": time.time() - t0,
            "old_default": OLD, "new_default": NEW}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"{r['case']:22s} {r['setting']:34s} {r['step_ms']:8.1f} ms {r['clips_per_s']:7.1f} clips/s "
             f"x{r['speedup_vs_old']:.2f} [{r['allocator']}] load {r['load_avg']:.2f}" for r in rows]
    Path(args.out + ".txt").write_text(json.dumps(meta) + "\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
