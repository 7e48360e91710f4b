"""SpecAugment's mask fill against Residual Normalization: BC-ResNet-ASC + ResNorm trained with each
fill (augment.SPEC_FILLS) under time masks, frequency masks and both, and with SpecAugment off, on the
default synthetic benchmark. Choices are read off the validation split (held-out training locations);
the evaluate split is reported beside it. Runs (row, seed) pairs as parallel 1-thread jobs, seed by seed,
and resumes cut runs. Writes benchmarks/results/fill_study_<name>.{json,md}.

    python benchmarks/fill_study.py --config configs/bc_resnet_asc_1_resnorm.toml --name c10 --epochs 15 --seeds 0 1 2
    python benchmarks/fill_study.py --config configs/bc_resnet_asc_8_resnorm.toml --name c80 --epochs 10 --seeds 0 \\
        --rows off clip_mean/both bin_mean/both bin_noise/both"""
import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MASKS = {"both": [], "time": ["train.spec_freq_masks=0"], "freq": ["train.spec_time_masks=0"]}
FILLS = ("clip_mean", "bin_mean", "dataset_mean", "bin_noise")
ROWS = {"off": ["train.spec_augment='off'"],
        **{f"{fill}/{masks}": ["train.spec_augment='on'", f"train.spec_fill='{fill}'", *MASKS[masks]]
           for fill in FILLS for masks in MASKS}}
UNSEEN = ("s4", "s5", "s6")


def run_dir(args, row, seed):
    return Path(args.runs) / row.replace("/", "_") / f"seed{seed}"


def train(args, row, seed):
    run = run_dir(args, row, seed)
    if (run / "results.json").is_file():
        return run
    cmd = [sys.executable, "-m", "tinyasc", "train", "--config", args.config, "--data", args.data, "--out", str(run),
           "--quiet", "--seed", str(seed), "--set", f"train.epochs={args.epochs}", "--set", "runtime.threads=1",
           "--set", "runtime.extract_workers=0", "--set", f"name='{Path(args.config).stem} {row}'"]
    if args.epochs < 20:  # the recipe's 5 warm-up epochs are a quarter of a short schedule at most
        cmd += ["--set", f"train.warmup_epochs={min(5.0, args.epochs / 4)}"]
    for s in [*ROWS[row], *args.set]:
        cmd += ["--set", s]
    if (run / "last.pt").is_file():
        cmd.append("--resume")
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(run.parent / f"seed{seed}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return run


def summarise(args, rows):
    table = {}
    for row in rows:
        per_seed = {}
        for seed in args.seeds:
            path = run_dir(args, row, seed) / "results.json"
            if not path.is_file():
                continue
            r = json.loads(path.read_text())
            last = r["last"]
            per_seed[seed] = {"val_accuracy": r["last_validation"]["accuracy"], "eval_accuracy": last["accuracy"],
                              "eval_unseen": float(np.mean([last["per_device"][d]["accuracy"] for d in UNSEEN])),
                              "eval_macro_accuracy": last["macro_accuracy"],
                              "best_epoch": r["best_epoch"], "best_eval_accuracy": r["best"]["accuracy"],
                              "seconds_per_epoch": r["seconds_per_epoch"]}
        if per_seed:
            keys = next(iter(per_seed.values())).keys()
            table[row] = {"seeds": per_seed,
                          "mean": {k: float(np.mean([s[k] for s in per_seed.values()])) for k in keys},
                          "std": {k: float(np.std([s[k] for s in per_seed.values()])) for k in keys}}
    return table


def markdown(args, table):
    lines = [f"# SpecAugment mask fill × ResNorm ({Path(args.config).stem}, {args.epochs} epochs, last epoch)", "",
             "Validation = held-out training locations (train.validation = 0.1, what choices are made on); "
             "evaluate = the reported split (devices A–S6; unseen = S4–S6). Mean ± std over the seeds listed.", "",
             "| fill / masks | seeds | validation | evaluate | evaluate unseen | evaluate macro |",
             "|---|---|---|---|---|---|"]
    ranked = sorted(table.items(), key=lambda kv: -kv[1]["mean"]["val_accuracy"])
    for row, t in ranked:
        m, s = t["mean"], t["std"]
        cell = (lambda k: f"{100 * m[k]:.1f} ± {100 * s[k]:.1f}")
        lines.append(f"| {row} | {len(t['seeds'])} | {cell('val_accuracy')} | {cell('eval_accuracy')} | "
                     f"{cell('eval_unseen')} | {cell('eval_macro_accuracy')} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/bc_resnet_asc_1_resnorm.toml")
    parser.add_argument("--name", default="c10", help="results file suffix")
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--runs", help="run folder (default runs/fill_<name>)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--set", action="append", default=[], help="extra --set for every run")
    parser.add_argument("--jobs", type=int, default=2, help="parallel 1-thread training jobs")
    parser.add_argument("--summary-only", action="store_true", help="only write the results from finished runs")
    args = parser.parse_args()
    args.runs = args.runs or f"runs/fill_{args.name}"
    if not args.summary_only:
        pairs = [(row, seed) for seed in args.seeds for row in args.rows]
        with ThreadPoolExecutor(args.jobs) as pool:
            for future in [pool.submit(train, args, row, seed) for row, seed in pairs]:
                future.result()
    table = summarise(args, args.rows)
    out = ROOT / "benchmarks" / "results" / f"fill_study_{args.name}"
    meta = {"config": args.config, "epochs": args.epochs, "seeds": args.seeds, "extra_sets": args.set,
            "data": Path(args.data).name}
    out.with_suffix(".json").write_text(json.dumps({**meta, "rows": table}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(args, table))
    print(markdown(args, table))


if __name__ == "__main__":
    main()
