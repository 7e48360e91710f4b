"""Device generalisation side by side (issue 13): BC-ResNet-ASC-1 on the default synthetic benchmark with
baseline, ResNorm, Freq-MixStyle, device-response augmentation (DIR), their combinations, and all three +
distillation from the best configuration's logits (its seeds' ensemble); per device, seen vs unseen,
micro and macro accuracy. Resumable; writes benchmarks/results/devgen_table.{json,md}, or
devgen_table_<layout>_<split>.{json,md} with --train-split (the TAU 2022-layout benchmark's subsets).

    python benchmarks/devgen_table.py --data data/synthetic --runs runs/devgen --epochs 15 --seeds 0 1 2
    python benchmarks/devgen_table.py --data data/bench22 --train-split split25 --runs runs/devgen22 --seeds 0 1 2"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "devgen_table"
MIXSTYLE = ["train.freq_mixstyle_p=0.4", "train.freq_mixstyle_alpha=0.3"]
ROWS = {
    "baseline": ["model.resnorm='none'"],
    "ResNorm": ["model.resnorm='all'"],
    "Freq-MixStyle": ["model.resnorm='none'", *MIXSTYLE],
    "DIR": ["model.resnorm='none'", "train.dir_folder='{irs}'", "train.dir_p=0.6"],
    "ResNorm + Freq-MixStyle": ["model.resnorm='all'", *MIXSTYLE],
    "ResNorm + DIR": ["model.resnorm='all'", "train.dir_folder='{irs}'", "train.dir_p=0.6"],
    "all three": ["model.resnorm='all'", *MIXSTYLE, "train.dir_folder='{irs}'", "train.dir_p=0.6"],
}


def train(name, sets, seed, args, irs, extra=()):
    run = Path(args.runs) / name.replace(" ", "_").replace("+", "plus") / f"seed{seed}"
    if not (run / "results.json").is_file():
        cmd = [sys.executable, "-m", "tinyasc", "train", "--data", args.data, "--out", str(run), "--quiet",
               "--seed", str(seed), "--set", f"train.epochs={args.epochs}", "--set", "runtime.threads=1",
               "--set", f"name='{name}'"]
        for s in [*sets, *extra]:
            cmd += ["--set", s.format(irs=irs)]
        if args.train_split:
            cmd += ["--train-split", args.train_split]
        if (run / "last.pt").is_file():
            cmd.append("--resume")
        subprocess.run(cmd, check=True)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--runs", default="runs/devgen")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-split", help="train on this subset (TAU 2022 layout: split5 … split100)")
    parser.add_argument("--only", nargs="*", help="row names to run (for running rows in parallel)")
    args = parser.parse_args()
    irs = Path(args.runs) / "responses"
    if not irs.is_dir():
        subprocess.run([sys.executable, "-m", "tinyasc", "make-responses", str(irs), "--count", "20", "--seed", "0"],
                       check=True)
    runs = {}
    for name, sets in ROWS.items():
        if args.only is None or name in args.only:
            runs[name] = [train(name, sets, seed, args, irs) for seed in args.seeds]
    if args.only is not None and "KD" not in args.only:
        return
    # the teacher: the best configuration by unseen-device accuracy, its seeds' ensemble, as a logits file
    def unseen(run):
        return json.loads((run / "results.json").read_text())["last"]["per_group"]["unseen"]["accuracy"]
    best = max(ROWS, key=lambda n: np.mean([unseen(r) for r in runs[n]]))
    teacher = Path(args.runs) / "teacher.npz"
    if not teacher.is_file():
        subprocess.run([sys.executable, "-m", "tinyasc", "predict", *[str(r / "last.pt") for r in runs[best]],
                        str(Path(args.data) / "audio"), "--out", str(Path(args.runs) / "teacher.tsv"), "--force",
                        "--logits", str(teacher), "--relative-to", args.data], check=True)
    kd = f"all three + KD from {best}"
    runs[kd] = [train("all three + KD", ROWS["all three"], seed, args, irs, [f"train.teacher_logits='{teacher}'"])
                for seed in args.seeds]
    write(runs, best, args)


def write(runs, best, args):
    devices = ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"]
    lines = ["| method | seeds | " + " | ".join(d.upper() for d in devices) + " | real | seen | unseen | micro | macro |",
             "|" + "---|" * (len(devices) + 7)]
    data = {}
    for name, rs in runs.items():
        ms = [json.loads((r / "results.json").read_text())["last"] for r in rs]
        def mean(f):
            return 100 * float(np.mean([f(m) for m in ms]))
        def std(f):
            return 100 * float(np.std([f(m) for m in ms]))
        data[name] = ms
        cells = [f"{mean(lambda m, d=d: m['per_device'][d]['accuracy']):.1f}" for d in devices]
        groups = [f"{mean(lambda m, g=g: m['per_group'][g]['accuracy']):.1f}" for g in ("real", "seen", "unseen")]
        lines.append(f"| {name} | {len(ms)} | " + " | ".join(cells + groups) +
                     f" | {mean(lambda m: m['accuracy']):.1f} ± {std(lambda m: m['accuracy']):.1f}"
                     f" | {mean(lambda m: m['macro_accuracy']):.1f} |")
    out = RESULTS.with_name(f"devgen_table_tau2022_{args.train_split}") if args.train_split else RESULTS
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"epochs": args.epochs, "seeds": args.seeds, "teacher": best,
                                                         "train_split": args.train_split, "runs": data}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
